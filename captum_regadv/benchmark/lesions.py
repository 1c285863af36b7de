r"""Synthetic mammogram-like images with lesion ground truth.

A stand-in for DDSM (which cannot be downloaded here): grayscale ``size x
size`` images of a breast-shaped region of fibro-glandular texture on a dark
background, where the positive class carries one to three *lesions* and the
negative class none. The lesion pixels are returned as the ground-truth
mask, so an explanation can be scored against them (the paper's section 5.2
CC hit rate).

What an image holds (both classes unless stated):

* **tissue**: a half-ellipse breast region against the chest wall with a
  soft skin line (a long bright edge), density falling off towards the
  nipple, multi-scale smooth noise, fibrous strands converging on the
  nipple and fine quantum noise; optionally a bright pectoral-muscle
  triangle in a corner (a second large bright edge);
* **distractors**, lesion-*like* but not the class: one to three vessels
  (long thin bright curves), one or two benign "eggshell" calcifications
  (small rings with a dark centre, the brightest objects of the image, so
  that the brightest pixel does not give the class away) and up to two
  benign smooth densities (large, faint, Gaussian-edged blobs);
* **lesions** (positives only), of sizes spanning the paper's range:
  clusters of 3-8 micro-calcifications, each a single pixel or a 2 x 2
  square, and masses, irregular round blobs with a soft edge and a radius
  up to ``size / 10``, half of them spiculated.

Objects are drawn by screen blending (:func:`~._generation.screen`), so every
lesion pixel is brighter than the tissue it covers, and lesions are placed
away from vessels, rings and the pectoral muscle so that their masks are
clean. The images are finally flipped at random (chest wall left or right,
muscle top or bottom). Lesions are local: they change a few hundred pixels
at most, so global brightness does not give the class away.
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
    segment_distance,
    smooth_noise,
    uniform,
)

__all__ = ["make_lesion_dataset"]

_BACKGROUND = 0.03


def make_lesion_dataset(
    n: int,
    *,
    size: int = 128,
    positive_fraction: float = 0.5,
    seed: int = 0,
) -> BenchmarkDataset:
    """Generate ``n`` mammogram-like images, lesion masks and labels.

    Args:
        n: number of images.
        size: image side in pixels, at least 32. Default 128. Lesion and
            distractor sizes scale with it, except micro-calcifications,
            which stay 1-2 pixels wide.
        positive_fraction: fraction of positive images (exactly
            ``round(n * positive_fraction)`` of them, in shuffled order).
            Default 0.5.
        seed: seed of the ``torch.Generator`` that draws everything; the
            same seed gives bit-identical tensors. Default 0.

    Returns:
        A :class:`~.datasets.BenchmarkDataset` named ``"lesions"``: images
        ``n x 1 x size x size`` float32 in ``[0, 1]``, labels ``(n,)`` int64,
        masks ``n x 1 x size x size`` bool, the lesion pixels (all False on
        negatives, non-empty on positives).

    Raises:
        ValueError: if ``size < 32``, ``n < 0`` or the fraction is outside
            ``[0, 1]``.

    Example:
        >>> ds = make_lesion_dataset(2, size=32, seed=0)
        >>> ds.images.shape, ds.labels.tolist()
        (torch.Size([2, 1, 32, 32]), [1, 0])
        >>> [bool(m.any()) for m in ds.masks]
        [True, False]
    """
    return generate(
        "lesions", _draw_image, n, size=size, positive_fraction=positive_fraction, seed=seed
    )


def _draw_image(
    size: int, positive: bool, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    rows, cols = pixel_grid(size)
    scale = size / 128.0

    # Breast region: half ellipse against the chest wall (column 0).
    centre_row = size * uniform(generator, 0.42, 0.58)
    axis_col = size * uniform(generator, 0.8, 1.0)
    axis_row = size * uniform(generator, 0.42, 0.55)
    radius = torch.sqrt((cols / axis_col) ** 2 + ((rows - centre_row) / axis_row) ** 2)
    region = torch.sigmoid((1.0 - radius) * min(axis_col, axis_row) / 1.2)

    # Tissue density and texture.
    density = 0.2 + 0.2 * (1.0 - radius.clamp(0.0, 1.0)) ** 0.7
    density = density + uniform(generator, 0.0, 0.08)
    density = density + 0.07 * smooth_noise(generator, size, 4)
    density = density + 0.035 * smooth_noise(generator, size, max(4, size // 10))
    density = density + 0.015 * smooth_noise(generator, size, size // 2)
    density = density + 0.08 * _fibres(rows, cols, centre_row, axis_col, generator)
    density = density + 0.01 * torch.randn(size, size, generator=generator)
    image = density.clamp(0.05, 0.75) * region + _BACKGROUND * (1.0 - region)

    # Places a lesion must avoid: pectoral muscle, vessels, rings, the skin.
    blocked = region < 0.99

    if randint(generator, 0, 1):
        alpha = _pectoral(rows, cols, size, generator) * region
        image = screen(image, alpha)
        blocked |= alpha > 0.02
    for _ in range(randint(generator, 0, 2)):
        alpha = _smooth_density(rows, cols, size, region, generator) * region
        image = screen(image, alpha)
    for _ in range(randint(generator, 1, 3)):
        alpha = _vessel(rows, cols, size, centre_row, axis_col, generator) * region
        image = screen(image, alpha)
        blocked |= alpha > 0.02
    for _ in range(randint(generator, 1, 2)):
        alpha = _eggshell(rows, cols, size, scale, region, generator) * region
        image = screen(image, alpha)
        blocked |= alpha > 0.02

    mask = torch.zeros(size, size, dtype=torch.bool)
    if positive:
        for _ in range(randint(generator, 1, 3)):
            if randint(generator, 0, 9) < 4:
                alpha, lesion_mask = _calcification_cluster(
                    size, scale, blocked, generator
                )
            else:
                alpha, lesion_mask = _mass(rows, cols, size, blocked, generator)
            image = screen(image, alpha)
            mask |= lesion_mask
            blocked |= _dilate(alpha > 0.01, 2)

    if randint(generator, 0, 1):
        image, mask = image.flip(1), mask.flip(1)
    if randint(generator, 0, 1):
        image, mask = image.flip(0), mask.flip(0)
    return image.clamp(0.0, 1.0), mask


def _fibres(
    rows: Tensor,
    cols: Tensor,
    centre_row: float,
    axis_col: float,
    generator: torch.Generator,
) -> Tensor:
    """Thin strands converging on the nipple: ridged noise in polar coordinates."""
    size = rows.shape[0]
    angle = torch.atan2(rows - centre_row, axis_col - cols)  # 0 along the axis
    distance = torch.sqrt((rows - centre_row) ** 2 + (axis_col - cols) ** 2)
    n_angle = max(16, size // 2)
    noise = torch.randn(1, 1, 6, n_angle, generator=generator)
    grid = torch.stack(
        [angle / math.pi, (distance / axis_col).clamp(0.0, 2.0) - 1.0], dim=-1
    )[None]
    sampled = torch.nn.functional.grid_sample(
        noise, grid, mode="bicubic", padding_mode="reflection", align_corners=False
    )[0, 0]
    ridges = (1.0 - sampled.abs().clamp(max=1.0)) ** 6
    return ridges - ridges.mean()


def _pectoral(
    rows: Tensor, cols: Tensor, size: int, generator: torch.Generator
) -> Tensor:
    """Bright triangle in the top chest-wall corner, with a soft edge."""
    extent_col = size * uniform(generator, 0.2, 0.4)
    extent_row = size * uniform(generator, 0.45, 0.8)
    inside = 1.0 - cols / extent_col - rows / extent_row
    edge = torch.sigmoid(inside * min(extent_col, extent_row) / 1.5)
    return uniform(generator, 0.15, 0.3) * edge


def _smooth_density(
    rows: Tensor, cols: Tensor, size: int, region: Tensor, generator: torch.Generator
) -> Tensor:
    """Benign, faint, elongated Gaussian density (not a lesion)."""
    row, col = _point_inside(region, size, generator)
    sigma_a = size * uniform(generator, 0.04, 0.09)
    sigma_b = size * uniform(generator, 0.025, 0.05)
    theta = uniform(generator, 0.0, math.pi)
    dr, dc = rows - row, cols - col
    u = dr * math.cos(theta) + dc * math.sin(theta)
    v = -dr * math.sin(theta) + dc * math.cos(theta)
    blob = torch.exp(-0.5 * ((u / sigma_a) ** 2 + (v / sigma_b) ** 2))
    return uniform(generator, 0.06, 0.14) * blob


def _vessel(
    rows: Tensor,
    cols: Tensor,
    size: int,
    centre_row: float,
    axis_col: float,
    generator: torch.Generator,
) -> Tensor:
    """Long, thin, bright, gently curved line running towards the nipple."""
    start = torch.tensor(
        [size * uniform(generator, 0.0, 1.0), size * uniform(generator, -0.05, 0.15)]
    )
    end = torch.tensor(
        [
            centre_row + size * uniform(generator, -0.35, 0.35),
            axis_col * uniform(generator, 0.5, 1.0),
        ]
    )
    bend = (start + end) / 2 + size * torch.tensor(
        [uniform(generator, -0.2, 0.2), uniform(generator, -0.2, 0.2)]
    )
    t = torch.linspace(0.0, 1.0, 13)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    width = uniform(generator, 0.7, 1.5) * max(1.0, size / 128.0)
    distance = segment_distance(rows, cols, points, cutoff=5.0 * width)
    return uniform(generator, 0.2, 0.4) * torch.exp(-0.5 * (distance / width) ** 2)


def _eggshell(
    rows: Tensor,
    cols: Tensor,
    size: int,
    scale: float,
    region: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """Benign calcification: a small bright ring with a dark centre."""
    row, col = _point_inside(region, size, generator)
    radius = max(2.5, uniform(generator, 2.5, 5.5) * scale)
    distance = torch.sqrt((rows - row) ** 2 + (cols - col) ** 2)
    ring = torch.exp(-0.5 * ((distance - radius) / 0.6) ** 2)
    return uniform(generator, 0.55, 0.8) * ring


def _calcification_cluster(
    size: int, scale: float, blocked: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """3-8 bright dots of 1 x 1 or 2 x 2 pixels within a small disc."""
    reach = max(3.0, 6.0 * scale)
    row, col = _free_point(blocked, size, reach + 2.0, generator)
    alpha = torch.zeros(size, size)
    for _ in range(randint(generator, 3, 8)):
        radius = reach * math.sqrt(uniform(generator, 0.0, 1.0))
        theta = uniform(generator, 0.0, 2.0 * math.pi)
        r = int(round(row + radius * math.sin(theta)))
        c = int(round(col + radius * math.cos(theta)))
        width = 1 if randint(generator, 0, 9) < 6 else 2
        r = min(max(r, 0), size - width)
        c = min(max(c, 0), size - width)
        amplitude = uniform(generator, 0.45, 0.7)
        patch = alpha[r : r + width, c : c + width]
        alpha[r : r + width, c : c + width] = patch.clamp(min=amplitude)
    return alpha, alpha > 0


def _mass(
    rows: Tensor,
    cols: Tensor,
    size: int,
    blocked: Tensor,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Irregular round blob with a soft edge, optionally spiculated."""
    radius = uniform(generator, max(2.0, 0.035 * size), 0.1 * size)
    spiculated = radius >= 4.0 and randint(generator, 0, 1) == 1
    reach = radius * (2.2 if spiculated else 1.2)
    row, col = _free_point(blocked, size, reach + 2.0, generator)
    amplitude = uniform(generator, 0.4, 0.6)

    dr, dc = rows - row, cols - col
    distance = torch.sqrt(dr**2 + dc**2)
    theta = torch.atan2(dr, dc)
    boundary = torch.ones_like(theta)
    for k in (2, 3, 5):
        boundary = boundary + uniform(generator, -0.08, 0.08) * torch.cos(
            k * theta + uniform(generator, 0.0, 2.0 * math.pi)
        )
    boundary = radius * boundary
    body = torch.sigmoid((boundary - distance) / uniform(generator, 0.5, 1.0))
    core = 0.85 + 0.15 * (1.0 - (distance / boundary).clamp(max=1.0) ** 2)
    alpha = amplitude * body * core

    if spiculated:
        centre = torch.tensor([row, col])
        for _ in range(randint(generator, 4, 9)):
            phi = uniform(generator, 0.0, 2.0 * math.pi)
            length = radius * uniform(generator, 1.5, 2.2)
            tip = centre + length * torch.tensor([math.sin(phi), math.cos(phi)])
            line = segment_distance(rows, cols, torch.stack([centre, tip]), cutoff=4.0)
            taper = (1.0 - distance / length).clamp(0.0, 1.0) ** 0.5
            spicule = 0.8 * amplitude * taper * torch.exp(-0.5 * (line / 0.7) ** 2)
            alpha = torch.maximum(alpha, spicule)
    return alpha, alpha >= 0.4 * amplitude


