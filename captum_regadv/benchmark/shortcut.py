r"""The "tanks on cloudy days" domain: a label that a shortcut predicts.

The images are those of :mod:`~captum_regadv.benchmark.shapes` (positives
contain a cross among similar glyphs), drawn fainter, plus a *confounder*:
a ``3 x 3`` pure-white square two pixels from the top-left corner. In the
confounded data (``confounded=True``, what a model is trained on) the
confounder appears on exactly the positive images, so it predicts the label
as perfectly as the cross does, and it is far easier to learn. A model
trained on it uses the square, not the cross; the ground-truth mask is
therefore the confounder's pixels, and a faithful explanation should point
at the corner.

With ``confounded=False`` the square is drawn on a random half of the
images independently of the label (the cross is unchanged), so a model
that learned the shortcut drops to about chance accuracy there.
"""

from __future__ import annotations

import torch

from ._generation import (
    BenchmarkDataset,
    check_size,
    randint,
    shuffled_labels,
    single_thread,
)
from .shapes import draw_shapes_image

__all__ = ["CONFOUNDER_OFFSET", "CONFOUNDER_SIZE", "make_shortcut_dataset"]

#: Side of the confounding square, in pixels.
CONFOUNDER_SIZE = 3
#: Distance of the square from the top and left borders, in pixels.
CONFOUNDER_OFFSET = 2


def make_shortcut_dataset(
    n: int,
    *,
    size: int = 64,
    positive_fraction: float = 0.5,
    seed: int = 0,
    confounded: bool = True,
) -> BenchmarkDataset:
    """Generate ``n`` glyph images with a label-correlated corner mark.

    Args:
        n: number of images.
        size: image side in pixels, at least 32. Default 64.
        positive_fraction: fraction of positive images (exactly
            ``round(n * positive_fraction)``, shuffled). Default 0.5.
        seed: seed of the ``torch.Generator``; same seed, same tensors.
            For a given seed the images differ between ``confounded=True``
            and ``False`` only in the corner square.
        confounded: if True the square is present exactly on positives; if
            False it is present on each image with probability 1/2,
            independently of the label. Default True.

    Returns:
        A :class:`~.datasets.BenchmarkDataset` named ``"shortcut"`` (or
        ``"shortcut-deconfounded"``): images ``n x 1 x size x size``
        float32 in ``[0, 1]``, labels ``(n,)`` int64 (1 = a cross is
        present), masks ``n x 1 x size x size`` bool, the square's pixels
        where it is drawn.

    Raises:
        ValueError: if ``size < 32``, ``n < 0`` or the fraction is outside
            ``[0, 1]``.

    Example:
        >>> ds = make_shortcut_dataset(2, size=32, seed=0)
        >>> ds.labels.tolist(), ds.masks.flatten(1).sum(1).tolist()
        ([1, 0], [9, 0])
        >>> ds.images[0, 0, 2:5, 2:5].min().item()
        1.0
    """
    check_size(size)
    generator = torch.Generator().manual_seed(seed)
    labels = shuffled_labels(n, positive_fraction, generator)
    # A separate stream for the square, so that the glyphs do not depend on
    # ``confounded``.
    mark_generator = torch.Generator().manual_seed(seed ^ 0x5EED)
    images = torch.empty(n, 1, size, size, dtype=torch.float32)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    low, high = CONFOUNDER_OFFSET, CONFOUNDER_OFFSET + CONFOUNDER_SIZE
    with single_thread():
        for index in range(n):
            positive = bool(labels[index])
            image, _ = draw_shapes_image(
                size, positive, generator, contrast=(0.3, 0.55)
            )
            marked = positive if confounded else randint(mark_generator, 0, 1) == 1
            if marked:
                image[low:high, low:high] = 1.0
                masks[index, 0, low:high, low:high] = True
            images[index, 0] = image
    name = "shortcut" if confounded else "shortcut-deconfounded"
    return BenchmarkDataset(images=images, labels=labels, masks=masks, name=name)
