r"""Refinement: the smallest part of a mask that keeps the class destroyed.

After phase 2 the mask still holds elements that phase 1 recruited early
(a ring around the evidence, a block around a mark) and that the attack does
not need. The refinement runs ``rounds`` rounds of *rank, prune, polish*:

1. **Rank** the mask's units (elements, or groups of a ``feature_mask``) by
   how much each is needed: the first-order rise of the log-odds if the unit
   were restored to :math:`I`, times phase 1's change, both smoothed over the
   spatial dims (Gaussian, :math:`\sigma = 1`, written :math:`G`) so that
   connected parts of the evidence rank together:

   .. math::

       r(x) = G\big[\,|\nabla_J \ell_i(J)(x)\,(I(x) - J(x))|\,\big]\cdot
              G\big[\,|J_1(x) - I(x)|\,\big].

   In the first round, an example whose log-odds phase 2 left below
   :math:`\log(1/N)` is ranked by the geometric mean of the need at
   :math:`J` and halfway back to :math:`I` (:mod:`captum_regadv._need`, which
   has the maths; one more forward+backward pass for it).

2. **Prune**: keep the top :math:`\lceil q\,|m| \rceil` units for every
   candidate fraction :math:`q` of a geometric grid from 1 down to
   ``refine_smallest``, then as many sizes again evenly spaced between the
   best candidate's neighbours in that grid, scoring every candidate of every
   example in batched forward passes (no gradients) with the exact APE_D terms
   (eq. 5), and keep per example

   .. math::

       q^\star = \arg\min_q\; \frac{L_0(I - J_q)}{N} + \frac{TV(B(I - J_q))}{N} + M(J_q)_i,
       \qquad J_q = \begin{cases} J & \text{rank} < \lceil q\,|m| \rceil \\ I & \text{else.}\end{cases}

   :math:`q = 1` (the whole mask) is always a candidate, so a round never
   scores worse than its input. A candidate that leaves the class standing
   (:math:`M(J_q)_i \ge 0.5`) scores :math:`10 + M(J_q)_i` instead
   (:func:`~captum_regadv._components.score_masks`): the class is never given
   up for a smaller mask, and when no candidate destroys it the one that
   lowers the score most is kept, not the smallest.
3. **Polish**: ``refine_steps`` phase-2 updates of :math:`J` inside the
   pruned mask, so that the next round prunes from a :math:`J` fitted to it.
4. **Trim** (after the last polish, :func:`trim_small_changes`): the polish
   lets elements that the attack no longer needs fall back towards
   :math:`I`, far below the rest of the mask. With the mask's changes
   :math:`c_1 \ge \dots \ge c_m` (:math:`c = |J - I|`, a group by its
   mean), the ``TRIM_CUTS`` cuts :math:`s` with the largest ratios
   :math:`c_s / c_{s+1}` that drop at most ``TRIM_SHARE`` of the mask (up to
   ``TRIM_DEEP_SHARE`` where the cut leaves the mask in no more connected
   parts than it has) are candidates "keep the top :math:`s`", scored like
   the sizes of step 2 with the mask as it is; the lowest is kept.
5. **Component pruning** (last, :mod:`captum_regadv._components`): the
   mask without each of its smallest connected parts; it comes after the
   trim because a cut can leave a fragment behind (held-out shortcut: a
   4-pixel part 4 pixels from the mark, APE_D 0.0123 -> 0.0090 without it).

Cost per round and example: one forward+backward pass for the ranking (two
in the first round for a saturated example),
``refine_steps`` for the polish, ``2 x refine_candidates`` forward passes
and one more for the loss of the polish's last iterate; the last round
scores ``TRIM_CUTS + 1`` fewer fine sizes and spends them on the trim. The
component pruning then scores at most ``components + 1`` candidates per
example: the mask as the trim left it is not scored again where the trim
scored it (its value is passed on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ._components import Known, count_parts, prune_components, score_masks
from ._forward import ScoredModel
from ._groups import Groups
from ._objectives import Objective
from ._optimization import LoopSettings
from ._need import desaturated_need, need_ranking
from ._restricted import attack_within_mask

__all__ = [
    "Refinement", "candidate_fractions", "prune_mask", "refine", "trim_small_changes",
    "unit_to_elements", "unit_values",
]

#: Cuts the trim scores per example, and the largest share of the mask it may drop.
TRIM_CUTS, TRIM_SHARE = 2, 0.4
#: A deeper cut, up to this share, is a candidate only where it leaves the mask
#: in no more connected parts than it has (inputs with spatial dims).
TRIM_DEEP_SHARE = 0.6


@dataclass(frozen=True)
class Refinement:
    """What :func:`refine` spent per example ``(N,)``, its loss histories
    (``"refinement 1"``, ... : ``(refine_steps + 1) x N``) and what it knows of
    the masks it returns (their APE_D terms and class scores, NaN where unknown)."""

    passes: Tensor
    forward_passes: Tensor
    history: dict[str, Tensor]
    known: Known


def refine(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    phase1_change: tuple[Tensor, ...],
    masks: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    bounds: tuple[tuple[Tensor, Tensor], ...],
    *,
    fractions: tuple[float, ...],
    rounds: int,
    loop: LoopSettings,
    dims: tuple[tuple[int, ...], ...],
    groups: Optional[Groups],
    objective: Objective,
    progress: Optional[str],
    components: int = 0,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Refinement]:
    """``rounds`` rounds of rank, prune, polish (destroy mode); see the module.
    ``phase1_change``: :math:`G[|J_1 - I|]`, phase 1's smoothed change. The
    trim is followed by the component pruning (:mod:`captum_regadv._components`,
    ``components`` of them at most)."""
    n = originals[0].shape[0]
    device = originals[0].device
    passes = torch.zeros(n, dtype=torch.long, device=device)
    forwards = torch.zeros_like(passes)
    history: dict[str, Tensor] = {}
    for round_ in range(rounds):
        last = round_ == rounds - 1
        need, log_odds = need_ranking(model, originals, perturbed, dims, loop.batch_size)
        if round_ == 0:
            need, saturated = desaturated_need(
                model, originals, perturbed, need, log_odds, dims, loop.batch_size
            )
            passes[saturated] += 1
        ranking = tuple(a * b for a, b in zip(need, phase1_change))
        # the last round's trim is paid for with fine sizes
        fine = len(fractions) - (TRIM_CUTS + 1 if last else 0) if len(fractions) > 1 else 0
        masks, perturbed = prune_mask(
            model, originals, masks, perturbed, ranking=ranking, groups=groups,
            fractions=fractions, dims=dims, chunk=loop.batch_size, fine=max(fine, 0),
        )
        passes += 1
        forwards += len(fractions) + max(fine, 0)
        if loop.steps:
            polish = attack_within_mask(
                model, originals, masks, bounds, loop, mode="destroy", objective=objective,
                reference=None, start=perturbed,
                progress=None if progress is None else f"{progress} {round_ + 1}/{rounds}",
            )
            history[f"refinement {round_ + 1}"] = polish.history
            perturbed = polish.best
            passes += polish.steps_run
            forwards += polish.evaluations
    known = Known.nothing(n, device)
    if rounds:
        masks, perturbed, spent, known = trim_small_changes(
            model, originals, masks, perturbed, dims=dims, chunk=loop.batch_size, groups=groups,
        )
        forwards += spent
    if rounds and components:
        # last, so that it also sees the fragments the trim leaves; the trim's
        # score of the mask it kept is not computed again
        masks, perturbed, spent, known = prune_components(
            model, originals, masks, perturbed, count=components, dims=dims, chunk=loop.batch_size,
            known=known,
        )
        forwards += spent
    return masks, perturbed, Refinement(passes, forwards, history, known)


def candidate_fractions(count: int, smallest: float) -> tuple[float, ...]:
    r"""``count`` fractions from 1 down to ``smallest``, evenly spaced in log scale.

    Example:
        >>> candidate_fractions(3, 0.25)
        (1.0, 0.5, 0.25)
    """
    if count == 1:
        return (1.0,)
    ratio = smallest ** (1.0 / (count - 1))
    return tuple(float(ratio**k) for k in range(count))


def unit_values(values: tuple[Tensor, ...], groups: Optional[Groups]) -> Tensor:
    """Per-unit values ``N x U``: the elements of all inputs, or the groups' means."""
    if groups is None:
        return torch.cat([v.flatten(1) for v in values], dim=1)
    return groups.mean(values)


