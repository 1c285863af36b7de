r"""DICOM series: the single-frame slices of a folder, grouped by ``SeriesInstanceUID``.

* :func:`series_inputs` lists a folder's series of two or more slices: the
  folder itself when all its DICOM files are the slices of one series, else
  one input per series, named by :func:`~captum_regadv.fileio.kinds.series_path`
  (``<folder>/series-<SeriesNumber>-<SeriesInstanceUID>``). Lone slices and
  multi-frame files stay inputs of their own.
* :func:`read_dicom_series` reads such an input as one volume ``D x H x W``:
  each slice rescaled by its own ``RescaleSlope``/``RescaleIntercept``
  (MONOCHROME1 inverted), the slices ordered by their
  ``ImagePositionPatient`` projected on the slice normal
  :math:`n = r \times c` (``r``, ``c`` the row and column direction cosines
  of ``ImageOrientationPatient``), or by ``InstanceNumber`` when positions
  are missing. The affine maps voxel indices ``(d, h, w)`` to RAS millimetres:

  .. math::

      x_\text{RAS} = \operatorname{diag}(-1, -1, 1)
      \big(P_0 + d\,s + h\,\Delta_r\,c + w\,\Delta_c\,r\big)

  with :math:`P_0` the first slice's position, :math:`s` the step between
  slice positions and :math:`(\Delta_r, \Delta_c)` the ``PixelSpacing``. The
  voxel spacing is :math:`(\lVert s \rVert, \Delta_r, \Delta_c)`; without
  positions the slice spacing is ``SpacingBetweenSlices``, else
  ``SliceThickness``, else 1.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from ._base import FloatArray, LoadedImage, Malformed, header_float, special_file
from .dicom import floats, frame_count, pixel_spacing, pydicom_module, rescale, slope_intercept
from .kinds import image_kind, is_nifti, series_path, split_series_path
from .spacing import LPS_TO_RAS, check_volume, spacing_of_affine

__all__ = ["dicom_files", "is_dicom_series", "read_dicom_series", "series_inputs"]


def dicom_files(folder: str) -> list[str]:
    """The folder's own DICOM files (not hidden, regular files), sorted."""
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (
            not name.startswith(".") and os.path.isfile(path) and special_file(path) is None
            and not is_nifti(path) and image_kind(path) == "dicom"
        ):
            found.append(path)
    return found


def _series_of(path: str) -> Optional[tuple[str, Optional[int]]]:
    """A slice's ``(SeriesInstanceUID, SeriesNumber)``; ``None`` when it is no
    placed single-frame slice (or cannot be read)."""
    try:
        ds = pydicom_module().dcmread(path, stop_before_pixels=True)
        if frame_count(ds) != 1:
            return None
    except Exception:  # an unreadable file is read (and reported) on its own
        return None
    uid = str(getattr(ds, "SeriesInstanceUID", "")).strip()
    if not uid or not ("ImagePositionPatient" in ds or "InstanceNumber" in ds):
        return None
    try:
        number: Optional[int] = int(ds.SeriesNumber)
    except (AttributeError, TypeError, ValueError):
        number = None
    return uid, number


def _groups(files: Sequence[str]) -> dict[str, tuple[Optional[int], list[str]]]:
    """Slices by series UID: ``uid -> (SeriesNumber, files)``, in file order."""
    groups: dict[str, tuple[Optional[int], list[str]]] = {}
    for path in files:
        found = _series_of(path)
        if found is not None:
            groups.setdefault(found[0], (found[1], []))[1].append(path)
    return groups


def is_dicom_series(files: Sequence[str]) -> bool:
    """Whether ``files`` (two or more) are the slices of one series (headers only)."""
    if len(files) < 2:
        return False
    groups = _groups(files)
    return len(groups) == 1 and len(next(iter(groups.values()))[1]) == len(files)


def series_inputs(folder: str) -> tuple[list[str], set[str]]:
    """The folder's series inputs and the DICOM files they cover.

    Every series of two or more slices is one input: the folder itself when
    its DICOM files are exactly one series, else a series name
    (``<folder>/series-<SeriesNumber>-<SeriesInstanceUID>``).
    """
    files = dicom_files(folder)
    groups = {uid: g for uid, g in _groups(files).items() if len(g[1]) >= 2}
    covered = {path for _, paths in groups.values() for path in paths}
    if len(groups) == 1 and covered == set(files):
        return [folder], covered
    return [series_path(folder, uid, number) for uid, (number, _) in groups.items()], covered


