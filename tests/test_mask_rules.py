"""Mask rules: thresholding, reference fill, phase-2 rule and the set-wide threshold scan."""

from __future__ import annotations

import functools

import pytest
import torch

from captum_regadv import (
    ape_d,
    fill_with_reference,
    perturb_within_mask,
    saliency_to_mask,
    scan_threshold,
)
from conftest import region_weight


def test_saliency_to_mask_normalises_per_example():
    sal = torch.tensor([[1.0, 2.0, 4.0], [10.0, -40.0, 5.0]])
    assert saliency_to_mask(sal, 0.4).tolist() == [[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]]
    assert saliency_to_mask(sal, 0.4, absolute=False).tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert saliency_to_mask(sal, 3.0, normalize=False).tolist() == [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    zero = saliency_to_mask(torch.zeros(1, 3), 0.0)
    assert zero.tolist() == [[0.0, 0.0, 0.0]]


def test_fill_with_reference_tuple_and_exactness():
    a, b = torch.rand(2, 1, 3, 3), torch.rand(2, 4)
    ma, mb = torch.zeros_like(a), torch.zeros_like(b)
    ma[0, 0, 1, 1] = 1
    mb[1, 0] = 1
    ja, jb = fill_with_reference((a, b), (ma, mb), (0.0, torch.full((4,), -1.0)))
    assert ja[0, 0, 1, 1] == 0.0 and jb[1, 0] == -1.0
    assert torch.equal(ja[ma == 0], a[ma == 0]) and torch.equal(jb[mb == 0], b[mb == 0])
    with pytest.raises(ValueError, match="masks"):
        fill_with_reference(a, ma[:, :, :2], 0.0)


def test_perturb_within_mask_only_changes_the_mask_and_destroys():
    class M(torch.nn.Module):
        def forward(self, x):
            z = 10 * ((x * region_weight((1, 6, 6), (slice(None), slice(1, 3), slice(1, 3)))).flatten(1).sum(1) - 0.5)
            return torch.stack([torch.zeros_like(z), z], 1)

    x = torch.full((2, 1, 6, 6), 0.1)
    x[:, :, 1:3, 1:3] = 0.9
    mask = torch.zeros_like(x)
    mask[0, :, 1:3, 1:3] = 1  # example 1 gets an empty mask
    j = perturb_within_mask(M(), x, mask, target=1, bounds=(0.0, 1.0))
    assert torch.equal(j[mask == 0], x[mask == 0])
    p = torch.softmax(M()(j), 1)[:, 1]
    assert p[0] < 0.01 and p[1] > 0.99


def test_scan_threshold_picks_the_lowest_mean_ape():
    torch.manual_seed(0)
    w = region_weight((1, 8, 8), (slice(None), slice(2, 4), slice(2, 4)))

    def model(x):
        z = 8 * ((x * w).flatten(1).sum(1) - 1.0)
        return torch.stack([torch.zeros_like(z), z], 1)

    x = 0.1 * torch.rand(3, 1, 8, 8)
    x[:, :, 2:4, 2:4] = 0.9
    saliency = x * w + 0.01 * torch.rand_like(x)  # a good map: peaks on the region
    rule = functools.partial(fill_with_reference, reference=0.0)
    candidates = [0.0, 0.05, 0.5, 0.99]
    scan = scan_threshold(model, x, saliency, target=1, perturb=rule, thresholds=candidates)
    manual = []
    for t in candidates:
        j = rule(x, saliency_to_mask(saliency, t))
        manual.append(float(ape_d(model, x, j, target=1).mean()))
    assert scan.mean_ape.tolist() == pytest.approx(manual)
    assert scan.threshold == candidates[min(range(4), key=manual.__getitem__)]
    assert scan.threshold == 0.05  # ties keep the first (lowest) threshold
    assert torch.equal(scan.masks.bool(), (w > 0).expand_as(x))
    assert scan.masks.shape == x.shape and scan.ape.shape == (3,)
    assert float(scan.ape.mean()) == pytest.approx(min(manual))


def test_default_thresholds_are_used():
    model = torch.nn.Linear(5, 2)
    x = torch.rand(4, 5)
    scan = scan_threshold(
        model, x, torch.rand(4, 5), target=0,
        perturb=functools.partial(fill_with_reference, reference=0.0),
    )
    assert scan.thresholds.numel() > 3
    assert scan.mean_ape.shape == scan.thresholds.shape


def test_phase2_log_odds_objective_does_not_stall_as_the_probability_vanishes():
    # logit 10 * (sum of the 2x2 region) - 20: 16 at the input, -20 with the
    # region at 0. The gradient of -log(1 - p) is p times that of the log-odds,
    # so plain SGD on it crawls once p is small (p = 7e-3 after 40 steps); the
    # log-odds itself keeps its gradient and reaches the bound.
    class M(torch.nn.Module):
        def forward(self, x):
            region = region_weight((1, 4, 4), (slice(None), slice(1, 3), slice(1, 3)))
            z = 10 * (x * region).flatten(1).sum(1) - 20
            return torch.stack([torch.zeros_like(z), z], 1)

    x = torch.full((1, 1, 4, 4), 0.1)
    x[:, :, 1:3, 1:3] = 0.9
    mask = (x > 0.5).float()
    kw = dict(target=1, bounds=(0.0, 1.0), optimizer=torch.optim.SGD, lr=0.01, steps=40)
    j = perturb_within_mask(M(), x, mask, **kw)
    assert torch.equal(j[mask == 1], torch.zeros(4))
    assert float(torch.softmax(M()(j), 1)[0, 1]) < 1e-8
    # the probability itself (objective="score") never starts: its gradient p(1-p) is ~0 at p ~ 1
    j_score = perturb_within_mask(M(), x, mask, objective="score", **kw)
    assert float(torch.softmax(M()(j_score), 1)[0, 1]) > 1e-3


def test_perturb_within_mask_defaults_to_short_memory_adam(adam_spy):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    perturb_within_mask(model, x, torch.ones_like(x), target=0, steps=2)
    assert adam_spy == [(0.05, (0.9, 0.95))]
