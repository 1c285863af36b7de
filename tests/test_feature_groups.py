"""Grouped masks (Captum's ``feature_mask``): one decision per group."""

from __future__ import annotations

import pytest
import torch

from captum_regadv import RegularizedAdversarial

from conftest import RegionModel, region_weight

FAST = dict(steps=60, phase2_steps=20, sparsity_weight=1.0, tv_weight=1.0, lr=0.005)


def _rgb_case() -> tuple[RegionModel, torch.Tensor, torch.Tensor]:
    """3 x 12 x 12 images; class-1 evidence: all channels of pixels 4:7 x 4:7,
    weighted unequally across channels so an element-wise mask would differ
    per channel."""
    g = torch.Generator().manual_seed(1)
    weight = torch.zeros(3, 12, 12)
    weight[:, 4:7, 4:7] = torch.tensor([0.2, 0.3, 0.5]).view(3, 1, 1)
    model = RegionModel(weight, scale=12.0, bias=2.0).eval()
    x = 0.3 * torch.rand(2, 3, 12, 12, generator=g)
    x[:, :, 4:7, 4:7] = 0.7 + 0.2 * torch.rand(2, 3, 3, 3, generator=g)
    truth = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    truth[:, :, 4:7, 4:7] = True
    return model, x, truth


def test_rgb_default_gives_one_mask_per_pixel() -> None:
    model, x, truth = _rgb_case()
    mask = RegularizedAdversarial(model).attribute(x, target=1, bounds=(0, 1), **FAST)
    assert mask.shape == x.shape
    assert torch.equal(mask, mask[:, :1].expand_as(mask))  # constant over channels
    pixel = mask[:, :1].bool()
    assert bool(pixel.any(dim=(1, 2, 3)).all()) and not bool(pixel[~truth].any())


def test_custom_groups_are_constant_within_each_group() -> None:
    """Superpixel-like ids: 2 x 2 blocks. The evidence (4:8 x 4:8) is made of
    whole blocks, so the mask is a union of blocks inside it."""
    g = torch.Generator().manual_seed(2)
    model = RegionModel(region_weight((1, 16, 16), (slice(None), slice(4, 8), slice(4, 8))))
    x = 0.3 * torch.rand(2, 1, 16, 16, generator=g)
    x[:, :, 4:8, 4:8] = 0.7
    blocks = torch.arange(64).view(8, 8).repeat_interleave(2, 0).repeat_interleave(2, 1)
    mask = RegularizedAdversarial(model.eval()).attribute(
        x, target=1, feature_mask=blocks.view(1, 1, 16, 16), bounds=(0, 1), **FAST
    )
    per_block = mask.view(2, 8, 2, 8, 2)
    assert torch.equal(per_block, per_block[:, :, :1, :, :1].expand_as(per_block))
    assert float(mask.sum()) > 0 and not bool(mask[:, :, :4].any() or mask[:, :, 8:].any())


def test_tabular_groups_share_one_decision() -> None:
    weight = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    model = RegionModel(weight, scale=10.0, bias=1.0).eval()
    x = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.3, 0.1]])
    ids = torch.tensor([0, 0, 1, 1, 2, 2])
    mask = RegularizedAdversarial(model).attribute(
        x, target=1, feature_mask=ids, bounds=(0, 1), tv_dims=(), **FAST
    )
    assert mask.tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    "feature_mask, error, match",
    [
        (torch.zeros(1, 1, 16, 16), TypeError, "integer"),
        (torch.zeros(1, 1, 5, 16, dtype=torch.long), ValueError, "broadcast"),
        (-torch.ones(1, 1, 16, 16, dtype=torch.long), ValueError, "non-negative"),
        ((torch.zeros(1, 16, 16, dtype=torch.long),) * 2, ValueError, "input tensors"),
    ],
)
def test_bad_feature_mask(feature_mask, error, match, image_case) -> None:
    model, x, _ = image_case
    with pytest.raises(error, match=match):
        RegularizedAdversarial(model).attribute(x, target=1, feature_mask=feature_mask)


def test_rgb_opt_out_gives_element_wise_masks() -> None:
    """Only the red channel of pixels 4:7 x 4:7 carries evidence. By default
    the mask takes all three channels of those pixels (one decision per
    pixel); with one id per element (the opt-out) it takes only red ones."""
    g = torch.Generator().manual_seed(4)
    weight = torch.zeros(3, 12, 12)
    weight[0, 4:7, 4:7] = 1.0
    model = RegionModel(weight, scale=12.0, bias=3.0).eval()
    x = 0.3 * torch.rand(2, 3, 12, 12, generator=g)
    x[:, 0, 4:7, 4:7] = 0.8
    grouped = RegularizedAdversarial(model).attribute(x, target=1, bounds=(0, 1), **FAST)
    assert torch.equal(grouped, grouped[:, :1].expand_as(grouped))
    assert bool(grouped[:, 1:].any())  # green and blue come with their pixel
    elementwise = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), feature_mask=torch.arange(3 * 12 * 12).view(1, 3, 12, 12),
        **FAST,
    )
    assert bool(elementwise[:, 0].flatten(1).any(1).all())
    assert not bool(elementwise[:, 1:].any())
    assert not bool(elementwise[:, 0][:, :4].any() or elementwise[:, 0][:, 7:].any())


