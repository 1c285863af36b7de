"""The models and inputs users have (issue 13 §1): probability outputs, one-logit
binary classifiers, ``(N,)`` outputs and inputs, tabular Meaningful
Perturbation, NoiseTunnel with ``return_perturbed``, modules in training mode."""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel
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
from captum_regadv.ranking_metrics import deletion_auc, insertion_auc
from captum_regadv.scores import class_log_odds, class_score, resolve_score

H = 8
PATCH = (slice(None), slice(None), slice(2, 5), slice(3, 6))  # 3 x 3 evidence


def patch_mask() -> torch.Tensor:
    m = torch.zeros(1, 1, H, H, dtype=torch.bool)
    m[PATCH] = True
    return m


def patch_linear(out: int, weight: float, bias: list[float]) -> torch.nn.Linear:
    """Class ``out - 1``'s logit is ``weight * sum(patch)`` + bias; others only bias."""
    lin = torch.nn.Linear(H * H, out)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[out - 1] = patch_mask().flatten().float() * weight
        lin.bias.copy_(torch.tensor(bias))
    return lin


def softmax_model() -> torch.nn.Module:
    # z = (5, 27) on the inputs below: p(class 1) = 1 - 2.8e-10
    return torch.nn.Sequential(
        torch.nn.Flatten(), patch_linear(2, 3.0, [5.0, 0.0]), torch.nn.Softmax(dim=1)
    ).eval()


def one_logit_model() -> torch.nn.Module:
    # z = 27 - 5 = 22: a confident positive
    return torch.nn.Sequential(torch.nn.Flatten(), patch_linear(1, 3.0, [-5.0])).eval()


class Squeeze(torch.nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.squeeze(1)


def inputs(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(n, 1, H, H, generator=g)
    x[PATCH] = 1.0
    truth = patch_mask().expand_as(x)
    return x, truth


def assert_explains_patch(mask: torch.Tensor, truth: torch.Tensor) -> None:
    assert mask.shape == truth.shape
    per_example = mask.flatten(1).sum(1)
    assert bool((per_example > 0).all()), "empty mask"
    assert not bool(mask[~truth].any()), "mask outside the evidence"


# ---------------------------------------------------------------- score="auto"


def test_auto_reads_probabilities_logits_and_one_column():
    assert resolve_score("auto", torch.tensor([[0.25, 0.75], [1.0, 0.0]])) == "probability"
    with pytest.warns(UserWarning, match="multi-label"):  # all in [0, 1], rows not summing to 1
        assert resolve_score("auto", torch.tensor([[0.3, 0.3], [0.2, 0.8]])) == "softmax"
    assert resolve_score("auto", torch.tensor([[-0.5, 1.5]])) == "softmax"
    assert resolve_score("auto", torch.tensor([[2.0], [-3.0]])) == "sigmoid"
    for explicit in ("softmax", "probability", "sigmoid", "identity"):
        assert resolve_score(explicit, torch.tensor([[0.5, 0.5]])) == explicit


def test_auto_warns_on_multi_label_probabilities_and_not_on_logits():
    """Sigmoid probabilities per class (rows not summing to 1) are read as
    logits, with a warning naming score='probability'; logits outside [0, 1]
    and softmax probabilities get none."""
    with pytest.warns(UserWarning, match="score='probability'") as record:
        assert resolve_score("auto", torch.tensor([[0.995, 0.88, 0.12]])) == "softmax"
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_score("auto", torch.tensor([[2.0, 0.5, -1.0]])) == "softmax"
        assert resolve_score("auto", torch.tensor([[0.7, 0.2, 0.1]])) == "probability"


def test_auto_warns_once_naming_the_option_when_one_column_is_ambiguous():
    with pytest.warns(UserWarning, match="score='sigmoid'") as record:
        assert resolve_score("auto", torch.tensor([[0.2], [0.9]])) == "probability"
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_score("probability", torch.tensor([[0.2], [0.9]]))


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(-8.0, 8.0), min_size=2, max_size=6),
    st.integers(0, 5),
)
def test_log_odds_of_probabilities_equal_those_of_logits(logits, target):
    z = torch.tensor([logits], dtype=torch.float64)
    index = torch.tensor([[target % z.shape[1]]])
    p = torch.softmax(z, dim=1)
    assert resolve_score("auto", p) == "probability"
    assert torch.allclose(class_score(p, index, "probability"), class_score(z, index, "softmax"))
    assert torch.allclose(
        class_log_odds(p, index, "probability"), class_log_odds(z, index, "softmax"), atol=1e-9
    )


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.floats(-20.0, 20.0))
def test_one_column_probability_log_odds_is_the_logit(z):
    logit = torch.tensor([[z]], dtype=torch.float64)
    index = torch.tensor([[0]])
    assert torch.allclose(
        class_log_odds(torch.sigmoid(logit), index, "probability"), logit, atol=1e-5
    )


