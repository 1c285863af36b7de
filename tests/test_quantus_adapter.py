"""The Quantus explain_func adaptor: shapes, agreement with attribute(), the model untouched, Quantus itself."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import Tensor

from captum_regadv import MeaningfulPerturbation, RegularizedAdversarial
from captum_regadv.quantus_adapter import explain, quantus_explain_func
from conftest import RegionModel

torch.set_num_threads(1)

RA_FAST = dict(steps=60, phase2_steps=0, sparsity_weight=1.0, tv_weight=1.0, lr=0.005)
MP_FAST = dict(steps=30, objective="log_odds")


def snapshot(model: torch.nn.Module) -> tuple[dict[str, Tensor], bool, dict[str, bool]]:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        model.training,
        {k: p.requires_grad for k, p in model.named_parameters()},
    )


def assert_unchanged(model: torch.nn.Module, before: tuple[dict[str, Tensor], bool, dict[str, bool]]) -> None:
    state, training, flags = snapshot(model)
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert training == before[1] and flags == before[2]
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "method, cls, kwargs",
    [
        ("regularized_adversarial", RegularizedAdversarial, RA_FAST),
        ("meaningful_perturbation", MeaningfulPerturbation, MP_FAST),
    ],
)
def test_explain_returns_numpy_like_the_inputs_and_agrees_with_attribute(image_case, method, cls, kwargs):
    model, x, _ = image_case
    before = snapshot(model)
    targets = np.array([1, 1, 1])
    got = explain(model, x.numpy().astype(np.float64), targets, method=method, **kwargs)
    assert isinstance(got, np.ndarray)
    assert got.shape == tuple(x.shape) and got.dtype == np.float32
    want = cls(model).attribute(x, target=torch.as_tensor(targets), **kwargs)
    np.testing.assert_array_equal(got, want.numpy())
    assert got.reshape(3, -1).sum(1).min() > 0  # a real explanation, not all zeros
    # through the factory, as Quantus calls it (keywords only, plus its device)
    f = quantus_explain_func(method, **kwargs)
    np.testing.assert_array_equal(f(model=model, inputs=x.numpy(), targets=targets, device="cpu"), got)
    assert_unchanged(model, before)


def test_call_time_keywords_override_the_bound_ones(image_case):
    model, x, _ = image_case
    f = quantus_explain_func("regularized_adversarial", **{**RA_FAST, "steps": 1})
    got = f(model=model, inputs=x.numpy(), targets=np.ones(3, dtype=np.int64), steps=60)
    np.testing.assert_array_equal(got, explain(model, x.numpy(), np.ones(3, dtype=np.int64), **RA_FAST))


def test_partial_of_explain_and_a_scalar_target(image_case):
    model, x, _ = image_case
    f = functools.partial(explain, method="regularized_adversarial", **RA_FAST)
    a = f(model=model, inputs=x.numpy(), targets=1)
    b = f(model=model, inputs=x.numpy(), targets=np.array([1, 1, 1]))
    np.testing.assert_array_equal(a, b)


def test_the_model_in_training_mode_stays_so():
    model = RegionModel(torch.ones(1, 4, 4)).train()
    before = snapshot(model)
    with pytest.warns(UserWarning):
        explain(model, np.linspace(0.1, 0.3, 16, dtype=np.float32).reshape(1, 1, 4, 4),
                np.array([1]), steps=3, phase2_steps=0)
    assert_unchanged(model, before)


def test_bad_arguments_raise():
    model = RegionModel(torch.ones(1, 4, 4)).eval()
    x = np.zeros((2, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="method must be one of"):
        quantus_explain_func("saliency")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be one of"):
        explain(model, x, np.array([1, 1]), method="ig")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="never moves the model"):
        explain(model, x, np.array([1, 1]), device="cuda")
    with pytest.raises(ValueError, match="one class per example"):
        explain(model, x, np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="batch"):
        explain(model, np.zeros(4, np.float32), np.array([1]))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        explain(lambda t: t, x, np.array([1, 1]))  # type: ignore[arg-type]


def test_quantus_metrics_run_with_the_adaptor(image_case):
    quantus = pytest.importorskip("quantus")
    model, x, _ = image_case
    before = snapshot(model)
    x_batch, y_batch = x.numpy(), np.ones(3, dtype=np.int64)
    f = quantus_explain_func("regularized_adversarial", **RA_FAST)
    sparseness = quantus.Sparseness(disable_warnings=True, display_progressbar=False)(
        model=model, x_batch=x_batch, y_batch=y_batch, a_batch=None, explain_func=f, device="cpu"
    )
    assert len(sparseness) == 3 and all(0.0 < s <= 1.0 for s in sparseness)
    # the mask is the 4 x 4 evidence region of a 16 x 16 image: Gini index 1 - 16/256 = 0.9375
    np.testing.assert_allclose(sparseness, 0.9375, atol=1e-3)
    sensitivity = quantus.MaxSensitivity(
        nr_samples=2, lower_bound=0.02, disable_warnings=True, display_progressbar=False
    )(model=model, x_batch=x_batch, y_batch=y_batch, a_batch=None, explain_func=f, device="cpu")
    assert len(sensitivity) == 3 and all(np.isfinite(s) and s >= 0 for s in sensitivity)
    complexity = quantus.Complexity(disable_warnings=True, display_progressbar=False)(
        model=model, x_batch=x_batch, y_batch=y_batch, a_batch=None,
        explain_func=quantus_explain_func("meaningful_perturbation", **MP_FAST),
    )
    assert len(complexity) == 3 and all(np.isfinite(c) for c in complexity)
    assert_unchanged(model, before)
