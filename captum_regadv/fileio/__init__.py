"""Files in and out for the command line (no model, no global state).

* :mod:`~captum_regadv.fileio.readers`: every format by its kind, 2-D image
  formats and input listing;
* :mod:`~captum_regadv.fileio.volumes`: NIfTI volumes and masks;
* :mod:`~captum_regadv.fileio.dicom_series`: DICOM series (several per
  folder, grouped by ``SeriesInstanceUID``);
  :mod:`~captum_regadv.fileio.dicom_multiframe`: multi-frame DICOM volumes;
  :mod:`~captum_regadv.fileio.dicom`: their shared rescale and tags;
* :mod:`~captum_regadv.fileio.slices`: orthogonal-slice figures in mm;
* :mod:`~captum_regadv.fileio.kinds` (input kinds and suffixes),
  :mod:`~captum_regadv.fileio.spacing` (volume checks, voxel spacing) and
  ``_base``: the bottom floor, imported by the readers and importing none;
* :mod:`~captum_regadv.fileio.preprocess`: image to model input and back
  (CT windowing, a user's transform such as MONAI's);
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
from .preprocess import (
    Prepared,
    Preprocessing,
    Scale,
    mask_to_original,
    preprocess,
    render_overlay,
    window,
)
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
    "window",
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
