"""The refinement: the smallest part of the mask that keeps the class destroyed."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv import RegularizedAdversarial
from captum_regadv._forward import ScoredModel
from captum_regadv._components import count_parts
from captum_regadv._refinement import candidate_fractions, prune_mask
from captum_regadv._trim import TRIM_DEEP_SHARE, TRIM_SHARE, trim_small_changes

from conftest import RegionModel, region_weight

PATCH = (slice(None), slice(6, 9), slice(6, 9))


def _patch_case(n: int = 4) -> tuple[RegionModel, torch.Tensor, torch.Tensor]:
    """Class-1 evidence is exactly the 3x3 patch 6:9 x 6:9; the class survives
    unless the whole patch is darkened (z1 = 10 (sum_patch x - 0.5))."""
    g = torch.Generator().manual_seed(0)
    model = RegionModel(region_weight((1, 16, 16), PATCH), scale=10.0, bias=0.5).eval()
    x = 0.5 * torch.rand(n, 1, 16, 16, generator=g)
    x[(slice(None),) + PATCH] = 0.7 + 0.2 * torch.rand(n, 1, 3, 3, generator=g)
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[(slice(None),) + PATCH] = True
    return model, x, truth


def test_defaults_give_exactly_the_patch() -> None:
    model, x, truth = _patch_case()
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), return_perturbed=True
    )
    assert torch.equal(mask.bool(), truth)
    assert bool((torch.softmax(model(j), 1)[:, 1] < 0.5).all())


def test_refinement_drops_a_ring_the_attack_does_not_need() -> None:
    """A mask of the patch plus a ring of 16 pixels, with J darkening all of it:
    the refinement keeps the patch only (ranked first: the larger change).
    The coarse grid alone (25 units: 25, 17, 11, 7, ...) stops at 11 units,
    the patch and two ring pixels; the fine grid between 7 and 17 finds 9."""
    model, x, truth = _patch_case()
    ring = torch.zeros_like(truth)
    ring[:, :, 5:10, 5:10] = True
    j = torch.where(ring, torch.zeros_like(x), x)
    ranking = torch.where(truth, 1.0, 0.5) * ring
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    kwargs = dict(fractions=candidate_fractions(8, 0.05), dims=((2, 3),), ranking=(ranking,))
    (coarse,), _ = prune_mask(scored, (x,), (ring,), (j,), chunk=5, fine=0, **kwargs)
    assert coarse.flatten(1).sum(1).tolist() == [11] * 4 and bool(coarse[truth].all())
    (mask,), (refined,) = prune_mask(scored, (x,), (ring,), (j,), chunk=5, fine=8, **kwargs)
    assert torch.equal(mask, truth)
    assert torch.equal(refined, torch.where(truth, j, x))


def _patch_with_halo(halo_change: float) -> tuple:
    """The patch darkened to 0 and the 3 pixels right of it moved by
    ``halo_change``, all in the mask: a polished ``J`` whose halo the attack
    no longer needs (the patch model ignores it)."""
    model, x, truth = _patch_case(2)
    halo = torch.zeros_like(truth)
    halo[:, :, 6:9, 9] = True
    mask = truth | halo
    j = torch.where(truth, torch.zeros_like(x), x)
    j = torch.where(halo, (x + halo_change).clamp(max=1.0), j)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    return scored, x, truth, mask, j


def test_trim_drops_a_halo_of_small_changes_and_says_what_it_cost() -> None:
    scored, x, truth, mask, j = _patch_with_halo(0.05)
    (trimmed,), (jt,), forwards, known = trim_small_changes(
        scored, (x,), (mask,), (j,), dims=((2, 3),), chunk=None
    )
    assert torch.equal(trimmed, truth)  # the largest ratio of changes: patch | halo
    assert torch.equal(jt, torch.where(truth, j, x))
    assert forwards.tolist() == [3, 3]  # the mask as it is and two cuts
    # what it returns as known is the kept mask's score, as the pruning would compute it
    from captum_regadv._components import score_masks

    rows = torch.arange(2)
    values, scores = score_masks(scored, (x,), (jt,), rows, (trimmed,), ((2, 3),), None)
    assert torch.allclose(known.values, values) and torch.allclose(known.scores, scores)
    assert torch.allclose(known.scores, torch.softmax(scored.forward_func(jt), 1)[:, 1].double())


def test_trim_keeps_small_changes_the_class_needs() -> None:
    """Class-1 logit 10 (sum_patch x + 20 sum_halo x - 22.7): 25 at I; darkening
    the 3 halo pixels by 0.05 each gives -5, two of them +5. Every cut leaves
    the class standing, so the trim keeps the whole (small-change) mask."""
    weight = region_weight((1, 16, 16), PATCH)
    weight[:, 6:9, 9] = 20.0
    model = RegionModel(weight, scale=10.0, bias=22.7).eval()
    x = torch.full((1, 1, 16, 16), 0.3)
    x[(slice(None),) + PATCH] = 0.8
    halo = torch.zeros_like(x, dtype=torch.bool)
    halo[:, :, 6:9, 9] = True
    j = x.clone()
    j[:, :, 6:9, 9] = x[:, :, 6:9, 9] - torch.tensor([0.06, 0.05, 0.04])
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    assert float(torch.softmax(model(j), 1)[0, 1]) < 0.01
    (kept,), (jk,), forwards, _ = trim_small_changes(
        scored, (x,), (halo,), (j,), dims=((2, 3),), chunk=None
    )
    assert torch.equal(kept, halo) and torch.equal(jk, j) and forwards.tolist() == [3]


def test_trim_cuts_deeper_where_the_mask_stays_in_one_part() -> None:
    """A halo of 8 small changes around the 3x3 patch (right column and bottom
    row, touching it) is 47% of the mask, more than TRIM_SHARE: the cut at the
    largest ratio drops it, leaves one part, and is taken (the patch alone
    destroys the class)."""
    model, x, truth = _patch_case(2)
    halo = torch.zeros_like(truth)
    halo[:, :, 5:10, 9] = True
    halo[:, :, 9, 6:9] = True
    mask = truth | halo
    assert 8 / 17 > TRIM_SHARE and 8 / 17 <= TRIM_DEEP_SHARE
    j = torch.where(truth, torch.zeros_like(x), torch.where(halo, x + 0.05, x))
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    (trimmed,), (jt,), forwards, _ = trim_small_changes(
        scored, (x,), (mask,), (j,), dims=((2, 3),), chunk=None
    )
    assert torch.equal(trimmed, truth) and torch.equal(jt, torch.where(truth, j, x))
    assert forwards.tolist() == [3, 3]


def test_trim_does_not_cut_deep_where_the_cut_splits_the_mask() -> None:
    """The patch and a pixel 5 away, joined by a bridge of 7 small changes that
    the model ignores; the class falls only when both are darkened. Keeping the
    patch and the pixel scores best, but drops 41% of the mask (more than
    TRIM_SHARE) and splits it in two: it is no candidate, and the trim keeps at
    least 1 - TRIM_SHARE of the mask."""
    weight = region_weight((1, 16, 16), PATCH)
    weight[0, 10, 13] = 5.0
    model = RegionModel(weight, scale=10.0, bias=3.5).eval()
    x = torch.full((1, 1, 16, 16), 0.3)
    x[(slice(None),) + PATCH] = 0.8
    x[0, 0, 10, 13] = 0.8
    evidence = torch.zeros_like(x, dtype=torch.bool)
    evidence[(slice(None),) + PATCH] = True
    evidence[0, 0, 10, 13] = True
    bridge = torch.zeros_like(evidence)
    bridge[0, 0, 7, 9:14] = True
    bridge[0, 0, 8:10, 13] = True
    mask = evidence | bridge
    assert count_parts((mask,), ((2, 3),), 0) == 1 and count_parts((evidence,), ((2, 3),), 0) == 2
    j = torch.where(evidence, torch.zeros_like(x), torch.where(bridge, x + 0.05, x))
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    from captum_regadv._components import score_masks

    rows = torch.zeros(1, dtype=torch.long)
    whole = score_masks(scored, (x,), (j,), rows, (mask,), ((2, 3),), None)[0]
    split = score_masks(scored, (x,), (j,), rows, (evidence,), ((2, 3),), None)[0]
    assert float(split) < float(whole) < 1.0  # the split would win, and both destroy
    (trimmed,), (jt,), _, _ = trim_small_changes(
        scored, (x,), (mask,), (j,), dims=((2, 3),), chunk=None
    )
    assert not torch.equal(trimmed, evidence) and bool((trimmed <= mask).all())
    assert int(trimmed.sum()) >= math.ceil((1 - TRIM_SHARE) * int(mask.sum()))
    assert torch.equal(jt, torch.where(trimmed, j, x))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.2, 0.9))
def test_a_deep_trim_never_splits_the_mask(seed, density) -> None:
    """Random 2-D masks and changes: the trimmed mask keeps the top of the
    ranking, at least 1 - TRIM_SHARE of the mask or, where it keeps less, at
    least 1 - TRIM_DEEP_SHARE in no more connected parts; APE_D terms no higher."""
    from captum_regadv._components import score_masks

    g = torch.Generator().manual_seed(seed)
    model = RegionModel(torch.randn(1, 6, 6, generator=g), scale=1.0, bias=0.0).eval()
    x = 0.5 * torch.ones(1, 1, 6, 6)
    mask = torch.rand(1, 1, 6, 6, generator=g) < density
    mask[0, 0, 0, 0] = True
    change = torch.rand(1, 1, 6, 6, generator=g) ** 4  # wide spread: large ratios
    j = torch.where(mask, x - 0.5 * change.clamp(min=1e-3), x)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    (trimmed,), (jt,), _, _ = trim_small_changes(
        scored, (x,), (mask,), (j,), dims=((2, 3),), chunk=None)
    m, kept = int(mask.sum()), int(trimmed.sum())
    assert bool((trimmed <= mask).all())
    if kept < -(-(1 - TRIM_SHARE) * m // 1):
        assert kept >= -(-(1 - TRIM_DEEP_SHARE) * m // 1)
        assert count_parts((trimmed,), ((2, 3),), 0) <= count_parts((mask,), ((2, 3),), 0)
    rows = torch.zeros(1, dtype=torch.long)
    before = score_masks(scored, (x,), (j,), rows, (mask,), ((2, 3),), None)[0]
    after = score_masks(scored, (x,), (jt,), rows, (trimmed,), ((2, 3),), None)[0]
    assert float(after) <= float(before)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.001, 1.0), min_size=1, max_size=30), st.integers(0, 2**31 - 1))
def test_trim_drops_at_most_its_share_and_never_scores_worse(changes, seed) -> None:
    """Whatever the changes, the trimmed mask keeps the top of the ranking by
    |J - I|, at least 1 - TRIM_SHARE of the units, and APE_D terms no higher."""
    from captum_regadv._components import score_masks

    g = torch.Generator().manual_seed(seed)
    m = len(changes)
    model = RegionModel(torch.randn(40, generator=g), scale=1.0, bias=0.0).eval()
    x = 0.5 * torch.ones(1, 40)
    mask = torch.zeros(1, 40, dtype=torch.bool)
    mask[0, :m] = True
    j = x.clone()
    j[0, :m] = 0.5 - 0.5 * torch.tensor(changes)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    (trimmed,), (jt,), forwards, known = trim_small_changes(
        scored, (x,), (mask,), (j,), dims=((),), chunk=None)
    assert bool(known.values.isnan().all()) == (forwards.item() == 0)
    assert bool(known.scores.isnan().all()) == (forwards.item() == 0)
    kept = int(trimmed.sum())
    assert kept >= min(m, max(1, -(-(1 - TRIM_SHARE) * m // 1)))
    assert bool((trimmed <= mask).all()) and forwards.item() in (0, 3)
    dropped = (mask & ~trimmed)[0, :m]
    if dropped.any():  # only units whose change is below every kept one's
        assert float((j - x).abs()[0, :m][dropped].max()) <= float(
            (j - x).abs()[0, :m][trimmed[0, :m]].min())
    rows = torch.zeros(1, dtype=torch.long)
    before = score_masks(scored, (x,), (j,), rows, (mask,), ((),), None)[0]
    after = score_masks(scored, (x,), (jt,), rows, (trimmed,), ((),), None)[0]
    assert float(after) <= float(before)


def test_refinement_keeps_the_whole_mask_when_every_part_is_needed() -> None:
    model, x, truth = _patch_case(2)
    j = torch.where(truth, torch.zeros_like(x), x)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    (mask,), _ = prune_mask(
        scored, (x,), (truth,), (j,), fractions=candidate_fractions(4, 0.1),
        dims=((2, 3),), chunk=None, ranking=(x,), fine=4,
    )
    assert torch.equal(mask, truth)


def _ten_features(bias: float) -> tuple[ScoredModel, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ten features at 0.9, all in the mask and all set to 0 by ``J``, ranked
    0 first; class-1 logit ``0.5 * (sum(x) - bias)``: keeping ``k`` of them
    changed gives the logit ``0.5 * (9 - 0.9 k - bias)``."""
    model = RegionModel(torch.ones(10), scale=0.5, bias=bias)
    x = torch.full((1, 10), 0.9)
    ranking = torch.arange(10, 0, -1, dtype=torch.float32)[None]
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    return scored, x, torch.zeros_like(x), ranking


