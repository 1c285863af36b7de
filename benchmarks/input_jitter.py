"""How much Table 1's figures move when the inputs move by their last bits.

Table 1 scores one run per method on 16 images. This script runs the same
methods on the same images, model and rule again, with every input and both
bounds shifted by ``s`` and a model that subtracts ``s`` first, for
``s`` in 0, +-1e-7, +-2e-7, 3e-7: the same images up to the last one or two
bits of float32. It prints, per domain and method, APE_D and the CC hit rate
as the mean over the shifts, their standard deviation and range:

* this method with the package defaults (``bounds`` the shifted ``(0, 1)``);
* Meaningful Perturbation's best same-rule row of Table 1 under Table 1's
  protocol (150 steps, then the threshold that minimises the mean APE_D of
  these images, each candidate threshold's ``J`` made by
  :func:`~captum_regadv.perturb_within_mask` with 30 steps).

Usage::

    python benchmarks/input_jitter.py --datasets lesions shapes shortcut --threads 2
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Any, Callable

import torch

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate
from captum_regadv.mask_rules import perturb_within_mask
from equal_budget import RULE_STEPS, SETTINGS, mp_map, scan
from quality_vs_passes import positives

SHIFTS = (0.0, 1e-7, -1e-7, 2e-7, -2e-7, 3e-7)
#: the best same-rule MP row of Table 1 per domain (see equal_budget.py)
BEST_MP = {"lesions": SETTINGS[0], "shapes": SETTINGS[1], "shortcut": SETTINGS[2]}


class Shifted(torch.nn.Module):
    """The model of inputs shifted by ``shift``: subtracts it, then calls ``inner``."""

    def __init__(self, inner: torch.nn.Module, shift: float) -> None:
        super().__init__()
        self.inner, self.shift = inner, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x - self.shift)


def ours(model: torch.nn.Module, x: torch.Tensor, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    masks, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(shift, 1.0 + shift), return_perturbed=True
    )
    return masks, j


def best_mp(setting: tuple[str, float, float, float]) -> Callable[..., Any]:
    def run(model: torch.nn.Module, x: torch.Tensor, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
        rule = functools.partial(
            perturb_within_mask, model, target=1, bounds=(shift, 1.0 + shift), steps=RULE_STEPS
        )
        result = scan(model, x, mp_map(model, x, setting, 150), rule)
        return result.masks, result.perturbed

    return run


def spread(values: list[float], digits: int) -> str:
    return (f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["lesions", "shapes", "shortcut"])
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| domain | method | APE_D mean +- std (range) | CC hit % mean +- std (range) |")
    print("|---|---|---|---|")
    for dataset in args.datasets:
        model, x, truth = positives(dataset, args.n)
        model, x, truth = model.to(args.device), x.to(args.device), truth.to(args.device)
        ref, l1, tv, beta = BEST_MP[dataset]
        methods = {"this method (defaults)": ours,
                   f"MP {ref} {l1:g}/{tv:g}/{beta:g} + same rule": best_mp(BEST_MP[dataset])}
        for name, method in methods.items():
            apes, ccs = [], []
            start = time.perf_counter()
            for shift in SHIFTS:
                shifted = Shifted(model, shift).eval()
                masks, j = method(shifted, x + shift, shift)
                apes.append(float(ape_d(shifted, x + shift, j, target=1).mean()))
                ccs.append(float(cc_hit_rate(masks, truth).mean()))
            print(f"| {dataset} | {name} | {spread(apes, 5)} | {spread(ccs, 1)} |", flush=True)
            print(f"<!-- {dataset} {name}: APE_D per shift {[round(a, 5) for a in apes]}, "
                  f"{time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
