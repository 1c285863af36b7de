"""3-D volumes from files: NIfTI and DICOM series in, NIfTI masks and slice
figures out, and ``captum-regadv explain`` on them end to end (issue 16 item 3)."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from _dicom import write_dicom
from captum_regadv import cli
from captum_regadv.fileio import (
    TEMP_SUFFIX,
    list_images,
    load_image,
    read_dicom_series,
    read_nifti,
    write_nifti_atomic,
)
from test_cli import (  # helpers only (no test_ names: nothing is collected twice)
    assert_same_snapshot,
    read_jsonl,
    read_summary,
    restore_torch_threads,
    save_scripted,
    snapshot,
    subprocess_env,
)

nibabel = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
__all__ = ["restore_torch_threads"]

SHAPE = (8, 12, 12)
AFFINE = np.array([
    [0.0, 0.0, -1.5, 30.0],
    [0.0, 0.9, 0.0, -20.0],
    [2.0, 0.0, 0.0, 5.0],
    [0.0, 0.0, 0.0, 1.0],
])
FAST3D = ["--steps", "20", "--phase2-steps", "5", "--lr", "0.05", "--sparsity-weight", "1",
          "--tv-weight", "1", "--quiet", "--threads", "1"]


class LesionNet3d(torch.nn.Module):
    """Hand-set 3-D CNN: class 1 fires where a 3x3x3 box is bright on average.

    ``conv`` is the box mean minus 0.5; class 1's logit is
    ``20 * max(relu(conv)) - 1`` and class 0's is 0, so a volume with a
    bright 3x3x3 lesion (1.0 on a background below 0.3) is class 1, and only
    the lesion carries that evidence.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 27.0)
            self.conv.bias.fill_(-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = torch.relu(self.conv(x)).amax(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(evidence), 20.0 * evidence - 1.0], dim=1)


def lesion_volume(seed: int, shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, tuple]:
    """Background noise in [0, 0.2] and a 3x3x3 lesion of 1.0; returns (volume, lesion slices)."""
    rng = np.random.default_rng(seed)
    volume = 0.2 * rng.random(shape)
    corner = [int(rng.integers(1, s - 4)) for s in shape]
    lesion = tuple(slice(c, c + 3) for c in corner)
    volume[lesion] = 1.0
    return volume, lesion


def save_nifti(path: Path, volume: np.ndarray, affine: np.ndarray = AFFINE,
               dtype: Any = np.float32, slope: Optional[float] = None,
               intercept: float = 0.0) -> None:
    image = nibabel.Nifti1Image(volume.astype(dtype), affine)
    if slope is not None:
        image.header.set_slope_inter(slope, intercept)
    nibabel.save(image, str(path))


