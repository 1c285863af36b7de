"""Holes of a mask that cost more TV than their size: filled where APE_D is lower."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv import RegularizedAdversarial, ape_d
from captum_regadv._components import Known, change_size, count_parts
from captum_regadv._forward import ScoredModel
from captum_regadv._holes import fill_cheap_holes, fill_holes_if_lower

from conftest import RegionModel

PATCH = (slice(None), slice(6, 9), slice(6, 9))
UNIT = ((torch.tensor(0.0), torch.tensor(1.0)),)
CENTRE = (slice(None), slice(7, 8), slice(7, 8))


def _ring_case(centre_weight: float = 0.0) -> tuple[RegionModel, torch.Tensor, torch.Tensor]:
    """Class-1 logit 10 (sum over the 8 ring pixels of the 3x3 patch 6:9 x 6:9
    + centre_weight * centre - 0.5): the class survives unless the whole ring
    is darkened; the centre carries no evidence (weight 0), so its gradient is
    exactly zero and no step ever moves it."""
    g = torch.Generator().manual_seed(0)
    weight = torch.zeros(1, 16, 16)
    weight[PATCH] = 1.0
    weight[CENTRE] = centre_weight
    model = RegionModel(weight, scale=10.0, bias=0.5).eval()
    x = 0.3 * torch.rand(2, 1, 16, 16, generator=g)
    x[(slice(None),) + PATCH] = 0.7 + 0.2 * torch.rand(2, 1, 3, 3, generator=g)
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[(slice(None),) + PATCH] = True
    return model, x, truth


def _without_hole_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn off phase 1's hole fill and the end fill (the masks pass unchanged)."""
    import captum_regadv._phases as phases
    import captum_regadv._refinement as refinement

    monkeypatch.setattr(phases, "fill_cheap_holes", lambda masks, dims: masks)
    monkeypatch.setattr(
        refinement, "fill_holes_if_lower",
        lambda model, originals, masks, perturbed, bounds, **kw: (
            masks, perturbed, torch.zeros(originals[0].shape[0], dtype=torch.long), kw["known"]
        ),
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_a_centre_no_step_moves_is_filled_and_changed(
    monkeypatch: pytest.MonkeyPatch, channels: int
) -> None:
    """The 8-pixel ring destroys the class; its centre, untouched by every
    optimiser step, is a hole of 4 boundary pairs: filled (9 pixels, TV 12
    instead of 8 pixels, TV 16), J there darkened like its neighbours.
    With 3 channels (the same pixels in each, the model on their mean) the
    default groups (one mask per pixel) fill the centre in every channel.
    Without the hole steps the mask is the ring and APE_D is higher."""
    grey, x, truth = _ring_case()
    weight = grey.weight.detach().expand(channels, 16, 16) / channels
    model = RegionModel(weight, scale=10.0, bias=0.5).eval()
    x, truth = x.repeat(1, channels, 1, 1), truth.repeat(1, channels, 1, 1)
    centre = (slice(None), slice(None)) + CENTRE[1:]
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), return_perturbed=True
    )
    assert torch.equal(mask.bool(), truth)
    assert bool((j[centre] < x[centre]).all())
    assert torch.equal(j != x, truth)  # the mask is the change
    assert bool((torch.softmax(model(j), 1)[:, 1] < 0.5).all())
    with_holes = ape_d(model, x, j, target=1)

    _without_hole_steps(monkeypatch)
    ring_mask, ring_j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), return_perturbed=True
    )
    ring = truth.clone()
    ring[centre] = False
    assert torch.equal(ring_mask.bool(), ring)  # without the step: the ring
    # 1 pixel (C elements) more, 4 boundary pairs (4 C) less over C x 256
    # elements: 3 / 256 lower, the class score aside
    without = ape_d(model, x, ring_j, target=1)
    assert bool((without - with_holes > 2.5 / 256).all())


def test_a_callers_feature_mask_gets_no_hole_steps() -> None:
    """A caller's ``feature_mask`` (here one group per pixel, the same ids as
    the default) keeps its groups as given: no hole is filled, the mask is
    the ring."""
    grey, x, truth = _ring_case()
    model = RegionModel(grey.weight.detach().expand(3, 16, 16) / 3, scale=10.0, bias=0.5).eval()
    rgb = x.repeat(1, 3, 1, 1)
    ids = torch.arange(256).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    mask = RegularizedAdversarial(model).attribute(rgb, target=1, bounds=(0, 1), feature_mask=ids)
    ring = truth.repeat(1, 3, 1, 1)
    ring[(slice(None), slice(None)) + CENTRE[1:]] = False
    assert torch.equal(mask.bool(), ring)


def test_a_fill_that_restores_the_class_is_not_kept() -> None:
    """Class-1 logit 10 (30 centre - sum_ring x - 6): the evidence is a dark
    ring around a bright centre, destroyed by brightening the ring to 1
    (logit -50). Brightening the centre like its neighbours (to 1) would
    give +160: the filled mask leaves the class standing and the mask is
    returned as it was, after one forward pass per example with a hole."""
    weight = torch.zeros(1, 16, 16)
    weight[PATCH] = -1.0
    weight[CENTRE] = 30.0
    model = RegionModel(weight, scale=10.0, bias=6.0).eval()
    x = torch.full((2, 1, 16, 16), 0.2)
    x[(slice(None),) + CENTRE] = 0.3
    ring = torch.zeros_like(x, dtype=torch.bool)
    ring[(slice(None),) + PATCH] = True
    ring[(slice(None),) + CENTRE] = False
    ring[1] = False  # example 1: an empty mask, no hole, no pass
    j = torch.where(ring, torch.ones_like(x), x)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    masks, perturbed, spent, known = fill_holes_if_lower(
        scored, (x,), (ring,), (j,), UNIT, dims=((2, 3),), chunk=None,
        known=Known.nothing(2, x.device),
    )
    assert torch.equal(masks[0], ring) and torch.equal(perturbed[0], j)
    # example 0: the filled candidate and the unknown mask as it was, scored once each
    assert spent.tolist() == [2, 0]
    assert bool(known.scores[0] < 0.5) and bool(torch.isnan(known.values[1]))


def test_a_fill_with_a_known_score_costs_one_pass() -> None:
    model, x, truth = _ring_case()
    ring = truth.clone()
    ring[(slice(None), 0) + CENTRE[1:]] = False
    j = torch.where(ring, torch.zeros_like(x), x)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    before = ape_d(model, x, j, target=1).to(torch.float64)
    masks, perturbed, spent, known = fill_holes_if_lower(
        scored, (x,), (ring,), (j,), UNIT, dims=((2, 3),), chunk=1,
        known=Known(before, torch.zeros(2, dtype=torch.float64)),
    )
    assert torch.equal(masks[0], truth) and spent.tolist() == [1, 1]
    # the centre takes the mean change of its 4 neighbours (darkened to 0), clipped to 0
    centre = (slice(None), 0, 7, 7)
    neighbours = (x[:, 0, 6, 7] + x[:, 0, 8, 7] + x[:, 0, 7, 6] + x[:, 0, 7, 8]) / 4
    expected = torch.where(ring, torch.zeros_like(x), x)
    expected[centre] = (x[centre] - neighbours).clamp(0.0, 1.0)
    assert torch.equal(perturbed[0], expected) and bool((expected[centre] != x[centre]).all())
    after = ape_d(model, x, perturbed[0], target=1).to(torch.float64)
    torch.testing.assert_close(known.values, after)
    assert bool((after < before).all())


def test_holes_fill_from_their_border_inwards() -> None:
    """A 3x3 hole (9 elements, 12 boundary pairs) in a 7x7 block: filled; the
    centre, with no neighbour in the mask, takes the mean of the ring filled first."""
    x = torch.zeros(1, 1, 9, 9)
    block = torch.zeros_like(x, dtype=torch.bool)
    block[:, :, 1:8, 1:8] = True
    block[:, :, 3:6, 3:6] = False
    j = torch.where(block, torch.full_like(x, 0.5), x)
    model = RegionModel(torch.zeros(1, 9, 9), bias=-1.0)  # z1 = 10 > 0: never destroyed
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    _, perturbed, _, _ = fill_holes_if_lower(
        scored, (x,), (block,), (j,), UNIT, dims=((2, 3),), chunk=None, known=Known.nothing(1, x.device)
    )
    # undestroyed either way: kept as it was (scores tie, the fill is not lower)
    assert torch.equal(perturbed[0], j)
    filled = fill_cheap_holes((block,), ((2, 3),))[0]
    assert bool(filled[:, :, 1:8, 1:8].all()) and int(filled.sum()) == 49


def test_only_cheap_enclosed_holes_are_filled_per_channel_and_in_3d() -> None:
    two = torch.ones(1, 2, 6, 6, dtype=torch.bool)
    two[0, 0, 2, 2] = False  # 1 pixel: filled
    two[0, 1, 1:5, 1:5] = False  # 4x4 in channel 1: 16 elements, 16 pairs: kept
    out = fill_cheap_holes((two,), ((2, 3),))[0]
    assert bool(out[0, 0].all()) and torch.equal(out[0, 1], two[0, 1])
    notch = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    notch[0, 0, 0, 2] = False  # touches the border: not a hole
    assert torch.equal(fill_cheap_holes((notch,), ((2, 3),))[0], notch)
    cube = torch.ones(1, 1, 3, 3, 3, dtype=torch.bool)
    cube[0, 0, 1, 1, 1] = False  # 1 voxel, 6 face pairs
    assert bool(fill_cheap_holes((cube,), ((2, 3, 4),))[0].all())
    table = torch.tensor([[True, False, True]])
    assert torch.equal(fill_cheap_holes((table,), ((),))[0], table)  # no spatial dims


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), density=st.floats(0.3, 0.9))
def test_filling_never_raises_l0_plus_tv_nor_adds_parts(seed: int, density: float) -> None:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(2, 1, 10, 12, generator=g) < density
    filled = fill_cheap_holes((mask,), ((2, 3),))[0]
    assert bool((filled | ~mask).all())  # only adds
    assert bool((change_size((filled,), ((2, 3),)) <= change_size((mask,), ((2, 3),))).all())
    assert not bool((filled & ~mask)[..., 0, :].any() or (filled & ~mask)[..., -1].any())
    for k in range(2):
        # a hole between parts may join them (seed 280: 4 -> 3), never split one
        assert count_parts((filled,), ((2, 3),), k) <= count_parts((mask,), ((2, 3),), k)
    assert torch.equal(fill_cheap_holes((filled,), ((2, 3),))[0], filled)  # idempotent
