r"""Candidates "the top :math:`k` units of a ranking", scored with the exact APE_D terms.

Shared by the refinement's pruning (:mod:`captum_regadv._refinement`), its
trim (:mod:`captum_regadv._trim`) and the shrinking phase 2
(:mod:`captum_regadv._shrinking`): a *unit* is an element of the inputs, or
a group of a ``feature_mask`` (its mean value).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._components import score_masks
from ._forward import ScoredModel
from ._groups import Groups

__all__ = ["TopCandidates", "rank_units", "unit_to_elements", "unit_values"]


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


def rank_units(
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


class TopCandidates:
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
