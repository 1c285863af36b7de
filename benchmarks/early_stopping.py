"""Per-example early stopping: steps saved and APE_D kept, on the lesion benchmark.

    python benchmarks/early_stopping.py [--device cuda] [--n 16] [--adam-beta2 0.999]

Runs the default budget (200 + 100 steps) without early stopping, then with
each ``patience`` / ``rel_tol`` pair of a small grid, on the same validation
positives, and prints the median steps per example and the mean APE_D of
every run against the full budget (goal: median steps <= half, APE_D within
5%).
"""

from __future__ import annotations

import functools
import itertools
import time

import torch
from _common import parser, setup

from captum_regadv import RegularizedAdversarial, ape_d
from captum_regadv.benchmark.model import TrainConfig, load_or_train, predict_proba


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--patience", type=int, nargs="+", default=[10, 15, 20, 30])
    p.add_argument("--rel-tol", type=float, nargs="+", default=[1e-3, 1e-2])
    p.add_argument("--adam-beta2", type=float, default=None,
                   help="run both with Adam(betas=(0.9, this)) instead of the default "
                        "optimizer (short_memory_adam, beta2 = 0.95); 0.999 is torch's Adam")
    args = p.parse_args()
    device = setup(args)
    config = TrainConfig("lesions")
    model, _ = load_or_train(config)
    model = model.to(device)
    val = config.val_data()
    probs = predict_proba(model, val.images)
    idx = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[: args.n]
    x = val.images[idx].to(device)
    optimizer = None if args.adam_beta2 is None else functools.partial(
        torch.optim.Adam, betas=(0.9, args.adam_beta2)
    )

    def run(patience: int | None, rel_tol: float) -> tuple[float, float, float]:
        ra = RegularizedAdversarial(model)
        start = time.perf_counter()
        _, j = ra.attribute(x, target=1, bounds=(0.0, 1.0), patience=patience,
                            rel_tol=rel_tol, optimizer=optimizer, return_perturbed=True)
        seconds = time.perf_counter() - start
        ape = float(ape_d(model, x, j, target=1).mean())
        return seconds, ape, float(ra.last_steps.float().median())

    t0, a0, s0 = run(None, 0.0)
    print(f"full budget: median steps {s0:.0f}, mean APE_D {a0:.4f}, {t0:.1f} s")
    print("| patience | rel_tol | median steps | steps ratio | mean APE_D | APE_D ratio | time ratio | goal met |")
    print("|---|---|---|---|---|---|---|---|")
    for patience, rel_tol in itertools.product(args.patience, args.rel_tol):
        t, a, s = run(patience, rel_tol)
        met = s / s0 <= 0.5 and a / a0 <= 1.05
        print(f"| {patience} | {rel_tol:g} | {s:.0f} | {s / s0:.2f} | {a:.4f} | {a / a0:.3f} | "
              f"{t / t0:.2f} | {'yes' if met else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
