"""SegmentationScore (segmentation as a region classifier) and multi-label targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from captum_regadv import RegularizedAdversarial
from captum_regadv.recipes import SegmentationScore, pixel_log_odds

FAST = dict(steps=60, phase2_steps=20, sparsity_weight=1.0, tv_weight=1.0, lr=0.005)


class LocalMeanSegmenter(torch.nn.Module):
    """Two classes per pixel: z_0 = 0, z_1 = 10 (mean of the 3 x 3 neighbourhood - 0.5).

    A pixel's logits depend only on the pixels within one step of it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 9.0)

    def forward(self, x: Tensor) -> Tensor:
        z1 = 10.0 * (self.conv(x) - 0.5)
        return torch.cat([torch.zeros_like(z1), z1], dim=1)


def _two_blobs() -> tuple[Tensor, Tensor, Tensor]:
    """Two 16 x 16 images with bright 5 x 5 squares A (2:7) and B (9:14)."""
    g = torch.Generator().manual_seed(3)
    x = 0.1 + 0.05 * torch.rand(2, 1, 16, 16, generator=g)
    x[:, :, 2:7, 2:7] = 0.9
    x[:, :, 9:14, 9:14] = 0.9
    a = torch.zeros(16, 16, dtype=torch.bool)
    a[2:7, 2:7] = True
    b = torch.zeros(16, 16, dtype=torch.bool)
    b[9:14, 9:14] = True
    return x, a, b


def _dilate(region: Tensor) -> Tensor:
    """The pixels within one step (3 x 3 neighbourhood) of ``region``."""
    r = region.float().view(1, 1, *region.shape)
    return torch.nn.functional.max_pool2d(r, 3, stride=1, padding=1).view(region.shape).bool()


def test_pixel_log_odds_matches_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    z = 4 * torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    p = np.exp(z.numpy()) / np.exp(z.numpy()).sum(1, keepdims=True)
    np.testing.assert_allclose(pixel_log_odds(z).numpy(), np.log(p / (1 - p)), rtol=1e-9)
    assert torch.equal(pixel_log_odds(z, "sigmoid"), z)
    # exact where p rounds to 1 in float32
    z32 = torch.tensor([[[0.0], [40.0]]])
    assert pixel_log_odds(z32)[0, 1, 0].item() == 40.0


def test_segmentation_score_is_the_region_mean_log_odds() -> None:
    x, a, _ = _two_blobs()
    seg = LocalMeanSegmenter().eval()
    logits = seg(x)
    expected = logits[:, 1][:, a].mean(1)  # two classes: log-odds of class 1 = z_1 - z_0
    out = SegmentationScore(seg, a)(x)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out[:, 1], expected)
    torch.testing.assert_close(out[:, 0], -expected)
    # weights: a weighted mean
    w = a.float() * 2.0
    torch.testing.assert_close(SegmentationScore(seg, w)(x), out)


def test_segmentation_mask_lies_in_the_region_evidence() -> None:
    """Why is region A segmented as class 1? Only pixels within one step of A
    can change A's logits, so the mask must lie there, and never in B."""
    x, a, b = _two_blobs()
    seg = LocalMeanSegmenter().eval()
    before = [p.clone() for p in seg.parameters()]
    wrapped = SegmentationScore(seg, a)
    assert torch.sigmoid(wrapped(x)[:, 1]).min() > 0.85
    explainer = RegularizedAdversarial(wrapped)
    mask, j = explainer.attribute(
        x, target=1, score="sigmoid", bounds=(0, 1), return_perturbed=True, **FAST
    )
    evidence = _dilate(a)
    assert bool(mask[:, 0].sum((1, 2)).gt(0).all())
    assert not bool(mask[:, 0][:, ~evidence].any())
    assert not bool(mask[:, 0][:, b].any())
    assert bool((torch.sigmoid(wrapped(j)[:, 1]) < 0.5).all())
    assert all(torch.equal(p, q) for p, q in zip(before, seg.parameters()))


