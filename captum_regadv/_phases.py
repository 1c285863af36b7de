r"""One explanation run of :class:`~captum_regadv.RegularizedAdversarial`:
phase 1, the mask, phase 2 and the refinement, for a batch of examples.

The weight search of the method calls :func:`explain_once` again, on the
examples it has not explained yet, with smaller regulariser weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ._forward import ScoredModel
from ._groups import Groups
from ._holes import fill_cheap_holes, hole_steps_apply
from ._objectives import Mode, Objective, project_into, reference_value
from ._optimization import LoopSettings, minimize_per_example
from ._phase1_loss import Phase1Loss, support
from ._need import smooth_over_space
from ._refinement import refine
from ._shrinking import attack_while_shrinking
from ._restricted import attack_within_mask

__all__ = ["PhaseSettings", "Explanation", "explain_once"]


@dataclass(frozen=True)
class PhaseSettings:
    """The checked hyperparameters of one explanation run (see ``attribute``)."""

    dims: tuple[tuple[int, ...], ...]
    sparsity_weight: float
    tv_weight: float
    gamma: float
    epsilon: float
    phase1: LoopSettings
    phase2: LoopSettings
    objective: Objective
    mode: Mode
    groups: Optional[Groups]
    refine_fractions: tuple[float, ...]
    refine_rounds: int
    refine_steps: int
    phase2_start: str
    show_progress: bool
    release_weight: float = 0.0
    dual_step: float = 1.0
    dual_warmup: int = 0
    refine_components: int = 0
    shrink_rate: float = 0.0
    phase1_view: str = "all"


@dataclass(frozen=True)
class Explanation:
    """Masks (boolean), ``J``, passes per example ``(N,)``, the loss histories
    (``(steps + 1) x N`` per stage: ``"phase 1"``, ``"phase 2"``, ``"refinement 1"``, ...),
    phase 1's final multiplier :math:`\\lambda` per example ``(N,)`` and the class
    score :math:`M(J)_i` of ``J`` where the refinement computed it (float64
    ``(N,)``, NaN elsewhere; ``None``: nowhere)."""

    masks: tuple[Tensor, ...]
    perturbed: tuple[Tensor, ...]
    steps_run: Tensor
    forward_passes: Tensor
    history: dict[str, Tensor]
    multiplier: Tensor
    scores: Optional[Tensor] = None


def explain_once(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    output: Tensor,
    bounds: tuple[tuple[Tensor, Tensor], ...],
    weight_scale: float,
    settings: PhaseSettings,
    label: str = "",
    start: Optional[tuple[Tensor, ...]] = None,
) -> Explanation:
    """Phases 1 and 2 (and the refinement) with the regularisers' weights times
    ``weight_scale``; ``label`` names the progress bars; ``start``, if given,
    is phase 1's starting ``J`` (the coarse-to-fine path's warm start)."""
    s = settings
    reference = reference_value(model, output, s.objective) if s.mode == "preserve" else None
    phase1_loss = Phase1Loss(
        model, originals,
        sparsity_weight=s.sparsity_weight * weight_scale,
        tv_weight=s.tv_weight * weight_scale,
        release_weight=s.release_weight,
        gamma=s.gamma, epsilon=s.epsilon, dims=s.dims, groups=s.groups,
        mode=s.mode, objective=s.objective, reference=reference,
        dual_step=s.dual_step, warmup=s.dual_warmup,
        view_from=s.dual_warmup if s.phase1_view == "mask" else None,
    )

    def project(params: tuple[Tensor, ...], rows: Tensor) -> None:
        project_into(params, rows, bounds, originals)

    if start is None:
        start = originals if s.mode == "destroy" else _preserve_start(originals, bounds, s.epsilon)
    bar = (lambda name: f"{name}{label}") if s.show_progress else (lambda name: None)
    phase1 = minimize_per_example(
        start, phase1_loss, project, s.phase1, progress=bar("phase 1"), keep_best=False,
        step_scale=phase1_loss.step_scale,
    )
    history = {"phase 1": phase1.history}
    sup, _ = support(originals, phase1.best, s.groups, s.gamma, s.epsilon)
    masks = tuple((t >= 0) if s.mode == "destroy" else (t < 0) for t in sup)
    if s.mode == "destroy" and hole_steps_apply(s.groups):
        masks = fill_cheap_holes(masks, s.dims)  # what the classifier left unpushed
    steps_run = phase1.steps_run
    forward_passes = phase1.evaluations.clone()
    if s.phase2.steps == 0:
        perturbed = originals if s.mode == "destroy" else tuple(
            torch.where(m, o, j) for m, o, j in zip(masks, originals, phase1.best)
        )
        return Explanation(
            masks, perturbed, steps_run, forward_passes, history, phase1_loss.multiplier
        )
    from_phase1 = s.mode == "preserve" or s.phase2_start == "phase1"
    # phase 1's smoothed change weighs the shrinking's and the refinement's rankings
    phase1_change = smooth_over_space(
        tuple((j - o).abs() for j, o in zip(phase1.best, originals)), s.dims
    )
    if s.shrink_rate > 0 and s.mode == "destroy" and model.score != "identity":
        shrunk = attack_while_shrinking(
            model, originals, masks, phase1.best if from_phase1 else originals, bounds,
            s.phase2, rate=s.shrink_rate, weight=phase1_change, dims=s.dims, groups=s.groups,
            objective=s.objective, progress=bar("phase 2"),
        )
        masks, perturbed, phase2_history = shrunk.masks, shrunk.best, shrunk.history
        phase2_steps, phase2_evaluations = shrunk.steps_run, shrunk.evaluations
    else:
        phase2 = attack_within_mask(
            model, originals, masks, bounds, s.phase2, mode=s.mode, objective=s.objective,
            reference=reference, start=phase1.best if from_phase1 else None,
            progress=bar("phase 2"),
        )
        perturbed, phase2_history = phase2.best, phase2.history
        phase2_steps, phase2_evaluations = phase2.steps_run, phase2.evaluations
    history["phase 2"] = phase2_history
    if s.mode == "preserve":
        # what phase 2 left within epsilon of I counts as kept: exactly I again
        # (else a J that moves every element a little keeps nothing)
        near, _ = support(originals, perturbed, s.groups, s.gamma, s.epsilon)
        masks = tuple(m | (t < 0) for m, t in zip(masks, near))
        perturbed = tuple(torch.where(m, o, j) for m, o, j in zip(masks, originals, perturbed))
    steps_run = steps_run + phase2_steps
    forward_passes = forward_passes + phase2_evaluations
    scores: Optional[Tensor] = None  # M(J)_i where the refinement scored its J
    if s.refine_fractions and s.refine_rounds and s.mode == "destroy" and (
        model.score != "identity"
    ):
        masks, perturbed, refined = refine(
            model, originals, phase1_change, masks, perturbed, bounds,
            fractions=s.refine_fractions, rounds=s.refine_rounds,
            loop=dataclasses.replace(s.phase2, steps=s.refine_steps),
            dims=s.dims, groups=s.groups, objective=s.objective, progress=bar("refinement"),
            components=s.refine_components,
        )
        history.update(refined.history)
        steps_run = steps_run + refined.passes
        forward_passes = forward_passes + refined.forward_passes
        scores = refined.known.scores
    return Explanation(
        masks, tuple(p.detach().clone() for p in perturbed), steps_run, forward_passes, history,
        phase1_loss.multiplier, scores,
    )


def _preserve_start(
    originals: tuple[Tensor, ...], bounds: tuple[tuple[Tensor, Tensor], ...], epsilon: float
) -> tuple[Tensor, ...]:
    """Preserve mode's start: half an epsilon from ``I`` towards the middle of
    the valid range (neither ``|I - J|`` nor ``|l(J) - l(I)|`` has a gradient at ``J = I``)."""
    return tuple(
        torch.minimum(
            torch.maximum(
                t + torch.where(t <= (lo + hi) / 2, 0.5, -0.5) * max(epsilon, 1e-6), lo
            ),
            hi,
        )
        for t, (lo, hi) in zip(originals, bounds)
    )
