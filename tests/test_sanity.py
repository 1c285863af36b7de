"""Sanity check (cascading model randomisation): the cascade, the similarities, the figure."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy import stats
from torch import Tensor, nn

from captum_regadv.sanity import (
    CascadeResult,
    cascade_figure,
    cascade_similarity,
    mask_iou,
    randomization_cascade,
    rank_correlation,
    ssim,
)
from conftest import RegionModel, region_weight

torch.set_num_threads(1)

LAYERS = ["6", "4", "1", "0"]  # parameterised layers of toy_model(), output first


def toy_model() -> nn.Sequential:
    """Conv-BN-ReLU-Linear-ReLU-Linear on 1 x 8 x 8, BN moved away from its initial state."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 16),
        nn.ReLU(),
        nn.Linear(16, 2),
    )
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm2d)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    model[0].bias.requires_grad_(False)  # a flag the cascade must keep
    return model.eval()


def inputs(n: int = 4) -> Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def gradient(model: nn.Module, x: Tensor, target: int) -> Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[:, target].sum(), x)
    return g


def snapshot(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, bool], dict[str, bool]]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    modes = {k: m.training for k, m in model.named_modules()}
    return state, flags, modes


def assert_unchanged(model: nn.Module, before: tuple[dict[str, Tensor], dict[str, bool], dict[str, bool]]) -> None:
    state, flags, modes = snapshot(model)
    assert state.keys() == before[0].keys()
    for k in state:
        assert torch.equal(state[k], before[0][k]), k
    assert flags == before[1]
    assert modes == before[2]
    assert all(p.grad is None for p in model.parameters())


def layer_equal(a: nn.Module, b: nn.Module, layer: str) -> bool:
    sa, sb = a.get_submodule(layer).state_dict(), b.get_submodule(layer).state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------
# randomization_cascade
# --------------------------------------------------------------------------


def test_cascade_randomises_exactly_the_top_k_layers():
    model = toy_model()
    steps = randomization_cascade(model, seed=0)
    assert [name for name, _ in steps] == LAYERS
    for k, (_, randomised) in enumerate(steps, start=1):
        assert randomised is not model
        changed = [layer for layer in LAYERS if not layer_equal(model, randomised, layer)]
        assert changed == LAYERS[:k]
        # the flags and the mode come with the copy
        assert randomised.training is False
        assert randomised[0].bias.requires_grad is False
    # a layer gets the same random values in every step that randomises it
    for k in range(1, len(steps)):
        assert layer_equal(steps[k - 1][1], steps[k][1], LAYERS[k - 1])


def test_cascade_leaves_the_model_and_the_global_rng_untouched():
    model = toy_model()
    before = snapshot(model)
    rng = torch.get_rng_state()
    randomization_cascade(model, seed=3)
    cascade_similarity(gradient, model, inputs(), 1, seed=3)
    assert_unchanged(model, before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_cascade_is_deterministic_under_a_seed():
    model = toy_model()
    a = randomization_cascade(model, seed=7)
    b = randomization_cascade(model, seed=7)
    c = randomization_cascade(model, seed=8)
    for (_, ma), (_, mb) in zip(a, b):
        sa, sb = ma.state_dict(), mb.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not layer_equal(a[-1][1], c[-1][1], "0")


def test_batchnorm_goes_back_to_its_initial_state():
    steps = randomization_cascade(toy_model())
    bn = steps[2][1][1]  # step 3 randomises "1", the BatchNorm
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(bn.running_var, torch.ones(4))


def test_explicit_layers_and_reinit():
    model = toy_model()
    calls: list[type] = []

    def zero(module: nn.Module) -> None:
        calls.append(type(module))
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                p.zero_()

    steps = randomization_cascade(model, layers=["4", "0"], reinit=zero)
    assert [n for n, _ in steps] == ["4", "0"]
    assert calls == [nn.Linear, nn.Conv2d]
    last = steps[-1][1]
    assert not last[4].weight.any() and not last[0].weight.any()
    assert layer_equal(model, last, "6") and layer_equal(model, last, "1")


def test_module_without_reset_parameters_gets_a_matching_normal_draw():
    model = RegionModel(region_weight((1, 4, 4), (slice(None), slice(0, 2), slice(0, 2))))
    ((name, randomised),) = randomization_cascade(model)
    assert name == ""
    assert not torch.equal(randomised.weight, model.weight)
    assert torch.equal(model.weight, region_weight((1, 4, 4), (slice(None), slice(0, 2), slice(0, 2))))


def test_cascade_rejects_bad_layers():
    model = toy_model()
    with pytest.raises(ValueError, match="no module named"):
        randomization_cascade(model, layers=["9"])
    with pytest.raises(ValueError, match="owns no parameters"):
        randomization_cascade(model, layers=["2"])
    with pytest.raises(ValueError, match="twice"):
        randomization_cascade(model, layers=["0", "0"])
    with pytest.raises(ValueError, match="no module that owns parameters"):
        randomization_cascade(nn.ReLU())
    with pytest.raises(TypeError):
        randomization_cascade(lambda x: x)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Similarity measures
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 1, 16, 16), (2, 3, 20, 12), (2, 2, 30), (2, 25), (1, 1, 6, 7, 8)])
def test_ssim_of_identical_maps_is_one(shape):
    a = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(a, a), torch.ones(shape[0], dtype=torch.float64))


