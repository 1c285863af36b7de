"""The per-example optimisation loop: kept iterate, early-stopping window, batch dropping."""

from __future__ import annotations

import pytest
import torch

from captum_regadv._boundary import resolve_optimizer
from captum_regadv._optimization import LoopSettings, minimize_per_example, short_memory_adam


def _scripted(values: list[list[float]], calls: list[list[int]]):
    """A loss whose value for row r at call k is ``values[r][k]`` and whose
    gradient moves every parameter by +1 per SGD step (lr=1), so that the
    iterate at step k is exactly k."""
    step = {"k": 0}

    def loss_fn(params, rows):
        k = step["k"]
        step["k"] += 1
        calls.append(rows.tolist())
        scripted = torch.tensor([values[r][min(k, len(values[r]) - 1)] for r in rows.tolist()],
                                dtype=params[0].dtype)
        # value = scripted exactly; d/dp = -1 per element
        return scripted + (-params[0] + params[0].detach()).flatten(1).sum(1)

    return loss_fn


def _run(values, *, steps, patience=None, rel_tol=0.0, keep_best=True):
    calls: list[list[int]] = []
    init = (torch.zeros(len(values), 2, dtype=torch.float64),)
    result = minimize_per_example(
        init,
        _scripted(values, calls),
        lambda params, rows: None,
        LoopSettings(torch.optim.SGD, lr=1.0, steps=steps, patience=patience, rel_tol=rel_tol),
        keep_best=keep_best,
    )
    return result, calls


def test_keep_best_returns_lowest_loss_iterate_and_keep_last_the_last():
    values = [[5.0, 1.0, 3.0, 2.0, 4.0]]
    best, _ = _run(values, steps=4)
    last, _ = _run(values, steps=4, keep_best=False)
    assert best.best[0][0].tolist() == [1.0, 1.0]  # the iterate after one step
    assert float(best.best_loss[0]) == 1.0
    assert last.best[0][0].tolist() == [4.0, 4.0]
    assert float(last.best_loss[0]) == 4.0
    assert best.steps_run.tolist() == last.steps_run.tolist() == [4]


def test_patience_stops_a_plateau_after_the_window_and_drops_the_row():
    # row 0 improves until step 10, then is flat; row 1 improves by 1 per step throughout
    flat = [10.0 - min(k, 10) for k in range(60)]
    steady = [100.0 - k for k in range(60)]
    result, calls = _run([flat, steady], steps=50, patience=5, rel_tol=1e-3)
    # row 0: best loss 0 reached at step 10, window of 5 shows no gain at step 15
    assert int(result.steps_run[0]) == 16
    assert int(result.steps_run[1]) == 50
    assert all(c == [1] for c in calls[17:])  # the finished row left the batch
    assert float(result.best_loss[0]) == 0.0
    # the loss of the last iterate: one forward-only pass for the row that ran to
    # the end, none for the row that stopped early; 16 + 50 updates + 1 = 67 calls
    assert result.evaluations.tolist() == [0, 1]
    assert sum(len(c) for c in calls) == 16 + 50 + 1


def test_patience_ignores_the_transient_of_the_first_steps():
    # a dip at step 1 (Adam's first step) and a rise above the start: a plain
    # "no new best for `patience` steps" rule would stop at step 6
    values = [[3.0, -2.0] + [8.0 - 0.5 * k for k in range(40)]]
    result, _ = _run(values, steps=40, patience=5, rel_tol=1e-3, keep_best=False)
    assert int(result.steps_run[0]) > 20


def test_patience_never_stops_an_example_that_never_beats_its_start():
    values = [[1.0] + [2.0] * 30]
    result, _ = _run(values, steps=30, patience=3, rel_tol=1e-3)
    assert int(result.steps_run[0]) == 30
    assert result.best[0][0].tolist() == [0.0, 0.0]


