"""Phase 1's loss (release term, per-example multiplier) and component pruning,
on hand-set models whose exact explanation is known."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from captum_regadv import RegularizedAdversarial
from captum_regadv._components import prune_components
from captum_regadv._forward import ScoredModel
from captum_regadv._phase1_loss import Phase1Loss

from conftest import RegionModel, region_weight


class AnyBrightModel(torch.nn.Module):
    """Class 1 fires when *any* element of the evidence is bright: its logit is
    ``20 * (0.05 * logsumexp(x / 0.05) over the evidence - 0.5)``, a smooth
    maximum. Destroying it needs every evidence element darkened, and nothing
    else: the exact explanation is the evidence itself."""

    def __init__(self, evidence: Tensor) -> None:
        super().__init__()
        self.register_buffer("evidence", evidence.clone())

    def forward(self, x: Tensor) -> Tensor:
        values = torch.where(self.evidence, x, torch.full_like(x, -10.0)).flatten(1)
        z1 = 20.0 * (0.05 * torch.logsumexp(values / 0.05, dim=1) - 0.5)
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def _case(evidence: Tensor, n: int = 2) -> tuple[AnyBrightModel, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand((n,) + tuple(evidence.shape), generator=g)
    x = torch.where(evidence, 0.8 + 0.1 * torch.rand(x.shape, generator=g), x)
    return AnyBrightModel(evidence).eval(), x


def _p1(model: torch.nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return torch.softmax(model(x), 1)[:, 1]


def test_two_separate_patches_both_needed_give_exactly_both_patches() -> None:
    evidence = torch.zeros(1, 16, 16, dtype=torch.bool)
    evidence[:, 2:5, 2:5] = True
    evidence[:, 10:13, 9:12] = True
    model, x = _case(evidence)
    assert bool((_p1(model, x) > 0.99).all())
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), return_perturbed=True
    )
    assert torch.equal(mask.bool(), evidence.expand_as(x))
    assert bool((_p1(model, j) < 0.5).all())


def test_evidence_along_a_one_pixel_line_gives_the_line_and_nothing_beside_it() -> None:
    evidence = torch.zeros(1, 16, 16, dtype=torch.bool)
    evidence[:, 8, 3:13] = True
    model, x = _case(evidence)
    mask = RegularizedAdversarial(model).attribute(x, target=1, bounds=(0, 1))
    assert torch.equal(mask.bool(), evidence.expand_as(x))


def _loss(model: torch.nn.Module, x: Tensor, **options: float) -> Phase1Loss:
    scored, _ = ScoredModel.build(model, (x,), (), 1, "auto", None, differentiable=True)
    settings = dict(
        sparsity_weight=40.0, tv_weight=0.0, release_weight=1.5, gamma=30.0, epsilon=0.01,
        dims=((2, 3),), groups=None, mode="destroy", objective="log_odds", reference=None,
        dual_step=1.25, warmup=2,
    )
    settings.update(options)
    return Phase1Loss(scored, (x,), **settings)  # type: ignore[arg-type]


def test_release_term_keeps_pulling_where_the_soft_support_has_saturated() -> None:
    """At a change of 0.3 (30 epsilon) the soft support's gradient is below
    1e-3 of its value at epsilon (``gamma / 2`` per unit of S); the release
    term adds ``rho * alpha / (N (epsilon + 0.3))``, the log penalty's exact
    derivative, hundreds of times what is left of the soft support's."""
    model = RegionModel(region_weight((1, 4, 4), (slice(None), slice(0, 1), slice(0, 1))))
    x = torch.full((1, 1, 4, 4), 0.5)
    j = (x + 0.3).requires_grad_(True)
    rows = torch.arange(1)
    grads = {}
    for release in (0.0, 1.5):
        loss = _loss(model, x, release_weight=release, dual_step=1.0)
        (g,) = torch.autograd.grad(loss._regularisers((j,), rows).sum(), (j,))
        grads[release] = g[0, 0, 3, 3]
    at_epsilon = 40.0 / 16 * 30.0 / 2
    assert 0 < float(grads[0.0]) < 1e-3 * at_epsilon
    expected = 1.5 * 40.0 / 16 / (0.01 + 0.3)
    assert math.isclose(float(grads[1.5] - grads[0.0]), expected, rel_tol=1e-4)


