r"""The similarity measures of the sanity check, and its result type.

Per example, higher is more similar, 1 for identical maps:
:func:`rank_correlation` (Spearman), :func:`ssim` (structural similarity)
and :func:`mask_iou` (binary masks). :class:`CascadeResult` holds them for
every step of a cascade (:mod:`captum_regadv.sanity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
from scipy import stats
from skimage.metrics import structural_similarity
from torch import Tensor

from ._boundary import check_choice

__all__ = [
    "CascadeResult",
    "SIMILARITIES",
    "Similarity",
    "mask_iou",
    "rank_correlation",
    "ssim",
]

Similarity = Literal["rank_correlation", "ssim", "iou"]
#: The similarity measures of a :class:`CascadeResult`, in the order they are drawn.
SIMILARITIES: tuple[Similarity, ...] = ("rank_correlation", "ssim", "iou")


# --------------------------------------------------------------------------
# Similarity measures (per example; higher is more similar)
# --------------------------------------------------------------------------


def _check_pair(a: Tensor, b: Tensor) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("the maps must be tensors")
    if a.shape != b.shape:
        raise ValueError(f"the maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"expected a batch of maps N x ..., got shape {tuple(a.shape)}")
    if a.numel() == 0:
        raise ValueError(f"the maps are empty (shape {tuple(a.shape)})")
    for name, t in (("a", a), ("b", b)):
        if t.is_complex() or (t.is_floating_point() and not bool(torch.isfinite(t).all())):
            raise ValueError(f"map {name} contains NaN, Inf or complex values")


def _flat(t: Tensor) -> np.ndarray:
    array: np.ndarray = t.detach().cpu().double().flatten(1).numpy()
    return array


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    r"""Spearman rank correlation of two batches of maps, per example.

    Computed with :func:`scipy.stats.spearmanr` on the flattened maps (ties
    get their average rank). A constant map carries no ranking: two constant
    maps score 1 if they are equal and 0 otherwise, and a constant map
    against a varying one scores 0. Range ``[-1, 1]``; higher means more
    similar. Apply ``abs()`` first to compare magnitudes, as Adebayo et al. do.

    Args:
        a, b: maps ``N x ...`` of the same shape.

    Returns:
        float64 tensor ``(N,)`` on the CPU.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
        >>> rank_correlation(a, a ** 2)
        tensor([1., 1.], dtype=torch.float64)
        >>> rank_correlation(a, -a)
        tensor([-1.,  1.], dtype=torch.float64)
    """
    _check_pair(a, b)
    xs, ys = _flat(a), _flat(b)
    out = np.empty(xs.shape[0])
    for i, (x, y) in enumerate(zip(xs, ys)):
        x_const, y_const = bool(np.all(x == x[0])), bool(np.all(y == y[0]))
        if x_const or y_const:
            out[i] = 1.0 if (x_const and y_const and x[0] == y[0]) else 0.0
        else:
            out[i] = float(stats.spearmanr(x, y).statistic)
    return torch.from_numpy(out)


def ssim(
    a: Tensor,
    b: Tensor,
    *,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> Tensor:
    r"""Mean structural similarity (Wang et al. 2004) of two batches of maps, per example.

    .. math::

        \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
            {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \quad C_1 = (0.01 L)^2,\; C_2 = (0.03 L)^2

    with local means, variances and covariance (population estimates) taken
    under a Gaussian window (standard deviation ``sigma``, truncated at
    ``3.5 sigma``: 11 elements for the default 1.5) over the spatial
    dimensions, ``L = data_range``, and the SSIM map averaged over the
    positions where the window fits and over the channels: computed by
    :func:`skimage.metrics.structural_similarity` in float64. On a map
    smaller than the window, the average is over the positions that the
    largest odd window that fits can centre on, and the Gaussian filter
    reflects the map at its borders. Range ``[-1, 1]``; higher means more
    similar; identical maps score 1.

    Args:
        a, b: maps of the same shape: ``N x C x *spatial`` with 1 to 3
            spatial dimensions, or ``N x F`` (one channel, one spatial
            dimension).
        sigma: standard deviation of the Gaussian window, > 0. Default 1.5.
        data_range: the range of the map values ``L`` (1 for maps in
            ``[0, 1]``). Default 1.

    Returns:
        float64 tensor ``(N,)`` on the maps' device.

    Example:
        >>> import torch
        >>> a = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(a, a)
        tensor([1., 1.], dtype=torch.float64)
        >>> bool((ssim(a, a.flip(0)) < 0.5).all())
        True
    """
    _check_pair(a, b)
    if a.dim() > 5:
        raise ValueError(
            f"expected maps N x C x *spatial with at most 3 spatial dims, got shape {tuple(a.shape)}"
        )
    if not (sigma > 0 and math.isfinite(sigma)) or not (data_range > 0 and math.isfinite(data_range)):
        raise ValueError(f"sigma and data_range must be finite and > 0, got {sigma} and {data_range}")
    x, y = a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()
    if x.ndim == 2:
        x, y = x[:, None], y[:, None]
    smallest = min(x.shape[2:])
    # scikit-image's Gaussian SSIM (Wang et al.'s 11-tap window for sigma 1.5); the
    # window is shrunk to the largest odd size that fits small maps
    size = min(2 * int(3.5 * sigma + 0.5) + 1, smallest if smallest % 2 else smallest - 1)
    values = [
        structural_similarity(  # type: ignore[no-untyped-call]
            xi, yi, win_size=size, channel_axis=0, gaussian_weights=True, sigma=sigma,
            use_sample_covariance=False, data_range=data_range,
        )
        for xi, yi in zip(x, y)
    ]
    return torch.tensor(values, dtype=torch.float64, device=a.device)


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    r"""Intersection over union of two batches of masks (non-zero = in the mask), per example.

    Two empty masks are identical and score 1. Range ``[0, 1]``; higher
    means more similar.

    Args:
        a, b: masks ``N x ...`` of the same shape.

    Returns:
        float64 tensor ``(N,)`` on the masks' device.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        >>> b = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        >>> mask_iou(a, b)
        tensor([0.3333, 1.0000], dtype=torch.float64)
    """
    _check_pair(a, b)
    x, y = (a != 0).flatten(1), (b != 0).flatten(1)
    inter = (x & y).sum(1).double()
    union = (x | y).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def _is_binary(t: Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def _normalise(t: Tensor) -> Tensor:
    """``|t|`` divided by its per-example maximum (all-zero maps stay zero)."""
    m = t.abs()
    peak = m.flatten(1).amax(1).clamp_min(torch.finfo(m.dtype).tiny)
    return m / peak.view(-1, *([1] * (m.dim() - 1)))


@dataclass(frozen=True)
class CascadeResult:
    r"""Similarity of the trained model's explanation with each cascade step.

    Attributes:
        layers: the ``L`` layer names in cascade order (output first): entry
            ``k`` is the step where that layer and every layer before it in
            the tuple are random.
        rank_correlation: ``L x N`` Spearman rank correlation of the absolute
            attributions (:func:`rank_correlation`).
        ssim: ``L x N`` SSIM of the absolute attributions, each normalised
            by its maximum to ``[0, 1]`` (:func:`ssim`).
        iou: ``L x N`` intersection over union (:func:`mask_iou`) when the
            trained model's explanations are binary masks (values 0 and 1
            only), ``NaN`` at steps whose explanation is not binary; ``None``
            when the trained model's explanation is not binary.

    All similarities are float64 CPU tensors; higher means more similar,
    and a method passes the sanity check when they fall as the cascade goes
    down (see the module docstring).
    """

    layers: tuple[str, ...]
    rank_correlation: Tensor
    ssim: Tensor
    iou: Optional[Tensor]

    def values(self, similarity: Similarity) -> Optional[Tensor]:
        """The ``L x N`` tensor of one similarity (``None`` for a missing IoU)."""
        check_choice(similarity, "similarity", SIMILARITIES)
        value: Optional[Tensor] = getattr(self, similarity)
        return value

    def mean(self, similarity: Similarity = "rank_correlation") -> Tensor:
        """Mean over the examples (NaNs ignored), shape ``(L,)``; raises if the IoU is missing."""
        value = self.values(similarity)
        if value is None:
            raise ValueError("no IoU: the trained model's explanations are not binary masks")
        return value.nanmean(1)

    def passes(
        self, *, similarity: Similarity = "rank_correlation", threshold: float = 0.5
    ) -> bool:
        """Whether the mean similarity at the fully randomised model is below ``threshold``."""
        return bool(self.mean(similarity)[-1] < threshold)

    def __repr__(self) -> str:
        def fmt(t: Optional[Tensor]) -> str:
            return "None" if t is None else "[" + ", ".join(f"{v:.2f}" for v in t.nanmean(1).tolist()) + "]"

        return (
            f"{type(self).__name__}(layers={self.layers}, "
            f"rank_correlation={fmt(self.rank_correlation)}, ssim={fmt(self.ssim)}, "
            f"iou={fmt(self.iou)}, n={self.rank_correlation.shape[1]})"
        )
