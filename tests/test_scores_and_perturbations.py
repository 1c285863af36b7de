"""Score transforms, target resolution and the pure tensor operations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv.perturbations import gaussian_blur, soft_support, total_variation
from captum_regadv.scores import class_log_odds, class_score, resolve_target


def test_soft_support_is_the_papers_eq_11():
    i = torch.zeros(50, dtype=torch.float64)
    j = torch.linspace(-0.3, 0.3, 50, dtype=torch.float64)
    paper = 2 / (1 + torch.exp(-30 * ((i - j).abs() - 0.01))) - 1
    assert torch.allclose(soft_support(i, j), paper, atol=1e-12)
    huge = soft_support(torch.zeros(1), torch.tensor([1e30]), gamma=1e6)
    assert torch.isfinite(huge).all() and huge.item() == 1.0


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.01, 100.0), st.floats(0.0, 0.5))
def test_soft_support_sign_matches_the_dead_zone(a, b, gamma, eps):
    s = soft_support(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64), gamma=gamma, epsilon=eps)
    assert -1.0 <= s.item() <= 1.0
    if abs(a - b) > eps + 1e-9:
        assert s.item() > 0
    if abs(a - b) < eps - 1e-9:
        assert s.item() < 0


def test_total_variation_dims():
    x = torch.tensor([[[0.0, 1.0, 3.0]]])  # N x C x L
    assert total_variation(x).tolist() == [3.0]
    assert total_variation(torch.rand(3, 5)).tolist() == [0.0, 0.0, 0.0]  # tabular: no dims
    v = torch.zeros(1, 1, 2, 2, 2)
    v[0, 0, 0, 0, 0] = 1
    assert total_variation(v).item() == 3.0
    assert total_variation(v, dims=(2,)).item() == 1.0
    with pytest.raises(ValueError):
        total_variation(v, dims=(0,))


def test_gaussian_blur_preserves_constants_and_smooths():
    c = torch.full((1, 1, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(c, 2.0), c)
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 4] = 1
    y = gaussian_blur(x, 1.0)
    assert y[..., 4, 4] < 1 and y[..., 4, 5] > 0
    assert torch.allclose(y, y.transpose(-1, -2))


def test_targets_and_scores():
    z = torch.tensor([[0.0, 2.0, 1.0], [1.0, 0.0, 0.0]])
    idx = resolve_target(torch.tensor([1, 0]), z)
    p = class_score(z, idx, "softmax")
    assert torch.allclose(p, torch.softmax(z, 1)[[0, 1], [1, 0]])
    lo = class_log_odds(z, idx, "softmax")
    assert torch.allclose(torch.sigmoid(lo), p)
    big = torch.tensor([[0.0, 200.0]])
    assert class_log_odds(big, resolve_target(1, big), "softmax").item() == pytest.approx(200.0)
    multi = torch.zeros(2, 3, 4)
    assert resolve_target((2, 3), multi).tolist() == [[2, 3], [2, 3]]
    with pytest.raises(ValueError, match="out of range"):
        resolve_target((2, 4), multi)
    with pytest.raises(ValueError, match="indices"):
        resolve_target(1, multi)


def test_numpy_integer_targets_are_indices_and_numpy_bools_are_not():
    import numpy as np

    output = torch.zeros(2, 3)
    assert resolve_target(np.int64(2), output).tolist() == [[2], [2]]
    assert resolve_target([np.int32(1), 0], output).tolist() == [[1], [0]]
    assert resolve_target(int(np.argmax([0.1, 0.7, 0.2])), output).tolist() == [[1], [1]]
    grid = torch.zeros(2, 3, 4)
    assert resolve_target((np.int64(1), np.uint8(3)), grid).tolist() == [[1, 3], [1, 3]]
    with pytest.raises(TypeError, match="target"):
        resolve_target(np.bool_(True), output)
    with pytest.raises(ValueError, match="out of range"):
        resolve_target(np.int64(3), output)


def test_margin_score_is_softmax_for_two_classes_and_top_class_for_more():
    z2 = torch.tensor([[0.3, -1.2], [2.0, 2.5]])
    for t in (0, 1):
        index = torch.full((2, 1), t)
        assert torch.allclose(class_score(z2, index, "margin"), class_score(z2, index, "softmax"))
        assert torch.allclose(class_log_odds(z2, index, "margin"),
                              class_log_odds(z2, index, "softmax"))
    # four classes: the top class has softmax probability < 0.5 but margin score > 0.5
    z = torch.tensor([[1.0, 2.0, 1.5, 0.0]])
    top = torch.tensor([[1]])
    assert float(class_score(z, top, "softmax")) < 0.5 < float(class_score(z, top, "margin"))
    assert torch.allclose(class_log_odds(z, top, "margin"), torch.tensor([0.5]))
    assert torch.allclose(class_log_odds(z, torch.tensor([[2]]), "margin"), torch.tensor([-0.5]))
    # the gradient reaches the class and its rival only
    zg = z.clone().requires_grad_(True)
    class_log_odds(zg, top, "margin").sum().backward()
    assert zg.grad.tolist() == [[0.0, 1.0, -1.0, 0.0]]
    # several outputs per example (N x C x K): the rival is taken over the classes
    grid = torch.tensor([[[0.0, 5.0], [1.0, 0.0], [0.5, 9.0]]])
    assert torch.allclose(class_log_odds(grid, torch.tensor([[1, 0]]), "margin"),
                          torch.tensor([0.5]))
    with pytest.raises(ValueError, match="margin"):
        class_score(torch.zeros(2, 1), torch.zeros(2, 1, dtype=torch.long), "margin")
