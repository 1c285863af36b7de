"""Where a same-rule row beats this method: APE_D terms per image, side by side.

Runs this method's defaults and one Meaningful Perturbation row of Table 1
(its map, the threshold scanned with the same phase-2 rule, exactly as
``captum-regadv benchmark`` makes its "+ same rule" rows) on the same
positives and model, and prints per image, sorted by the gap: the APE_D
terms (L0/N, TV/N, M(J)) of both, their mask sizes in pixels, their numbers
of connected components and their CC hit rates, then the means.

Usage::

    python benchmarks/per_image_gap.py --set lesions:32:0 --mp min:40/120/1 --threads 1

A set is ``domain:positives:seed`` as in ``shrink_rate.py``; ``--mp`` is
``reference:l1/tv/beta`` (``min`` or ``blur``), one of Table 1's MP rows.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy import ndimage

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate
from captum_regadv.benchmark.table1 import SAME_RULE, Table1Settings, _mp
from _common import parser, setup
from quality_vs_passes import positives


def components(masks: torch.Tensor) -> list[int]:
    """8-connected components of each ``N x C x H x W`` mask (channels merged)."""
    merged = (masks != 0).any(1).cpu().numpy()
    return [int(ndimage.label(m, structure=np.ones((3, 3), dtype=bool))[1]) for m in merged]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--set", default="lesions:32:0")
    p.add_argument("--mp", default="min:40/120/1", help="reference:l1/tv/beta")
    args = p.parse_args()
    device = setup(args)
    domain, n, seed = args.set.split(":")
    model, x, truth = positives(domain, int(n), int(seed))
    model, x, truth = model.to(device).eval(), x.to(device), truth.to(device)
    reference, coeffs = args.mp.split(":")
    l1, tv, beta = (float(c) for c in coeffs.split("/"))

    start = time.perf_counter()
    ours_masks, ours_j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), return_perturbed=True
    )
    results = _mp(model, x, truth, Table1Settings(), reference, (l1, tv, beta))  # type: ignore[arg-type]
    label, _, mp_out = next(r for r in results if r[1].rule == SAME_RULE)
    seconds = time.perf_counter() - start

    rows = []
    for name, masks, j in (("ours", ours_masks, ours_j), (label, mp_out.masks, mp_out.perturbed)):
        terms = ape_d(model, x, j, target=1, return_components=True)
        rows.append(dict(
            name=name, terms=terms, cc=cc_hit_rate(masks, truth),
            pixels=(masks != 0).any(1).flatten(1).sum(1).tolist(), parts=components(masks),
        ))
    ours, mp = rows
    gap = ours["terms"].total - mp["terms"].total
    print(f"{args.set}: ours against {label} ({seconds:.0f} s); per image, largest gap first")
    print("| image | gap | ours APE_D (L0, TV, M) | px | parts | CC % | MP APE_D (L0, TV, M) | px | parts | CC % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in torch.argsort(gap, descending=True).tolist():
        cells = [f"{k}", f"{float(gap[k]):+.5f}"]
        for row in (ours, mp):
            t = row["terms"]
            cells += [
                f"{float(t.total[k]):.5f} ({float(t.sparsity[k]):.5f}, {float(t.smoothness[k]):.5f}, "
                f"{float(t.classification[k]):.5f})",
                f"{row['pixels'][k]}", f"{row['parts'][k]}", f"{float(row['cc'][k]):.0f}",
            ]
        print("| " + " | ".join(cells) + " |")
    for row in (ours, mp):
        t = row["terms"]
        print(f"{row['name']}: APE_D {float(t.total.mean()):.5f} = L0 {float(t.sparsity.mean()):.5f} "
              f"+ TV {float(t.smoothness.mean()):.5f} + M {float(t.classification.mean()):.5f}; "
              f"CC {float(row['cc'].mean()):.1f}%; median px {int(np.median(row['pixels']))}; "
              f"median parts {int(np.median(row['parts']))}")
    print(f"images where ours is lower: {int((gap < 0).sum())}/{gap.numel()}")


if __name__ == "__main__":
    main()
