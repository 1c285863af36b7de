"""The 3-D benchmark domain, its MONAI network and the side-by-side with MONAI's explainers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from torch import nn

from captum_regadv import cc_hit_rate
from captum_regadv.benchmark.volumes import VolumeDataset, draw_volume, make_volume_dataset
from captum_regadv.volume_figures import orthogonal_slices_figure, slice_centre

# --------------------------------------------------------------------- generator


def test_generator_is_deterministic_and_seeded():
    a = make_volume_dataset(4, size=16, seed=3)
    b = make_volume_dataset(4, size=16, seed=3)
    c = make_volume_dataset(4, size=16, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (4, 1, 16, 16, 16) and a.images.dtype == torch.float32
    assert int(a.labels.sum()) == 2


def test_ground_truth_is_exactly_the_changed_voxels():
    generator = torch.Generator().manual_seed(0)
    sizes = []
    for _ in range(12):
        volume, mask, background = draw_volume(32, True, generator)
        assert mask.any()
        assert torch.equal(volume != background, mask)  # changed exactly on the lesions
        assert bool((volume[mask] - background[mask] >= 0.2 * (1 - background[mask]) - 1e-6).all())
        assert 0.0 <= float(volume.min()) and float(volume.max()) <= 1.0
        labels, count = ndimage.label(mask.numpy(), structure=np.ones((3, 3, 3)))
        sizes += np.bincount(labels.ravel())[1:].tolist()
        assert 1 <= count <= 4
    assert min(sizes) <= 10 and 100 <= max(sizes) <= 400  # a few to a few hundred voxels
    volume, mask, background = draw_volume(32, False, generator)
    assert not mask.any() and torch.equal(volume, background)


def test_volume_dataset_checks_its_shapes():
    with pytest.raises(ValueError, match="N x 1 x D x H x W"):
        VolumeDataset(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]),
                      torch.zeros(2, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks"):
        VolumeDataset(torch.zeros(2, 1, 8, 8, 8), torch.tensor([0, 1]),
                      torch.zeros(2, 1, 8, 8, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="size"):
        make_volume_dataset(2, size=8)


# ------------------------------------------------------- CC hit rate, 26-connectivity


def _reference_hit_rate(mask: np.ndarray, truth: np.ndarray, structure: np.ndarray) -> float:
    labels, count = ndimage.label(mask, structure=structure)
    if count == 0:
        return 0.0
    hit = len(set(np.unique(labels[truth & (labels > 0)]).tolist()))
    return 100.0 * hit / count


def test_cc_hit_rate_26_against_6_connectivity_by_hand():
    m = torch.zeros(1, 1, 4, 4, 4)
    m[0, 0, 0, 0, 0] = m[0, 0, 1, 1, 1] = 1  # corner neighbours: one 26-component
    m[0, 0, 3, 3, 3] = 1
    gt = torch.zeros_like(m, dtype=torch.bool)
    gt[0, 0, 0, 0, 0] = True
    assert cc_hit_rate(m, gt, connectivity=3).item() == pytest.approx(50.0)
    assert cc_hit_rate(m, gt).item() == pytest.approx(50.0)  # the default in 3-D is 26
    assert cc_hit_rate(m, gt, connectivity=1).item() == pytest.approx(100 / 3)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 2, 3]))
def test_cc_hit_rate_3d_matches_scipy_reference(seed, connectivity):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(2, 1, 6, 5, 7, generator=g) > 0.8
    truth = torch.rand(2, 1, 6, 5, 7, generator=g) > 0.85
    structure = ndimage.generate_binary_structure(3, connectivity)
    expected = [_reference_hit_rate(mask[k, 0].numpy(), truth[k, 0].numpy(), structure)
                for k in range(2)]
    got = cc_hit_rate(mask, truth, connectivity=connectivity)
    assert got.tolist() == pytest.approx(expected)


# ------------------------------------------------------------------ figures


def test_orthogonal_slices_figure_and_centre():
    v = torch.rand(1, 6, 7, 8)
    gt = torch.zeros_like(v, dtype=torch.bool)
    gt[0, 2, 3, 4] = gt[0, 2, 3, 5] = True
    assert slice_centre(gt) in ((2, 3, 4), (2, 3, 5))
    assert slice_centre(torch.zeros_like(gt)) == (3, 3, 4)
    fig = orthogonal_slices_figure(v, gt, {"a": gt.float(), "b": gt.float()}, {"m": v})
    assert len(fig.axes) == 12
    with pytest.raises(ValueError, match="C x D x H x W"):
        orthogonal_slices_figure(v[0], None, {}, {})
    with pytest.raises(ValueError, match="'a'"):
        orthogonal_slices_figure(v, gt, {"a": gt[:, :3].float()}, {})


# -------------------------------------------------- the MONAI network and its cache


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    pytest.importorskip("monai")
    from captum_regadv.benchmark import monai_model
    from captum_regadv.benchmark.monai_model import VolumeTrainConfig, load_or_train_volumes

    data = make_volume_dataset(4, size=16, seed=0)
    a = monai_model.train_volume_model(data, epochs=1, batch_size=2)
    b = monai_model.train_volume_model(data, epochs=1, batch_size=2)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    config = VolumeTrainConfig(size=16, n_train=4, n_val=4, epochs=1, batch_size=2)
    model, metrics = load_or_train_volumes(config, cache_dir=tmp_path)
    assert set(metrics) >= {"val_accuracy", "val_roc_auc", "train_seconds"}
    assert len(list(tmp_path.glob("volumes-*.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(monai_model, "train_volume_model", no_training)
    again, _ = load_or_train_volumes(config, cache_dir=tmp_path)
    for pa, pb in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(pa, pb)
    assert not again.training


# ------------------------------------------------------------ the side-by-side


class SpotModel(nn.Module):
    """Hand-set 3-D classifier: class-1 logit ``20 (max_v relu(x_v) - 0.5)`` through a 1x1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 1, 1), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveMaxPool3d(1), nn.Flatten())
        with torch.no_grad():
            self.features[0].weight.fill_(1.0)
            self.features[0].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1 = 20.0 * (self.pool(self.features(x))[:, 0] - 0.5)
        return torch.stack([torch.zeros_like(z1), z1], 1)


