r"""From an image to a model input and back: preprocessing, masks, overlays.

:func:`preprocess` turns an image (2-D, or a 3-D volume) into a model input
``C x h x w`` (``C x D x H x W``) with its valid value range (``--scale``,
``--channels``, ``--size``, ``--mean``/``--std``, ``--bounds`` of the command
line); :func:`mask_to_original` maps a mask back to the image's own
resolution and layout; :func:`render_overlay` draws the mask's outline on a
2-D image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from ._base import FloatArray, LoadedImage, ValueRange

__all__ = [
    "Preprocessing",
    "Prepared",
    "Scale",
    "preprocess",
    "mask_to_original",
    "render_overlay",
]

Scale = Literal["unit", "minmax", "none"]
_LUMA = np.array([0.299, 0.587, 0.114])



@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input (the command line's options).

    Attributes:
        scale: ``"unit"`` maps integer images from their type's range to
            [0, 1] (8-bit by 255, 16-bit by 65535, DICOM by its rescaled
            ``BitsStored`` range) and floating-point images by their own
            min-max unless they already lie in [0, 1]; ``"minmax"`` maps
            every image by its own min-max; ``"none"`` keeps the values.
        mean, std: per-channel normalisation ``(x - mean) / std`` after
            scaling; one value, or one per model channel.
        channels: model channels: grayscale is replicated, RGB(A) becomes
            luminance for 1; ``None`` keeps the image's channels.
        size: model input ``(height, width)``; bilinear (antialiased) resize.
        bounds: the valid range ``(low, high)`` of the model input; ``None``
            is the range of the scaled values mapped through mean/std
            ([0, 1] for ``unit``, the type's range for ``none``, or the
            image's own min-max for floating-point data).
        dtype: the model input's floating-point type.
    """

    scale: Scale = "unit"
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    channels: Optional[int] = None
    size: Optional[tuple[int, int]] = None
    bounds: Optional[tuple[float, float]] = None
    dtype: torch.dtype = torch.float32


@dataclass(frozen=True)
class Prepared:
    """A model input ``C x h x w`` with its per-channel bounds ``C x 1 x 1``."""

    tensor: Tensor
    low: Tensor
    high: Tensor


def _as_channels(image: LoadedImage, channels: Optional[int]) -> FloatArray:
    """``H x W x C`` (``D x H x W x C`` for a volume) with the requested channels."""
    pixels = image.pixels
    if image.spatial == 3 or pixels.ndim == 2:
        pixels = pixels[..., None]
    have = pixels.shape[-1]
    if channels is None or channels == have:
        return pixels
    if have == 1:
        return np.repeat(pixels, channels, axis=-1)
    if channels == 1 and have in (3, 4):
        return np.asarray(pixels[..., :3] @ _LUMA, dtype=np.float64)[..., None]
    if channels == 3 and have == 4:
        return pixels[..., :3]
    raise ValueError(f"cannot convert an image with {have} channels to {channels}")


def _scale(
    image: FloatArray, value_range: Optional[ValueRange], scale: Scale
) -> tuple[FloatArray, ValueRange]:
    """Scaled pixels and the range they may take."""
    low, high = float(image.min()), float(image.max())
    if scale == "none":
        return image, value_range if value_range is not None else (low, high)
    if scale == "unit":
        if value_range is not None:
            low, high = value_range
        elif low >= 0.0 and high <= 1.0:
            return image, (0.0, 1.0)
    span = high - low
    scaled = (image - low) / span if span > 0 else np.zeros_like(image)
    return scaled, (0.0, 1.0)


def _per_channel(
    values: Optional[tuple[float, ...]], channels: int, name: str, default: float,
    spatial: int = 2,
) -> Tensor:
    if values is None:
        values = (default,)
    if len(values) not in (1, channels):
        raise ValueError(
            f"--{name} has {len(values)} values but the model input has {channels} channels"
        )
    t = torch.tensor(values, dtype=torch.float64)
    return t.expand(channels).reshape((channels,) + (1,) * spatial).clone()


