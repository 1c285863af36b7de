"""Step sizes and epsilon count in the input's value range (captum_regadv._value_scale)."""

from __future__ import annotations

import pytest
import torch

from captum_regadv import RegularizedAdversarial, perturb_within_mask
from captum_regadv._value_scale import ValueScale

from conftest import RegionModel, two_pixel_model

FAST = dict(steps=60, phase2_steps=40, sparsity_weight=1.0, tv_weight=1.0)


def _scaled_case(image_case, factor: float, offset: float = 0.0):
    """The image case in other units: inputs ``factor * x + offset`` and a model
    that undoes it first, so the decision is the same function of the image."""
    model, x, truth = image_case

    class InUnits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.inner((t - offset) / factor)

    return InUnits().eval(), factor * x + offset, truth


@pytest.mark.parametrize(
    "low, high, unit",
    [
        (0.0, 1.0, 1.0),
        (0.0, 0.8, 1.0),
        (0.0, 0.6, 0.5),
        (0.0, 255.0, 256.0),
        (-1024.0, 3071.0, 4096.0),
        (-2.1, 2.6, 4.0),  # ImageNet-normalised
        (3.0, 3.0, 1.0),  # zero width: nothing can change anyway
    ],
)
def test_unit_is_the_bounds_width_rounded_to_a_power_of_two(low, high, unit):
    x = torch.full((2, 3), (low + high) / 2)
    bounds = ((torch.tensor([[low]]), torch.tensor([[high]])),)
    assert ValueScale.of(bounds, (x,)).units == (unit,)


def test_unit_is_the_median_of_per_example_widths_and_one_per_input():
    lo = torch.zeros(3, 1)
    hi = torch.tensor([[1.0], [250.0], [300.0]])
    image = torch.zeros(3, 4)
    table = torch.zeros(3, 2)
    units = ValueScale.of(((lo, hi), (torch.zeros(1, 1), torch.ones(1, 1))), (image, table))
    assert units.units == (256.0, 1.0)


def test_unit_stays_one_where_the_working_values_would_overflow():
    x = torch.full((1, 4), 1000.0, dtype=torch.float16)
    bounds = ((x - 0.0005, x + 0.0005),)  # unit 2**-10: 1000 / 2**-10 > float16's max
    assert ValueScale.of(bounds, (x,)).units == (1.0,)


def test_decode_is_exact_where_nothing_changed_and_stays_in_bounds():
    scale = ValueScale((256.0,))
    x = torch.tensor([[3.0, 100.5, 254.9]])
    lo, hi = torch.zeros(1, 1), torch.full((1, 1), 255.0)
    (z,) = scale.encode((x,))
    moved = z.clone()
    moved[0, 2] = 1.0  # 256 in caller units: above the upper bound 255
    (j,) = scale.decode((moved,), (z,), (x,), ((lo, hi),))
    assert j[0, 0] == x[0, 0] and j[0, 1] == x[0, 1]
    assert float(j[0, 2]) == 255.0


def test_power_of_two_rescaling_gives_the_same_explanation_bit_for_bit(image_case):
    model, x, _ = image_case
    ref_mask, ref_j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), return_perturbed=True, **FAST
    )
    scaled_model, xs, _ = _scaled_case(image_case, 256.0)
    explainer = RegularizedAdversarial(scaled_model)
    mask, j = explainer.attribute(
        xs, target=1, bounds=(0.0, 256.0), return_perturbed=True, **FAST
    )
    assert torch.equal(mask, ref_mask)
    assert torch.equal(j, 256.0 * ref_j)
    change = explainer.attribute(xs, target=1, bounds=(0.0, 256.0), attribution="change", **FAST)
    assert torch.equal(change, (j - xs).abs())  # the change is in the caller's units


@pytest.mark.parametrize("factor, offset", [(255.0, 0.0), (4000.0, -1000.0), (0.01, 0.0)])
def test_defaults_explain_inputs_in_any_units(image_case, factor, offset):
    """[0, 255] images, Hounsfield-like values, tiny values: the defaults find the
    evidence region and destroy the class (with absolute step sizes the first
    two left the class standing on every example)."""
    model, xs, truth = _scaled_case(image_case, factor, offset)
    bounds = (offset, factor + offset)
    with torch.no_grad():
        assert bool((torch.softmax(model(xs), 1)[:, 1] > 0.99).all())
    mask, j = RegularizedAdversarial(model).attribute(
        xs, target=1, bounds=bounds, return_perturbed=True
    )
    with torch.no_grad():
        assert bool((torch.softmax(model(j), 1)[:, 1] < 0.5).all())
    assert bool((mask.flatten(1).sum(1) > 0).all())
    assert not bool(mask[~truth].any())
    assert bool((j[mask == 0] == xs[mask == 0]).all())
    assert bool(((j >= bounds[0]) & (j <= bounds[1])).all())


def test_mask_rule_works_in_the_inputs_units(image_case):
    model, xs, truth = _scaled_case(image_case, 255.0)
    j = perturb_within_mask(model, xs, truth.float(), target=1, bounds=(0.0, 255.0), steps=30)
    with torch.no_grad():
        assert bool((torch.softmax(model(j), 1)[:, 1] < 0.01).all())
    assert bool((j[~truth] == xs[~truth]).all())


