"""The bookkeeping around one :meth:`RegularizedAdversarial.attribute` call.

Argument checks and the :class:`~captum_regadv._phases.PhaseSettings` they
build, the choice between the plain and the coarse-to-fine path, and the
formatting of the result (mask or continuous change, the
caller's tensor/tuple layout, the large-mask warning). The algorithm itself
lives in :mod:`captum_regadv._phases` and the modules it calls; this module
holds no maths.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

import torch
from torch import Tensor

from ._boundary import (
    Bounds,
    TensorOrTuple,
    TvDims,
    check_choice,
    check_number,
    check_step_size,
    loop_settings,
    resolve_bounds,
    resolve_tv_dims,
)
from ._coarse_to_fine import check_coarse_to_fine, explain_coarse_to_fine
from ._forward import ScoredModel
from ._groups import FeatureMask, Groups, resolve_groups
from ._objectives import MODES, OBJECTIVES, Mode, Objective
from ._outcome import warn_on_failures
from ._optimization import OptimizerClass
from ._multiscale import multiscale_change
from ._phases import PhaseSettings
from ._refinement import candidate_fractions
from ._shapes import Lifted
from ._weight_search import Diagnostics, explain_with_search
from .scores import Score, TargetType, check_score

__all__ = [
    "ATTRIBUTIONS",
    "Attribution",
    "LARGE_MASK",
    "PHASE2_LR_FACTOR",
    "PHASE2_STARTS",
    "CallSettings",
    "HINTS",
    "explain",
    "format_result",
    "prepare_call",
    "warn_about_result",
    "warn_if_large",
]

#: ``phase2_lr`` when it is not given: this times ``lr``.
PHASE2_LR_FACTOR = 6

Attribution = Literal["mask", "change", "multiscale"]
ATTRIBUTIONS: tuple[str, ...] = ("mask", "change", "multiscale")
PHASE2_STARTS: tuple[str, ...] = ("phase1", "input")
#: a mask above this share of its example's elements triggers a warning
LARGE_MASK = 0.5
#: What to try when the class was not destroyed (the warning's last part).
HINTS = (
    "a forward function that returns logits rather than probabilities (a saturated "
    "softmax or sigmoid has almost no gradient)",
    "`bounds` that let the input change (default: each example's own min and max; "
    "a constant input cannot change at all)",
    "a larger `lr` (below `epsilon`) or more `steps`",
    "smaller `sparsity_weight` and `tv_weight`, or more `search_steps`",
)


@dataclass(frozen=True)
class CallSettings:
    """The checked options of one call."""

    settings: PhaseSettings
    bounds: tuple[tuple[Tensor, Tensor], ...]
    groups: Optional[Groups]


def prepare_call(
    inputs: tuple[Tensor, ...],
    *,
    feature_mask: FeatureMask,
    sparsity_weight: float,
    tv_weight: float,
    release_weight: float,
    phase1_view: str,
    gamma: float,
    epsilon: float,
    steps: int,
    phase2_steps: int,
    lr: float,
    phase2_lr: Optional[float],
    phase2_start: Literal["phase1", "input"],
    refine_rounds: int,
    refine_candidates: int,
    refine_smallest: float,
    refine_steps: int,
    refine_components: int,
    shrink_rate: float,
    optimizer: Optional[OptimizerClass],
    bounds: Bounds,
    score: Score,
    objective: Objective,
    tv_dims: TvDims,
    mode: Mode,
    dual_step: float,
    dual_warmup: Optional[int],
    search_steps: int,
    search_factor: float,
    patience: Optional[int],
    rel_tol: float,
    internal_batch_size: Optional[int],
    coarse_to_fine: Optional[int],
    show_progress: bool,
    attribution: Attribution,
) -> CallSettings:
    """Check the options of one call (``ValueError``/``TypeError`` naming the
    argument, in the order of the signature) and build its settings."""
    check_number(sparsity_weight, "sparsity_weight", minimum=0.0)
    check_number(tv_weight, "tv_weight", minimum=0.0)
    check_number(release_weight, "release_weight", minimum=0.0)
    check_number(gamma, "gamma", minimum=0.0, strict=True)
    check_number(epsilon, "epsilon", minimum=0.0)
    phase1_loop = loop_settings(
        optimizer=optimizer, lr=lr, steps=steps, patience=patience, rel_tol=rel_tol,
        internal_batch_size=internal_batch_size,
    )
    check_number(phase2_steps, "phase2_steps", minimum=0, integer=True)
    check_step_size(lr, "lr", inputs)
    if phase2_lr is not None:
        check_number(phase2_lr, "phase2_lr", minimum=0.0, strict=True)
    phase2_lr = PHASE2_LR_FACTOR * lr if phase2_lr is None else phase2_lr
    check_step_size(phase2_lr, "phase2_lr", inputs)
    check_choice(phase2_start, "phase2_start", PHASE2_STARTS)
    check_number(refine_rounds, "refine_rounds", minimum=0, integer=True)
    check_number(refine_candidates, "refine_candidates", minimum=0, integer=True)
    check_number(refine_smallest, "refine_smallest", minimum=0.0, strict=True)
    if refine_smallest > 1:
        raise ValueError(f"refine_smallest must be <= 1, got {refine_smallest}")
    check_number(refine_steps, "refine_steps", minimum=0, integer=True)
    check_number(refine_components, "refine_components", minimum=0, integer=True)
    check_number(shrink_rate, "shrink_rate", minimum=0.0)
    if shrink_rate >= 1:
        raise ValueError(f"shrink_rate must be < 1, got {shrink_rate}")
    check_number(dual_step, "dual_step", minimum=1.0)
    if dual_warmup is not None:
        check_number(dual_warmup, "dual_warmup", minimum=0, integer=True)
    check_number(search_steps, "search_steps", minimum=0, integer=True)
    check_number(search_factor, "search_factor", minimum=0.0, strict=True)
    if search_factor >= 1:
        raise ValueError(f"search_factor must be < 1, got {search_factor}")
    check_score(score)
    check_choice(objective, "objective", OBJECTIVES)
    check_choice(mode, "mode", MODES)
    check_choice(phase1_view, "phase1_view", ("mask", "all"))
    check_choice(attribution, "attribution", ATTRIBUTIONS)
    dims = resolve_tv_dims(tv_dims, inputs)
    value_bounds = resolve_bounds(bounds, inputs)
    groups = resolve_groups(feature_mask, inputs)
    if coarse_to_fine is not None:
        check_coarse_to_fine(
            coarse_to_fine, inputs, mode=mode, grouped=feature_mask is not None
        )
    settings = PhaseSettings(
        dims=dims,
        sparsity_weight=float(sparsity_weight),
        tv_weight=float(tv_weight),
        gamma=float(gamma),
        epsilon=float(epsilon),
        phase1=phase1_loop,
        phase2=dataclasses.replace(
            phase1_loop,
            lr=float(phase2_lr),
            steps=phase2_steps,
        ),
        objective=objective,
        mode=mode,
        groups=groups,
        refine_fractions=(
            candidate_fractions(refine_candidates, refine_smallest)
            if refine_candidates else ()
        ),
        refine_rounds=refine_rounds,
        refine_steps=refine_steps,
        phase2_start=phase2_start,
        show_progress=show_progress,
        release_weight=float(release_weight),
        dual_step=float(dual_step),
        dual_warmup=steps // 3 if dual_warmup is None else int(dual_warmup),
        refine_components=refine_components,
        shrink_rate=float(shrink_rate),
        phase1_view=phase1_view,
    )
    return CallSettings(settings=settings, bounds=value_bounds, groups=groups)


def explain(
    forward_func: Callable[..., Any],
    model: ScoredModel,
    inputs: tuple[Tensor, ...],
    output: Tensor,
    bounds: tuple[tuple[Tensor, Tensor], ...],
    settings: PhaseSettings,
    *,
    target: TargetType,
    score: Score,
    search_steps: int,
    search_factor: float,
    coarse_to_fine: Optional[int],
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Diagnostics]:
    """The masks, ``J`` and diagnostics of the plain or the coarse-to-fine path
    (checked settings, inputs in working units); the restart search runs only
    where it can mean something: destroy mode, a probability score, phase 2 on."""
    if settings.mode != "destroy" or model.score == "identity" or settings.phase2.steps == 0:
        search_steps = 0
    if coarse_to_fine is None:
        return explain_with_search(
            model, inputs, output, bounds, settings,
            search_steps=search_steps, search_factor=float(search_factor),
        )
    return explain_coarse_to_fine(
        forward_func, model.additional_args, target, score, model, inputs, output, bounds,
        settings, factor=int(coarse_to_fine), search_steps=search_steps,
        search_factor=float(search_factor),
    )


def format_result(
    masks: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    originals: tuple[Tensor, ...],
    *,
    lifted: Lifted,
    groups: Optional[Groups],
    attribution: Attribution,
    dims: tuple[tuple[int, ...], ...],
    is_tuple: bool,
    return_perturbed: bool,
) -> TensorOrTuple | tuple[TensorOrTuple, TensorOrTuple]:
    """The attribution (and ``J``) in the caller's shapes, dtypes and layout."""
    if attribution == "mask":
        result = tuple(m.to(o.dtype) for m, o in zip(masks, originals))
    else:
        change = tuple((p - o).abs() for p, o in zip(perturbed, originals))
        result = change if groups is None else groups.expand(groups.mean(change), change)
        if attribution == "multiscale":
            result = tuple(multiscale_change(r, d) for r, d in zip(result, dims))
    result = lifted.lower(result)
    out: TensorOrTuple = result if is_tuple else result[0]
    if not return_perturbed:
        return out
    perturbed = lifted.lower(perturbed)
    perturbed_out: TensorOrTuple = perturbed if is_tuple else perturbed[0]
    return out, perturbed_out