def test_probability_log_odds_stay_finite_and_differentiable():
    p = torch.tensor([[1e-9, 1 - 1e-9]], dtype=torch.float64, requires_grad=True)
    value = class_log_odds(p, torch.tensor([[1]]), "probability")
    (grad,) = torch.autograd.grad(value.sum(), p)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert float(value.detach()) == pytest.approx(np.log((1 - 1e-9) / 1e-9))
    saturated = torch.tensor([[0.0, 1.0]])
    assert torch.isfinite(class_log_odds(saturated, torch.tensor([[1]]), "probability")).all()


# ------------------------------------------------ models users have, defaults


def test_model_ending_in_softmax_gets_a_mask_inside_the_evidence_that_destroys_it():
    model = softmax_model()
    x, truth = inputs()
    assert float(model(x)[0, 1]) > 0.999999
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), return_perturbed=True
    )
    assert_explains_patch(mask, truth)
    assert bool((model(j)[:, 1] < 0.5).all())
    # the metric scores the same M(J)_i: the model's own probability
    parts = ape_d(model, x, j, target=1, return_components=True)
    assert torch.allclose(parts.classification, model(j)[:, 1].detach())


def test_softmax_over_probabilities_was_the_silent_wrong_answer():
    # what the old default did: softmax of probabilities caps M at e/(1+e) = 0.73
    model = softmax_model()
    x, _ = inputs()
    parts = ape_d(model, x, x, target=1, score="softmax", return_components=True)
    assert float(parts.classification[0]) == pytest.approx(np.e / (1 + np.e), abs=1e-4)
    assert float(ape_d(model, x, x, target=1)[0]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("squeeze", [False, True], ids=["N x 1", "(N,)"])
def test_one_logit_binary_classifier_works_with_defaults(squeeze):
    model = one_logit_model()
    if squeeze:
        model = torch.nn.Sequential(model, Squeeze()).eval()
    x, truth = inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a logit: no ambiguity warning
        mask, j = RegularizedAdversarial(model).attribute(
            x, bounds=(0.0, 1.0), return_perturbed=True
        )
    assert_explains_patch(mask, truth)
    z = model(j).reshape(-1).detach()
    assert bool((torch.sigmoid(z) < 0.5).all())
    parts = ape_d(model, x, j, return_components=True)
    assert torch.allclose(parts.classification, torch.sigmoid(z))
    assert ape_s(model, x, j).shape == (2,)


def test_one_column_probability_model_warns_once_and_is_explained():
    # a voice-activity-detector-like model: forward returns the probability
    base = torch.nn.Sequential(torch.nn.Flatten(), patch_linear(1, 1.0, [-4.0]))
    model = torch.nn.Sequential(base, torch.nn.Sigmoid(), Squeeze()).eval()
    x, truth = inputs()
    with pytest.warns(UserWarning, match="score='sigmoid'") as record:
        mask, j = RegularizedAdversarial(model).attribute(
            x, bounds=(0.0, 1.0), return_perturbed=True
        )
    assert sum("score='auto'" in str(w.message) for w in record) == 1  # said once
    assert_explains_patch(mask, truth)
    assert bool((model(j) < 0.5).all())
    with pytest.warns(UserWarning, match="score="):
        parts = ape_d(model, x, j, return_components=True)
    assert torch.allclose(parts.classification, model(j).detach())


def test_probability_rounded_to_one_is_reported():
    model = torch.nn.Sequential(one_logit_model(), torch.nn.Sigmoid()).eval()  # sigmoid(22) == 1
    x, _ = inputs()
    with pytest.warns(UserWarning, match="rounded to exactly 1"):
        RegularizedAdversarial(model).attribute(x, score="probability", steps=2, phase2_steps=1)


README_BLOCK = re.search(
    r"## Use\n\n```python\n(.*?)```", Path(__file__).parents[1].joinpath("README.md").read_text(),
    re.S,
)


@pytest.mark.parametrize("kind", ["softmax", "one logit"])
def test_readme_first_example_on_a_softmax_model_and_a_one_logit_classifier(kind):
    assert README_BLOCK is not None
    model = softmax_model() if kind == "softmax" else one_logit_model()
    x, truth = inputs()
    names = dict(model=model, x=x, ground_truth=truth, target=1 if kind == "softmax" else None)
    exec(compile(README_BLOCK.group(1), "README.md", "exec"), names)
    assert_explains_patch(names["mask"], truth)
    assert bool((names["hits"] == 100.0).all())
    assert bool((names["score"] < 0.5).all())


# ------------------------------------------------------------ (N,) inputs


def scalar_model() -> torch.nn.Module:
    """``(N,)`` inputs to ``(N,)`` logits: z = 10 (x - 0.5)."""

    class Scalar(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.dim() == 1
            return 10.0 * (x - 0.5)

    return Scalar().eval()


def test_one_dimensional_inputs_with_both_methods_and_the_metrics():
    model = scalar_model()
    x = torch.tensor([0.9, 0.95, 0.8])
    mask, j = RegularizedAdversarial(model).attribute(
        x, bounds=(0.0, 1.0), return_perturbed=True, sparsity_weight=0.1, tv_weight=0.0
    )
    assert mask.shape == x.shape and j.shape == x.shape
    assert bool((mask == 1).all()) and bool((j < 0.5).all())
    sal, j_mp = MeaningfulPerturbation(model).attribute(x, return_perturbed=True)
    assert sal.shape == x.shape and bool((j_mp < x).all())
    assert ape_d(model, x, j).shape == (3,)
    j_fill = fill_with_reference(x, mask, 0.0)
    assert torch.equal(j_fill, torch.zeros(3))
    j_within = perturb_within_mask(model, x, mask, bounds=(0.0, 1.0), steps=20)
    assert j_within.shape == (3,) and bool((j_within < 0.5).all())
    scan = scan_threshold(
        model, x, sal, perturb=lambda i, m: fill_with_reference(i, m, 0.0), thresholds=[0.5]
    )
    assert scan.ape.shape == (3,)


# --------------------------------------------------- Meaningful Perturbation


def test_meaningful_perturbation_defaults_work_on_tabular_inputs():
    lin = torch.nn.Linear(6, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[1, 2] = 20.0  # feature 2 is the evidence for class 1
        lin.bias[1] = -2.0
    model = lin.eval()
    x = torch.full((2, 6), 0.5)
    x[:, 2] = 1.0  # z1 = 18
    sal, j = MeaningfulPerturbation(model).attribute(x, target=1, return_perturbed=True)
    assert sal.shape == x.shape
    assert bool((sal[:, 2] > 0.5).all()) and float(sal[:, [0, 1, 3, 4, 5]].max()) < 0.05
    assert bool((torch.softmax(model(j), 1)[:, 1] < 0.5).all())


def test_meaningful_perturbation_defaults_explain_a_confident_softmax_model():
    model = softmax_model()
    x, truth = inputs()
    sal = MeaningfulPerturbation(model).attribute(
        x, target=1, l1_weight=1.0, tv_weight=1.0, steps=100
    )
    assert float(sal[truth].mean()) > 0.5 and float(sal[~truth].mean()) < 0.1


# ----------------------------------------------------------------- NoiseTunnel


@pytest.mark.parametrize("method", [RegularizedAdversarial, MeaningfulPerturbation])
@pytest.mark.parametrize("as_tuple", [False, True])
def test_noise_tunnel_with_return_perturbed_raises_a_clear_error(method, as_tuple):
    model = softmax_model()
    x, _ = inputs()
    calls = []
    forward = lambda t: (calls.append(1), model(t))[1]  # noqa: E731
    nt = NoiseTunnel(method(forward))
    with pytest.raises(ValueError, match="NoiseTunnel"):
        nt.attribute(
            (x,) if as_tuple else x, nt_type="smoothgrad", nt_samples=2, target=1,
            steps=2, return_perturbed=True,
        )
    assert calls == []


# ----------------------------------------------------------- training mode


def batch_norm_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.BatchNorm2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(2 * H * H, 2),
    )
    with torch.no_grad():
        model[1].running_mean.fill_(0.25)
        model[1].running_var.fill_(2.0)
    return model.train()


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: RegularizedAdversarial(m).attribute(x, target=1, steps=3, phase2_steps=2),
        lambda m, x: MeaningfulPerturbation(m).attribute(x, target=1, steps=3),
        lambda m, x: ape_d(m, x, x * 0.5, target=1),
        lambda m, x: ape_s(m, x, x * 0.5, target=1),
        lambda m, x: perturb_within_mask(m, x, torch.ones_like(x), target=1, steps=3),
        lambda m, x: scan_threshold(
            m, x, x, target=1, thresholds=[0.5],
            perturb=lambda i, k: fill_with_reference(i, k, 0.0),
        ),
        lambda m, x: deletion_auc(m, x, x, target=1, steps=4),
        lambda m, x: insertion_auc(m, x, x, target=1, steps=4),
    ],
    ids=["RA", "MP", "ape_d", "ape_s", "perturb_within_mask", "scan_threshold", "deletion_auc",
         "insertion_auc"],
)
@pytest.mark.parametrize("closure", [False, True], ids=["module", "lambda"])
def test_batch_norm_in_training_mode_stays_bit_identical(call, closure):
    """The model itself, or a function that closes over it (which the
    package cannot inspect beforehand: its layers are found as they run)."""
    model = batch_norm_model()
    before = copy.deepcopy(model.state_dict())
    x, _ = inputs(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call((lambda t: model(t)) if closure else model, x)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert set(after) == set(before)
    for name, value in before.items():
        assert torch.equal(after[name], value), name
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("closure", [False, True], ids=["module", "lambda"])
def test_training_mode_warning_is_kept(closure):
    model = batch_norm_model()
    x, _ = inputs(3)
    forward = (lambda t: model(t)) if closure else model
    with pytest.warns(UserWarning, match="training mode") as record:
        RegularizedAdversarial(forward).attribute(x, target=1, steps=2, phase2_steps=1)
    assert sum("training mode" in str(w.message) for w in record) == 1


class _Wrapper(torch.nn.Module):
    """A caller's wrapper, created in training mode (as every new module is)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.net(t)


def test_a_new_wrapper_around_an_eval_model_gets_no_training_warning():
    model = batch_norm_model().eval()
    wrapper = _Wrapper(model)
    assert wrapper.training and not model.training
    x, _ = inputs(3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        RegularizedAdversarial(wrapper).attribute(x, target=1, steps=2, phase2_steps=1)
    assert not any("training mode" in str(w.message) for w in record)
    with pytest.warns(UserWarning, match="training mode"):
        RegularizedAdversarial(_Wrapper(model.train())).attribute(
            x, target=1, steps=2, phase2_steps=1
        )


def test_cc_hit_rate_with_shared_channel_ground_truth_still_works():
    masks = torch.zeros(1, 3, 4, 4)
    masks[0, :, 0, 0] = 1
    gt = torch.zeros(1, 1, 4, 4)
    gt[0, 0, 0, 0] = 1
    assert cc_hit_rate(masks, gt).tolist() == [100.0]


def test_integrated_gradients_runs_on_the_same_one_logit_model():
    # the README compares with Captum; IG needs target=None on one output too
    model = one_logit_model()
    x, _ = inputs()
    assert IntegratedGradients(model).attribute(x, target=None).shape == x.shape


# ---------------------------------------------------- documented bounds recipes


def test_bounds_for_mean_std_normalised_inputs_keep_j_in_the_original_range():
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x, _ = inputs()
    x = x.expand(2, 3, H, H).contiguous()
    one_channel = patch_linear(2, 1.0, [25.0, 0.0])  # z1 - z0 = 27 - 25 over 3 channels
    lin = torch.nn.Linear(3 * H * H, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.cat([one_channel.weight] * 3, 1))
        lin.bias.copy_(one_channel.bias)

    class Normalised(torch.nn.Module):
        def forward(self, xn: torch.Tensor) -> torch.Tensor:
            return lin((xn * std + mean).flatten(1))  # the model undoes the normalisation

    model = Normalised().eval()
    xn = (x - mean) / std
    bounds = ((0 - mean) / std, (1 - mean) / std)
    mask, j = RegularizedAdversarial(model).attribute(
        xn, target=1, bounds=bounds, return_perturbed=True
    )
    back = j * std + mean
    assert float(back.min()) >= -1e-6 and float(back.max()) <= 1 + 1e-6
    assert bool((torch.softmax(model(j), 1)[:, 1] < 0.5).all())
    with pytest.raises(ValueError, match="outside bounds"):
        RegularizedAdversarial(model).attribute(xn, target=1, bounds=(0.0, 1.0))


def test_sensitivity_max_recipes_from_the_method_page():
    from captum.metrics import sensitivity_max

    model = softmax_model()
    x, _ = inputs()
    ra = RegularizedAdversarial(model)
    kw = dict(target=1, n_perturb_samples=2, steps=5, phase2_steps=2)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="outside bounds"):  # x has zeros and ones
        sensitivity_max(ra.attribute, x, bounds=(0.0, 1.0), **kw)

    def noise_in_range(inputs, perturb_radius=0.02):
        noise = torch.empty_like(inputs).uniform_(-perturb_radius, perturb_radius)
        return (inputs + noise).clamp(0.0, 1.0)

    sens = sensitivity_max(ra.attribute, x, perturb_func=noise_in_range, bounds=(0.0, 1.0), **kw)
    assert sens.shape == (2,) and bool(torch.isfinite(sens).all())
    assert sensitivity_max(ra.attribute, x, **kw).shape == (2,)  # bounds=None


def test_a_training_batch_norm_that_needs_two_examples_gets_a_clear_error():
    """Global pooling then batch norm in training mode runs on a batch of 2
    but not on 1 example, which the explanation evaluates on its own: the
    error says why and what to do, not PyTorch's bare message."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2),
    ).train()
    x = torch.rand(2, 1, 8, 8)
    assert model(x).shape == (2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"training mode.*batch norm.*model\.eval\(\)"):
            RegularizedAdversarial(model).attribute(x[:1], target=1, steps=2, phase2_steps=1)