def test_preserve_mode_is_equivariant_too(image_case):
    model, x, _ = image_case
    ref = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), mode="preserve", **FAST
    )
    scaled_model, xs, _ = _scaled_case(image_case, 0.25)
    mask = RegularizedAdversarial(scaled_model).attribute(
        xs, target=1, bounds=(0.0, 0.25), mode="preserve", **FAST
    )
    assert torch.equal(mask, ref)


def test_tuple_inputs_get_a_unit_each():
    """An image in [0, 256] and a table in [0, 1]: the same explanation as both in [0, 1]."""
    from conftest import TupleRegionModel, region_weight

    w_image = region_weight((1, 8, 8), (slice(None), slice(2, 4), slice(2, 4)))
    w_table = torch.tensor([0.0, 1.0, 0.0])
    model = TupleRegionModel(w_image, w_table).eval()

    class ImageIn256(torch.nn.Module):
        def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
            return model(image / 256.0, table)

    g = torch.Generator().manual_seed(0)
    image = 0.2 * torch.rand(2, 1, 8, 8, generator=g)
    image[:, :, 2:4, 2:4] = 0.8
    table = torch.tensor([[0.1, 0.9, 0.2], [0.3, 0.7, 0.1]])
    ref_masks, ref_j = RegularizedAdversarial(model).attribute(
        (image, table), target=1, bounds=(0.0, 1.0), return_perturbed=True, **FAST
    )
    masks, j = RegularizedAdversarial(ImageIn256().eval()).attribute(
        (256.0 * image, table), target=1, bounds=[(0.0, 256.0), (0.0, 1.0)],
        return_perturbed=True, **FAST
    )
    assert torch.equal(masks[0], ref_masks[0]) and torch.equal(masks[1], ref_masks[1])
    assert torch.equal(j[0], 256.0 * ref_j[0]) and torch.equal(j[1], ref_j[1])
    assert bool(ref_masks[0].any())


def test_unit_stays_one_where_the_working_values_would_round():
    # float16: 1.1 / 65536 is subnormal and would come back as another value
    x = torch.tensor([[1.1, 30000.0]], dtype=torch.float16)
    bounds = ((torch.zeros(1, 1, dtype=torch.float16), torch.full((1, 1), 60000.0,
                                                                  dtype=torch.float16)),)
    assert ValueScale.of(bounds, (x,)).units == (1.0,)
    assert ValueScale.of(bounds, (x.float(),)).units == (65536.0,)


def test_frozen_elements_do_not_shrink_the_unit():
    """Bounds that fix 90% of the elements (low == high) leave the free ones the
    unit of their own width, not of the mean over all elements."""
    x = torch.full((2, 10), 100.0)
    low, high = x.clone(), x.clone()
    low[:, 0], high[:, 0] = 0.0, 255.0  # one free element per example
    assert ValueScale.of(((low, high),), (x,)).units == (256.0,)
    everything_frozen = ((x.clone(), x.clone()),)
    assert ValueScale.of(everything_frozen, (x,)).units == (1.0,)


def test_half_precision_is_optimised_in_float32_and_returned_in_half():
    """float16 used to give NaN losses (Adam's eps underflows) and an empty
    mask: now the mask is the two pixels, as in float32, and the results are
    float16, J exactly I outside the mask."""
    x = torch.full((1, 1, 8, 8), 0.2)
    x[..., 0, :2] = 0.9
    results = {}
    for dtype in (torch.float32, torch.float16):
        explainer = RegularizedAdversarial(two_pixel_model().to(dtype))
        mask, j = explainer.attribute(x.to(dtype), target=1, bounds=(0.0, 1.0),
                                      return_perturbed=True)
        assert mask.dtype == j.dtype == dtype
        assert not bool(torch.isnan(explainer.last_diagnostics.losses[0]["phase 1"]).any())
        assert bool((explainer.last_diagnostics.score_after < 0.5).all())
        assert torch.equal(j[mask == 0], x.to(dtype)[mask == 0])
        results[dtype] = mask
    expected = torch.zeros(1, 1, 8, 8)
    expected[..., 0, :2] = 1
    assert torch.equal(results[torch.float32], expected)
    assert torch.equal(results[torch.float16].float(), expected)
    assert ValueScale.of(((torch.zeros(1), torch.ones(1)),), (x.half(),)).model_dtypes == (
        torch.float16,
    )


class _MeanPatch(torch.nn.Module):
    """Class-1 logit 40 * mean(top-left 2 x 2) - 10: the patch must fall below 0.25."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 40 * x[:, 0, :2, :2].mean((1, 2)) - 10
        return torch.stack([torch.zeros_like(z), z], 1)


@pytest.mark.parametrize("bounds", [None, (0.2, 0.9), (0.2, 0.91), (0.19, 0.9), (0.0, 1.0)])
def test_a_bounds_width_that_halves_the_unit_still_destroys_the_class(bounds):
    """Width 0.70 rounds the unit to 1/2 (halved steps), 0.71 to 1: the patch
    (0.9, to be brought below 0.25) needs more than the 60 halved steps of
    phase 1 give. It used to stay at 0.94 with bounds=None or (0.2, 0.9);
    the longer steps of a surviving class now destroy it at every width."""
    x = torch.full((1, 1, 8, 8), 0.2)
    x[..., :2, :2] = 0.9
    explainer = RegularizedAdversarial(_MeanPatch())
    mask = explainer.attribute(x, target=1, bounds=bounds)
    expected = torch.zeros_like(x)
    expected[..., :2, :2] = 1
    assert torch.equal(mask, expected)
    assert float(explainer.last_diagnostics.score_after[0]) < 0.5
