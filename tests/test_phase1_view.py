"""What phase 1's model sees (``phase1_view``): after the warmup, ``J`` with the
changes below ``epsilon`` reset to ``I``, with the gradient passed straight through."""

from __future__ import annotations

from typing import Optional

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv._forward import ScoredModel
from captum_regadv._groups import resolve_groups
from captum_regadv._phase1_loss import Phase1Loss

from conftest import RegionModel

EPSILON = 0.01


class Recording(torch.nn.Module):
    """A :class:`RegionModel` over all elements that keeps the inputs it was called with."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.inner = RegionModel(torch.ones(shape), scale=1.0, bias=0.0)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x)


def _loss(model: Recording, x: torch.Tensor, *, view_from: Optional[int], mode: str = "destroy",
          feature_mask: Optional[torch.Tensor] = None, warmup: int = 0) -> Phase1Loss:
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    model.seen.clear()
    return Phase1Loss(
        scored, (x,), sparsity_weight=0.0, tv_weight=0.0, release_weight=0.0, gamma=30.0,
        epsilon=EPSILON, dims=((2, 3),), groups=resolve_groups(feature_mask, (x,)), mode=mode,
        objective="log_odds", reference=torch.zeros(x.shape[0]) if mode == "preserve" else None,
        dual_step=1.25, warmup=warmup,
        view_from=view_from,
    )


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    """``I`` and a ``J`` moved by 0.005 (below epsilon) on the left half and by
    0.05 on the right half."""
    x = torch.full((2, 1, 4, 4), 0.5)
    j = x.clone()
    j[..., :2] -= 0.005
    j[..., 2:] -= 0.05
    return x, j


def test_the_model_sees_j_until_view_from_then_what_phase_2_keeps() -> None:
    x, j = _case()
    model = Recording((1, 4, 4))
    loss = _loss(model, x, view_from=2)
    rows = torch.arange(2)
    kept = torch.where((j - x).abs() >= EPSILON, j, x)
    for _ in range(3):
        loss((j.clone().requires_grad_(),), rows)
    assert torch.equal(model.seen[0], j) and torch.equal(model.seen[1], j)
    assert torch.equal(model.seen[2], kept)
    assert torch.equal(model.seen[2][..., :2], x[..., :2])  # the sub-epsilon half is unseen


def test_the_gradient_passes_straight_through_to_the_unseen_elements() -> None:
    """The class-1 logit is the sum of all elements: every element, seen or not,
    gets the same gradient (a plain ``where`` would give the unseen ones 0)."""
    x, j = _case()
    loss = _loss(Recording((1, 4, 4)), x, view_from=0)
    param = j.clone().requires_grad_()
    loss((param,), torch.arange(2)).sum().backward()
    assert param.grad is not None
    grad = param.grad
    assert bool((grad != 0).all())
    assert torch.allclose(grad, grad[:, :, :1, :1].expand_as(grad))


def test_rows_count_their_own_steps() -> None:
    """Example 0 takes three steps and example 1 one: only example 0 is past view_from = 2."""
    x, j = _case()
    model = Recording((1, 4, 4))
    loss = _loss(model, x, view_from=2)
    for rows in ([0, 1], [0], [0, 1]):
        loss((j[rows].clone().requires_grad_(),), torch.tensor(rows))
    last = model.seen[-1]
    assert torch.equal(last[0, ..., :2], x[0, ..., :2])
    assert torch.equal(last[1], j[1])


def test_with_groups_a_group_is_seen_whole_by_its_mean_change() -> None:
    """Two groups over the 4 x 4 image, halves of each column pair: the group whose
    mean change is below epsilon is unseen, the other is seen with its own values."""
    x, j = _case()
    j[..., 0, 0] = x[..., 0, 0] - 0.03  # one large change in the left group: mean 0.0081
    feature_mask = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    feature_mask[..., 2:] = 1
    model = Recording((1, 4, 4))
    loss = _loss(model, x, view_from=0, feature_mask=feature_mask)
    loss((j.clone().requires_grad_(),), torch.arange(2))
    assert torch.equal(model.seen[0][..., :2], x[..., :2])
    assert torch.equal(model.seen[0][..., 2:], j[..., 2:])


def test_preserve_mode_and_view_all_always_see_j() -> None:
    x, j = _case()
    for kwargs in (dict(view_from=0, mode="preserve"), dict(view_from=None)):
        model = Recording((1, 4, 4))
        loss = _loss(model, x, **kwargs)  # type: ignore[arg-type]
        loss((j.clone().requires_grad_(),), torch.arange(2))
        assert torch.equal(model.seen[0], j)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.floats(-0.05, 0.05), min_size=16, max_size=16))
def test_the_seen_input_is_j_on_the_mask_and_i_elsewhere(changes: list[float]) -> None:
    x = torch.full((1, 1, 4, 4), 0.5)
    j = x + torch.tensor(changes).view(1, 1, 4, 4)
    model = Recording((1, 4, 4))
    _loss(model, x, view_from=0)((j.clone().requires_grad_(),), torch.arange(1))
    on_mask = (j - x).abs() >= EPSILON
    assert torch.equal(model.seen[0][on_mask], j[on_mask])
    assert torch.equal(model.seen[0][~on_mask], x[~on_mask])


class TwoInputs(torch.nn.Module):
    """Class-1 logit: the sum of an image ``N x 1 x 4 x 4`` and a table ``N x 3``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        self.seen.append((image.detach().clone(), table.detach().clone()))
        z1 = image.flatten(1).sum(1) + table.sum(1)
        return torch.stack([torch.zeros_like(z1), z1], 1)


def test_tuple_inputs_are_each_seen_through_their_own_mask() -> None:
    x, j = _case()
    table = torch.full((2, 3), 0.5)
    moved = table + torch.tensor([0.002, 0.02, -0.03])
    model = TwoInputs()
    scored, _ = ScoredModel.build(model, (x, table), (), 1, "softmax")
    loss = Phase1Loss(
        scored, (x, table), sparsity_weight=1.0, tv_weight=0.0, release_weight=0.0, gamma=30.0,
        epsilon=EPSILON, dims=((2, 3), ()), groups=None, mode="destroy", objective="log_odds",
        reference=None, dual_step=1.25, warmup=0, view_from=0,
    )
    loss((j.clone().requires_grad_(), moved.clone().requires_grad_()), torch.arange(2))
    image, row = model.seen[-1]
    assert torch.equal(image, torch.where((j - x).abs() >= EPSILON, j, x))
    assert torch.equal(row[:, 0], table[:, 0]) and torch.equal(row[:, 1:], moved[:, 1:])
