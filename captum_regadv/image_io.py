r"""Images in and out for the command line: reading, preprocessing, atomic writing.

Pure functions, no model and no global state:

* :func:`load_image` / :func:`read_image` read one PNG, JPEG, BMP, TIFF
  (16-bit too), DICOM or ``.npy`` file into a float64 array ``H x W`` or
  ``H x W x C``; anything unreadable, unsupported or malformed raises a
  ``ValueError`` that names the file and the reason.
* :func:`list_images` expands files and folders (recursively) into a sorted
  list of image files.
* :func:`preprocess` turns an image into a model input ``C x h x w`` with
  its valid value range (``--scale``, ``--channels``, ``--size``,
  ``--mean``/``--std``, ``--bounds`` of the command line);
  :func:`mask_to_original` maps a mask back to the image's own resolution
  and layout; :func:`render_overlay` draws the mask's outline on the image.
* ``write_*_atomic`` write a whole file or nothing: a temporary file in the
  same folder, flushed and ``fsync``-ed, then ``os.replace``-d onto the
  target, and the folder ``fsync``-ed. A process killed mid-write leaves at
  worst a hidden ``.*.regadv-tmp`` file, which :func:`remove_temp_files`
  cleans up.

DICOM pixel data are rescaled as the header says
(``RescaleSlope * stored + RescaleIntercept``), and MONOCHROME1 images are
inverted within their range so that bright always means high. No VOI window
is applied.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Literal, Mapping, Optional, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import Tensor

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageReadError",
    "LoadedImage",
    "Preprocessing",
    "Prepared",
    "Scale",
    "image_kind",
    "load_image",
    "read_image",
    "list_images",
    "preprocess",
    "mask_to_original",
    "render_overlay",
    "write_bytes_atomic",
    "write_png_atomic",
    "write_npz_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "append_jsonl",
    "remove_temp_files",
]

FloatArray = npt.NDArray[np.float64]
Scale = Literal["unit", "minmax", "none"]
ValueRange = tuple[float, float]

_PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")
_DICOM_SUFFIXES = (".dcm", ".dicom")
_NUMPY_SUFFIXES = (".npy",)
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    _PILLOW_SUFFIXES + _TIFF_SUFFIXES + _DICOM_SUFFIXES + _NUMPY_SUFFIXES
)
TEMP_SUFFIX = ".regadv-tmp"
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class LoadedImage:
    """One image as read from disk.

    Attributes:
        pixels: float64 array ``H x W`` (grayscale) or ``H x W x C``.
        value_range: the range ``(low, high)`` the stored type can hold (for
            example ``(0, 65535)`` for 16-bit PNG, the rescaled ``BitsStored``
            range for DICOM); ``None`` for floating-point data.
    """

    pixels: FloatArray
    value_range: Optional[ValueRange]


# --------------------------------------------------------------------------- reading


class ImageReadError(ValueError):
    """An image file that cannot be read: ``"cannot read '<path>': <reason>"``.

    Attributes:
        path: the file.
        reason: why, in one line.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read '{path}': {reason}")
        self.path = path
        self.reason = reason


def image_kind(path: str) -> Optional[str]:
    """``"pillow"``, ``"tiff"``, ``"dicom"``, ``"numpy"`` or ``None`` (unsupported).

    Decided by the file name's suffix; a file with another suffix (or none)
    counts as DICOM when it carries the ``DICM`` magic at byte 128.
    """
    suffix = os.path.splitext(path)[1].lower()
    for kind, suffixes in (
        ("pillow", _PILLOW_SUFFIXES),
        ("tiff", _TIFF_SUFFIXES),
        ("dicom", _DICOM_SUFFIXES),
        ("numpy", _NUMPY_SUFFIXES),
    ):
        if suffix in suffixes:
            return kind
    return "dicom" if _has_dicom_magic(path) else None


