"""The container shared by every benchmark data generator, and their drawing helpers.

A benchmark dataset is a batch of single-channel images with one binary
label per image and a pixel mask of ground truth per image:

* ``images``: float32, ``N x 1 x H x W``, values in ``[0, 1]``;
* ``labels``: int64, ``(N,)``, 0 or 1;
* ``masks``: bool, ``N x 1 x H x W``, the pixels the explanation should find
  (the lesions, the target object, or the shortcut's confounder).

The generators (:mod:`~captum_regadv.benchmark.lesions`,
:mod:`~captum_regadv.benchmark.shapes`,
:mod:`~captum_regadv.benchmark.shortcut`) import this module; the registry
:mod:`~captum_regadv.benchmark.datasets` imports the generators. Nothing here
imports a generator, so there is no import circle.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["BenchmarkDataset", "LesionDataset", "derive_seed"]


@dataclass(frozen=True, eq=False)
class BenchmarkDataset:
    """Images, labels and ground-truth masks of one synthetic domain.

    Args:
        images: float32 tensor ``N x 1 x H x W`` with values in ``[0, 1]``.
        labels: int64 tensor ``(N,)`` of 0 (negative) and 1 (positive).
        masks: bool tensor ``N x 1 x H x W``, the ground-truth pixels.
        name: the domain's name, e.g. ``"lesions"``.

    Raises:
        ValueError: if the shapes, dtypes or values do not fit together.

    Example:
        >>> import torch
        >>> ds = BenchmarkDataset(
        ...     images=torch.zeros(2, 1, 32, 32), labels=torch.tensor([0, 1]),
        ...     masks=torch.zeros(2, 1, 32, 32, dtype=torch.bool), name="toy")
        >>> len(ds), ds.size
        (2, 32)
        >>> ds
        BenchmarkDataset(name='toy', n=2, size=32x32, positives=1)
    """

    images: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)
    masks: Tensor = field(repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        images, labels, masks = self.images, self.labels, self.masks
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(
                f"images must be N x 1 x H x W, got shape {tuple(images.shape)}"
            )
        if images.dtype != torch.float32:
            raise ValueError(f"images must be float32, got {images.dtype}")
        if labels.shape != (images.shape[0],) or labels.dtype != torch.int64:
            raise ValueError(
                f"labels must be an int64 tensor of shape ({images.shape[0]},), "
                f"got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        if masks.shape != images.shape or masks.dtype != torch.bool:
            raise ValueError(
                f"masks must be a bool tensor shaped like images "
                f"{tuple(images.shape)}, got {masks.dtype} {tuple(masks.shape)}"
            )
        if labels.numel() and not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("labels must be 0 or 1")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        n, _, h, w = self.images.shape
        positives = int(self.labels.sum())
        return (
            f"{type(self).__name__}(name={self.name!r}, n={n}, size={h}x{w}, "
            f"positives={positives})"
        )

    @property
    def size(self) -> int:
        """Image height (the generators make square images)."""
        return int(self.images.shape[2])

    def subset(self, indices: Sequence[int] | Tensor) -> BenchmarkDataset:
        """The examples at ``indices``, as a new dataset of the same name.

        Example:
            >>> import torch
            >>> ds = BenchmarkDataset(torch.zeros(3, 1, 32, 32),
            ...     torch.tensor([0, 1, 0]),
            ...     torch.zeros(3, 1, 32, 32, dtype=torch.bool), "toy")
            >>> ds.subset([1]).labels
            tensor([1])
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        return BenchmarkDataset(
            images=self.images[index],
            labels=self.labels[index],
            masks=self.masks[index],
            name=self.name,
        )


#: The name in the task brief; the same class.
LesionDataset = BenchmarkDataset


