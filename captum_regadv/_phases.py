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
from ._objectives import Mode, Objective, classification_term, project_into, reference_value
from ._optimization import LoopSettings, minimize_per_example
from ._refinement import refine
from ._restricted import attack_within_mask
from .perturbations import soft_support, total_variation

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


@dataclass(frozen=True)
class Explanation:
    """Masks (boolean), ``J``, passes per example ``(N,)`` and the loss histories
    (``(steps + 1) x N`` per stage: ``"phase 1"``, ``"phase 2"``, ``"refinement 1"``, ...)."""

    masks: tuple[Tensor, ...]
    perturbed: tuple[Tensor, ...]
    steps_run: Tensor
    forward_passes: Tensor
    history: dict[str, Tensor]


def support(
    originals: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    groups: Optional[Groups],
    gamma: float,
    epsilon: float,
) -> tuple[tuple[Tensor, ...], Optional[Tensor]]:
    """The soft support per element (eq. 11; per group, broadcast, with
    ``groups``) and, with groups, the ``N x G`` values per group."""
    if groups is None:
        return tuple(
            soft_support(o, j, gamma=gamma, epsilon=epsilon) for o, j in zip(originals, perturbed)
        ), None
    change = groups.mean(tuple((o - j).abs() for o, j in zip(originals, perturbed)))
    per_group = torch.tanh(0.5 * gamma * (change - epsilon))
    return groups.expand(per_group, originals), per_group


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
    sparsity_weight = s.sparsity_weight * weight_scale
    tv_weight = s.tv_weight * weight_scale
    n_elements = sum(t[0].numel() for t in originals)
    reference = reference_value(model, output, s.objective) if s.mode == "preserve" else None
    sign = 1.0 if s.mode == "destroy" else -1.0

    def phase1_loss(params: tuple[Tensor, ...], rows: Tensor) -> Tensor:
        out = model.output(params, rows)
        ref = None if reference is None else reference[rows]
        loss = classification_term(
            model, out, rows, mode=s.mode, objective=s.objective, reference=ref
        )
        groups = None if s.groups is None else s.groups.rows(rows)
        sup, per_group = support(
            tuple(o[rows] for o in originals), params, groups, s.gamma, s.epsilon
        )
        if sparsity_weight:
            if groups is None or per_group is None:
                total = sum(t.flatten(1).sum(1) for t in sup)
            else:
                total = (groups.sizes(per_group.shape[0], per_group.dtype) * per_group).sum(1)
            loss = loss + (sign * sparsity_weight / n_elements) * total
        if tv_weight:
            for t, d in zip(sup, s.dims):
                if d:
                    loss = loss + (tv_weight / n_elements) * total_variation(t, d)
        return loss

    def project(params: tuple[Tensor, ...], rows: Tensor) -> None:
        project_into(params, rows, bounds, originals)

    if start is None:
        start = originals if s.mode == "destroy" else _preserve_start(originals, bounds, s.epsilon)
    bar = (lambda name: f"{name}{label}") if s.show_progress else (lambda name: None)
    phase1 = minimize_per_example(
        start, phase1_loss, project, s.phase1, progress=bar("phase 1"), keep_best=False
    )
    history = {"phase 1": phase1.history}
    sup, _ = support(originals, phase1.best, s.groups, s.gamma, s.epsilon)
    masks = tuple((t >= 0) if s.mode == "destroy" else (t < 0) for t in sup)
    steps_run = phase1.steps_run
    forward_passes = torch.zeros_like(steps_run)
    if s.phase2.steps == 0:
        perturbed = originals if s.mode == "destroy" else tuple(
            torch.where(m, o, j) for m, o, j in zip(masks, originals, phase1.best)
        )
        return Explanation(masks, perturbed, steps_run, forward_passes, history)
    from_phase1 = s.mode == "preserve" or s.phase2_start == "phase1"
    phase2 = attack_within_mask(
        model, originals, masks, bounds, s.phase2, mode=s.mode, objective=s.objective,
        reference=reference, start=phase1.best if from_phase1 else None,
        progress=bar("phase 2"),
    )
    history["phase 2"] = phase2.history
    perturbed, steps_run = phase2.best, steps_run + phase2.steps_run
    if s.refine_fractions and s.refine_rounds and s.mode == "destroy" and (
        model.score != "identity"
    ):
        masks, perturbed, refined = refine(
            model, originals, phase1.best, masks, perturbed, bounds,
            fractions=s.refine_fractions, rounds=s.refine_rounds,
            loop=dataclasses.replace(s.phase2, steps=s.refine_steps),
            dims=s.dims, groups=s.groups, objective=s.objective, progress=bar("refinement"),
        )
        history.update(refined.history)
        steps_run = steps_run + refined.passes
        forward_passes = forward_passes + refined.forward_passes
    return Explanation(
        masks, tuple(p.detach().clone() for p in perturbed), steps_run, forward_passes, history
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
