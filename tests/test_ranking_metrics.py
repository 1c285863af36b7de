"""Deletion / insertion AUC and the pointing game against plain numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from captum_regadv import deletion_auc, insertion_auc, pointing_game
from captum_regadv.perturbations import gaussian_blur
from captum_regadv.pointing import default_tolerance
from captum_regadv.ranking_metrics import ranking_order

H = W = 4
N_EL = H * W


def linear_model(seed: int = 0) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """Flatten + Linear(16, 3) with hand-set (seeded) weights; returns the numpy weights too."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3, N_EL))
    bias = rng.normal(size=3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(N_EL, 3)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(weight))
        model[1].bias.copy_(torch.from_numpy(bias))
    return model.eval(), weight, bias


def numpy_auc(weight, bias, x, attr, fill, target, steps, max_fraction, deletion):
    """Loop over examples and steps; softmax probability; trapezoid over the fraction."""
    out = []
    for i in range(x.shape[0]):
        xi, fi, ai = x[i].ravel(), fill[i].ravel(), attr[i].ravel()
        order = np.argsort(-ai, kind="stable")
        xs, ps = [], []
        for k in range(steps + 1):
            c = int(np.round(k * max_fraction * N_EL / steps))
            changed = np.zeros(N_EL, dtype=bool)
            changed[order[:c]] = True
            j = np.where(changed, fi, xi) if deletion else np.where(changed, xi, fi)
            z = weight @ j + bias
            p = np.exp(z - z.max())
            ps.append(p[target[i]] / p.sum())
            xs.append(c / N_EL)
        out.append(np.trapezoid(ps, xs) / xs[-1])
    return np.array(out)