def _point_inside(
    region: Tensor, size: int, generator: torch.Generator
) -> tuple[float, float]:
    """A random point well inside the breast (falls back to the centre)."""
    for _ in range(50):
        row = uniform(generator, 0.0, size - 1.0)
        col = uniform(generator, 0.0, size - 1.0)
        if region[int(row), int(col)] > 0.99:
            return row, col
    return size / 2.0, size / 4.0


def _free_point(
    blocked: Tensor, size: int, clearance: float, generator: torch.Generator
) -> tuple[float, float]:
    """A random point whose disc of radius ``clearance`` is not blocked.

    Falls back to the least blocked of the candidates tried.
    """
    margin = min(clearance, size / 4.0)
    best: tuple[float, float] = (size / 2.0, size / 4.0)
    best_count = None
    r_int = int(math.ceil(clearance))
    for _ in range(60):
        row = uniform(generator, margin, size - 1.0 - margin)
        col = uniform(generator, margin, size - 1.0 - margin)
        r0, c0 = int(row), int(col)
        window = blocked[
            max(r0 - r_int, 0) : r0 + r_int + 1, max(c0 - r_int, 0) : c0 + r_int + 1
        ]
        count = int(window.sum())
        if count == 0:
            return row, col
        if best_count is None or count < best_count:
            best, best_count = (row, col), count
    return best


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of an ``H x W`` mask by a square of side ``2r + 1``."""
    pooled = torch.nn.functional.max_pool2d(
        mask[None, None].float(), 2 * radius + 1, stride=1, padding=radius
    )
    return pooled[0, 0] > 0