def test_superpixels_from_slic_are_whole_in_the_mask() -> None:
    segmentation = pytest.importorskip("skimage.segmentation")
    g = torch.Generator().manual_seed(5)
    weight = torch.zeros(3, 24, 24)
    weight[:, 6:12, 6:12] = 1.0 / 3.0
    model = RegionModel(weight, scale=4.0, bias=10.0).eval()
    x = 0.1 + 0.05 * torch.rand(1, 3, 24, 24, generator=g)
    x[:, :, 6:12, 6:12] = torch.tensor([0.9, 0.5, 0.2]).view(1, 3, 1, 1)  # an orange square
    x[:, :, 15:21, 15:21] = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)  # a blue one
    labels = segmentation.slic(
        x[0].permute(1, 2, 0).numpy(), n_segments=16, compactness=10.0, start_label=0
    )
    ids = torch.from_numpy(labels).long()
    mask = RegularizedAdversarial(model).attribute(
        x, target=1, feature_mask=ids.view(1, 1, 24, 24), bounds=(0, 1), **FAST
    )
    pixel = mask[0, 0].bool()
    assert pixel.any()
    assert torch.equal(mask, mask[:, :1].expand_as(mask))  # ids broadcast over channels
    for s in ids.unique():
        inside = pixel[ids == s]
        assert bool(inside.all()) or not bool(inside.any())  # a superpixel is in or out
    touched = ids[pixel].unique()
    evidence = torch.zeros(24, 24, dtype=torch.bool)
    evidence[6:12, 6:12] = True
    assert all(bool(evidence[ids == s].any()) for s in touched)  # only the square's superpixels


def test_tuple_inputs_one_feature_mask_per_input() -> None:
    """An image (evidence: 4:8 x 4:8, 2 x 2 blocks) and a table (evidence:
    features 0 and 1, grouped). Ids are shared across the inputs as in
    Captum: the group of id 200 spans table feature 4 and image block 0."""
    from conftest import TupleRegionModel

    g = torch.Generator().manual_seed(6)
    w_image = region_weight((1, 16, 16), (slice(None), slice(4, 8), slice(4, 8))) / 16.0
    w_table = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0])
    model = TupleRegionModel(w_image, w_table).eval()
    image = 0.2 * torch.rand(2, 1, 16, 16, generator=g)
    image[:, :, 4:8, 4:8] = 0.8
    table = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.3], [0.9, 0.9, 0.3, 0.2, 0.1]])
    blocks = torch.arange(64).view(8, 8).repeat_interleave(2, 0).repeat_interleave(2, 1)
    table_ids = torch.tensor([100, 100, 101, 102, 200])
    blocks = blocks.masked_fill(blocks == 0, 200)
    mask_image, mask_table = RegularizedAdversarial(model).attribute(
        (image, table), target=1, feature_mask=(blocks.view(1, 1, 16, 16), table_ids),
        bounds=(0, 1), tv_dims=((2, 3), ()), **FAST,
    )
    per_block = mask_image.view(2, 8, 2, 8, 2)
    assert torch.equal(per_block, per_block[:, :, :1, :, :1].expand_as(per_block))
    assert torch.equal(mask_table[:, 0], mask_table[:, 1])  # one group
    assert torch.equal(mask_table[:, 4], mask_image[:, 0, 0, 0])  # id 200 spans both inputs
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[4:8, 4:8] = False
    assert not bool(mask_image[:, 0][:, outside].any())
    assert not bool(mask_table[:, 2:].any())
    assert bool((mask_image.flatten(1).sum(1) + mask_table.sum(1)).gt(0).all())


def test_change_attribution_is_the_group_mean_change() -> None:
    model, x, _ = _rgb_case()
    change, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0, 1), attribution="change", return_perturbed=True, **FAST
    )
    assert torch.equal(change, change[:, :1].expand_as(change))
    torch.testing.assert_close(change[:, 0], (j - x).abs().mean(1))


@pytest.mark.parametrize(
    "feature_mask, error, match",
    [
        (torch.zeros(1, 1, 16, 16, dtype=torch.bool), TypeError, "integer"),
        (torch.zeros(1, 1, 1, 16, 16, dtype=torch.long), ValueError, "more dimensions"),
        (torch.zeros(2, 1, 16, 16, dtype=torch.long), ValueError, "first dimension|broadcast"),
        ([torch.zeros(16, 16)], TypeError, "integer"),
        ("ids", TypeError, "tensor"),
    ],
)
def test_more_bad_feature_masks(feature_mask, error, match, image_case) -> None:
    model, x, _ = image_case
    with pytest.raises(error, match=match):
        RegularizedAdversarial(model).attribute(x, target=1, feature_mask=feature_mask)