@pytest.mark.parametrize("deletion", [True, False])
@pytest.mark.parametrize("max_fraction,steps", [(1.0, 8), (0.25, 4), (1.0, 50)])
def test_auc_matches_numpy_loop(deletion, max_fraction, steps):
    model, weight, bias = linear_model()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, H, W, generator=gen, dtype=torch.float64)
    attr = torch.randn(5, 1, H, W, generator=gen, dtype=torch.float64)
    fill = torch.rand(5, 1, H, W, generator=gen, dtype=torch.float64)
    target = [0, 1, 2, 1, 0]
    metric = deletion_auc if deletion else insertion_auc
    got = metric(model, x, attr, target=target, substrate=fill, steps=steps,
                 max_fraction=max_fraction, internal_batch_size=7)
    expected = numpy_auc(weight, bias, x.numpy(), attr.numpy(), fill.numpy(), target,
                         steps, max_fraction, deletion)
    assert got.shape == (5,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_chunking_does_not_change_the_result_and_curve_is_returned():
    model, _, _ = linear_model()
    x = torch.rand(3, 1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    attr = torch.randn_like(x)
    whole = deletion_auc(model, x, attr, target=1, substrate=0.0, steps=10)
    auc, xs, curve = deletion_auc(model, x, attr, target=1, substrate=0.0, steps=10,
                                  internal_batch_size=4, return_curve=True)
    torch.testing.assert_close(whole, auc)
    assert xs.shape == (11,) and curve.shape == (3, 11)
    assert float(xs[0]) == 0.0 and float(xs[-1]) == 1.0
    # deletion starts at M(I)_i, insertion ends at it
    p_input = torch.softmax(model(x), 1)[:, 1]
    torch.testing.assert_close(curve[:, 0], p_input)
    _, _, ins = insertion_auc(model, x, attr, target=1, substrate=0.0, steps=10, return_curve=True)
    torch.testing.assert_close(ins[:, -1], p_input)


def test_blur_substrate_is_the_gaussian_blur_of_the_input():
    model, _, _ = linear_model()
    x = torch.rand(2, 1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    attr = torch.randn_like(x)
    default = insertion_auc(model, x, attr, target=2, steps=6, blur_sigma=1.5)
    explicit = insertion_auc(model, x, attr, target=2, steps=6,
                             substrate=gaussian_blur(x, 1.5))
    torch.testing.assert_close(default, explicit)


def test_tuple_inputs_pool_their_elements():
    model, weight, bias = linear_model()
    x = torch.rand(2, 1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    attr = torch.randn_like(x)

    def split_model(a, b):
        return model(torch.cat([a, b], dim=2))

    single = deletion_auc(model, x, attr, target=0, substrate=0.5, steps=8)
    pair = deletion_auc(split_model, (x[:, :, :2], x[:, :, 2:]), (attr[:, :, :2], attr[:, :, 2:]),
                        target=0, substrate=0.5, steps=8)
    torch.testing.assert_close(single, pair)


def test_float32_follows_dtype_and_does_not_modify_inputs():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(N_EL, 2))
    x = torch.rand(2, 1, H, W)
    attr = torch.randn(2, 1, H, W)
    x0, a0 = x.clone(), attr.clone()
    params = [p.clone() for p in model.parameters()]
    out = deletion_auc(model, x, attr, target=1, steps=5)
    assert out.dtype == torch.float32 and out.shape == (2,)
    assert torch.equal(x, x0) and torch.equal(attr, a0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 12),
       fraction=st.sampled_from([0.25, 0.5, 1.0]))
def test_auc_in_unit_interval_and_perfect_ranking_beats_reversed(seed, steps, fraction):
    """On a linear model with a zero substrate, ranking by the contribution w * x is optimal."""
    model, weight, _ = linear_model(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 1, H, W, dtype=torch.float64, generator=gen)
    target = 1
    # a two-class view: the log-odds of class 1 against the others is not linear, so use
    # score="sigmoid" of the target logit, which is monotone in the linear contribution
    contribution = (torch.from_numpy(weight[target]).view(1, 1, H, W) * x)
    kwargs = dict(target=target, substrate=0.0, steps=steps, max_fraction=fraction,
                  score="sigmoid")
    best = deletion_auc(model, x, contribution, **kwargs)
    worst = deletion_auc(model, x, -contribution, **kwargs)
    assert bool(((best >= 0) & (best <= 1)).all())
    assert bool((best <= worst + 1e-12).all())
    ins_best = insertion_auc(model, x, contribution, **kwargs)
    ins_worst = insertion_auc(model, x, -contribution, **kwargs)
    assert bool(((ins_best >= 0) & (ins_best <= 1)).all())
    assert bool((ins_best >= ins_worst - 1e-12).all())


def test_ties_are_broken_by_a_seeded_order_without_spatial_bias():
    mask = torch.zeros(1, 1, H, W)
    mask[0, 0, :2, :2] = 1.0
    order = ranking_order(mask)
    assert set(order[0, :4].tolist()) == {0, 1, 4, 5}  # the tied block comes first
    assert torch.equal(order, ranking_order(mask))  # deterministic
    assert not torch.equal(order, ranking_order(mask, seed=1))
    # not raster order for the zero (tied) background
    assert order[0, 4:].tolist() != sorted(order[0, 4:].tolist())


def numpy_pointing(attr, gt, tolerance):
    hits = []
    for a, g in zip(attr, gt):
        top = np.unravel_index(np.argmax(a), a.shape)
        distance = ndimage.distance_transform_edt(~g)
        hits.append(float(distance[top] <= tolerance))
    return np.array(hits)


@pytest.mark.parametrize("tolerance", [0, 1, 2.5, 6])
def test_pointing_game_matches_numpy_distance_transform(tolerance):
    gen = torch.Generator().manual_seed(5)
    attr = torch.randn(12, 1, 16, 16, generator=gen)
    gt = torch.zeros(12, 1, 16, 16, dtype=torch.bool)
    for i in range(12):
        r, c = (i * 5) % 13, (i * 7) % 13
        gt[i, 0, r:r + 3, c:c + 3] = True
    got = pointing_game(attr, gt, tolerance=tolerance)
    expected = numpy_pointing(attr[:, 0].numpy(), gt[:, 0].numpy(), tolerance)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_pointing_game_sums_channels_and_default_tolerance():
    attr = torch.zeros(1, 3, 224, 224)
    attr[0, :, 100, 100] = 1.0
    gt = torch.zeros(1, 1, 224, 224)
    gt[0, 0, 115, 100] = 1.0  # 15 pixels away: a hit at the default tolerance
    assert default_tolerance((224, 224)) == 15 and default_tolerance((128, 128)) == 9
    assert pointing_game(attr, gt).tolist() == [1.0]
    gt2 = torch.zeros(1, 1, 224, 224)
    gt2[0, 0, 116, 100] = 1.0
    assert pointing_game(attr, gt2).tolist() == [0.0]
    assert pointing_game(-attr, gt, absolute=True).tolist() == [1.0]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=2.5), TypeError, "steps"),
        (dict(max_fraction=0.0), ValueError, "max_fraction"),
        (dict(max_fraction=1.5), ValueError, "max_fraction"),
        (dict(max_fraction=0.01), ValueError, "max_fraction"),
        (dict(substrate="zeros"), ValueError, "substrate"),
        (dict(substrate=torch.zeros(3)), ValueError, "substrate"),
        (dict(substrate=[0.0, 1.0]), ValueError, "substrate"),
        (dict(substrate=None), TypeError, "substrate"),
        (dict(blur_sigma=0.0), ValueError, "blur_sigma"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(score="logits"), ValueError, "score"),
    ],
)
def test_curve_validation_names_the_argument(kwargs, error, match):
    model, _, _ = linear_model()
    x = torch.rand(2, 1, H, W, dtype=torch.float64)
    with pytest.raises(error, match=match):
        deletion_auc(model, x, x, target=0, **kwargs)


def test_curve_validation_of_shapes():
    model, _, _ = linear_model()
    x = torch.rand(2, 1, H, W, dtype=torch.float64)
    with pytest.raises(ValueError, match="attributions"):
        deletion_auc(model, x, x[:, :, :2], target=0)
    with pytest.raises(TypeError, match="attributions"):
        deletion_auc(model, x, x > 0.5, target=0)
    with pytest.raises(ValueError, match="substrate='blur'"):
        deletion_auc(torch.nn.Linear(16, 2).double(), x.flatten(1), x.flatten(1), target=0)


def test_pointing_game_validation():
    attr = torch.rand(2, 1, 5, 5)
    gt = torch.ones(2, 1, 5, 5)
    with pytest.raises(ValueError, match="ground_truth"):
        pointing_game(attr, gt[:, :, :4])
    with pytest.raises(ValueError, match="empty"):
        pointing_game(attr, torch.zeros_like(gt))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(attr, gt, tolerance=-1)
    with pytest.raises(ValueError, match="channel_dim"):
        pointing_game(attr, gt, channel_dim=4)
    with pytest.raises(TypeError, match="ground_truth"):
        pointing_game(attr, gt.numpy())