def _has_dicom_magic(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def load_image(path: str) -> LoadedImage:
    """Read one image file with its nominal value range.

    Raises:
        ImageReadError: a ``ValueError`` with the message
            ``"cannot read '<path>': <reason>"``, for a missing, unreadable,
            unsupported or malformed file.
    """
    kind = image_kind(path)
    if kind is None:
        suffix = os.path.splitext(path)[1] or "(no suffix)"
        raise ImageReadError(
            path,
            f"unsupported file type {suffix} "
            f"(supported: {', '.join(SUPPORTED_SUFFIXES)} and DICOM files)",
        )
    try:
        return _READERS[kind](path)
    except MemoryError:
        raise
    except Exception as err:  # any library's error becomes one ValueError naming the file
        raise ImageReadError(path, _one_line(err)) from err


def read_image(path: str) -> FloatArray:
    """Read one image file: float64 ``H x W`` or ``H x W x C``.

    Raises:
        ValueError: naming the file and the reason (see :func:`load_image`).
    """
    return load_image(path).pixels


class _Malformed(ValueError):
    """A file that was read but does not hold a usable image (message is the reason)."""


def _one_line(err: BaseException) -> str:
    if isinstance(err, _Malformed):
        return str(err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _nominal_range(dtype: np.dtype[Any], bits: Optional[int] = None) -> Optional[ValueRange]:
    if dtype.kind == "b":
        return (0.0, 1.0)
    if dtype.kind == "u":
        n = bits or dtype.itemsize * 8
        return (0.0, float(2**n - 1))
    if dtype.kind == "i":
        n = bits or dtype.itemsize * 8
        return (float(-(2 ** (n - 1))), float(2 ** (n - 1) - 1))
    return None


def _finish(array: npt.NDArray[Any], value_range: Optional[ValueRange]) -> LoadedImage:
    """Check the layout and values of a freshly read array."""
    if array.dtype.kind not in "biuf":
        raise _Malformed(f"unsupported pixel type {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise _Malformed(
            f"expected a 2-D image H x W or H x W x C, got an array of shape {array.shape}"
        )
    if array.size == 0:
        raise _Malformed(f"the image is empty (shape {array.shape})")
    pixels = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(pixels).all():
        raise _Malformed("the image contains NaN or Inf")
    return LoadedImage(pixels, value_range)


_PILLOW_TO_RGB = ("P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def _read_pillow(path: str) -> LoadedImage:
    with Image.open(path) as im:
        frames = int(getattr(im, "n_frames", 1))
        if frames > 1:
            raise _Malformed(f"has {frames} frames; only single images are supported")
        im.load()
        if im.mode in ("LA", "La"):
            im = im.convert("L")
        elif im.mode in _PILLOW_TO_RGB:
            im = im.convert("RGB")
        array = np.asarray(im)
    return _finish(array, _nominal_range(array.dtype))


def _read_tiff(path: str) -> LoadedImage:
    try:
        import tifffile
    except ImportError:  # Pillow reads the common 8- and 16-bit TIFFs too
        return _read_pillow(path)
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise _Malformed("the TIFF file holds no image")
        series = tif.series[0]
        array = np.asarray(series.asarray())
        axes = str(series.axes)
        bits = int(getattr(tif.pages[0], "bitspersample", 0)) or None
    keep = [k for k, size in enumerate(array.shape) if size != 1 or axes[k] in "YX"]
    layout = "".join(axes[k] for k in keep)
    array = array.reshape([array.shape[k] for k in keep])
    if layout in ("SYX", "CYX"):
        array = np.moveaxis(array, 0, -1)
    elif layout not in ("YX", "YXS", "YXC"):
        raise _Malformed(
            f"unsupported TIFF layout (axes {axes}, shape {series.shape}); expected one "
            "2-D image, optionally with channels"
        )
    if bits is not None and array.dtype.kind in "ui" and bits >= array.dtype.itemsize * 8:
        bits = None
    return _finish(array, _nominal_range(array.dtype, bits))


def _header_float(ds: Any, keyword: str, default: float) -> float:
    value = getattr(ds, keyword, None)
    if value is None or value == "":
        return default
    return float(value)


def _read_dicom(path: str) -> LoadedImage:
    try:
        import pydicom
    except ImportError:
        raise _Malformed("reading DICOM needs pydicom (pip install pydicom)") from None
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise _Malformed("the DICOM file has no pixel data")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise _Malformed(
            f"only grayscale DICOM (MONOCHROME1/2) is supported, got {photometric}"
        )
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames != 1:
        raise _Malformed(f"has {frames} frames; only single-frame DICOM is supported")
    stored = np.asarray(ds.pixel_array)
    if stored.ndim != 2:
        raise _Malformed(f"expected one 2-D grayscale frame, got shape {stored.shape}")
    slope = _header_float(ds, "RescaleSlope", 1.0)
    intercept = _header_float(ds, "RescaleIntercept", 0.0)
    bits = int(getattr(ds, "BitsStored", 0) or 0) or None
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    raw_dtype = np.dtype(np.int64 if signed else np.uint64)
    raw_range = _nominal_range(raw_dtype, bits or stored.dtype.itemsize * 8)
    assert raw_range is not None  # integer dtype
    ends = sorted(v * slope + intercept for v in raw_range)
    value_range = (ends[0], ends[1])
    pixels = stored.astype(np.float64) * slope + intercept
    if photometric == "MONOCHROME1":
        pixels = value_range[0] + value_range[1] - pixels
    return _finish(pixels, value_range)


def _read_numpy(path: str) -> LoadedImage:
    array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):
        raise _Malformed("expected one array in a .npy file")
    if array.dtype.kind not in "biuf":
        raise _Malformed(f"unsupported array type {array.dtype}")
    if array.ndim == 3 and array.shape[-1] > 4:
        if array.shape[0] > 4:
            raise _Malformed(
                f"cannot tell the channel axis of shape {array.shape}; save H x W x C "
                "with C <= 4"
            )
        array = np.moveaxis(array, 0, -1)  # C x H x W
    return _finish(array, _nominal_range(array.dtype))


_READERS: dict[str, Callable[[str], LoadedImage]] = {
    "pillow": _read_pillow,
    "tiff": _read_tiff,
    "dicom": _read_dicom,
    "numpy": _read_numpy,
}


def list_images(paths: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """Expand files and folders into a sorted list of absolute image paths.

    A file named explicitly is always listed (an unsupported one is then
    reported when it is read); inside folders, searched recursively, only
    files of a supported type are listed, and hidden files and folders
    (name starting with ``.``) and the folders in ``exclude`` are skipped.
    Duplicates are listed once.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    excluded = {os.path.abspath(p) for p in exclude}
    found: set[str] = set()
    for path in paths:
        full = os.path.abspath(path)
        if os.path.isdir(full):
            found.update(_walk_images(full, excluded))
        elif os.path.exists(full):
            found.add(full)
        else:
            raise FileNotFoundError(f"input '{path}' does not exist")
    return sorted(found)


def _walk_images(root: str, excluded: set[str]) -> Iterable[str]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [
            d for d in dirs
            if not d.startswith(".") and os.path.join(folder, d) not in excluded
        ]
        for name in files:
            path = os.path.join(folder, name)
            if not name.startswith(".") and image_kind(path) is not None:
                yield path


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input (the command line's options).

    Attributes:
        scale: ``"unit"`` maps integer images from their type's range to
            [0, 1] (8-bit by 255, 16-bit by 65535, DICOM by its rescaled
            ``BitsStored`` range) and floating-point images by their own
            min-max unless they already lie in [0, 1]; ``"minmax"`` maps
            every image by its own min-max; ``"none"`` keeps the values.
        mean, std: per-channel normalisation ``(x - mean) / std`` after
            scaling; one value, or one per model channel.
        channels: model channels: grayscale is replicated, RGB(A) becomes
            luminance for 1; ``None`` keeps the image's channels.
        size: model input ``(height, width)``; bilinear (antialiased) resize.
        bounds: the valid range ``(low, high)`` of the model input; ``None``
            is the range of the scaled values mapped through mean/std
            ([0, 1] for ``unit``, the type's range for ``none``, or the
            image's own min-max for floating-point data).
        dtype: the model input's floating-point type.
    """

    scale: Scale = "unit"
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    channels: Optional[int] = None
    size: Optional[tuple[int, int]] = None
    bounds: Optional[tuple[float, float]] = None
    dtype: torch.dtype = torch.float32


@dataclass(frozen=True)
class Prepared:
    """A model input ``C x h x w`` with its per-channel bounds ``C x 1 x 1``."""

    tensor: Tensor
    low: Tensor
    high: Tensor


def _as_channels(pixels: FloatArray, channels: Optional[int]) -> FloatArray:
    """``H x W x C`` with the requested number of channels."""
    image = pixels if pixels.ndim == 3 else pixels[:, :, None]
    have = image.shape[2]
    if channels is None or channels == have:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=2)
    if channels == 1 and have in (3, 4):
        return np.asarray(image[:, :, :3] @ _LUMA, dtype=np.float64)[:, :, None]
    if channels == 3 and have == 4:
        return image[:, :, :3]
    raise ValueError(f"cannot convert an image with {have} channels to {channels}")


def _scale(
    image: FloatArray, value_range: Optional[ValueRange], scale: Scale
) -> tuple[FloatArray, ValueRange]:
    """Scaled pixels and the range they may take."""
    low, high = float(image.min()), float(image.max())
    if scale == "none":
        return image, value_range if value_range is not None else (low, high)
    if scale == "unit":
        if value_range is not None:
            low, high = value_range
        elif low >= 0.0 and high <= 1.0:
            return image, (0.0, 1.0)
    span = high - low
    scaled = (image - low) / span if span > 0 else np.zeros_like(image)
    return scaled, (0.0, 1.0)


def _per_channel(
    values: Optional[tuple[float, ...]], channels: int, name: str, default: float
) -> Tensor:
    if values is None:
        values = (default,)
    if len(values) not in (1, channels):
        raise ValueError(
            f"--{name} has {len(values)} values but the model input has {channels} channels"
        )
    t = torch.tensor(values, dtype=torch.float64)
    return t.expand(channels).reshape(channels, 1, 1).clone()


def _resize(t: Tensor, size: tuple[int, int], low: float, high: float) -> Tensor:
    if tuple(t.shape[1:]) == size:
        return t
    resized = F.interpolate(
        t[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0]
    return resized.clamp(low, high)  # the interpolation is convex; remove rounding


def preprocess(image: LoadedImage, prep: Preprocessing) -> Prepared:
    """Turn an image into a model input ``C x h x w`` and its valid range.

    Order: channels, scale, resize, normalise. The bounds follow the same
    maps, so the input always lies inside them.

    Raises:
        ValueError: the channels cannot be converted, or ``mean``/``std``
            do not fit the number of channels.
    """
    pixels = _as_channels(image.pixels, prep.channels)
    pixels, (low, high) = _scale(pixels, image.value_range, prep.scale)
    t = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    if prep.size is not None:
        t = _resize(t, prep.size, low, high)
    c = t.shape[0]
    mean = _per_channel(prep.mean, c, "mean", 0.0)
    std = _per_channel(prep.std, c, "std", 1.0)
    t = (t - mean) / std
    if prep.bounds is not None:
        lo_t = torch.full((c, 1, 1), prep.bounds[0], dtype=torch.float64)
        hi_t = torch.full((c, 1, 1), prep.bounds[1], dtype=torch.float64)
    else:
        lo_t, hi_t = (low - mean) / std, (high - mean) / std
    return Prepared(t.to(prep.dtype), lo_t.to(prep.dtype), hi_t.to(prep.dtype))


def mask_to_original(mask: Tensor, shape: Sequence[int]) -> npt.NDArray[np.uint8]:
    """Map a model-space mask ``C x h x w`` back to the image's ``shape``.

    Resized with nearest-neighbour (pixel-centre) sampling. For an ``H x W``
    image the channels are joined (an element counts when any channel is
    in the mask); for ``H x W x C`` with the model's channel count the
    channels are kept, otherwise the joined mask is repeated over them.

    Returns:
        uint8 0/1 array of the given shape.
    """
    if mask.dim() != 3:
        raise ValueError(f"mask must be C x h x w, got shape {tuple(mask.shape)}")
    height, width = int(shape[0]), int(shape[1])
    m = mask.detach().to("cpu", torch.float32)
    if tuple(m.shape[1:]) != (height, width):
        m = F.interpolate(m[None], size=(height, width), mode="nearest-exact")[0]
    on = (m > 0.5).numpy()
    if len(shape) == 2:
        return np.asarray(on.any(axis=0), dtype=np.uint8)
    channels = int(shape[2])
    if on.shape[0] == channels:
        return np.ascontiguousarray(on.transpose(1, 2, 0), dtype=np.uint8)
    joined = np.asarray(on.any(axis=0), dtype=np.uint8)[:, :, None]
    return np.repeat(joined, channels, axis=2)


def render_overlay(
    pixels: FloatArray,
    mask: npt.NDArray[Any],
    color: tuple[int, int, int] = (255, 40, 40),
) -> npt.NDArray[np.uint8]:
    """The image in gray with the mask tinted and outlined in ``color``.

    Args:
        pixels: the image, ``H x W`` or ``H x W x C``; shown min-max scaled.
        mask: ``H x W`` (nonzero = in the mask).
        color: RGB of the tint and the outline.

    Returns:
        uint8 RGB array ``H x W x 3``.
    """
    gray = pixels if pixels.ndim == 2 else (
        pixels[:, :, :3] @ _LUMA if pixels.shape[2] >= 3 else pixels.mean(axis=2)
    )
    low, high = float(gray.min()), float(gray.max())
    level = (gray - low) / (high - low) if high > low else np.zeros_like(gray)
    rgb = np.repeat(level[:, :, None] * 255.0, 3, axis=2)
    inside = np.asarray(mask) != 0
    paint = np.array(color, dtype=np.float64)
    rgb[inside] = 0.7 * rgb[inside] + 0.3 * paint
    edge = inside & ~ndimage.binary_erosion(inside, border_value=0)
    thickness = max(1, round(min(gray.shape) / 256))
    if thickness > 1 and edge.any():
        edge = ndimage.binary_dilation(edge, iterations=thickness - 1)
    rgb[edge] = paint
    return np.asarray(np.clip(np.rint(rgb), 0, 255), dtype=np.uint8)


# --------------------------------------------------------------------------- writing


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: str, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``write(file)`` all at once or not at all."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, _file_mode())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(folder)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    _write_atomic(path, lambda f: f.write(data))


def write_png_atomic(path: str, image: npt.NDArray[Any]) -> None:
    """Write a uint8 ``H x W`` (gray) or ``H x W x 3`` (RGB) array as PNG, atomically."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected uint8 H x W or H x W x 3, got {array.dtype} {array.shape}")
    _write_atomic(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def write_npz_atomic(path: str, arrays: Mapping[str, Any]) -> None:
    """Write named arrays as a compressed ``.npz``, atomically (readable without pickle)."""
    data = {k: np.asarray(v) for k, v in arrays.items()}
    _write_atomic(path, lambda f: np.savez_compressed(f, **data))  # type: ignore[arg-type]


def _json_bytes(obj: Any, indent: Optional[int]) -> bytes:
    return json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False).encode("utf-8")


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN/Inf refused), atomically."""
    _write_atomic(path, lambda f: f.write(_json_bytes(obj, 2) + b"\n"))


def write_jsonl_atomic(path: str, rows: Iterable[Any]) -> None:
    """Write one compact JSON line per row, atomically."""
    data = b"".join(_json_bytes(row, None) + b"\n" for row in rows)
    write_bytes_atomic(path, data)


def append_jsonl(path: str, row: Any) -> None:
    """Append one JSON line to ``path`` and ``fsync`` it.

    Not atomic across a crash: a kill mid-write can leave a torn last line,
    which readers should ignore; use :func:`write_jsonl_atomic` to rewrite
    the whole file when that matters.
    """
    with open(path, "ab") as f:
        f.write(_json_bytes(row, None) + b"\n")
        f.flush()
        os.fsync(f.fileno())


def remove_temp_files(root: str) -> int:
    """Delete the leftovers of interrupted atomic writes under ``root``; return how many."""
    removed = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed
