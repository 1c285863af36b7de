"""Per-example early stopping: steps saved and APE_D kept, on the lesion benchmark.

    python benchmarks/early_stopping.py [--device cuda] [--n 16] [--patience 20]

Runs the default budget (200 + 100 steps) with and without ``patience`` on
the same validation positives and prints the median steps per example and
the mean APE_D of both (goal: median steps <= half, APE_D within 5%).
"""

from __future__ import annotations

import time

import torch
from _common import parser, setup

from captum_regadv import RegularizedAdversarial, ape_d
from captum_regadv.benchmark.model import TrainConfig, load_or_train, predict_proba


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--rel-tol", type=float, default=1e-3)
    args = p.parse_args()
    device = setup(args)
    config = TrainConfig("lesions")
    model, _ = load_or_train(config)
    model = model.to(device)
    val = config.val_data()
    probs = predict_proba(model, val.images)
    idx = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[: args.n]
    x = val.images[idx].to(device)
    results = {}
    for patience in (None, args.patience):
        ra = RegularizedAdversarial(model)
        start = time.perf_counter()
        _, j = ra.attribute(x, target=1, bounds=(0.0, 1.0), patience=patience,
                            rel_tol=args.rel_tol, return_perturbed=True)
        seconds = time.perf_counter() - start
        ape = float(ape_d(model, x, j, target=1).mean())
        steps = ra.last_steps.float()
        results[patience] = (seconds, ape, float(steps.median()))
        print(f"patience={patience}: median steps {steps.median():.0f} (of 300), mean steps "
              f"{steps.mean():.0f}, mean APE_D {ape:.4f}, {seconds:.1f} s")
    (t0, a0, s0), (t1, a1, s1) = results[None], results[args.patience]
    print(f"early stopping: median steps x{s1 / s0:.2f}, APE_D x{a1 / a0:.3f}, time x{t1 / t0:.2f}")


if __name__ == "__main__":
    main()
