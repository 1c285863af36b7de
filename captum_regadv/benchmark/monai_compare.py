r"""Side by side with MONAI's explainers: same volumes, same model, one run.

Seven methods explain class 1 of a 3-D classifier on the same volumes:

* MONAI's ``OcclusionSensitivity`` (its defaults: ``mask_size=16``,
  ``overlap=0.6``, ``mode="gaussian"``), map :math:`p(I) - p(\text{occluded})`;
* MONAI's ``GradCAM`` and ``GradCAMpp`` on the layer ``target_layer``
  (each on a copy of the model, since they hook into it), upsampled by
  MONAI, without MONAI's default postprocessing (which maps the largest
  value to 0 and the smallest to 1);
* Captum's ``IntegratedGradients`` (baseline 0, ``ig_steps`` steps) and
  ``Occlusion`` (a cube of ``occlusion_window`` voxels, stride half of it,
  baseline 0);
* :class:`~captum_regadv.MeaningfulPerturbation` and
  :class:`~captum_regadv.RegularizedAdversarial`, both with the package
  defaults.

Every map is scored like the map rows of Table 1 (:mod:`.table1`): the
threshold with the best mean APE_D over the set (:func:`~captum_regadv.scan_threshold`),
with the method's **own J** (a fill with the baseline 0; MP's cross-fade
with its blurred reference) and with the **same rule** (the phase-2
optimisation :func:`~captum_regadv.perturb_within_mask`, how this method
makes its ``J``). This method's own mask and ``J`` are used as they come.
Further columns: the CC hit rate of the same-rule mask (26-connectivity;
this method: its own mask), the deletion AUC of the map (blurred substrate;
lower is better), the mask area, and the seconds and model passes per
volume that the *explanation* took (the scoring is not counted). A pass is
one volume through the network, forward (the backward pass of a gradient
is not counted separately), counted by :class:`CountingModule`.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from captum.attr import IntegratedGradients, Occlusion
from torch import Tensor, nn

from ..mask_rules import (
    PerturbRule,
    default_thresholds,
    fill_with_reference,
    perturb_within_mask,
    scan_threshold,
)
from ..meaningful_perturbation import MeaningfulPerturbation, deletion_reference
from ..metrics import ape_d, cc_hit_rate
from ..ranking_metrics import deletion_auc
from ..regularized_adversarial import RegularizedAdversarial

__all__ = [
    "CompareRow", "CompareSettings", "CountingModule", "METHODS", "compare_methods",
    "format_compare_markdown", "summary_in_words",
]

METHODS: tuple[str, ...] = (
    "MONAI OcclusionSensitivity", "MONAI GradCAM", "MONAI GradCAMpp",
    "Captum IntegratedGradients", "Captum Occlusion", "MeaningfulPerturbation",
    "RegularizedAdversarial",
)


class CountingModule(nn.Module):
    """Wraps a model and counts the examples that go through its forward pass.

    Example:
        >>> counted = CountingModule(nn.Linear(3, 2))
        >>> _ = counted(torch.zeros(4, 3)); _ = counted(torch.zeros(2, 3))
        >>> counted.calls, counted.passes
        (2, 6)
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # MONAI's explainers restore the wrapper's mode
        self.calls = 0
        self.passes = 0

    def forward(self, x: Tensor, *args: Any) -> Tensor:
        self.calls += 1
        self.passes += int(x.shape[0])
        out: Tensor = self.model(x, *args)
        return out

    def reset(self) -> None:
        """Set both counters to zero."""
        self.calls = self.passes = 0


@dataclass(frozen=True)
class CompareSettings:
    """Budgets of the side-by-side run (the same for every volume).

    ``ig_steps``: IntegratedGradients' steps; ``occlusion_window``: side of
    Captum's occluding cube; ``rule_steps``: steps of the same-rule phase-2
    rule; ``thresholds``: candidates per scan; ``deletion_steps``: points
    of the deletion curve; ``target_layer``: the layer GradCAM reads;
    ``occlusion_mask_size``: MONAI's occluding cube (its default 16).
    """

    ig_steps: int = 16
    occlusion_window: int = 8
    rule_steps: int = 30
    thresholds: int = 12
    deletion_steps: int = 50
    target_layer: str = "class_layers.relu"
    occlusion_mask_size: int = 16


