"""The multiscale attribution: the change smoothed at every scale, ranking every element."""

from __future__ import annotations

import torch

from captum_regadv import RegularizedAdversarial
from captum_regadv._multiscale import multiscale_change, scales_for
from captum_regadv.perturbations import gaussian_blur


def test_scales_follow_the_smallest_spatial_side() -> None:
    assert scales_for((64, 128)) == (1.0, 2.0, 4.0, 8.0)
    assert scales_for((16, 16, 16)) == (1.0, 2.0)
    assert scales_for((3,)) == (1.0,)


def test_matches_the_sum_of_normalised_blurs() -> None:
    g = torch.Generator().manual_seed(0)
    change = torch.rand(2, 1, 32, 32, generator=g) * (torch.rand(2, 1, 32, 32, generator=g) > 0.9)
    expected = change / change.amax((1, 2, 3), keepdim=True)
    for sigma in (1.0, 2.0, 4.0):
        blurred = gaussian_blur(change, sigma, (2, 3))
        expected = expected + blurred / blurred.amax((1, 2, 3), keepdim=True)
    assert torch.allclose(multiscale_change(change, (2, 3)), expected)


def test_decreases_with_the_distance_from_a_single_change() -> None:
    change = torch.zeros(1, 1, 1, 64)
    change[..., 20] = 1.0
    row = multiscale_change(change, (3,))[0, 0, 0]
    # scales 1, 2, 4, 8: the blurs reach 3 x 8 = 24 elements from the change
    assert bool((row[20:45].diff() < 0).all()) and bool((row[:21].diff() > 0).all())
    assert bool((row[:45] > 0).all()) and bool((row[45:] == 0).all())


def test_without_spatial_dims_it_is_the_change() -> None:
    change = torch.tensor([[0.0, 0.3, 0.1]])
    assert torch.equal(multiscale_change(change, ()), change)


def test_attribute_returns_it_shaped_like_the_input(image_case) -> None:
    model, x, truth = image_case
    explainer = RegularizedAdversarial(model)
    heat, j = explainer.attribute(
        x, target=1, bounds=(0, 1), attribution="multiscale", return_perturbed=True
    )
    assert heat.shape == x.shape and heat.dtype == x.dtype
    assert torch.allclose(heat, multiscale_change((j - x).abs(), (2, 3)))
    near = torch.nn.functional.max_pool2d(truth.float(), 7, stride=1, padding=3) > 0
    assert bool((heat >= 0).all()) and bool((heat[near] > 0).all())
    peak = heat.flatten(1).argmax(1)
    assert bool(truth.flatten(1).gather(1, peak[:, None]).all())
