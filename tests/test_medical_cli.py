"""The command line for medical users (issue 20 item 3): a MONAI network from a
factory plus a state dict, CT windowing, the model's own MONAI preprocessing,
voxel spacing in the outputs and the slice figures, several DICOM series in
one folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from captum_regadv import cli
from captum_regadv.fileio import LoadedImage, Preprocessing, list_images, load_image, preprocess
from captum_regadv.fileio import slices as slices_module
from captum_regadv.fileio import window
from captum_regadv.fileio.kinds import series_path
from captum_regadv.fileio.slices import render_slices, slice_panels
from test_cli import one_line_error, read_jsonl, read_summary, save_scripted
from test_volumes import AFFINE, FAST3D, LesionNet3d, lesion_volume, save_nifti, write_series

nibabel = pytest.importorskip("nibabel")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

NET = """
import torch
from monai.networks.nets import DenseNet

def make_net():
    return DenseNet(spatial_dims=3, in_channels=1, out_channels={out}, init_features=4,
                    growth_rate=4, block_config=(1, 1), bn_size=1)
"""
TRANSFORM = """
from monai.transforms import Compose, ScaleIntensityRange

def ct_transform():
    return Compose([ScaleIntensityRange(a_min=-1000.0, a_max=400.0, b_min=0.0, b_max=1.0,
                                        clip=True)])

def crop():
    return lambda x: x[:, 1:]

def not_callable():
    return 3
