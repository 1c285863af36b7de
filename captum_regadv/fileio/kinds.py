"""What a path is: the registry of input kinds (the bottom floor of :mod:`~captum_regadv.fileio`).

Suffixes, the DICOM magic number and the names of DICOM series inside a
folder; no reading of pixels, so that every reader can import this module
and this module imports no reader.

A folder holding the slices of **several** DICOM series is listed as one
input per series, named ``<folder>/series-<SeriesNumber>-<SeriesInstanceUID>``
(``<folder>/series-<SeriesInstanceUID>`` without a series number): a path
that does not exist on disk but names its folder and series.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from ._base import special_file

__all__ = [
    "NIFTI_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "has_dicom_magic",
    "image_kind",
    "is_nifti",
    "series_path",
    "split_series_path",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NUMPY_SUFFIXES = (".npy",)
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    PILLOW_SUFFIXES + TIFF_SUFFIXES + DICOM_SUFFIXES + NUMPY_SUFFIXES + NIFTI_SUFFIXES
)
_SERIES = re.compile(r"series-(?:(\d+)-)?(\d+(?:\.\d+)+)")


def is_nifti(path: str) -> bool:
    return path.lower().endswith(NIFTI_SUFFIXES)


def series_path(folder: str, uid: str, number: Optional[int] = None) -> str:
    """The input name of one series of a folder holding several.

    Example:
        >>> series_path("/data/ct", "1.2.840.1", 3)
        '/data/ct/series-3-1.2.840.1'
        >>> split_series_path("/data/ct/series-3-1.2.840.1") is None  # no folder /data/ct here
        True
    """
    label = f"series-{uid}" if number is None else f"series-{number}-{uid}"
    return os.path.join(folder, label)


def split_series_path(path: str) -> Optional[tuple[str, str]]:
    """``(folder, SeriesInstanceUID)`` for a series name made by :func:`series_path`.

    ``None`` for anything else, and for a path that exists on disk (a real
    file always wins over a series name).
    """
    folder, name = os.path.split(path)
    match = _SERIES.fullmatch(name)
    if match is None or os.path.lexists(path) or not os.path.isdir(folder):
        return None
    return folder, match.group(2)


def has_dicom_magic(path: str) -> bool:
    """Whether a regular file carries ``DICM`` at byte 128 (FIFOs, devices: never opened)."""
    if special_file(path) is not None:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def image_kind(path: str) -> Optional[str]:
    """``"pillow"``, ``"tiff"``, ``"dicom"``, ``"numpy"``, ``"nifti"``,
    ``"dicom-series"`` (a folder, or one series of a folder) or ``None`` (unsupported).

    Decided by the file name's suffix; a regular file with another suffix (or
    none) counts as DICOM when it carries the ``DICM`` magic at byte 128. A
    folder is a ``"dicom-series"`` (it may still fail to read as one), and so
    is a series name made by :func:`series_path`.
    """
    if os.path.isdir(path) or split_series_path(path) is not None:
        return "dicom-series"
    if is_nifti(path):
        return "nifti"
    suffix = os.path.splitext(path)[1].lower()
    for kind, suffixes in (
        ("pillow", PILLOW_SUFFIXES),
        ("tiff", TIFF_SUFFIXES),
        ("dicom", DICOM_SUFFIXES),
        ("numpy", NUMPY_SUFFIXES),
    ):
        if suffix in suffixes:
            return kind
    return "dicom" if has_dicom_magic(path) else None
