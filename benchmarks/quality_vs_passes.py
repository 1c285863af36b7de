"""Explanation quality against cost: APE_D and CC hit rate against passes, per domain.

For each benchmark domain (trained model from the cache, or trained once),
the first ``--n`` validation positives that the model classifies as positive
are explained by ``RegularizedAdversarial`` under several schedules, side by
side in one run:

* ``legacy``: the schedule of the previous release (200 + 100 steps, no
  refinement, phase 2 from ``I``);
* ``default``: the package defaults;
* any ``name:key=value,key=value`` given with ``--schedule`` (keyword
  arguments of ``attribute``; numbers, ``True``/``False``/``None``).

Passes are forward+backward passes of the model per example, the weight
search included (``explainer.last_diagnostics.passes``); the forward-only
evaluations (``last_diagnostics.forward_passes``: the refinement's candidates
and the scores the search reads) are reported in their own column.

Usage::

    python benchmarks/quality_vs_passes.py --datasets lesions shapes shortcut --n 32
"""

from __future__ import annotations

import argparse
import ast
import time
from typing import Any

import torch

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate
from captum_regadv.benchmark import TrainConfig, load_or_train, predict_proba

#: The schedule of the previous release: 200 + 100 steps, nothing else (no
#: refinement, no release term, no per-example multiplier).
LEGACY: dict[str, Any] = dict(
    steps=200, phase2_steps=100, refine_candidates=0, phase2_start="input",
    release_weight=0.0, dual_step=1.0,
)


def parse_schedule(text: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,key=value"`` -> ``(name, kwargs)``."""
    name, _, rest = text.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return name, kwargs


def positives(
    dataset: str, n: int, seed: int = 0
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The model and the first ``n`` validation positives it classifies as positive
    (``seed``: the benchmark's master seed of data and weights; 0 is Table 1's)."""
    config = TrainConfig(dataset, seed=seed)
    model, _ = load_or_train(config)
    val = config.val_data()
    probs = predict_proba(model, val.images)
    chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:n]
    return model, val.images[chosen], val.masks[chosen]


def evaluate(
    model: torch.nn.Module, images: torch.Tensor, truth: torch.Tensor, kwargs: dict[str, Any],
    batch_size: int,
) -> dict[str, float]:
    """Mean APE_D, mean CC hit rate, median and mean passes (forward+backward),
    median forward-only passes, seconds per image."""
    explainer = RegularizedAdversarial(model)
    masks, perturbed, passes, forwards = [], [], [], []
    start = time.perf_counter()
    for k in range(0, images.shape[0], batch_size):
        x = images[k:k + batch_size]
        m, j = explainer.attribute(x, target=1, bounds=(0.0, 1.0), return_perturbed=True, **kwargs)
        masks.append(m)
        perturbed.append(j)
        passes.append(explainer.last_diagnostics.passes)
        forwards.append(explainer.last_diagnostics.forward_passes)
    seconds = (time.perf_counter() - start) / images.shape[0]
    mask, j = torch.cat(masks).cpu(), torch.cat(perturbed)
    p = torch.cat(passes).double()
    ape = ape_d(model, images, j, target=1)
    return dict(
        ape_d=float(ape.mean()),
        cc_hit_rate=float(cc_hit_rate(mask, truth).mean()),
        area=float(mask.mean()),
        passes_median=float(p.median()),
        passes_mean=float(p.mean()),
        forward_median=float(torch.cat(forwards).double().median()),
        seconds=seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["lesions", "shapes", "shortcut"])
    parser.add_argument("--n", type=int, default=32, help="positives per domain (default 32)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per attribute call")
    parser.add_argument("--schedule", action="append", default=[], help="name:key=value,...")
    parser.add_argument("--no-legacy", action="store_true", help="skip the legacy schedule")
    parser.add_argument("--no-default", action="store_true", help="skip the package defaults")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    schedules: list[tuple[str, dict[str, Any]]] = []
    if not args.no_legacy:
        schedules.append(("legacy 200+100", LEGACY))
    if not args.no_default:
        schedules.append(("default", {}))
    schedules += [parse_schedule(s) for s in args.schedule]
    print(
        "| domain | schedule | fwd+bwd passes (median) | (mean) | forward-only (median) "
        "| APE_D | vs legacy | CC hit rate (%) | mask area (%) | s / image |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        model, images, truth = positives(dataset, args.n)
        model, images = model.to(args.device), images.to(args.device)
        baseline = None
        for name, kwargs in schedules:
            r = evaluate(model, images, truth, kwargs, args.batch_size)
            baseline = r["ape_d"] if baseline is None else baseline
            print(
                f"| {dataset} | {name} | {r['passes_median']:.0f} | {r['passes_mean']:.1f} | "
                f"{r['forward_median']:.0f} | "
                f"{r['ape_d']:.4f} | {r['ape_d'] / baseline - 1:+.1%} | {r['cc_hit_rate']:.1f} | "
                f"{100 * r['area']:.2f} | {r['seconds']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
