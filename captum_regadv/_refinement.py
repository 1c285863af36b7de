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
4. **Trim** (after the last polish, :mod:`captum_regadv._trim`, which has
   the maths): drop a separated tail of small changes :math:`|J - I|` that
   the polish let fall back towards :math:`I`, if that lowers the APE_D terms.
5. **Component pruning** (:mod:`captum_regadv._components`): the
   mask without each of its smallest connected parts; it comes after the
   trim because a cut can leave a fragment behind (held-out shortcut: a
   4-pixel part 4 pixels from the mark, APE_D 0.0123 -> 0.0090 without it).
6. **Holes** (last, :mod:`captum_regadv._holes`): enclosed holes that cost
   more TV than their size, filled where the APE_D terms are lower.

Cost per round and example: one forward+backward pass for the ranking (two
in the first round for a saturated example),
``refine_steps`` for the polish, ``2 x refine_candidates`` forward passes
and one more for the loss of the polish's last iterate; the last round
scores ``TRIM_CUTS + 1`` fewer fine sizes and spends them on the trim. The
component pruning then scores at most ``components + 1`` candidates per
example: the mask as the trim left it is not scored again where the trim
scored it (its value is passed on); the holes cost one forward pass for an
example whose mask has a hole to fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ._candidates import TopCandidates, rank_units, unit_to_elements
from ._components import Known, prune_components
from ._forward import ScoredModel
from ._groups import Groups
from ._holes import changed_positions, fill_holes_if_lower, hole_steps_apply
from ._objectives import Objective
from ._optimization import LoopSettings
from ._need import desaturated_need, need_ranking
from ._restricted import attack_within_mask
from ._trim import TRIM_CUTS, trim_small_changes

__all__ = ["Refinement", "candidate_fractions", "prune_mask", "refine"]


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
    if rounds and hole_steps_apply(groups):
        channels = None if groups is None else groups.channels
        # the mask is the change: elements no step moved (phase 1's filled holes) leave it
        moved = changed_positions(perturbed, originals, channels)
        masks = tuple(m & c for m, c in zip(masks, moved))
        # last: a hole left by the pruning steps is filled where APE_D is lower
        masks, perturbed, spent, known = fill_holes_if_lower(
            model, originals, masks, perturbed, bounds, dims=dims, chunk=loop.batch_size,
            known=known, channels=channels,
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
    rank, count, _ = rank_units(ranking, masks, groups)
    candidates = TopCandidates(model, originals, perturbed, rank, dims, chunk, groups)
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
