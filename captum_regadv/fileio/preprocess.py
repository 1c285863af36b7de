r"""From an image to a model input and back: preprocessing, masks, overlays.

:func:`preprocess` turns an image (2-D, or a 3-D volume) into a model input
``C x h x w`` (``C x D x H x W``) with its valid value range (``--scale``,
``--channels``, ``--size``, ``--mean``/``--std``, ``--bounds``, the CT window
``--window`` and a user's transform ``--preprocess`` of the command line);
:func:`window` is the CT intensity window; :func:`mask_to_original` maps a
mask back to the image's own resolution and layout; :func:`render_overlay`
draws the mask's outline on a 2-D image.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Callable, Literal, Optional, Sequence

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
    "Transform",
    "preprocess",
    "window",
    "mask_to_original",
    "render_overlay",
]

Scale = Literal["unit", "minmax", "none"]
Transform = Callable[[Tensor], Any]
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
        window: CT intensity window ``(center, width)`` applied to the
            values as read (after the DICOM rescale, so in HU for CT): see
            :func:`window`; the windowed image lies in [0, 1] and ``scale``
            then applies to that range (``unit`` keeps it).
        transform: the model's own preprocessing (e.g. a
            ``monai.transforms.Compose``), called on the image as read (after
            ``channels`` and ``window``) as a float64 tensor ``C x H x W``
            (``C x D x H x W``); it replaces ``scale`` and must return a tensor
            or array of the same shape. Without ``bounds`` the valid range is
            the per-channel min and max of its output.

    Raises:
        ValueError: ``window`` has a width that is not positive, or a value
            that is not finite; ``transform`` is not callable.
    """

    scale: Scale = "unit"
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    channels: Optional[int] = None
    size: Optional[tuple[int, int]] = None
    bounds: Optional[tuple[float, float]] = None
    dtype: torch.dtype = torch.float32
    window: Optional[tuple[float, float]] = None
    transform: Optional[Transform] = None

    def __post_init__(self) -> None:
        if self.window is not None:
            center, width = (float(v) for v in self.window)
            if not (math.isfinite(center) and math.isfinite(width)):
                raise ValueError(f"--window: CENTER and WIDTH must be finite, got {self.window}")
            if width <= 0:
                raise ValueError(f"--window: WIDTH must be > 0, got {width:g}")
        if self.transform is not None and not callable(self.transform):
            raise ValueError(
                f"--preprocess: expected a callable, got {type(self.transform).__name__}"
            )


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
            _check_type_range_fits(high - low, value_range)
            low, high = value_range
        elif low >= 0.0 and high <= 1.0:
            return image, (0.0, 1.0)
    span = high - low
    scaled = (image - low) / span if span > 0 else np.zeros_like(image)
    return scaled, (0.0, 1.0)


def _check_type_range_fits(span: float, value_range: ValueRange) -> None:
    """Refuse ``--scale unit`` where the values fill under :math:`2^{-16}` of the
    pixel type's range (e.g. 0..4095 stored as int64: scaled by the int64
    range they all become 0.5 in float32, a constant image)."""
    width = value_range[1] - value_range[0]
    if 0.0 < span < width * 2.0**-16:
        raise ValueError(
            f"the values span {span:g}, under 1/65536 of the pixel type's range "
            f"[{value_range[0]:g}, {value_range[1]:g}]: scaled to [0, 1] by that range "
            "(--scale unit) the image would be nearly constant; use --scale minmax (each "
            "image's own min-max), --window for CT, or --scale none with --bounds"
        )


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


def _resize(t: Tensor, size: tuple[int, int], low: Tensor, high: Tensor) -> Tensor:
    if tuple(t.shape[1:]) == size:
        return t
    resized = F.interpolate(
        t[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0]
    # the interpolation is convex; remove rounding
    return torch.maximum(torch.minimum(resized, high), low)


def window(pixels: FloatArray, center: float, width: float) -> FloatArray:
    r"""CT intensity window: values clipped to :math:`[c - w/2, c + w/2]`, mapped to [0, 1].

    .. math::

        W(v) = \min\Big(1, \max\Big(0, \frac{v - (c - w/2)}{w}\Big)\Big)

    Example (a soft-tissue window, centre 40 HU, width 400 HU):
        >>> import numpy as np
        >>> window(np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]), 40.0, 400.0).tolist()
        [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    low = center - width / 2.0
    return np.asarray(np.clip((pixels - low) / width, 0.0, 1.0), dtype=np.float64)


def _transformed(t: Tensor, transform: Transform) -> tuple[Tensor, Tensor, Tensor]:
    """The user's transform on ``C x ...``: its output and per-channel min/max."""
    try:
        out = transform(t.clone())
    except Exception as err:  # the user's transform can fail in any way
        raise ValueError(f"--preprocess failed: {type(err).__name__}: {err}") from err
    if not isinstance(out, (Tensor, np.ndarray)):
        raise ValueError(
            f"--preprocess must return a tensor or array, got {type(out).__name__}"
        )
    out = torch.as_tensor(np.asarray(out) if isinstance(out, np.ndarray) else out.detach())
    out = out.as_subclass(Tensor).to("cpu", torch.float64)  # MONAI's MetaTensor: plain
    if tuple(out.shape) != tuple(t.shape):
        raise ValueError(
            f"--preprocess must keep the shape {tuple(t.shape)} (masks map back voxel by "
            f"voxel), got {tuple(out.shape)}"
        )
    if not torch.isfinite(out).all():
        raise ValueError("--preprocess returned NaN or Inf")
    flat = out.flatten(1)
    ones = (1,) * (t.dim() - 1)
    return out, flat.amin(1).reshape((-1,) + ones), flat.amax(1).reshape((-1,) + ones)


def preprocess(image: LoadedImage, prep: Preprocessing) -> Prepared:
    r"""Turn an image into a model input ``C x h x w`` and its valid range.

    Order: channels, window, scale (or the user's transform), resize,
    normalise:

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
    value_range = image.value_range
    if prep.window is not None:
        pixels, value_range = window(pixels, *prep.window), (0.0, 1.0)
    if prep.transform is None:
        pixels, (low, high) = _scale(pixels, value_range, prep.scale)
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(pixels, -1, 0)))
    c, ones = t.shape[0], (1,) * image.spatial
    if prep.transform is not None:
        t, low_c, high_c = _transformed(t, prep.transform)
    else:
        low_c = torch.full((c,) + ones, low, dtype=torch.float64)
        high_c = torch.full((c,) + ones, high, dtype=torch.float64)
    if prep.size is not None:
        t = _resize(t, prep.size, low_c, high_c)
    mean = _per_channel(prep.mean, c, "mean", 0.0, image.spatial)
    std = _per_channel(prep.std, c, "std", 1.0, image.spatial)
    t = (t - mean) / std
    if prep.bounds is not None:
        lo_t = torch.full((c,) + ones, prep.bounds[0], dtype=torch.float64)
        hi_t = torch.full((c,) + ones, prep.bounds[1], dtype=torch.float64)
    else:
        lo_t, hi_t = (low_c - mean) / std, (high_c - mean) / std
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


