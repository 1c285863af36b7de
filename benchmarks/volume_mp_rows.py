"""Meaningful Perturbation's same-rule rows on the 3-D volume positives, beside
this method's defaults, without the whole 3-D benchmark (about 2 hours).

Table 1's protocol for MP (150 steps, then the threshold that minimises the
mean APE_D of these volumes, each candidate's ``J`` made by
:func:`~captum_regadv.perturb_within_mask` with 30 steps, as in
``equal_budget.py``), and ``RegularizedAdversarial`` with the package
defaults; APE_D, CC hit rate, mask area, the mask components outside the
lesions and the passes per volume.

Usage::

    python benchmarks/volume_mp_rows.py --n 16 --threads 1
"""

from __future__ import annotations

import functools
import time

from captum_regadv import RegularizedAdversarial
from captum_regadv.benchmark.passes import count_passes
from captum_regadv.benchmark.scoring import missed_components
from captum_regadv.mask_rules import perturb_within_mask
from _common import parser, setup
from equal_budget import RULE_STEPS, _row, mp_map, scan
from shrink_rate import volume_positives

SETTINGS = (("blur", 40.0, 120.0, 1.0), ("blur", 6.0, 120.0, 1.0), ("min", 40.0, 120.0, 1.0))


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="volume positives")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = setup(args)
    model, x, truth = volume_positives(args.n, args.seed)
    model, x, truth = model.to(device), x.to(device), truth.to(device)
    rule = functools.partial(perturb_within_mask, model, target=1, bounds=(0.0, 1.0),
                             steps=RULE_STEPS)
    print("| row | fwd+bwd / volume | fwd / volume | APE_D | CC hit rate (%) | mask area (%) "
          "| components outside | their median distance (voxels) | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = [("ours (defaults)", None)] + [(f"MP {s[0]} {s[1]:g}/{s[2]:g}/{s[3]:g} + same rule", s)
                                          for s in SETTINGS]
    for name, setting in runs:
        start = time.perf_counter()
        with count_passes(model) as passes:
            if setting is None:
                masks, j = RegularizedAdversarial(model).attribute(
                    x, target=1, bounds=(0.0, 1.0), return_perturbed=True
                )
            else:
                found = scan(model, x, mp_map(model, x, setting, 150), rule)
                masks, j = found.masks, found.perturbed
        row = _row(name, "", model, x, truth, masks, j, passes)
        outside = sorted(missed_components(masks.cpu(), truth.cpu()))
        median = f"{outside[len(outside) // 2]:.1f}" if outside else "-"
        print(f"| {name} | {row['passes']:.1f} | {row['forward']:.1f} | {row['ape_d']:.5f} | "
              f"{row['cc']:.1f} | {row['area']:.3f} | {len(outside)} | {median} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
