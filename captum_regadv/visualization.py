"""Figures on top of :mod:`captum.attr.visualization`.

Nothing here runs an explanation: the functions take tensors (``N x C x H x W``
or ``C x H x W``) and return Matplotlib figures. Continuous maps (IG,
Occlusion, MP saliency) are drawn by Captum's ``visualize_image_attr``; binary
masks and ground truth are drawn as outlines over the image.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.colors
import numpy as np
from captum.attr import visualization as captum_viz
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["show_mask", "comparison_figure", "zoom_figure"]


def _hwc(t: Tensor) -> np.ndarray:
    """``C x H x W`` tensor -> ``H x W x C`` numpy array (what Captum's visualiser takes)."""
    a: np.ndarray = t.detach().cpu().float().numpy()
    return np.transpose(a, (1, 2, 0))


def _gray(t: Tensor) -> np.ndarray:
    a: np.ndarray = t.detach().cpu().float().numpy()
    return a.mean(axis=0) if a.ndim == 3 else a


def show_mask(
    ax: Axes,
    image: Tensor,
    mask: Optional[Tensor] = None,
    *,
    truth: Optional[Tensor] = None,
    title: str = "",
    mask_color: str = "red",
    truth_color: str = "lime",
) -> None:
    """Draw a ``C x H x W`` image in gray with a mask (filled outline) and the ground truth outlined."""
    ax.imshow(_gray(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if mask is not None:
        m = _gray(mask) > 0
        if m.any():
            overlay = np.zeros(m.shape + (4,))
            overlay[m] = matplotlib.colors.to_rgba(mask_color, 0.55)
            ax.imshow(overlay, interpolation="nearest")
    if truth is not None:
        g = _gray(truth) > 0
        if g.any():
            ax.contour(g.astype(float), levels=[0.5], colors=[truth_color], linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def comparison_figure(
    images: Tensor,
    truth: Tensor,
    masks: Mapping[str, Tensor],
    maps: Mapping[str, Tensor],
    *,
    max_rows: int = 4,
) -> Figure:
    """The paper's Figure 1: ground truth, binary masks, and continuous maps side by side.

    Args:
        images: ``N x C x H x W`` inputs in ``[0, 1]``.
        truth: ground truth ``N x 1 x H x W``.
        masks: binary masks per method name (``N x C x H x W``), drawn in red.
        maps: continuous attributions per method name, drawn with Captum's
            ``visualize_image_attr`` (absolute value, heat map).
        max_rows: at most this many examples.
    """
    rows = min(max_rows, images.shape[0])
    cols = 1 + len(masks) + len(maps)
    fig = Figure(figsize=(1.9 * cols, 1.9 * rows + 0.3))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        show_mask(axes[r][0], images[r], truth=truth[r], title="input + ground truth" if r == 0 else "")
        for c, (name, mask) in enumerate(masks.items(), start=1):
            show_mask(axes[r][c], images[r], mask[r], truth=truth[r], title=name if r == 0 else "")
        for c, (name, attr) in enumerate(maps.items(), start=1 + len(masks)):
            if not bool(attr[r].abs().max() > 0):
                # Captum cannot normalise an all-zero map: draw the image alone
                show_mask(axes[r][c], images[r], title=(name + " (all zero)") if r == 0 else "")
                continue
            captum_viz.visualize_image_attr(
                _hwc(attr[r]),
                _hwc(images[r]),
                method="heat_map",
                sign="absolute_value",
                plt_fig_axis=(fig, axes[r][c]),
                use_pyplot=False,
                title=name if r == 0 else None,
            )
            axes[r][c].title.set_fontsize(8)
    fig.tight_layout()
    return fig


def _box(truth: Tensor, size: int, pad: int) -> tuple[slice, slice]:
    g = _gray(truth) > 0
    h, w = g.shape
    if g.any():
        ys, xs = np.nonzero(g)
        cy, cx = int(ys.mean()), int(xs.mean())
        half = max(int(max(ys.max() - ys.min(), xs.max() - xs.min()) // 2) + pad, size // 2)
    else:
        cy, cx, half = h // 2, w // 2, size // 2
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    return slice(y0, min(y0 + 2 * half, h)), slice(x0, min(x0 + 2 * half, w))


def zoom_figure(
    images: Tensor,
    truth: Tensor,
    perturbed: Mapping[str, Tensor],
    *,
    indices: Sequence[int] = (0, 1, 2),
    size: int = 32,
    pad: int = 4,
) -> Figure:
    """The paper's Figure 2: a zoom on a lesion, the input and each method's perturbed input.

    Each perturbed input is drawn in gray on the input's scale, followed by
    its difference ``J - I`` (signed, blue-white-red).
    """
    indices = [i for i in indices if i < images.shape[0]]
    cols = 1 + 2 * len(perturbed)
    fig = Figure(figsize=(1.7 * cols, 1.8 * len(indices) + 0.3))
    axes = fig.subplots(len(indices), cols, squeeze=False)
    for r, i in enumerate(indices):
        ys, xs = _box(truth[i], size, pad)
        crop = (slice(None), ys, xs)
        show_mask(axes[r][0], images[i][crop], truth=truth[i][crop], title="input (zoom)" if r == 0 else "")
        for k, (name, j) in enumerate(perturbed.items()):
            show_mask(axes[r][1 + 2 * k], j[i][crop], truth=truth[i][crop], title=name if r == 0 else "")
            diff = _gray(j[i][crop] - images[i][crop])
            bound = max(float(np.abs(diff).max()), 1e-6)
            ax = axes[r][2 + 2 * k]
            ax.imshow(diff, cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
            ax.set_title("J - I" if r == 0 else "", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
