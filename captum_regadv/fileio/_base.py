"""What every reader shares: the loaded image, the read error, value ranges."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

__all__ = ["FloatArray", "ImageReadError", "LoadedImage", "ValueRange"]

FloatArray = npt.NDArray[np.float64]
ValueRange = tuple[float, float]


@dataclass(frozen=True)
class LoadedImage:
    """One image (or volume) as read from disk.

    Attributes:
        pixels: float64 array ``H x W`` (grayscale) or ``H x W x C`` for a
            2-D image; ``D x H x W`` for a volume (``spatial == 3``).
        value_range: the range ``(low, high)`` the stored type can hold (for
            example ``(0, 65535)`` for 16-bit PNG, the rescaled ``BitsStored``
            range for DICOM); ``None`` for floating-point data.
        spatial: 2 for an image, 3 for a volume.
        affine: a volume's voxel-to-world (RAS, millimetres) ``4 x 4``
            matrix; ``None`` for 2-D images.
        spacing: the distance in millimetres between neighbouring elements
            along each spatial axis of ``pixels``: ``(d, h, w)`` for a volume
            (NIfTI header zooms; DICOM slice step and ``PixelSpacing``),
            ``(h, w)`` for a 2-D DICOM image with ``PixelSpacing``; ``None``
            when the file does not say.
    """

    pixels: FloatArray
    value_range: Optional[ValueRange]
    spatial: int = 2
    affine: Optional[FloatArray] = None
    spacing: Optional[tuple[float, ...]] = None


class ImageReadError(ValueError):
    """An image file that cannot be read: ``"cannot read '<path>': <reason>"``.

    Attributes:
        path: the file.
        reason: why, in one line.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read '{path}': {reason}")
        self.path = path
        self.reason = reason


class Malformed(ValueError):
    """A file that was read but does not hold a usable image (message is the reason)."""


def one_line(err: BaseException) -> str:
    if isinstance(err, Malformed):
        return str(err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_file(path: str) -> Optional[str]:
    """What ``path`` is when it is neither a regular file nor a folder, else ``None``.

    Reading a FIFO or a device can block forever, so such paths are never opened.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, what in _SPECIAL:
        if test(mode):
            return what
    return None


def nominal_range(dtype: np.dtype[Any], bits: Optional[int] = None) -> Optional[ValueRange]:
    if dtype.kind == "b":
        return (0.0, 1.0)
    if dtype.kind == "u":
        n = bits or dtype.itemsize * 8
        return (0.0, float(2**n - 1))
    if dtype.kind == "i":
        n = bits or dtype.itemsize * 8
        return (float(-(2 ** (n - 1))), float(2 ** (n - 1) - 1))
    return None


def rescaled_range(value_range: ValueRange, slope: float, intercept: float) -> ValueRange:
    """A stored range through ``slope * v + intercept`` (ordered low, high)."""
    ends = sorted(v * slope + intercept for v in value_range)
    return (ends[0], ends[1])


def header_float(ds: Any, keyword: str, default: float) -> float:
    value = getattr(ds, keyword, None)
    if value is None or value == "":
        return default
    return float(value)