def test_meaningful_perturbation_shares_its_mask_across_channels() -> None:
    """MP has no ``feature_mask``; its mask is one value per pixel
    (``per_channel=False``, the counterpart of the RGB default)."""
    from captum_regadv import MeaningfulPerturbation

    model, x, _ = _rgb_case()
    saliency = MeaningfulPerturbation(model).attribute(x, target=1, steps=20)
    assert torch.equal(saliency, saliency[:, :1].expand_as(saliency))


def test_per_example_ids_with_the_weight_search(image_case) -> None:
    model, x, _ = image_case
    blocks = torch.arange(64).view(8, 8).repeat_interleave(2, 0).repeat_interleave(2, 1)
    ids = torch.stack([blocks, blocks.t(), blocks]).view(3, 1, 16, 16)  # one map per example
    explainer = RegularizedAdversarial(model)
    # example 0 is explained at the first attempt; examples 1 and 2 cannot
    # lower their evidence (their lower bound is the input), so the search
    # re-runs them alone
    low = torch.zeros_like(x)
    low[1:] = x[1:]
    mask = explainer.attribute(
        x, target=1, feature_mask=ids, bounds=(low, torch.ones_like(x)), search_steps=1, **FAST
    )
    d = explainer.last_diagnostics
    assert d is not None and d.attempts.tolist() == [1, 2, 2]
    assert bool(mask[0].any()) and not bool(mask[1:].any())
    per_block = mask.view(3, 8, 2, 8, 2)
    assert torch.equal(per_block, per_block[:, :, :1, :, :1].expand_as(per_block))


def test_meaningful_perturbation_feature_mask_one_value_per_group() -> None:
    """MP with 2 x 2 blocks: the saliency is constant within each block, and
    the deleted blocks are those of the evidence (4:8 x 4:8)."""
    from captum_regadv import MeaningfulPerturbation

    g = torch.Generator().manual_seed(7)
    model = RegionModel(region_weight((1, 16, 16), (slice(None), slice(4, 8), slice(4, 8))))
    x = 0.3 * torch.rand(2, 1, 16, 16, generator=g)
    x[:, :, 4:8, 4:8] = 0.7
    blocks = torch.arange(64).view(8, 8).repeat_interleave(2, 0).repeat_interleave(2, 1)
    saliency, j = MeaningfulPerturbation(model.eval()).attribute(
        x, target=1, feature_mask=blocks.view(1, 1, 16, 16), reference="constant", constant=0.0,
        l1_weight=0.01, tv_weight=0.0, steps=150, objective="log_odds", return_perturbed=True,
    )  # no TV: blocks outside the evidence have no reason to be deleted at all
    per_block = saliency.view(2, 8, 2, 8, 2)
    assert torch.equal(per_block, per_block[:, :, :1, :, :1].expand_as(per_block))
    inside = saliency[:, :, 4:8, 4:8]
    outside = saliency.clone()
    outside[:, :, 4:8, 4:8] = 0
    assert float(inside.min()) > 0.5 and float(outside.max()) == 0.0
    # J is the cross-fade with the group's value
    torch.testing.assert_close(j, x * (1 - saliency))


def test_meaningful_perturbation_feature_mask_rgb_and_errors() -> None:
    from captum_regadv import MeaningfulPerturbation

    model, x, _ = _rgb_case()
    ids = torch.arange(3 * 12 * 12).view(1, 3, 12, 12)  # one group per element
    saliency = MeaningfulPerturbation(model).attribute(
        x, target=1, feature_mask=ids, steps=20, l1_weight=0.01, tv_weight=0.2
    )
    assert saliency.shape == x.shape
    for bad in (dict(mask_scale=2), dict(per_channel=True)):
        with pytest.raises(ValueError, match="feature_mask cannot be combined"):
            MeaningfulPerturbation(model).attribute(x, target=1, feature_mask=ids, steps=2, **bad)
    with pytest.raises(TypeError, match="integer"):
        MeaningfulPerturbation(model).attribute(x, target=1, feature_mask=ids.float(), steps=2)


def test_meaningful_perturbation_per_example_ids_follow_the_batch_split() -> None:
    """Per-example ids (first dimension N) go with their examples when the
    batch is split (internal_batch_size)."""
    from captum_regadv import MeaningfulPerturbation

    g = torch.Generator().manual_seed(8)
    model = RegionModel(region_weight((1, 8, 8), (slice(None), slice(2, 4), slice(2, 4)))).eval()
    x = 0.2 * torch.rand(3, 1, 8, 8, generator=g)
    x[:, :, 2:4, 2:4] = 0.8
    rows = torch.arange(16).view(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)
    ids = torch.stack([rows, rows.t(), torch.arange(64).view(8, 8)]).view(3, 1, 8, 8)
    options = dict(target=1, feature_mask=ids, steps=30, l1_weight=0.01, tv_weight=0.2)
    whole = MeaningfulPerturbation(model).attribute(x, **options)
    split = MeaningfulPerturbation(model).attribute(x, internal_batch_size=1, **options)
    torch.testing.assert_close(whole, split, rtol=1e-5, atol=1e-6)
    for i in range(3):
        for group in ids[i].unique():
            values = whole[i][ids[i] == group]
            assert torch.equal(values, values[:1].expand_as(values))
