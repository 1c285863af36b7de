"""Real DICOM files: the files pydicom ships in its package (CT_small, MR_small,
the multi-frame RT dose files), read and checked against the values pydicom
reports, series built from their headers, several series per folder, a
written enhanced multi-frame file, and the command line end to end (issue 20
item 3)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from captum_regadv import cli
from captum_regadv.fileio import list_images, load_image, window
from captum_regadv.fileio.kinds import series_path
from test_cli import read_jsonl, read_summary, save_scripted
from test_volumes import LesionNet3d

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
FAST = ["--steps", "15", "--phase2-steps", "3", "--lr", "0.05", "--refine-rounds", "0",
        "--search-steps", "0", "--quiet", "--threads", "1"]


def bundled(name: str) -> str:
    """A file of pydicom's own test data, present offline (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom does not ship {name} in this installation")
    return str(path)


def read(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(bundled(name))


def modality(ds: Any) -> np.ndarray:
    """pydicom's own modality LUT (rescale slope and intercept)."""
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)


# --------------------------------------------------------------------------- single files


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_bundled_single_frame_files_match_pydicom(name: str) -> None:
    ds = read(name)
    image = load_image(bundled(name))
    assert image.spatial == 2 and image.pixels.shape == ds.pixel_array.shape
    np.testing.assert_array_equal(image.pixels, modality(ds))
    assert image.spacing == tuple(float(v) for v in ds.PixelSpacing)


