"""Where the refinement's need is measured: at phase 2's J, or on the way back to I.

The refinement's first round ranks the mask's elements by the smoothed need
G[|grad l(J_t) * (I - J)|] times phase 1's smoothed change, with the gradient
at J (t = 0), and for an example whose log-odds at J is below log(1/N) by the
geometric mean of the needs at t = 0 and t = 0.5 (``desaturated_need``). Where
phase 2 destroyed the class far beyond what is needed (log-odds -16 instead
of the usual -5 to -9), the evidence no longer moves the log-odds at J and
ranks low at t = 0. For every set (domain:positives:seed, as in
``shrink_rate.py``) this script runs the method with the defaults up to the
refinement, takes the refinement's own inputs, and prints for the points
t = 0, 0.25, 0.5 (and the geometric mean of the needs at 0 and 0.5) the share
of the top-k ranked mask elements that lie on the ground truth, k = the ground
truth's elements in the mask: mean over images, and the worst image with its
log-odds at J. One forward+backward pass per point; no method change.

Usage::

    python benchmarks/need_point.py --sets shortcut:16:0 lesions:16:0 --threads 1
"""

from __future__ import annotations

from typing import Any

import torch

import captum_regadv._phases as phases
from captum_regadv import RegularizedAdversarial
from captum_regadv._need import need_ranking
from _common import parser, setup
from quality_vs_passes import positives

POINTS = (0.0, 0.25, 0.5)


def refinement_inputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The arguments of the refinement's call (the defaults' run, stopped there)."""
    seen: dict[str, Any] = {}
    original = phases.refine

    def capture(scored, originals, change, masks, perturbed, bounds, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(model=scored, originals=originals, change=change, masks=masks,
                    perturbed=perturbed, dims=kwargs["dims"])
        return original(scored, originals, change, masks, perturbed, bounds, **kwargs)

    phases.refine = capture
    try:
        RegularizedAdversarial(model).attribute(x, target=1, bounds=(0, 1), refine_rounds=1)
    finally:
        phases.refine = original
    return seen


def truth_share(ranking: torch.Tensor, mask: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of the top-k mask elements by ``ranking`` that lie on ``truth``
    (k = truth elements in the mask; 1.0 when there are none)."""
    inside = mask.flatten().bool()
    on_truth = truth.flatten().bool()[inside]
    k = int(on_truth.sum())
    if k == 0:
        return 1.0
    top = torch.topk(ranking.flatten()[inside], k).indices
    return float(on_truth[top].float().mean())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=["shortcut:16:0", "lesions:16:0", "shapes:16:0"])
    args = p.parse_args()
    setup(args)
    print("| set | mean log-odds at J | " + " | ".join(f"t = {t}" for t in POINTS)
          + " | geometric mean of t = 0, 0.5 | worst image at t = 0 (log-odds at J) |")
    print("|---" * (len(POINTS) + 4) + "|")
    for spec in args.sets:
        domain, count, seed = spec.split(":")
        model, x, truth = positives(domain, int(count), int(seed))
        seen = refinement_inputs(model, x)
        scored, originals, perturbed = seen["model"], seen["originals"], seen["perturbed"]
        ranked = {t: need_ranking(scored, originals, perturbed, seen["dims"], None, toward=t)
                  for t in POINTS}
        needs = {t: need[0] for t, (need, _) in ranked.items()}
        change, mask = seen["change"][0], seen["masks"][0]
        rankings = {f"t = {t}": needs[t] * change for t in POINTS}
        rankings["geo"] = (needs[0.0] * needs[0.5]).sqrt() * change
        log_odds = ranked[0.0][1]  # at J
        shares = {name: [truth_share(r[i], mask[i], truth[i]) for i in range(x.shape[0])]
                  for name, r in rankings.items()}
        worst = min(range(x.shape[0]), key=lambda i: shares["t = 0.0"][i])
        cells = [f"{sum(v) / len(v):.3f}" for v in shares.values()]
        print(f"| {spec} | {float(log_odds.mean()):.1f} | " + " | ".join(cells)
              + f" | image {worst}: {shares['t = 0.0'][worst]:.2f} ({float(log_odds[worst]):.1f}) |",
              flush=True)


if __name__ == "__main__":
    main()