@dataclass(frozen=True)
class CompareRow:
    """One method's means over the volumes (APE_D: lower is better)."""

    method: str
    ape_d_own: float
    ape_d_same_rule: float
    cc_hit_rate: float
    mask_area: float
    deletion_auc: float
    seconds_per_volume: float
    passes_per_volume: float
    n_volumes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _monai_occlusion(model: nn.Module, x: Tensor, mask_size: int) -> Tensor:
    from monai.visualize.occlusion_sensitivity import OcclusionSensitivity

    with torch.no_grad():
        p = torch.softmax(model(x), 1)[:, 1]
    explainer = OcclusionSensitivity(model, mask_size=mask_size, verbose=False)
    # it takes one volume at a time
    occluded = torch.cat([explainer(x[k : k + 1])[0][:, 1:2] for k in range(x.shape[0])])
    # a plain tensor (MONAI returns its MetaTensor subclass)
    return (p.view(-1, 1, 1, 1, 1) - occluded).detach().as_subclass(Tensor)


def _identity(t: Tensor) -> Tensor:
    return t


def _monai_cam(kind: str, model: nn.Module, x: Tensor, layer: str) -> Tensor:
    from monai.visualize.class_activation_maps import GradCAM, GradCAMpp

    cls = GradCAM if kind == "MONAI GradCAM" else GradCAMpp
    # raw (ReLU'd) map: MONAI's default postprocessing maps the maximum to 0 ("flips
    # magnitudes"), the scoring normalises each map by its own maximum
    cam = cls(nn_module=model, target_layers=f"model.{layer}", postprocessing=_identity)
    # one volume at a time: GradCAMpp's score broadcasts wrongly over a batch (MONAI 1.6)
    maps = [cam(x[k : k + 1], class_idx=1).detach() for k in range(x.shape[0])]
    return torch.cat(maps).as_subclass(Tensor)


