r"""The paper's Table 1 on generated data: every method scored by APE_D, like for like.

For the validation positives that the model classifies as positive, each
method explains class 1 ("malignant") and is turned into a binary mask and a
perturbed input ``J``:

* this method: its own mask (eq. 14) and phase-2 ``J`` (rule ``"phase 2"``);
  its ranking map is ``|J - I|`` (``attribution="change"``);
* Meaningful Perturbation (MP min / MP blur at the paper's four coefficient
  settings): its saliency :math:`1 - m` thresholded with the one threshold
  that gives the best mean APE_D over the whole set (section 5.1);
* Captum's IntegratedGradients, Occlusion and Saliency: the magnitude of
  the map, normalised per image, thresholded likewise.

Every map method gets two rows. **Own J** (the paper's protocol): MP's own
cross-fade with the binary mask (:func:`~captum_regadv.fill_with_reference`
with its deletion reference); for Captum's maps a fill with their baseline
0. **Same rule**: ``J`` from the mask by the package's phase-2 rule
(:func:`~captum_regadv.perturb_within_mask`, ``rule_steps`` steps, its own
scanned threshold), exactly how this method's ``J`` is made, so that the
masks are compared like for like. The columns are described in
:mod:`captum_regadv.benchmark.scoring`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency
from torch import Tensor
from tqdm import tqdm

from .._multiscale import multiscale_change
from ..mask_rules import (
    PerturbRule,
    default_thresholds,
    fill_with_reference,
    perturb_within_mask,
    scan_threshold,
)
from ..meaningful_perturbation import MeaningfulPerturbation, ReferenceKind, deletion_reference
from ..regularized_adversarial import RegularizedAdversarial
from .passes import PassCount, count_passes
from .scoring import (
    MethodOutput,
    MethodRow,
    RankingScores,
    ranking_scores,
    score_row,
    with_better_on,
)

__all__ = [
    "MethodRow",
    "MethodOutput",
    "Table1Settings",
    "run_table1",
    "row_label",
    "PAPER_MP_SETTINGS",
    "PAPER_OURS_SETTINGS",
    "CAPTUM_METHODS",
]

#: (L0 approx. coeff, tv coeff, tv_beta) of the paper's MP rows.
PAPER_MP_SETTINGS: tuple[tuple[float, float, float], ...] = (
    (0.01, 0.2, 1.0),
    (0.01, 0.2, 3.0),
    (6.0, 120.0, 1.0),
    (40.0, 120.0, 1.0),
)
#: (L0 approx. coeff, tv coeff) of the paper's rows for this method.
PAPER_OURS_SETTINGS: tuple[tuple[float, float], ...] = ((0.01, 0.2), (6.0, 120.0), (40.0, 120.0))
CAPTUM_METHODS: tuple[str, ...] = ("IntegratedGradients", "Occlusion", "Saliency")
#: the ``rule`` of each kind of row (see :class:`MethodRow`).
OWN_J, SAME_RULE, PHASE_2 = "own J", "same rule", "phase 2"

Coeffs = tuple[Optional[float], Optional[float], Optional[float]]
Result = tuple[str, MethodRow, MethodOutput]


@dataclass(frozen=True)
class Table1Settings:
    """Budgets of one Table 1 run (the same for every image).

    ``ours_steps``/``ours_phase2_steps``: this method's phases (``None``:
    the package defaults); ``mp_steps``: Meaningful Perturbation's
    iterations; ``rule_steps``: steps of the phase-2 mask rule of the
    same-rule rows; ``thresholds``: candidates scanned per row;
    ``patience``: per-example early stopping of every optimisation
    (``None``: off); ``batch_size``: examples optimised at once;
    ``same_rule``: add the same-rule rows; ``ranking_steps``: curve points
    of the deletion/insertion AUCs (0: skip the ranking metrics, ``nan``
    columns); ``ranking_batch_size``: curve points per forward pass;
    ``pointing_tolerance``: of the pointing game (``None``: its default).
    """

    ours_steps: Optional[int] = None
    ours_phase2_steps: Optional[int] = None
    mp_steps: int = 150
    rule_steps: int = 30
    thresholds: int = 12
    ig_steps: int = 16
    occlusion_window: int = 8
    patience: Optional[int] = None
    batch_size: Optional[int] = None
    same_rule: bool = True
    ranking_steps: int = 50
    ranking_batch_size: Optional[int] = 128
    pointing_tolerance: Optional[float] = None


def row_label(row: MethodRow) -> str:
    """The key of a row in :func:`run_table1`'s outputs, e.g. ``"MP blur 6/120/1 + same rule"``."""
    label = row.method
    if row.method.startswith("MP"):
        label += f" {row.l0_coeff:g}/{row.tv_coeff:g}/{row.tv_beta:g}"
    elif row.method == "ours":
        label += f" {row.l0_coeff:g}/{row.tv_coeff:g}"
    if row.rule == SAME_RULE:
        label += " + same rule"
    return label


