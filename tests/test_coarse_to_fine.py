"""The coarse-to-fine path of RegularizedAdversarial (``coarse_to_fine=f``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from captum_regadv import RegularizedAdversarial
from captum_regadv._coarse_to_fine import downsample, upsample


class AreaModel(torch.nn.Module):
    r"""Fully convolutional two-class model that reads the same at every resolution.

    ``z_1 = scale * (ref * mean_x relu(x - t) - bias)``: the evidence is the
    area (in units of a ``ref``-pixel image) of what is brighter than ``t``,
    so block averaging by ``f`` keeps a block-aligned object's evidence.
    """

    def __init__(self, *, bias: float, t: float = 0.1, scale: float = 10.0,
                 ref: float = 1024.0) -> None:
        super().__init__()
        self.t, self.bias, self.scale, self.ref = t, bias, scale, ref

    def forward(self, x: Tensor) -> Tensor:
        z = self.scale * (torch.relu(x - self.t).flatten(1).mean(1) * self.ref - self.bias)
        return torch.stack([torch.zeros_like(z), z], 1)


def _background(n: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.05 * torch.rand(n, 1, 32, 32, generator=g)


def _iou(a: Tensor, b: Tensor) -> float:
    return float((a.bool() & b.bool()).sum() / (a.bool() | b.bool()).sum())


@pytest.mark.parametrize("factor", [2, 4])
def test_block_evidence_gives_the_plain_mask(factor):
    x = _background()
    x[0, 0, 8:16, 16:24] = 0.9
    model = AreaModel(bias=3.0).eval()
    plain = RegularizedAdversarial(model).attribute(x, target=1, bounds=(0.0, 1.0))
    explainer = RegularizedAdversarial(model)
    fast = explainer.attribute(x, target=1, bounds=(0.0, 1.0), coarse_to_fine=factor)
    assert _iou(plain, fast) >= 0.9
    assert explainer.last_diagnostics is not None
    assert float(explainer.last_diagnostics.score_after[0]) < 0.5


def test_single_pixel_evidence_gives_a_single_pixel_mask():
    """The coarse mask is one 2x2 block; the fine stage keeps only the bright pixel."""
    x = _background()
    x[0, 0, 9, 13] = 1.0
    model = AreaModel(bias=0.3).eval()
    explainer = RegularizedAdversarial(model)
    mask, j = explainer.attribute(
        x, target=1, bounds=(0.0, 1.0), coarse_to_fine=2, return_perturbed=True
    )
    assert torch.nonzero(mask[0, 0]).tolist() == [[9, 13]]
    assert explainer.last_diagnostics is not None
    assert float(explainer.last_diagnostics.score_after[0]) < 0.5
    outside = ~mask.bool()
    assert torch.equal(j[outside], x[outside])


def test_diagnostics_count_both_stages():
    x = _background(2)
    x[:, 0, 8:16, 16:24] = 0.9
    explainer = RegularizedAdversarial(AreaModel(bias=3.0).eval())
    explainer.attribute(x, target=1, bounds=(0.0, 1.0), coarse_to_fine=2,
                        steps=8, phase2_steps=4, refine_steps=2, search_steps=0)
    d = explainer.last_diagnostics
    assert d is not None
    # coarse 8 + 4 + 3 refinement rounds x (1 ranking + 2), fine 4 + 2 + 3 x (1 + 1)
    assert d.passes.tolist() == [33, 33]
    rounds = {"refinement 1", "refinement 2", "refinement 3"}
    assert set(d.losses[0]) == {"coarse phase 1", "coarse phase 2"} | {
        f"coarse {r}" for r in rounds}
    assert set(d.losses[-1]) == {"fine phase 1", "fine phase 2"} | {f"fine {r}" for r in rounds}
    assert d.losses[-1]["fine phase 1"].shape == (5, 2)


def test_inputs_and_model_are_not_modified():
    x = _background()
    x[0, 0, 8:16, 16:24] = 0.9
    before = x.clone()
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1),
                                torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten()).eval()
    weights = [p.detach().clone() for p in model.parameters()]
    RegularizedAdversarial(model).attribute(x, target=1, steps=4, phase2_steps=2,
                                            coarse_to_fine=2)
    assert torch.equal(x, before)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, shape, error, message",
    [
        ({"coarse_to_fine": 1}, (1, 1, 32, 32), ValueError, "coarse_to_fine"),
        ({"coarse_to_fine": 2.0}, (1, 1, 32, 32), TypeError, "coarse_to_fine"),
        ({"coarse_to_fine": True}, (1, 1, 32, 32), TypeError, "coarse_to_fine"),
        ({"coarse_to_fine": 2, "mode": "preserve"}, (1, 1, 32, 32), ValueError, "destroy"),
        ({"coarse_to_fine": 2, "feature_mask": torch.zeros(1, 1, 32, 32, dtype=torch.long)},
         (1, 1, 32, 32), ValueError, "feature_mask"),
        ({"coarse_to_fine": 2}, (1, 32), ValueError, "coarse_to_fine"),
        ({"coarse_to_fine": 16}, (1, 1, 32, 24), ValueError, "coarse_to_fine"),
    ],
)
def test_bad_settings_are_rejected(kwargs, shape, error, message):
    with pytest.raises(error, match=message):
        RegularizedAdversarial(AreaModel(bias=1.0)).attribute(torch.rand(shape), target=1,
                                                               **kwargs)


def test_model_that_needs_the_full_size_is_reported():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 2)).eval()
    with pytest.raises(ValueError, match="coarse_to_fine=2.*downsampled"):
        RegularizedAdversarial(model).attribute(torch.rand(1, 1, 32, 32), target=1,
                                                coarse_to_fine=2)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 9), w=st.integers(2, 9), factor=st.integers(2, 3),
       seed=st.integers(0, 2**16))
def test_downsample_is_the_block_mean(h, w, factor, seed):
    """Against numpy when the size is a multiple of the factor; nearest upsampling repeats."""
    x = torch.rand(1, 2, h * factor, w * factor, generator=torch.Generator().manual_seed(seed),
                   dtype=torch.float64)
    ref = x.numpy().reshape(1, 2, h, factor, w, factor).mean((3, 5))
    np.testing.assert_allclose(downsample(x, factor).numpy(), ref, rtol=1e-12)
    up = upsample(downsample(x, factor), x).numpy()
    np.testing.assert_allclose(up, np.repeat(np.repeat(ref, factor, 2), factor, 3))


def test_examples_unseen_at_the_coarse_scale_get_the_full_schedule():
    """Block means of 4x4 hide a single bright pixel from the model: that example
    is explained at full resolution (warning), the other on the fast path."""
    x = _background(2)
    x[0, 0, 9, 13] = 1.0
    x[1, 0, 8:16, 16:24] = 0.9
    model = AreaModel(bias=0.3).eval()
    explainer = RegularizedAdversarial(model)
    with pytest.warns(UserWarning, match="does not recognise 1 of 2"):
        mask = explainer.attribute(x, target=1, bounds=(0.0, 1.0), coarse_to_fine=4,
                                   search_steps=0)
    assert torch.nonzero(mask[0, 0]).tolist() == [[9, 13]]
    d = explainer.last_diagnostics
    assert d is not None
    assert bool((d.score_after < 0.5).all())
    # example 0: the coarse schedule (nothing to destroy, no early stop) and the whole
    # full-resolution one (98 each: 60 + 20 + 3 x (1 + 5)); example 1: coarse and
    # fine (60 // 4 + 20 // 4 + 3 refinement rounds x (1 ranking + 5 // 4))
    assert d.passes.tolist() == [98 + 98, 98 + 15 + 5 + 3 * (1 + 1)]
    assert {"full phase 1", "fine phase 1"} <= set().union(*d.losses)
    assert torch.isnan(d.losses[-1]["full phase 1"][:, 1]).all()


class _FullResolutionOnly(AreaModel):
    """An AreaModel that also reads a corner, but only at 32x32: not scale invariant."""

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        if x.shape[-1] == 32:
            out[:, 1] = out[:, 1] + 400.0 * x[:, 0, :2, :2].flatten(1).mean(1)
        return out


def test_a_coarse_mask_that_misses_the_full_resolution_evidence_is_reported():
    x = _background()
    x[0, 0, 8:16, 16:24] = 0.9
    x[0, 0, :2, :2] = 0.09  # below the threshold: invisible to the area term
    explainer = RegularizedAdversarial(_FullResolutionOnly(bias=3.0).eval())
    with pytest.warns(UserWarning, match="fine stage left the class"):
        mask = explainer.attribute(x, target=1, bounds=(0.0, 1.0), coarse_to_fine=2,
                                   search_steps=0)
    assert not bool(mask[0, 0, :2, :2].any())  # outside the coarse mask's neighbourhood