def _prune_features(bias: float) -> tuple[int, float]:
    scored, x, j, ranking = _ten_features(bias)
    (mask,), (kept,) = prune_mask(
        scored, (x,), (torch.ones_like(x, dtype=torch.bool),), (j,), ranking=(ranking,),
        fractions=candidate_fractions(10, 0.05), dims=((),), chunk=None, fine=0,
    )
    with torch.no_grad():
        score = torch.softmax(scored.output((kept,), torch.arange(1)), 1)[0, 1]
    return int(mask.sum()), float(score)


def _ape_terms(k: int, bias: float) -> float:
    return k / 10 + float(torch.sigmoid(torch.tensor(0.5 * (9 - 0.9 * k - bias))))


def test_refinement_never_gives_up_the_destruction_for_a_smaller_mask() -> None:
    """With bias 5 the class falls below 0.5 from 5 changed features on, but
    one changed feature has lower APE_D terms (0.925 against 0.932 for six,
    the best destroying candidate): the pruning must keep six, not one."""
    assert _ape_terms(1, 5.0) < min(_ape_terms(k, 5.0) for k in range(5, 11))
    count, score = _prune_features(5.0)
    assert score < 0.5
    assert count == min(range(5, 11), key=lambda k: _ape_terms(k, 5.0)) == 6


