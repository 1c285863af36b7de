"""Figures on top of :mod:`captum.attr.visualization`.

Nothing here runs an explanation: the functions take tensors (``N x C x H x W``
or ``C x H x W``) or an explainer's recorded
:class:`~captum_regadv.Diagnostics`, and return Matplotlib figures. Every
figure carries its own key: binary masks and ground truth come with a
legend, continuous maps and signed differences with a labelled colorbar.

* :func:`show_mask`: one image in gray, a mask filled in red, the ground
  truth outlined in green.
* :func:`comparison_figure` (the paper's Figure 1): masks and continuous maps
  side by side. Continuous maps are drawn on a robust scale, each map divided
  by its own 99th percentile of :math:`|a|` and clipped at 1, so that a few
  extreme pixels (typical of Integrated Gradients) do not wash out the rest.
* :func:`zoom_figure` (the paper's Figure 2): a zoom on the lesions and each
  method's perturbed input with :math:`J - I` on a diverging colour map
  centred at 0 (red: brighter, blue: darker).
* :func:`plot_convergence`: the loss of every example at every step of every
  stage and weight-search attempt, as recorded by
  :attr:`RegularizedAdversarial.last_diagnostics
  <captum_regadv.RegularizedAdversarial.last_diagnostics>` (nothing is
  recomputed).

Text is drawn at 10 pt or larger (:data:`FONT_SIZE`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import matplotlib.colors
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from torch import Tensor

from ._weight_search import Diagnostics

__all__ = [
    "show_mask", "mask_legend", "comparison_figure", "zoom_figure", "plot_convergence",
    "robust_scale",
]

#: font size of titles, labels and legends (points)
FONT_SIZE = 10
#: percentile of ``|a|`` that maps to the top of a continuous map's colour scale
PERCENTILE = 99.0
MASK_COLOR = "red"
TRUTH_COLOR = "lime"
HEAT_CMAP = "magma"
DIFF_CMAP = "RdBu_r"


def _hwc(t: Tensor) -> np.ndarray:
    """``C x H x W`` tensor -> ``H x W x C`` numpy array (Captum's image layout)."""
    a: np.ndarray = t.detach().cpu().float().numpy()
    return np.transpose(a, (1, 2, 0))


def _gray(t: Tensor) -> np.ndarray:
    a: np.ndarray = t.detach().cpu().float().numpy()
    return a.mean(axis=0) if a.ndim == 3 else a


def _no_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def robust_scale(attribution: Tensor, percentile: float = PERCENTILE) -> np.ndarray:
    r"""``|a|`` of a ``C x H x W`` map (mean over channels) divided by its
    ``percentile``-th percentile and clipped to ``[0, 1]``.

    The percentile is taken over the non-zero values when more than
    ``100 - percentile`` percent of the map is zero (a sparse map), so a sparse
    map is not divided by 0. An all-zero map stays zero.

    Example:
        >>> import torch
        >>> a = torch.arange(100.0).view(1, 10, 10)
        >>> a[0, 9, 9] = 1e4  # one outlier: on a max scale, 49 would be 0.005
        >>> s = robust_scale(a)
        >>> s.shape, float(s.max()), round(float(s[4, 9]), 2)
        ((10, 10), 1.0, 0.5)
    """
    a = np.abs(_gray(attribution))
    nonzero = a[a > 0]
    if nonzero.size == 0:
        return np.zeros_like(a)
    top = float(np.percentile(a, percentile, method="lower"))
    if top <= 0:
        top = float(np.percentile(nonzero, percentile, method="lower"))
    scaled: np.ndarray = np.clip(a / top, 0.0, 1.0)
    return scaled


def show_mask(
    ax: Axes,
    image: Tensor,
    mask: Optional[Tensor] = None,
    *,
    truth: Optional[Tensor] = None,
    title: str = "",
    mask_color: str = MASK_COLOR,
    truth_color: str = TRUTH_COLOR,
) -> None:
    """Draw a ``C x H x W`` image in gray (values in ``[0, 1]``) with a mask
    filled in ``mask_color`` and the ground truth outlined in ``truth_color``.

    Draws into ``ax`` only; :func:`mask_legend` gives the matching legend.
    """
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
            ax.contour(g.astype(float), levels=[0.5], colors=[truth_color], linewidths=1.0)
    ax.set_title(title, fontsize=FONT_SIZE)
    _no_ticks(ax)


def mask_legend(
    fig: Figure,
    *,
    mask: bool = True,
    truth: bool = True,
    mask_color: str = MASK_COLOR,
    truth_color: str = TRUTH_COLOR,
    truth_label: str = "ground truth (outline)",
    **options: Any,
) -> None:
    """A figure legend for :func:`show_mask`'s colours (mask filled, truth
    outlined); ``options`` go to ``fig.legend`` (default: above the panels)."""
    handles: list[Any] = []
    if truth:
        handles.append(Line2D([], [], color=truth_color, linewidth=1.5, label=truth_label))
    if mask:
        handles.append(Patch(color=mask_color, alpha=0.55, label="mask"))
    options.setdefault("loc", "outside upper center")
    options.setdefault("ncol", len(handles))
    options.setdefault("frameon", False)
    fig.legend(handles=handles, fontsize=FONT_SIZE, **options)


def _heat(ax: Axes, attribution: Tensor, truth: Optional[Tensor], title: str) -> Any:
    """A continuous map on the robust scale, with the ground truth outlined."""
    image = ax.imshow(
        robust_scale(attribution), cmap=HEAT_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest"
    )
    if truth is not None and (_gray(truth) > 0).any():
        ax.contour((_gray(truth) > 0).astype(float), levels=[0.5], colors=[TRUTH_COLOR],
                   linewidths=1.0)
    ax.set_title(title, fontsize=FONT_SIZE)
    _no_ticks(ax)
    return image


def comparison_figure(
    images: Tensor,
    truth: Tensor,
    masks: Mapping[str, Tensor],
    maps: Mapping[str, Tensor],
    *,
    max_rows: int = 4,
) -> Figure:
    """The paper's Figure 1: ground truth, binary masks, and continuous maps side by side.

    Binary masks are filled in red over the gray image, the ground truth is
    outlined in green (both explained by a legend above the panels). A
    continuous map :math:`a` is drawn as :math:`\\min(|a| / q_{99}, 1)`, with
    :math:`q_{99}` the 99th percentile of its own :math:`|a|`
    (:func:`robust_scale`), with one colorbar per column.

    Args:
        images: ``N x C x H x W`` inputs in ``[0, 1]``.
        truth: ground truth ``N x 1 x H x W``.
        masks: binary masks per method name (``N x C x H x W``).
        maps: continuous attributions per method name (``N x C x H x W``).
        max_rows: at most this many examples.

    Example:
        >>> import torch
        >>> x, truth = torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
        >>> truth[:, :, 2:4, 2:4] = 1
        >>> fig = comparison_figure(x, truth, {"ours": truth}, {"IG": torch.randn(2, 1, 8, 8)})
        >>> [t.get_text() for t in fig.legends[0].get_texts()]
        ['ground truth (outline)', 'mask']
    """
    rows = min(max_rows, images.shape[0])
    cols = 1 + len(masks) + len(maps)
    fig = Figure(figsize=(2.4 * cols, 2.25 * rows + (1.0 if maps else 0.6)), layout="constrained")
    axes = np.array(fig.subplots(rows, cols, squeeze=False))
    for r in range(rows):
        show_mask(axes[r][0], images[r], truth=truth[r], title="input" if r == 0 else "")
        for c, (name, mask) in enumerate(masks.items(), start=1):
            show_mask(axes[r][c], images[r], mask[r], truth=truth[r], title=name if r == 0 else "")
    for c, (name, attr) in enumerate(maps.items(), start=1 + len(masks)):
        drawn = [_heat(axes[r][c], attr[r], truth[r], name if r == 0 else "") for r in range(rows)]
        bar = fig.colorbar(drawn[-1], ax=list(axes[:, c]), location="bottom", shrink=0.9,
                           extend="max")
        bar.set_label(f"|attribution| / its {PERCENTILE:g}th pct.", fontsize=FONT_SIZE)
        bar.ax.tick_params(labelsize=FONT_SIZE)
    mask_legend(fig)
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

    Each perturbed input ``J`` is drawn in gray on the input's scale (the
    ground truth outlined in green), followed by its difference ``J - I``
    (mean over channels) on a diverging colour map centred at 0, red where
    ``J`` is brighter and blue where it is darker. The colour scale of
    ``J - I`` is shared by all panels of a row (symmetric, the row's largest
    :math:`|J - I|`), with one colorbar per row, so the methods' changes on one
    example compare directly.

    Example:
        >>> import torch
        >>> x, truth = torch.rand(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
        >>> truth[:, :, 6:9, 6:9] = 1
        >>> j = x.clone(); j[:, :, 6:9, 6:9] = 0
        >>> fig = zoom_figure(x, truth, {"ours": j}, size=8)
        >>> len(fig.axes)  # input, J, J - I and one colorbar
        4
    """
    indices = [i for i in indices if i < images.shape[0]]
    cols = 1 + 2 * len(perturbed)
    fig = Figure(figsize=(1.9 * cols + 1.2, 2.2 * len(indices) + 0.6), layout="constrained")
    # the last, narrow column holds each row's colorbar
    grid = np.array(fig.subplots(len(indices), cols + 1, squeeze=False,
                                 width_ratios=[1.0] * cols + [0.07]))
    axes, bars = grid[:, :cols], grid[:, cols]
    for r, i in enumerate(indices):
        ys, xs = _box(truth[i], size, pad)
        crop = (slice(None), ys, xs)
        show_mask(axes[r][0], images[i][crop], truth=truth[i][crop], title="input (zoom)" if r == 0 else "")
        diffs = {name: _gray(j[i][crop] - images[i][crop]) for name, j in perturbed.items()}
        bound = max([float(np.abs(d).max()) for d in diffs.values()] + [1e-6])
        drawn = None
        for k, (name, diff) in enumerate(diffs.items()):
            show_mask(axes[r][1 + 2 * k], perturbed[name][i][crop], truth=truth[i][crop],
                      title=name if r == 0 else "")
            ax = axes[r][2 + 2 * k]
            drawn = ax.imshow(diff, cmap=DIFF_CMAP, vmin=-bound, vmax=bound, interpolation="nearest")
            ax.set_title(f"{name}: J - I" if r == 0 else "", fontsize=FONT_SIZE)
            _no_ticks(ax)
        if drawn is None:
            bars[r].remove()
        else:
            bar = fig.colorbar(drawn, cax=bars[r])
            bar.set_label("J - I (+ brighter, - darker)", fontsize=FONT_SIZE)
            bar.ax.tick_params(labelsize=FONT_SIZE)
    mask_legend(fig, mask=False)
    return fig


def plot_convergence(
    diagnostics: Diagnostics,
    ax: Optional[Axes] = None,
    *,
    examples: Optional[Sequence[int]] = None,
) -> Figure:
    r"""The loss of each example at every step, per stage and weight-search attempt.

    Draws what :attr:`RegularizedAdversarial.last_diagnostics
    <captum_regadv.RegularizedAdversarial.last_diagnostics>` recorded
    (``diagnostics.losses``), nothing recomputed: the stages of every attempt
    follow each other along the x axis (shaded bands, labelled ``phase 1``,
    ``phase 2``, ``refinement``, and ``search k`` for the weight search's
    attempts), one line per example and stage, one colour per example. A line
    that stops before its band ends is an example that stopped early; an
    example absent from a search band was not re-run (it was explained at the
    first attempt). Phase 1's loss is eq. 13, phase 2's and the refinement's
    the log-odds :math:`\ell_i(J)`, so the y scale jumps between bands.

    Args:
        diagnostics: ``explainer.last_diagnostics`` after a call.
        ax: the axes to draw into; ``None`` makes a new figure.
        examples: the examples to draw (default all).

    Returns:
        The figure that holds ``ax``.

    Example:
        >>> import torch
        >>> from captum_regadv import RegularizedAdversarial
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
        >>> explainer = RegularizedAdversarial(model)
        >>> _ = explainer.attribute(torch.rand(2, 1, 2, 2), target=1, steps=5,
        ...                         phase2_steps=3, search_steps=0)
        >>> fig = plot_convergence(explainer.last_diagnostics)
        >>> len(fig.axes[0].lines)  # 2 examples x 5 stages (phases 1, 2, 3 refinement rounds)
        10
    """
    if not isinstance(diagnostics, Diagnostics):
        raise TypeError(
            f"diagnostics must be a Diagnostics (explainer.last_diagnostics), got "
            f"{type(diagnostics).__name__}"
        )
    n = int(diagnostics.passes.shape[0])
    chosen = list(range(n)) if examples is None else [int(e) for e in examples]
    for e in chosen:
        if not 0 <= e < n:
            raise ValueError(f"examples must lie in [0, {n}), got {e}")
    if ax is None:
        fig = Figure(figsize=(10.0, 4.2), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure(root=True)  # type: ignore[assignment]
    start = 0
    band = 0
    for attempt, stages in enumerate(diagnostics.losses):
        for stage, history in stages.items():
            values = history.detach().cpu().double().numpy()
            steps = np.arange(start, start + values.shape[0])
            ax.axvspan(start - 0.5, start + values.shape[0] - 0.5,
                       color="0.92" if band % 2 == 0 else "white", zorder=0)
            label = stage if attempt == 0 else f"search {attempt}: {stage}"
            ax.text(start, 1.0, " " + label, transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="left", fontsize=FONT_SIZE, color="0.3")
            for e in chosen:
                if np.isfinite(values[:, e]).any():
                    ax.plot(steps, values[:, e], color=f"C{e % 10}", linewidth=1.2,
                            label=f"example {e}" if band == 0 else None)
            start += values.shape[0]
            band += 1
    ax.set_xlabel("step (stages and weight-search attempts in order)", fontsize=FONT_SIZE)
    ax.set_ylabel("loss (phase 1: eq. 13; then log-odds)", fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.set_xlim(-0.5, max(start - 0.5, 0.5))
    if chosen and len(chosen) <= 10:
        ax.legend(fontsize=FONT_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0)
    ax.set_title(
        "passes per example: " + ", ".join(str(int(p)) for p in diagnostics.passes[chosen][:10])
        + ("..." if len(chosen) > 10 else ""),
        fontsize=FONT_SIZE,
    )
    return fig
