r"""Multi-frame DICOM files (enhanced CT/MR, RT dose, ...) read as one volume.

A grayscale file with ``NumberOfFrames > 1`` becomes a volume ``D x H x W``
(one frame per slice). Each attribute is looked up, in this order, in the
frame's ``PerFrameFunctionalGroupsSequence`` item, the
``SharedFunctionalGroupsSequence``, then the top-level dataset:

* rescale: ``PixelValueTransformationSequence`` (``RescaleSlope``,
  ``RescaleIntercept``; ``DoseGridScaling`` for RT dose), per frame;
* in-plane spacing and slice thickness: ``PixelMeasuresSequence``;
* orientation: ``PlaneOrientationSequence`` (``ImageOrientationPatient``);
* frame positions: ``PlanePositionSequence`` (``ImagePositionPatient``) per
  frame, or for RT dose the first position plus ``GridFrameOffsetVector``
  along the slice normal :math:`n = r \times c`.

With positions the frames are ordered along :math:`n` and the affine is
built as for a series of single-frame slices (see
:mod:`~captum_regadv.fileio.dicom_series`); without, the frames keep their
stored order and the slice spacing is ``SpacingBetweenSlices``, else
``SliceThickness``, else 1 mm.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._base import FloatArray, LoadedImage, Malformed, header_float
from .dicom import floats, frame_count, pixel_spacing, rescale, slope_intercept
from .spacing import LPS_TO_RAS, check_volume, spacing_of_affine

__all__ = ["read_multiframe"]


def _group(ds: Any, frame: Optional[int], sequence: str) -> Optional[Any]:
    """The first item of a functional group macro: per frame, then shared."""
    places = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if frame < len(per_frame):
            places.append(per_frame[frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        places.append(ds.SharedFunctionalGroupsSequence[0])
    for place in places:
        items = getattr(place, sequence, None)
        if items is not None and len(items):
            return items[0]
    return None


def _lookup(ds: Any, frame: Optional[int], sequence: str) -> Any:
    """Where to read a macro's attributes: its item, else the dataset itself."""
    item = _group(ds, frame, sequence)
    return item if item is not None else ds


def _positions(ds: Any, frames: int, normal: FloatArray) -> Optional[list[FloatArray]]:
    per_frame = [
        floats(_lookup(ds, k, "PlanePositionSequence"), "ImagePositionPatient", 3)
        for k in range(frames)
    ] if "PerFrameFunctionalGroupsSequence" in ds else []
    if per_frame and all(p is not None for p in per_frame):
        return per_frame  # type: ignore[return-value]
    origin = floats(ds, "ImagePositionPatient", 3)
    offsets = floats(ds, "GridFrameOffsetVector", frames)
    if origin is not None and offsets is not None:
        return [origin + float(t) * normal for t in offsets]
    return None


def _geometry(ds: Any, frames: int) -> tuple[list[int], FloatArray]:
    """Frame order and the RAS affine."""
    spacing = pixel_spacing(_lookup(ds, 0, "PixelMeasuresSequence")) or (1.0, 1.0)
    orientation = floats(_lookup(ds, 0, "PlaneOrientationSequence"), "ImageOrientationPatient", 6)
    if orientation is not None:
        row, col = orientation[:3], orientation[3:]
        normal = np.cross(row, col)
        positions = _positions(ds, frames, normal)
        if positions is not None:
            keys = [float(np.dot(p, normal)) for p in positions]
            order = sorted(range(frames), key=lambda k: keys[k])
            if len({round(k, 6) for k in keys}) != frames:
                raise Malformed("two frames lie at the same position")
            lps = np.eye(4)
            lps[:3, 0] = (positions[order[-1]] - positions[order[0]]) / (frames - 1)
            lps[:3, 1] = col * spacing[0]
            lps[:3, 2] = row * spacing[1]
            lps[:3, 3] = positions[order[0]]
            return order, LPS_TO_RAS @ lps
    measures = _lookup(ds, 0, "PixelMeasuresSequence")
    step = header_float(measures, "SpacingBetweenSlices", 0.0) or header_float(
        ds, "SpacingBetweenSlices", 0.0)
    if step <= 0:
        step = header_float(measures, "SliceThickness", 0.0) or header_float(
            ds, "SliceThickness", 0.0)
    return list(range(frames)), np.diag([abs(step) or 1.0, spacing[0], spacing[1], 1.0])


def read_multiframe(ds: Any) -> LoadedImage:
    """A multi-frame grayscale dataset (pixels included) as a volume (see the module)."""
    frames = frame_count(ds)
    stored = np.asarray(ds.pixel_array)
    if stored.ndim != 3 or stored.shape[0] != frames:
        raise Malformed(
            f"expected {frames} grayscale frames, got pixel data of shape {stored.shape}"
        )
    order, affine = _geometry(ds, frames)
    read = []
    for k in order:
        transform = _lookup(ds, k, "PixelValueTransformationSequence")
        slope, intercept = slope_intercept(transform if "RescaleSlope" in transform else ds)
        read.append(rescale(ds, stored[k], slope, intercept))
    pixels = check_volume(np.stack([p for p, _ in read]))
    value_range = (min(r[0] for _, r in read), max(r[1] for _, r in read))
    return LoadedImage(pixels, value_range, spatial=3, affine=affine,
                       spacing=spacing_of_affine(affine))