def test_monitor_is_what_patience_watches_and_the_loss_picks_the_iterate():
    # an unbounded loss that falls by 1 per step forever, like phase 2's log-odds:
    # on the loss itself the window never closes; on sigmoid(loss), the
    # probability, it closes once the probability stops moving by rel_tol
    falling = [[5.0 - k for k in range(80)]]

    def run(monitor):
        calls: list[list[int]] = []
        return minimize_per_example(
            (torch.zeros(1, 2, dtype=torch.float64),),
            _scripted(falling, calls),
            lambda params, rows: None,
            LoopSettings(torch.optim.SGD, lr=1.0, steps=60, patience=5, rel_tol=1e-3),
            monitor=monitor,
        )

    assert int(run(None).steps_run[0]) == 60
    watched = run(torch.sigmoid)
    # the first step k whose loss 5 - k is within 1e-3 of the probability 5 steps before
    expected = next(
        k + 1
        for k in range(5, 60)
        if torch.sigmoid(torch.tensor(5.0 - (k - 5))) - torch.sigmoid(torch.tensor(5.0 - k)) <= 1e-3
    )
    assert int(watched.steps_run[0]) == expected < 30
    # the kept iterate is still the lowest-*loss* one: the last evaluated (step k)
    assert float(watched.best_loss[0]) == 5.0 - (expected - 1)


def _late_step_sizes(optimizer) -> tuple[float, float]:
    """One parameter whose gradient is 1 for 100 steps, then 0.01: the step
    size Adam takes at the start and 200 steps after the drop."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = optimizer([p], lr=0.01)
    sizes = []
    for k in range(300):
        before = p.detach().clone()
        p.grad = torch.full_like(p, 1.0 if k < 100 else 1e-2)
        opt.step()
        sizes.append(float((p.detach() - before).abs()))
    return sizes[0], sizes[-1]


def test_short_memory_adam_recovers_its_step_after_the_gradient_shrinks():
    """Phase 1's gradients shrink by orders of magnitude once the class is
    gone; the default optimiser must then still take steps of about ``lr``,
    where torch's Adam (beta2 = 0.999) still divides by the early gradients."""
    first, late = _late_step_sizes(short_memory_adam)
    assert abs(first - 0.01) < 1e-6
    assert late > 0.008  # 200 steps after a 100x drop: back to ~lr
    _, late_torch = _late_step_sizes(torch.optim.Adam)
    assert late_torch < 0.0002  # still divided by the first 100 gradients
    opt = short_memory_adam([torch.zeros(1, requires_grad=True)], lr=0.5)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["betas"] == (0.9, 0.95) and opt.param_groups[0]["lr"] == 0.5


def test_resolve_optimizer_defaults_to_short_memory_adam_and_rejects_non_callables():
    assert resolve_optimizer(None) is short_memory_adam
    assert resolve_optimizer(torch.optim.SGD) is torch.optim.SGD
    with pytest.raises(TypeError, match="optimizer"):
        resolve_optimizer("adam")


def test_step_scale_stretches_each_examples_step_before_the_projection():
    """SGD with lr 1 on -sum(p) moves every element by +1 per step; a scale
    of 1 for row 0 and 3 for row 1 gives 2 and 6 after two steps, and the
    projection (clamp at 5) sees the stretched step."""
    init = (torch.zeros(2, 3, dtype=torch.float64),)
    seen: list[list[int]] = []

    def scale(rows):
        seen.append(rows.tolist())
        return torch.tensor([1.0, 3.0], dtype=torch.float64)[rows]

    def clamp(params, rows):
        params[0].clamp_(max=5.0)

    result = minimize_per_example(
        init, lambda params, rows: -params[0].sum(1), clamp,
        LoopSettings(torch.optim.SGD, lr=1.0, steps=2), keep_best=False, step_scale=scale,
    )
    assert result.best[0].tolist() == [[2.0] * 3, [5.0] * 3]
    assert seen == [[0, 1], [0, 1]]