"""


def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def saved_monai_net(tmp_path: Path, out_channels: int = 2) -> tuple[torch.nn.Module, str]:
    """A tiny MONAI DenseNet with seeded, then shifted, weights and its state dict file."""
    from monai.networks.nets import DenseNet

    torch.manual_seed(3)
    net = DenseNet(spatial_dims=3, in_channels=1, out_channels=out_channels, init_features=4,
                   growth_rate=4, block_config=(1, 1), bn_size=1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05)
        for m in net.modules():  # non-trivial batch-norm statistics
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.fill_(0.1)
                m.running_var.fill_(2.0)
    path = tmp_path / f"state{out_channels}.pt"
    torch.save(net.state_dict(), path)
    return net.eval(), str(path)


# --------------------------------------------------------------------------- MONAI model + weights


def test_monai_net_from_factory_and_state_dict_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("monai")
    name = module(tmp_path, monkeypatch, "regadv_monai_nets", NET.format(out=2))
    net, weights = saved_monai_net(tmp_path)
    volume, _ = lesion_volume(0, (16, 16, 16))
    save_nifti(tmp_path / "ct.nii.gz", volume)
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", f"{name}:make_net", "--weights", weights,
                     "--out", str(out), str(tmp_path / "ct.nii.gz"), *FAST3D]) == 0
    (record,) = read_jsonl(out / "results.jsonl")
    with np.load(out / record["outputs"]["npz"]) as z:
        x = torch.from_numpy(z["input"])[None]
        np.testing.assert_allclose(z["spacing"], [2.0, 0.9, 1.5], rtol=1e-6)
    with torch.no_grad():  # the saved weights, not the factory's random ones, made the scores
        expected = torch.softmax(net(x), dim=1)[0, record["target"]].item()
    assert record["score_before"] == pytest.approx(expected, abs=1e-5)
    assert record["spacing"] == pytest.approx([2.0, 0.9, 1.5])
    assert nibabel.load(str(out / record["outputs"]["mask"])).shape == (16, 16, 16)
    settings_ = read_summary(out)["settings"]
    assert (settings_["model"], settings_["weights"]) == (f"{name}:make_net", weights)


@pytest.mark.parametrize("problem", ["shape", "missing", "unexpected", "not_a_state_dict"])
def test_weights_that_do_not_fit_are_a_named_setup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    pytest.importorskip("monai")
    name = module(tmp_path, monkeypatch, f"regadv_monai_nets_{problem}", NET.format(out=2))
    _, weights = saved_monai_net(tmp_path, out_channels=3 if problem == "shape" else 2)
    state = torch.load(weights, weights_only=True)
    if problem == "missing":
        del state["features.conv0.weight"]
    elif problem == "unexpected":
        state["extra.weight"] = torch.zeros(1)
    elif problem == "not_a_state_dict":
        state = [1, 2]
    torch.save(state, weights)
    save_nifti(tmp_path / "ct.nii.gz", lesion_volume(0, (16, 16, 16))[0])
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", f"{name}:make_net", "--weights", weights,
                     "--out", str(out), str(tmp_path / "ct.nii.gz"), *FAST3D]) == 2
    line = one_line_error(capsys)
    assert f"--weights '{weights}'" in line
    expected = {
        "shape": "shape mismatch class_layers.out.weight (file (3, 8), model (2, 8)), "
                 "class_layers.out.bias (file (3,), model (2,))",
        "missing": "missing keys features.conv0.weight",
        "unexpected": "unexpected keys extra.weight",
        "not_a_state_dict": "holds a list, not a state dict",
    }[problem]
    assert expected in line
    assert not out.exists()


def test_weights_with_a_model_file_or_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    save_nifti(tmp_path / "v.nii", lesion_volume(0)[0])
    out = tmp_path / "out"
    args = ["explain", "--out", str(out), str(tmp_path / "v.nii"), *FAST3D]
    assert cli.main([*args, "--model", model, "--weights", model]) == 2
    assert "--weights loads a state dict into a package.module:factory" in one_line_error(capsys)
    assert cli.main([*args, "--model", "torch.nn:Identity", "--weights", "nope.pt"]) == 2
    assert "--weights 'nope.pt' does not exist" in one_line_error(capsys)


# --------------------------------------------------------------------------- windowing


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    values=arrays(np.float64, 20, elements=st.floats(-4000, 4000)),
    center=st.floats(-1000, 1000),
    width=st.floats(1.0, 4000),
)
def test_window_matches_its_formula(values: np.ndarray, center: float, width: float) -> None:
    out = window(values, center, width)
    low, high = center - width / 2, center + width / 2
    np.testing.assert_allclose(out, (np.clip(values, low, high) - low) / width, atol=1e-9)
    assert ((0 <= out) & (out <= 1)).all()
    order = np.argsort(values, kind="stable")
    assert (np.diff(out[order]) >= 0).all()  # monotone


@pytest.mark.parametrize("bad", [(40.0, 0.0), (40.0, -1.0), (math.nan, 400.0), (40.0, math.inf)])
def test_window_must_have_a_positive_finite_width(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="--window"):
        Preprocessing(window=bad)


def test_window_is_applied_after_the_rescale_and_before_scale() -> None:
    hu = np.array([[-1000.0, -160.0], [40.0, 1000.0]])
    image = LoadedImage(hu, (-1024.0, 3071.0))
    p = preprocess(image, Preprocessing(window=(40.0, 400.0)))
    np.testing.assert_allclose(p.tensor[0].numpy(), [[0.0, 0.0], [0.5, 1.0]])
    assert (float(p.low), float(p.high)) == (0.0, 1.0)


def test_window_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    hu = lesion_volume(1)[0] * 1400.0 - 1000.0  # lesion at 400 HU, background below -700
    save_nifti(tmp_path / "ct.nii.gz", hu)
    out = tmp_path / "out"
    args = ["explain", "--model", model, "--out", str(out), str(tmp_path / "ct.nii.gz"), *FAST3D]
    assert cli.main([*args, "--window", "-300", "1400"]) == 0
    (first,) = read_jsonl(out / "results.jsonl")
    with np.load(out / first["outputs"]["npz"]) as z:
        np.testing.assert_allclose(z["input"][0], np.clip((hu + 1000.0) / 1400.0, 0, 1),
                                   atol=1e-6)
    assert first["target"] == 1 and first["score_after"] < 0.5
    summary = read_summary(out)
    assert summary["settings"]["window"] == [-300.0, 1400.0]
    assert cli.main([*args, "--window", "-300", "1000"]) == 0  # another window: redone
    assert read_summary(out)["fingerprint"] != summary["fingerprint"]
    assert read_summary(out)["ok"] == 1
    assert cli.main([*args, "--window", "40", "0"]) == 2
    assert "--window: WIDTH must be > 0, got 0" in one_line_error(capsys)
    assert cli.main([*args, "--window", "nan", "400"]) == 2
    assert "must be a finite number" in capsys.readouterr().err


# --------------------------------------------------------------------------- the model's own preprocessing


def test_monai_transform_as_preprocessing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("monai")
    name = module(tmp_path, monkeypatch, "regadv_monai_transforms", TRANSFORM)
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    hu = lesion_volume(2)[0] * 1400.0 - 1000.0
    save_nifti(tmp_path / "ct.nii.gz", hu)
    out = tmp_path / "out"
    args = ["explain", "--model", model, "--out", str(out), str(tmp_path / "ct.nii.gz"), *FAST3D]
    assert cli.main([*args, "--preprocess", f"{name}:ct_transform"]) == 0
    (record,) = read_jsonl(out / "results.jsonl")
    with np.load(out / record["outputs"]["npz"]) as z:
        np.testing.assert_allclose(z["input"][0], np.clip((hu + 1000.0) / 1400.0, 0, 1),
                                   atol=1e-6)
        assert z["perturbed"].min() >= z["input"].min() - 1e-6  # bounds: the output's range
        assert z["perturbed"].max() <= z["input"].max() + 1e-6
    assert record["score_after"] < 0.5 < record["score_before"]
    assert read_summary(out)["settings"]["preprocess"] == f"{name}:ct_transform"
    for bad, message in (
        (["--preprocess", f"{name}:ct_transform", "--scale", "unit"],
         "--scale does not apply with --preprocess"),
        (["--preprocess", f"{name}:crop"], "--preprocess must keep the shape (1, 8, 12, 12)"),
        (["--preprocess", f"{name}:not_callable"], "returned int, expected a callable"),
        (["--preprocess", "not a factory"], "is not package.module:factory"),
    ):
        assert cli.main([*args, "--out", str(tmp_path / "bad"), *bad]) == 2, bad
        assert message in one_line_error(capsys)


# --------------------------------------------------------------------------- spacing and slice figures


def test_spacing_from_nifti_zooms_and_dicom_headers(tmp_path: Path) -> None:
    save_nifti(tmp_path / "v.nii.gz", np.zeros((3, 4, 5)))
    assert load_image(str(tmp_path / "v.nii.gz")).spacing == pytest.approx((2.0, 0.9, 1.5))
    write_series(tmp_path / "s", np.zeros((3, 4, 4), dtype=np.uint16))
    assert load_image(str(tmp_path / "s")).spacing == pytest.approx((2.5, 0.8, 0.6))
    write_series(tmp_path / "n", np.zeros((3, 4, 4), dtype=np.uint16), positions=False)
    assert load_image(str(tmp_path / "n")).spacing == pytest.approx((2.5, 0.8, 0.6))


def test_slice_panels_are_drawn_in_millimetres() -> None:
    panels = slice_panels((4, 10, 20), (1, 2, 3), spacing=(3.0, 0.5, 0.25))
    assert [(p.rows, p.cols) for p in panels] == [(1, 2), (0, 2), (0, 1)]
    assert [p.extent for p in panels] == [(0.0, 5.0, 5.0, 0.0), (0.0, 5.0, 12.0, 0.0),
                                          (0.0, 5.0, 12.0, 0.0)]
    assert {p.xlabel[-4:] for p in panels} == {"(mm)"}
    assert panels[0].title == "D = 1 of 4 (3.0 mm)"
    voxels = slice_panels((4, 10, 20), (1, 2, 3))
    assert voxels[1].extent == (0.0, 20.0, 4.0, 0.0) and voxels[1].ylabel == "D (voxels)"


def test_render_slices_uses_the_spacing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real = slices_module.slice_panels

    def spy(shape: Any, index: Any, spacing: Any = None) -> Any:
        seen.append(spacing)
        return real(shape, index, spacing)

    monkeypatch.setattr(slices_module, "slice_panels", spy)
    volume = np.random.default_rng(0).random((4, 6, 8))
    mask = np.zeros((4, 6, 8), dtype=np.uint8)
    mask[1:3, 2:4, 2:5] = 1
    thick = render_slices(volume, mask, spacing=(5.0, 1.0, 1.0))
    from_affine = render_slices(volume, mask, np.diag([5.0, 1.0, 1.0, 1.0]))
    plain = render_slices(volume, mask)
    assert [tuple(s) if s is not None else None for s in seen] == [
        (5.0, 1.0, 1.0), (5.0, 1.0, 1.0), None]
    assert thick == from_affine != plain


# --------------------------------------------------------------------------- several series per folder


def test_several_series_in_one_folder(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    folder = tmp_path / "study"
    a = np.arange(3 * 4 * 4, dtype=np.uint16).reshape(3, 4, 4)
    write_series(folder, a)
    uids = {str(pydicom.dcmread(str(p)).SeriesInstanceUID) for p in folder.iterdir()}
    write_series(folder / "tmp", a + 100)
    for k, p in enumerate(sorted((folder / "tmp").iterdir())):
        p.rename(folder / f"B{k}.dcm")
    (folder / "tmp").rmdir()
    (uid_a,) = uids
    (uid_b,) = {str(pydicom.dcmread(str(p)).SeriesInstanceUID) for p in folder.iterdir()} - uids
    found = list_images([str(tmp_path)])
    assert found == sorted([series_path(str(folder), uid_a), series_path(str(folder), uid_b)])
    np.testing.assert_array_equal(load_image(series_path(str(folder), uid_a)).pixels, a)
    np.testing.assert_array_equal(load_image(series_path(str(folder), uid_b)).pixels, a + 100)
    with pytest.raises(ValueError, match="more than one series"):
        load_image(str(folder))
    with pytest.raises(ValueError, match="no DICOM series 1.2.3"):
        load_image(series_path(str(folder), "1.2.3"))
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model, "--out", str(out), str(folder), *FAST3D]) == 0
    names = sorted(r["name"] for r in read_jsonl(out / "results.jsonl"))
    assert names == sorted([f"series-{uid_a}", f"series-{uid_b}"])
    assert json.loads((out / "summary.json").read_text())["complete"] == 2


def test_transform_output_and_bounds_in_preprocess() -> None:
    pixels = np.arange(12.0).reshape(3, 4)
    image = LoadedImage(pixels, (0.0, 255.0))
    p = preprocess(image, Preprocessing(transform=lambda t: t.numpy() * 2.0 - 1.0))
    np.testing.assert_allclose(p.tensor[0].numpy(), pixels * 2.0 - 1.0)  # no --scale: raw values
    assert (float(p.low), float(p.high)) == (-1.0, 21.0)
    sized = preprocess(image, Preprocessing(transform=lambda t: t, size=(6, 8), mean=(1.0,)))
    assert tuple(sized.tensor.shape) == (1, 6, 8)
    assert (float(sized.low), float(sized.high)) == (-1.0, 10.0)
    assert float(sized.tensor.min()) >= -1.0 and float(sized.tensor.max()) <= 10.0
    with pytest.raises(ValueError, match="--preprocess returned NaN or Inf"):
        preprocess(image, Preprocessing(transform=lambda t: t / 0.0))
    with pytest.raises(ValueError, match="must return a tensor or array, got list"):
        preprocess(image, Preprocessing(transform=lambda t: [1]))
    with pytest.raises(ValueError, match="--preprocess failed: ZeroDivisionError"):
        preprocess(image, Preprocessing(transform=lambda t: 1 / 0))
    with pytest.raises(ValueError, match="--preprocess: expected a callable, got int"):
        Preprocessing(transform=3)  # type: ignore[arg-type]