def test_per_example_regions_through_additional_forward_args() -> None:
    x, a, b = _two_blobs()
    wrapped = SegmentationScore(LocalMeanSegmenter().eval())
    regions = torch.stack([a, b])  # example 0: A, example 1: B
    mask = RegularizedAdversarial(wrapped).attribute(
        x, target=1, additional_forward_args=(regions,), score="sigmoid", bounds=(0, 1),
        **FAST,
    )
    for i, region in enumerate((a, b)):
        assert bool(mask[i, 0].any()) and not bool(mask[i, 0][~_dilate(region)].any())


class MultiLabel(torch.nn.Module):
    """Three independent labels on 8 x 8 images: label k's logit is
    10 (mean of quadrant k - 0.5), quadrants top-left, top-right, bottom-left."""

    QUADRANTS = ((slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)), (slice(4, 8), slice(0, 4)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([10.0 * (x[:, 0, r, c].mean((1, 2)) - 0.5) for r, c in self.QUADRANTS], 1)


@pytest.mark.parametrize("target", [[0, 1], [2, 2], torch.tensor([2, 1])])
def test_multi_label_targets_give_each_example_its_own_class_evidence(target) -> None:
    x = torch.full((2, 1, 8, 8), 0.1)
    x[0, 0, 0:4, 0:4] = 0.9  # example 0: labels 0 and 2
    x[0, 0, 4:8, 0:4] = 0.9
    x[1, 0, 0:4, 4:8] = 0.9  # example 1: labels 1 and 2
    x[1, 0, 4:8, 0:4] = 0.9
    model = MultiLabel().eval()
    assert (torch.sigmoid(model(x)) > 0.5).sum().item() == 4
    mask = RegularizedAdversarial(model).attribute(
        x, target=target, score="sigmoid", bounds=(0, 1), **FAST
    )
    for i, k in enumerate(torch.as_tensor(target).tolist()):
        inside = torch.zeros(8, 8, dtype=torch.bool)
        inside[MultiLabel.QUADRANTS[k]] = True
        assert bool(mask[i, 0][inside].any()), (i, k)
        assert not bool(mask[i, 0][~inside].any()), (i, k)


@pytest.mark.parametrize(
    "region, error, match",
    [
        (torch.zeros(16, 16, dtype=torch.bool), ValueError, "empty"),
        (-torch.ones(16, 16), ValueError, "non-negative"),
        (torch.ones(8, 8), ValueError, "does not match"),
        ([[1.0]], TypeError, "tensor"),
    ],
)
def test_bad_region(region, error, match) -> None:
    x, _, _ = _two_blobs()
    with pytest.raises(error, match=match):
        SegmentationScore(LocalMeanSegmenter(), region)(x) if isinstance(region, Tensor) and (
            region.dtype == torch.bool or bool((region >= 0).all())
        ) else SegmentationScore(LocalMeanSegmenter(), region)


def test_region_required_and_training_flag_follows_the_model() -> None:
    seg = LocalMeanSegmenter()
    wrapped = SegmentationScore(seg)
    with pytest.raises(ValueError, match="region is None"):
        wrapped(torch.rand(1, 1, 16, 16))
    assert wrapped.training
    seg.eval()
    assert not wrapped.training and not seg.training
    with pytest.raises(ValueError, match="pixel_score"):
        SegmentationScore(seg, pixel_score="relu")  # type: ignore[arg-type]


def test_a_per_example_region_in_the_constructor_names_the_fix_on_another_batch() -> None:
    """Per-example regions given once only fit a batch of their own size; on
    a subset (as explainers evaluate) the error says to pass them per call."""
    seg = LocalMeanSegmenter()
    region = torch.zeros(2, 8, 8, dtype=torch.bool)
    region[:, 2:5, 2:5] = True
    wrapped = SegmentationScore(seg, region)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert wrapped(x[:2]).shape == (2, 2)
    with pytest.raises(ValueError, match=r"additional_forward_args=\(region,\)"):
        wrapped(x[:1])
    torch.testing.assert_close(SegmentationScore(seg)(x[:1], region[:1]), wrapped(x[:2])[:1])
