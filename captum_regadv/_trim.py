r"""The refinement's trim: drop a separated tail of small changes.

After the refinement's last polish, elements that the attack no longer needs
have fallen back towards :math:`I`, far below the rest of the mask. With the
mask's changes :math:`c_1 \ge \dots \ge c_m` (:math:`c = |J - I|`, a group
by its mean), the ``TRIM_CUTS`` cuts :math:`s` with the largest ratios
:math:`c_s / c_{s+1}` that drop at most ``TRIM_SHARE`` of the mask (up to
``TRIM_DEEP_SHARE`` where the cut leaves the mask in no more connected parts
than it has, for inputs with spatial dims) are candidates "keep the top
:math:`s`", scored with the exact APE_D terms together with the mask as it
is; the lowest is kept:

.. math::

    s^\star = \arg\min_{s \in \{m, s_1, s_2\}} \frac{L_0(I - J_s)}{N}
        + \frac{TV(B(I - J_s))}{N} + M(J_s)_i .
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ._candidates import TopCandidates, rank_units, unit_to_elements
from ._components import Known, count_parts
from ._forward import ScoredModel
from ._groups import Groups

__all__ = ["TRIM_CUTS", "TRIM_DEEP_SHARE", "TRIM_SHARE", "trim_small_changes"]

#: Cuts the trim scores per example, and the largest share of the mask it may drop.
TRIM_CUTS, TRIM_SHARE = 2, 0.4
#: A deeper cut, up to this share, is a candidate only where it leaves the mask
#: in no more connected parts than it has (inputs with spatial dims).
TRIM_DEEP_SHARE = 0.6


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
    r"""The trim of the module: keep the top :math:`s` units by :math:`|J - I|` for
    the ``TRIM_CUTS`` cuts with the largest ratios :math:`c_s / c_{s+1}` that
    drop at most ``TRIM_SHARE`` of the mask (``TRIM_DEEP_SHARE`` if the cut
    leaves no more connected parts than the mask has), or the mask as it is, whichever
    has the lowest APE_D terms. Returns the masks, ``J``, the forward passes
    per example ``(N,)`` (``TRIM_CUTS + 1`` where a cut exists, else 0) and
    the kept candidate's APE_D terms and class score (:class:`~._components.Known`,
    NaN where nothing was scored)."""
    change = tuple((p - o).abs() for p, o in zip(perturbed, originals))
    rank, count, ordered = rank_units(change, masks, groups)
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
    deep = keep_sizes < smallest[:, None]  # cuts that drop more than TRIM_SHARE
    _admit_deep_cuts(ratios, deep, rank, count, originals, dims, groups)
    best, where = torch.topk(ratios, min(TRIM_CUTS, units - 1), dim=1)
    cut = torch.where(torch.isfinite(best), where + 1, count[:, None])
    rows = torch.nonzero(torch.isfinite(best).any(1)).flatten()
    if rows.numel() == 0:
        return masks, perturbed, forwards, known
    kept = torch.cat([count[rows, None], cut[rows]], dim=1)
    sub = tuple(t[rows] for t in originals)
    candidates = TopCandidates(
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
    deep: Tensor,
    rank: Tensor,
    count: Tensor,
    originals: tuple[Tensor, ...],
    dims: tuple[tuple[int, ...], ...],
    groups: Optional[Groups],
) -> None:
    """In place on ``ratios`` (``N x (U - 1)``, column ``s - 1``: keep ``s``
    units): per example, the ``TRIM_CUTS`` cuts with the largest ratios stay,
    in that order, skipping every ``deep`` cut (boolean, like ``ratios``) that
    leaves the mask in more connected parts than it has; every other column
    becomes ``-inf``. Examples without a finite deep cut are left alone."""
    for i in range(ratios.shape[0]):
        if not bool((deep[i] & torch.isfinite(ratios[i])).any()):
            continue
        sub_groups = None if groups is None else groups.rows(torch.tensor([i], device=rank.device))
        like = tuple(o[i:i + 1] for o in originals)
        whole = _parts_kept(rank[i:i + 1], int(count[i]), like, dims, sub_groups)
        admitted: list[int] = []
        values, order = torch.sort(ratios[i], descending=True, stable=True)
        for value, column in zip(values.tolist(), order.tolist()):
            if len(admitted) == TRIM_CUTS or not math.isfinite(value):
                break
            if not bool(deep[i, column]) or _parts_kept(
                rank[i:i + 1], column + 1, like, dims, sub_groups
            ) <= whole:
                admitted.append(column)
        keep = torch.zeros_like(ratios[i], dtype=torch.bool)
        keep[admitted] = True
        ratios[i] = torch.where(keep, ratios[i], torch.full_like(ratios[i], -math.inf))


def _parts_kept(
    rank: Tensor,
    size: int,
    like: tuple[Tensor, ...],
    dims: tuple[tuple[int, ...], ...],
    groups: Optional[Groups],
) -> int:
    """Connected parts of one example's mask cut to its top ``size`` units
    (``rank``: ``1 x U``; ``like``: the example's inputs)."""
    return count_parts(unit_to_elements(rank < size, like, groups), dims, 0)