def derive_seed(seed: int, tag: str) -> int:
    """A 63-bit seed derived from ``seed`` and a tag, stable across runs.

    Used to give the training and validation splits independent streams.

    Example:
        >>> derive_seed(0, "train") == derive_seed(0, "train")
        True
        >>> derive_seed(0, "train") == derive_seed(0, "val")
        False
    """
    digest = hashlib.sha256(f"{seed}/{tag}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def split_counts(n: int, positive_fraction: float) -> int:
    """Number of positives among ``n`` for ``positive_fraction``.

    Raises:
        ValueError: if ``n < 0`` or the fraction is outside ``[0, 1]``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(
            f"positive_fraction must be in [0, 1], got {positive_fraction}"
        )
    return int(round(n * positive_fraction))


def shuffled_labels(
    n: int, positive_fraction: float, generator: torch.Generator
) -> Tensor:
    """``n`` labels with exactly ``round(n * positive_fraction)`` ones, shuffled."""
    n_pos = split_counts(n, positive_fraction)
    labels = torch.zeros(n, dtype=torch.int64)
    labels[:n_pos] = 1
    return labels[torch.randperm(n, generator=generator)]


def check_size(size: int, minimum: int = 32) -> None:
    """Raise ``ValueError`` unless ``size`` is an int of at least ``minimum``."""
    if not isinstance(size, int) or size < minimum:
        raise ValueError(f"size must be an int >= {minimum}, got {size!r}")


# --------------------------------------------------------------------------
# Drawing helpers shared by the generators. Every random number comes from
# the ``torch.Generator`` passed in, so a seed fixes the data bit for bit.
# --------------------------------------------------------------------------


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the count.

    The generators draw many small images; on them intra-op threading only
    costs time (much of it when other processes share the cores), and one
    thread makes the floating-point results independent of the machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One number uniform in ``[low, high)`` from ``generator``."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer uniform in ``[low, high]`` (both ends included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def pixel_grid(size: int) -> tuple[Tensor, Tensor]:
    """Row and column coordinates (float32, ``size x size``) of pixel centres."""
    coords = torch.arange(size, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    return rows, cols


def smooth_noise(generator: torch.Generator, size: int, cells: int) -> Tensor:
    """Value noise: ``cells x cells`` normal values upsampled bicubically.

    Returns a ``size x size`` float32 tensor of roughly unit variance whose
    features are about ``size / cells`` pixels wide.
    """
    cells = max(2, min(cells, size))
    coarse = torch.randn(1, 1, cells, cells, generator=generator)
    if cells == size:
        return coarse[0, 0]
    fine = torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bicubic", align_corners=False
    )
    return fine[0, 0]


def screen(base: Tensor, alpha: Tensor) -> Tensor:
    """Screen blend: brighten ``base`` by ``alpha`` (both in ``[0, 1]``).

    ``1 - (1 - base)(1 - alpha)``: stays in ``[0, 1]`` and never darkens, so
    an object drawn with it is brighter than what it covers.
    """
    return 1.0 - (1.0 - base) * (1.0 - alpha)


def segment_distance(
    rows: Tensor, cols: Tensor, points: Tensor, *, cutoff: float = math.inf
) -> Tensor:
    """Distance of every pixel to a polyline.

    Args:
        rows: pixel rows, ``H x W`` (as from :func:`pixel_grid`).
        cols: pixel columns, ``H x W``.
        points: polyline vertices ``K x 2`` as (row, col), ``K >= 2``.
        cutoff: pixels farther than this from the polyline's bounding box
            are not computed and get ``inf`` (a speed-up).

    Returns:
        ``H x W`` distances in pixels.
    """
    height, width = rows.shape
    out = torch.full((height, width), math.inf)
    low = points.min(0).values - cutoff
    high = points.max(0).values + cutoff
    r0, r1 = max(int(low[0]), 0), min(int(math.ceil(high[0])) + 1, height)
    c0, c1 = max(int(low[1]), 0), min(int(math.ceil(high[1])) + 1, width)
    if r0 >= r1 or c0 >= c1:
        return out
    sub_rows, sub_cols = rows[r0:r1, c0:c1], cols[r0:r1, c0:c1]
    start, end = points[:-1], points[1:]  # K-1 x 2
    direction = end - start
    length_sq = (direction**2).sum(1).clamp_min(1e-12)
    pr = sub_rows.reshape(1, -1) - start[:, :1]  # K-1 x HW
    pc = sub_cols.reshape(1, -1) - start[:, 1:]
    t = (pr * direction[:, :1] + pc * direction[:, 1:]) / length_sq[:, None]
    t = t.clamp(0.0, 1.0)
    dr = pr - t * direction[:, :1]
    dc = pc - t * direction[:, 1:]
    dist_sq = (dr * dr + dc * dc).min(0).values
    out[r0:r1, c0:c1] = dist_sq.sqrt().reshape(sub_rows.shape)
    return out


DrawFn = Callable[[int, bool, torch.Generator], tuple[Tensor, Tensor]]


def generate(
    name: str, draw: DrawFn, n: int, *, size: int, positive_fraction: float, seed: int
) -> BenchmarkDataset:
    """Draw ``n`` images with ``draw(size, positive, generator) -> (image, mask)``.

    The shared loop of the generators: one seeded generator, shuffled labels,
    then one image after another on a single thread (bit-identical data for a
    seed whatever the core count).
    """
    check_size(size)
    generator = torch.Generator().manual_seed(seed)
    labels = shuffled_labels(n, positive_fraction, generator)
    images = torch.empty(n, 1, size, size, dtype=torch.float32)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    with single_thread():
        for index in range(n):
            image, mask = draw(size, bool(labels[index]), generator)
            images[index, 0] = image
            masks[index, 0] = mask
    return BenchmarkDataset(images=images, labels=labels, masks=masks, name=name)
