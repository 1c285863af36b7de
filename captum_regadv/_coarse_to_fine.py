r"""Coarse to fine: explain a large image at a lower resolution first.

With ``coarse_to_fine=f`` (:meth:`~captum_regadv.RegularizedAdversarial.attribute`),
one explanation of an image of :math:`H \times W` pixels runs in two stages:

1. **Coarse.** The inputs are averaged over :math:`f \times f` blocks
   (:math:`\lceil H/f \rceil \times \lceil W/f \rceil`; ``f x f x f`` for
   volumes, ``f`` for sequences) and explained with the whole schedule and the
   weight search. A model pass there costs about :math:`1/f^2` of one at full
   resolution, so this stage costs about ``steps / f**2`` full passes.
2. **Fine.** At full resolution, phase 1, phase 2 and the refinement run again
   with ``steps // f``, ``phase2_steps // f`` and ``refine_steps // f``
   updates, from the coarse change upsampled (nearest), changing only the
   elements of the coarse mask upsampled and dilated by ``f`` pixels:

   .. math::

       R = \mathrm{dilate}_f\big(\mathrm{up}_f(\mathrm{mask}_c)\big),
       \qquad J_0 = \mathrm{clip}\big(I + \mathrm{up}_f(J_c - I_c)\big),
       \qquad J = I \text{ outside } R

   (an example whose coarse mask is empty gets the whole input as ``R``).
   Every element of ``R`` is optimised on its own, with the sparsity and TV
   terms at full resolution, so the mask keeps single-pixel detail: a 1-pixel
   object that the coarse mask covers with an :math:`f \times f` block comes
   out as its own pixel. The warm start carries the size of the coarse
   change: the fine stage's few steps of at most ``lr`` each could not build
   it from :math:`I` (a 0.8 change needs 16 phase-2 steps).

An example the model does not recognise at the coarse resolution (score
below 0.5 there, at least 0.5 at full resolution) is explained at full
resolution with the whole schedule instead, with a warning. An example the
coarse stage explains but the fine stage leaves classified gets a warning:
the coarse mask missed what the model uses at full resolution (a model that
is not scale invariant), and the plain path is the better choice for it.

The coarse stage needs a model that accepts the smaller inputs (a fully
convolutional network, as the benchmark CNN) and sees the evidence at that
scale: block averaging divides the contrast of a 1-pixel object by
:math:`f^2`, so keep ``f`` small (2 or 4) when the evidence is that small.
Regularisers are means over the elements (eq. 5), so the weights mean the
same at both resolutions.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._boundary import bound_rows
from ._forward import ScoredModel
from ._groups import resolve_groups
from ._phases import PhaseSettings, explain_once
from ._weight_search import Diagnostics, _scores, explain_with_search
from .scores import Score, TargetType

__all__ = ["check_coarse_to_fine", "explain_coarse_to_fine", "downsample", "upsample"]


_POOL = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def check_coarse_to_fine(
    factor: Any, inputs: tuple[Tensor, ...], *, mode: str, grouped: bool
) -> None:
    """``ValueError``/``TypeError`` naming ``coarse_to_fine`` for an unusable setting."""
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral):
        raise TypeError(f"coarse_to_fine must be None or an int >= 2, got {factor!r}")
    if factor < 2:
        raise ValueError(f"coarse_to_fine must be None or an int >= 2, got {factor}")
    if mode != "destroy":
        raise ValueError("coarse_to_fine needs mode='destroy'")
    if grouped:
        raise ValueError("coarse_to_fine does not take a feature_mask")
    for t in inputs:
        if t.dim() not in (3, 4, 5):
            raise ValueError(
                "coarse_to_fine needs N x C x L, N x C x H x W or N x C x D x H x W inputs, "
                f"got shape {tuple(t.shape)}"
            )
        if min(t.shape[2:]) < 2 * int(factor):
            raise ValueError(
                f"coarse_to_fine={factor} needs every spatial size >= {2 * factor}, "
                f"got shape {tuple(t.shape)}"
            )


def downsample(t: Tensor, factor: int) -> Tensor:
    """Block means over ``factor`` elements per spatial dim (``ceil`` sizes).

    Example:
        >>> downsample(torch.arange(16.0).view(1, 1, 4, 4), 2)
        tensor([[[[ 2.5000,  4.5000],
                  [10.5000, 12.5000]]]])
    """
    size = [math.ceil(s / factor) for s in t.shape[2:]]
    pool: Callable[..., Tensor] = _POOL[t.dim() - 2]
    return pool(t, size)


def upsample(t: Tensor, like: Tensor) -> Tensor:
    """Nearest-neighbour upsampling of ``t`` to the spatial size of ``like``
    (booleans stay boolean).

    Example:
        >>> upsample(torch.tensor([[[1.0, 2.0]]]), torch.zeros(1, 1, 4))
        tensor([[[1., 1., 2., 2.]]])
    """
    flag = t.dtype == torch.bool
    up = F.interpolate(t.to(like.dtype) if flag else t, size=like.shape[2:], mode="nearest")
    return up > 0.5 if flag else up


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """Boolean dilation by ``radius`` elements along every spatial dim."""
    pool = _MAX[mask.dim() - 2]
    return pool(mask.float(), kernel_size=2 * radius + 1, stride=1, padding=radius) > 0.5


def _coarse_bound(bound: Tensor, original: Tensor, factor: int) -> Tensor:
    """A bound for the coarse inputs: block means of a per-element bound."""
    if all(s == 1 for s in bound.shape[2:]):
        return bound
    return downsample(bound.expand(bound.shape[0], *original.shape[1:]).contiguous(), factor)


def explain_coarse_to_fine(
    forward_func: Callable[..., Any],
    additional_args: tuple[Any, ...],
    target: TargetType,
    score: Score,
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    output: Tensor,
    bounds: tuple[tuple[Tensor, Tensor], ...],
    settings: PhaseSettings,
    *,
    factor: int,
    search_steps: int,
    search_factor: float,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Diagnostics]:
    """The coarse stage (with the weight search), then the fine stage per kept
    weight scale. Returns the boolean masks, ``J`` and the :class:`Diagnostics`:
    ``passes`` counts the model passes of both stages (a coarse one costs about
    ``1 / factor**d``), ``losses`` the coarse attempts (stages prefixed
    ``"coarse "``), one dict for the fine stage (``"fine ..."``), and the
    full-resolution attempts of the examples the coarse model did not
    recognise (``"full ..."``, NaN elsewhere).
    """
    n = originals[0].shape[0]
    coarse = tuple(downsample(o, factor) for o in originals)
    try:
        coarse_model, coarse_out = ScoredModel.build(
            forward_func, coarse, additional_args, target, score, settings.phase1.batch_size
        )
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"coarse_to_fine={factor}: the forward function fails on the inputs "
            f"downsampled to {tuple(coarse[0].shape)} ({err})"
        ) from err
    coarse_bounds = tuple(
        (_coarse_bound(lo, o, factor), _coarse_bound(hi, o, factor))
        for (lo, hi), o in zip(bounds, originals)
    )
    coarse_settings = dataclasses.replace(settings, groups=resolve_groups(None, coarse))
    masks_c, perturbed_c, diag_c = explain_with_search(
        coarse_model, coarse, coarse_out, coarse_bounds, coarse_settings,
        search_steps=search_steps, search_factor=search_factor,
    )
    start, fine_bounds = [], []
    for o, m, j, c, (lo, hi) in zip(originals, masks_c, perturbed_c, coarse, bounds):
        up = upsample(m, o)
        empty = ~up.flatten(1).any(1)
        r = _dilate(up, factor) | empty.view((-1,) + (1,) * (o.dim() - 1))
        start.append(torch.minimum(torch.maximum(o + upsample(j - c, o), lo), hi))
        fine_bounds.append((torch.where(r, lo, o), torch.where(r, hi, o)))
    fine = _fine_settings(settings, factor)
    masks = tuple(torch.zeros_like(o, dtype=torch.bool) for o in originals)
    perturbed = tuple(o.clone() for o in originals)
    passes = diag_c.passes.clone()
    forward_passes = diag_c.forward_passes + 2  # M(I) and M(J) at full resolution
    attempts, kept = diag_c.attempts.clone(), diag_c.kept_attempt.clone()
    weight_scale = diag_c.weight_scale.clone()
    multiplier = torch.ones_like(weight_scale)
    everything = torch.arange(n, device=output.device)
    unseen = torch.zeros(n, dtype=torch.bool, device=output.device)
    if score != "identity":
        unseen = (diag_c.score_before < 0.5) & (model.score_of(output, everything) >= 0.5)
    fine_losses: dict[str, Tensor] = {}
    for scale in torch.unique(weight_scale[~unseen]).tolist():
        rows = torch.nonzero((weight_scale == scale) & ~unseen).flatten()
        result = explain_once(
            model.subset(rows), tuple(o[rows] for o in originals), output[rows],
            tuple((lo[rows], hi[rows]) for lo, hi in fine_bounds), float(scale), fine,
            label=" (fine)", start=tuple(t[rows] for t in start),
        )
        _scatter(result.masks, result.perturbed, result.history, rows, masks, perturbed,
                 fine_losses, n)
        passes[rows] += result.steps_run
        forward_passes[rows] += result.forward_passes
        multiplier[rows] = result.multiplier
    losses = tuple(
        {f"coarse {k}": v for k, v in attempt.items()} for attempt in diag_c.losses
    ) + (fine_losses,)
    if bool(unseen.any()):
        rows = torch.nonzero(unseen).flatten()
        warnings.warn(
            f"coarse_to_fine={factor}: the model does not recognise {rows.numel()} of {n} "
            "example(s) at the coarse resolution (score < 0.5 there, >= 0.5 at full "
            "resolution); they are explained at full resolution with the whole schedule",
            UserWarning,
            stacklevel=5,
        )
        full_masks, full_perturbed, full = explain_with_search(
            model.subset(rows), tuple(o[rows] for o in originals), output[rows],
            tuple((bound_rows(lo, rows), bound_rows(hi, rows)) for lo, hi in bounds),
            settings, search_steps=search_steps, search_factor=search_factor,
        )
        _scatter(full_masks, full_perturbed, {}, rows, masks, perturbed, {}, n)
        passes[rows] += full.passes
        forward_passes[rows] += full.forward_passes
        attempts[rows] = full.attempts
        kept[rows], weight_scale[rows] = full.kept_attempt, full.weight_scale
        if full.multiplier is not None:
            multiplier[rows] = full.multiplier
        for attempt in full.losses:
            widened: dict[str, Tensor] = {}
            _scatter((), (), {f"full {k}": v for k, v in attempt.items()}, rows, (), (),
                     widened, n)
            losses = losses + (widened,)
    score_after = _scores(model, perturbed, settings.phase1.batch_size)
    lost = int(((score_after >= 0.5) & (diag_c.score_after < 0.5) & ~unseen).sum())
    if lost and score != "identity":
        warnings.warn(
            f"coarse_to_fine={factor}: for {lost} of {n} example(s) the fine stage left "
            "the class (score >= 0.5) that the coarse stage destroyed: the coarse mask "
            "does not hold the evidence the model uses at full resolution (a model that is "
            "not scale invariant); explain them without coarse_to_fine",
            UserWarning,
            stacklevel=5,
        )
    diagnostics = Diagnostics(
        passes=passes,
        forward_passes=forward_passes,
        attempts=attempts,
        kept_attempt=kept,
        weight_scale=weight_scale,
        score_before=model.score_of(output, everything),
        score_after=score_after,
        losses=losses,
        multiplier=multiplier,
    )
    return masks, perturbed, diagnostics


def _fine_settings(settings: PhaseSettings, factor: int) -> PhaseSettings:
    """The full-resolution schedule: every stage's steps divided by ``factor``."""
    def fewer(steps: int) -> int:
        return max(1, steps // factor) if steps else 0

    return dataclasses.replace(
        settings,
        phase1=dataclasses.replace(settings.phase1, steps=fewer(settings.phase1.steps)),
        phase2=dataclasses.replace(settings.phase2, steps=fewer(settings.phase2.steps)),
        refine_steps=fewer(settings.refine_steps),
    )


def _scatter(
    new_masks: tuple[Tensor, ...],
    new_perturbed: tuple[Tensor, ...],
    history: dict[str, Tensor],
    rows: Tensor,
    masks: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    losses: dict[str, Tensor],
    n: int,
) -> None:
    """Write the results of the examples ``rows`` into the full-batch outputs
    (``history`` under a ``"fine "`` prefix unless its keys have one)."""
    for k in range(len(new_masks)):
        masks[k][rows] = new_masks[k]
        perturbed[k][rows] = new_perturbed[k]
    for stage, values in history.items():
        key = stage if stage.startswith("full ") else f"fine {stage}"
        if key not in losses:
            losses[key] = torch.full(
                (values.shape[0], n), float("nan"), dtype=values.dtype, device=values.device
            )
        losses[key][:, rows] = values
