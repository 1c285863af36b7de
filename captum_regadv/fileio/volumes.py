r"""3-D volumes: NIfTI files in and out (DICOM volumes re-exported from their modules).

* :func:`read_nifti` reads ``.nii`` / ``.nii.gz`` (nibabel) with the header's
  ``scl_slope``/``scl_inter`` applied, its affine kept and its voxel spacing
  taken from the header's zooms (``pixdim``).
* :func:`write_nifti_atomic` writes a volume with an affine, atomically and
  byte-reproducibly.
* DICOM series (:func:`read_dicom_series`, :func:`is_dicom_series`,
  :func:`dicom_files`) live in :mod:`~captum_regadv.fileio.dicom_series`,
  multi-frame DICOM in :mod:`~captum_regadv.fileio.dicom_multiframe`, the
  slice figure :func:`render_slices` in :mod:`~captum_regadv.fileio.slices`;
  they are re-exported here for compatibility.
"""

from __future__ import annotations

import gzip
from typing import Any

import numpy as np
import numpy.typing as npt

from ._base import FloatArray, LoadedImage, Malformed, nominal_range, rescaled_range
from .atomic import write_bytes_atomic
from .dicom_series import dicom_files, is_dicom_series, read_dicom_series
from .kinds import NIFTI_SUFFIXES, is_nifti
from .slices import render_slices
from .spacing import check_volume, spacing_or_none

__all__ = [
    "NIFTI_SUFFIXES",
    "is_nifti",
    "read_nifti",
    "dicom_files",
    "is_dicom_series",
    "read_dicom_series",
    "write_nifti_atomic",
    "render_slices",
]


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise Malformed("reading NIfTI needs nibabel (pip install nibabel)") from None
    return nibabel


def read_nifti(path: str) -> LoadedImage:
    """A NIfTI volume (axes as stored), scaled by the header, with its affine and
    the header's voxel spacing (zooms)."""
    image = _nibabel().load(path)
    pixels = check_volume(np.asarray(image.get_fdata(dtype=np.float64)))
    raw = nominal_range(np.dtype(image.get_data_dtype()))
    slope, intercept = image.dataobj.slope, image.dataobj.inter
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    intercept = 0.0 if intercept is None or not np.isfinite(intercept) else float(intercept)
    value_range = None if raw is None else rescaled_range(raw, slope, intercept)
    spacing = spacing_or_none(image.header.get_zooms()[:3])
    return LoadedImage(pixels, value_range, spatial=3, affine=np.asarray(image.affine, float),
                       spacing=spacing)


# --------------------------------------------------------------------------- writing


def write_nifti_atomic(path: str, volume: npt.NDArray[Any], affine: FloatArray) -> None:
    """Write ``volume`` with ``affine`` as NIfTI-1 (gzipped for ``.nii.gz``), atomically.

    The header stores the affine in float32. The bytes depend only on the
    data (the gzip time stamp is 0), so a resumed run writes the same file
    as an uninterrupted one.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> path = os.path.join(folder, "mask.nii.gz")
        >>> affine = np.diag([2.0, 0.8, 0.8, 1.0])
        >>> write_nifti_atomic(path, np.ones((3, 4, 5), dtype=np.uint8), affine)
        >>> back = read_nifti(path)
        >>> back.pixels.shape, bool(np.allclose(back.affine, affine)), back.value_range
        ((3, 4, 5), True, (0.0, 255.0))
        >>> tuple(round(s, 3) for s in back.spacing)
        (2.0, 0.8, 0.8)
    """
    nibabel = _nibabel()
    image = nibabel.Nifti1Image(np.asarray(volume), np.asarray(affine, dtype=np.float64))
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    data = bytes(image.to_bytes())
    if path.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    write_bytes_atomic(path, data)
