r"""The pointing game (Zhang et al. 2016): is the top-attributed element on the object?

Ties in the map are broken by the seeded order of
:func:`~captum_regadv.ranking_metrics.ranking_order`, as in the deletion and
insertion metrics.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ._boundary import check_inputs, check_number
from .ranking_metrics import ranking_order

__all__ = ["default_tolerance", "pointing_game"]


def default_tolerance(spatial: Sequence[int]) -> int:
    """Zhang et al.'s 15 pixels at 224 pixels, scaled to the smallest spatial side."""
    return int(round(15.0 * min(spatial) / 224.0))


def pointing_game(
    attributions: Tensor,
    ground_truth: Tensor,
    *,
    tolerance: Optional[float] = None,
    absolute: bool = False,
    channel_dim: Optional[int] = 1,
    seed: int = 0,
) -> Tensor:
    r"""Pointing game: 1 where the top position is within ``tolerance`` of the ground truth.

    The map is summed over ``channel_dim`` (after :math:`|\cdot|` with
    ``absolute``), the ground truth merged over it with a logical OR; the
    top position :math:`p^\star = \arg\max_p a(p)` (ties broken by the
    seeded order of :func:`ranking_order`) scores

    .. math::

        \text{hit} = \big[\min_{q \in GT} \lVert p^\star - q \rVert_2 \le \text{tolerance}\big].

    Higher is better; the percentage of hits is the mean times 100.

    Args:
        attributions: maps ``N x C x *spatial`` (or ``N x *spatial`` with
            ``channel_dim=None``).
        ground_truth: the objects, shaped like ``attributions`` or with one
            channel; non-zero = object. Every example needs one.
        tolerance: distance in elements (pixels); default
            :math:`\operatorname{round}(15 \cdot \min(\text{spatial}) / 224)`,
            Zhang et al.'s 15 pixels scaled to the map; 0 for an exact hit.
        absolute: use :math:`|a|`. Default False.
        channel_dim: the channel dimension (default 1) or ``None``.
        seed: seed of the tie-breaking order. Default 0.

    Returns:
        Tensor ``(N,)`` of 0/1 hits, on the maps' device, in their dtype.

    Example:
        >>> a = torch.zeros(2, 1, 5, 5); a[0, 0, 1, 1] = 1.0; a[1, 0, 4, 4] = 1.0
        >>> gt = torch.zeros(2, 1, 5, 5); gt[:, 0, 0:2, 0:2] = 1.0
        >>> pointing_game(a, gt, tolerance=0)
        tensor([1., 0.])
        >>> pointing_game(a, gt, tolerance=4.5)
        tensor([1., 1.])
    """
    if not isinstance(attributions, Tensor) or not isinstance(ground_truth, Tensor):
        raise TypeError("attributions and ground_truth must be tensors")
    check_inputs((attributions,), "attributions")
    check_number(seed, "seed", minimum=0, integer=True)
    a = attributions.detach()
    gt = ground_truth.detach() != 0
    if gt.dim() != a.dim() or gt.shape[0] != a.shape[0]:
        raise ValueError(
            f"ground_truth of shape {tuple(ground_truth.shape)} does not match attributions "
            f"of shape {tuple(a.shape)}"
        )
    if absolute:
        a = a.abs()
    if channel_dim is not None:
        if not 0 < channel_dim < a.dim() or a.dim() < 3:
            raise ValueError(f"channel_dim {channel_dim} is not a non-batch dim of attributions")
        a = a.sum(channel_dim)
        gt = gt.any(channel_dim)
    if gt.shape[1:] != a.shape[1:]:
        raise ValueError(
            f"ground_truth of shape {tuple(ground_truth.shape)} does not match attributions "
            f"of shape {tuple(attributions.shape)}"
        )
    spatial = tuple(a.shape[1:])
    if tolerance is None:
        tolerance = default_tolerance(spatial)
    check_number(tolerance, "tolerance", minimum=0.0)
    empty = ~gt.flatten(1).any(1)
    if bool(empty.any()):
        raise ValueError(
            f"ground_truth[{int(torch.nonzero(empty)[0])}] is empty: the pointing game needs "
            "an object"
        )
    top = ranking_order(a, seed=seed)[:, 0]
    # squared distance of every position to the top one, one spatial dim at a time
    coords = torch.unravel_index(top, spatial)
    squared = torch.zeros(a.shape, dtype=torch.float64, device=a.device)
    for d, (size, c) in enumerate(zip(spatial, coords)):
        axis = torch.arange(size, device=a.device, dtype=torch.float64)
        view = [1] * (len(spatial) + 1)
        view[d + 1] = size
        centre = c.to(torch.float64).view([-1] + [1] * len(spatial))
        squared = squared + (axis.view(view) - centre) ** 2
    squared = squared.flatten(1)
    nearest = squared.masked_fill(~gt.flatten(1), float("inf")).amin(1)
    dtype = attributions.dtype
    return (nearest <= float(tolerance) ** 2).to(dtype)
