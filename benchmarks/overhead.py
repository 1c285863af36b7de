"""Overhead of RegularizedAdversarial over a bare loop of the same passes.

    python benchmarks/overhead.py [--device cuda] [--n 16] [--size 128]

One call of ``attribute`` (the default schedule, 60 + 20 + 10 steps and 8
refinement candidates) is run first, and its passes are read from
``last_diagnostics``: ``passes`` forward+backward passes and
``forward_passes`` forward-only ones per example. The bare loop then runs
exactly that many on the same batch (forward+backward+Adam step, and
forward passes without gradients), and the two are timed side by side in
interleaved rounds. Prints the ratio attribute() / bare loop (goal <= 1.05).
The per-example search is off (``search_steps=0``): on this untrained model
no example is destroyed, and the search would run the whole schedule again on
purpose, which is counted work rather than overhead.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch
from _common import bare_loop, batch, model_on, parser, round_times, setup

from captum_regadv import RegularizedAdversarial


def bare_passes(
    model: torch.nn.Module, x: torch.Tensor, passes: int, forward_passes: int
) -> Callable[[], None]:
    """``passes`` forward+backward+Adam steps, then ``forward_passes`` plain forwards."""
    steps = bare_loop(model, x, passes)

    def run() -> None:
        steps()
        with torch.no_grad():
            for _ in range(forward_passes):
                torch.softmax(model(x), 1)

    return run


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--profile", action="store_true",
                   help="also profile one call and print the model's share of CPU time")
    args = p.parse_args()
    device = setup(args)
    model = model_on(device)
    x = batch(args.n, args.size, device)
    ra = RegularizedAdversarial(model)

    def ours() -> None:
        ra.attribute(x, target=1, bounds=(0.0, 1.0), search_steps=0)

    ours()
    d = ra.last_diagnostics
    assert d is not None
    k, f = int(d.passes.max()), int(d.forward_passes.max())
    bare = bare_passes(model, x, k, f)
    times = round_times([bare, ours], args.repeats, device)
    t_bare, t_ours = (min(t[i] for t in times) for i in (0, 1))
    pair_ratios = [t[1] / t[0] for t in times]
    print(f"device={device} threads={torch.get_num_threads()} batch={args.n}x1x{args.size}x"
          f"{args.size}; last_diagnostics: {k} forward+backward passes and {f} forward passes "
          f"per example; {args.repeats} interleaved rounds")
    print(f"bare loop of the same passes: {t_bare:.3f} s")
    print(f"RegularizedAdversarial:       {t_ours:.3f} s")
    print(f"overhead ratio (best of each): {t_ours / t_bare:.3f}")
    print(f"overhead ratio per round: {', '.join(f'{r:.3f}' for r in pair_ratios)} "
          f"(median {statistics.median(pair_ratios):.3f})")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        model_ops = ("conv", "batch_norm", "max_pool", "threshold", "relu", "addmm", "adaptive")
        for name, fn in (("bare loop", bare), ("attribute()", ours)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            share = sum(e.self_cpu_time_total for e in events
                        if any(m in e.key for m in model_ops)) / total
            print(f"profile of one {name} call: {100 * share:.1f}% of CPU self time in the "
                  f"model's own ops (convolution, batch norm, pooling, ReLU, linear)")


if __name__ == "__main__":
    main()