def test_monai_vit_needs_its_logits_and_then_runs_unchanged():
    """MONAI's ViT returns ``(logits, hidden_states)``: passed as it is, the
    error names the wrapper to write; through that wrapper the call runs and
    leaves the network as it was (weights, buffers, mode)."""
    from monai.networks.nets import ViT

    torch.manual_seed(0)
    vit = ViT(in_channels=1, img_size=(16, 16), patch_size=(4, 4), hidden_size=16, mlp_dim=32,
              num_layers=1, num_heads=2, classification=True, num_classes=2, spatial_dims=2,
              post_activation=None).eval()
    before = copy.deepcopy(vit.state_dict())
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with pytest.raises(TypeError, match=r"model\(x\)\[0\]"):
        RegularizedAdversarial(vit).attribute(x, target=1, steps=2, phase2_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask, j = RegularizedAdversarial(lambda t: vit(t)[0]).attribute(
            x, target=vit(x)[0].argmax(1), bounds=(0.0, 1.0), steps=4, phase2_steps=2,
            return_perturbed=True,
        )
    assert mask.shape == x.shape and bool(((j >= 0) & (j <= 1)).all())
    assert torch.equal(j[mask == 0], x[mask == 0])
    assert not vit.training
    for name, value in before.items():
        assert torch.equal(vit.state_dict()[name], value), name


class _ClampsItsInput(torch.nn.Module):
    """Clamps its input in place (to [0, 0.5]) before a hand-set linear model."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        v.clamp_(0.0, 0.5)
        return self.net(v)


def test_a_model_that_changes_its_input_in_place_changes_nothing_of_ours():
    """The caller's tensor keeps its values and the call runs (the model gets
    copies; gradients flow through them)."""
    model = _ClampsItsInput(one_logit_model())
    x, _ = inputs(2)
    x_before = x.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask, j = RegularizedAdversarial(model).attribute(
            x, target=None, bounds=(0.0, 1.0), steps=3, phase2_steps=2, return_perturbed=True
        )
        ape_d(model, x, j, target=None)
    assert torch.equal(x, x_before)
    assert torch.equal(j[mask == 0], x[mask == 0])


class _ClampsOnlyWithGradients(_ClampsItsInput):
    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if v.requires_grad:
            v.clamp_(0.0, 0.5)
        return self.net(v)


def test_a_model_that_writes_into_its_input_only_with_gradients_gets_a_clear_error():
    """Not seen on the first (gradient-free) pass, so no copies: PyTorch's own
    error on the optimised tensor becomes one that names the fix."""
    x, _ = inputs(2)
    with pytest.raises(ValueError, match=r"changes its input in place.*x\.clamp_"):
        RegularizedAdversarial(_ClampsOnlyWithGradients(one_logit_model())).attribute(
            x, target=None, bounds=(0.0, 1.0), steps=3, phase2_steps=2
        )
