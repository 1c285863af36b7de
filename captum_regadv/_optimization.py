"""The per-example projected-gradient loop behind every optimised explanation.

A batch is one optimisation, but each example has its own loss, its own best
iterate and its own early stop: the total loss is the sum of per-example
losses, so an example's gradient never depends on another example, and
element-wise optimisers (Adam, SGD, RMSprop, ...) keep examples apart.
Finished examples are dropped from the batch (their optimiser state is sliced
away), so the model only runs on the examples still being optimised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from tqdm import tqdm

LossFn = Callable[[tuple[Tensor, ...], Tensor], Tensor]
ProjectFn = Callable[[tuple[Tensor, ...], Tensor], None]
OptimizerClass = Callable[..., torch.optim.Optimizer]


@dataclass(frozen=True)
class OptimizationResult:
    """Best iterate per example, its loss ``(N,)`` and the updates run ``(N,)``."""

    best: tuple[Tensor, ...]
    best_loss: Tensor
    steps_run: Tensor


def _slice_optimizer(
    old: torch.optim.Optimizer,
    old_params: tuple[Tensor, ...],
    new_params: tuple[Tensor, ...],
    keep: Tensor,
    make: Callable[[list[Tensor]], torch.optim.Optimizer],
) -> torch.optim.Optimizer:
    new = make(list(new_params))
    for p_old, p_new in zip(old_params, new_params):
        state = old.state.get(p_old)
        if not state:
            continue
        new.state[p_new] = {
            k: v[keep].clone()
            if isinstance(v, Tensor) and v.dim() > 0 and v.shape == p_old.shape
            else v
            for k, v in state.items()
        }
    return new


def minimize_per_example(
    init: tuple[Tensor, ...],
    loss_fn: LossFn,
    project: ProjectFn,
    *,
    optimizer: OptimizerClass,
    lr: float,
    steps: int,
    patience: Optional[int],
    rel_tol: float,
    batch_size: Optional[int],
    progress: Optional[Any] = None,
) -> OptimizationResult:
    """Minimise ``loss_fn`` for every example of ``init``, projected after each step.

    Args:
        init: starting point, tensors with the batch first (not modified).
        loss_fn: ``(params, rows) -> (len(rows),)`` losses of the examples
            ``rows`` (indices into the full batch) at ``params``.
        project: in-place projection of ``params`` (rows ``rows``) onto the
            feasible set, called under ``torch.no_grad()`` after every step.
        optimizer: optimiser class, called as ``optimizer(params, lr=lr)``.
        lr: step size.
        steps: maximum number of updates per example.
        patience: stop an example when its loss has not improved by more
            than ``rel_tol * max(|best loss|, 1)`` for this many consecutive
            steps (relative for large losses, absolute below 1: a probability
            that drops from 1e-4 to 1e-5 is not progress worth a step);
            ``None`` runs every example for ``steps`` updates.
        rel_tol: the improvement that resets the patience counter.
        batch_size: at most this many examples are optimised at once
            (``None``: all); chunks are independent, so results do not
            depend on it.
        progress: a tqdm bar updated once per step, or ``None``.
    """
    n = init[0].shape[0]
    device = init[0].device
    best = tuple(t.detach().clone() for t in init)
    best_loss = torch.full((n,), float("inf"), dtype=init[0].dtype, device=device)
    steps_run = torch.zeros(n, dtype=torch.long, device=device)
    chunk = n if batch_size is None else batch_size

    def make(params: list[Tensor]) -> torch.optim.Optimizer:
        return optimizer(params, lr=lr)

    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=device)
        params = tuple(t[rows].detach().clone().requires_grad_(True) for t in init)
        opt = make(list(params))
        stale = torch.zeros(len(rows), dtype=torch.long, device=device)
        for step in range(steps + 1):
            last = step == steps
            with torch.set_grad_enabled(not last):
                loss = loss_fn(params, rows)
                grads = None if last else torch.autograd.grad(loss.sum(), params)
            loss = loss.detach()
            with torch.no_grad():
                prev = best_loss[rows]
                improved = torch.isfinite(loss) & (loss < prev)
                significant = improved & (
                    ~torch.isfinite(prev)
                    | (prev - loss > rel_tol * torch.clamp(prev.abs(), min=1.0))
                )
                for b, p in zip(best, params):
                    b[rows] = torch.where(
                        improved.view((-1,) + (1,) * (p.dim() - 1)), p.detach(), b[rows]
                    )
                best_loss[rows] = torch.where(improved, loss, prev)
            if last:
                break
            assert grads is not None
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                project(params, rows)
            steps_run[rows] += 1
            if progress is not None:
                progress.update(1)
            if patience is not None:
                stale = torch.where(significant, torch.zeros_like(stale), stale + 1)
                done = stale >= patience
                if bool(done.any()):
                    keep = ~done
                    if not bool(keep.any()):
                        break
                    new_params = tuple(
                        p.detach()[keep].clone().requires_grad_(True) for p in params
                    )
                    opt = _slice_optimizer(opt, params, new_params, keep, make)
                    params, rows, stale = new_params, rows[keep], stale[keep]
        if progress is not None and isinstance(progress, tqdm):
            remaining = (start // chunk + 1) * steps - progress.n
            if remaining > 0:
                progress.update(remaining)
    return OptimizationResult(best=best, best_loss=best_loss, steps_run=steps_run)
