r"""Generated 3-D volumes with lesions and exact voxel ground truth.

The 3-D benchmark domain (``captum-regadv benchmark --dataset volumes``):
single-channel ``D x H x W`` cubes (64 voxels a side by default) of smooth,
tissue-like background texture, where the positive class holds one to four
*lesions* and the negative class none. The lesion voxels are the ground
truth, exactly: a voxel is in the mask if and only if a lesion changed it.

What a volume holds:

* **background**: the sum of two octaves of value noise (normal values on a
  coarse ``4^3`` and ``12^3`` grid, upsampled trilinearly), mapped into
  about ``[0.1, 0.5]``, plus fine voxel noise (standard deviation 0.02);
  the same for both classes;
* **lesions** (positives only): ellipsoids with half-axes drawn in
  :math:`[r, 1.4 r]`, the radius :math:`r` uniform in ``[0.8, 3.2]`` voxels
  (from a single voxel or a 7-voxel cross up to about 250 voxels); the lesion adds a contrast :math:`c` by a screen blend,
  :math:`v \leftarrow 1 - (1 - v)(1 - c)`, with :math:`c` uniform in
  ``[0.35, 0.6]``, or ``[0.2, 0.3]`` for a *faint* lesion (one in four).
  With probability 0.4 a lesion is placed *near* the previous one (its
  centre 2-4 voxels beyond the two radii), otherwise anywhere at least 6
  voxels from the border.

Every random number comes from one ``torch.Generator`` seeded by ``seed``,
drawn on a single thread: the same seed gives bit-identical tensors.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ._generation import (
    BenchmarkDataset,
    check_size,
    randint,
    screen,
    shuffled_labels,
    single_thread,
    uniform,
)

__all__ = ["VolumeDataset", "make_volume_dataset", "draw_volume"]

#: lesion contrast ranges: (normal, faint), and the chance of a faint one.
_CONTRAST = (0.35, 0.6)
_FAINT_CONTRAST = (0.2, 0.3)
_FAINT_CHANCE = 0.25
_NEAR_CHANCE = 0.4
_RADIUS = (0.8, 3.2)
_MARGIN = 6


class VolumeDataset(BenchmarkDataset):
    """A :class:`~.datasets.BenchmarkDataset` of volumes ``N x 1 x D x H x W``.

    The same fields (``images``, ``labels``, ``masks``, ``name``) with one
    more spatial dimension; everything that takes a benchmark dataset takes
    this one.

    Example:
        >>> import torch
        >>> ds = VolumeDataset(torch.zeros(2, 1, 8, 8, 8), torch.tensor([0, 1]),
        ...     torch.zeros(2, 1, 8, 8, 8, dtype=torch.bool), "volumes")
        >>> ds
        VolumeDataset(name='volumes', n=2, size=8x8x8, positives=1)
        >>> ds.subset([1]).images.shape
        torch.Size([1, 1, 8, 8, 8])
    """

    def __post_init__(self) -> None:
        images = self.images
        if images.dim() != 5 or images.shape[1] != 1:
            raise ValueError(
                f"images must be N x 1 x D x H x W, got shape {tuple(images.shape)}"
            )
        # the 2-D checks (dtype, labels, masks) hold unchanged on volumes
        flat = images.shape[:3] + (images.shape[3] * images.shape[4],)
        BenchmarkDataset(
            images.reshape(flat), self.labels, self.masks.reshape(flat)
            if self.masks.shape == images.shape else self.masks, self.name,
        )

    def __repr__(self) -> str:
        n, _, d, h, w = self.images.shape
        return (
            f"{type(self).__name__}(name={self.name!r}, n={n}, size={d}x{h}x{w}, "
            f"positives={int(self.labels.sum())})"
        )

    def subset(self, indices: Sequence[int] | Tensor) -> VolumeDataset:
        """The examples at ``indices``, as a new dataset of the same name."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return VolumeDataset(
            self.images[index], self.labels[index], self.masks[index], self.name
        )


def _value_noise(generator: torch.Generator, size: int, cells: int) -> Tensor:
    coarse = torch.randn(1, 1, cells, cells, cells, generator=generator)
    fine: Tensor = torch.nn.functional.interpolate(
        coarse, size=(size, size, size), mode="trilinear", align_corners=False
    )
    return fine[0, 0]