def _explain(
    name: str, counted: CountingModule, x: Tensor, settings: CompareSettings
) -> tuple[Tensor, Optional[Tensor], PerturbRule]:
    """``(map, own mask and J stacked or None, own rule)``; mask and J of this method only."""
    zero_fill: PerturbRule = functools.partial(fill_with_reference, reference=0.0)
    if name == "MONAI OcclusionSensitivity":
        return _monai_occlusion(counted, x, settings.occlusion_mask_size), None, zero_fill
    if name in ("MONAI GradCAM", "MONAI GradCAMpp"):
        hooked = CountingModule(copy.deepcopy(counted.model))
        cam = _monai_cam(name, hooked, x, settings.target_layer)
        counted.passes += hooked.passes
        counted.calls += hooked.calls
        return cam, None, zero_fill
    if name == "Captum IntegratedGradients":
        ig = IntegratedGradients(counted).attribute(
            x, target=1, baselines=0.0, n_steps=settings.ig_steps, internal_batch_size=8
        )
        return ig.detach(), None, zero_fill
    if name == "Captum Occlusion":
        w = settings.occlusion_window
        occ = Occlusion(counted).attribute(
            x, target=1, sliding_window_shapes=(1, w, w, w), strides=(1,) + (max(w // 2, 1),) * 3,
            baselines=0.0, perturbations_per_eval=16,
        )
        return occ.detach(), None, zero_fill
    if name == "MeaningfulPerturbation":
        sal = MeaningfulPerturbation(counted).attribute(x, target=1)
        assert isinstance(sal, Tensor)
        ref = deletion_reference(x, "blur")
        assert isinstance(ref, Tensor)
        return sal.detach(), None, functools.partial(fill_with_reference, reference=ref)
    if name == "RegularizedAdversarial":
        mask, perturbed = RegularizedAdversarial(counted).attribute(
            x, target=1, bounds=(0.0, 1.0), return_perturbed=True
        )
        assert isinstance(mask, Tensor) and isinstance(perturbed, Tensor)
        # attribution="change" without groups: |J - I|, zero outside the mask
        return (perturbed - x).abs().detach(), torch.stack([mask, perturbed]), zero_fill
    raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")


def compare_methods(
    model: nn.Module,
    volumes: Tensor,
    truth: Tensor,
    *,
    methods: Sequence[str] = METHODS,
    settings: CompareSettings = CompareSettings(),
    progress: Optional[Callable[[str], None]] = None,
) -> tuple[list[CompareRow], dict[str, dict[str, Tensor]]]:
    """Explain ``volumes`` (class 1) with each method and score it side by side.

    Args:
        model: a 3-D classifier with two logits, in eval mode (not changed).
        volumes: ``N x 1 x D x H x W`` in ``[0, 1]``.
        truth: ground truth, ``N x 1 x D x H x W``.
        methods: names from :data:`METHODS`. Default all.
        settings: budgets (:class:`CompareSettings`).
        progress: called with each method's name before it runs.

    Returns:
        The rows, in the order of ``methods``, and per method its ``"map"``,
        ``"mask"`` (the same-rule mask; this method's own) and ``"perturbed"``.

    Raises:
        ValueError: for volumes that are not ``N x C x D x H x W`` or an unknown method.

    Example:
        >>> net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.AdaptiveMaxPool3d(1),
        ...                     nn.Flatten(), nn.Linear(2, 2)).eval()
        >>> x = torch.rand(1, 1, 8, 8, 8); gt = x > 0.9
        >>> rows, _ = compare_methods(net, x, gt, methods=["Captum IntegratedGradients"],
        ...     settings=CompareSettings(ig_steps=2, rule_steps=1, thresholds=2,
        ...                              deletion_steps=2, occlusion_window=4,
        ...                              occlusion_mask_size=4))
        >>> rows[0].method, rows[0].passes_per_volume
        ('Captum IntegratedGradients', 2.0)
    """
    if volumes.dim() != 5:
        raise ValueError(f"volumes must be N x C x D x H x W, got shape {tuple(volumes.shape)}")
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
    n = volumes.shape[0]
    counted = CountingModule(model)
    same_rule: PerturbRule = functools.partial(
        perturb_within_mask, model, target=1, bounds=(0.0, 1.0), steps=settings.rule_steps
    )
    rows: list[CompareRow] = []
    outputs: dict[str, dict[str, Tensor]] = {}
    for name in methods:
        if progress is not None:
            progress(name)
        counted.reset()
        start = time.perf_counter()
        saliency, own, own_rule = _explain(name, counted, volumes, settings)
        seconds = time.perf_counter() - start
        passes = counted.passes
        normalize = name != "MeaningfulPerturbation"
        if own is not None:  # this method: its own mask and J
            mask, perturbed = own[0], own[1]
            own_ape = ape_d(model, volumes, perturbed, target=1)
            assert isinstance(own_ape, Tensor)
            ape_own = ape_same = float(own_ape.mean())
        else:
            candidates = default_thresholds(saliency, settings.thresholds, normalize=normalize)
            scans = [
                scan_threshold(model, volumes, saliency, target=1, perturb=rule,
                               normalize=normalize, thresholds=candidates)
                for rule in (own_rule, same_rule)
            ]
            ape_own, ape_same = (float(s.ape.mean()) for s in scans)
            scan_mask, scan_perturbed = scans[1].masks, scans[1].perturbed
            assert isinstance(scan_mask, Tensor) and isinstance(scan_perturbed, Tensor)
            mask, perturbed = scan_mask, scan_perturbed
        deletion = deletion_auc(
            model, volumes, saliency, target=1, steps=settings.deletion_steps, absolute=True,
            internal_batch_size=16,
        )
        assert isinstance(deletion, Tensor)
        rows.append(CompareRow(
            method=name, ape_d_own=ape_own, ape_d_same_rule=ape_same,
            cc_hit_rate=float(cc_hit_rate(mask, truth, connectivity=3).mean()),
            mask_area=100.0 * float((mask != 0).flatten(1).float().mean()),
            deletion_auc=float(deletion.mean()), seconds_per_volume=seconds / n,
            passes_per_volume=passes / n, n_volumes=n,
        ))
        outputs[name] = {"map": saliency, "mask": mask, "perturbed": perturbed}
    return rows, outputs


_HEAD = (
    ("Method", "method"), ("APE_D own J", "ape_d_own"), ("APE_D same rule", "ape_d_same_rule"),
    ("CC hit rate (%, 26-conn.)", "cc_hit_rate"), ("mask area (%)", "mask_area"),
    ("deletion AUC", "deletion_auc"), ("s / volume", "seconds_per_volume"),
    ("passes / volume", "passes_per_volume"),
)


def format_compare_markdown(rows: Sequence[CompareRow]) -> str:
    """The rows as a Markdown table (numbers to 4 significant digits).

    Example:
        >>> row = CompareRow("m", 0.5, 0.25, 100.0, 1.0, 0.1, 2.0, 10.0, 1)
        >>> print(format_compare_markdown([row]).splitlines()[2])
        | m | 0.5 | 0.25 | 100 | 1 | 0.1 | 2 | 10 |
    """
    lines = ["| " + " | ".join(t for t, _ in _HEAD) + " |", "|" + "---|" * len(_HEAD)]
    for row in rows:
        d = row.as_dict()
        cells = [d[k] if isinstance(d[k], str) else f"{d[k]:.4g}" for _, k in _HEAD]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_in_words(rows: Sequence[CompareRow], ours: str = "RegularizedAdversarial") -> str:
    """Which method is best on each measure, and where ``ours`` stands, in words.

    Example:
        >>> a = CompareRow("A", 0.5, 0.3, 50.0, 1.0, 0.2, 1.0, 10.0, 2)
        >>> b = CompareRow("RegularizedAdversarial", 0.4, 0.4, 100.0, 0.1, 0.3, 5.0, 90.0, 2)
        >>> print(summary_in_words([a, b]))  # doctest: +NORMALIZE_WHITESPACE
        APE_D (same rule, lower is better): best A (0.3); RegularizedAdversarial 0.4, rank 2 of 2.
        CC hit rate (higher is better): best RegularizedAdversarial (100); RegularizedAdversarial 100, rank 1 of 2.
        deletion AUC (lower is better): best A (0.2); RegularizedAdversarial 0.3, rank 2 of 2.
        passes / volume (lower is better): best A (10); RegularizedAdversarial 90, rank 2 of 2.
        <BLANKLINE>
    """
    mine = next((r for r in rows if r.method == ours), None)
    lines = []
    for title, key, higher in (
        ("APE_D (same rule, lower is better)", "ape_d_same_rule", False),
        ("CC hit rate (higher is better)", "cc_hit_rate", True),
        ("deletion AUC (lower is better)", "deletion_auc", False),
        ("passes / volume (lower is better)", "passes_per_volume", False),
    ):
        ordered = sorted(rows, key=lambda r: -getattr(r, key) if higher else getattr(r, key))
        best = ordered[0]
        line = f"{title}: best {best.method} ({getattr(best, key):.4g})"
        if mine is not None:
            value = getattr(mine, key)
            better = sum(
                (getattr(r, key) > value) if higher else (getattr(r, key) < value) for r in rows
            )
            line += f"; {ours} {value:.4g}, rank {1 + better} of {len(rows)}"
        lines.append(line + ".")
    return "\n".join(lines) + "\n"
