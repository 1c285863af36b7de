r"""3-D volumes: NIfTI files and DICOM series in, NIfTI masks and slice figures out.

* :func:`read_nifti` reads ``.nii`` / ``.nii.gz`` (nibabel) with the header's
  ``scl_slope``/``scl_inter`` applied and its affine kept.
* :func:`read_dicom_series` reads a folder holding the slices of one DICOM
  series as one volume ``D x H x W``: each slice rescaled by its own
  ``RescaleSlope``/``RescaleIntercept`` (MONOCHROME1 inverted), the slices
  ordered by their ``ImagePositionPatient`` projected on the slice normal
  :math:`n = r \times c` (``r``, ``c`` the row and column direction cosines
  of ``ImageOrientationPatient``), or by ``InstanceNumber`` when positions are
  missing. The affine maps voxel indices ``(d, h, w)`` to RAS millimetres:

  .. math::

      x_\text{RAS} = \operatorname{diag}(-1, -1, 1)
      \big(P_0 + d\,s + h\,\Delta_r\,c + w\,\Delta_c\,r\big)

  with :math:`P_0` the first slice's position, :math:`s` the step between
  slice positions and :math:`(\Delta_r, \Delta_c)` the ``PixelSpacing``.
* :func:`is_dicom_series` tells whether a folder's DICOM files form one
  such series (two or more slices sharing one ``SeriesInstanceUID``);
  :func:`write_nifti_atomic` writes a volume with an affine, atomically and
  byte-reproducibly; :func:`render_slices` draws the three orthogonal slices
  through a mask's centre.
"""

from __future__ import annotations

import gzip
import io
import os
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

from ._base import (
    FloatArray,
    LoadedImage,
    Malformed,
    ValueRange,
    header_float,
    nominal_range,
    rescaled_range,
    special_file,
)
from .atomic import write_bytes_atomic

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

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti(path: str) -> bool:
    return path.lower().endswith(NIFTI_SUFFIXES)


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise Malformed("reading NIfTI needs nibabel (pip install nibabel)") from None
    return nibabel


def _check_volume(volume: npt.NDArray[Any]) -> FloatArray:
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise Malformed(f"expected a 3-D volume, got shape {volume.shape}")
    if volume.size == 0:
        raise Malformed(f"the volume is empty (shape {volume.shape})")
    pixels = np.ascontiguousarray(volume, dtype=np.float64)
    if not np.isfinite(pixels).all():
        raise Malformed("the volume contains NaN or Inf")
    return pixels


def read_nifti(path: str) -> LoadedImage:
    """A NIfTI volume (axes as stored), scaled by the header, with its affine."""
    image = _nibabel().load(path)
    pixels = _check_volume(np.asarray(image.get_fdata(dtype=np.float64)))
    raw = nominal_range(np.dtype(image.get_data_dtype()))
    slope, intercept = image.dataobj.slope, image.dataobj.inter
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    intercept = 0.0 if intercept is None or not np.isfinite(intercept) else float(intercept)
    value_range = None if raw is None else rescaled_range(raw, slope, intercept)
    return LoadedImage(pixels, value_range, spatial=3, affine=np.asarray(image.affine, float))


# --------------------------------------------------------------------------- DICOM series


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise Malformed("reading DICOM needs pydicom (pip install pydicom)") from None
    return pydicom


def dicom_files(folder: str) -> list[str]:
    """The folder's own DICOM files (not hidden, regular files), sorted."""
    from .readers import image_kind

    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (
            not name.startswith(".") and os.path.isfile(path) and special_file(path) is None
            and not is_nifti(path) and image_kind(path) == "dicom"
        ):
            found.append(path)
    return found


def is_dicom_series(files: Sequence[str]) -> bool:
    """Whether ``files`` (two or more) are the slices of one series (headers only)."""
    if len(files) < 2:
        return False
    try:
        pydicom = _pydicom()
        uids = set()
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            placed = "ImagePositionPatient" in ds or "InstanceNumber" in ds
            uids.add(str(getattr(ds, "SeriesInstanceUID", "")) if placed else "")
            if len(uids) > 1 or "" in uids:
                return False
    except Exception:  # an unreadable file: the files are read one by one
        return False
    return len(uids) == 1 and "" not in uids


def _slice_pixels(ds: Any) -> tuple[FloatArray, ValueRange]:
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise Malformed(f"only grayscale DICOM (MONOCHROME1/2) is supported, got {photometric}")
    stored = np.asarray(ds.pixel_array)
    if stored.ndim != 2:
        raise Malformed(f"expected 2-D slices, got a slice of shape {stored.shape}")
    slope = header_float(ds, "RescaleSlope", 1.0)
    intercept = header_float(ds, "RescaleIntercept", 0.0)
    bits = int(getattr(ds, "BitsStored", 0) or 0) or stored.dtype.itemsize * 8
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    raw = nominal_range(np.dtype(np.int64 if signed else np.uint64), bits)
    assert raw is not None  # an integer type
    value_range = rescaled_range(raw, slope, intercept)
    pixels = stored.astype(np.float64) * slope + intercept
    if photometric == "MONOCHROME1":
        pixels = value_range[0] + value_range[1] - pixels
    return pixels, value_range


def _floats(ds: Any, keyword: str, n: int) -> Optional[FloatArray]:
    value = getattr(ds, keyword, None)
    if value is None or len(value) != n:
        return None
    return np.array([float(v) for v in value])


