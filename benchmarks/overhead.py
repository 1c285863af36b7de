"""Overhead of RegularizedAdversarial over a bare loop of the same K forward+backward passes.

    python benchmarks/overhead.py [--device cuda] [--n 16] [--size 128]

Prints the ratio attribute() / bare loop, measured side by side (goal <= 1.10).
The per-example search is off (``search_steps=0``): on this untrained model
no example is destroyed, and the search would run the K steps again on
purpose, which is extra work rather than overhead.
"""

from __future__ import annotations

from _common import bare_loop, batch, best_times, model_on, parser, setup

from captum_regadv import RegularizedAdversarial


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--phase2-steps", type=int, default=100)
    args = p.parse_args()
    device = setup(args)
    model = model_on(device)
    x = batch(args.n, args.size, device)
    k = args.steps + args.phase2_steps
    ra = RegularizedAdversarial(model)

    def ours() -> None:
        ra.attribute(x, target=1, steps=args.steps, phase2_steps=args.phase2_steps, bounds=(0.0, 1.0), search_steps=0)

    t_bare, t_ours = best_times([bare_loop(model, x, k), ours], args.repeats, device)
    print(f"device={device} batch={args.n}x1x{args.size}x{args.size} K={k} steps")
    print(f"bare forward+backward loop: {t_bare:.3f} s ({1000 * t_bare / k:.1f} ms/step)")
    print(f"RegularizedAdversarial:     {t_ours:.3f} s ({1000 * t_ours / k:.1f} ms/step)")
    print(f"overhead ratio: {t_ours / t_bare:.3f}")


if __name__ == "__main__":
    main()
