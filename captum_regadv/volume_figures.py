"""Three orthogonal slices of a volume, per method: masks and maps in 3-D.

Builds on :mod:`captum_regadv.visualization` (the same colours, legend and
robust scale): :func:`orthogonal_slices_figure` draws one row per method
and three columns, the axial (``D``), coronal (``H``) and sagittal (``W``)
planes through one voxel, by default the ground-truth voxel nearest to the
centre of the ground truth. Binary masks are filled in red, continuous
maps drawn on the robust scale of :func:`~captum_regadv.visualization.robust_scale`
(each slice divided by its own 99th percentile of :math:`|a|`), the ground
truth outlined in green on both. Nothing here runs an explanation.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor

from .visualization import FONT_SIZE, _heat, mask_legend, show_mask

__all__ = ["orthogonal_slices_figure", "slice_centre"]

PLANES = ("axial", "coronal", "sagittal")


def slice_centre(truth: Tensor, fallback: Optional[Tensor] = None) -> tuple[int, int, int]:
    """The ``(d, h, w)`` voxel to slice through.

    The voxel of ``truth`` (``C x D x H x W`` or ``D x H x W``, non-zero is
    the object) nearest to the object's centre of mass; without an object,
    the largest ``|fallback|`` voxel, else the volume's centre.

    Example:
        >>> t = torch.zeros(1, 5, 5, 5, dtype=torch.bool); t[0, 1, 2, 3] = True
        >>> slice_centre(t)
        (1, 2, 3)
    """
    volume = truth.reshape((-1,) + tuple(truth.shape[-3:])).ne(0).any(0)
    points = volume.nonzero().float()
    if points.numel():
        centre = points.mean(0)
        nearest = points[(points - centre).norm(dim=1).argmin()]
        d, h, w = (int(v) for v in nearest)
        return d, h, w
    if fallback is not None and bool(fallback.ne(0).any()):
        size = fallback.reshape((-1,) + tuple(fallback.shape[-3:])).abs().sum(0)
        d, h, w = (int(v) for v in torch.unravel_index(size.argmax(), size.shape))
        return d, h, w
    d, h, w = (s // 2 for s in volume.shape)
    return d, h, w


def _planes(t: Tensor, centre: Sequence[int]) -> list[Tensor]:
    """The three ``C x . x .`` slices of a ``C x D x H x W`` tensor through ``centre``."""
    d, h, w = centre
    return [t[:, d], t[:, :, h], t[:, :, :, w]]


def orthogonal_slices_figure(
    volume: Tensor,
    truth: Optional[Tensor],
    masks: Mapping[str, Tensor],
    maps: Mapping[str, Tensor],
    *,
    centre: Optional[tuple[int, int, int]] = None,
    panel_size: float = 2.2,
) -> Figure:
    """One row per method, three orthogonal slices of one volume each.

    Args:
        volume: ``C x D x H x W`` with values in ``[0, 1]`` (one example).
        truth: ground truth ``1 x D x H x W`` or ``C x D x H x W`` (outlined), or ``None``.
        masks: name -> binary mask shaped like ``volume`` (filled in red over it).
        maps: name -> continuous map shaped like ``volume`` (robust scale).
        centre: the ``(d, h, w)`` voxel the planes go through; default
            :func:`slice_centre` of the truth (or of the first mask).
        panel_size: inches per panel. Default 2.2.

    Returns:
        The figure (``1 + len(masks) + len(maps)`` rows, the volume first).

    Raises:
        ValueError: if ``volume`` is not ``C x D x H x W`` or a panel's shape differs.

    Example:
        >>> v = torch.rand(1, 8, 8, 8); gt = torch.zeros_like(v, dtype=torch.bool)
        >>> gt[0, 4, 4, 4] = True
        >>> fig = orthogonal_slices_figure(v, gt, {"mask": gt.float()}, {"map": v})
        >>> len(fig.axes)
        9
    """
    if volume.dim() != 4:
        raise ValueError(f"volume must be C x D x H x W, got shape {tuple(volume.shape)}")
    for name, panel in list(masks.items()) + list(maps.items()):
        if panel.shape[-3:] != volume.shape[-3:] or panel.dim() != 4:
            raise ValueError(
                f"{name!r} has shape {tuple(panel.shape)}, expected C x "
                f"{' x '.join(str(s) for s in volume.shape[1:])}"
            )
    if centre is None:
        first = next(iter(masks.values()), None)
        centre = slice_centre(truth if truth is not None else volume.new_zeros(volume.shape),
                              fallback=first)
    rows = 1 + len(masks) + len(maps)
    fig = Figure(figsize=(3 * panel_size, rows * panel_size + 0.6), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    truth_planes = _planes(truth, centre) if truth is not None else [None] * 3
    names = [f"{p} ({a} = {c})" for p, a, c in zip(PLANES, "dhw", centre)]
    for col, (image, gt) in enumerate(zip(_planes(volume, centre), truth_planes)):
        show_mask(axes[0, col], image, truth=gt, title=names[col])
    axes[0, 0].set_ylabel("volume", fontsize=FONT_SIZE)
    row = 1
    for name, mask in masks.items():
        for col, (image, m, gt) in enumerate(
            zip(_planes(volume, centre), _planes(mask, centre), truth_planes)
        ):
            show_mask(axes[row, col], image, m, truth=gt)
        axes[row, 0].set_ylabel(name, fontsize=FONT_SIZE)
        row += 1
    for name, attribution in maps.items():
        for col, (a, gt) in enumerate(zip(_planes(attribution, centre), truth_planes)):
            _heat(axes[row, col], a, gt, "")
        axes[row, 0].set_ylabel(name, fontsize=FONT_SIZE)
        row += 1
    mask_legend(fig, mask=bool(masks), truth=truth is not None)
    return fig
