r"""The per-example weight search of :class:`~captum_regadv.RegularizedAdversarial`,
and the diagnostics of a call.

As Carlini & Wagner's attack searches its constant: an example still
classified (:math:`M(J)_i \ge 0.5`) after an explanation is explained again
with the regulariser weights times ``search_factor ** attempt``; the result
with the lower score is kept. Every attempt costs a whole explanation for the
examples it re-runs, which :class:`Diagnostics` counts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ._boundary import bound_rows
from ._forward import ScoredModel, batched_output
from ._phases import Explanation, PhaseSettings, explain_once

__all__ = ["Diagnostics", "explain_with_search"]


@dataclass(frozen=True)
class Diagnostics:
    r"""What one ``attribute`` call did, per example (recorded, not recomputed).

    Attributes:
        passes: forward+backward passes of the model ``(N,)``, all stages and
            weight-search attempts together.
        forward_passes: forward-only passes ``(N,)``: the refinement's
            candidates (one per candidate and attempt), the loss of the last
            iterate of every optimisation stage, and the scores the search
            and these diagnostics read (one per attempt, and one for
            :math:`M(I)_i`). Not counted: one forward+backward pass of at
            most two examples per call that checks the model's gradient.
        attempts: explanations run ``(N,)``: 1, plus one per weight-search
            attempt that re-ran the example.
        kept_attempt: the attempt whose result is returned ``(N,)`` (0: the
            first, with the weights as given).
        weight_scale: the factor on both regulariser weights of the returned
            result ``(N,)``.
        score_before: :math:`M(I)_i` ``(N,)``.
        score_after: :math:`M(J)_i` of the returned ``J`` ``(N,)``.
        multiplier: phase 1's final multiplier :math:`\lambda` on the
            classification term ``(N,)`` of the returned result (1: the
            weights as given held; larger: the dual ascent of
            :mod:`captum_regadv._phase1_loss` raised the classification weight
            to destroy the class).
        losses: one dict per attempt, mapping a stage (``"phase 1"``,
            ``"phase 2"``, ``"refinement 1"``, ...) to the per-example loss at every
            step, ``(steps + 1) x N``; NaN where the example did not run (not
            in that attempt, or stopped early). Phase 1's loss is eq. 13 with
            the log-odds term; phase 2's and the refinement's are the log-odds
            :math:`\ell_i(J)` (``objective="log_odds"``).

    Example:
        >>> import torch
        >>> from captum_regadv import RegularizedAdversarial
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
        >>> explainer = RegularizedAdversarial(model)
        >>> _ = explainer.attribute(torch.rand(3, 1, 2, 2), target=1, steps=5, phase2_steps=3)
        >>> d = explainer.last_diagnostics
        >>> d.losses[0]["phase 1"].shape
        torch.Size([6, 3])
    """

    passes: Tensor
    forward_passes: Tensor
    attempts: Tensor
    kept_attempt: Tensor
    weight_scale: Tensor
    score_before: Tensor
    score_after: Tensor
    losses: tuple[dict[str, Tensor], ...]
    multiplier: Optional[Tensor] = None


def _scores(model: ScoredModel, inputs: tuple[Tensor, ...], chunk: int | None) -> Tensor:
    """``M(J)_i`` of every example of ``inputs`` (the examples of ``model``)."""
    out = batched_output(model.forward_func, inputs, model.additional_args, chunk)
    return model.score_of(out, torch.arange(out.shape[0], device=out.device))


def _final_scores(
    model: ScoredModel, run: Explanation, chunk: int | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``M(J)_i`` of a run's ``J`` (as ``dtype``, the model output's) and the
    forward passes spent on it per example: where the refinement scored the
    ``J`` it returns, that score (no pass), else one forward pass."""
    if run.scores is not None:
        scores = run.scores.to(dtype, copy=True)
    else:
        n, device = run.perturbed[0].shape[0], run.perturbed[0].device
        scores = torch.full((n,), math.nan, dtype=dtype, device=device)
    known = torch.isfinite(scores)
    missing = torch.nonzero(~known).flatten()
    if missing.numel():
        scores[missing] = _scores(
            model.subset(missing), tuple(p[missing] for p in run.perturbed), chunk
        ).to(dtype)
    return scores, (~known).long()


