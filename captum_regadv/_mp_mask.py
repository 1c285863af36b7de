r"""The mask optimisation of :class:`~captum_regadv.MeaningfulPerturbation`.

The mask :math:`m` (one value per position, per element, or per group,
possibly at a lower resolution, upsampled) cross-fades the input with the
deletion reference, :math:`J = I \odot m + R \odot (1 - m)`, and Adam
minimises the class term plus the mean deleted amount and the mean
:math:`TV^\beta` of :math:`m`, per example (the maths and the options are
documented on :meth:`MeaningfulPerturbation.attribute`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
from torch import Tensor

from ._forward import ScoredModel
from ._groups import Groups
from ._objectives import Objective, classification_term
from ._optimization import LoopSettings, minimize_per_example
from .perturbations import total_variation

__all__ = ["FoundMask", "UPSAMPLES", "Upsample", "mask_shape", "optimise_mask", "tv_power",
           "upsample_mask"]

Upsample = Literal["linear", "nearest"]
UPSAMPLES: tuple[str, ...] = ("linear", "nearest")
_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def mask_shape(t: Tensor, per_channel: bool, mask_scale: float) -> tuple[int, ...]:
    """Shape of the optimised mask of input ``t``."""
    shape = list(t.shape)
    if t.dim() >= 3:
        if not per_channel:
            shape[1] = 1
        shape[2:] = [math.ceil(s / mask_scale) for s in shape[2:]]
    return tuple(shape)


def upsample_mask(mask: Tensor, size: tuple[int, ...], mode: Upsample) -> Tensor:
    """The mask at full resolution (identity when it already is)."""
    if tuple(mask.shape[2:]) == size:
        return mask
    if mode == "nearest":
        return torch.nn.functional.interpolate(mask, size=size, mode="nearest-exact")
    return torch.nn.functional.interpolate(
        mask, size=size, mode=_LINEAR_MODES[len(size)], align_corners=False
    )


def tv_power(values: Tensor, dims: Sequence[int], beta: float) -> Tensor:
    r""":math:`\sum_d \sum_x |f(x + e_d) - f(x)|^\beta` per example, ``(N,)``."""
    if beta == 1.0:
        return total_variation(values, dims)
    total = values.new_zeros(values.shape[0])
    for d in dims:
        if values.shape[d] < 2:
            continue
        diff = (
            values.narrow(d, 1, values.shape[d] - 1) - values.narrow(d, 0, values.shape[d] - 1)
        ).abs()
        if beta < 1.0:
            # |x|^beta has an infinite derivative at 0; the clamp makes it 0 there
            # (a constant offset of eps^beta per flat edge, no effect on the optimum).
            diff = diff.clamp_min(torch.finfo(values.dtype).eps)
        total = total + diff.pow(beta).flatten(1).sum(1)
    return total


@dataclass(frozen=True)
class FoundMask:
    """The result of :func:`optimise_mask`: the saliency :math:`1 - m` and
    ``J`` (shaped like the inputs), the updates run per example ``(N,)`` and
    :math:`M(J)_i` of the returned ``J`` ``(N,)`` (recorded during the
    optimisation, not recomputed).
    """

    saliency: tuple[Tensor, ...]
    perturbed: tuple[Tensor, ...]
    steps_run: Tensor
    score_after: Tensor


def optimise_mask(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    references: tuple[Tensor, ...],
    dims: tuple[tuple[int, ...], ...],
    *,
    l1_weight: float,
    tv_weight: float,
    tv_beta: float,
    loop: LoopSettings,
    objective: Objective,
    mask_scale: float,
    upsample: Upsample,
    per_channel: bool,
    groups: Optional[Groups] = None,
    show_progress: bool,
) -> FoundMask:
    """Optimise the mask of every example; the saliency, ``J`` and the steps run."""
    n = originals[0].shape[0]
    n_elements = sum(t[0].numel() for t in originals)
    sizes = tuple(tuple(t.shape[2:]) for t in originals)
    # how many input elements share one element of the full-resolution mask
    repeats = tuple(
        t.shape[1] if t.dim() >= 3 and not per_channel and groups is None else 1
        for t in originals
    )

    def full_masks(params: tuple[Tensor, ...], rows: Tensor) -> tuple[Tensor, ...]:
        if groups is not None:  # one value per group, broadcast to its elements
            return groups.rows(rows).expand(params[0], tuple(o[rows] for o in originals))
        return tuple(
            p if p.dim() < 3 else upsample_mask(p, size, upsample)
            for p, size in zip(params, sizes)
        )

    def cross_fade(masks: tuple[Tensor, ...], rows: Tensor) -> tuple[Tensor, ...]:
        # exact: J == I where m == 1 and J == R where m == 0
        return tuple(
            o[rows] * m + r[rows] * (1 - m)
            for o, r, m in zip(originals, references, masks)
        )

    # M(J)_i at each example's best iterate, read off the passes the loop makes
    # anyway: the loop keeps an iterate when its loss is finite and below the
    # lowest so far, and so does this bookkeeping (no extra forward pass).
    tracked_loss = torch.full((n,), float("inf"), dtype=originals[0].dtype,
                              device=originals[0].device)
    score_at_best = torch.full((n,), float("nan"), dtype=originals[0].dtype,
                               device=originals[0].device)

    def loss_fn(params: tuple[Tensor, ...], rows: Tensor) -> Tensor:
        masks = full_masks(params, rows)
        out = model.output(cross_fade(masks, rows), rows)
        loss = classification_term(
            model, out, rows, mode="destroy", objective=objective, reference=None
        )
        for k, m in enumerate(masks):
            if l1_weight:
                deleted = (1 - m).flatten(1).sum(1)
                loss = loss + (l1_weight * repeats[k] / n_elements) * deleted
            if tv_weight and dims[k]:
                tv = tv_power(m, dims[k], tv_beta)
                loss = loss + (tv_weight * repeats[k] / n_elements) * tv
        with torch.no_grad():
            value = loss.detach()
            take = torch.isfinite(value) & (value < tracked_loss[rows])
            tracked_loss[rows] = torch.where(take, value.to(tracked_loss.dtype),
                                             tracked_loss[rows])
            score = model.score_of(out.detach(), rows).to(score_at_best.dtype)
            score_at_best[rows] = torch.where(take, score, score_at_best[rows])
        return loss

    def project(params: tuple[Tensor, ...], rows: Tensor) -> None:
        for p in params:
            p.clamp_(0.0, 1.0)

    init = tuple(
        torch.ones(mask_shape(t, per_channel, mask_scale), dtype=t.dtype, device=t.device)
        for t in originals
    ) if groups is None else (
        torch.ones(n, groups.count, dtype=originals[0].dtype, device=originals[0].device),
    )
    result = minimize_per_example(
        init,
        loss_fn,
        project,
        loop,
        progress="meaningful perturbation" if show_progress else None,
    )
    with torch.no_grad():
        rows = torch.arange(n, device=originals[0].device)
        masks = full_masks(result.best, rows)
        perturbed = cross_fade(masks, rows)
        saliency = tuple(
            (1 - m).expand_as(o).contiguous() for m, o in zip(masks, originals)
        )
    return FoundMask(
        saliency=saliency,
        perturbed=tuple(p.detach().contiguous() for p in perturbed),
        steps_run=result.steps_run,
        score_after=score_at_best,
    )
