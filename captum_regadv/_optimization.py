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
    """Kept iterate per example (the best, or the last), its loss ``(N,)`` and
    the updates run ``(N,)``."""

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
    keep_best: bool = True,
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
        patience: stop an example when its lowest loss has improved by at
            most ``rel_tol * max(|lowest loss|, 1)`` over the last ``patience``
            steps (relative for large losses, absolute below 1: a probability
            that drops from 1e-4 to 1e-5 is not progress worth a step). The
            first ``patience`` steps are a warm-up that never counts, and the
            window only opens once the example has improved on its starting
            loss by that much: the transient of the first steps (Adam moves
            every element by about ``lr``, which can dip or raise the loss for
            a while) never stops an example. ``None`` runs every example for
            ``steps`` updates.
        rel_tol: the improvement that resets the patience counter.
        batch_size: at most this many examples are optimised at once
            (``None``: all); chunks are independent, so results do not
            depend on it.
        progress: a tqdm bar updated once per step, or ``None``.
        keep_best: return each example's lowest-loss iterate (default), or
            its last one (``False``): the last is the right answer when an
            early iterate can score a low loss without being a solution, as
            phase 1's first step does (see ``RegularizedAdversarial``).
    """
    n = init[0].shape[0]
    device = init[0].device
    best = tuple(t.detach().clone() for t in init)
    best_loss = torch.full((n,), float("inf"), dtype=init[0].dtype, device=device)
    lowest = best_loss.clone()  # running minimum of each example's loss
    steps_run = torch.zeros(n, dtype=torch.long, device=device)
    chunk = n if batch_size is None else batch_size
    warmup = patience or 0

    def make(params: list[Tensor]) -> torch.optim.Optimizer:
        return optimizer(params, lr=lr)

    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=device)
        params = tuple(t[rows].detach().clone().requires_grad_(True) for t in init)
        opt = make(list(params))
        # best loss of each of the last `patience` steps (oldest first), and
        # whether the example has improved on its start (the window's gate)
        window = None if patience is None else torch.full(
            (patience, len(rows)), float("inf"), dtype=best_loss.dtype, device=device
        )
        started = torch.zeros(len(rows), dtype=torch.bool, device=device)
        initial = lowest[rows]  # replaced by the losses at the start on step 0
        # lowest loss since the warm-up (the first `patience` steps never count)
        settled = torch.full((len(rows),), float("inf"), dtype=best_loss.dtype, device=device)
        for step in range(steps + 1):
            last = step == steps
            with torch.set_grad_enabled(not last):
                loss = loss_fn(params, rows)
                grads = None if last else torch.autograd.grad(loss.sum(), params)
            loss = loss.detach()
            with torch.no_grad():
                prev = lowest[rows]
                improved = torch.isfinite(loss) & (loss < prev)
                lowest[rows] = torch.where(improved, loss, prev)
                take = improved if keep_best else torch.ones_like(improved)
                for b, p in zip(best, params):
                    b[rows] = torch.where(
                        take.view((-1,) + (1,) * (p.dim() - 1)), p.detach(), b[rows]
                    )
                best_loss[rows] = torch.where(take, loss, best_loss[rows])
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
            if window is not None:
                if step == 0:
                    initial = loss.clone()
                if step >= warmup:
                    settled = torch.minimum(settled, torch.where(torch.isfinite(loss), loss, settled))
                current = settled
                started |= initial - current > rel_tol * torch.clamp(initial.abs(), min=1.0)
                oldest = window[0]
                done = (
                    started
                    & torch.isfinite(oldest)
                    & (oldest - current <= rel_tol * torch.clamp(oldest.abs(), min=1.0))
                )
                window = torch.cat([window[1:], torch.where(started, current, oldest)[None]])
                if bool(done.any()):
                    keep = ~done
                    if not bool(keep.any()):
                        break
                    new_params = tuple(
                        p.detach()[keep].clone().requires_grad_(True) for p in params
                    )
                    opt = _slice_optimizer(opt, params, new_params, keep, make)
                    params, rows = new_params, rows[keep]
                    window, started = window[:, keep], started[keep]
                    initial, settled = initial[keep], settled[keep]
        if progress is not None and isinstance(progress, tqdm):
            remaining = (start // chunk + 1) * steps - progress.n
            if remaining > 0:
                progress.update(remaining)
    return OptimizationResult(best=best, best_loss=best_loss, steps_run=steps_run)