def test_ct_small_rescale_and_window() -> None:
    ds = read("CT_small.dcm")
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    image = load_image(bundled("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) - 1024.0
    np.testing.assert_array_equal(image.pixels, hu)
    windowed = window(image.pixels, 40.0, 400.0)  # after the rescale: in HU
    np.testing.assert_allclose(windowed, np.clip((hu + 160.0) / 400.0, 0.0, 1.0))
    assert 0.0 < windowed.mean() < 1.0


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"])
def test_bundled_multiframe_rt_dose_is_a_volume(name: str) -> None:
    ds = read(name)
    frames = int(ds.NumberOfFrames)
    image = load_image(bundled(name))
    assert image.spatial == 3 and image.pixels.shape == (frames, ds.Rows, ds.Columns)
    expected = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    np.testing.assert_allclose(image.pixels, expected)  # GridFrameOffsetVector is increasing
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    step = float(np.diff(offsets).mean())
    assert image.spacing == pytest.approx((step, *(float(v) for v in ds.PixelSpacing)))
    assert image.affine is not None
    np.testing.assert_allclose(
        image.affine[:3, 3], LPS_TO_RAS @ np.array([float(v) for v in ds.ImagePositionPatient])
    )
    cosines = np.array([float(v) for v in ds.ImageOrientationPatient])
    np.testing.assert_allclose(image.affine[:3, 2], LPS_TO_RAS @ cosines[:3] * ds.PixelSpacing[1])
    np.testing.assert_allclose(image.affine[:3, 1], LPS_TO_RAS @ cosines[3:] * ds.PixelSpacing[0])


# --------------------------------------------------------------------------- series from real headers


def copy_series(name: str, folder: Path, depth: int, *, step: float, order: list[int]) -> Any:
    """``depth`` slices of a bundled file, ``step`` mm apart along its slice normal,
    written in the file order ``order``; slice k's pixels are the original + 10 k."""
    folder.mkdir(parents=True, exist_ok=True)
    template = read(name)
    cosines = np.array([float(v) for v in template.ImageOrientationPatient])
    normal = np.cross(cosines[:3], cosines[3:])
    origin = np.array([float(v) for v in template.ImagePositionPatient])
    for file_index, k in enumerate(order):
        ds = read(name)
        ds.ImagePositionPatient = [float(v) for v in origin + k * step * normal]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = file_index + 1  # scrambled: positions win
        ds.PixelData = (ds.pixel_array + 10 * k).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(str(folder / f"{name[:2]}{file_index:03d}.dcm"))
    return template


def test_two_bundled_series_in_one_folder_are_two_volumes(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    ct = copy_series("CT_small.dcm", folder, 3, step=5.0, order=[2, 0, 1])
    mr = copy_series("MR_small.dcm", folder, 4, step=0.8, order=[3, 1, 0, 2])
    lone = tmp_path / "study" / "xray.dcm"
    lone.write_bytes(Path(bundled("CT_small.dcm")).read_bytes())  # CT_small's own series: 1 slice
    ds_lone = pydicom.dcmread(str(lone))
    ds_lone.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds_lone.save_as(str(lone))
    found = list_images([str(tmp_path)])
    ct_input = series_path(str(folder), str(ct.SeriesInstanceUID), int(ct.SeriesNumber))
    mr_input = series_path(str(folder), str(mr.SeriesInstanceUID), int(mr.SeriesNumber))
    assert found == sorted([ct_input, mr_input, str(lone)])
    for template, path, depth, step in ((ct, ct_input, 3, 5.0), (mr, mr_input, 4, 0.8)):
        image = load_image(path)
        base = modality(template)
        assert image.pixels.shape == (depth, *base.shape)
        for k in range(depth):  # ordered by position, each slice rescaled
            np.testing.assert_allclose(image.pixels[k], base + 10 * k * float(
                getattr(template, "RescaleSlope", 1.0)))
        spacing = tuple(float(v) for v in template.PixelSpacing)
        assert image.spacing == pytest.approx((step, *spacing))
        cosines = np.array([float(v) for v in template.ImageOrientationPatient])
        assert image.affine is not None
        np.testing.assert_allclose(image.affine[:3, 2], LPS_TO_RAS @ cosines[:3] * spacing[1])
        np.testing.assert_allclose(image.affine[:3, 1], LPS_TO_RAS @ cosines[3:] * spacing[0])
        np.testing.assert_allclose(
            image.affine[:3, 3],
            LPS_TO_RAS @ np.array([float(v) for v in template.ImagePositionPatient]),
            atol=1e-4,
        )
    assert list_images([ct_input]) == [ct_input]  # a series named on the command line


def test_bundled_series_and_rt_dose_through_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ct = copy_series("CT_small.dcm", data / "study", 3, step=5.0, order=[1, 2, 0])
    mr = copy_series("MR_small.dcm", data / "study", 3, step=0.8, order=[0, 2, 1])
    (data / "dose.dcm").write_bytes(Path(bundled("rtdose.dcm")).read_bytes())
    model = save_scripted(LesionNet3d(), tmp_path / "net3d.pt")
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model, "--out", str(out), str(data),
                     "--window", "40", "400", *FAST]) == 0
    records = {r["name"]: r for r in read_jsonl(out / "results.jsonl")}
    ct_name = f"study/series-{ct.SeriesNumber}-{ct.SeriesInstanceUID}"
    mr_name = f"study/series-{mr.SeriesNumber}-{mr.SeriesInstanceUID}"
    assert sorted(records) == sorted(["dose.dcm", ct_name, mr_name])
    expected_spacing = {
        ct_name: [5.0, *map(float, ct.PixelSpacing)],
        mr_name: [0.8, *map(float, mr.PixelSpacing)],
        "dose.dcm": [5.0, 10.0, 10.0],
    }
    for name, record in records.items():
        assert record["spacing"] == pytest.approx(expected_spacing[name])
        assert set(record["outputs"]) == {"mask", "slices", "npz"}
        with np.load(out / record["outputs"]["npz"]) as z:
            np.testing.assert_allclose(z["spacing"], expected_spacing[name])
            model_input = z["input"]
        source = load_image(os.path.join(str(data), *name.split("/")))
        np.testing.assert_allclose(model_input[0], window(source.pixels, 40.0, 400.0),
                                   atol=1e-6)
    assert records[ct_name]["shape"] == [3, 128, 128]
    summary = read_summary(out)
    assert (summary["ok"], summary["failed"]) == (3, 0)
    assert summary["settings"]["window"] == [40.0, 400.0]


# --------------------------------------------------------------------------- enhanced multi-frame


def write_enhanced(path: Path, stored: np.ndarray, positions: list[list[float]]) -> None:
    """An enhanced-CT-like multi-frame file: per-frame positions and rescale,
    shared pixel measures and orientation."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "CT", generate_uid()
    ds.NumberOfFrames = stored.shape[0]
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.7, 0.5], 3.0
    orientation.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for position in positions:
        plane, value = Dataset(), Dataset()
        plane.ImagePositionPatient = position
        value.RescaleSlope, value.RescaleIntercept = 2.0, -1000.0
        item = Dataset()
        item.PlanePositionSequence = Sequence([plane])
        item.PixelValueTransformationSequence = Sequence([value])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_enhanced_multiframe_positions_spacing_and_rescale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, size=(4, 5, 6)).astype(np.uint16)
    z = [30.0, 24.0, 27.0, 21.0]  # stored out of order: frames are sorted along the normal
    write_enhanced(tmp_path / "enh.dcm", stored, [[-10.0, 4.0, v] for v in z])
    image = load_image(str(tmp_path / "enh.dcm"))
    order = np.argsort(z)
    np.testing.assert_allclose(image.pixels, stored[order] * 2.0 - 1000.0)
    assert image.spacing == pytest.approx((3.0, 0.7, 0.5))
    assert image.affine is not None
    np.testing.assert_allclose(image.affine[:3, 3], [10.0, -4.0, 21.0])
    assert image.value_range == (-1000.0, 4095 * 2.0 - 1000.0)