def _resize(t: Tensor, size: tuple[int, int], low: float, high: float) -> Tensor:
    if tuple(t.shape[1:]) == size:
        return t
    resized = F.interpolate(
        t[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0]
    return resized.clamp(low, high)  # the interpolation is convex; remove rounding


def preprocess(image: LoadedImage, prep: Preprocessing) -> Prepared:
    r"""Turn an image into a model input ``C x h x w`` and its valid range.

    Order: channels, scale, resize, normalise:

    .. math::

        x = \frac{s(I) - \mu}{\sigma}, \qquad
        s(I) = \frac{I - \ell}{h - \ell} \text{ (unit, minmax)}

    The bounds follow the same maps, so the input always lies inside them.
    A volume (``image.spatial == 3``) becomes ``C x D x H x W`` with bounds
    ``C x 1 x 1 x 1``; it is never resized.

    Example:
        >>> import numpy as np
        >>> from captum_regadv.fileio import LoadedImage, Preprocessing, preprocess
        >>> volume = LoadedImage(np.full((2, 3, 4), 100.0), (0.0, 400.0), spatial=3)
        >>> p = preprocess(volume, Preprocessing())
        >>> tuple(p.tensor.shape), float(p.tensor.max()), tuple(p.high.shape)
        ((1, 2, 3, 4), 0.25, (1, 1, 1, 1))

    Raises:
        ValueError: the channels cannot be converted, or ``mean``/``std``
            do not fit the number of channels.
    """
    if prep.size is not None and image.spatial == 3:
        raise ValueError("--size resizes 2-D images; volumes are explained at their own size")
    pixels = _as_channels(image, prep.channels)
    pixels, (low, high) = _scale(pixels, image.value_range, prep.scale)
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(pixels, -1, 0)))
    if prep.size is not None:
        t = _resize(t, prep.size, low, high)
    c, ones = t.shape[0], (1,) * image.spatial
    mean = _per_channel(prep.mean, c, "mean", 0.0, image.spatial)
    std = _per_channel(prep.std, c, "std", 1.0, image.spatial)
    t = (t - mean) / std
    if prep.bounds is not None:
        lo_t = torch.full((c,) + ones, prep.bounds[0], dtype=torch.float64)
        hi_t = torch.full((c,) + ones, prep.bounds[1], dtype=torch.float64)
    else:
        lo_t, hi_t = (low - mean) / std, (high - mean) / std
    return Prepared(t.to(prep.dtype), lo_t.to(prep.dtype), hi_t.to(prep.dtype))


def mask_to_original(mask: Tensor, shape: Sequence[int]) -> npt.NDArray[np.uint8]:
    """Map a model-space mask ``C x h x w`` back to the image's ``shape``.

    A volume's mask ``C x D x H x W`` becomes ``D x H x W`` (channels joined).

    Resized with nearest-neighbour (pixel-centre) sampling. For an ``H x W``
    image the channels are joined (an element counts when any channel is
    in the mask); for ``H x W x C`` with the model's channel count the
    channels are kept, otherwise the joined mask is repeated over them.

    Returns:
        uint8 0/1 array of the given shape.
    """
    if mask.dim() == 4 and len(shape) == 3:  # a volume: C x D x H x W, never resized
        if tuple(mask.shape[1:]) != tuple(int(s) for s in shape):
            raise ValueError(f"volume mask of shape {tuple(mask.shape)} does not fit {shape}")
        return np.asarray((mask.detach().cpu() > 0.5).any(dim=0).numpy(), dtype=np.uint8)
    if mask.dim() != 3:
        raise ValueError(f"mask must be C x h x w, got shape {tuple(mask.shape)}")
    height, width = int(shape[0]), int(shape[1])
    m = mask.detach().to("cpu", torch.float32)
    if tuple(m.shape[1:]) != (height, width):
        m = F.interpolate(m[None], size=(height, width), mode="nearest-exact")[0]
    on = (m > 0.5).numpy()
    if len(shape) == 2:
        return np.asarray(on.any(axis=0), dtype=np.uint8)
    channels = int(shape[2])
    if on.shape[0] == channels:
        return np.ascontiguousarray(on.transpose(1, 2, 0), dtype=np.uint8)
    joined = np.asarray(on.any(axis=0), dtype=np.uint8)[:, :, None]
    return np.repeat(joined, channels, axis=2)


def render_overlay(
    pixels: FloatArray,
    mask: npt.NDArray[Any],
    color: tuple[int, int, int] = (255, 40, 40),
) -> npt.NDArray[np.uint8]:
    """The image in gray with the mask tinted and outlined in ``color``.

    Args:
        pixels: the image, ``H x W`` or ``H x W x C``; shown min-max scaled.
        mask: ``H x W`` (nonzero = in the mask).
        color: RGB of the tint and the outline.

    Returns:
        uint8 RGB array ``H x W x 3``.
    """
    gray = pixels if pixels.ndim == 2 else (
        pixels[:, :, :3] @ _LUMA if pixels.shape[2] >= 3 else pixels.mean(axis=2)
    )
    low, high = float(gray.min()), float(gray.max())
    level = (gray - low) / (high - low) if high > low else np.zeros_like(gray)
    rgb = np.repeat(level[:, :, None] * 255.0, 3, axis=2)
    inside = np.asarray(mask) != 0
    paint = np.array(color, dtype=np.float64)
    rgb[inside] = 0.7 * rgb[inside] + 0.3 * paint
    edge = inside & ~ndimage.binary_erosion(inside, border_value=0)
    thickness = max(1, round(min(gray.shape) / 256))
    if thickness > 1 and edge.any():
        edge = ndimage.binary_dilation(edge, iterations=thickness - 1)
    rgb[edge] = paint
    return np.asarray(np.clip(np.rint(rgb), 0, 255), dtype=np.uint8)


