r"""How much the attack needs each element of :math:`J`: the refinement's
ranking (:mod:`captum_regadv._refinement`) and the shrinking phase 2's
(:mod:`captum_regadv._shrinking`).

The need of an element is the first-order rise of the log-odds if it were
restored to :math:`I`, smoothed over the spatial dims (Gaussian,
:math:`\sigma = 1`, written :math:`G`) so that connected parts of the
evidence rank together:

.. math::

    G\big[\,|\nabla_J \ell_i(J) \odot (I - J)|\,\big].

**Saturated examples.** Where phase 2 destroyed the class beyond anything
APE_D rewards, :math:`\ell_i(J) < \log(1/N)` (the class term
:math:`M(J)_i < 1/N`, less than one element's share of :math:`L_0/N`), the
evidence no longer moves the log-odds at :math:`J` and the need at :math:`J`
misranks it (none of a shortcut mark's 9 pixels in the ranking's top 8 of
375). For those examples the refinement's first round uses the geometric
mean of the need at :math:`J` and halfway back, at :math:`J + (I - J)/2`
(:func:`desaturated_need`; one more forward+backward pass for them only).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ._forward import ScoredModel
from .perturbations import gaussian_blur

__all__ = ["desaturated_need", "need_ranking", "smooth_over_space"]


def smooth_over_space(values: tuple[Tensor, ...], dims: tuple[tuple[int, ...], ...]) -> tuple[Tensor, ...]:
    """Gaussian blur (sigma 1) over each input's spatial dims (none: unchanged)."""
    return tuple(gaussian_blur(v, 1.0, d) if d else v for v, d in zip(values, dims))


def need_ranking(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
    *,
    toward: float = 0.0,
) -> tuple[tuple[Tensor, ...], Tensor]:
    r"""How much each element of ``J`` is needed, smoothed, with the gradient
    taken at the point ``toward`` of the way from :math:`J` back to :math:`I`:

    .. math::

        G\big[\,|\nabla \ell_i(J_t) \odot (I - J)|\,\big], \qquad
        J_t = J + t\,(I - J),\quad t = \texttt{toward} \in [0, 1),

    shaped like the inputs, and the log-odds :math:`\ell_i(J_t)` ``(N,)``. The
    refinement uses :math:`t = 0` (default), and :math:`t = 1/2` for saturated
    examples (:func:`desaturated_need`). One forward+backward pass (``chunk``
    examples at a time). ``benchmarks/need_point.py`` measures other points
    (the method page's "Where the need is measured")."""
    if not 0.0 <= toward < 1.0:
        raise ValueError(f"toward must be in [0, 1), got {toward}")
    n = originals[0].shape[0]
    step = n if chunk is None else max(1, chunk)
    parts: list[tuple[Tensor, ...]] = []
    log_odds: list[Tensor] = []
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n), device=originals[0].device)
        params = tuple(
            (p[rows] + toward * (o[rows] - p[rows])).detach().clone().requires_grad_(True)
            for p, o in zip(perturbed, originals)
        )
        sub = model.subset(rows)
        local = torch.arange(rows.numel(), device=rows.device)
        with torch.enable_grad():
            value = sub.log_odds_of(sub.output(params, local), local)
            grads = torch.autograd.grad(value.sum(), params, allow_unused=True)
        log_odds.append(value.detach())
        parts.append(tuple(
            torch.zeros_like(j[rows]) if g is None else (g * (o[rows] - j[rows])).abs().detach()
            for g, o, j in zip(grads, originals, perturbed)
        ))
    need = tuple(torch.cat(column) for column in zip(*parts))
    return smooth_over_space(need, dims), torch.cat(log_odds)


def desaturated_need(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    need: tuple[Tensor, ...],
    log_odds: Tensor,
    dims: tuple[tuple[int, ...], ...],
    chunk: Optional[int],
) -> tuple[tuple[Tensor, ...], Tensor]:
    r"""The need at ``J`` (``need``, with ``log_odds`` :math:`\ell_i(J)`, from
    :func:`need_ranking`), where :math:`\ell_i(J) < \log(1/N)` replaced by the
    geometric mean of itself and the need halfway back to :math:`I`:

    .. math::

        \sqrt{\,G[|\nabla \ell_i(J) \odot (I - J)|]\cdot
               G[|\nabla \ell_i(J_{1/2}) \odot (I - J)|]\,}, \qquad
        J_{1/2} = \tfrac{1}{2}(I + J),

    :math:`N` the elements of one example. Returns the need and the indices of
    the examples replaced, each of which cost one forward+backward pass."""
    elements = sum(o[0].numel() for o in originals)
    saturated = torch.nonzero(log_odds < -math.log(elements)).flatten()
    if saturated.numel() == 0:
        return need, saturated
    halfway, _ = need_ranking(
        model.subset(saturated), tuple(o[saturated] for o in originals),
        tuple(p[saturated] for p in perturbed), dims, chunk, toward=0.5,
    )
    return tuple(
        a.index_copy(0, saturated, (a[saturated] * b).sqrt()) for a, b in zip(need, halfway)
    ), saturated
