r"""Component pruning: drop the small connected parts of a mask that the attack does not need.

The refinement (:mod:`captum_regadv._refinement`) keeps the top-ranked units
of a mask, so an element that ranks high on its own survives even when it is
a fragment of one or two pixels beside the evidence. This step looks at the
mask's connected components instead: for each example it scores, in batched
forward passes without gradients, the mask without each of its ``count``
smallest components, then the mask without every component whose removal
alone did not raise the APE_D terms, and keeps the best of these candidates
and the mask as it was:

.. math::

    m^\star = \arg\min_{m' \in \{m,\; m \setminus c_1, \dots,
              m \setminus c_K,\; m \setminus \bigcup_{k:\,A(m \setminus c_k) \le A(m)} c_k\}}
              A(m'),
    \qquad A(m') = \frac{L_0(I - J_{m'})}{N} + \frac{TV(B(I - J_{m'}))}{N} + M(J_{m'})_i,

with :math:`J_{m'}` equal to the current :math:`J` inside :math:`m'` and to
:math:`I` elsewhere. Components are those of each input's mask over its
spatial dims (channels of a pixel together) with full connectivity
(8-connectivity in 2-D, 26 in 3-D), the same as the CC hit rate's default.
Inputs without spatial dims are left alone. The mask as it was is always a
candidate, so this step never scores worse than its input. A candidate that
leaves the class standing (:math:`M(J_{m'})_i \ge 0.5`) scores
:math:`10 + M(J_{m'})_i` instead of :math:`A(m')` (:func:`score_masks`): it
ranks after every candidate that destroys the class, so no candidate wins by
giving up the destruction for a smaller mask.

Cost per example: ``count + 2`` forward passes, one fewer where the caller
knows the APE_D terms of the mask as it is (the refinement's trim scored it),
fewer when the mask has fewer components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ._forward import ScoredModel
from ._outcome import DESTROYED

__all__ = [
    "UNDESTROYED", "Known", "ape_terms", "change_size", "component_labels", "count_parts",
    "prune_components", "score_masks",
]

#: Added to the score of a candidate that does not destroy the class; above
#: any destroying candidate's APE_D terms (at most 1 + the number of spatial
#: dims + 1 for a 0/1 change).
UNDESTROYED = 10.0


@dataclass(frozen=True)
class Known:
    """What a step already knows of the masks it returns: their APE_D terms and
    their class scores :math:`M(J)_i`, float64 ``(N,)``, NaN where unknown."""

    values: Tensor
    scores: Tensor

    @staticmethod
    def nothing(n: int, device: torch.device) -> "Known":
        """Nothing known of ``n`` examples."""
        empty = torch.full((n,), math.nan, dtype=torch.float64, device=device)
        return Known(empty, empty.clone())


def score_masks(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    rows: Tensor,
    keep: tuple[Tensor, ...],
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
) -> tuple[Tensor, Tensor]:
    """APE_D terms ``(len(rows),)`` (float64) of candidates, and their class
    scores :math:`M(J)_i` (float64): example ``rows[c]`` with
    ``J`` kept where ``keep[k][c]`` (boolean, shaped like the input's rows) and
    ``I`` elsewhere; ``chunk`` candidates per forward pass (``None``: all).
    A candidate whose class score stays at or above 0.5 scores
    :data:`UNDESTROYED` plus its score instead (not for ``score="identity"``),
    so that the smallest candidates never win by giving up the destruction and,
    when none destroys, the one that lowers the score most wins."""
    total = rows.numel()
    n_elements = sum(o[0].numel() for o in originals)
    values = torch.empty(total, dtype=torch.float64, device=rows.device)
    scores = torch.empty_like(values)
    step = total if chunk is None else max(1, chunk)
    moved = tuple(p != o for p, o in zip(perturbed, originals))  # where J differs from I
    for start in range(0, total, step):
        stop = min(start + step, total)
        sel = rows[start:stop]
        # changed = kept and moved: the binary change B(I - J) of each candidate
        changed = tuple(k[start:stop] & m[sel] for k, m in zip(keep, moved))
        candidates = tuple(
            torch.where(c, p[sel], o[sel]) for c, p, o in zip(changed, perturbed, originals)
        )
        sub = model.subset(sel)
        local = torch.arange(sel.numel(), device=sel.device)
        with torch.no_grad():
            score = sub.score_of(sub.output(candidates, local), local)
        values[start:stop] = ape_terms(
            change_size(changed, dims), n_elements, score, destroyed_first=model.score != "identity"
        )
        scores[start:stop] = score.to(torch.float64)
    values = torch.where(torch.isfinite(values), values, torch.full_like(values, math.inf))
    return values, scores


def change_size(changed: tuple[Tensor, ...], dims: tuple[tuple[int, ...], ...]) -> Tensor:
    """:math:`L_0 + TV` of the binary change ``changed`` (boolean, one tensor per
    input), summed over the inputs: ``(N,)`` integer counts."""
    return torch.stack(
        [c.flatten(1).sum(1) + _binary_variation(c, d) for c, d in zip(changed, dims)]
    ).sum(0)


def ape_terms(
    sizes: Tensor, n_elements: int, score: Tensor, *, destroyed_first: bool
) -> Tensor:
    """APE_D terms ``sizes / n_elements + score`` (float64); with
    ``destroyed_first``, :data:`UNDESTROYED` plus the score where the class
    stands (score >= 0.5): such a candidate ranks after every one that
    destroys the class, by its score alone."""
    value = (sizes.to(score.dtype) / n_elements + score).to(torch.float64)
    if destroyed_first:
        value = torch.where(score < DESTROYED, value, UNDESTROYED + score.to(torch.float64))
    return value


def _binary_variation(changed: Tensor, dims: tuple[int, ...]) -> Tensor:
    """:func:`~captum_regadv.perturbations.total_variation` of a boolean tensor
    (``|a - b|`` of 0/1 values is ``a xor b``), ``(N,)`` integer counts."""
    total = torch.zeros(changed.shape[0], dtype=torch.long, device=changed.device)
    for d in dims:
        length = changed.shape[d]
        if length > 1:
            step = changed.narrow(d, 1, length - 1) ^ changed.narrow(d, 0, length - 1)
            total = total + step.flatten(1).sum(1)
    return total


def _spatial_labels(
    mask: Tensor, spatial_dims: tuple[int, ...]
) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """Connected parts of one example's mask (``mask``: the input's row) over its
    spatial dims (``spatial_dims``: dims of the batched input), the other dims
    merged: labels (numpy), their count, and the merged dims of ``mask``."""
    other = tuple(a - 1 for a in range(1, mask.dim() + 1) if a not in spatial_dims)
    spatial = mask.any(dim=other) if other else mask
    array = spatial.detach().cpu().numpy()
    labels, count = ndimage.label(array, structure=np.ones((3,) * array.ndim, dtype=bool))
    return labels, int(count), other


def count_parts(masks: tuple[Tensor, ...], dims: tuple[tuple[int, ...], ...], example: int) -> int:
    """How many connected parts the mask of example ``example`` has, over the
    inputs with spatial dims (as :func:`prune_components` finds them; inputs
    without spatial dims count none).

    Example:
        >>> m = torch.tensor([[[[True, False, True], [True, False, False]]]])
        >>> count_parts((m,), ((2, 3),), 0)
        2
    """
    return sum(_spatial_labels(m[example], d)[1] for m, d in zip(masks, dims) if d)


def _components(
    masks: tuple[Tensor, ...], dims: tuple[tuple[int, ...], ...], example: int
) -> list[tuple[int, Tensor]]:
    """``(input index, boolean element mask)`` of every component of one example."""
    found: list[tuple[int, Tensor]] = []
    for k, (m, d) in enumerate(zip(masks, dims)):
        if not d:
            continue
        mask = m[example]
        labels, count, other = _spatial_labels(mask, d)
        labels_t = torch.from_numpy(labels).to(mask.device)
        for c in range(1, count + 1):
            part = labels_t == c
            for a in other:
                part = part.unsqueeze(a)
            found.append((k, part.expand_as(mask) & mask))
    return found


def component_labels(
    masks: tuple[Tensor, ...], dims: tuple[tuple[int, ...], ...]
) -> tuple[Tensor, ...]:
    """Per input, the id (1, 2, ...) of the connected component of every mask
    element, unique over the batch and the inputs, 0 outside the mask (``long``,
    shaped like the mask). Components as in :func:`prune_components`; an input
    without spatial dims counts each example's mask as one component.

    Example:
        >>> m = torch.tensor([[[[True, False, True], [True, False, False]]]])
        >>> component_labels((m,), ((2, 3),))[0].tolist()
        [[[[1, 0, 2], [1, 0, 0]]]]
    """
    out: list[Tensor] = []
    offset = 0
    for m, d in zip(masks, dims):
        labels = torch.zeros(m.shape, dtype=torch.long, device=m.device)
        for example in range(m.shape[0]):
            if not d:
                labels[example] = m[example].long() * (offset + 1)
                offset += 1
                continue
            parts = _components((m,), (d,), example)
            for k, (_, part) in enumerate(parts):
                labels[example][part] = offset + k + 1
            offset += len(parts)
        out.append(labels)
    return tuple(out)


def prune_components(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    masks: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    *,
    count: int,
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
    known: Optional[Known] = None,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor, Known]:
    """The best candidate of every example (see the module): boolean masks, ``J``,
    the forward passes spent per example ``(N,)`` and what is known of the
    result (:class:`Known`). ``known``: what a caller knows of the masks as
    they are (the refinement's trim scored them); those are not scored again."""
    n = originals[0].shape[0]
    device = originals[0].device
    forwards = torch.zeros(n, dtype=torch.long, device=device)
    result = Known.nothing(n, device) if known is None else Known(
        known.values.clone(), known.scores.clone()
    )
    if count < 1 or not any(dims):
        return masks, perturbed, forwards, result
    new_masks = tuple(m.clone() for m in masks)
    rows: list[int] = []
    keeps: list[tuple[Tensor, ...]] = []
    # per example: its index, its components, whether the as-is candidate is scored
    # here, and the position of its first scored candidate
    plans: list[tuple[int, list[tuple[int, Tensor]], bool, int]] = []
    for i in range(n):
        parts = _components(masks, dims, i)
        if len(parts) < 2:
            continue
        parts.sort(key=lambda item: int(item[1].sum()))
        chosen = parts[:count]
        current = tuple(m[i] for m in masks)
        unknown = not math.isfinite(float(result.values[i]))
        offset = len(rows)
        if unknown:
            rows.append(i)
            keeps.append(current)
        for k, part in chosen:
            rows.append(i)
            keeps.append(tuple(c & ~part if j == k else c for j, c in enumerate(current)))
        plans.append((i, chosen, unknown, offset))
    if not rows:
        return masks, perturbed, forwards, result
    values, scores = _score_keeps(model, originals, perturbed, rows, keeps, dims, chunk)
    row_t = torch.tensor(rows, device=device)
    forwards.index_add_(0, row_t, torch.ones_like(row_t))
    # per example: (APE_D terms, class score, keep) of the as-is candidate, then one
    # candidate per component dropped, then the union of the harmless drops
    options: dict[int, list[tuple[float, float, tuple[Tensor, ...]]]] = {}
    merged_rows: list[int] = []
    merged_keeps: list[tuple[Tensor, ...]] = []
    for i, chosen, unknown, offset in plans:
        current = tuple(m[i] for m in masks)
        if unknown:
            result.values[i], result.scores[i] = values[offset], scores[offset]
            offset += 1
        base = float(result.values[i])
        options[i] = [(base, float(result.scores[i]), current)] + [
            (float(values[offset + c]), float(scores[offset + c]), keeps[offset + c])
            for c in range(len(chosen))
        ]
        # the union of the components whose removal alone did not hurt
        drop = [(k, part) for (k, part), option in zip(chosen, options[i][1:]) if option[0] <= base]
        if len(drop) > 1:
            union = list(current)
            for k, part in drop:
                union[k] = union[k] & ~part
            merged_rows.append(i)
            merged_keeps.append(tuple(union))
    if merged_rows:
        merged_values, merged_scores = _score_keeps(
            model, originals, perturbed, merged_rows, merged_keeps, dims, chunk
        )
        merged_t = torch.tensor(merged_rows, device=device)
        forwards.index_add_(0, merged_t, torch.ones_like(merged_t))
        for c, (i, keep) in enumerate(zip(merged_rows, merged_keeps)):
            options[i].append((float(merged_values[c]), float(merged_scores[c]), keep))
    for i, scored in options.items():
        best = scored[0]
        for option in scored[1:]:
            if option[0] < best[0]:
                best = option
        result.values[i], result.scores[i] = best[0], best[1]
        for j, m in enumerate(new_masks):
            m[i] = best[2][j]
    new_perturbed = tuple(
        torch.where(m, p, o) for m, p, o in zip(new_masks, perturbed, originals)
    )
    return new_masks, new_perturbed, forwards, result


def _score_keeps(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    rows: list[int],
    keeps: list[tuple[Tensor, ...]],
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
) -> tuple[Tensor, Tensor]:
    """:func:`score_masks` of candidates given as lists (example,
    per-input keeps)."""
    row_t = torch.tensor(rows, device=originals[0].device)
    keep_t = tuple(torch.stack([k[j] for k in keeps]) for j in range(len(originals)))
    return score_masks(model, originals, perturbed, row_t, keep_t, dims, chunk)
