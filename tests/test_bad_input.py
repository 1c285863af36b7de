"""Bad input across the public functions (issue 13 §2): a ValueError/TypeError
that names the problem, raised before any optimisation."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv import (
    MeaningfulPerturbation,
    RegularizedAdversarial,
    ape_d,
    ape_s,
    cc_hit_rate,
    fill_with_reference,
    perturb_within_mask,
    scan_threshold,
)
from captum_regadv.quantus_adapter import explain
from captum_regadv.sanity import mask_iou, rank_correlation, ssim

from conftest import RegionModel, region_weight


def region_model() -> RegionModel:
    return RegionModel(region_weight((1, 4, 4), (slice(None), slice(1, 3), slice(1, 3)))).eval()


def counting(forward):
    calls = []

    def wrapped(*args):
        calls.append(1)
        return forward(*args)

    return wrapped, calls


def nan_output(x):
    return region_model()(x) * float("nan")


def inf_output(x):
    out = region_model()(x)
    return torch.cat([out[:, :1], torch.full_like(out[:, 1:], float("inf"))], 1)


def integer_output(x):
    return region_model()(x).round().long()


def detached_output(x):
    return region_model()(x).detach()


def no_grad_output(x):
    with torch.no_grad():
        return region_model()(x)


def inference_output(x):
    with torch.inference_mode():
        return region_model()(x.detach())


def param_only_output(x):  # depends on the weights but not on the inputs
    return region_model()(x.detach())


def empty_output(x):
    return x.new_zeros(x.shape[0], 0)


METHODS = {
    "RA": lambda f, x: RegularizedAdversarial(f).attribute(x, target=1, steps=3, phase2_steps=2),
    "MP": lambda f, x: MeaningfulPerturbation(f).attribute(x, target=1, steps=3),
    "perturb_within_mask": lambda f, x: perturb_within_mask(
        f, x, torch.ones_like(x), target=1, steps=3
    ),
}
METRICS = {
    "ape_d": lambda f, x: ape_d(f, x, x * 0.5, target=1),
    "ape_s": lambda f, x: ape_s(f, x, x * 0.5, target=1),
    "scan_threshold": lambda f, x: scan_threshold(
        f, x, x, target=1, thresholds=[0.5],
        perturb=functools.partial(fill_with_reference, reference=0.0),
    ),
}


@pytest.mark.parametrize("consumer", list(METHODS) + list(METRICS))
@pytest.mark.parametrize(
    "forward, error, message",
    [
        (nan_output, ValueError, "NaN or Inf"),
        (inf_output, ValueError, "NaN or Inf"),
        (integer_output, TypeError, "floating point"),
        (empty_output, ValueError, "no classes"),
    ],
    ids=["nan", "inf", "integer", "empty"],
)
def test_bad_forward_output_is_rejected_before_any_work(consumer, forward, error, message):
    f, calls = counting(forward)
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(error, match=message):
        {**METHODS, **METRICS}[consumer](f, x)
    assert len(calls) <= 1


@pytest.mark.parametrize("consumer", list(METHODS) + list(METRICS))
@pytest.mark.parametrize(
    "wrap, hint",
    [
        (lambda out: (out, out.detach()), r"model\(x\)\[0\]"),  # MONAI ViT: (logits, hidden)
        (lambda out: [out], r"model\(x\)\[0\]"),
        (lambda out: {"logits": out}, r"model\(x\)\['logits'\]"),
    ],
    ids=["tuple", "list", "dict"],
)
def test_several_outputs_are_rejected_with_the_wrapper_to_write(consumer, wrap, hint):
    model = region_model()
    f, calls = counting(lambda x: wrap(model(x)))
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(TypeError, match="must return a tensor of class scores, got") as caught:
        {**METHODS, **METRICS}[consumer](f, x)
    assert caught.match(hint)
    assert len(calls) == 1
    # the wrapper the message names works
    unwrapped = (lambda x: f(x)["logits"]) if "logits" in hint else (lambda x: f(x)[0])
    {**METHODS, **METRICS}[consumer](unwrapped, x)


@pytest.mark.parametrize("consumer", list(METHODS))
@pytest.mark.parametrize(
    "forward",
    [detached_output, no_grad_output, inference_output, param_only_output],
    ids=["detached", "no_grad", "inference_mode", "parameters only"],
)
def test_forward_without_input_gradient_is_rejected(consumer, forward):
    f, calls = counting(forward)
    with pytest.raises(ValueError, match="differentiably"):
        METHODS[consumer](f, torch.rand(2, 1, 4, 4))
    assert len(calls) <= 2  # the checking pass and the probe of two examples


@pytest.mark.parametrize("consumer", list(METHODS))
def test_methods_called_under_inference_mode_say_so(consumer):
    model = region_model()
    with torch.inference_mode():
        x = torch.rand(2, 1, 4, 4)
        with pytest.raises(RuntimeError, match="inference_mode"):
            METHODS[consumer](model, x)


def test_metrics_accept_a_forward_without_gradients():
    # the metrics only evaluate the model: no gradient needed
    x = torch.rand(2, 1, 4, 4)
    assert ape_d(no_grad_output, x, x * 0.5, target=1).shape == (2,)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(lambda s: 0 in s))
def test_examples_with_zero_elements_are_rejected_everywhere(dims):
    x = torch.rand(2, *dims)
    model = lambda t: t.flatten(1).sum(1, keepdim=True)  # noqa: E731
    for call in (
        lambda: RegularizedAdversarial(model).attribute(x),
        lambda: MeaningfulPerturbation(model).attribute(x),
        lambda: ape_d(model, x, x),
        lambda: fill_with_reference(x, x, 0.0),
        lambda: perturb_within_mask(model, x, x),
    ):
        with pytest.raises(ValueError, match="no elements"):
            call()


# ------------------------------------------------------------ mask rules


def test_fill_with_reference_rejects_nan_references_and_integer_inputs():
    x = torch.rand(1, 4)
    m = torch.tensor([[1.0, 0, 0, 1]])
    for ref in (float("nan"), torch.tensor([float("nan")] * 4), float("inf")):
        with pytest.raises(ValueError, match="reference.*NaN"):
            fill_with_reference(x, m, ref)
    with pytest.raises(ValueError, match="overflows"):
        fill_with_reference(x.half(), m.half(), 1e6)
    with pytest.raises(TypeError, match="inputs.*floating"):
        fill_with_reference(torch.ones(1, 4, dtype=torch.long), m, 0.5)
    with pytest.raises(TypeError, match="reference"):
        fill_with_reference(x, m, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks contains NaN"):
        fill_with_reference(x, torch.full((1, 4), float("nan")), 0.0)
    out = fill_with_reference(x, m, 0.25)  # never truncated
    assert out.dtype == x.dtype and float(out[0, 0]) == 0.25


def test_scan_threshold_validates_everything_before_evaluating_any_threshold():
    x = torch.rand(2, 4)
    model, calls = counting(torch.nn.Linear(4, 2))
    applied = []

    def perturb(i, m):
        applied.append(1)
        return fill_with_reference(i, m, 0.0)

    bad = [
        (dict(thresholds=[0.5, "0.7"]), TypeError, r"thresholds\[1\]"),
        (dict(thresholds=[0.5, float("nan")]), ValueError, r"thresholds\[1\]"),
        (dict(thresholds=torch.tensor([0.5, float("inf")])), ValueError, "thresholds"),
        (dict(thresholds="0.5"), TypeError, "thresholds"),
        (dict(thresholds=[]), ValueError, "thresholds"),
        (dict(perturb=None), TypeError, "perturb"),
        (dict(perturb="fill"), TypeError, "perturb"),
        (dict(score="probit"), ValueError, "score"),
        (dict(weights=(1.0, -1.0, 1.0)), ValueError, "a_sm"),
        (dict(tv_dims=2), TypeError, "tv_dims"),
    ]
    for change, error, message in bad:
        kwargs = dict(target=1, perturb=perturb, thresholds=[0.5])
        kwargs.update(change)
        with pytest.raises(error, match=message):
            scan_threshold(model, x, x, **kwargs)
    assert calls == [] and applied == []


# --------------------------------------------------------------- cc_hit_rate


def test_cc_hit_rate_does_not_broadcast_a_ground_truth_of_another_shape():
    masks = torch.zeros(2, 1, 4, 4)
    masks[:, :, 0, 0] = 1
    for gt in (torch.ones(2, 1, 4, 1), torch.ones(2, 1, 1, 4), torch.ones(1, 1, 4, 4)):
        with pytest.raises(ValueError, match="ground_truth"):
            cc_hit_rate(masks, gt)
    with pytest.raises(ValueError, match="ground_truth"):
        cc_hit_rate(torch.zeros(2, 8), torch.ones(2, 1))  # tabular: no shared channel
    gt = torch.zeros(2, 1, 4, 4)
    gt[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="ground_truth contains NaN"):
        cc_hit_rate(masks, gt)
    with pytest.raises(ValueError, match="empty"):
        cc_hit_rate(torch.zeros(2, 1, 0, 4), torch.zeros(2, 1, 0, 4))
    with pytest.raises(TypeError, match="channel_dim"):
        cc_hit_rate(masks, torch.ones(2, 1, 4, 4), channel_dim=1.0)  # type: ignore[arg-type]


# ------------------------------------------------------------------- Quantus


def test_quantus_adaptor_rejects_non_integer_targets():
    model = region_model()
    x = np.random.default_rng(0).random((2, 1, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="integer"):
        explain(model, x, np.array([1.5, 0.0]), steps=2, phase2_steps=0)
    with pytest.raises(ValueError, match="integer"):
        explain(model, x, np.array([np.nan, 1.0]), steps=2, phase2_steps=0)
    with pytest.raises(TypeError, match="integer"):
        explain(model, x, np.array([True, False]), steps=2, phase2_steps=0)
    with pytest.raises(TypeError, match="integer"):
        explain(model, x, np.array(["1", "0"]), steps=2, phase2_steps=0)
    out = explain(model, x, np.array([1.0, 1.0]), steps=2, phase2_steps=0)  # whole numbers
    assert out.shape == x.shape


# -------------------------------------------------------------------- sanity


@pytest.mark.parametrize("measure", [ssim, mask_iou, rank_correlation])
def test_similarity_measures_reject_empty_and_nan_maps(measure):
    empty = torch.zeros(2, 1, 0, 4)
    with pytest.raises(ValueError, match="empty"):
        measure(empty, empty)
    with pytest.raises(ValueError, match="empty"):
        measure(torch.zeros(0, 1, 4, 4), torch.zeros(0, 1, 4, 4))
    nan = torch.full((1, 1, 4, 4), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        measure(nan, torch.zeros(1, 1, 4, 4))


def test_numpy_scalars_are_numbers_and_numpy_targets_are_tensors():
    """A hyperparameter grid from NumPy (``np.int64`` steps, ``np.float32``
    weights) gives the same explanation as Python numbers; a NumPy target array
    is read as a tensor, its dtype checked like one's; NumPy's bool is no number."""
    model = region_model()
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    plain = dict(steps=4, phase2_steps=3, lr=0.005, sparsity_weight=40.0, refine_rounds=1,
                 refine_steps=2, dual_warmup=1, coarse_to_fine=None)
    numpy = dict(steps=np.int64(4), phase2_steps=np.int32(3), lr=np.float32(0.005),
                 sparsity_weight=np.float64(40.0), refine_rounds=np.int64(1),
                 refine_steps=np.int16(2), dual_warmup=np.int64(1), coarse_to_fine=None)
    a = RegularizedAdversarial(model).attribute(x, target=1, **plain)
    b = RegularizedAdversarial(model).attribute(x, target=np.array([1, 1]), **numpy)
    assert torch.equal(a, b)
    j = perturb_within_mask(model, x, torch.ones_like(x), target=np.int64(1), steps=np.int64(2))
    assert j.shape == x.shape
    with pytest.raises(TypeError, match="steps must be a number, got bool"):
        RegularizedAdversarial(model).attribute(x, target=1, steps=np.bool_(True))
    with pytest.raises(TypeError, match="steps must be an int, got float32"):
        RegularizedAdversarial(model).attribute(x, target=1, steps=np.float32(4))
    with pytest.raises(TypeError, match="target tensor must hold integers"):
        ape_d(model, x, x, target=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="target has 3 entries"):
        ape_d(model, x, x, target=np.array([1, 1, 1]))


def test_bounds_that_leave_no_room_are_named():
    """A batch that cannot change at all raises; a batch with some stuck
    examples warns about them and goes on. (N,) batches need explicit bounds."""
    model, calls = counting(region_model())
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"bounds leave no room to change 2 of 2"):
        RegularizedAdversarial(model).attribute(torch.full_like(x, 0.3), target=1)
    assert calls == []
    scalar = torch.nn.Linear(1, 2)
    with pytest.raises(ValueError, match=r"\(N,\) batch of scalars"):
        RegularizedAdversarial(scalar).attribute(torch.tensor([0.2, 0.7]), target=1)
    partly = x.clone()
    partly[1] = 0.5
    with pytest.warns(UserWarning, match=r"no room to change 1 of 2 example\(s\) \[1\]"):
        RegularizedAdversarial(region_model()).attribute(partly, target=1, steps=2,
                                                         phase2_steps=1)


def test_sparse_inputs_are_rejected_naming_them():
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)).to_sparse()
    with pytest.raises(TypeError, match=r"inputs must be a dense tensor"):
        RegularizedAdversarial(region_model()).attribute(x, target=1)
    with pytest.raises(TypeError, match=r"dense tensor"):
        ape_d(region_model(), x, x, target=1)


def test_a_call_that_raises_leaves_no_diagnostics_of_the_call_before():
    explainer = RegularizedAdversarial(region_model())
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    explainer.attribute(x, target=1, bounds=(0, 1), steps=2, phase2_steps=1)
    assert explainer.last_diagnostics is not None
    with pytest.raises(ValueError, match="target"):
        explainer.attribute(x, target=7, bounds=(0, 1))
    assert explainer.last_diagnostics is None


def test_a_mask_scale_that_leaves_one_mask_element_is_rejected():
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"mask_scale 16 leaves one mask element"):
        MeaningfulPerturbation(region_model()).attribute(x, target=1, mask_scale=16)
    with pytest.raises(ValueError, match=r"mask_scale 8 leaves one mask element"):
        MeaningfulPerturbation(region_model()).attribute(x, target=1, mask_scale=8)


def test_inputs_outside_the_bounds_name_the_noise_tunnel_way_out():
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)) + 1.0
    with pytest.raises(ValueError, match=r"outside bounds.*NoiseTunnel.*bounds=None"):
        RegularizedAdversarial(region_model()).attribute(x, target=1, bounds=(0, 1))
