r"""Rules that turn any saliency map into a mask and a perturbed input.

APE scores a perturbed input ``J``; most attribution methods (Integrated
Gradients, Occlusion, Saliency, Meaningful Perturbation) return a saliency
map instead. Section 5.1 of the paper thresholds such a map with the one
threshold that gives the best APE_D over the whole set. These public rules
make that comparison reproducible:

1. :func:`saliency_to_mask`: map -> binary mask, :math:`[\,|a| / \max|a| > t\,]`;
2. a perturbation rule, mask -> ``J``, called as ``perturb(inputs, masks)``:
   :func:`fill_with_reference` (``J = I`` outside the mask, a deletion
   reference inside it; Meaningful Perturbation's own cross-fade with a
   binary mask, or a baseline fill) or :func:`perturb_within_mask` (the
   paper's phase 2: the score is minimised by changes inside the mask only);
3. :func:`scan_threshold`: the threshold with the best mean APE_D over a set.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ._boundary import (
    Bounds,
    TensorOrTuple,
    TvDims,
    as_tuple,
    check_choice,
    check_inputs,
    check_like,
    check_number,
    format_additional_args,
    check_step_size,
    loop_settings,
    resolve_bounds,
    resolve_tv_dims,
)
from ._model_state import preserve_buffers
from ._forward import ScoredModel
from ._objectives import OBJECTIVES, Objective
from ._optimization import OptimizerClass
from ._restricted import attack_within_mask
from ._shapes import lift_scalars
from ._value_scale import ValueScale
from .metrics import _check_weights, ape_d
from .scores import Score, TargetType, check_score

__all__ = [
    "ThresholdScan",
    "saliency_to_mask",
    "fill_with_reference",
    "perturb_within_mask",
    "scan_threshold",
    "default_thresholds",
]

PerturbRule = Callable[[TensorOrTuple, TensorOrTuple], TensorOrTuple]


def _like_input(values: tuple[Tensor, ...], template: TensorOrTuple) -> TensorOrTuple:
    return values[0] if isinstance(template, Tensor) else values


def _check_masks(masks: tuple[Tensor, ...]) -> None:
    """Masks are real and free of NaN (``NaN != 0`` would count as masked)."""
    for k, m in enumerate(masks):
        label = "masks" if len(masks) == 1 else f"masks[{k}]"
        if m.is_complex():
            raise TypeError(f"{label} must be real, got {m.dtype}")
        if m.is_floating_point() and bool(torch.isnan(m).any()):
            raise ValueError(f"{label} contains NaN")


def _check_thresholds(thresholds: object) -> Tensor:
    """Every candidate threshold a finite real number; float64, flat, non-empty."""
    if isinstance(thresholds, Tensor):
        if thresholds.is_complex() or thresholds.dtype == torch.bool:
            raise TypeError(f"thresholds must be real numbers, got {thresholds.dtype}")
        candidates = thresholds.detach().to("cpu", torch.float64).flatten()
    elif isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence):
        raise TypeError(
            f"thresholds must be a sequence of numbers or a tensor, got {type(thresholds).__name__}"
        )
    else:
        for k, t in enumerate(thresholds):
            check_number(t, f"thresholds[{k}]")
        candidates = torch.tensor([float(t) for t in thresholds], dtype=torch.float64)
    if candidates.numel() == 0:
        raise ValueError("thresholds must not be empty")
    if not bool(torch.isfinite(candidates).all()):
        raise ValueError("thresholds must be finite")
    return candidates


def _normalised_magnitude(
    saliency: tuple[Tensor, ...], absolute: bool, normalize: bool
) -> tuple[Tensor, ...]:
    values = tuple((s.detach().abs() if absolute else s.detach()) for s in saliency)
    if not normalize:
        return values
    peak = torch.stack([v.abs().reshape(v.shape[0], -1).max(1).values for v in values])
    peak = peak.max(0).values
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return tuple(v / peak.view((-1,) + (1,) * (v.dim() - 1)) for v in values)


def saliency_to_mask(
    saliency: TensorOrTuple,
    threshold: float,
    *,
    absolute: bool = True,
    normalize: bool = True,
) -> TensorOrTuple:
    r"""Binary mask :math:`[\,|a(x)| / \max_x |a(x)| > t\,]` of a saliency map.

    Args:
        saliency: attributions ``N x ...`` (or a tuple), e.g. from Captum.
        threshold: :math:`t`; with ``normalize`` a fraction of the example's
            peak magnitude, in ``[0, 1]``.
        absolute: threshold the magnitude (default) rather than the signed value.
        normalize: divide by each example's peak (over all tensors of a tuple)
            so that one threshold fits examples of any scale. Default True.

    Returns:
        Float 0/1 masks shaped, typed and placed like ``saliency``.

    Example:
        >>> saliency_to_mask(torch.tensor([[0.1, -2.0, 1.5]]), 0.5)
        tensor([[0., 1., 1.]])
    """
    values = as_tuple(saliency, "saliency")
    check_inputs(values, "saliency", min_dim=1)
    check_number(threshold, "threshold")
    magnitudes = _normalised_magnitude(values, absolute, normalize)
    masks = tuple((m > threshold).to(v.dtype) for m, v in zip(magnitudes, values))
    return _like_input(masks, saliency)


def fill_with_reference(
    inputs: TensorOrTuple,
    masks: TensorOrTuple,
    reference: Union[float, Tensor, Sequence[Union[float, Tensor]]],
) -> TensorOrTuple:
    r"""``J = reference`` inside the mask, ``J = I`` outside it (exactly).

    With Meaningful Perturbation's deletion reference ``R`` this is its own
    cross-fade :math:`J = I\,m + R\,(1 - m)` for the binary keep-mask
    :math:`m = 1 - \text{mask}`; with a constant it is a baseline fill.

    Args:
        inputs: ``I``, a tensor ``N x ...`` or a tuple.
        masks: non-zero where the input is deleted; shaped like ``inputs``.
        reference: a float, a tensor broadcastable to the inputs, or one per
            input tensor.

    Example:
        >>> fill_with_reference(torch.ones(1, 3), torch.tensor([[0.0, 1.0, 0.0]]), 0.0)
        tensor([[1., 0., 1.]])
    """
    originals = as_tuple(inputs)
    check_inputs(originals, min_dim=1)
    mask_t = as_tuple(masks, "masks")
    check_like(originals, mask_t, "masks")
    _check_masks(mask_t)
    if isinstance(reference, (list, tuple)):
        refs: Sequence[Union[float, Tensor]] = reference
        if len(refs) != len(originals):
            raise ValueError(
                f"reference has {len(refs)} entries but there are {len(originals)} inputs"
            )
    else:
        refs = [reference] * len(originals)  # type: ignore[list-item]
    out = []
    for k, (o, m, r) in enumerate(zip(originals, mask_t, refs)):
        if isinstance(r, bool) or not isinstance(r, (int, float, Tensor)):
            raise TypeError(f"reference[{k}] must be a float or a tensor")
        if isinstance(r, Tensor) and (r.is_complex() or r.dtype == torch.bool):
            raise TypeError(f"reference[{k}] must be a real-valued tensor, got {r.dtype}")
        ref = torch.as_tensor(r, dtype=o.dtype, device=o.device)
        if not bool(torch.isfinite(torch.as_tensor(r)).all()) or not bool(
            torch.isfinite(ref).all()
        ):
            raise ValueError(
                f"reference[{k}] contains NaN or Inf (or overflows the inputs' dtype {o.dtype})"
            )
        try:
            ref = ref.expand_as(o)
        except RuntimeError:
            raise ValueError(
                f"reference of shape {tuple(ref.shape)} does not broadcast to {tuple(o.shape)}"
            ) from None
        out.append(torch.where(m != 0, ref, o.detach()))
    return _like_input(tuple(out), inputs)


def perturb_within_mask(
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    masks: TensorOrTuple,
    target: TargetType = None,
    additional_forward_args: Any = None,
    *,
    steps: int = 100,
    lr: float = 0.05,
    optimizer: Optional[OptimizerClass] = None,
    bounds: Bounds = None,
    score: Score = "auto",
    objective: Objective = "log_odds",
    patience: Optional[int] = None,
    rel_tol: float = 1e-3,
    internal_batch_size: Optional[int] = None,
) -> TensorOrTuple:
    r"""The paper's phase 2 (eqs. 15-16) as a mask rule: the most destructive ``J``
    that differs from ``I`` only inside the mask.

    .. math::

        J^\star = \arg\min_{J:\ J = I \text{ outside the mask},\ J \in \text{bounds}} c(J)

    with :math:`c` the classification term of
    :class:`~captum_regadv.RegularizedAdversarial`'s phase 2 (``objective``:
    ``"log_odds"`` minimises the log-odds :math:`\ell_i(J)`, ``"score"`` the
    probability :math:`M(J)_i`; with ``patience``, the probability is what
    early stopping watches). The
    arguments are those of :meth:`RegularizedAdversarial.attribute`; the
    defaults are its phase-2 defaults, and ``lr`` counts in the same units
    (the width of ``bounds`` rounded to a power of two).

    Returns:
        ``J`` shaped like ``inputs``, equal to ``I`` exactly outside the mask.

    Example:
        >>> model = torch.nn.Linear(3, 2)
        >>> x = torch.rand(2, 3)
        >>> m = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
        >>> j = perturb_within_mask(model, x, m, target=0, steps=3)
        >>> bool((j[:, 1:] == x[:, 1:]).all() and (j[1] == x[1]).all())
        True
    """
    caller_inputs = as_tuple(inputs)
    check_inputs(caller_inputs, min_dim=1)
    lifted = lift_scalars(tuple(t.detach() for t in caller_inputs))
    originals = lifted.inputs
    mask_t = as_tuple(masks, "masks")
    check_like(caller_inputs, mask_t, "masks")
    _check_masks(mask_t)
    mask_t = lifted.lift_like(mask_t)
    loop = loop_settings(
        optimizer=optimizer, lr=lr, steps=steps, patience=patience, rel_tol=rel_tol,
        internal_batch_size=internal_batch_size,
    )
    check_step_size(lr, "lr", originals)
    check_score(score)
    check_choice(objective, "objective", OBJECTIVES)
    caller_bounds = resolve_bounds(bounds, originals)
    unit = ValueScale.of(caller_bounds, originals)  # lr counts in these units
    working, value_bounds = unit.encode(originals), unit.encode_bounds(caller_bounds)
    with torch.enable_grad(), preserve_buffers(forward_func):
        model, _ = ScoredModel.build(
            unit.forward(lifted.forward(forward_func)), working,
            format_additional_args(additional_forward_args), target, score,
            internal_batch_size, differentiable=True,
        )
        result = attack_within_mask(
            model,
            working,
            tuple(m.detach() != 0 for m in mask_t),
            value_bounds,
            loop,
            mode="destroy",
            objective=objective,
            reference=None,
            start=None,
            progress=None,
        )
    best = unit.decode(tuple(t.detach() for t in result.best), working, originals, caller_bounds)
    return _like_input(lifted.lower(best), inputs)


class ThresholdScan(NamedTuple):
    """Result of :func:`scan_threshold`.

    ``threshold`` is the best threshold; ``masks`` and ``perturbed`` its
    masks and perturbed inputs (shaped like the inputs); ``ape`` the APE_D of
    every example ``(N,)`` at that threshold; ``thresholds`` and ``mean_ape``
    the scanned curve.
    """

    threshold: float
    masks: TensorOrTuple
    perturbed: TensorOrTuple
    ape: Tensor
    thresholds: Tensor
    mean_ape: Tensor


def default_thresholds(
    saliency: TensorOrTuple,
    count: int = 32,
    *,
    absolute: bool = True,
    normalize: bool = True,
) -> Tensor:
    """Candidate thresholds: quantiles of the pooled (normalised) magnitudes.

    Levels :math:`1 - q` with :math:`q` log-spaced from 1e-4 to 0.5, so that
    sparse masks (the interesting ones) are scanned finely. ``absolute`` and
    ``normalize`` are those of :func:`saliency_to_mask`.

    Example:
        >>> default_thresholds(torch.arange(10.0).view(1, 10), 3).tolist()
        [0.5..., 0.99..., 0.99...]
    """
    check_number(count, "count", minimum=1, integer=True)
    values = _normalised_magnitude(as_tuple(saliency, "saliency"), absolute, normalize)
    pooled = torch.cat([v.flatten() for v in values]).cpu().double().numpy()
    levels = 1.0 - np.geomspace(1e-4, 0.5, count)
    cuts = np.unique(np.quantile(pooled, levels))
    return torch.from_numpy(cuts)


def scan_threshold(
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    saliency: TensorOrTuple,
    target: TargetType = None,
    additional_forward_args: Any = None,
    *,
    perturb: PerturbRule,
    thresholds: Optional[Sequence[float] | Tensor] = None,
    absolute: bool = True,
    normalize: bool = True,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    score: Score = "auto",
    tv_dims: TvDims = None,
) -> ThresholdScan:
    r"""One threshold for a whole set: the one with the lowest mean APE_D (section 5.1).

    For each candidate :math:`t`, masks :math:`[\,|a|/\max|a| > t\,]` are
    turned into ``J = perturb(inputs, masks)`` and scored with :func:`ape_d`;
    the threshold with the lowest mean APE_D over all examples wins.

    Args:
        forward_func, inputs, target, additional_forward_args: as in :func:`ape_d`.
        saliency: the maps to threshold, shaped like ``inputs``.
        perturb: the mask -> ``J`` rule, e.g.
            ``functools.partial(fill_with_reference, reference=0.0)`` or
            ``functools.partial(perturb_within_mask, model, target=1)``.
        thresholds: candidates (default :func:`default_thresholds`: 32
            quantiles of the pooled normalised magnitudes).
        absolute, normalize: as in :func:`saliency_to_mask`.
        weights, score, tv_dims: as in :func:`ape_d`.

    Example:
        >>> import functools
        >>> model = torch.nn.Linear(4, 2)
        >>> x = torch.rand(3, 4)
        >>> scan = scan_threshold(model, x, x, target=0, thresholds=[0.5, 0.9],
        ...                       perturb=functools.partial(fill_with_reference, reference=0.0))
        >>> scan.ape.shape, scan.thresholds.tolist()
        (torch.Size([3]), [0.5, 0.9])
    """
    originals = as_tuple(inputs)
    check_inputs(originals, min_dim=1)
    sal = as_tuple(saliency, "saliency")
    check_like(originals, sal, "saliency")
    check_inputs(sal, "saliency", min_dim=1)
    if not callable(perturb):
        raise TypeError(
            f"perturb must be a callable perturb(inputs, masks), got {type(perturb).__name__}"
        )
    _check_weights(weights)
    check_score(score)
    resolve_tv_dims(tv_dims, lift_scalars(originals).inputs)
    if thresholds is None:
        candidates = default_thresholds(saliency, absolute=absolute, normalize=normalize)
    else:
        candidates = _check_thresholds(thresholds)
    best: Optional[ThresholdScan] = None
    means = []
    for t in candidates.tolist():
        masks = saliency_to_mask(saliency, t, absolute=absolute, normalize=normalize)
        perturbed = perturb(inputs, masks)
        ape = ape_d(
            forward_func, inputs, perturbed, target, additional_forward_args,
            weights=weights, score=score, tv_dims=tv_dims,
        )
        assert isinstance(ape, Tensor)
        mean = float(ape.mean())
        means.append(mean)
        if best is None or mean < float(best.ape.mean()):
            best = ThresholdScan(t, masks, perturbed, ape, candidates, torch.empty(0))
    assert best is not None
    return best._replace(mean_ape=torch.tensor(means, dtype=torch.float64))