def test_when_no_candidate_destroys_the_class_the_lowest_score_is_kept() -> None:
    """With bias -2 no candidate destroys the class; the candidate that lowers
    the score most (all ten features) is kept, not the smallest."""
    count, score = _prune_features(-2.0)
    assert count == 10
    assert abs(score - float(torch.sigmoid(torch.tensor(1.0)))) < 1e-6


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 12), smallest=st.floats(0.01, 1.0))
def test_candidate_fractions_decrease_from_one(count: int, smallest: float) -> None:
    fractions = candidate_fractions(count, smallest)
    assert len(fractions) == count and fractions[0] == 1.0
    assert all(a >= b for a, b in zip(fractions, fractions[1:]))
    if count > 1:
        assert abs(fractions[-1] - smallest) < 1e-9


def test_diagnostics_count_every_pass_of_the_default_schedule() -> None:
    """60 + 20 + 3 x (1 ranking + 5 polish) = 98 forward+backward passes and
    16 + 16 + 13 candidates + 3 for the trim + the final loss of the 5 stages
    + 1 score of the input = 54 forward passes per example (the one-part mask
    gives component pruning nothing to score, and the score of the final J
    is the trim's); one loss history per stage. The regulariser weights
    alone leave the patch model's class standing: the default per-example
    multiplier destroys it within the one run (multiplier > 1), where the
    restart weight search needs a second attempt that costs as much again
    (less the input's score)."""
    from captum_regadv.benchmark.passes import count_passes

    model, x, truth = _patch_case(2)
    explainer = RegularizedAdversarial(model)
    with count_passes(model) as count:
        mask = explainer.attribute(x, target=1, bounds=(0, 1))
    d = explainer.last_diagnostics
    # counted on the model itself: the same, plus the gradient check's one pass
    assert count.forward_only == 2 * 54 and count.forward_backward == 2 * 98 + 2
    assert d.attempts.tolist() == [1, 1] and d.kept_attempt.tolist() == [0, 0]
    assert d.passes.tolist() == [98, 98] and d.forward_passes.tolist() == [54, 54]
    assert bool((d.multiplier > 1).all()) and bool((d.score_after < 0.5).all())
    assert d.score_after.dtype == torch.float32  # the model output's, not the bookkeeping's
    assert torch.equal(mask.bool(), truth[:2])
    explainer.attribute(x, target=1, bounds=(0, 1), dual_step=1.0, search_steps=2)
    d = explainer.last_diagnostics
    assert d.attempts.tolist() == [2, 2] and d.kept_attempt.tolist() == [1, 1]
    # the first attempt's trim found no cut: 54 - 3 + 1 score of its J (unknown);
    # the second: 54 - 1 (the input's score is not taken again)
    assert d.passes.tolist() == [196, 196] and d.forward_passes.tolist() == [105, 105]
    assert len(d.losses) == 2 and d.multiplier.tolist() == [1.0, 1.0]
    explainer.attribute(x, target=1, bounds=(0, 1), search_steps=0)
    d = explainer.last_diagnostics
    assert d.passes.tolist() == [98, 98] and d.forward_passes.tolist() == [54, 54]
    assert d.attempts.tolist() == [1, 1]
    stages = {"phase 1": 61, "phase 2": 21, "refinement 1": 6, "refinement 2": 6,
              "refinement 3": 6}
    assert {k: v.shape for k, v in d.losses[0].items()} == {
        k: torch.Size([rows, 2]) for k, rows in stages.items()
    }
    explainer.attribute(x, target=1, bounds=(0, 1), refine_rounds=0, search_steps=0)
    assert explainer.last_diagnostics.passes.tolist() == [80, 80]
    assert set(explainer.last_diagnostics.losses[0]) == {"phase 1", "phase 2"}


