r"""Holes of a mask that cost more than they save: filled where that lowers APE_D.

APE_D (eq. 5) counts the binary change :math:`B = B(I - J)` twice: its size
:math:`L_0(B)` and its total variation :math:`TV(B)`, the number of
neighbouring pairs (along the spatial dims) where :math:`B` switches, at the
same weight :math:`1/N`. A *hole* :math:`H` of a mask :math:`B` is a
face-connected set of unchanged elements that :math:`B` encloses (it touches
no border of the input). Filling it changes

.. math::

    \Delta = |H| + TV(B \cup H) - TV(B) = |H| - \partial H,

with :math:`\partial H` the number of element pairs across the hole's
boundary: a 1-element hole costs 4 pairs of a 2-D mask and saves them for one
element more (:math:`\Delta = -3`); any hole with :math:`|H| < \partial H`
(every hole of up to 3 x 3 elements in 2-D; 4 x 4 is even) is cheaper
filled, as long as the class stays destroyed.

Phase 1 leaves such holes where the classifier pushes nothing (held-out
shortcut images: the centre of a 3 x 3 mark, whose log-odds gradient is 3%
of the mark's largest, stayed unchanged while its 8 neighbours were
darkened), and the later steps only remove elements, so a mark without its
centre could never be kept alone. Two uses (destroy mode, spatial inputs;
element-wise, or with the default groups of a multi-channel image, where a
hole is one of positions and is filled in every channel; not for a caller's
``feature_mask``):

* :func:`fill_cheap_holes` on phase 1's mask (eq. 14), before phase 2:
  phase 2 then optimises :math:`J` there too and may drop the elements
  again; no pass is spent;
* :func:`fill_holes_if_lower` after the component pruning: :math:`J` in
  the hole set, from its border inwards, to the mean change of its
  neighbours in the mask (clipped into the bounds), kept per example where the exact APE_D terms are
  lower (one forward pass for each example that has such a hole).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ._components import Known, change_size, score_masks
from ._forward import ScoredModel
from ._groups import Groups

__all__ = ["changed_positions", "fill_cheap_holes", "fill_holes_if_lower", "hole_steps_apply"]


def hole_steps_apply(groups: Optional[Groups]) -> bool:
    """Element-wise, or the default groups (channels of a position); not a
    caller's ``feature_mask``, whose groups need not be positions."""
    return groups is None or groups.channels is not None


def changed_positions(
    perturbed: tuple[Tensor, ...],
    originals: tuple[Tensor, ...],
    channels: Optional[tuple[bool, ...]] = None,
) -> tuple[Tensor, ...]:
    """Where ``J`` differs from ``I``: per element, or, for an input whose
    channels form one group (``channels[k]``), per position (any channel),
    broadcast over the channels.

    Example:
        >>> import torch
        >>> i = torch.zeros(1, 2, 1, 2); j = i.clone(); j[0, 1, 0, 0] = 1
        >>> changed_positions((j,), (i,), (True,))[0].flatten().tolist()
        [True, False, True, False]
    """
    moved = tuple(p != o for p, o in zip(perturbed, originals))
    if channels is None:
        return moved
    return tuple(m.any(1, keepdim=True).expand_as(m) if c else m for m, c in zip(moved, channels))


def _fill_slice(array: np.ndarray) -> np.ndarray:
    """One example's (and channel's) spatial mask with its cheap holes filled.

    Every face neighbour of a hole outside it is in the mask, so filling the
    hole adds :math:`|H|` elements and removes its :math:`TV(H)` boundary
    pairs; holes never touch each other, so each is decided on its own:
    filled where :math:`2|H| < L_0(H) + TV(H)`."""
    labels, count = ndimage.label(ndimage.binary_fill_holes(array) & ~array)
    axes = tuple(range(1, array.ndim + 1))
    for label in range(1, count + 1):
        hole = labels == label
        if 2 * int(hole.sum()) < int(change_size((torch.from_numpy(hole)[None],), (axes,))):
            array = array | hole
    return array


