"""Phase 2 that shrinks the mask while it attacks (``shrink_rate``)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv import RegularizedAdversarial
from captum_regadv._boundary import loop_settings, resolve_bounds
from captum_regadv._forward import ScoredModel
from captum_regadv._groups import resolve_groups
from captum_regadv._need import smooth_over_space
from captum_regadv._components import component_labels
from captum_regadv._shrinking import (
    attack_while_shrinking,
    release_least_needed,
    share_of_component_peak,
)

from conftest import RegionModel, region_weight

PATCH = (slice(None), slice(None), slice(6, 9), slice(6, 9))
BLOCK = (slice(None), slice(None), slice(5, 10), slice(5, 10))


def _patch_case(n: int = 3, channels: int = 1) -> tuple[RegionModel, torch.Tensor]:
    """Class-1 logit 10 (sum over the 3x3 patch of channel 0 - 0.5): the class
    falls only when the whole patch is darkened to about 0.05."""
    g = torch.Generator().manual_seed(0)
    weight = torch.zeros(channels, 16, 16)
    weight[0, 6:9, 6:9] = 1.0
    model = RegionModel(weight, scale=10.0, bias=0.5).eval()
    x = 0.5 * torch.rand(n, channels, 16, 16, generator=g)
    x[PATCH] = 0.7 + 0.2 * torch.rand(n, channels, 3, 3, generator=g)
    return model, x


def _shrink(model, x, mask, start, *, rate, steps=40, groups=None):
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    loop = loop_settings(optimizer=None, lr=0.1, steps=steps, patience=None, rel_tol=1e-3,
                         internal_batch_size=2)
    dims = ((2, 3),)
    weight = smooth_over_space(((start - x).abs(),), dims)
    return attack_while_shrinking(
        scored, (x,), (mask,), (start,), resolve_bounds((0.0, 1.0), (x,)), loop, rate=rate,
        weight=weight, dims=dims, groups=groups,
        objective="log_odds",
    )


def _probability(model, j):
    return torch.softmax(model(j), 1)[:, 1]


def test_a_ring_the_attack_does_not_need_is_released() -> None:
    """Phase 1 moved the patch and a ring of 16 pixels around it (by 0.1): with
    the shrinking, the kept mask is exactly the patch and the class is destroyed;
    without it (rate 0) the ring stays."""
    model, x = _patch_case()
    block = torch.zeros_like(x, dtype=torch.bool)
    block[BLOCK] = True
    patch = torch.zeros_like(block)
    patch[PATCH] = True
    start = torch.where(block, (x - 0.1).clamp(min=0.0), x)
    shrunk = _shrink(model, x, block, start, rate=0.1)
    (mask,), (j,) = shrunk.masks, shrunk.best
    assert torch.equal(mask, patch)
    assert torch.equal(j[~patch], x[~patch])
    assert bool((_probability(model, j) < 0.5).all())
    assert shrunk.steps_run.tolist() == [40] * 3 and shrunk.evaluations.tolist() == [1] * 3
    (kept,) = _shrink(model, x, block, start, rate=0.0).masks
    assert torch.equal(kept, block)


def test_a_release_that_brings_the_class_back_is_never_kept() -> None:
    """Every patch pixel is needed: releasing any one leaves the class standing.
    The mask is the patch alone, and a rate of 0.2 releases one pixel per
    destroyed step; the kept iterate is the whole patch, with the class destroyed."""
    model, x = _patch_case()
    patch = torch.zeros_like(x, dtype=torch.bool)
    patch[PATCH] = True
    shrunk = _shrink(model, x, patch, x, rate=0.2)
    (mask,), (j,) = shrunk.masks, shrunk.best
    assert torch.equal(mask, patch)
    assert bool((_probability(model, j) < 0.5).all())


def test_groups_are_released_whole() -> None:
    """RGB pixels as groups (the default for C > 1): the kept mask is constant
    over each pixel's channels, and is the patch's pixels."""
    model, x = _patch_case(2, channels=3)
    block = torch.zeros_like(x, dtype=torch.bool)
    block[BLOCK] = True
    start = torch.where(block, (x - 0.1).clamp(min=0.0), x)
    groups = resolve_groups(None, (x,))
    (mask,) = _shrink(model, x, block, start, rate=0.1, groups=groups).masks
    assert torch.equal(mask, mask[:, :1].expand_as(mask))
    expected = torch.zeros_like(mask)
    expected[:, :, 6:9, 6:9] = True
    assert torch.equal(mask, expected)


@settings(max_examples=30, deadline=None)
@given(
    need=st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6),
    inside=st.lists(st.booleans(), min_size=6, max_size=6),
    count=st.integers(0, 7),
)
def test_release_least_needed_drops_exactly_the_lowest(need, inside, count) -> None:
    mask = torch.tensor([inside])
    values = torch.tensor([need])
    (after,) = release_least_needed((mask,), (values,), torch.tensor([count]), None)
    released = mask & ~after
    assert not bool((after & ~mask).any())  # never adds
    assert int(released.sum()) == min(count, int(mask.sum()))
    if bool(released.any()) and bool(after.any()):
        assert float(values[released].max()) <= float(values[after].min())


def test_the_default_explains_the_patch_with_the_counted_passes() -> None:
    """The whole method with the default shrink_rate: exactly the patch, and
    phase 2's steps counted like before (98 forward+backward passes)."""
    model, x = _patch_case(4)
    patch = torch.zeros_like(x, dtype=torch.bool)
    patch[PATCH] = True
    explainer = RegularizedAdversarial(model)
    mask = explainer.attribute(x, target=1, bounds=(0, 1))
    assert torch.equal(mask.bool(), patch)
    assert explainer.last_diagnostics.passes.tolist() == [98] * 4


def test_every_component_shrinks_in_proportion() -> None:
    """Two parts, one with 20 times the need of the other: the plain ranking
    would release the weak part first; per-component shares release the
    least needed element of each."""
    mask = torch.tensor([[[True, True, True, True, False, True, True, True]]])
    need = torch.tensor([[[8.0, 6.0, 4.0, 2.0, 0.0, 0.4, 0.35, 0.16]]])
    labels = component_labels((mask,), ((2,),))
    assert labels[0].tolist() == [[[1, 1, 1, 1, 0, 2, 2, 2]]]
    (plain,) = release_least_needed((mask,), (need,), torch.tensor([2]), None)
    assert plain.tolist() == [[[True, True, True, True, False, True, False, False]]]
    shares = share_of_component_peak((need,), labels)
    (shared,) = release_least_needed((mask,), shares, torch.tensor([2]), None)
    assert shared.tolist() == [[[True, True, True, False, False, True, True, False]]]


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 100.0)), min_size=8, max_size=8),
    bits=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_shares_peak_at_one_in_every_component(values, bits) -> None:
    mask = torch.tensor([[bits]])
    labels = component_labels((mask,), ((2,),))
    (shares,) = share_of_component_peak((torch.tensor([[values]]),), labels)
    for c in range(1, int(labels[0].max()) + 1):
        part = shares[labels[0] == c]
        assert float(part.min()) >= 0.0 and float(part.max()) <= 1.0
        peak = max(v for v, lab in zip(values, labels[0].flatten().tolist()) if lab == c)
        if peak > 0:
            assert abs(float(part.max()) - 1.0) < 1e-6