def _passes_per_run(settings: PhaseSettings) -> int:
    """Forward+backward passes of one explanation of one example (no early stop;
    one more where the refinement finds the example saturated, which is only
    known once it runs)."""
    refines = (
        settings.refine_fractions and settings.refine_rounds and settings.phase2.steps
        and settings.mode == "destroy"
    )
    refine = settings.refine_rounds * (1 + settings.refine_steps) if refines else 0
    return settings.phase1.steps + settings.phase2.steps + refine


def _widen(history: Tensor, rows: Tensor, n: int) -> Tensor:
    """A ``steps x len(rows)`` history as ``steps x n``, NaN for other examples."""
    full = torch.full((history.shape[0], n), float("nan"), dtype=history.dtype,
                      device=history.device)
    full[:, rows] = history
    return full


def explain_with_search(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    output: Tensor,
    bounds: tuple[tuple[Tensor, Tensor], ...],
    settings: PhaseSettings,
    *,
    search_steps: int,
    search_factor: float,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Diagnostics]:
    """Explain every example, then re-explain the failures with smaller weights.

    Returns the boolean masks, ``J`` and the :class:`Diagnostics`.
    """
    n = originals[0].shape[0]
    chunk = settings.phase1.batch_size
    all_rows = torch.arange(n, device=output.device)
    first = explain_once(model, originals, output, bounds, 1.0, settings)
    masks = tuple(m.clone() for m in first.masks)
    perturbed = tuple(p.clone() for p in first.perturbed)
    passes, forward_passes = first.steps_run.clone(), first.forward_passes + 1
    attempts = torch.ones_like(passes)
    kept = torch.zeros_like(passes)
    losses = [first.history]
    multiplier = first.multiplier.clone()
    scores, spent = _final_scores(model, first, chunk, output.dtype)
    forward_passes += spent
    for attempt in range(1, search_steps + 1):
        failed = torch.nonzero(scores >= 0.5).flatten()
        if failed.numel() == 0:
            break
        scale = search_factor**attempt
        sub_model = model.subset(failed)
        again = explain_once(
            sub_model,
            tuple(o[failed] for o in originals),
            output[failed],
            tuple((bound_rows(lo, failed), bound_rows(hi, failed)) for lo, hi in bounds),
            scale,
            settings if settings.groups is None
            else dataclasses.replace(settings, groups=settings.groups.rows(failed)),
            label=(
                f" (weight search {attempt}/{search_steps}: weights x{scale:g}, "
                f"{failed.numel()} of {n} example(s) again, "
                f"+{_passes_per_run(settings)} passes each)"
            ),
        )
        new, spent = _final_scores(sub_model, again, chunk, output.dtype)
        improved = new < scores[failed]
        better = failed[improved]
        for k in range(len(originals)):
            masks[k][better] = again.masks[k][improved]
            perturbed[k][better] = again.perturbed[k][improved]
        scores[better] = new[improved]
        multiplier[better] = again.multiplier[improved]
        kept[better] = attempt
        passes[failed] += again.steps_run
        forward_passes[failed] += again.forward_passes + spent
        attempts[failed] += 1
        losses.append({k: _widen(v, failed, n) for k, v in again.history.items()})
    diagnostics = Diagnostics(
        passes=passes,
        forward_passes=forward_passes,
        attempts=attempts,
        kept_attempt=kept,
        weight_scale=torch.pow(torch.full_like(scores, search_factor), kept.to(scores.dtype)),
        score_before=model.score_of(output, all_rows),
        score_after=scores,
        losses=tuple(losses),
        multiplier=multiplier,
    )
    return masks, perturbed, diagnostics