def test_a_fragment_the_trim_leaves_is_pruned_after_it(monkeypatch) -> None:
    """The component pruning runs last: a 1-pixel part that the trim leaves
    beside the patch (simulated by a trim that adds it to the mask and moves it)
    is dropped, so the final mask is exactly the patch."""
    import captum_regadv._refinement as refinement
    from captum_regadv._components import Known

    model, x, truth = _patch_case(2)
    original_trim = refinement.trim_small_changes

    def trim_leaving_a_fragment(model_, originals, masks, perturbed, **kwargs):
        masks, perturbed, spent, known = original_trim(model_, originals, masks, perturbed,
                                                       **kwargs)
        masks = tuple(m.clone() for m in masks)
        perturbed = tuple(p.clone() for p in perturbed)
        masks[0][:, :, 1, 14] = True
        perturbed[0][:, :, 1, 14] = 1.0 - originals[0][:, :, 1, 14]
        return masks, perturbed, spent, Known.nothing(2, x.device)  # the mask changed

    monkeypatch.setattr(refinement, "trim_small_changes", trim_leaving_a_fragment)
    mask = RegularizedAdversarial(model).attribute(x, target=1, bounds=(0, 1))
    assert torch.equal(mask.bool(), truth)
    without_pruning = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), refine_components=0
    )
    assert bool(without_pruning.bool()[:, :, 1, 14].all())


