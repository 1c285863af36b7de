r"""The paper's Table 1 on generated data: every method scored by APE_D and the CC hit rate.

For the validation positives that the model classifies as positive, each
method explains class 1 ("malignant") and is turned into a binary mask and a
perturbed input ``J``:

* this method: its own mask (eq. 14) and phase-2 ``J``;
* Meaningful Perturbation (MP min / MP blur at the paper's four coefficient
  settings): its saliency :math:`1 - m` thresholded with the one threshold
  that gives the best mean APE_D over the whole set (section 5.1), ``J`` by
  its own cross-fade with the binary mask
  (:func:`~captum_regadv.fill_with_reference` with its deletion reference);
* Captum's IntegratedGradients, Occlusion and Saliency: the magnitude of
  the map, normalised per image, thresholded likewise, ``J`` by the phase-2
  rule (:func:`~captum_regadv.perturb_within_mask`), the most favourable
  rule for them.

Each row reports the APE_D components (weights 1, 1, 1), the CC hit rate
against the lesion masks, and the seconds per image of the attribution plus
its mask rule.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency
from torch import Tensor
from tqdm import tqdm

from ..mask_rules import fill_with_reference, perturb_within_mask, scan_threshold
from ..meaningful_perturbation import MeaningfulPerturbation, ReferenceKind, deletion_reference
from ..metrics import APEComponents, ape_d, cc_hit_rate
from ..regularized_adversarial import RegularizedAdversarial

__all__ = ["MethodRow", "Table1Settings", "run_table1", "PAPER_MP_SETTINGS", "PAPER_OURS_SETTINGS"]

#: (L0 approx. coeff, tv coeff, tv_beta) of the paper's MP rows.
PAPER_MP_SETTINGS: tuple[tuple[float, float, float], ...] = (
    (0.01, 0.2, 1.0),
    (0.01, 0.2, 3.0),
    (6.0, 120.0, 1.0),
    (40.0, 120.0, 1.0),
)
#: (L0 approx. coeff, tv coeff) of the paper's rows for this method.
PAPER_OURS_SETTINGS: tuple[tuple[float, float], ...] = ((0.01, 0.2), (6.0, 120.0), (40.0, 120.0))


@dataclass(frozen=True)
class Table1Settings:
    """Budgets of one Table 1 run (the same for every image).

    ``ours_steps``/``ours_phase2_steps``: this method's phases (``None``:
    the package defaults); ``mp_steps``: Meaningful Perturbation's
    iterations; ``rule_steps``: phase-2 steps of the mask rule for Captum's
    maps; ``thresholds``: candidates scanned per method; ``patience``:
    per-example early stopping of every optimisation (``None``: off);
    ``batch_size``: examples optimised at once.
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