def warn_about_result(
    diagnostics: Diagnostics,
    masks: tuple[Tensor, ...],
    *,
    mode: Mode,
    score: str,
    phase2_steps: int,
) -> None:
    """The warnings of one call, at the line of :meth:`attribute`'s caller: a
    class not destroyed (not with ``phase2_steps=0``, which returns ``J = I`` by
    request; :mod:`captum_regadv._outcome`) and a mask over most of its example."""
    if phase2_steps > 0:
        warn_on_failures(
            diagnostics.score_before, diagnostics.score_after, mode=mode, score=score,
            method="RegularizedAdversarial", hints=HINTS, stacklevel=5,
        )
    warn_if_large(masks, mode, stacklevel=5)


def warn_if_large(masks: tuple[Tensor, ...], mode: Mode, *, stacklevel: int = 4) -> None:
    """Warn when a destroying mask covers most of its example (``stacklevel``:
    for :func:`warnings.warn`)."""
    if mode != "destroy":
        return
    covered = torch.stack([m.flatten(1).sum(1) for m in masks]).sum(0)
    covered = covered / sum(m[0].numel() for m in masks)
    large = int((covered > LARGE_MASK).sum())
    if large:
        warnings.warn(
            f"the mask covers more than {LARGE_MASK:.0%} of the input for {large} of "
            f"{covered.numel()} example(s): no small region destroys the class, so the "
            "model's evidence is spread over the input (e.g. a model that averages "
            "features over the whole image) or the class was not destroyed; check "
            "last_diagnostics.score_after",
            UserWarning,
            stacklevel=stacklevel,
        )
