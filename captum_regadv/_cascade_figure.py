"""The figure of the sanity check: similarity against the layer randomised."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure

from ._boundary import check_choice
from ._similarity import SIMILARITIES, CascadeResult, Similarity

__all__ = ["cascade_figure"]

_TITLES = {"rank_correlation": "Spearman rank correlation (|attr|)", "ssim": "SSIM", "iou": "mask IoU"}


def cascade_figure(
    results: Union[CascadeResult, Mapping[str, CascadeResult]],
    *,
    similarities: Optional[Sequence[Similarity]] = None,
    title: str = "",
) -> Figure:
    """Similarity against the layer randomised, one line per method (Adebayo et al.'s plot).

    One panel per similarity measure; the x axis runs from the trained model
    ("original", similarity 1 by definition) down the cascade, labelled with
    the layer randomised last; each line is the mean over the examples,
    with a band of one standard deviation. Nothing is computed here.

    Args:
        results: one :class:`CascadeResult`, or a mapping ``method name ->
            result``; all results must share their layers.
        similarities: the panels; default every measure that at least one
            result has (the IoU only for binary masks).
        title: the figure's title.

    Returns:
        A Matplotlib figure (not shown; save it with ``fig.savefig``).

    Example:
        >>> import torch
        >>> result = CascadeResult(("fc2", "fc1"), torch.tensor([[0.5], [0.1]]),
        ...                        torch.tensor([[0.6], [0.2]]), None)
        >>> fig = cascade_figure({"Saliency": result})
        >>> len(fig.axes)
        2
    """
    named = {"": results} if isinstance(results, CascadeResult) else dict(results)
    if not named:
        raise ValueError("results is empty: nothing to draw")
    layers = next(iter(named.values())).layers
    for name, result in named.items():
        if result.layers != layers:
            raise ValueError(
                f"every result must have the same layers; {name!r} has {result.layers}, "
                f"expected {layers}"
            )
    if similarities is None:
        panels = [s for s in SIMILARITIES if any(r.values(s) is not None for r in named.values())]
    else:
        panels = list(similarities)
        for s in panels:
            check_choice(s, "similarity", SIMILARITIES)
    labels = ["original", *layers]
    x = np.arange(len(labels))
    width = max(4.0, 0.45 * len(labels))
    fig = Figure(figsize=(width * len(panels), 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, similarity in zip(axes, panels):
        lowest = 0.0
        for index, (name, result) in enumerate(named.items()):
            value = result.values(similarity)
            if value is None:
                continue
            color = f"C{index % 10}"  # one colour per method in every panel
            mean = np.concatenate([[1.0], value.nanmean(1).numpy()])
            finite = torch.where(torch.isnan(value), value.nanmean(1, keepdim=True), value)
            std = np.concatenate([[0.0], finite.std(1, correction=0).numpy()])
            ax.plot(x, mean, marker="o", markersize=3, color=color, label=name or None)
            ax.fill_between(
                x, np.clip(mean - std, -1, 1), np.clip(mean + std, -1, 1),
                color=color, alpha=0.15, linewidth=0,
            )
            lowest = min(lowest, float(np.nanmin(mean)))
        ax.axhline(0.0, color="gray", linewidth=0.6, linestyle=":")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=10)
        ax.set_ylim(-1.05 if similarity == "rank_correlation" else lowest - 0.05, 1.05)
        ax.set_title(_TITLES[similarity], fontsize=11)
        ax.set_xlabel("cascading randomisation (from the top)", fontsize=10)
        ax.set_ylabel("similarity to the trained model", fontsize=10)
        ax.tick_params(axis="y", labelsize=10)
    if any(name for name in named) and len(axes):
        # one legend for the figure, outside the panels, from the panel with the most
        # methods (the IoU panel may have only the mask methods)
        handles, names = max(
            (a.get_legend_handles_labels() for a in axes), key=lambda hl: len(hl[1])
        )
        fig.legend(handles, names, fontsize=10, loc="outside right upper")
    if title:
        fig.suptitle(title)
    return fig