def test_compare_methods_on_a_hand_set_model():
    pytest.importorskip("monai")
    from captum_regadv.benchmark.monai_compare import (
        METHODS, CompareSettings, CountingModule, compare_methods, format_compare_markdown,
        summary_in_words,
    )

    model = SpotModel().eval()
    before = copy.deepcopy(model.state_dict())
    x = torch.full((2, 1, 8, 8, 8), 0.1)
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[0, 0, 2, 3, 4] = truth[1, 0, 5, 5, 1] = True
    x[truth] = 0.9
    x_before = x.clone()
    s = CompareSettings(ig_steps=4, occlusion_window=2, rule_steps=20, thresholds=3,
                        deletion_steps=4, target_layer="features.1",
                        occlusion_mask_size=4)
    rows, outputs = compare_methods(model, x, truth, settings=s)
    assert [r.method for r in rows] == list(METHODS)
    by = {r.method: r for r in rows}
    # passes counted by the wrapper: IG = its steps, GradCAM one forward, Captum's
    # occlusion 1 + 7^3 window positions per volume
    assert by["Captum IntegratedGradients"].passes_per_volume == 4
    assert by["MONAI GradCAM"].passes_per_volume == 1
    assert by["Captum Occlusion"].passes_per_volume == 1 + 7**3
    # the single bright voxel decides the class: occlusion and this method find it
    for name in ("Captum Occlusion", "RegularizedAdversarial"):
        assert by[name].cc_hit_rate == 100.0, name
    assert bool(outputs["RegularizedAdversarial"]["mask"].bool()[truth].all())
    for name in ("MONAI GradCAM", "MONAI GradCAMpp"):
        cam = outputs[name]["map"]  # largest at the lesion (MONAI's flip undone)
        assert type(cam) is torch.Tensor  # not MONAI's MetaTensor
        assert bool((cam[truth] == cam.flatten(1).max(1).values).all()), name
    for out in outputs.values():
        assert out["map"].shape == x.shape and out["mask"].shape == x.shape
    assert torch.equal(x, x_before) and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    table = format_compare_markdown(rows)
    assert table.count("\n") == 2 + len(METHODS)
    assert "RegularizedAdversarial" in summary_in_words(rows)
    counted = CountingModule(model)
    assert not counted.training
    with pytest.raises(ValueError, match="unknown method"):
        compare_methods(model, x, truth, methods=["nope"])
    with pytest.raises(ValueError, match="N x C x D x H x W"):
        compare_methods(model, x[0], truth[0])


def test_benchmark_runner_dispatches_volumes(tmp_path, monkeypatch):
    """``captum-regadv benchmark --dataset volumes``: Table 1 rows and the slice figure,
    on a hand-set model standing in for the trained network (no training here)."""
    pytest.importorskip("monai")
    from captum_regadv.benchmark import monai_model, runner

    seen = {}

    def fake_load(config, cache_dir=None):
        seen["config"] = config
        return SpotModel().eval(), {"val_accuracy": 1.0, "val_roc_auc": 1.0,
                                    "val_frac_pos_confident": 1.0}

    monkeypatch.setattr(monai_model, "load_or_train_volumes", fake_load)
    out = tmp_path / "out"
    code = runner.main(["--dataset", "volumes", "--quick", "--n-images", "1", "--no-captum",
                        "--ranking-steps", "2", "--no-progress", "--out", str(out)])
    assert code == 0
    assert seen["config"].size == 32 and seen["config"].dataset == "volumes"
    table = (out / "table.md").read_text()
    assert "(32x32x32)" in table and "ours (defaults)" in table and "same rule" in table
    assert (out / "figure1.png").stat().st_size > 0
