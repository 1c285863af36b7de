r"""The columns of Table 1: one row per (method, J rule), scored per example.

A row is made from the method's binary masks, its perturbed inputs ``J``
and its continuous map (for the ranking metrics). Per row:

* the APE_D components (weights 1, 1, 1) and APE_S, means over the images;
* the CC hit rate against the ground truth (%), the images whose mask
  touches the ground truth at all (%), the mask area (% of the elements);
* the mask components that miss the ground truth (full connectivity, as the
  CC hit rate), counted over all images, and the median of their distances
  to it (Euclidean, in pixels, from the component's nearest element);
* the passes per image the row cost: forward+backward and forward-only
  model passes of the method and its mask -> ``J`` rule (threshold scan
  included), counted on the model (:mod:`~captum_regadv.benchmark.passes`);
* ``better_on``: on how many images the row's APE_D is lower than that of
  :class:`~captum_regadv.RegularizedAdversarial` with the package defaults
  (per example, like for like);
* the ranking metrics of the map (:mod:`captum_regadv.ranking_metrics`):
  deletion AUC, insertion AUC (blurred substrate), the deletion AUC over the
  first 10% of the elements, and the pointing game (% hits).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Optional

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ..metrics import APEComponents, ape_d, ape_s, cc_hit_rate
from ..pointing import pointing_game
from ..ranking_metrics import deletion_auc, insertion_auc
from .passes import PassCount

__all__ = [
    "MethodRow", "MethodOutput", "RankingScores", "missed_components", "score_row",
    "ranking_scores", "with_better_on",
]


@dataclass(frozen=True)
class MethodRow:
    """One row of Table 1 (means over the explained images).

    ``rule`` says how ``J`` was made from the mask: ``"own J"`` (MP's
    cross-fade with its deletion reference; a fill with the attribution's
    baseline 0 for Captum's maps), ``"same rule"`` (the phase-2 rule
    :func:`~captum_regadv.perturb_within_mask`, as for this method) or
    ``"phase 2"`` (this method's own). ``images_hit`` is the percentage of
    images whose mask touches the ground truth at all; ``better_on`` the
    number of the ``n_images`` images on which the row's APE_D is lower than
    that of this method with defaults.
    """

    method: str
    rule: str
    l0_coeff: Optional[float]
    tv_coeff: Optional[float]
    tv_beta: Optional[float]
    l0: float
    tv: float
    classification: float
    ape_d: float
    ape_s: float
    cc_hit_rate: float
    images_hit: float
    mask_area: float
    better_on: int
    n_images: int
    deletion_auc: float
    insertion_auc: float
    deletion_10: float
    pointing_game: float
    seconds_per_image: float
    threshold: Optional[float]
    passes_per_image: float
    forward_passes_per_image: float
    components_outside: int
    outside_distance: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MethodOutput:
    """Masks, perturbed inputs, the raw map and per-example APE_D of one row, for figures."""

    masks: Tensor
    perturbed: Tensor
    saliency: Tensor
    ape_d: Tensor


@dataclass(frozen=True)
class RankingScores:
    """Means of the ranking metrics of one map (AUCs in ``[0, 1]``, pointing game in %)."""

    deletion_auc: float
    insertion_auc: float
    deletion_10: float
    pointing_game: float


def ranking_scores(
    model: Callable[..., Tensor],
    images: Tensor,
    truth: Tensor,
    saliency: Tensor,
    *,
    steps: int,
    internal_batch_size: Optional[int],
    tolerance: Optional[float] = None,
) -> RankingScores:
    """Deletion, insertion, deletion over the first 10% and pointing game of ``|saliency|``.

    The pointing game is over the images with a non-empty ground truth
    (``nan`` when there is none).
    """
    common: dict[str, Any] = dict(
        target=1, steps=steps, absolute=True, internal_batch_size=internal_batch_size
    )
    deletion = deletion_auc(model, images, saliency, **common)
    insertion = insertion_auc(model, images, saliency, **common)
    first = deletion_auc(model, images, saliency, max_fraction=0.1, **common)
    assert isinstance(deletion, Tensor) and isinstance(insertion, Tensor)
    assert isinstance(first, Tensor)
    has_object = (truth != 0).flatten(1).any(1)
    if bool(has_object.any()):
        hits = pointing_game(
            saliency[has_object], truth[has_object], tolerance=tolerance, absolute=True
        )
        pointing = 100.0 * float(hits.mean())
    else:
        pointing = float("nan")
    return RankingScores(
        float(deletion.mean()), float(insertion.mean()), float(first.mean()), pointing
    )


def score_row(
    name: str,
    rule: str,
    coeffs: tuple[Optional[float], Optional[float], Optional[float]],
    model: Callable[..., Tensor],
    images: Tensor,
    truth: Tensor,
    masks: Tensor,
    perturbed: Tensor,
    saliency: Tensor,
    ranking: RankingScores,
    seconds: float,
    threshold: Optional[float],
    passes: PassCount,
) -> tuple[MethodRow, MethodOutput]:
    """Score one (masks, ``J``) pair; ``better_on`` is filled in by :func:`with_better_on`.
    ``passes``: what the row's method and rule spent on the whole set."""
    c = ape_d(model, images, perturbed, target=1, return_components=True)
    s = ape_s(model, images, perturbed, target=1)
    assert isinstance(c, APEComponents) and isinstance(s, Tensor)
    hits = cc_hit_rate(masks, truth)
    missed = missed_components(masks, truth)
    touched = ((masks != 0) & (truth != 0)).flatten(1).any(1)
    n = images.shape[0]
    per_image, forward_per_image = passes.per_example(n)
    row = MethodRow(
        method=name,
        rule=rule,
        l0_coeff=coeffs[0],
        tv_coeff=coeffs[1],
        tv_beta=coeffs[2],
        l0=float(c.sparsity.mean()),
        tv=float(c.smoothness.mean()),
        classification=float(c.classification.mean()),
        ape_d=float(c.total.mean()),
        ape_s=float(s.mean()),
        cc_hit_rate=float(hits.mean()),
        images_hit=100.0 * float(touched.float().mean()),
        mask_area=100.0 * float((masks != 0).flatten(1).float().mean(1).mean()),
        better_on=0,
        n_images=n,
        deletion_auc=ranking.deletion_auc,
        insertion_auc=ranking.insertion_auc,
        deletion_10=ranking.deletion_10,
        pointing_game=ranking.pointing_game,
        seconds_per_image=seconds / n,
        threshold=threshold,
        passes_per_image=per_image,
        forward_passes_per_image=forward_per_image,
        components_outside=len(missed),
        outside_distance=float(np.median(missed)) if missed else float("nan"),
    )
    return row, MethodOutput(masks, perturbed, saliency, c.total.detach())


def missed_components(masks: Tensor, truth: Tensor) -> list[float]:
    """Distance (elements, Euclidean) from each mask component that misses the
    ground truth to the ground truth, over all examples; ``inf`` where an
    example has no ground truth. ``masks`` and ``truth``: ``N x C x *spatial``
    (channels merged), components with full connectivity.

    Example:
        >>> m = torch.zeros(1, 1, 6, 6); m[0, 0, :2, :2] = 1; m[0, 0, 5, 5] = 1
        >>> gt = torch.zeros(1, 1, 6, 6); gt[0, 0, :2, :2] = 1
        >>> missed_components(m, gt)
        [5.656854...]
    """
    mask_np: np.ndarray = np.asarray((masks.detach() != 0).cpu().numpy().any(axis=1))
    gt_np: np.ndarray = np.asarray((truth.detach() != 0).cpu().numpy().any(axis=1))
    structure = ndimage.generate_binary_structure(mask_np.ndim - 1, mask_np.ndim - 1)
    distances: list[float] = []
    for mask_k, gt_k in zip(mask_np, gt_np):
        labels, count = ndimage.label(mask_k, structure=structure)
        to_truth = ndimage.distance_transform_edt(~gt_k) if gt_k.any() else None
        for c in range(1, count + 1):
            component = labels == c
            if not (component & gt_k).any():
                distances.append(math.inf if to_truth is None else float(to_truth[component].min()))
    return distances


def with_better_on(
    rows: list[MethodRow], outputs: list[MethodOutput], reference: MethodOutput
) -> list[MethodRow]:
    """Each row with ``better_on`` = #images whose APE_D is below ``reference``'s."""
    return [
        replace(row, better_on=int((out.ape_d < reference.ape_d).sum()))
        for row, out in zip(rows, outputs)
    ]