class _GatedPatch(torch.nn.Module):
    """z1 = 20 leaky_relu(mean of the patch 2:5 x 2:5 - 0.5, slope 0.01) - 6 + x[12, 12],
    z0 = 0: once the patch is darkened below 0.5 the class barely responds to it."""

    def __init__(self, bias: float = -6.0) -> None:
        super().__init__()
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, 0, 2:5, 2:5].mean((1, 2))
        z1 = 20.0 * torch.nn.functional.leaky_relu(patch - 0.5, 0.01) + self.bias + x[:, 0, 12, 12]
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def _gated_case() -> tuple[ScoredModel, torch.Tensor, torch.Tensor]:
    """Two 16 x 16 examples with the patch darkened from 1 to 0.1 in J. Example 0:
    the far pixel goes 0.6 -> 0.2, log-odds at J -5.88, below log(1/256) = -5.55
    (saturated); example 1: 0.2 -> 0.9, log-odds -5.18."""
    x = torch.full((2, 1, 16, 16), 0.2)
    x[:, :, 2:5, 2:5] = 1.0
    x[0, 0, 12, 12] = 0.6
    j = x.clone()
    j[:, :, 2:5, 2:5] = 0.1
    j[0, 0, 12, 12], j[1, 0, 12, 12] = 0.2, 0.9
    scored, _ = ScoredModel.build(_GatedPatch().eval(), (x,), (), 1, "softmax")
    return scored, x, j


