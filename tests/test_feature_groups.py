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
