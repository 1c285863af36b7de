r"""Pure tensor operations shared by the attribution methods and the metrics.

Nothing here runs a model. Every function follows the device and dtype of
its input and works on a batch: the first dimension is the example index
``N``; an image batch is ``N x C x H x W``, a sequence batch ``N x C x L``, a
volume batch ``N x C x D x H x W`` and a tabular batch ``N x F``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "soft_support",
    "binarize",
    "total_variation",
    "default_tv_dims",
    "gaussian_blur",
]


def soft_support(
    original: Tensor, perturbed: Tensor, *, gamma: float = 30.0, epsilon: float = 0.01
) -> Tensor:
    r"""Smooth approximation of the support indicator, the paper's eq. 11.

    .. math::

        S(x) = \frac{2}{1 + e^{-\gamma(|I(x) - J(x)| - \varepsilon)}} - 1
             = \tanh\!\Big(\frac{\gamma}{2}\big(|I(x) - J(x)| - \varepsilon\big)\Big)

    The ``tanh`` form is used because it cannot overflow. ``S`` lies in
    :math:`(-1, 1)`, is negative where the change is smaller than
    ``epsilon`` and non-negative where it is at least ``epsilon``.

    Args:
        original: the input ``I``, any shape.
        perturbed: the perturbed input ``J``, same shape as ``original``.
        gamma: steepness :math:`\gamma > 0`. Default 30 (the paper's).
        epsilon: dead zone :math:`\varepsilon \ge 0`. Default 0.01 (the paper's).

    Returns:
        ``S``, shaped like the inputs.

    Example:
        >>> import torch
        >>> i = torch.zeros(3)
        >>> soft_support(i, torch.tensor([0.0, 0.01, 1.0])).round(decimals=3)
        tensor([-0.1490,  0.0000,  1.0000])
    """
    return torch.tanh(0.5 * gamma * ((original - perturbed).abs() - epsilon))


def binarize(values: Tensor) -> Tensor:
    r"""The paper's eq. 1, :math:`B(f)(x) = 1` where :math:`f(x) \ne 0`, else 0.

    Exact: no tolerance. Returned in the dtype of ``values`` (boolean input
    gives float32).

    Example:
        >>> binarize(torch.tensor([0.0, -2.0, 1e-9]))
        tensor([0., 1., 1.])
    """
    dtype = values.dtype if values.is_floating_point() else torch.float32
    return (values != 0).to(dtype)


def default_tv_dims(ndim: int) -> tuple[int, ...]:
    """Spatial dimensions of a batch of ``ndim`` dimensions.

    ``N x F`` (2-D, tabular) has none; otherwise every dimension after the
    batch and channel dimensions: ``(2,)`` for ``N x C x L``, ``(2, 3)`` for
    ``N x C x H x W``, ``(2, 3, 4)`` for ``N x C x D x H x W``.

    Example:
        >>> default_tv_dims(4)
        (2, 3)
        >>> default_tv_dims(2)
        ()
    """
    if ndim < 2:
        raise ValueError(f"a batch needs at least 2 dimensions (N, ...), got {ndim}")
    return tuple(range(2, ndim))


def total_variation(values: Tensor, dims: Sequence[int] | None = None) -> Tensor:
    r"""Anisotropic L1 total variation of every example of a batch.

    .. math::

        TV(f) = \sum_{d \in \text{dims}} \sum_x |f(x + e_d) - f(x)|

    summed over all other dimensions (channels included), one value per
    example.

    Args:
        values: a batch, ``N x ...``.
        dims: the dimensions to take differences along; default
            :func:`default_tv_dims` of ``values.dim()``. Dimension 0 (the batch)
            is not allowed.

    Returns:
        Tensor of shape ``(N,)`` in the dtype of ``values``.

    Example:
        >>> m = torch.zeros(1, 1, 4, 4)
        >>> m[0, 0, 1, 1] = 1.0
        >>> total_variation(m)
        tensor([4.])
    """
    if dims is None:
        dims = default_tv_dims(values.dim())
    total = values.new_zeros(values.shape[0])
    for dim in dims:
        d = dim % values.dim()
        if d == 0:
            raise ValueError("tv_dims must not contain the batch dimension 0")
        if values.shape[d] < 2:
            continue
        diff = values.narrow(d, 1, values.shape[d] - 1) - values.narrow(
            d, 0, values.shape[d] - 1
        )
        total = total + diff.abs().flatten(1).sum(1)
    return total


def gaussian_blur(values: Tensor, sigma: float, dims: Sequence[int] | None = None) -> Tensor:
    r"""Separable Gaussian blur along ``dims`` (default: the spatial dims).

    The kernel has radius :math:`\lceil 3\sigma \rceil` and is normalised to
    sum 1; borders are padded by reflection (replication when a dimension is
    shorter than the radius). Used to build the "blur" deletion reference of
    Meaningful Perturbation.

    Example:
        >>> x = torch.zeros(1, 1, 11, 11)
        >>> x[0, 0, 5, 5] = 1.0
        >>> y = gaussian_blur(x, 1.0)
        >>> bool(torch.isclose(y.sum(), torch.tensor(1.0)))
        True
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if dims is None:
        dims = default_tv_dims(values.dim())
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = values
    for dim in dims:
        d = dim % values.dim()
        moved = out.movedim(d, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        mode = "reflect" if shape[-1] > radius else "replicate"
        padded = torch.nn.functional.pad(flat, (radius, radius), mode=mode)
        blurred = torch.nn.functional.conv1d(padded, kernel.view(1, 1, -1))
        out = blurred.reshape(shape).movedim(-1, d)
    return out
