"""APE_D, APE_S and the CC hit rate against independent numpy/scipy-free computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv import APEComponents, ape_d, ape_s, cc_hit_rate
from captum_regadv.perturbations import binarize, total_variation
from conftest import RegionModel, region_weight


def np_tv(a: np.ndarray) -> float:
    """Anisotropic TV of one example C x *spatial, by explicit loops over neighbours."""
    total = 0.0
    spatial = a.shape[1:]
    for c in range(a.shape[0]):
        for idx in itertools.product(*[range(s) for s in spatial]):
            for d in range(len(spatial)):
                nxt = list(idx)
                nxt[d] += 1
                if nxt[d] < spatial[d]:
                    total += abs(a[(c,) + tuple(nxt)] - a[(c,) + idx])
    return total


def np_softmax1(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True))[:, 1]


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(3)
    model = RegionModel(region_weight((2, 5, 6), (slice(None), slice(1, 3), slice(2, 4))), scale=2.0)
    x = torch.rand(4, 2, 5, 6, generator=g, dtype=torch.float64)
    model = model.double()
    j = x.clone()
    change = torch.rand(x.shape, generator=g, dtype=torch.float64) < 0.2
    j[change] = torch.rand(int(change.sum()), generator=g, dtype=torch.float64)
    return model, x, j


def test_ape_d_matches_numpy(case):
    model, x, j = case
    got = ape_d(model, x, j, target=1, weights=(0.5, 2.0, 3.0), return_components=True)
    assert isinstance(got, APEComponents)
    xn, jn = x.numpy(), j.numpy()
    n = xn[0].size
    b = (xn != jn).astype(float)
    with torch.no_grad():
        p = np_softmax1(model(j).numpy())
    for k in range(x.shape[0]):
        assert got.sparsity[k].item() == pytest.approx(0.5 * b[k].sum() / n)
        assert got.smoothness[k].item() == pytest.approx(2.0 * np_tv(b[k]) / n)
        assert got.classification[k].item() == pytest.approx(3.0 * p[k])
        expected = 0.5 * b[k].sum() / n + 2.0 * np_tv(b[k]) / n + 3.0 * p[k]
        assert got.total[k].item() == pytest.approx(expected)
    total = ape_d(model, x, j, target=1, weights=(0.5, 2.0, 3.0))
    assert torch.equal(total, got.total) and total.shape == (4,)


def test_ape_s_matches_numpy(case):
    model, x, j = case
    got = ape_s(model, x, j, target=1, return_components=True)
    xn, jn = x.numpy(), j.numpy()
    n = xn[0].size
    b = (xn != jn).astype(float)
    with torch.no_grad():
        pj = np_softmax1(model(j).numpy())
        pi = np_softmax1(model(x).numpy())
    for k in range(x.shape[0]):
        assert got.sparsity[k].item() == pytest.approx((1 - b[k]).sum() / n)
        assert got.smoothness[k].item() == pytest.approx(np_tv(1 - b[k]) / n)
        assert got.classification[k].item() == pytest.approx(abs(pj[k] - pi[k]))


def test_identity_gives_zero_change_terms(case):
    model, x, _ = case
    c = ape_d(model, x, x.clone(), target=1, return_components=True)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[:, 1]
    assert torch.equal(c.sparsity, torch.zeros(4, dtype=x.dtype))
    assert torch.equal(c.smoothness, torch.zeros(4, dtype=x.dtype))
    assert torch.allclose(c.classification, p)
    s = ape_s(model, x, x.clone(), target=1, return_components=True)
    assert torch.equal(s.sparsity, torch.ones(4, dtype=x.dtype))
    assert torch.equal(s.classification, torch.zeros(4, dtype=x.dtype))


def test_one_element_change():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    x = torch.zeros(1, 1, 3, 4)
    j = x.clone()
    j[0, 0, 1, 1] = 0.5  # an interior element has 4 neighbours
    c = ape_d(model, x, j, target=0, return_components=True)
    assert c.sparsity.item() == pytest.approx(1 / 12)
    assert c.smoothness.item() == pytest.approx(4 / 12)
    j2 = x.clone()
    j2[0, 0, 0, 0] = 1e-12  # exact binarisation: any non-zero change counts
    assert ape_d(model, x, j2, target=0, return_components=True).sparsity.item() == pytest.approx(1 / 12)


def test_tuple_inputs_count_all_elements():
    def model(a, b):
        return torch.stack([a.flatten(1).sum(1), b.sum(1)], dim=1)

    a, b = torch.zeros(2, 1, 2, 2), torch.zeros(2, 3)
    ja, jb = a.clone(), b.clone()
    ja[0, 0, 0, 0] = 1.0
    jb[1, 2] = 1.0
    c = ape_d(model, (a, b), (ja, jb), target=0, return_components=True)
    assert c.sparsity.tolist() == pytest.approx([1 / 7, 1 / 7])
    # TV: 2 neighbours for the image corner; none for the tabular tensor
    assert c.smoothness.tolist() == pytest.approx([2 / 7, 0.0])


def test_additional_args_and_chunking(case):
    model, x, j = case
    extra = torch.tensor([1.0, -1.0, 2.0, 0.5], dtype=x.dtype)
    full = ape_d(model, x, j, target=1, additional_forward_args=(extra,))
    chunked = ape_d(model, x, j, target=1, additional_forward_args=(extra,), max_examples_per_batch=3)
    assert torch.allclose(full, chunked)
    plain = ape_d(model, x, j, target=1)
    assert not torch.allclose(full, plain)


def test_score_transforms(case):
    model, x, j = case
    with torch.no_grad():
        z = model(j)
    c_sig = ape_d(model, x, j, target=1, score="sigmoid", return_components=True)
    assert torch.allclose(c_sig.classification, torch.sigmoid(z[:, 1]))
    c_id = ape_d(model, x, j, target=1, score="identity", return_components=True)
    assert torch.allclose(c_id.classification, z[:, 1])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(weights=(1.0, -1.0, 1.0)), ValueError),
        (dict(weights=(1.0, 1.0)), TypeError),
        (dict(score="relu"), ValueError),
        (dict(max_examples_per_batch=0), ValueError),
    ],
)
def test_bad_arguments(case, kwargs, error):
    model, x, j = case
    with pytest.raises(error):
        ape_d(model, x, j, target=1, **kwargs)


def test_shape_mismatch_and_nan(case):
    model, x, j = case
    with pytest.raises(ValueError, match="perturbed_inputs"):
        ape_d(model, x, j[:, :1], target=1)
    bad = j.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ape_s(model, x, bad, target=1)
    with pytest.raises(ValueError, match="out of range"):
        ape_d(model, x, j, target=2)


# ---- properties ----------------------------------------------------------------

masks_2d = st.integers(min_value=1, max_value=6).flatmap(
    lambda h: st.integers(min_value=1, max_value=6).flatmap(
        lambda w: st.lists(st.booleans(), min_size=2 * h * w, max_size=2 * h * w).map(
            lambda v: torch.tensor(v, dtype=torch.float64).view(2, 1, h, w)
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(masks_2d)
def test_tv_is_blind_to_complement(mask):
    assert torch.equal(total_variation(mask), total_variation(1 - mask))


@settings(max_examples=60, deadline=None)
@given(masks_2d)
def test_ape_d_and_ape_s_components_are_complementary(mask):
    x = torch.zeros_like(mask)
    j = mask.clone()

    def model(t):
        return torch.stack([t.flatten(1).sum(1), -t.flatten(1).sum(1)], 1)

    d = ape_d(model, x, j, target=0, return_components=True)
    s = ape_s(model, x, j, target=0, return_components=True)
    assert torch.allclose(d.sparsity + s.sparsity, torch.ones(2, dtype=x.dtype))
    assert torch.equal(d.smoothness, s.smoothness)
    n = mask[0].numel()
    assert bool((d.smoothness * n <= 2 * n).all())  # each element has at most 2 forward edges


@settings(max_examples=40, deadline=None)
@given(masks_2d, st.integers(min_value=1, max_value=2))
def test_cc_hit_rate_bounds_and_full_truth(mask, connectivity):
    rate = cc_hit_rate(mask, torch.ones_like(mask), connectivity=connectivity)
    nonempty = mask.flatten(1).sum(1) > 0
    assert torch.equal(rate, torch.where(nonempty, 100.0, 0.0).to(rate.dtype))
    none = cc_hit_rate(mask, torch.zeros_like(mask), connectivity=connectivity)
    assert torch.equal(none, torch.zeros_like(none))


def test_binarize_is_exact():
    assert binarize(torch.tensor([0.0, -0.0, 1e-30])).tolist() == [0.0, 0.0, 1.0]


# ---- CC hit rate ---------------------------------------------------------------


def test_cc_hit_rate_known_components_and_connectivity():
    m = torch.zeros(1, 1, 6, 6)
    m[0, 0, 0, 0] = 1
    m[0, 0, 1, 1] = 1  # diagonal neighbour of (0, 0)
    m[0, 0, 4:, 4:] = 1
    gt = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    gt[0, 0, 5, 5] = True
    assert cc_hit_rate(m, gt).item() == pytest.approx(50.0)  # 8-connectivity: 2 components
    assert cc_hit_rate(m, gt, connectivity=1).item() == pytest.approx(100 / 3)  # 3 components


def test_cc_hit_rate_empty_mask_scores_zero_and_channels_merge():
    m = torch.zeros(2, 3, 4, 4)
    m[1, 2, 0, 0] = 0.3
    gt = torch.zeros(2, 1, 4, 4)
    gt[:, 0, 0, 0] = 1
    assert cc_hit_rate(m, gt).tolist() == [0.0, 100.0]
    assert cc_hit_rate(m[:, 0], gt[:, 0], channel_dim=None).tolist() == [0.0, 0.0]


def test_cc_hit_rate_volume_and_tabular():
    m = torch.zeros(1, 1, 3, 3, 3)
    m[0, 0, 0, 0, 0] = 1
    m[0, 0, 2, 2, 2] = 1
    gt = torch.zeros_like(m)
    gt[0, 0, 2, 2, 2] = 1
    assert cc_hit_rate(m, gt).item() == pytest.approx(50.0)
    tab = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    gt_tab = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert cc_hit_rate(tab, gt_tab).item() == pytest.approx(100 / 3)


def test_cc_hit_rate_validation():
    with pytest.raises(ValueError):
        cc_hit_rate(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="connectivity"):
        cc_hit_rate(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), connectivity=3)
    with pytest.raises(TypeError):
        cc_hit_rate(np.zeros((1, 4)), torch.zeros(1, 4))  # type: ignore[arg-type]
