r"""Phase 2 that shrinks the mask while it attacks (``shrink_rate``).

Phase 2 (eqs. 15-16) optimises :math:`J` inside phase 1's mask :math:`m`.
With ``shrink_rate`` :math:`s > 0`, every step on which the class is destroyed
(:math:`M(J)_i < 0.5`) also releases the :math:`\lfloor s\,|m_t| \rfloor` units
of the mask that the attack needs least, resetting them to :math:`I`, and the
next steps re-optimise :math:`J` in the smaller mask:

.. math::

    r_t(x) = G\big[\,|\nabla_J c(J_t)(x)\,(I(x) - J_t(x))|\,\big]\cdot G\big[\,|J_1(x) - I(x)|\,\big],
    \qquad m_{t+1} = m_t \setminus \operatorname{lowest}_{\lfloor s |m_t| \rfloor}
        \Big(\frac{r_t(x)}{\max_{y \in C(x)} r_t(y)}\Big),

with :math:`r_t` the refinement's ranking (:mod:`captum_regadv._refinement`),
from the gradient the step computes anyway (:math:`G`: Gaussian,
:math:`\sigma = 1`, over the spatial dims; :math:`J_1`: phase 1's result; a
group of a ``feature_mask`` by its mean), **divided by its largest value in
the same connected component of phase 1's mask** (components as in
:mod:`captum_regadv._components`). Without that division the release takes
whole parts that the attack can spare for a while (one of several lesions)
while the needed fragments elsewhere stay, and the CC hit rate falls (lesion
benchmark, 16 and 32 positives: 3 points lower); with it every part of the
mask shrinks in proportion, and a part that is not needed at all is left to
the refinement's component pruning, which scores it exactly. Each example
keeps the iterate with the lowest exact APE_D terms

.. math::

    A_t = \frac{L_0(B(I - J_t)) + TV(B(I - J_t))}{N} + M(J_t)_i

(:math:`10 + M(J_t)_i` while the class stands, as the refinement scores its
candidates), so a release that brings the class back is never kept. The
refinement's pruning scores smaller masks with :math:`J` as it is; a smaller
mask often destroys the class only once :math:`J` is re-optimised inside it,
which is what these steps do, at no extra model pass: the ranking reuses the
step's gradient and the score its forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._boundary import bound_rows
from ._components import ape_terms, change_size, component_labels
from ._forward import ScoredModel
from ._groups import Groups
from ._objectives import Objective, classification_term, project_into
from ._optimization import LoopSettings
from ._outcome import DESTROYED
from ._need import smooth_over_space
from ._candidates import unit_to_elements, unit_values

__all__ = [
    "ShrinkResult", "attack_while_shrinking", "release_least_needed", "share_of_component_peak",
]

@dataclass(frozen=True)
class ShrinkResult:
    """Per example: the kept masks (boolean; constant within a group),
    ``J``, steps ``(N,)``, forward-only passes ``(N,)`` and the loss history
    ``(steps + 1) x N``."""

    masks: tuple[Tensor, ...]
    best: tuple[Tensor, ...]
    steps_run: Tensor
    evaluations: Tensor
    history: Tensor


def release_least_needed(
    masks: tuple[Tensor, ...],
    need: tuple[Tensor, ...],
    counts: Tensor,
    groups: Optional[Groups],
) -> tuple[Tensor, ...]:
    """``masks`` without the ``counts[i]`` mask units of example ``i`` with the
    lowest ``need`` (a group by its mean; ties: the later element first).

    Example:
        >>> m = (torch.tensor([[True, True, True, False]]),)
        >>> need = (torch.tensor([[0.5, 0.1, 0.9, 0.0]]),)
        >>> release_least_needed(m, need, torch.tensor([1]), None)
        (tensor([[ True, False,  True, False]]),)
    """
    values = unit_values(need, groups)
    inside = unit_values(tuple(m.to(values.dtype) for m in masks), groups) > 0.5
    key = torch.where(inside, values, torch.full_like(values, math.inf))
    order = torch.argsort(key, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    released = rank < counts.clamp(min=0)[:, None]
    return tuple(m & ~r for m, r in zip(masks, unit_to_elements(released, masks, groups)))


def share_of_component_peak(
    values: tuple[Tensor, ...], labels: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """Each value divided by the largest value of its component (``labels``:
    :func:`~captum_regadv._components.component_labels`; values outside every
    component are returned as they are).

    Example:
        >>> v = (torch.tensor([[4.0, 1.0, 0.0, 0.5]]),)
        >>> share_of_component_peak(v, (torch.tensor([[1, 1, 0, 2]]),))
        (tensor([[1.0000, 0.2500, 0.0000, 1.0000]]),)
    """
    flat = torch.cat([v.flatten() for v in values])
    ids = torch.cat([lab.flatten() for lab in labels])
    peak = torch.zeros(int(ids.max()) + 1 if ids.numel() else 1, dtype=flat.dtype,
                       device=flat.device)
    peak = peak.scatter_reduce(0, ids, flat, reduce="amax", include_self=True)
    tiny = torch.finfo(flat.dtype).tiny
    shares = torch.where(ids > 0, flat / peak[ids].clamp_min(tiny), flat)
    out, offset = [], 0
    for v in values:
        out.append(shares[offset:offset + v.numel()].view_as(v))
        offset += v.numel()
    return tuple(out)


def _mask_units(masks: tuple[Tensor, ...], groups: Optional[Groups]) -> Tensor:
    """Units of each example's mask ``(N,)``."""
    return (unit_values(tuple(m.float() for m in masks), groups) > 0.5).sum(1)