def test_multiplier_rises_while_the_class_survives_and_falls_back_once_destroyed() -> None:
    model = RegionModel(
        region_weight((1, 2, 2), (slice(None), slice(0, 1), slice(0, 1))), bias=0.5
    )
    alive, dead = torch.full((1, 1, 2, 2), 0.9), torch.zeros(1, 1, 2, 2)
    x = torch.cat([alive, dead])
    loss = _loss(model, x)
    rows = torch.arange(2)
    for _ in range(2):  # warm-up: no change
        loss((x.clone().requires_grad_(True),), rows)
    assert loss.multiplier.tolist() == [1.0, 1.0]
    for _ in range(3):
        loss((x.clone().requires_grad_(True),), rows)
    assert torch.allclose(loss.multiplier, torch.tensor([1.25**3, 1.0]))
    with torch.no_grad():  # the evaluation of the last iterate is no step
        loss((x,), rows)
    assert torch.allclose(loss.multiplier, torch.tensor([1.25**3, 1.0]))
    for _ in range(5):
        loss((dead.expand(2, -1, -1, -1).clone().requires_grad_(True),), rows)
    assert loss.multiplier.tolist() == [1.0, 1.0]


def test_component_pruning_drops_a_fragment_the_attack_does_not_need() -> None:
    """The 3x3 patch carries the evidence (RegionModel); a lone element at (1, 14)
    changed by J costs L0 and TV and lowers no score: it goes, the patch stays."""
    patch = (slice(None), slice(6, 9), slice(6, 9))
    model = RegionModel(region_weight((1, 16, 16), patch), scale=10.0, bias=0.5).eval()
    x = torch.full((2, 1, 16, 16), 0.2)
    x[(slice(None),) + patch] = 0.8
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[(slice(None),) + patch] = True
    masks = truth.clone()
    masks[:, :, 1, 14] = True
    j = torch.where(masks, torch.zeros_like(x), x)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "auto", None)
    new_masks, new_j, forwards, _ = prune_components(
        scored, (x,), (masks,), (j,), count=8, dims=((2, 3),), chunk=None
    )
    assert torch.equal(new_masks[0], truth)
    assert torch.equal(new_j[0], torch.where(truth, j, x))
    assert forwards.tolist() == [3, 3]  # the mask as it was, and each of its 2 parts removed
    # a part that is needed stays: without the patch the class comes back
    only_patch, _, _, _ = prune_components(
        scored, (x,), (truth,), (torch.where(truth, torch.zeros_like(x), x),), count=8,
        dims=((2, 3),), chunk=1,
    )
    assert torch.equal(only_patch[0], truth)


def _reference_regularisers(
    x: Tensor, j: Tensor, dims: tuple[int, ...], sign: float, release: float
) -> Tensor:
    """The regularisers written term by term, differentiated by autograd."""
    n_elements = x[0].numel()
    s = torch.tanh(15.0 * ((x - j).abs() - 0.01))
    value = sign * 40.0 / n_elements * s.flatten(1).sum(1)
    value = value + release * 40.0 / n_elements * torch.log1p((x - j).abs() / 0.01).flatten(1).sum(1)
    for d in dims:
        diff = s.narrow(d, 1, s.shape[d] - 1) - s.narrow(d, 0, s.shape[d] - 1)
        value = value + 120.0 / n_elements * diff.abs().flatten(1).sum(1)
    return value