def unit_to_elements(
    flat: Tensor, like: tuple[Tensor, ...], groups: Optional[Groups]
) -> tuple[Tensor, ...]:
    """Undo :func:`unit_values` for a boolean ``N x U`` tensor."""
    if groups is not None:
        return tuple(t.bool() for t in groups.expand(flat.to(torch.uint8), like))
    out, offset = [], 0
    for t in like:
        size = t[0].numel()
        out.append(flat[:, offset:offset + size].reshape(t.shape))
        offset += size
    return tuple(out)


def prune_mask(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    masks: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    *,
    fractions: tuple[float, ...],
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
    ranking: tuple[Tensor, ...],
    groups: Optional[Groups] = None,
    fine: int = 0,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The best candidate of every example: its (boolean) masks and ``J``.

    ``masks`` are boolean and shaped like ``originals`` (constant within
    each group of ``groups``); ``perturbed`` is phase 2's ``J`` (equal to
    ``I`` outside the mask); units are ranked by ``ranking`` (shaped like
    the inputs; a group by its mean). Scores ``len(fractions)`` candidates
    per example, then ``fine`` more sizes evenly spaced between the best
    one's neighbours in the grid, ``chunk`` (example, candidate) pairs at a
    time (all: ``None``), each one forward pass.
    """
    rank, count, _ = _rank_units(ranking, masks, groups)
    candidates = _Candidates(model, originals, perturbed, rank, dims, chunk, groups)
    kept = torch.stack(
        [torch.ceil(count.to(torch.float64) * q - 1e-9).to(torch.long) for q in fractions], dim=1
    )  # N x K, decreasing
    values = candidates.score(kept)
    pick = values.argmin(1, keepdim=True)
    if fine and kept.shape[1] > 1:
        last = kept.shape[1] - 1
        high = kept.gather(1, (pick - 1).clamp(min=0))
        low = kept.gather(1, (pick + 1).clamp(max=last))
        steps = torch.linspace(0, 1, fine + 2, dtype=torch.float64, device=kept.device)[1:-1]
        between = torch.round(low + (high - low).to(torch.float64) * steps).to(torch.long)
        kept = torch.cat([kept.gather(1, pick), between], dim=1)
        values = torch.cat([values.gather(1, pick), candidates.score(between)], dim=1)
        pick = values.argmin(1, keepdim=True)
    keep = rank < kept.gather(1, pick)
    new_masks = unit_to_elements(keep, originals, groups)
    new_perturbed = tuple(
        torch.where(m, p, o) for m, p, o in zip(new_masks, perturbed, originals)
    )
    return new_masks, new_perturbed


def _rank_units(
    values: tuple[Tensor, ...], masks: tuple[Tensor, ...], groups: Optional[Groups]
) -> tuple[Tensor, Tensor, Tensor]:
    """Every unit's rank ``N x U`` (the mask's units first, larger ``values``
    first; ties keep the element order), the mask's unit count ``(N,)`` and the
    values sorted that way ``N x U`` (-1 outside the mask)."""
    change = unit_values(values, groups)
    inside = unit_values(tuple(m.to(change.dtype) for m in masks), groups) > 0.5
    key = torch.where(inside, change, torch.full_like(change, -1.0))
    ordered, order = torch.sort(key, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank, inside.sum(1), ordered


def trim_small_changes(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    masks: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    *,
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
    groups: Optional[Groups] = None,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor, Known]:
    r"""Step 4 of the module: keep the top :math:`s` units by :math:`|J - I|` for
    the ``TRIM_CUTS`` cuts with the largest ratios :math:`c_s / c_{s+1}` that
    drop at most ``TRIM_SHARE`` of the mask (``TRIM_DEEP_SHARE`` if the cut
    leaves no more connected parts than the mask has), or the mask as it is, whichever
    has the lowest APE_D terms. Returns the masks, ``J``, the forward passes
    per example ``(N,)`` (``TRIM_CUTS + 1`` where a cut exists, else 0) and
    the kept candidate's APE_D terms and class score (:class:`~._components.Known`,
    NaN where nothing was scored)."""
    change = tuple((p - o).abs() for p, o in zip(perturbed, originals))
    rank, count, ordered = _rank_units(change, masks, groups)
    n, units = ordered.shape
    forwards = torch.zeros(n, dtype=torch.long, device=count.device)
    known = Known.nothing(n, count.device)
    if units < 2:
        return masks, perturbed, forwards, known
    logs = ordered.double().clamp_min(torch.finfo(torch.float64).tiny).log()
    ratios = logs[:, :-1] - logs[:, 1:]  # column s - 1: keep s, drop from s + 1 on
    keep_sizes = torch.arange(1, units, device=count.device)
    smallest = torch.ceil((1 - TRIM_SHARE) * count.double()).long().clamp(min=1)
    share = TRIM_DEEP_SHARE if any(dims) else TRIM_SHARE
    deepest = torch.ceil((1 - share) * count.double()).long().clamp(min=1)
    moved = (ordered > 0).sum(1)  # cuts among changed units (J = I ones go with any cut)
    allowed = (keep_sizes >= deepest[:, None]) & (keep_sizes < moved[:, None])
    ratios = torch.where(allowed, ratios, torch.full_like(ratios, -math.inf))
    _admit_deep_cuts(ratios, rank, count, smallest, originals, dims, groups)
    best, where = torch.topk(ratios, min(TRIM_CUTS, units - 1), dim=1)
    cut = torch.where(torch.isfinite(best), where + 1, count[:, None])
    rows = torch.nonzero(torch.isfinite(best).any(1)).flatten()
    if rows.numel() == 0:
        return masks, perturbed, forwards, known
    kept = torch.cat([count[rows, None], cut[rows]], dim=1)
    sub = tuple(t[rows] for t in originals)
    candidates = _Candidates(
        model.subset(rows), sub, tuple(p[rows] for p in perturbed), rank[rows], dims, chunk,
        None if groups is None else groups.rows(rows),
    )
    values, scores = candidates.score_with_classes(kept)
    pick = values.argmin(1, keepdim=True)
    keep = rank < count[:, None]
    keep[rows] = rank[rows] < kept.gather(1, pick)
    forwards[rows] = kept.shape[1]
    known.values[rows] = values.gather(1, pick).squeeze(1)
    known.scores[rows] = scores.gather(1, pick).squeeze(1)
    new_masks = unit_to_elements(keep, originals, groups)
    new_perturbed = tuple(torch.where(m, p, o) for m, p, o in zip(new_masks, perturbed, originals))
    return new_masks, new_perturbed, forwards, known


def _admit_deep_cuts(
    ratios: Tensor,
    rank: Tensor,
    count: Tensor,
    smallest: Tensor,
    originals: tuple[Tensor, ...],
    dims: tuple[tuple[int, ...], ...],
    groups: Optional[Groups],
) -> None:
    """In place on ``ratios`` (``N x (U - 1)``, column ``s - 1``: keep ``s``
    units): per example, the ``TRIM_CUTS`` cuts with the largest ratios stay,
    in that order, skipping every cut that keeps fewer than ``smallest`` units
    (drops more than ``TRIM_SHARE``) and leaves the mask in more connected
    parts than it has; every other column becomes ``-inf``."""
    keep_sizes = torch.arange(1, ratios.shape[1] + 1, device=ratios.device)
    for i in range(ratios.shape[0]):
        if not bool(((keep_sizes < smallest[i]) & torch.isfinite(ratios[i])).any()):
            continue
        sub_groups = None if groups is None else groups.rows(torch.tensor([i], device=rank.device))
        like = tuple(o[i:i + 1] for o in originals)

        def parts(size: int) -> int:
            kept = unit_to_elements(rank[i:i + 1] < size, like, sub_groups)
            return count_parts(kept, dims, 0)

        whole = parts(int(count[i]))
        admitted: list[int] = []
        values, order = torch.sort(ratios[i], descending=True, stable=True)
        for value, column in zip(values.tolist(), order.tolist()):
            if len(admitted) == TRIM_CUTS or not math.isfinite(value):
                break
            if column + 1 >= int(smallest[i]) or parts(column + 1) <= whole:
                admitted.append(column)
        keep = torch.zeros_like(ratios[i], dtype=torch.bool)
        keep[admitted] = True
        ratios[i] = torch.where(keep, ratios[i], torch.full_like(ratios[i], -math.inf))


class _Candidates:
    """Scores candidates "the top ``k`` units of an example's ranking" with the
    exact APE_D terms, in batched forward passes without gradients."""

    def __init__(
        self,
        model: ScoredModel,
        originals: tuple[Tensor, ...],
        perturbed: tuple[Tensor, ...],
        rank: Tensor,
        dims: tuple[tuple[int, ...], ...],
        chunk: Optional[int],
        groups: Optional[Groups],
    ) -> None:
        self.model, self.originals, self.perturbed = model, originals, perturbed
        self.rank, self.dims, self.chunk, self.groups = rank, dims, chunk, groups

    def score(self, kept: Tensor) -> Tensor:
        """APE_D terms of keeping ``kept[i, c]`` units of example ``i``: ``N x C``,
        ``chunk`` (example, candidate) pairs at a time."""
        return self.score_with_classes(kept)[0]

    def score_with_classes(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`score` and the candidates' class scores :math:`M(J)_i`, ``N x C`` each."""
        n, k = kept.shape
        device = self.rank.device
        pair_rows = torch.arange(n, device=device).repeat_interleave(k)
        # (example, candidate) pairs in example order: one broadcast comparison
        all_keep = (self.rank[:, None, :] < kept[:, :, None]).view(n * k, -1)
        step = n * k if self.chunk is None else max(1, self.chunk)
        parts: list[Tensor] = []
        classes: list[Tensor] = []
        for start in range(0, n * k, step):
            rows = pair_rows[start:start + step]
            unit_keep = all_keep[start:start + step]
            element_keep = unit_to_elements(
                unit_keep, tuple(o[rows] for o in self.originals),
                None if self.groups is None else self.groups.rows(rows),
            )
            values, scores = score_masks(
                self.model, self.originals, self.perturbed, rows, element_keep, self.dims, None,
            )
            parts.append(values)
            classes.append(scores)
        return torch.cat(parts).view(n, k), torch.cat(classes).view(n, k)
