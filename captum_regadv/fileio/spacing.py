r"""Volume geometry shared by the volume readers: checks, affines and voxel spacing.

The voxel spacing along voxel axis :math:`k` is the length of the affine's
column :math:`k`, :math:`\lVert A_{:3,k} \rVert` (millimetres), the distance
in the world between two neighbouring voxels along that axis.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

from ._base import FloatArray, Malformed

__all__ = ["LPS_TO_RAS", "check_volume", "spacing_of_affine", "spacing_or_none"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def check_volume(volume: npt.NDArray[Any]) -> FloatArray:
    """A freshly read volume as contiguous float64 ``D x H x W``, checked."""
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


def spacing_of_affine(affine: npt.ArrayLike) -> tuple[float, float, float]:
    """The voxel spacing of a ``4 x 4`` affine: the norms of its first three columns.

    Example:
        >>> spacing_of_affine([[0, 0, -1.5, 0], [0, 0.9, 0, 0], [2, 0, 0, 0], [0, 0, 0, 1]])
        (2.0, 0.9, 1.5)
    """
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def spacing_or_none(values: Optional[Sequence[Any]]) -> Optional[tuple[float, ...]]:
    """Positive finite spacings as floats, else ``None`` (the file does not say)."""
    if values is None:
        return None
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return out if out and all(np.isfinite(v) and v > 0 for v in out) else None
