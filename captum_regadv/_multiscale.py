r"""A continuous attribution that ranks every element: the change, smoothed at every scale.

``attribution="change"`` (:math:`|J - I|`) is zero outside the mask, so a
ranking metric (deletion, insertion) sees the few mask elements and then ties
broken at random. ``attribution="multiscale"`` ranks the elements that
changed most, and those around them, first, and every other element by how
close it lies to the change, at every scale:

.. math::

    A = \hat C + \sum_{k=0}^{K} \widehat{G_{2^k} * C},
    \qquad C = |J - I|, \qquad \hat X = X / \max X \text{ per example},

with :math:`G_\sigma` a Gaussian blur of standard deviation :math:`\sigma`
elements over the spatial dims and :math:`2^K` the largest power of two up to
an eighth of the smallest spatial side (at least :math:`\sigma = 1`). The
scales follow the input's size, not a domain: on a 128 x 128 image they are
1, 2, 4, 8 and 16. An element farther than three times the largest scale
from every change (the blur's reach) scores 0. Inputs without spatial dims get
:math:`C` itself. No model pass is spent.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .perturbations import gaussian_blur

__all__ = ["multiscale_change", "scales_for"]


def scales_for(sizes: tuple[int, ...]) -> tuple[float, ...]:
    """The blur scales for spatial sides ``sizes``: 1, 2, 4, ... up to ``min(sizes) / 8``.

    Example:
        >>> scales_for((128, 128))
        (1.0, 2.0, 4.0, 8.0, 16.0)
        >>> scales_for((7,))
        (1.0,)
    """
    largest = max(1.0, min(sizes) / 8)
    scales = [1.0]
    while scales[-1] * 2 <= largest:
        scales.append(scales[-1] * 2)
    return tuple(scales)


def _normalised(values: Tensor) -> Tensor:
    peak = values.flatten(1).amax(1).clamp(min=torch.finfo(values.dtype).tiny)
    return values / peak.view((-1,) + (1,) * (values.dim() - 1))


def multiscale_change(change: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The multiscale attribution of a change map ``N x ...`` over its spatial ``dims``.

    Example:
        >>> c = torch.zeros(1, 1, 16, 16)
        >>> c[0, 0, 8, 8] = 0.3
        >>> a = multiscale_change(c, (2, 3))
        >>> bool(a[0, 0, 8, 8] == a.max()), bool((a >= 0).all())
        (True, True)
        >>> bool(a[0, 0, 8, 9] > a[0, 0, 8, 12] > a[0, 0, 8, 14] > 0)
        True
    """
    if not dims:
        return change
    sizes = tuple(change.shape[d] for d in dims)
    total = _normalised(change)
    for sigma in scales_for(sizes):
        total = total + _normalised(gaussian_blur(change, sigma, dims))
    return total
