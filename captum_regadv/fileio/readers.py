r"""Reading images and volumes for the command line.

Pure functions, no model and no global state:

* :func:`load_image` / :func:`read_image` read one PNG, JPEG, BMP, TIFF
  (16-bit too), DICOM or ``.npy`` file into a float64 array ``H x W`` or
  ``H x W x C``, and a NIfTI file or a folder holding one DICOM series into
  a volume ``D x H x W`` (see :mod:`captum_regadv.fileio.volumes`);
  anything unreadable, unsupported or malformed raises a ``ValueError`` that
  names the file and the reason. FIFOs, devices and sockets are never
  opened (reading them can block forever): they fail with that reason.
* :func:`list_images` expands files and folders (recursively) into a sorted
  list of inputs.

DICOM pixel data are rescaled as the header says
(``RescaleSlope * stored + RescaleIntercept``), and MONOCHROME1 images are
inverted within their range so that bright always means high. No VOI window
is applied.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from ._base import (
    FloatArray,
    ImageReadError,
    LoadedImage,
    Malformed,
    ValueRange,
    header_float,
    nominal_range,
    one_line,
    special_file,
)
from .volumes import NIFTI_SUFFIXES, dicom_files, is_dicom_series, read_dicom_series, read_nifti

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageReadError",
    "LoadedImage",
    "image_kind",
    "load_image",
    "read_image",
    "list_images",
]

_PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")
_DICOM_SUFFIXES = (".dcm", ".dicom")
_NUMPY_SUFFIXES = (".npy",)
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    _PILLOW_SUFFIXES + _TIFF_SUFFIXES + _DICOM_SUFFIXES + _NUMPY_SUFFIXES + NIFTI_SUFFIXES
)


def image_kind(path: str) -> Optional[str]:
    """``"pillow"``, ``"tiff"``, ``"dicom"``, ``"numpy"``, ``"nifti"``,
    ``"dicom-series"`` (a folder) or ``None`` (unsupported).

    Decided by the file name's suffix; a regular file with another suffix (or
    none) counts as DICOM when it carries the ``DICM`` magic at byte 128. A
    folder is a ``"dicom-series"`` (it may still fail to read as one).
    """
    if os.path.isdir(path):
        return "dicom-series"
    if path.lower().endswith(NIFTI_SUFFIXES):
        return "nifti"
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
    if special_file(path) is not None:  # never open a FIFO or a device
        return False
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
            unsupported or malformed file, and for a FIFO, device or socket
            (never opened).
    """
    special = special_file(path)
    if special is not None:
        raise ImageReadError(path, f"not a regular file but {special}; skipped")
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
        raise ImageReadError(path, one_line(err)) from err


def read_image(path: str) -> FloatArray:
    """Read one image file: float64 ``H x W`` or ``H x W x C``.

    Raises:
        ValueError: naming the file and the reason (see :func:`load_image`).
    """
    return load_image(path).pixels


def _finish(array: npt.NDArray[Any], value_range: Optional[ValueRange]) -> LoadedImage:
    """Check the layout and values of a freshly read array."""
    if array.dtype.kind not in "biuf":
        raise Malformed(f"unsupported pixel type {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise Malformed(
            f"expected a 2-D image H x W or H x W x C, got an array of shape {array.shape}"
        )
    if array.size == 0:
        raise Malformed(f"the image is empty (shape {array.shape})")
    pixels = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(pixels).all():
        raise Malformed("the image contains NaN or Inf")
    return LoadedImage(pixels, value_range)


_PILLOW_TO_RGB = ("P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def _read_pillow(path: str) -> LoadedImage:
    with Image.open(path) as im:
        frames = int(getattr(im, "n_frames", 1))
        if frames > 1:
            raise Malformed(f"has {frames} frames; only single images are supported")
        im.load()
        if im.mode in ("LA", "La"):
            im = im.convert("L")
        elif im.mode in _PILLOW_TO_RGB:
            im = im.convert("RGB")
        array = np.asarray(im)
    return _finish(array, nominal_range(array.dtype))


def _read_tiff(path: str) -> LoadedImage:
    try:
        import tifffile
    except ImportError:  # Pillow reads the common 8- and 16-bit TIFFs too
        return _read_pillow(path)
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise Malformed("the TIFF file holds no image")
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
        raise Malformed(
            f"unsupported TIFF layout (axes {axes}, shape {series.shape}); expected one "
            "2-D image, optionally with channels"
        )
    if bits is not None and array.dtype.kind in "ui" and bits >= array.dtype.itemsize * 8:
        bits = None
    return _finish(array, nominal_range(array.dtype, bits))


def _read_dicom(path: str) -> LoadedImage:
    try:
        import pydicom
    except ImportError:
        raise Malformed("reading DICOM needs pydicom (pip install pydicom)") from None
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise Malformed("the DICOM file has no pixel data")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise Malformed(
            f"only grayscale DICOM (MONOCHROME1/2) is supported, got {photometric}"
        )
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames != 1:
        raise Malformed(f"has {frames} frames; only single-frame DICOM is supported")
    stored = np.asarray(ds.pixel_array)
    if stored.ndim != 2:
        raise Malformed(f"expected one 2-D grayscale frame, got shape {stored.shape}")
    slope = header_float(ds, "RescaleSlope", 1.0)
    intercept = header_float(ds, "RescaleIntercept", 0.0)
    bits = int(getattr(ds, "BitsStored", 0) or 0) or None
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    raw_dtype = np.dtype(np.int64 if signed else np.uint64)
    raw_range = nominal_range(raw_dtype, bits or stored.dtype.itemsize * 8)
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
        raise Malformed("expected one array in a .npy file")
    if array.dtype.kind not in "biuf":
        raise Malformed(f"unsupported array type {array.dtype}")
    if array.ndim == 3 and array.shape[-1] > 4:
        if array.shape[0] > 4:
            raise Malformed(
                f"cannot tell the channel axis of shape {array.shape}; save H x W x C "
                "with C <= 4"
            )
        array = np.moveaxis(array, 0, -1)  # C x H x W
    return _finish(array, nominal_range(array.dtype))


_READERS: dict[str, Callable[[str], LoadedImage]] = {
    "pillow": _read_pillow,
    "tiff": _read_tiff,
    "dicom": _read_dicom,
    "numpy": _read_numpy,
    "nifti": read_nifti,
    "dicom-series": read_dicom_series,
}


def list_images(paths: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """Expand files and folders into a sorted list of absolute input paths.

    A file named explicitly is always listed (an unsupported one, or a FIFO
    or device, is then reported when it is read); inside folders, searched
    recursively, only files of a supported type are listed, and hidden files
    and folders (name starting with ``.``) and the folders in ``exclude`` are
    skipped. A folder whose DICOM files are the slices of one series (see
    :func:`~captum_regadv.fileio.volumes.is_dicom_series`) is listed as one
    input, the folder itself, in place of its DICOM files. Duplicates are
    listed once.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    excluded = {os.path.abspath(p) for p in exclude}
    found: set[str] = set()
    for path in paths:
        full = os.path.abspath(path)
        if os.path.isdir(full):
            found.update(_walk_images(full, excluded))
        elif os.path.lexists(full):
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
        listed = [
            path for name in sorted(files)
            if not name.startswith(".")
            and image_kind(path := os.path.join(folder, name)) is not None
        ]
        series = dicom_files(folder)
        if is_dicom_series(series):
            yield folder
            listed = [p for p in listed if p not in series]
        yield from listed