def test_ssim_is_lower_for_unrelated_maps_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    s = ssim(a, b)
    assert bool((s < 0.2).all())
    torch.testing.assert_close(s, ssim(b, a))
    near = ssim(a, (a + 0.02 * b).clamp(0, 1))
    assert bool((near > 0.9).all() & (near < 1).all())


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 24, 20, generator=g), torch.rand(2, 1, 24, 20, generator=g)
    b = 0.5 * a + 0.5 * b
    ours = ssim(a, b)
    for i in range(2):
        ref = metrics.structural_similarity(
            a[i, 0].double().numpy(), b[i, 0].double().numpy(), data_range=1.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        assert abs(float(ours[i]) - ref) < 1e-6


def test_rank_correlation_matches_scipy_and_handles_constant_maps():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 1, 5, 5, generator=g), torch.rand(3, 1, 5, 5, generator=g)
    got = rank_correlation(a, b)
    for i in range(3):
        want = stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert abs(float(got[i]) - want) < 1e-12
    zeros, ones = torch.zeros(1, 4), torch.ones(1, 4)
    assert rank_correlation(zeros, zeros).tolist() == [1.0]
    assert rank_correlation(zeros, ones).tolist() == [0.0]
    assert rank_correlation(zeros, torch.arange(4.0).view(1, 4)).tolist() == [0.0]


def test_mask_iou_against_numpy():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(4, 1, 6, 6, generator=g) > 0.5).float()
    b = (torch.rand(4, 1, 6, 6, generator=g) > 0.5).float()
    an, bn = a.numpy().reshape(4, -1) > 0, b.numpy().reshape(4, -1) > 0
    want = (an & bn).sum(1) / (an | bn).sum(1)
    np.testing.assert_allclose(mask_iou(a, b).numpy(), want)
    assert mask_iou(torch.zeros(1, 3), torch.zeros(1, 3)).tolist() == [1.0]
    assert mask_iou(torch.zeros(1, 3), torch.ones(1, 3)).tolist() == [0.0]


def test_similarities_check_shapes():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(1, 4), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="batch"):
        rank_correlation(torch.zeros(4), torch.zeros(4))


# --------------------------------------------------------------------------
# cascade_similarity
# --------------------------------------------------------------------------


def test_an_explanation_that_ignores_the_model_fails_the_check():
    model, x = toy_model(), inputs()
    result = cascade_similarity(lambda m, inputs, t: inputs, model, x, 1)
    assert result.layers == tuple(LAYERS)
    assert result.rank_correlation.shape == (4, 4) and result.ssim.shape == (4, 4)
    torch.testing.assert_close(result.rank_correlation, torch.ones(4, 4, dtype=torch.float64))
    torch.testing.assert_close(result.ssim, torch.ones(4, 4, dtype=torch.float64))
    assert result.iou is None
    assert not result.passes()


def test_binary_masks_get_an_iou():
    model, x = toy_model(), inputs()
    result = cascade_similarity(lambda m, inputs, t: (inputs > 0.5).float(), model, x)
    assert result.iou is not None
    torch.testing.assert_close(result.mean("iou"), torch.ones(4, dtype=torch.float64))


def test_gradient_explanation_changes_when_the_weights_are_randomised():
    model, x = toy_model(), inputs(6)
    before = snapshot(model)
    result = cascade_similarity(gradient, model, x, 1, seed=0)
    assert_unchanged(model, before)
    final = result.mean("rank_correlation")[-1]
    assert float(final) < 0.5
    assert float(result.mean("ssim")[-1]) < 0.5
    assert result.passes()
    # the same seed gives the same numbers
    again = cascade_similarity(gradient, model, x, 1, seed=0)
    torch.testing.assert_close(again.rank_correlation, result.rank_correlation)


def test_cascade_similarity_checks_the_explanation():
    model, x = toy_model(), inputs()
    with pytest.raises(ValueError, match="one map per example"):
        cascade_similarity(lambda m, inputs, t: inputs[:2], model, x)
    with pytest.raises(TypeError, match="must return a tensor"):
        cascade_similarity(lambda m, inputs, t: inputs.numpy(), model, x)  # type: ignore[arg-type,return-value]
    calls = iter(range(100))

    def shrinking(m: nn.Module, inputs: Tensor, t: object) -> Tensor:
        return inputs if next(calls) == 0 else inputs[..., :4]

    with pytest.raises(ValueError, match="at layer '6'"):
        cascade_similarity(shrinking, model, x)


def test_result_mean_needs_an_iou_and_a_known_name():
    result = CascadeResult(("b", "a"), torch.tensor([[0.9, 0.7], [0.1, 0.3]]), torch.ones(2, 2), None)
    torch.testing.assert_close(result.mean(), torch.tensor([0.8, 0.2]))
    assert result.passes() and not result.passes(similarity="ssim")
    with pytest.raises(ValueError, match="no IoU"):
        result.mean("iou")
    with pytest.raises(ValueError, match="similarity must be"):
        result.mean("pearson")  # type: ignore[arg-type]
    assert "rank_correlation=[0.80, 0.20]" in repr(result)


# --------------------------------------------------------------------------
# cascade_figure
# --------------------------------------------------------------------------


def test_cascade_figure_draws_one_line_per_method(tmp_path):
    model, x = toy_model(), inputs()
    results = {
        "input": cascade_similarity(lambda m, inputs, t: (inputs > 0.5).float(), model, x),
        "gradient": cascade_similarity(gradient, model, x, 1),
    }
    fig = cascade_figure(results, title="toy")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3  # rank correlation, SSIM, IoU (one method has masks)
    rank_axis = fig.axes[0]
    assert len(rank_axis.get_lines()) == 3  # two methods and the zero line
    xs, ys = rank_axis.get_lines()[0].get_data()
    assert len(xs) == 1 + len(LAYERS) and ys[0] == 1.0
    assert [t.get_text() for t in rank_axis.get_xticklabels()] == ["original", *LAYERS]
    # one figure legend naming every method; a method keeps its colour in every panel
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["input", "gradient"]
    iou_axis = fig.axes[2]
    assert [line.get_color() for line in iou_axis.get_lines()[:1]] == [rank_axis.get_lines()[0].get_color()]
    path = tmp_path / "cascade.png"
    fig.savefig(path)
    assert path.stat().st_size > 0
    single = cascade_figure(results["gradient"], similarities=["ssim"])
    assert len(single.axes) == 1


def test_cascade_figure_rejects_mismatched_results():
    a = CascadeResult(("b", "a"), torch.zeros(2, 1), torch.zeros(2, 1), None)
    b = CascadeResult(("c", "a"), torch.zeros(2, 1), torch.zeros(2, 1), None)
    with pytest.raises(ValueError, match="same layers"):
        cascade_figure({"a": a, "b": b})
    with pytest.raises(ValueError, match="empty"):
        cascade_figure({})
    with pytest.raises(ValueError, match="similarity must be"):
        cascade_figure(a, similarities=["pearson"])  # type: ignore[list-item]


def test_original_model_is_not_needed_after_the_cascade():
    # deep copies: changing a step does not touch the model or the other steps
    model = toy_model()
    steps = randomization_cascade(model)
    reference = copy.deepcopy(steps[1][1].state_dict())
    with torch.no_grad():
        steps[0][1][6].weight.add_(1.0)
    assert all(torch.equal(v, steps[1][1].state_dict()[k]) for k, v in reference.items())
    assert not torch.equal(steps[0][1][6].weight, model[6].weight)


@pytest.mark.parametrize(
    "shape,expected",
    [
        ((2, 1, 16, 16), [0.7569233395264447, 0.8002384808475275]),
        ((2, 3, 12, 20), [0.7476286619703595, 0.8002082481780415]),
        ((2, 40), [0.748716495379311, 0.7607135053510301]),
        ((1, 1, 11, 12, 13), [0.8177964904169542]),
    ],
)
def test_ssim_equals_the_previous_hand_written_version_on_fixed_data(shape, expected):
    """Values of the former torch implementation (valid 11-tap Gaussian window)."""
    g = torch.Generator().manual_seed(7)
    for previous in [(2, 1, 16, 16), (2, 3, 12, 20), (2, 40), (1, 1, 11, 12, 13)]:
        a = torch.rand(*previous, generator=g)
        b = 0.6 * a + 0.4 * torch.rand(*previous, generator=g)
        if previous == shape:
            break
    torch.testing.assert_close(ssim(a, b), torch.tensor(expected, dtype=torch.float64))