def _ranking(
    model: torch.nn.Module, images: Tensor, truth: Tensor, saliency: Tensor, settings: Table1Settings
) -> RankingScores:
    if settings.ranking_steps == 0:
        nan = float("nan")
        return RankingScores(nan, nan, nan, nan)
    return ranking_scores(
        model, images, truth, saliency, steps=settings.ranking_steps,
        internal_batch_size=settings.ranking_batch_size, tolerance=settings.pointing_tolerance,
    )


def _phase2_rule(model: torch.nn.Module, settings: Table1Settings) -> PerturbRule:
    return functools.partial(
        perturb_within_mask, model, target=1, bounds=(0.0, 1.0), steps=settings.rule_steps,
        patience=settings.patience, internal_batch_size=settings.batch_size,
    )


def _map_rows(
    name: str,
    coeffs: Coeffs,
    model: torch.nn.Module,
    images: Tensor,
    truth: Tensor,
    settings: Table1Settings,
    saliency: Tensor,
    map_seconds: float,
    map_passes: PassCount,
    own_rule: PerturbRule,
    normalize: bool,
) -> list[Result]:
    """The own-J row and (with ``settings.same_rule``) the same-rule row of one map."""
    ranking = _ranking(model, images, truth, saliency, settings)
    candidates = default_thresholds(saliency, settings.thresholds, normalize=normalize)
    rules = [(OWN_J, own_rule)]
    if settings.same_rule:
        rules.append((SAME_RULE, _phase2_rule(model, settings)))
    results: list[Result] = []
    for rule, perturb in rules:
        start = time.perf_counter()
        with count_passes(model) as scan_passes:
            scan = scan_threshold(
                model, images, saliency, target=1, perturb=perturb, normalize=normalize,
                thresholds=candidates,
            )
        seconds = map_seconds + time.perf_counter() - start
        assert isinstance(scan.masks, Tensor) and isinstance(scan.perturbed, Tensor)
        row, out = score_row(
            name, rule, coeffs, model, images, truth, scan.masks, scan.perturbed, saliency,
            ranking, seconds, scan.threshold, map_passes + scan_passes,
        )
        results.append((row_label(row), row, out))
    return results


def _ours(
    model: torch.nn.Module,
    images: Tensor,
    truth: Tensor,
    settings: Table1Settings,
    sparsity: Optional[float],
    tv: Optional[float],
) -> list[Result]:
    kwargs: dict[str, Any] = dict(
        target=1,
        bounds=(0.0, 1.0),
        return_perturbed=True,
        patience=settings.patience,
        internal_batch_size=settings.batch_size,
    )
    if sparsity is not None:
        kwargs["sparsity_weight"] = sparsity
    if tv is not None:
        kwargs["tv_weight"] = tv
    if settings.ours_steps is not None:
        kwargs["steps"] = settings.ours_steps
    if settings.ours_phase2_steps is not None:
        kwargs["phase2_steps"] = settings.ours_phase2_steps
    start = time.perf_counter()
    with count_passes(model) as passes:
        masks, perturbed = RegularizedAdversarial(model).attribute(images, **kwargs)
    seconds = time.perf_counter() - start
    assert isinstance(masks, Tensor) and isinstance(perturbed, Tensor)
    # attribution="multiscale" without groups: |J - I| smoothed at every scale
    change = multiscale_change((perturbed - images).abs(), (2, 3))
    name = "ours (defaults)" if sparsity is None else "ours"
    ranking = _ranking(model, images, truth, change, settings)
    row, out = score_row(
        name, PHASE_2, (sparsity, tv, None), model, images, truth, masks, perturbed, change,
        ranking, seconds, None, passes,
    )
    results = [(row_label(row), row, out)]
    if sparsity is None and settings.same_rule:
        # the same masks, J made by the rule every same-rule row uses: compares masks alone
        start = time.perf_counter()
        with count_passes(model) as rule_passes:
            rule_j = _phase2_rule(model, settings)(images, masks)
        assert isinstance(rule_j, Tensor)
        rule_seconds = seconds + time.perf_counter() - start
        row, out = score_row(
            name, SAME_RULE, (sparsity, tv, None), model, images, truth, masks, rule_j,
            change, ranking, rule_seconds, None, passes + rule_passes,
        )
        results.append((row_label(row), row, out))
    return results