PATCH_2 = (0, 0, slice(2, 5), slice(2, 5))


def test_need_taken_on_the_way_back_sees_evidence_the_destroyed_input_hides() -> None:
    """At J the patch's gradient is 100 times smaller than before (the leaky
    relu is off), so the need at J ranks the patch below the far pixel; halfway
    back to I the patch ranks first. The need at J and the log-odds by hand;
    toward must lie in [0, 1)."""
    from captum_regadv._need import need_ranking
    from captum_regadv.perturbations import gaussian_blur

    scored, x, j = _gated_case()
    (at_j,), log_odds = need_ranking(scored, (x,), (j,), ((2, 3),), None)
    (halfway,), _ = need_ranking(scored, (x,), (j,), ((2, 3),), None, toward=0.5)
    assert torch.allclose(log_odds, torch.tensor([-5.88, -5.18]), atol=1e-5)
    # by hand: d(z1 - z0)/dx = 20 * 0.01 / 9 on the patch (|I - J| = 0.9), 1 at (12, 12)
    expected = torch.zeros_like(x)
    expected[:, :, 2:5, 2:5] = 20 * 0.01 / 9 * 0.9
    expected[:, 0, 12, 12] = torch.tensor([0.4, 0.7])
    assert torch.allclose(at_j, gaussian_blur(expected, 1.0, (2, 3)), atol=1e-6)
    assert float(at_j[PATCH_2].max()) < float(at_j[0, 0, 12, 12])
    assert float(halfway[PATCH_2].max()) > float(halfway[0, 0, 12, 12]) > 0.0
    with pytest.raises(ValueError, match="toward"):
        need_ranking(scored, (x,), (j,), ((2, 3),), None, toward=1.0)


