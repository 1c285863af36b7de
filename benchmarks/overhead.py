"""Overhead of RegularizedAdversarial over a bare loop of the same K forward+backward passes.

    python benchmarks/overhead.py [--device cuda] [--n 16] [--size 128]

Prints the ratio attribute() / bare loop, measured side by side (goal <= 1.10).
The per-example search is off (``search_steps=0``): on this untrained model
no example is destroyed, and the search would run the K steps again on
purpose, which is extra work rather than overhead.
"""

from __future__ import annotations

import statistics

from _common import bare_loop, batch, model_on, parser, round_times, setup

from captum_regadv import RegularizedAdversarial


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--phase2-steps", type=int, default=100)
    p.add_argument("--profile", action="store_true",
                   help="also profile one call and print the model's share of CPU time")
    args = p.parse_args()
    device = setup(args)
    model = model_on(device)
    x = batch(args.n, args.size, device)
    k = args.steps + args.phase2_steps
    ra = RegularizedAdversarial(model)

    def ours() -> None:
        ra.attribute(x, target=1, steps=args.steps, phase2_steps=args.phase2_steps, bounds=(0.0, 1.0), search_steps=0)

    times = round_times([bare_loop(model, x, k), ours], args.repeats, device)
    t_bare, t_ours = (min(t[i] for t in times) for i in (0, 1))
    pair_ratios = [t[1] / t[0] for t in times]
    print(f"device={device} batch={args.n}x1x{args.size}x{args.size} K={k} steps, "
          f"{args.repeats} interleaved rounds")
    print(f"bare forward+backward loop: {t_bare:.3f} s ({1000 * t_bare / k:.1f} ms/step)")
    print(f"RegularizedAdversarial:     {t_ours:.3f} s ({1000 * t_ours / k:.1f} ms/step)")
    print(f"overhead ratio (best of each): {t_ours / t_bare:.3f}")
    print(f"overhead ratio per round: {', '.join(f'{r:.3f}' for r in pair_ratios)} "
          f"(median {statistics.median(pair_ratios):.3f})")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        model_ops = ("conv", "batch_norm", "max_pool", "threshold", "relu", "addmm", "adaptive")
        for name, fn in (("bare loop", bare_loop(model, x, k)), ("attribute()", ours)):
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