def _mp(
    model: torch.nn.Module,
    images: Tensor,
    truth: Tensor,
    settings: Table1Settings,
    reference: ReferenceKind,
    coeffs: tuple[float, float, float],
) -> list[Result]:
    start = time.perf_counter()
    with count_passes(model) as passes:
        saliency = MeaningfulPerturbation(model).attribute(
            images, target=1, reference=reference, l1_weight=coeffs[0], tv_weight=coeffs[1],
            tv_beta=coeffs[2], steps=settings.mp_steps, objective="log_odds",
            patience=settings.patience, internal_batch_size=settings.batch_size,
        )
    assert isinstance(saliency, Tensor)
    ref = deletion_reference(images, reference)
    assert isinstance(ref, Tensor)
    seconds = time.perf_counter() - start
    own = functools.partial(fill_with_reference, reference=ref)
    return _map_rows(
        f"MP {reference}", coeffs, model, images, truth, settings, saliency.detach(), seconds,
        passes, own, normalize=False,
    )


def _captum_map(
    name: str, model: torch.nn.Module, images: Tensor, settings: Table1Settings
) -> Tensor:
    attribution: Tensor
    if name == "IntegratedGradients":
        attribution = IntegratedGradients(model).attribute(
            images, target=1, baselines=0.0, n_steps=settings.ig_steps,
            internal_batch_size=max(images.shape[0], 1) * 4,
        )
    elif name == "Occlusion":
        w, spatial = settings.occlusion_window, images.dim() - 2  # images or volumes
        attribution = Occlusion(model).attribute(
            images, target=1, sliding_window_shapes=(1,) + (w,) * spatial,
            strides=(1,) + (max(w // 2, 1),) * spatial, baselines=0.0,
            perturbations_per_eval=16,
        )
    else:
        attribution = Saliency(model).attribute(images, target=1, abs=True)
    return attribution


def _captum(
    name: str, model: torch.nn.Module, images: Tensor, truth: Tensor, settings: Table1Settings
) -> list[Result]:
    start = time.perf_counter()
    with count_passes(model) as passes:
        saliency = _captum_map(name, model, images, settings).detach()
    seconds = time.perf_counter() - start
    # own J: the baseline (0) that IntegratedGradients and Occlusion delete with
    own = functools.partial(fill_with_reference, reference=0.0)
    return _map_rows(
        name, (None, None, None), model, images, truth, settings, saliency, seconds, passes, own,
        normalize=True,
    )


def run_table1(
    model: torch.nn.Module,
    images: Tensor,
    truth: Tensor,
    *,
    settings: Table1Settings = Table1Settings(),
    mp_references: Sequence[ReferenceKind] = ("min", "blur"),
    include_captum: bool = True,
    show_progress: bool = True,
) -> tuple[list[MethodRow], dict[str, MethodOutput]]:
    """Run every method of Table 1 on ``images`` (positives) and score it.

    Args:
        model: the classifier (eval mode; class 1 is explained).
        images: ``N x 1 x H x W`` in ``[0, 1]``.
        truth: ground-truth masks, ``N x 1 x H x W``.
        settings: step budgets (:class:`Table1Settings`).
        mp_references: the MP deletion references to run.
        include_captum: also run IntegratedGradients, Occlusion and Saliency.
        show_progress: one progress bar over the methods.

    Returns:
        The rows (MP and Captum rows as own-J / same-rule pairs), and each
        row's outputs keyed by :func:`row_label`.
    """
    jobs: list[tuple[str, Callable[[], list[Result]]]] = []
    for reference in mp_references:
        for coeffs in PAPER_MP_SETTINGS:
            jobs.append((
                f"MP {reference} {coeffs[0]:g}/{coeffs[1]:g}/{coeffs[2]:g}",
                functools.partial(_mp, model, images, truth, settings, reference, coeffs),
            ))
    for sparsity, tv in PAPER_OURS_SETTINGS + ((None, None),):
        jobs.append((
            "ours (defaults)" if sparsity is None else f"ours {sparsity:g}/{tv:g}",
            functools.partial(_ours, model, images, truth, settings, sparsity, tv),
        ))
    if include_captum:
        for name in CAPTUM_METHODS:
            jobs.append((name, functools.partial(_captum, name, model, images, truth, settings)))

    results: list[Result] = []
    with tqdm(total=len(jobs), desc="Table 1", disable=not show_progress) as bar:
        for label, job in jobs:
            bar.set_postfix_str(label)
            results.extend(job())
            bar.update(1)
    outputs = {label: out for label, _, out in results}
    rows = with_better_on(
        [row for _, row, _ in results], [out for _, _, out in results], outputs["ours (defaults)"]
    )
    return rows, outputs
