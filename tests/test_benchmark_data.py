"""Tests of the benchmark data generators (lesions, shapes, shortcut)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
import torch
from scipy import ndimage

from captum_regadv.benchmark import (
    DATASET_NAMES,
    BenchmarkDataset,
    make_dataset,
    make_lesion_dataset,
    make_shapes_dataset,
    make_shortcut_dataset,
    roc_auc,
)
from captum_regadv.benchmark.datasets import derive_seed
from captum_regadv.benchmark.shortcut import CONFOUNDER_OFFSET, CONFOUNDER_SIZE

Generator = Callable[..., BenchmarkDataset]
GENERATORS: dict[str, Generator] = {
    "lesions": make_lesion_dataset,
    "shapes": make_shapes_dataset,
    "shortcut": make_shortcut_dataset,
}
DEFAULT_SIZES = {"lesions": 128, "shapes": 64, "shortcut": 64}


@pytest.fixture(scope="module")
def lesions() -> BenchmarkDataset:
    return make_lesion_dataset(60, size=128, seed=3)


@pytest.fixture(scope="module")
def shapes() -> BenchmarkDataset:
    return make_shapes_dataset(60, size=64, seed=3)


def _check_layout(ds: BenchmarkDataset, n: int, size: int) -> None:
    assert ds.images.shape == (n, 1, size, size)
    assert ds.images.dtype == torch.float32
    assert ds.masks.shape == (n, 1, size, size)
    assert ds.masks.dtype == torch.bool
    assert ds.labels.shape == (n,)
    assert ds.labels.dtype == torch.int64
    assert float(ds.images.min()) >= 0.0
    assert float(ds.images.max()) <= 1.0
    assert torch.isfinite(ds.images).all()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_layout_and_balanced_labels(name: str) -> None:
    ds = GENERATORS[name](10, size=DEFAULT_SIZES[name], seed=0)
    _check_layout(ds, 10, DEFAULT_SIZES[name])
    assert int(ds.labels.sum()) == 5
    assert ds.name == name
    assert len(ds) == 10


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_mask_non_empty_iff_positive(name: str) -> None:
    ds = GENERATORS[name](24, size=DEFAULT_SIZES[name], seed=1)
    has_mask = ds.masks.flatten(1).any(1)
    assert torch.equal(has_mask, ds.labels == 1)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_identical_other_seed_different(name: str) -> None:
    make = GENERATORS[name]
    size = 48
    a, b = make(6, size=size, seed=11), make(6, size=size, seed=11)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)
    c = make(6, size=size, seed=12)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_identical_whatever_the_thread_count(name: str) -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = GENERATORS[name](3, size=40, seed=5)
        torch.set_num_threads(1)
        b = GENERATORS[name](3, size=40, seed=5)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(a.images, b.images)
    assert torch.get_num_threads() == previous


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("size", [32, 33, 57, 100, 160])
def test_any_size_works(name: str, size: int) -> None:
    ds = GENERATORS[name](4, size=size, seed=size)
    _check_layout(ds, 4, size)
    positives = ds.labels == 1
    assert bool(ds.masks[positives].flatten(1).any(1).all())


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_rejects_bad_arguments(name: str) -> None:
    make = GENERATORS[name]
    with pytest.raises(ValueError, match="size"):
        make(2, size=31)
    with pytest.raises(ValueError, match="positive_fraction"):
        make(2, size=32, positive_fraction=1.5)
    with pytest.raises(ValueError, match="n must be"):
        make(-1, size=32)


@pytest.mark.parametrize("fraction, expected", [(0.0, 0), (1.0, 7), (0.3, 2)])
def test_positive_fraction(fraction: float, expected: int) -> None:
    ds = make_lesion_dataset(7, size=32, positive_fraction=fraction, seed=0)
    assert int(ds.labels.sum()) == expected


def test_empty_dataset() -> None:
    ds = make_shapes_dataset(0, size=32)
    assert len(ds) == 0
    assert ds.images.shape == (0, 1, 32, 32)


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    grown: np.ndarray = ndimage.binary_dilation(mask, iterations=width)
    core: np.ndarray = ndimage.binary_dilation(mask, iterations=1)
    ring: np.ndarray = grown & ~core
    return ring


@pytest.mark.parametrize("fixture", ["lesions", "shapes"])
def test_masked_pixels_are_brighter_than_their_surroundings(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    ds: BenchmarkDataset = request.getfixturevalue(fixture)
    contrasts = []
    for image, mask in zip(ds.images[ds.labels == 1], ds.masks[ds.labels == 1]):
        img, m = image[0].numpy(), mask[0].numpy()
        # Each connected component against a thin ring around it.
        components, count = ndimage.label(m, structure=np.ones((3, 3)))
        for index in range(1, count + 1):
            component = components == index
            contrasts.append(img[component].mean() - img[_ring(component, 2)].mean())
    contrasts_np = np.array(contrasts)
    assert len(contrasts_np) >= 30
    assert np.mean(contrasts_np > 0.05) >= 0.97
    assert np.median(contrasts_np) > 0.15


def test_lesion_sizes_span_micro_calcifications_to_masses(
    lesions: BenchmarkDataset,
) -> None:
    areas = []
    for mask in lesions.masks[lesions.labels == 1]:
        components, count = ndimage.label(mask[0].numpy(), structure=np.ones((3, 3)))
        areas += list(np.bincount(components.ravel())[1:])
    areas_np = np.array(areas)
    assert areas_np.min() <= 2  # single-pixel calcifications
    assert np.sum(areas_np <= 4) >= 20  # many tiny dots
    assert areas_np.max() >= math.pi * (0.06 * 128) ** 2  # mass-like
    # 1-3 lesions per positive: at most 3 masses, calcifications clustered.
    for mask in lesions.masks[lesions.labels == 1]:
        coarse = ndimage.binary_dilation(mask[0].numpy(), iterations=4)
        assert 1 <= ndimage.label(coarse)[1] <= 3 * 8


def test_class_is_not_global_brightness(lesions: BenchmarkDataset) -> None:
    for statistic in (lesions.images.mean((1, 2, 3)), lesions.images.amax((1, 2, 3))):
        auc = roc_auc(statistic, lesions.labels)
        assert 0.25 < auc < 0.75
    # Lesions are local: a small part of the image.
    assert float(lesions.masks[lesions.labels == 1].float().mean()) < 0.05


def test_negatives_carry_lesion_like_distractors(lesions: BenchmarkDataset) -> None:
    # Bright, small structures on negative images too: pixels well above
    # their local median (vessels, rings), in every negative image.
    for image in lesions.images[lesions.labels == 0]:
        img = image[0].numpy()
        local = ndimage.median_filter(img, size=9)
        assert np.sum(img - local > 0.1) >= 20


def test_shapes_target_is_one_object(shapes: BenchmarkDataset) -> None:
    for mask in shapes.masks[shapes.labels == 1]:
        components = ndimage.label(mask[0].numpy(), structure=np.ones((3, 3)))[1]
        assert components == 1
        area = int(mask.sum())
        assert 20 <= area <= 0.08 * 64 * 64


def test_shortcut_mark_follows_label_when_confounded() -> None:
    ds = make_shortcut_dataset(20, size=48, seed=2)
    low, high = CONFOUNDER_OFFSET, CONFOUNDER_OFFSET + CONFOUNDER_SIZE
    corner = ds.images[:, 0, low:high, low:high]
    marked = (corner == 1.0).flatten(1).all(1)
    assert torch.equal(marked, ds.labels == 1)
    assert torch.equal(ds.masks.flatten(1).sum(1), 9 * ds.labels)
    assert bool(ds.masks[:, :, low:high, low:high][ds.labels == 1].all())


def test_shortcut_deconfounded_differs_only_in_the_corner() -> None:
    confounded = make_shortcut_dataset(200, size=32, seed=4)
    free = make_shortcut_dataset(200, size=32, seed=4, confounded=False)
    assert free.name == "shortcut-deconfounded"
    assert torch.equal(confounded.labels, free.labels)
    outside = torch.ones(32, 32, dtype=torch.bool)
    high = CONFOUNDER_OFFSET + CONFOUNDER_SIZE
    outside[CONFOUNDER_OFFSET:high, CONFOUNDER_OFFSET:high] = False
    assert torch.equal(confounded.images[..., outside], free.images[..., outside])
    marked = free.masks.flatten(1).any(1)
    assert 0.35 < float(marked.float().mean()) < 0.65
    agreement = float((marked == (free.labels == 1)).float().mean())
    assert 0.35 < agreement < 0.65


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_make_dataset_dispatches(name: str) -> None:
    ds = make_dataset(name, 2, seed=0)
    assert ds.name == name
    assert ds.size == DEFAULT_SIZES[name]
    direct = GENERATORS[name](2, size=DEFAULT_SIZES[name], seed=0)
    assert torch.equal(ds.images, direct.images)
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("mnist", 2)


def test_dataset_validates_and_subsets() -> None:
    images = torch.rand(3, 1, 32, 32)
    labels = torch.tensor([0, 1, 1])
    masks = torch.zeros(3, 1, 32, 32, dtype=torch.bool)
    ds = BenchmarkDataset(images, labels, masks, "toy")
    sub = ds.subset(torch.tensor([2, 0]))
    assert torch.equal(sub.images, images[[2, 0]])
    assert sub.labels.tolist() == [1, 0]
    assert "n=3" in repr(ds)
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        BenchmarkDataset(images[:, 0], labels, masks, "toy")
    with pytest.raises(ValueError, match="labels"):
        BenchmarkDataset(images, labels.float(), masks, "toy")
    with pytest.raises(ValueError, match="masks"):
        BenchmarkDataset(images, labels, masks.float(), "toy")
    with pytest.raises(ValueError, match="0 or 1"):
        BenchmarkDataset(images, labels + 1, masks, "toy")


def test_derive_seed_separates_streams() -> None:
    seeds = {derive_seed(s, tag) for s in range(5) for tag in ("train", "val")}
    assert len(seeds) == 10
    assert all(0 <= s < 2**63 for s in seeds)
