r"""Synthetic glyph images: find the cross among similar shapes.

A second domain, unlike mammograms, where the right explanation is an
object of known shape. Every image holds a textured background (smooth
multi-scale noise, a faint oriented grating and pixel noise) and three to
five bright outline glyphs at random positions and rotations, drawn with
a one-pixel anti-aliased edge:

* the **target**, a plus-shaped cross (two centred bars), on positive
  images only, exactly once;
* **distractors**, on both classes: a ``T`` and an ``L`` (made of the same
  two bars, so the difference from the cross is where they meet), a ring,
  a square outline and a triangle outline.

Both classes hold the same number of glyphs, drawn from the same
intensity and size ranges, so counting bright blobs or measuring brightness
does not reveal the class. The ground-truth mask is the target's pixels
(empty on negatives).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._generation import (
    generate,
    BenchmarkDataset,
    pixel_grid,
    randint,
    screen,
    smooth_noise,
    uniform,
)

__all__ = ["GLYPHS", "make_shapes_dataset"]

#: The glyph names; the first one is the target.
GLYPHS: tuple[str, ...] = ("cross", "tee", "ell", "ring", "square", "triangle")


def make_shapes_dataset(
    n: int,
    *,
    size: int = 64,
    positive_fraction: float = 0.5,
    seed: int = 0,
) -> BenchmarkDataset:
    """Generate ``n`` glyph images; positives contain one cross.

    Args:
        n: number of images.
        size: image side in pixels, at least 32. Default 64. Glyphs scale
            with it (about a quarter of the side wide).
        positive_fraction: fraction of positive images (exactly
            ``round(n * positive_fraction)``, shuffled). Default 0.5.
        seed: seed of the ``torch.Generator`` that draws everything; the
            same seed gives bit-identical tensors. Default 0.

    Returns:
        A :class:`~.datasets.BenchmarkDataset` named ``"shapes"``: images
        ``n x 1 x size x size`` float32 in ``[0, 1]``, labels ``(n,)`` int64,
        masks ``n x 1 x size x size`` bool, the cross's pixels.

    Raises:
        ValueError: if ``size < 32``, ``n < 0`` or the fraction is outside
            ``[0, 1]``.

    Example:
        >>> ds = make_shapes_dataset(2, size=32, seed=0)
        >>> ds.images.shape, ds.labels.tolist()
        (torch.Size([2, 1, 32, 32]), [1, 0])
        >>> [bool(m.any()) for m in ds.masks]
        [True, False]
    """
    return generate(
        "shapes", draw_shapes_image, n, size=size, positive_fraction=positive_fraction, seed=seed
    )


def draw_shapes_image(
    size: int,
    positive: bool,
    generator: torch.Generator,
    *,
    contrast: tuple[float, float] = (0.45, 0.75),
) -> tuple[Tensor, Tensor]:
    """One ``size x size`` glyph image and its target mask.

    Args:
        size: image side.
        positive: whether to draw the cross.
        generator: source of all randomness.
        contrast: range of the glyphs' screen-blend opacity.

    Returns:
        ``(image, mask)``, float32 and bool, both ``size x size``.
    """
    rows, cols = pixel_grid(size)
    image = _background(rows, cols, size, generator)

    count = randint(generator, 3, 5)
    kinds = [randint(generator, 1, len(GLYPHS) - 1) for _ in range(count)]
    if positive:
        kinds[0] = 0
    placed: list[tuple[float, float, float]] = []
    mask = torch.zeros(size, size, dtype=torch.bool)
    for kind in kinds:
        half = size * uniform(generator, 0.09, 0.13)
        spot = _free_spot(placed, half, size, generator)
        if spot is None:
            if kind == 0:  # the target is drawn first: always has room
                raise RuntimeError("no room for the target")  # pragma: no cover
            continue
        row, col = spot
        placed.append((row, col, half))
        angle = uniform(generator, 0.0, 2.0 * math.pi)
        stroke = max(1.0, 0.02 * size)
        distance = _signed_distance(
            GLYPHS[kind], rows - row, cols - col, angle, half, stroke
        )
        coverage = (0.5 - distance).clamp(0.0, 1.0)
        image = screen(image, uniform(generator, *contrast) * coverage)
        if kind == 0:
            mask |= distance < 0.0
    return image.clamp(0.0, 1.0), mask


def _background(
    rows: Tensor, cols: Tensor, size: int, generator: torch.Generator
) -> Tensor:
    level = uniform(generator, 0.2, 0.4)
    texture = 0.06 * smooth_noise(generator, size, 4)
    texture = texture + 0.03 * smooth_noise(generator, size, max(4, size // 8))
    theta = uniform(generator, 0.0, math.pi)
    period = size * uniform(generator, 0.08, 0.2)
    phase = uniform(generator, 0.0, 2.0 * math.pi)
    along = rows * math.cos(theta) + cols * math.sin(theta)
    texture = texture + 0.04 * torch.sin(2.0 * math.pi * along / period + phase)
    texture = texture + 0.02 * torch.randn(size, size, generator=generator)
    return (level + texture).clamp(0.0, 1.0)


def _free_spot(
    placed: list[tuple[float, float, float]],
    half: float,
    size: int,
    generator: torch.Generator,
) -> tuple[float, float] | None:
    """A centre at least ``half + 1`` from the border and clear of other glyphs."""
    margin = half * 1.05 + 1.0
    for _ in range(100):
        row = uniform(generator, margin, size - 1.0 - margin)
        col = uniform(generator, margin, size - 1.0 - margin)
        if all(
            math.hypot(row - r, col - c) >= 1.45 * (half + h) + 2.0
            for r, c, h in placed
        ):
            return row, col
    return None


def _box(u: Tensor, v: Tensor, half_u: float, half_v: float) -> Tensor:
    """Signed distance to an axis-aligned box centred on the origin."""
    du, dv = u.abs() - half_u, v.abs() - half_v
    outside = torch.sqrt(du.clamp(min=0.0) ** 2 + dv.clamp(min=0.0) ** 2)
    return outside + torch.maximum(du, dv).clamp(max=0.0)


def _signed_distance(
    kind: str, dr: Tensor, dc: Tensor, angle: float, half: float, stroke: float
) -> Tensor:
    """Signed distance (pixels, negative inside) to a glyph at the origin.

    ``half`` is the glyph's half extent, ``stroke`` its half line width.
    """
    u = dc * math.cos(angle) + dr * math.sin(angle)
    v = -dc * math.sin(angle) + dr * math.cos(angle)
    if kind == "cross":
        return torch.minimum(_box(u, v, half, stroke), _box(u, v, stroke, half))
    if kind == "tee":
        top = _box(u, v - (half - stroke), half, stroke)
        return torch.minimum(top, _box(u, v, stroke, half))
    if kind == "ell":
        upright = _box(u + (half - stroke), v, stroke, half)
        return torch.minimum(upright, _box(u, v + (half - stroke), half, stroke))
    if kind == "ring":
        return (torch.sqrt(u**2 + v**2) - (half - stroke)).abs() - stroke
    if kind == "square":
        side = half * 0.85
        outer = _box(u, v, side, side)
        return torch.maximum(outer, -(outer + 2.0 * stroke))
    if kind == "triangle":
        inradius = half * 0.55
        angles = (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)
        planes = [u * math.cos(a) + v * math.sin(a) for a in angles]
        outer = torch.stack(planes).max(0).values - inradius
        return torch.maximum(outer, -(outer + 2.0 * stroke))
    raise ValueError(f"unknown glyph {kind!r}")