def fill_cheap_holes(
    masks: tuple[Tensor, ...], dims: tuple[tuple[int, ...], ...]
) -> tuple[Tensor, ...]:
    r"""Boolean ``masks`` with every hole filled where :math:`|H| < \partial H`.

    Holes are found over each input's spatial dims ``dims`` (the APE_D TV
    dims), separately for every example and every index of the other dims
    (channels); an input without spatial dims is returned as it is.

    Example:
        >>> import torch
        >>> ring = torch.ones(1, 1, 3, 3, dtype=torch.bool); ring[0, 0, 1, 1] = False
        >>> int(fill_cheap_holes((ring,), ((2, 3),))[0].sum())
        9
        >>> frame = torch.ones(1, 1, 6, 6, dtype=torch.bool); frame[0, 0, 1:5, 1:5] = False
        >>> int(fill_cheap_holes((frame,), ((2, 3),))[0].sum())  # 16 elements, 16 pairs
        20
    """
    out = []
    for mask, spatial in zip(masks, dims):
        if not spatial or not bool(mask.any()):
            out.append(mask)
            continue
        other = [d for d in range(1, mask.dim()) if d not in spatial]
        order = [0, *other, *spatial]
        moved = mask.permute(order)
        slices = moved.reshape((-1, *moved.shape[1 + len(other):])).cpu().numpy()
        filled = np.stack([_fill_slice(s) for s in slices])
        back = torch.from_numpy(filled).to(mask.device).reshape(moved.shape)
        out.append(back.permute([order.index(d) for d in range(mask.dim())]))
    return tuple(out)


def _inward_mean_change(
    added: Tensor, mask: Tensor, change: Tensor, spatial: tuple[int, ...]
) -> Tensor:
    """The change given to the elements ``added`` (read it there only): from the
    hole's border inwards, the mean change of the neighbours (along ``spatial``)
    that have one."""
    value = torch.where(mask, change, torch.zeros_like(change))
    known = mask.clone()
    todo = added & ~known
    while bool(todo.any()):
        total, count = torch.zeros_like(change), torch.zeros_like(change)
        for d in spatial:
            for shift in (1, -1):  # a hole never touches the border: no wrap-around reaches it
                total = total + torch.roll(value, shift, d)
                count = count + torch.roll(known.to(change.dtype), shift, d)
        reached = todo & (count > 0)
        if not bool(reached.any()):
            break
        value = torch.where(reached, total / count.clamp(min=1), value)
        known = known | reached
        todo = todo & ~reached
    return value


def fill_holes_if_lower(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    masks: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    bounds: tuple[tuple[Tensor, Tensor], ...],
    *,
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
    known: Known,
    channels: Optional[tuple[bool, ...]] = None,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor, Known]:
    """The masks with their cheap holes filled (see the module) where that lowers
    the exact APE_D terms: masks, ``J``, forward passes spent per example
    ``(N,)`` and what is known of the masks returned (``known``: of ``masks``).
    ``channels``: the default groups' :attr:`~._groups.Groups.channels` (a
    filled position joins the mask in every channel where any channel moved)."""
    n = originals[0].shape[0]
    spent = torch.zeros(n, dtype=torch.long, device=originals[0].device)
    filled = fill_cheap_holes(masks, dims)
    added = tuple(f & ~m for f, m in zip(filled, masks))
    rows = torch.nonzero(torch.stack([a.flatten(1).any(1) for a in added]).any(0)).flatten()
    if rows.numel() == 0:
        return masks, perturbed, spent, known
    candidate = tuple(
        torch.where(a, torch.clamp(o + _inward_mean_change(a, m, p - o, d), *b), p)
        if d else p
        for a, m, p, o, d, b in zip(added, masks, perturbed, originals, dims, bounds)
    )
    # the mask is the change: a hole element the fill left at I stays out
    moved = changed_positions(candidate, originals, channels)
    changed = tuple(m | (a & c) for m, a, c in zip(masks, added, moved))
    values, scores = score_masks(
        model, originals, candidate, rows, tuple(c[rows] for c in changed), dims, chunk
    )
    spent[rows] += 1
    before, before_scores = known.values[rows], known.scores[rows]
    unknown = torch.isnan(before)
    if bool(unknown.any()):
        again = rows[unknown]
        old, old_scores = score_masks(
            model, originals, perturbed, again, tuple(m[again] for m in masks), dims, chunk
        )
        before, before_scores = before.clone(), before_scores.clone()
        before[unknown], before_scores[unknown] = old, old_scores
        spent[again] += 1
    lower = values < before
    take = torch.zeros(n, dtype=torch.bool, device=spent.device)
    take[rows[lower]] = True

    def pick(new: Tensor, old: Tensor) -> Tensor:
        return torch.where(take.view((-1,) + (1,) * (old.dim() - 1)), new, old)

    now = Known(known.values.clone(), known.scores.clone())
    now.values[rows] = torch.where(lower, values, before)
    now.scores[rows] = torch.where(lower, scores, before_scores)
    return (
        tuple(pick(c, m) for c, m in zip(changed, masks)),
        tuple(pick(c, p) for c, p in zip(candidate, perturbed)),
        spent,
        now,
    )
