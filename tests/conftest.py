"""Shared toy models with hand-set weights, so expected explanations are known."""

from __future__ import annotations

from typing import Optional

import pytest
import torch
from torch import Tensor


class RegionModel(torch.nn.Module):
    """Two-class model whose class-1 logit depends only on the elements where ``weight != 0``.

    ``z_0 = 0`` and ``z_1 = scale * (sum(x * weight) - bias)`` per example;
    ``extra`` (an optional additional forward argument of shape ``(N,)``)
    multiplies ``z_1``.
    """

    def __init__(self, weight: Tensor, *, scale: float = 10.0, bias: float = 1.0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())
        self.scale = scale
        self.bias = bias

    def forward(self, x: Tensor, extra: Optional[Tensor] = None) -> Tensor:
        z1 = self.scale * ((x * self.weight).flatten(1).sum(1) - self.bias)
        if extra is not None:
            z1 = z1 * extra
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


class TupleRegionModel(torch.nn.Module):
    """Two inputs; the class-1 logit depends on a region of the first and one feature of the second."""

    def __init__(self, w_image: Tensor, w_table: Tensor) -> None:
        super().__init__()
        self.w_image = torch.nn.Parameter(w_image.clone())
        self.w_table = torch.nn.Parameter(w_table.clone())

    def forward(self, image: Tensor, table: Tensor) -> Tensor:
        z1 = 10.0 * (
            (image * self.w_image).flatten(1).sum(1) + (table * self.w_table).sum(1) - 1.0
        )
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def region_weight(shape: tuple[int, ...], region: tuple[slice, ...]) -> Tensor:
    w = torch.zeros(shape)
    w[region] = 1.0
    return w


@pytest.fixture
def image_case() -> tuple[RegionModel, Tensor, Tensor]:
    """A 1 x 16 x 16 image model with evidence in rows/cols 4:8, and 3 confident examples."""
    g = torch.Generator().manual_seed(0)
    region = (slice(None), slice(4, 8), slice(4, 8))
    model = RegionModel(region_weight((1, 16, 16), region)).eval()
    x = 0.3 * torch.rand(3, 1, 16, 16, generator=g)
    x[:, :, 4:8, 4:8] = 0.6 + 0.2 * torch.rand(3, 1, 4, 4, generator=g)
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[:, :, 4:8, 4:8] = True
    return model, x, truth


@pytest.fixture
def adam_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, tuple[float, float]]]:
    """Replace ``torch.optim.Adam`` by a subclass that records ``(lr, betas)``
    of every instance built during the test."""
    made: list[tuple[float, tuple[float, float]]] = []

    class SpyAdam(torch.optim.Adam):
        def __init__(self, params, **options) -> None:
            super().__init__(params, **options)
            made.append((options["lr"], options["betas"]))

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    return made


def two_pixel_model() -> torch.nn.Module:
    """Class-1 logit 10 (x[0, 0] + x[0, 1]) - 5 on an 8 x 8 image (class-0
    logit 0): only those two pixels matter."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[1, :2] = 10.0
        model[1].bias[1] = -5.0
    return model.eval()