def attack_while_shrinking(
    model: ScoredModel,
    originals: tuple[Tensor, ...],
    masks: tuple[Tensor, ...],
    start: tuple[Tensor, ...],
    bounds: tuple[tuple[Tensor, Tensor], ...],
    loop: LoopSettings,
    *,
    rate: float,
    weight: tuple[Tensor, ...],
    dims: tuple[tuple[int, ...], ...],
    groups: Optional[Groups],
    objective: Objective,
    progress: Optional[str] = None,
) -> ShrinkResult:
    """Phase 2 in destroy mode with the mask shrinking at ``rate`` (see the module).

    ``masks``: phase 1's boolean masks; ``start``: phase 1's ``J``; ``weight``:
    phase 1's smoothed change.
    Examples run ``loop.batch_size`` at a time; with ``loop.patience`` a chunk
    stops once none of its examples has lowered its best :math:`A_t` by more
    than ``rel_tol`` (relative) over the last ``patience`` steps.
    """
    n = originals[0].shape[0]
    device = originals[0].device
    n_elements = sum(o[0].numel() for o in originals)
    kept_masks = tuple(torch.zeros_like(m) for m in masks)
    best = tuple(torch.where(m, s, o).detach().clone() for m, s, o in zip(masks, start, originals))
    steps_run = torch.zeros(n, dtype=torch.long, device=device)
    evaluations = torch.zeros_like(steps_run)
    history = torch.full((loop.steps + 1, n), float("nan"), dtype=originals[0].dtype,
                         device=device)
    chunk = n if loop.batch_size is None else max(1, loop.batch_size)
    bar = tqdm(total=loop.steps * -(-n // chunk), desc=progress, disable=progress is None)
    for first in range(0, n, chunk):
        rows = torch.arange(first, min(first + chunk, n), device=device)
        sub = model.subset(rows)
        local = torch.arange(rows.numel(), device=device)
        origs = tuple(o[rows] for o in originals)
        sub_groups = None if groups is None else groups.rows(rows)
        mask = tuple(m[rows].clone() for m in masks)
        sub_bounds = tuple((bound_rows(lo, rows), bound_rows(hi, rows)) for lo, hi in bounds)
        params = tuple(b[rows].clone().requires_grad_(True) for b in best)
        opt = loop.optimizer(list(params), lr=loop.lr)
        best_value = torch.full((rows.numel(),), math.inf, dtype=torch.float64, device=device)
        since = 0
        labels = component_labels(mask, dims)
        for step in range(loop.steps + 1):
            last = step == loop.steps
            with torch.set_grad_enabled(not last):
                out = sub.output(params, local)
                loss = classification_term(sub, out, local, mode="destroy", objective=objective,
                                           reference=None, bounded=False)
                grads = None if last else torch.autograd.grad(loss.sum(), params)
            with torch.no_grad():
                history[step, rows] = loss.detach().to(history.dtype)
                score = sub.score_of(out.detach(), local)
                changed = tuple(m & (p != o) for m, p, o in zip(mask, params, origs))
                value = ape_terms(change_size(changed, dims), n_elements, score,
                                  destroyed_first=True)
                improved = value < best_value * (1.0 - loop.rel_tol)
                take = value < best_value
                best_value = torch.where(take, value, best_value)
                for k, (p, m) in enumerate(zip(params, mask)):
                    t = take.view((-1,) + (1,) * (p.dim() - 1))
                    best[k][rows] = torch.where(t, p.detach(), best[k][rows])
                    kept_masks[k][rows] = torch.where(t, m, kept_masks[k][rows])
            if last:
                evaluations[rows] += 1
                break
            assert grads is not None
            with torch.no_grad():
                counts = torch.floor(_mask_units(mask, sub_groups).double() * rate).long()
                counts = torch.where(score < DESTROYED, counts, torch.zeros_like(counts))
                if bool((counts > 0).any()):
                    need = smooth_over_space(
                        tuple((g * (o - p)).abs() for g, o, p in zip(grads, origs, params)), dims
                    )
                    need = tuple(a * w[rows] for a, w in zip(need, weight))
                    need = share_of_component_peak(need, labels)
                    mask = release_least_needed(mask, need, counts, sub_groups)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                project_into(params, local, sub_bounds, origs, tuple(~m for m in mask))
            steps_run[rows] += 1
            bar.update(1)
            since = 0 if bool(improved.any()) else since + 1
            if loop.patience is not None and since >= loop.patience:
                break  # the iterate of this last step is not scored: kept is the best so far
        bar.update((first // chunk + 1) * loop.steps - bar.n)
    bar.close()
    return ShrinkResult(kept_masks, best, steps_run, evaluations, history)

