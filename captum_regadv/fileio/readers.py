r"""Reading images and volumes for the command line.

Pure functions, no model and no global state:

* :func:`load_image` / :func:`read_image` read one PNG, JPEG, BMP, TIFF
  (16-bit too), DICOM or ``.npy`` file into a float64 array ``H x W`` or
  ``H x W x C``, and a NIfTI file, a multi-frame DICOM file or a DICOM
  series (a folder, or one series of a folder) into a volume ``D x H x W``
  (see :mod:`~captum_regadv.fileio.volumes`,
  :mod:`~captum_regadv.fileio.dicom_series`,
  :mod:`~captum_regadv.fileio.dicom_multiframe`);
  anything unreadable, unsupported or malformed raises a ``ValueError`` that
  names the file and the reason. FIFOs, devices and sockets are never
  opened (reading them can block forever): they fail with that reason.
* :func:`list_images` expands files and folders (recursively) into a sorted
  list of inputs.

DICOM pixel data are rescaled as the header says
(``RescaleSlope * stored + RescaleIntercept``), and MONOCHROME1 images are
inverted within their range so that bright always means high (see
:mod:`~captum_regadv.fileio.dicom`). No VOI window is applied here.

Which reader reads a path is decided by
:func:`~captum_regadv.fileio.kinds.image_kind`, one floor down, so that no
volume reader needs to import this module.
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
    nominal_range,
    one_line,
    special_file,
)
from .dicom import frame_count, grayscale, pixel_spacing, pydicom_module, rescale, slope_intercept
from .dicom_multiframe import read_multiframe
from .dicom_series import read_dicom_series, series_inputs
from .kinds import SUPPORTED_SUFFIXES, image_kind
from .volumes import read_nifti

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageReadError",
    "LoadedImage",
    "image_kind",
    "load_image",
    "read_image",
    "list_images",
]


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
    ds = pydicom_module().dcmread(path)
    if "PixelData" not in ds:
        raise Malformed("the DICOM file has no pixel data")
    grayscale(ds)
    if frame_count(ds) > 1:
        return read_multiframe(ds)  # a volume, one frame per slice
    stored = np.asarray(ds.pixel_array)
    if stored.ndim != 2:
        raise Malformed(f"expected one 2-D grayscale frame, got shape {stored.shape}")
    pixels, value_range = rescale(ds, stored, *slope_intercept(ds))
    image = _finish(pixels, value_range)
    return LoadedImage(image.pixels, image.value_range, spacing=pixel_spacing(ds))


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
    skipped. The slices of a DICOM series (two or more single-frame files
    sharing a ``SeriesInstanceUID``) are listed as one input in place of
    their files: the folder itself when its DICOM files are one series, else
    one series name per series (see
    :func:`~captum_regadv.fileio.dicom_series.series_inputs`). A series name
    given explicitly is listed as given. Duplicates are listed once.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    excluded = {os.path.abspath(p) for p in exclude}
    found: set[str] = set()
    for path in paths:
        full = os.path.abspath(path)
        if os.path.isdir(full):
            found.update(_walk_images(full, excluded))
        elif os.path.lexists(full) or image_kind(full) == "dicom-series":
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
        series, covered = series_inputs(folder)
        yield from series
        yield from (p for p in listed if p not in covered)