def test_fused_regularisers_match_autograd_of_the_written_out_terms() -> None:
    """Values and gradients (weighted per example) of the one-pass regulariser
    equal autograd's on the terms written out, in both modes, on images,
    volumes with a one-voxel-deep dimension and tabular rows."""
    g = torch.Generator().manual_seed(3)
    cases = [((3, 2, 9, 7), (2, 3)), ((2, 1, 1, 5, 6), (2, 3, 4)), ((4, 6), ())]
    for shape, dims in cases:
        x = torch.rand(shape, generator=g, dtype=torch.float64)
        step = 0.05 * torch.randn(shape, generator=g, dtype=torch.float64)
        step[..., 0] = 0.0  # unchanged elements: |d| = 0
        j = (x + step).requires_grad_(True)
        weights = torch.rand(shape[0], generator=g, dtype=torch.float64)
        rows = torch.arange(shape[0])
        for mode, sign, release in (("destroy", 1.0, 1.5), ("preserve", -1.0, 0.0)):
            loss = _loss(RegionModel(torch.ones(shape[1:])), x, tv_weight=120.0, mode=mode,
                         dims=(dims,), dual_step=1.0)
            value = loss._regularisers((j,), rows)
            (grad,) = torch.autograd.grad((weights * value).sum(), (j,))
            expected = _reference_regularisers(x, j, dims, sign, release)
            (expected_grad,) = torch.autograd.grad((weights * expected).sum(), (j,))
            torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
            with torch.no_grad():
                torch.testing.assert_close(loss._regularisers((j,), rows), expected.detach())


class DarkRegionModel(torch.nn.Module):
    """Evidence that is the *absence* of something: class 1 fires while every
    element of ``region`` stays dark. Its logit is ``20 * (0.5 - smooth max of
    x over the region)``, so one element of the region brightened above 0.5
    destroys it."""

    def __init__(self, region: Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.clone())

    def forward(self, x: Tensor) -> Tensor:
        values = torch.where(self.region, x, torch.full_like(x, -10.0)).flatten(1)
        z1 = 20.0 * (0.5 - 0.05 * torch.logsumexp(values / 0.05, dim=1))
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def test_absence_evidence_gives_a_small_mask_inside_the_dark_region_brightened() -> None:
    """What the mask shows when the evidence is an absence (docs/method.md,
    "What the mask shows"): the elements where a change destroys the class,
    here a few elements *inside* the dark region (not the whole region, and
    nothing outside it), and ``J - I`` is positive there: something was added."""
    region = torch.zeros(1, 16, 16, dtype=torch.bool)
    region[:, 5:10, 6:11] = True
    g = torch.Generator().manual_seed(1)
    x = 0.5 + 0.4 * torch.rand(2, 1, 16, 16, generator=g)
    x = torch.where(region, 0.05 * torch.rand(x.shape, generator=g), x)
    model = DarkRegionModel(region).eval()
    assert bool((_p1(model, x) > 0.99).all())
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), return_perturbed=True
    )
    inside = mask.bool() & region
    assert bool((_p1(model, j) < 0.5).all())
    assert not bool((mask.bool() & ~region).any())  # nothing outside the region
    per_example = inside.flatten(1).sum(1)
    assert bool(((per_example >= 1) & (per_example <= 4)).all())  # a few of its 25 pixels
    assert bool(((j - x)[inside] > 0.3).all())  # brightened: something added


def test_steps_stretch_only_after_the_class_survived_ten_steps_of_dual_ascent() -> None:
    """k = log(lambda) / log(1.25) surviving steps: factor 1 up to k = 10, then
    doubling every 6 steps, at most 4; without dual ascent always 1."""
    model = RegionModel(region_weight((1, 2, 2), (slice(None), slice(0, 1), slice(0, 1))))
    x = torch.full((5, 1, 2, 2), 0.9)
    loss = _loss(model, x)
    loss.multiplier = torch.tensor([1.0, 1.25**10, 1.25**16, 1.25**22, 1.25**40])
    torch.testing.assert_close(
        loss.step_scale(torch.arange(5)), torch.tensor([1.0, 1.0, 2.0, 4.0, 4.0])
    )
    torch.testing.assert_close(loss.step_scale(torch.tensor([2])), torch.tensor([2.0]))
    frozen = _loss(model, x, dual_step=1.0)
    frozen.multiplier = torch.full((5,), 1.25**40)
    assert frozen.step_scale(torch.arange(5)).tolist() == [1.0] * 5