def _order(slices: Sequence[Any]) -> tuple[list[int], Optional[FloatArray]]:
    """Slice order and, when the slices carry positions, the RAS affine."""
    orientations = [floats(ds, "ImageOrientationPatient", 6) for ds in slices]
    positions = [floats(ds, "ImagePositionPatient", 3) for ds in slices]
    if all(p is not None for p in positions) and all(o is not None for o in orientations):
        first = orientations[0]
        assert first is not None
        row, col = first[:3], first[3:]
        normal = np.cross(row, col)
        keys = [float(np.dot(p, normal)) for p in positions]  # type: ignore[arg-type]
        order = sorted(range(len(slices)), key=lambda k: keys[k])
        if len({round(keys[k], 6) for k in order}) != len(order):
            raise Malformed("two slices of the series lie at the same position")
        p0, p1 = positions[order[0]], positions[order[-1]]
        assert p0 is not None and p1 is not None
        dr, dc = pixel_spacing(slices[0]) or (1.0, 1.0)
        lps = np.eye(4)
        lps[:3, 0] = (p1 - p0) / (len(order) - 1)
        lps[:3, 1] = col * dr
        lps[:3, 2] = row * dc
        lps[:3, 3] = p0
        return order, LPS_TO_RAS @ lps
    numbers = [getattr(ds, "InstanceNumber", None) for ds in slices]
    if any(n is None or n == "" for n in numbers):
        raise Malformed("the slices have neither ImagePositionPatient nor InstanceNumber")
    keys_n = [int(n) for n in numbers]  # type: ignore[arg-type]
    if len(set(keys_n)) != len(keys_n):
        raise Malformed("two slices of the series have the same InstanceNumber")
    return sorted(range(len(slices)), key=lambda k: keys_n[k]), None


def _series_files(path: str) -> list[str]:
    named = split_series_path(path)
    if named is None:
        return dicom_files(path)
    folder, uid = named
    group = _groups(dicom_files(folder)).get(uid)
    if group is None:
        raise Malformed(f"the folder holds no DICOM series {uid}")
    return group[1]


def read_dicom_series(path: str) -> LoadedImage:
    """One series as a volume ``D x H x W`` (see the module).

    Args:
        path: a folder holding the slices of one series, or a series name
            ``<folder>/series-<SeriesNumber>-<SeriesInstanceUID>``.
    """
    pydicom = pydicom_module()
    files = _series_files(path)
    if len(files) < 2:
        raise Malformed(f"a DICOM series needs two or more slices, found {len(files)}")
    slices = [pydicom.dcmread(f) for f in files]
    if len({str(getattr(ds, "SeriesInstanceUID", "")) for ds in slices}) != 1:
        raise Malformed("the folder holds slices of more than one series")
    if any(frame_count(ds) != 1 for ds in slices):
        raise Malformed("a multi-frame file is not a slice of a series")
    if len({(int(ds.Rows), int(ds.Columns)) for ds in slices}) != 1:
        raise Malformed("the slices differ in size")
    order, affine = _order(slices)
    read = []
    for k in order:
        stored = np.asarray(slices[k].pixel_array)
        if stored.ndim != 2:
            raise Malformed(f"expected 2-D slices, got a slice of shape {stored.shape}")
        read.append(rescale(slices[k], stored, *slope_intercept(slices[k])))
    pixels = check_volume(np.stack([p for p, _ in read]))
    value_range = (min(r[0] for _, r in read), max(r[1] for _, r in read))
    if affine is None:
        first = slices[0]
        step = header_float(first, "SpacingBetweenSlices", 0.0)
        step = step if step > 0 else (header_float(first, "SliceThickness", 1.0) or 1.0)
        dr, dc = pixel_spacing(first) or (1.0, 1.0)
        affine = np.diag([abs(step), dr, dc, 1.0])
    return LoadedImage(pixels, value_range, spatial=3, affine=affine,
                       spacing=spacing_of_affine(affine))