def _order(slices: Sequence[Any]) -> tuple[list[int], Optional[FloatArray]]:
    """Slice order and, when the slices carry positions, the LPS affine."""
    orientations = [_floats(ds, "ImageOrientationPatient", 6) for ds in slices]
    positions = [_floats(ds, "ImagePositionPatient", 3) for ds in slices]
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
        spacing = _floats(slices[0], "PixelSpacing", 2)
        dr, dc = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
        lps = np.eye(4)
        lps[:3, 0] = (p1 - p0) / (len(order) - 1)
        lps[:3, 1] = col * dr
        lps[:3, 2] = row * dc
        lps[:3, 3] = p0
        return order, _LPS_TO_RAS @ lps
    numbers = [getattr(ds, "InstanceNumber", None) for ds in slices]
    if any(n is None or n == "" for n in numbers):
        raise Malformed("the slices have neither ImagePositionPatient nor InstanceNumber")
    keys_n = [int(n) for n in numbers]  # type: ignore[arg-type]
    if len(set(keys_n)) != len(keys_n):
        raise Malformed("two slices of the series have the same InstanceNumber")
    return sorted(range(len(slices)), key=lambda k: keys_n[k]), None


def read_dicom_series(folder: str) -> LoadedImage:
    """The folder's DICOM slices as one volume ``D x H x W`` (see the module)."""
    pydicom = _pydicom()
    files = dicom_files(folder)
    if len(files) < 2:
        raise Malformed(f"a DICOM series needs two or more slices, found {len(files)}")
    slices = [pydicom.dcmread(path) for path in files]
    if len({str(getattr(ds, "SeriesInstanceUID", "")) for ds in slices}) != 1:
        raise Malformed("the folder holds slices of more than one series")
    if len({(int(ds.Rows), int(ds.Columns)) for ds in slices}) != 1:
        raise Malformed("the slices differ in size")
    order, affine = _order(slices)
    read = [_slice_pixels(slices[k]) for k in order]
    pixels = _check_volume(np.stack([p for p, _ in read]))
    value_range = (min(r[0] for _, r in read), max(r[1] for _, r in read))
    if affine is None:
        thickness = header_float(slices[0], "SliceThickness", 1.0) or 1.0
        spacing = _floats(slices[0], "PixelSpacing", 2)
        steps = [thickness] + ([1.0, 1.0] if spacing is None else [float(s) for s in spacing])
        affine = np.diag(steps + [1.0])
    return LoadedImage(pixels, value_range, spatial=3, affine=affine)


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
    """
    nibabel = _nibabel()
    image = nibabel.Nifti1Image(np.asarray(volume), np.asarray(affine, dtype=np.float64))
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    data = bytes(image.to_bytes())
    if path.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    write_bytes_atomic(path, data)


def render_slices(
    pixels: FloatArray, mask: npt.NDArray[Any], affine: Optional[FloatArray] = None
) -> bytes:
    """PNG of the three orthogonal slices through the mask's centre of mass.

    Each panel shows the volume in gray (with an intensity colorbar) and the
    mask in red, outlined; the legend gives the mask's size. Panels are drawn
    with the voxel spacing of ``affine`` (the norms of its columns).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    from scipy import ndimage

    on = np.asarray(mask) != 0
    centre = ndimage.center_of_mass(on) if on.any() else tuple(s / 2 for s in on.shape)
    index = [min(int(round(c)), s - 1) for c, s in zip(centre, on.shape)]
    spacing = (1.0, 1.0, 1.0) if affine is None else tuple(
        float(v) or 1.0 for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    )
    low, high = float(pixels.min()), float(pixels.max())
    red = ListedColormap([(0.0, 0.0, 0.0, 0.0), (1.0, 0.15, 0.15, 0.45)])
    figure = Figure(figsize=(12, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    shown = None
    for axis, ax in enumerate(axes):
        take = [slice(None)] * 3
        take[axis] = slice(index[axis], index[axis] + 1)
        image = pixels[tuple(take)].squeeze(axis)
        part = on[tuple(take)].squeeze(axis)
        rest = [k for k in range(3) if k != axis]
        aspect = spacing[rest[0]] / spacing[rest[1]]
        shown = ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect,
                          interpolation="nearest")
        ax.imshow(part.astype(np.uint8), cmap=red, vmin=0, vmax=1, aspect=aspect,
                  interpolation="nearest")
        if part.any() and not part.all():
            ax.contour(part.astype(float), levels=[0.5], colors=["red"], linewidths=1.0)
        names = "DHW"
        ax.set_title(f"{names[axis]} = {index[axis]} of {on.shape[axis]} "
                     f"({part.sum()} mask voxels)")
        ax.set_xlabel(f"{names[rest[1]]} (voxels)")
        ax.set_ylabel(f"{names[rest[0]]} (voxels)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    assert shown is not None
    figure.colorbar(shown, ax=list(axes), label="input intensity", shrink=0.8)
    fraction = on.mean() if on.size else 0.0
    figure.legend(
        handles=[Patch(facecolor=(1.0, 0.15, 0.15, 0.45), edgecolor="red",
                       label=f"mask: {int(on.sum())} voxels ({fraction:.1%} of the volume)")],
        loc="outside lower center",
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