def test_only_saturated_examples_get_the_need_halfway_back() -> None:
    """Example 0 (log-odds below log(1/N)) gets the geometric mean of the need at
    J and halfway back, and with it the patch ranks above the far pixel; example
    1 keeps its need at J exactly."""
    from captum_regadv._need import desaturated_need, need_ranking

    scored, x, j = _gated_case()
    need, log_odds = need_ranking(scored, (x,), (j,), ((2, 3),), None)
    (halfway,), _ = need_ranking(scored, (x,), (j,), ((2, 3),), None, toward=0.5)
    (mixed,), saturated = desaturated_need(scored, (x,), (j,), need, log_odds, ((2, 3),), None)
    assert saturated.tolist() == [0]
    assert torch.equal(mixed[1], need[0][1])
    assert torch.allclose(mixed[0], (need[0][0] * halfway[0]).sqrt())
    assert float(mixed[0][PATCH_2[1:]].max()) > float(mixed[0, 0, 12, 12])
    # nothing saturated: nothing changes, nothing spent
    (same,), none = desaturated_need(scored, (x,), (j,), need, log_odds.clamp(min=0.0),
                                     ((2, 3),), None)
    assert torch.equal(same, need[0]) and none.numel() == 0


@pytest.mark.parametrize("bias, passes", [(-6.0, 99), (-5.0, 98)])
def test_a_saturated_example_pays_one_pass_more_counted_on_the_model(bias, passes) -> None:
    """With bias -6 phase 2 leaves the log-odds at most -6.1 + x[12, 12] (far pixel
    in the mask: -6.1), below log(1/256) = -5.55: every example pays the extra
    pass; with bias -5 none does. The hooks on the model count the same."""
    from captum_regadv.benchmark.passes import count_passes

    _, x, _ = _gated_case()
    model = _GatedPatch(bias).eval()
    explainer = RegularizedAdversarial(model)
    with count_passes(model) as count:
        explainer.attribute(x, target=1, bounds=(0, 1))
    d = explainer.last_diagnostics
    assert d.passes.tolist() == [passes, passes]
    assert count.forward_backward == 2 * passes + 2  # + the gradient check
    assert count.forward_only == int(d.forward_passes.sum())


def test_component_pruning_does_not_score_again_what_the_trim_scored() -> None:
    """The patch plus a moved pixel far from it: the pruning drops the pixel
    (the patch alone destroys the class) with or without the mask's known score;
    knowing it saves exactly its forward pass, and NaN means unknown."""
    from captum_regadv._components import Known, prune_components, score_masks

    model, x, truth = _patch_case(2)
    scored, _ = ScoredModel.build(model, (x,), (), 1, "softmax")
    mask = truth.clone()
    mask[:, :, 1, 14] = True
    j = torch.where(truth, torch.zeros_like(x), x)
    j[:, :, 1, 14] = 1.0 - x[:, :, 1, 14]
    rows = torch.arange(2)
    as_is = Known(*score_masks(scored, (x,), (j,), rows, (mask,), ((2, 3),), None))
    kwargs = dict(count=8, dims=((2, 3),), chunk=None)
    (plain,), (jp,), spent, found = prune_components(scored, (x,), (mask,), (j,), **kwargs)
    (reused,), (jr,), saved, _ = prune_components(scored, (x,), (mask,), (j,), known=as_is,
                                                  **kwargs)
    half = Known(as_is.values.clone(), as_is.scores.clone())
    half.values[1] = float("nan")
    (mixed,), _, partly, _ = prune_components(scored, (x,), (mask,), (j,), known=half, **kwargs)
    assert torch.equal(plain, truth) and torch.equal(reused, truth) and torch.equal(mixed, truth)
    assert torch.equal(jp, jr)
    assert spent.tolist() == [3, 3]  # as it is, without the patch, without the pixel
    assert saved.tolist() == [2, 2] and partly.tolist() == [2, 3]
    # what it knows of its result: the kept candidate's exact APE_D terms and class score
    values, scores = score_masks(scored, (x,), (jp,), rows, (plain,), ((2, 3),), None)
    assert torch.allclose(found.values, values) and torch.allclose(found.scores, scores)