def write_series(folder: Path, stored: np.ndarray, *, positions: bool = True,
                 file_order: Optional[list[int]] = None, slopes: Optional[list[float]] = None,
                 intercept: float = 0.0) -> None:
    """Slice k of ``stored`` at z = 10 + 2.5 k (axial), in files named in ``file_order``."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = pydicom.uid.generate_uid()
    depth = stored.shape[0]
    order = file_order if file_order is not None else list(range(depth))
    for file_index, k in enumerate(order):
        extra: dict[str, Any] = {"SeriesInstanceUID": uid, "PixelSpacing": [0.8, 0.6],
                                 "SliceThickness": 2.5}
        if positions:
            extra["ImagePositionPatient"] = [-5.0, 7.0, 10.0 + 2.5 * k]
            extra["ImageOrientationPatient"] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            extra["InstanceNumber"] = (k * 7) % depth + 1  # scrambled: positions win
        else:
            extra["InstanceNumber"] = k + 1
        write_dicom(folder / f"IM{file_index:04d}.dcm", stored[k],
                    slope=1.0 if slopes is None else slopes[k], intercept=intercept,
                    extra=extra)


# --------------------------------------------------------------------------- reading


def test_nifti_round_trip_keeps_values_and_affine(tmp_path: Path) -> None:
    stored = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) * 37 - 2000
    save_nifti(tmp_path / "v.nii.gz", stored, dtype=np.int16, slope=2.0, intercept=-10.0)
    image = read_nifti(str(tmp_path / "v.nii.gz"))
    assert image.spatial == 3 and image.pixels.shape == SHAPE
    np.testing.assert_array_equal(image.pixels, stored * 2.0 - 10.0)
    np.testing.assert_allclose(image.affine, AFFINE)
    assert image.value_range == (-32768 * 2.0 - 10.0, 32767 * 2.0 - 10.0)  # 16-bit, rescaled

    mask = (stored > 0).astype(np.uint8)
    write_nifti_atomic(str(tmp_path / "m.nii.gz"), mask, AFFINE)
    back = nibabel.load(str(tmp_path / "m.nii.gz"))
    np.testing.assert_array_equal(np.asarray(back.dataobj), mask)
    np.testing.assert_allclose(back.affine, AFFINE)
    first = (tmp_path / "m.nii.gz").read_bytes()
    write_nifti_atomic(str(tmp_path / "m.nii.gz"), mask, AFFINE)
    assert (tmp_path / "m.nii.gz").read_bytes() == first  # reproducible bytes
    write_nifti_atomic(str(tmp_path / "m.nii"), mask, AFFINE)
    assert gzip.decompress(first) == (tmp_path / "m.nii").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_nifti_uint16_unit_scale_uses_the_type_range(tmp_path: Path) -> None:
    save_nifti(tmp_path / "v.nii", np.full(SHAPE, 65535), dtype=np.uint16)
    image = load_image(str(tmp_path / "v.nii"))
    assert image.value_range == (0.0, 65535.0) and image.pixels.max() == 65535.0


def test_dicom_series_in_the_wrong_file_order_is_read_in_slice_order(tmp_path: Path) -> None:
    stored = (np.arange(8)[:, None, None] * 100 + np.zeros((8, 5, 6))).astype(np.uint16)
    write_series(tmp_path / "s", stored, file_order=[3, 0, 7, 5, 1, 6, 2, 4])
    image = read_dicom_series(str(tmp_path / "s"))
    np.testing.assert_array_equal(image.pixels, stored.astype(float))
    expected = np.array([  # LPS -> RAS: x and y negated
        [0.0, 0.0, -0.6, 5.0],
        [0.0, -0.8, 0.0, -7.0],
        [2.5, 0.0, 0.0, 10.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    np.testing.assert_allclose(image.affine, expected)
    assert image.value_range == (0.0, 4095.0)


def test_dicom_series_without_positions_falls_back_to_instance_number(tmp_path: Path) -> None:
    stored = (np.arange(4)[:, None, None] * 10 + np.zeros((4, 3, 3))).astype(np.uint16)
    write_series(tmp_path / "s", stored, positions=False, file_order=[2, 0, 3, 1])
    image = read_dicom_series(str(tmp_path / "s"))
    np.testing.assert_array_equal(image.pixels[:, 0, 0], [0, 10, 20, 30])
    np.testing.assert_allclose(np.diag(image.affine), [2.5, 0.8, 0.6, 1.0])


def test_dicom_series_rescale_slope_and_intercept_per_slice(tmp_path: Path) -> None:
    stored = np.full((3, 4, 4), 1000, dtype=np.uint16)
    write_series(tmp_path / "s", stored, slopes=[1.0, 2.0, 0.5], intercept=-1024.0,
                 file_order=[2, 1, 0])
    image = read_dicom_series(str(tmp_path / "s"))
    np.testing.assert_array_equal(image.pixels[:, 0, 0], [1000 - 1024, 2000 - 1024, 500 - 1024])
    assert image.value_range == (-1024.0, 4095 * 2.0 - 1024.0)


def test_a_series_folder_is_listed_as_one_input(tmp_path: Path) -> None:
    write_series(tmp_path / "ct" / "series", np.zeros((3, 4, 4), dtype=np.uint16))
    write_dicom(tmp_path / "ct" / "xray.dcm", np.zeros((4, 4)))  # a lone 2-D DICOM
    save_nifti(tmp_path / "mr.nii.gz", np.zeros(SHAPE))
    found = [os.path.relpath(p, tmp_path) for p in list_images([str(tmp_path)])]
    assert found == ["ct/series", "ct/xray.dcm", "mr.nii.gz"]
    assert list_images([str(tmp_path / "ct" / "series")]) == [str(tmp_path / "ct" / "series")]


# --------------------------------------------------------------------------- the command line


def make_volumes(root: Path, n: int) -> dict[str, tuple]:
    """``n`` volumes: NIfTI files and one DICOM series; returns name -> lesion slices."""
    lesions = {}
    for k in range(n):
        volume, lesion = lesion_volume(k)
        if k == 0:
            write_series(root / "series", np.rint(volume * 4095).astype(np.uint16),
                         file_order=[5, 2, 7, 0, 3, 6, 1, 4])
            lesions["series"] = lesion
        else:
            name = f"v{k}.nii.gz" if k % 2 else f"v{k}.nii"
            save_nifti(root / name, volume)
            lesions[name] = lesion
    return lesions


def test_explain_volumes_end_to_end(tmp_path: Path) -> None:
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    lesions = make_volumes(tmp_path / "data", 3)
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model, "--out", str(out), str(tmp_path / "data"),
                     *FAST3D]) == 0
    records = read_jsonl(out / "results.jsonl")
    assert [r["name"] for r in records] == sorted(lesions)
    for record in records:
        assert record["target"] == 1 and record["shape"] == list(SHAPE)
        assert record["model_input_shape"] == [1, *SHAPE]
        assert set(record["outputs"]) == {"mask", "slices", "npz"}
        assert record["score_after"] < 0.5 < record["score_before"]
        nifti = nibabel.load(str(out / record["outputs"]["mask"]))
        mask = np.asarray(nifti.dataobj)
        source = tmp_path / "data" / record["name"]
        expected_affine = load_image(str(source)).affine
        np.testing.assert_allclose(nifti.affine, expected_affine)
        with np.load(out / record["outputs"]["npz"]) as z:
            np.testing.assert_array_equal(z["mask"], mask)
            np.testing.assert_allclose(z["affine"], expected_affine)
            assert z["input"].shape == z["perturbed"].shape == (1, *SHAPE)
        # the mask sits on the lesion (the only evidence of class 1)
        near = np.zeros(SHAPE, dtype=bool)
        near[tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in lesions[record["name"]])] = True
        assert mask.any() and mask[near].sum() >= 0.9 * mask.sum()
        picture = np.asarray(Image.open(out / record["outputs"]["slices"]))
        assert picture.ndim == 3 and picture.shape[1] > 2 * picture.shape[0]
    summary = read_summary(out)
    assert (summary["ok"], summary["failed"], summary["complete"]) == (3, 0, 3)


def test_volume_and_2d_model_mismatch_is_reported(tmp_path: Path) -> None:
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    make_volumes(tmp_path / "data", 2)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "data" / "z.png")
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model, "--out", str(out), str(tmp_path / "data"),
                     *FAST3D]) == 1
    (failure,) = read_summary(out)["failures"]
    assert failure["input"].endswith("z.png")
    assert failure["reason"].startswith("is a 2-D image but the model takes 3-D volumes")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_killed_volume_run_resumes_to_the_same_results(tmp_path: Path) -> None:
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    n = 8
    make_volumes(tmp_path / "data", n)
    args = ["explain", "--model", model, str(tmp_path / "data"), "--steps", "60",
            "--phase2-steps", "20", *FAST3D[4:]]
    out = tmp_path / "out"
    with open(tmp_path / "stderr.txt", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "captum_regadv.cli", *args, "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path, env=subprocess_env(),
        )
        deadline = time.monotonic() + 120
        while not out.exists() or len(list(out.rglob("*.record.json"))) < 2:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    done = len(list(out.rglob("*.record.json")))
    assert 2 <= done < n, "the run was not killed midway"
    assert not (out / "summary.json").exists()

    assert cli.main([*args, "--out", str(out)]) == 0
    summary = read_summary(out)
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (n - done, done, 0)
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    reference = tmp_path / "reference"
    assert cli.main([*args, "--out", str(reference)]) == 0
    assert_same_snapshot(snapshot(reference), snapshot(out))
    for mask in sorted(reference.rglob("*.mask.nii.gz")):
        assert (out / mask.relative_to(reference)).read_bytes() == mask.read_bytes()
