"""Tests of captum_regadv.image_io: readers, preprocessing, masks, atomic writers.

Every fixture file is generated in ``tmp_path``; expected values are computed
with plain numpy from the arrays that were written.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from captum_regadv import image_io
from captum_regadv.image_io import (
    ImageReadError,
    LoadedImage,
    Preprocessing,
    append_jsonl,
    image_kind,
    list_images,
    load_image,
    mask_to_original,
    preprocess,
    read_image,
    remove_temp_files,
    render_overlay,
    write_json_atomic,
    write_jsonl_atomic,
    write_npz_atomic,
    write_png_atomic,
)

pydicom = pytest.importorskip("pydicom")
tifffile = pytest.importorskip("tifffile")

from _dicom import write_dicom  # noqa: E402


def ramp(shape: tuple[int, ...], high: int) -> np.ndarray:
    """Deterministic values 0..high over the array."""
    n = int(np.prod(shape))
    return (np.arange(n) * high // max(n - 1, 1)).reshape(shape)


# --------------------------------------------------------------------------- reading


def test_png_8bit_gray_and_rgb(tmp_path: Path) -> None:
    gray = ramp((6, 5), 255).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    img = load_image(str(tmp_path / "g.png"))
    assert img.pixels.dtype == np.float64 and img.pixels.shape == (6, 5)
    np.testing.assert_array_equal(img.pixels, gray)
    assert img.value_range == (0.0, 255.0)

    rgba = np.dstack([gray, gray // 2, 255 - gray, np.full_like(gray, 7)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    rgb = read_image(str(tmp_path / "c.png"))
    assert rgb.shape == (6, 5, 3)  # alpha dropped
    np.testing.assert_array_equal(rgb, rgba[:, :, :3])


def test_png_16bit(tmp_path: Path) -> None:
    data = ramp((7, 9), 65535).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "d.png")
    img = load_image(str(tmp_path / "d.png"))
    np.testing.assert_array_equal(img.pixels, data)
    assert img.value_range == (0.0, 65535.0)


def test_tiff_16bit_and_planar(tmp_path: Path) -> None:
    data = ramp((8, 6), 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    img = load_image(str(tmp_path / "a.tif"))
    np.testing.assert_array_equal(img.pixels, data)
    assert img.value_range == (0.0, 65535.0)

    planar = ramp((3, 8, 6), 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "p.tiff", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(str(tmp_path / "p.tiff")), planar.transpose(1, 2, 0))


def test_tiff_without_tifffile_falls_back_to_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ramp((8, 6), 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import now fails
    img = load_image(str(tmp_path / "a.tif"))
    np.testing.assert_array_equal(img.pixels, data)
    assert img.value_range == (0.0, 65535.0)


def test_tiff_float_has_no_nominal_range(tmp_path: Path) -> None:
    data = np.linspace(-2, 3, 20, dtype=np.float32).reshape(4, 5)
    tifffile.imwrite(tmp_path / "f.tif", data)
    img = load_image(str(tmp_path / "f.tif"))
    np.testing.assert_allclose(img.pixels, data)
    assert img.value_range is None


def test_dicom_rescale_is_applied(tmp_path: Path) -> None:
    stored = ramp((6, 7), 4095).astype(np.uint16)
    write_dicom(tmp_path / "a.dcm", stored, slope=2.0, intercept=-100.0)
    img = load_image(str(tmp_path / "a.dcm"))
    np.testing.assert_allclose(img.pixels, stored * 2.0 - 100.0)
    assert img.value_range == (-100.0, 4095 * 2.0 - 100.0)  # BitsStored = 12


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = ramp((5, 5), 4095).astype(np.uint16)
    write_dicom(tmp_path / "a.dcm", stored, slope=0.5, intercept=10.0, photometric="MONOCHROME1")
    img = load_image(str(tmp_path / "a.dcm"))
    low, high = 10.0, 4095 * 0.5 + 10.0
    np.testing.assert_allclose(img.pixels, low + high - (stored * 0.5 + 10.0))
    assert img.value_range == (low, high)


def test_dicom_without_suffix_is_recognised(tmp_path: Path) -> None:
    write_dicom(tmp_path / "IM0001", ramp((4, 4), 100).astype(np.uint16))
    assert image_kind(str(tmp_path / "IM0001")) == "dicom"
    assert read_image(str(tmp_path / "IM0001")).shape == (4, 4)


def test_npy_layouts(tmp_path: Path) -> None:
    hw = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "a.npy", hw)
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.npy")), hw)
    assert load_image(str(tmp_path / "a.npy")).value_range is None

    chw = np.arange(3 * 8 * 6, dtype=np.uint8).reshape(3, 8, 6)
    np.save(tmp_path / "b.npy", chw)
    img = load_image(str(tmp_path / "b.npy"))
    np.testing.assert_array_equal(img.pixels, chw.transpose(1, 2, 0))
    assert img.value_range == (0.0, 255.0)

    np.save(tmp_path / "c.npy", np.ones((6, 5, 1), dtype=np.int16))
    assert read_image(str(tmp_path / "c.npy")).shape == (6, 5)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("bad.png", b"not a png at all", "cannot identify image"),
        ("bad.tif", b"II*\x00garbage", ""),
        ("bad.dcm", b"\0" * 10, ""),
        ("bad.npy", b"\x93NUMPY broken", ""),
        ("notes.txt", b"hello", "unsupported file type .txt"),
        ("noext", b"hello", "unsupported file type (no suffix)"),
    ],
)
def test_unreadable_files_name_file_and_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match="cannot read") as info:
        read_image(str(path))
    assert isinstance(info.value, ImageReadError)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert reason in info.value.reason and info.value.reason
    assert "\n" not in str(info.value)


def test_truncated_png(tmp_path: Path) -> None:
    Image.fromarray(ramp((32, 32), 255).astype(np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.png"):
        read_image(str(tmp_path / "t.png"))


@pytest.mark.parametrize(
    "array, reason",
    [
        (np.array([[1.0, np.nan]]), "NaN or Inf"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((2, 3, 4, 5)), "expected a 2-D image"),
        (np.zeros((6, 7, 8)), "cannot tell the channel axis"),
        (np.zeros((2, 2), dtype=np.complex64), "unsupported array type"),
    ],
)
def test_malformed_npy(tmp_path: Path, array: np.ndarray, reason: str) -> None:
    np.save(tmp_path / "m.npy", array)
    with pytest.raises(ImageReadError) as info:
        read_image(str(tmp_path / "m.npy"))
    assert reason in info.value.reason


def test_pickled_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match="o.npy"):
        read_image(str(tmp_path / "o.npy"))


def test_color_dicom_is_refused(tmp_path: Path) -> None:
    write_dicom(
        tmp_path / "c.dcm", np.zeros((4, 4, 3)), photometric="RGB", samples=3, bits_stored=16
    )
    with pytest.raises(ImageReadError, match="only grayscale DICOM"):
        read_image(str(tmp_path / "c.dcm"))


def test_list_images(tmp_path: Path) -> None:
    for rel in ("b/x.png", "a/x.png", "a/deep/z.npy", "a/.hidden.png", ".git/y.png",
                "a/notes.txt", "out/o.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    write_dicom(tmp_path / "a" / "IM1", np.zeros((2, 2)))
    (tmp_path / "single.txt").write_bytes(b"")
    found = list_images(
        [str(tmp_path), str(tmp_path / "single.txt"), str(tmp_path / "a" / "x.png")],
        exclude=[str(tmp_path / "out")],
    )
    rel = [os.path.relpath(p, tmp_path) for p in found]
    assert rel == sorted(rel)
    assert rel == ["a/IM1", "a/deep/z.npy", "a/x.png", "b/x.png", "single.txt"]
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images([str(tmp_path / "missing")])


# --------------------------------------------------------------------------- preprocessing


def test_unit_scale_by_type_range_and_bounds() -> None:
    pixels = np.array([[0.0, 32768.0], [65535.0, 100.0]])
    prepared = preprocess(LoadedImage(pixels, (0.0, 65535.0)), Preprocessing())
    assert prepared.tensor.shape == (1, 2, 2) and prepared.tensor.dtype == torch.float32
    np.testing.assert_allclose(prepared.tensor[0].numpy(), pixels / 65535.0, rtol=1e-6)
    assert prepared.low.flatten().tolist() == [0.0] and prepared.high.flatten().tolist() == [1.0]


def test_unit_scale_refuses_a_type_range_the_values_do_not_fill() -> None:
    hu = np.array([[-1024.0, 0.0], [40.0, 3071.0]])  # CT numbers saved as int64
    int64 = (-(2.0**63), 2.0**63 - 1)
    with pytest.raises(ValueError, match="--scale minmax"):
        preprocess(LoadedImage(hu, int64), Preprocessing())
    # minmax keeps them apart; a constant image and 12 bits of 16 are fine
    t = preprocess(LoadedImage(hu, int64), Preprocessing(scale="minmax")).tensor
    assert len(set(t.flatten().tolist())) == 4
    preprocess(LoadedImage(np.zeros((2, 2)), int64), Preprocessing())
    preprocess(LoadedImage(np.array([[0.0, 4095.0]]), (0.0, 65535.0)), Preprocessing())


def test_unit_scale_of_floats() -> None:
    inside = np.array([[0.2, 0.4]])
    t = preprocess(LoadedImage(inside, None), Preprocessing()).tensor
    np.testing.assert_allclose(t[0].numpy(), inside, rtol=1e-6)  # already in [0, 1]
    outside = np.array([[-1.0, 3.0, 1.0]])
    t = preprocess(LoadedImage(outside, None), Preprocessing()).tensor
    np.testing.assert_allclose(t[0].numpy(), [[0.0, 1.0, 0.5]])


def test_minmax_and_none() -> None:
    pixels = np.array([[10.0, 20.0, 30.0]])
    t = preprocess(LoadedImage(pixels, (0.0, 255.0)), Preprocessing(scale="minmax")).tensor
    np.testing.assert_allclose(t[0].numpy(), [[0.0, 0.5, 1.0]])
    p = preprocess(LoadedImage(pixels, (0.0, 255.0)), Preprocessing(scale="none"))
    np.testing.assert_allclose(p.tensor[0].numpy(), pixels)
    assert (p.low.item(), p.high.item()) == (0.0, 255.0)
    p = preprocess(LoadedImage(pixels, None), Preprocessing(scale="none"))
    assert (p.low.item(), p.high.item()) == (10.0, 30.0)


def test_mean_std_map_values_and_bounds() -> None:
    pixels = np.dstack([np.full((2, 2), 255.0), np.zeros((2, 2)), np.full((2, 2), 51.0)])
    prep = Preprocessing(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    p = preprocess(LoadedImage(pixels, (0.0, 255.0)), prep)
    assert p.tensor.shape == (3, 2, 2)
    np.testing.assert_allclose(p.tensor[:, 0, 0].numpy(), [1.0, -1.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(p.low.flatten().numpy(), [-1.0, -1.0, 0.0])
    np.testing.assert_allclose(p.high.flatten().numpy(), [1.0, 3.0, 0.5])
    with pytest.raises(ValueError, match="--mean has 2 values but the model input has 3"):
        preprocess(LoadedImage(pixels, None), Preprocessing(mean=(0.1, 0.2)))


def test_explicit_bounds() -> None:
    p = preprocess(LoadedImage(np.ones((2, 2)), None), Preprocessing(bounds=(-3.0, 4.0)))
    assert (p.low.item(), p.high.item()) == (-3.0, 4.0)


def test_channels() -> None:
    gray = np.arange(4.0).reshape(2, 2)
    t = preprocess(LoadedImage(gray, (0.0, 3.0)), Preprocessing(channels=3)).tensor
    assert t.shape == (3, 2, 2) and torch.equal(t[0], t[2])
    rgb = np.dstack([np.full((2, 2), 255.0), np.zeros((2, 2)), np.zeros((2, 2))])
    t = preprocess(LoadedImage(rgb, (0.0, 255.0)), Preprocessing(channels=1)).tensor
    np.testing.assert_allclose(t.numpy(), np.full((1, 2, 2), 0.299), rtol=1e-6)
    with pytest.raises(ValueError, match="cannot convert an image with 3 channels to 2"):
        preprocess(LoadedImage(rgb, None), Preprocessing(channels=2))


def test_resize_and_mask_back() -> None:
    pixels = ramp((12, 10), 255).astype(np.float64)
    p = preprocess(LoadedImage(pixels, (0.0, 255.0)), Preprocessing(size=(6, 5)))
    assert p.tensor.shape == (1, 6, 5)
    mask = torch.zeros(1, 6, 5)
    mask[0, 1:3, 2:4] = 1
    back = mask_to_original(mask, pixels.shape)
    assert back.shape == (12, 10) and back.dtype == np.uint8
    expected = np.zeros((12, 10), dtype=np.uint8)
    expected[2:6, 4:8] = 1
    np.testing.assert_array_equal(back, expected)


def test_mask_to_original_channels() -> None:
    mask = torch.zeros(3, 2, 2)
    mask[1, 0, 0] = 1
    np.testing.assert_array_equal(mask_to_original(mask, (2, 2)), [[1, 0], [0, 0]])
    per_channel = mask_to_original(mask, (2, 2, 3))
    np.testing.assert_array_equal(per_channel, mask.permute(1, 2, 0).numpy())
    one = mask_to_original(mask[1:2], (2, 2, 3))
    np.testing.assert_array_equal(one[0, 0], [1, 1, 1])


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.floats(-1e4, 1e4), min_size=12, max_size=12),
    typed=st.booleans(),
    scale=st.sampled_from(["unit", "minmax", "none"]),
    mean=st.floats(-5, 5),
    std=st.floats(0.01, 10),
    size=st.sampled_from([None, (2, 2), (5, 7)]),
)
def test_preprocessed_input_lies_in_its_bounds(
    data: list[float], typed: bool, scale: str, mean: float, std: float,
    size: tuple[int, int] | None,
) -> None:
    pixels = np.array(data).reshape(3, 4)
    value_range = (float(pixels.min()) - 1.0, float(pixels.max()) + 2.0) if typed else None
    prep = Preprocessing(scale=scale, mean=(mean,), std=(std,), size=size)  # type: ignore
    p = preprocess(LoadedImage(pixels, value_range), prep)
    assert bool(((p.tensor >= p.low) & (p.tensor <= p.high)).all())
    assert bool(torch.isfinite(p.tensor).all())


def test_render_overlay() -> None:
    pixels = np.linspace(0, 1, 64).reshape(8, 8)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 1
    rgb = render_overlay(pixels, mask, color=(0, 255, 0))
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[2, 2]) == (0, 255, 0)  # outline
    assert rgb[3, 3, 1] > rgb[3, 3, 0]  # tinted inside
    assert rgb[0, 0, 0] == rgb[0, 0, 1] == rgb[0, 0, 2]  # gray outside


# --------------------------------------------------------------------------- writing


def test_atomic_writers_round_trip(tmp_path: Path) -> None:
    image = ramp((4, 5), 255).astype(np.uint8)
    write_png_atomic(str(tmp_path / "m.png"), image)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png")), image)
    write_npz_atomic(str(tmp_path / "a.npz"), {"x": np.arange(3), "s": np.float64(0.5)})
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert z["x"].tolist() == [0, 1, 2] and float(z["s"]) == 0.5
    write_json_atomic(str(tmp_path / "a.json"), {"b": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": [1, 2]}
    write_jsonl_atomic(str(tmp_path / "r.jsonl"), [{"a": 1}, {"a": 2}])
    append_jsonl(str(tmp_path / "r.jsonl"), {"a": 3})
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(line)["a"] for line in lines] == [1, 2, 3]
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.npz", "m.png", "r.jsonl"]
    mode = os.stat(tmp_path / "a.json").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json_atomic(str(target), {"ok": 1})
    with pytest.raises(ValueError):
        write_json_atomic(str(target), {"bad": float("nan")})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["a.json"]
    with pytest.raises(ValueError, match="uint8"):
        write_png_atomic(str(tmp_path / "b.png"), np.zeros((2, 2)))


def test_remove_temp_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f".x.png.abc{image_io.TEMP_SUFFIX}").write_bytes(b"")
    (tmp_path / "keep.png").write_bytes(b"")
    assert remove_temp_files(str(tmp_path)) == 1
    assert os.listdir(tmp_path / "sub") == [] and (tmp_path / "keep.png").exists()