def _background(generator: torch.Generator, size: int) -> Tensor:
    texture = _value_noise(generator, size, 4) + 0.5 * _value_noise(generator, size, 12)
    volume = 0.3 + 0.06 * texture + 0.02 * torch.randn(size, size, size, generator=generator)
    return volume.clamp(0.0, 1.0)


def _centre(
    generator: torch.Generator, size: int, radius: float, previous: tuple[Tensor, float] | None
) -> Tensor:
    margin = min(max(_MARGIN, int(math.ceil(1.4 * radius)) + 1), (size - 1) // 2)
    if previous is not None and uniform(generator, 0.0, 1.0) < _NEAR_CHANCE:
        centre, prev_radius = previous
        direction = torch.randn(3, generator=generator)
        direction = direction / direction.norm().clamp_min(1e-6)
        gap = 1.4 * (radius + prev_radius) + uniform(generator, 2.0, 4.0)
        near: Tensor = (centre + gap * direction).round()
        if bool(((near >= margin) & (near <= size - 1 - margin)).all()):
            return near
    return torch.tensor(
        [float(randint(generator, margin, size - 1 - margin)) for _ in range(3)]
    )


def draw_volume(
    size: int, positive: bool, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """One volume: ``(volume, lesion mask, background)``, each ``size^3``.

    ``volume`` differs from ``background`` exactly on the mask (every lesion
    voxel is brightened by at least 0.2 times ``1 - background``).
    """
    background = _background(generator, size)
    mask = torch.zeros(size, size, size, dtype=torch.bool)
    alpha = torch.zeros(size, size, size)
    if positive:
        coords = torch.arange(size, dtype=torch.float32)
        grid = torch.meshgrid(coords, coords, coords, indexing="ij")
        previous: tuple[Tensor, float] | None = None
        for _ in range(randint(generator, 1, 4)):
            radius = uniform(generator, *_RADIUS)
            axes = [radius * uniform(generator, 1.0, 1.4) for _ in range(3)]
            centre = _centre(generator, size, radius, previous)
            faint = uniform(generator, 0.0, 1.0) < _FAINT_CHANCE
            contrast = uniform(generator, *(_FAINT_CONTRAST if faint else _CONTRAST))
            inside = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes)) <= 1.0
            assert isinstance(inside, Tensor)
            alpha = torch.where(inside & ~mask, torch.full_like(alpha, contrast), alpha)
            mask |= inside
            previous = (centre, radius)
    volume = torch.where(mask, screen(background, alpha), background)
    return volume, mask, background


def make_volume_dataset(
    n: int, *, size: int = 64, positive_fraction: float = 0.5, seed: int = 0
) -> VolumeDataset:
    """Generate ``n`` volumes with lesion ground truth (see the module docstring).

    Args:
        n: number of volumes.
        size: side of the cube in voxels, at least 16. Default 64.
        positive_fraction: fraction of positives (exactly
            ``round(n * positive_fraction)``, in shuffled order). Default 0.5.
        seed: seed of the generator; same seed, same tensors. Default 0.

    Returns:
        A :class:`VolumeDataset` named ``"volumes"``: images
        ``n x 1 x size x size x size`` float32 in ``[0, 1]``, labels ``(n,)``
        int64, masks bool, the lesion voxels (empty for negatives).

    Raises:
        ValueError: for ``size < 16``, ``n < 0`` or a fraction outside ``[0, 1]``.

    Example:
        >>> ds = make_volume_dataset(4, size=16, seed=1)
        >>> ds.images.shape, ds.labels.tolist()
        (torch.Size([4, 1, 16, 16, 16]), [1, 0, 0, 1])
        >>> pos = ds.labels == 1
        >>> bool(ds.masks[~pos].any()), bool(ds.masks[pos].flatten(1).any(1).all())
        (False, True)
    """
    check_size(size, minimum=16)
    generator = torch.Generator().manual_seed(seed)
    labels = shuffled_labels(n, positive_fraction, generator)
    images = torch.empty(n, 1, size, size, size, dtype=torch.float32)
    masks = torch.zeros(n, 1, size, size, size, dtype=torch.bool)
    with single_thread():
        for index in range(n):
            volume, mask, _ = draw_volume(size, bool(labels[index]), generator)
            images[index, 0] = volume
            masks[index, 0] = mask
    return VolumeDataset(images=images, labels=labels, masks=masks, name="volumes")
