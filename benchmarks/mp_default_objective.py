"""Empty Meaningful Perturbation maps on the 16 lesion positives of Table 1: the
old default objective ("score") against the new one ("log_odds"); default
(6, 120, 1) weights and blur reference, 150 steps (the benchmark's MP budget),
one thread. Run: python benchmarks/mp_default_objective.py (about 2 minutes)."""

from __future__ import annotations

import argparse
import time

import torch

from captum_regadv import MeaningfulPerturbation
from captum_regadv.benchmark.model import TrainConfig, load_or_train, predict_proba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = TrainConfig("lesions")
    model, _ = load_or_train(config)
    val = config.val_data()
    probs = predict_proba(model, val.images)
    chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:16]
    model = model.to(args.device)
    x = val.images[chosen].to(args.device)
    print("images", tuple(x.shape), "p > 0.99:", int((probs[chosen] > 0.99).sum()))
    for objective in ("score", "log_odds"):
        start = time.perf_counter()
        sal, j = MeaningfulPerturbation(model).attribute(
            x, target=1, objective=objective, steps=150, return_perturbed=True
        )
        empty = int((sal.flatten(1).max(1).values < 0.5).sum())
        with torch.no_grad():
            p = torch.softmax(model(j), 1)[:, 1]
        print(
            f"objective={objective!r}: maps with no element >= 0.5: {empty}/{len(chosen)}, "
            f"mean p(J) {float(p.mean()):.4f}, {time.perf_counter() - start:.1f} s"
        )


if __name__ == "__main__":
    main()