@dataclass(frozen=True)
class MethodRow:
    """One row of Table 1 (means over the explained images).

    ``images_hit`` is the percentage of images whose mask touches the ground
    truth at all (for the shortcut domain: how often the explanation finds
    the confounder).
    """

    method: str
    l0_coeff: Optional[float]
    tv_coeff: Optional[float]
    tv_beta: Optional[float]
    l0: float
    tv: float
    classification: float
    ape_d: float
    cc_hit_rate: float
    images_hit: float
    seconds_per_image: float
    threshold: Optional[float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MethodOutput:
    """Masks, perturbed inputs and the raw map of one method, for figures."""

    masks: Tensor
    perturbed: Tensor
    saliency: Tensor


def _row(
    name: str,
    coeffs: tuple[Optional[float], Optional[float], Optional[float]],
    model: Callable[..., Tensor],
    images: Tensor,
    truth: Tensor,
    masks: Tensor,
    perturbed: Tensor,
    seconds: float,
    threshold: Optional[float],
) -> MethodRow:
    c = ape_d(model, images, perturbed, target=1, return_components=True)
    assert isinstance(c, APEComponents)
    hits = cc_hit_rate(masks, truth)
    return MethodRow(
        method=name,
        l0_coeff=coeffs[0],
        tv_coeff=coeffs[1],
        tv_beta=coeffs[2],
        l0=float(c.sparsity.mean()),
        tv=float(c.smoothness.mean()),
        classification=float(c.classification.mean()),
        ape_d=float(c.total.mean()),
        cc_hit_rate=float(hits.mean()),
        images_hit=100.0 * float(((masks != 0) & (truth != 0)).flatten(1).any(1).float().mean()),
        seconds_per_image=seconds / images.shape[0],
        threshold=threshold,
    )


def _ours(
    model: torch.nn.Module,
    images: Tensor,
    settings: Table1Settings,
    sparsity: Optional[float],
    tv: Optional[float],
) -> tuple[MethodOutput, float]:
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
    masks, perturbed = RegularizedAdversarial(model).attribute(images, **kwargs)
    seconds = time.perf_counter() - start
    assert isinstance(masks, Tensor) and isinstance(perturbed, Tensor)
    return MethodOutput(masks, perturbed, masks), seconds


def _mp(
    model: torch.nn.Module,
    images: Tensor,
    settings: Table1Settings,
    reference: ReferenceKind,
    coeffs: tuple[float, float, float],
) -> tuple[MethodOutput, float, float]:
    start = time.perf_counter()
    saliency = MeaningfulPerturbation(model).attribute(
        images,
        target=1,
        reference=reference,
        l1_weight=coeffs[0],
        tv_weight=coeffs[1],
        tv_beta=coeffs[2],
        steps=settings.mp_steps,
        objective="log_odds",
        patience=settings.patience,
        internal_batch_size=settings.batch_size,
    )
    assert isinstance(saliency, Tensor)
    ref = deletion_reference(images, reference)
    assert isinstance(ref, Tensor)
    scan = scan_threshold(
        model,
        images,
        saliency,
        target=1,
        perturb=functools.partial(fill_with_reference, reference=ref),
        normalize=False,
        thresholds=_candidates(saliency, settings.thresholds, normalize=False),
    )
    seconds = time.perf_counter() - start
    assert isinstance(scan.masks, Tensor) and isinstance(scan.perturbed, Tensor)
    return MethodOutput(scan.masks, scan.perturbed, saliency), seconds, scan.threshold


def _candidates(saliency: Tensor, count: int, *, normalize: bool) -> Tensor:
    from ..mask_rules import default_thresholds

    return default_thresholds(saliency, count, normalize=normalize)


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
        w = settings.occlusion_window
        attribution = Occlusion(model).attribute(
            images, target=1, sliding_window_shapes=(1, w, w),
            strides=(1, max(w // 2, 1), max(w // 2, 1)), baselines=0.0,
            perturbations_per_eval=16,
        )
    else:
        attribution = Saliency(model).attribute(images, target=1, abs=True)
    return attribution


def _captum(
    name: str, model: torch.nn.Module, images: Tensor, settings: Table1Settings
) -> tuple[MethodOutput, float, float]:
    start = time.perf_counter()
    saliency = _captum_map(name, model, images, settings).detach()
    rule = functools.partial(
        perturb_within_mask, model, target=1, bounds=(0.0, 1.0), steps=settings.rule_steps,
        patience=settings.patience, internal_batch_size=settings.batch_size,
    )
    scan = scan_threshold(
        model, images, saliency, target=1, perturb=rule,
        thresholds=_candidates(saliency, settings.thresholds, normalize=True),
    )
    seconds = time.perf_counter() - start
    assert isinstance(scan.masks, Tensor) and isinstance(scan.perturbed, Tensor)
    return MethodOutput(scan.masks, scan.perturbed, saliency), seconds, scan.threshold


CAPTUM_METHODS: tuple[str, ...] = ("IntegratedGradients", "Occlusion", "Saliency")


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
        The rows, and each method's outputs keyed by row label for figures.
    """
    jobs: list[tuple[str, Callable[[], tuple[MethodRow, MethodOutput]]]] = []

    def add(label: str, job: Callable[[], tuple[MethodRow, MethodOutput]]) -> None:
        jobs.append((label, job))

    for reference in mp_references:
        for coeffs in PAPER_MP_SETTINGS:
            label = f"MP {reference} {coeffs[0]:g}/{coeffs[1]:g}/{coeffs[2]:g}"

            def mp_job(reference: ReferenceKind = reference, coeffs: tuple[float, float, float] = coeffs) -> tuple[MethodRow, MethodOutput]:
                out, seconds, t = _mp(model, images, settings, reference, coeffs)
                row = _row(f"MP {reference}", coeffs, model, images, truth, out.masks, out.perturbed, seconds, t)
                return row, out

            add(label, mp_job)
    for sparsity, tv in PAPER_OURS_SETTINGS + ((None, None),):
        label = "ours (defaults)" if sparsity is None else f"ours {sparsity:g}/{tv:g}"

        def ours_job(sparsity: Optional[float] = sparsity, tv: Optional[float] = tv, label: str = label) -> tuple[MethodRow, MethodOutput]:
            out, seconds = _ours(model, images, settings, sparsity, tv)
            name = "ours (defaults)" if sparsity is None else "ours"
            row = _row(name, (sparsity, tv, None), model, images, truth, out.masks, out.perturbed, seconds, None)
            return row, out

        add(label, ours_job)
    if include_captum:
        for name in CAPTUM_METHODS:

            def captum_job(name: str = name) -> tuple[MethodRow, MethodOutput]:
                out, seconds, t = _captum(name, model, images, settings)
                row = _row(name, (None, None, None), model, images, truth, out.masks, out.perturbed, seconds, t)
                return row, out

            add(name, captum_job)

    rows: list[MethodRow] = []
    outputs: dict[str, MethodOutput] = {}
    with tqdm(total=len(jobs), desc="Table 1", disable=not show_progress) as bar:
        for label, job in jobs:
            bar.set_postfix_str(label)
            row, out = job()
            rows.append(row)
            outputs[label] = out
            bar.update(1)
    return rows, outputs
