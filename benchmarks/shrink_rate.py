"""The shrinking phase 2 measured: ``shrink_rate`` values side by side on the same
positives, models and input shifts.

For every set (domain, positives, seed) and every rate, this method with the
package defaults except ``shrink_rate`` explains the positives once per input
shift (the inputs, bounds and model moved by ``s`` in their last bits, as in
``input_jitter.py``: the spread of a result that nothing but rounding moves),
and the script prints the mean APE_D and CC hit rate over the shifts, the
per-shift values, the mask components outside the ground truth, the mask
area and the median passes per example (forward+backward, forward-only).

Usage::

    python benchmarks/shrink_rate.py --sets lesions:16:0 lesions:32:0 shapes:16:1 --threads 1
    python benchmarks/shrink_rate.py --sets volumes:16:0 --shifts 0 --threads 1

A set is ``domain:positives:seed`` (seed 0: Table 1's data and model; others:
data and models nothing was tuned on); ``volumes`` is the 3-D MONAI benchmark.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate
from captum_regadv.benchmark.evaluation import predict_proba
from captum_regadv.benchmark.scoring import missed_components
from _common import parser, setup
from input_jitter import Shifted
from quality_vs_passes import positives


def volume_positives(n: int, seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The 3-D benchmark network and its first ``n`` validation positives."""
    from captum_regadv.benchmark.monai_model import VolumeTrainConfig, load_or_train_volumes

    config = VolumeTrainConfig(seed=seed)
    model, _ = load_or_train_volumes(config)
    val = config.val_data()
    probs = predict_proba(model, val.images)
    chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:n]
    return model, val.images[chosen], val.masks[chosen]


def run(model: torch.nn.Module, x: torch.Tensor, truth: torch.Tensor, shift: float,
        rate: float) -> dict[str, Any]:
    shifted = Shifted(model, shift).eval()
    explainer = RegularizedAdversarial(shifted)
    masks, j = explainer.attribute(x + shift, target=1, bounds=(shift, 1.0 + shift),
                                   return_perturbed=True, shrink_rate=rate)
    diagnostics = explainer.last_diagnostics
    return dict(
        ape_d=float(ape_d(shifted, x + shift, j, target=1).mean()),
        cc=float(cc_hit_rate(masks, truth).mean()),
        outside=len(missed_components(masks.cpu(), truth.cpu())),
        area=100.0 * float((masks != 0).float().mean()),
        passes=float(diagnostics.passes.double().median()),
        forward=float(diagnostics.forward_passes.double().median()),
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=["lesions:16:0", "shapes:16:0", "shortcut:16:0"])
    p.add_argument("--rates", nargs="+", type=float, default=[0.0, 0.03])
    p.add_argument("--shifts", nargs="+", type=float, default=[0.0, 1e-7, -1e-7])
    args = p.parse_args()
    device = setup(args)
    print("| set | shrink_rate | APE_D (mean; per shift) | CC hit % (mean; per shift) "
          "| components outside GT | mask area % | fwd+bwd, fwd / example |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.sets:
        domain, n, seed = spec.split(":")
        if domain == "volumes":
            model, x, truth = volume_positives(int(n), int(seed))
        else:
            model, x, truth = positives(domain, int(n), int(seed))
        model, x, truth = model.to(device), x.to(device), truth.to(device)
        for rate in args.rates:
            start = time.perf_counter()
            rows = [run(model, x, truth, s, rate) for s in args.shifts]
            ape = [r["ape_d"] for r in rows]
            cc = [r["cc"] for r in rows]
            print(f"| {spec} | {rate:g} | {statistics.mean(ape):.5f}; "
                  f"{' '.join(f'{a:.5f}' for a in ape)} | {statistics.mean(cc):.1f}; "
                  f"{' '.join(f'{c:.0f}' for c in cc)} | {[r['outside'] for r in rows]} | "
                  f"{statistics.mean(r['area'] for r in rows):.3f} | "
                  f"{rows[0]['passes']:.0f}, {rows[0]['forward']:.0f} |", flush=True)
            print(f"<!-- {spec} rate {rate:g}: {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
