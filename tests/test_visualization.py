"""Figures: every figure carries its key (legend, colorbars), readable text, nothing recomputed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from captum_regadv import RegularizedAdversarial
from captum_regadv.visualization import (
    FONT_SIZE,
    comparison_figure,
    plot_convergence,
    robust_scale,
    zoom_figure,
)

from conftest import RegionModel, region_weight


def _case(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 16, 16, generator=g)
    truth = torch.zeros(n, 1, 16, 16)
    truth[:, :, 5:9, 5:9] = 1
    return x, truth


def _colorbars(fig: Figure) -> list[Axes]:
    return [a for a in fig.axes if a.get_label() == "<colorbar>"]


def _texts(fig: Figure) -> list[float]:
    sizes = [t.get_fontsize() for a in fig.axes for t in (a.title, a.xaxis.label, a.yaxis.label)
             if t.get_text()]
    sizes += [t.get_fontsize() for leg in fig.legends for t in leg.get_texts()]
    sizes += [t.get_fontsize() for a in fig.axes for t in a.get_xticklabels() + a.get_yticklabels()
              if t.get_text()]
    return sizes


def test_comparison_figure_has_a_legend_and_one_colorbar_per_map() -> None:
    x, truth = _case()
    maps = {"IG": torch.randn(3, 1, 16, 16), "Occlusion": torch.rand(3, 1, 16, 16)}
    fig = comparison_figure(x, truth, {"ours": truth, "MP": truth}, maps)
    fig.canvas.draw()
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ground truth (outline)", "mask"]
    bars = _colorbars(fig)
    assert len(bars) == len(maps)
    assert all("99th" in b.get_xlabel() for b in bars)
    assert len(fig.axes) == 3 * 5 + len(maps)
    assert min(_texts(fig)) >= FONT_SIZE


def test_robust_scale_is_not_dominated_by_outliers() -> None:
    a = torch.ones(1, 10, 10)
    a[0, 0, 0] = 1e6
    s = robust_scale(a)
    assert s.max() == 1.0 and float(np.median(s)) == 1.0  # the rest stays visible
    assert torch.equal(torch.from_numpy(robust_scale(torch.zeros(1, 4, 4))), torch.zeros(4, 4))
    sparse = torch.zeros(1, 20, 20)
    sparse[0, 0, :3] = torch.tensor([1.0, 2.0, 4.0])  # > 99% zeros: percentile of the non-zero
    assert 0 < robust_scale(sparse)[0, 0] < 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=4, max_size=64),
    st.floats(50.0, 100.0),
)
def test_robust_scale_keeps_the_order_of_magnitudes(values, percentile) -> None:
    a = torch.tensor(values).view(1, 1, -1)
    s = robust_scale(a, percentile).ravel()
    assert s.min() >= 0.0 and s.max() <= 1.0
    order = np.argsort(np.abs(np.asarray(values, dtype=np.float32)), kind="stable")
    assert np.all(np.diff(s[order]) >= 0)  # a larger |a| never gets a smaller value
    assert np.all(s[np.asarray(values, dtype=np.float32) == 0] == 0)  # zeros stay zero
    assert s.max() == (1.0 if np.any(np.asarray(values, dtype=np.float32) != 0) else 0.0)


def test_zoom_figure_diverging_centred_colorbars() -> None:
    x, truth = _case(2)
    j = x.clone()
    j[:, :, 5:9, 5:9] += 0.3
    j2 = x.clone()
    j2[:, :, 5:9, 5:9] -= 0.1
    fig = zoom_figure(x, truth, {"A": j, "B": j2}, size=8)
    fig.canvas.draw()
    bars = [a for a in fig.axes if "brighter" in a.get_ylabel()]
    assert len(bars) == 2  # one per row
    diff_axes = [a for a in fig.axes if a.get_title().endswith("J - I")]
    assert len(diff_axes) == 2
    for ax in fig.axes:
        for im in ax.images:
            if im.get_cmap().name == "RdBu_r":
                low, high = im.get_clim()
                assert math.isclose(low, -high)
    assert len(fig.legends) == 1
    assert min(_texts(fig)) >= FONT_SIZE


def test_plot_convergence_draws_one_line_per_example_per_stage() -> None:
    model = RegionModel(region_weight((1, 6, 6), (slice(None), slice(1, 3), slice(1, 3)))).eval()
    x = 0.2 * torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    x[:, :, 1:3, 1:3] = 0.8
    explainer = RegularizedAdversarial(model)
    explainer.attribute(x, target=1, steps=6, phase2_steps=3, refine_steps=2, bounds=(0, 1),
                        sparsity_weight=500.0, tv_weight=500.0, search_steps=1)
    d = explainer.last_diagnostics
    assert d is not None
    expected = sum(
        int(np.isfinite(h.numpy()).any(0).sum()) for stages in d.losses for h in stages.values()
    )
    fig = plot_convergence(d)
    fig.canvas.draw()  # tick labels get their text when drawn
    assert min(_texts(fig)) >= FONT_SIZE
    ax = fig.axes[0]
    assert len(ax.lines) == expected
    assert ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"example {i}" for i in range(3)]
    # the lines are the recorded losses, not recomputed ones
    first = d.losses[0]["phase 1"][:, 0].numpy()
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), first)
    # an existing axes, a subset of examples
    other = Figure().add_subplot()
    assert plot_convergence(d, other, examples=[1]) is other.figure
    assert len(other.lines) == sum(
        int(np.isfinite(h[:, 1].numpy()).any()) for stages in d.losses for h in stages.values()
    )


def test_plot_convergence_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="diagnostics"):
        plot_convergence(None)  # type: ignore[arg-type]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    explainer = RegularizedAdversarial(model)
    explainer.attribute(torch.rand(2, 4), target=1, steps=2, phase2_steps=1)
    with pytest.raises(ValueError, match="examples"):
        plot_convergence(explainer.last_diagnostics, examples=[5])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "module",
    ["regularized_adversarial", "meaningful_perturbation", "recipes", "metrics", "mask_rules",
     "_phases", "_refinement", "_need", "_weight_search", "_optimization", "_groups"],
)
def test_no_plotting_inside_algorithms(module: str) -> None:
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(f"captum_regadv.{module}"))
    assert "matplotlib" not in source and "pyplot" not in source


def test_cascade_figure_text_is_readable() -> None:
    from captum_regadv.sanity import CascadeResult, cascade_figure

    result = CascadeResult(("fc2", "fc1"), torch.tensor([[0.5], [0.1]]),
                           torch.tensor([[0.6], [0.2]]), None)
    fig = cascade_figure({"Saliency": result, "IG": result})
    assert min(_texts(fig)) >= FONT_SIZE
    ticks = [t.get_fontsize() for a in fig.axes for t in a.get_xticklabels() + a.get_yticklabels()]
    assert min(ticks) >= FONT_SIZE
