r"""DICOM helpers every DICOM reader shares: pixels, rescale, geometry tags.

Stored values become modality values as the header says,

.. math::

    v = \text{RescaleSlope} \cdot s + \text{RescaleIntercept}

(``DoseGridScaling`` for RT dose, which has no rescale), and MONOCHROME1
images are inverted within their range so that bright always means high.
No VOI window is applied (the command line's ``--window`` does that).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from ._base import FloatArray, Malformed, ValueRange, header_float, nominal_range, rescaled_range

__all__ = [
    "floats",
    "frame_count",
    "grayscale",
    "pixel_spacing",
    "pydicom_module",
    "rescale",
    "slope_intercept",
]


def pydicom_module() -> Any:
    try:
        import pydicom
    except ImportError:
        raise Malformed("reading DICOM needs pydicom (pip install pydicom)") from None
    return pydicom


def frame_count(ds: Any) -> int:
    """``NumberOfFrames`` (1 when absent)."""
    try:
        return int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise Malformed(f"invalid NumberOfFrames {ds.NumberOfFrames!r}") from None


def grayscale(ds: Any) -> str:
    """The photometric interpretation, refused unless MONOCHROME1/2."""
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise Malformed(f"only grayscale DICOM (MONOCHROME1/2) is supported, got {photometric}")
    return photometric


def floats(ds: Any, keyword: str, n: int) -> Optional[FloatArray]:
    """The ``n`` numbers of a multi-valued tag, or ``None`` when absent or malformed."""
    value = getattr(ds, keyword, None)
    if value is None or value == "":
        return None
    try:
        values = np.array([float(v) for v in (value if n > 1 else [value])])
    except (TypeError, ValueError):
        return None
    return values if len(values) == n and np.isfinite(values).all() else None


def pixel_spacing(ds: Any) -> Optional[tuple[float, float]]:
    """``PixelSpacing`` (row spacing, column spacing) in mm, if positive."""
    spacing = floats(ds, "PixelSpacing", 2)
    if spacing is None or not (spacing > 0).all():
        return None
    return float(spacing[0]), float(spacing[1])


def slope_intercept(ds: Any) -> tuple[float, float]:
    """``RescaleSlope``/``RescaleIntercept`` (``DoseGridScaling`` for RT dose)."""
    if "RescaleSlope" not in ds and "DoseGridScaling" in ds:
        return header_float(ds, "DoseGridScaling", 1.0), 0.0
    return header_float(ds, "RescaleSlope", 1.0), header_float(ds, "RescaleIntercept", 0.0)


def rescale(
    ds: Any, stored: npt.NDArray[Any], slope: float, intercept: float
) -> tuple[FloatArray, ValueRange]:
    """Stored values to modality values and the range they may take.

    The range is that of ``BitsStored`` bits (signed when
    ``PixelRepresentation`` is 1) through the rescale.
    """
    photometric = grayscale(ds)
    bits = int(getattr(ds, "BitsStored", 0) or 0) or stored.dtype.itemsize * 8
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    raw = nominal_range(np.dtype(np.int64 if signed else np.uint64), bits)
    assert raw is not None  # an integer type
    value_range = rescaled_range(raw, slope, intercept)
    pixels = stored.astype(np.float64) * slope + intercept
    if photometric == "MONOCHROME1":
        pixels = value_range[0] + value_range[1] - pixels
    return pixels, value_range
