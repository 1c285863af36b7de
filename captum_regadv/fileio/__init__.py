"""Files in and out for the command line (no model, no global state).

* :mod:`~captum_regadv.fileio.readers`: 2-D image formats and input listing;
* :mod:`~captum_regadv.fileio.volumes`: NIfTI and DICOM series volumes, NIfTI
  masks and orthogonal-slice figures;
* :mod:`~captum_regadv.fileio.preprocess`: image to model input and back;
* :mod:`~captum_regadv.fileio.atomic`: writing whole files or nothing.
"""

from __future__ import annotations

from ._base import ImageReadError, LoadedImage
from .atomic import (
    TEMP_SUFFIX,
    append_jsonl,
    remove_temp_files,
    write_bytes_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    write_npz_atomic,
    write_png_atomic,
)
from .preprocess import Prepared, Preprocessing, Scale, mask_to_original, preprocess, render_overlay
from .readers import SUPPORTED_SUFFIXES, image_kind, list_images, load_image, read_image
from .volumes import read_dicom_series, read_nifti, render_slices, write_nifti_atomic

__all__ = [
    "SUPPORTED_SUFFIXES",
    "TEMP_SUFFIX",
    "ImageReadError",
    "LoadedImage",
    "Preprocessing",
    "Prepared",
    "Scale",
    "image_kind",
    "load_image",
    "read_image",
    "list_images",
    "read_nifti",
    "read_dicom_series",
    "preprocess",
    "mask_to_original",
    "render_overlay",
    "render_slices",
    "write_bytes_atomic",
    "write_png_atomic",
    "write_npz_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_nifti_atomic",
    "append_jsonl",
    "remove_temp_files",
]
