"""The slice figure of a volume's mask: three orthogonal slices through its centre.

:func:`slice_panels` lays out the panels (which axes, their extent in
millimetres, their labels) as plain numbers; :func:`render_slices` draws
them. With a voxel spacing ``(d, h, w)`` each panel is drawn in millimetres
(a slice of thick voxels is as tall as it is in the body, not as its voxel
count), and its axes are labelled in mm; without one, in voxels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

from ._base import FloatArray
from .spacing import spacing_of_affine

__all__ = ["Panel", "render_slices", "slice_panels"]

_NAMES = "DHW"


@dataclass(frozen=True)
class Panel:
    """One panel: the slice ``index`` across voxel ``axis``.

    ``rows``/``cols`` are the voxel axes shown vertically and horizontally;
    ``extent`` is matplotlib's ``(left, right, bottom, top)`` in mm (or
    voxels), so that a voxel is drawn ``spacing[cols]`` wide and
    ``spacing[rows]`` tall.
    """

    axis: int
    index: int
    rows: int
    cols: int
    extent: tuple[float, float, float, float]
    xlabel: str
    ylabel: str
    title: str


def slice_panels(
    shape: Sequence[int], index: Sequence[int], spacing: Optional[Sequence[float]] = None
) -> list[Panel]:
    """The three panels of a ``D x H x W`` volume cut at voxel ``index``.

    Example:
        >>> p = slice_panels((4, 10, 20), (2, 5, 10), spacing=(3.0, 0.5, 0.5))[2]
        >>> p.rows, p.cols, p.extent, p.xlabel, p.title
        (0, 1, (0.0, 5.0, 12.0, 0.0), 'H (mm)', 'W = 10 of 20 (5.0 mm)')
    """
    unit = "voxels" if spacing is None else "mm"
    step = [1.0, 1.0, 1.0] if spacing is None else [float(s) for s in spacing]
    panels = []
    for axis in range(3):
        rows, cols = [k for k in range(3) if k != axis]
        where = "" if spacing is None else f" ({index[axis] * step[axis]:.1f} mm)"
        panels.append(Panel(
            axis, int(index[axis]), rows, cols,
            (0.0, shape[cols] * step[cols], shape[rows] * step[rows], 0.0),
            f"{_NAMES[cols]} ({unit})", f"{_NAMES[rows]} ({unit})",
            f"{_NAMES[axis]} = {index[axis]} of {shape[axis]}{where}",
        ))
    return panels


def render_slices(
    pixels: FloatArray,
    mask: npt.NDArray[Any],
    affine: Optional[FloatArray] = None,
    *,
    spacing: Optional[Sequence[float]] = None,
) -> bytes:
    """PNG of the three orthogonal slices through the mask's centre of mass.

    Each panel shows the volume in gray (with an intensity colorbar) and the
    mask in red, outlined; the legend gives the mask's size. Panels are drawn
    in millimetres with ``spacing`` (voxel spacing ``(d, h, w)``), else with
    the spacing of ``affine`` (the norms of its columns), else in voxels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from scipy import ndimage

    on = np.asarray(mask) != 0
    centre = ndimage.center_of_mass(on) if on.any() else tuple(s / 2 for s in on.shape)
    index = [min(int(round(c)), s - 1) for c, s in zip(centre, on.shape)]
    if spacing is None and affine is not None:
        spacing = [s or 1.0 for s in spacing_of_affine(affine)]
    low, high = float(pixels.min()), float(pixels.max())
    red = ListedColormap([(0.0, 0.0, 0.0, 0.0), (1.0, 0.15, 0.15, 0.45)])
    figure = Figure(figsize=(12, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    shown = None
    for panel, ax in zip(slice_panels(on.shape, index, spacing), axes):
        take: list[Any] = [slice(None)] * 3
        take[panel.axis] = panel.index
        image, part = pixels[tuple(take)], on[tuple(take)]
        shown = ax.imshow(image, cmap="gray", vmin=low, vmax=high, extent=panel.extent,
                          aspect="equal", interpolation="nearest")
        ax.imshow(part.astype(np.uint8), cmap=red, vmin=0, vmax=1, extent=panel.extent,
                  aspect="equal", interpolation="nearest")
        if part.any() and not part.all():
            left, right, bottom, top = panel.extent
            xs = (np.arange(part.shape[1]) + 0.5) * (right - left) / part.shape[1]
            ys = (np.arange(part.shape[0]) + 0.5) * (bottom - top) / part.shape[0]
            ax.contour(xs, ys, part.astype(float), levels=[0.5], colors=["red"],
                       linewidths=1.0)
        ax.set_title(f"{panel.title}\n{int(part.sum())} mask voxels")
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
    assert shown is not None
    figure.colorbar(shown, ax=list(axes), label="input intensity", shrink=0.8)
    fraction = on.mean() if on.size else 0.0
    figure.legend(
        handles=[Patch(facecolor=(1.0, 0.15, 0.15, 0.45), edgecolor="red",
                       label=f"mask: {int(on.sum())} voxels ({fraction:.1%} of the volume)")],
        loc="outside lower center",
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
