"""This method against its peers at the same output resolution, side by side.

    python benchmarks/peers.py [--device cuda]

1. vs Captum's Occlusion with a 1x1 window (pixel resolution) at 64x64 and
   128x128: time ratio (Occlusion needs H*W forward passes).
2. vs MeaningfulPerturbation at the same number of steps on the trained
   lesion model: time ratio and APE_D of both.
"""

from __future__ import annotations

import time

import torch
from _common import batch, model_on, parser, setup
from captum.attr import Occlusion

from captum_regadv import MeaningfulPerturbation, RegularizedAdversarial, ape_d
from captum_regadv.benchmark.model import TrainConfig, load_or_train, predict_proba


def timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=4)
    args = p.parse_args()
    device = setup(args)
    model = model_on(device)
    print(f"device={device} threads={torch.get_num_threads()}")
    for size in (64, 128):
        x = batch(args.n, size, device)
        t_ra, _ = timed(
            lambda: RegularizedAdversarial(model).attribute(x, target=1, bounds=(0.0, 1.0), search_steps=0)
        )
        t_occ, _ = timed(
            lambda: Occlusion(model).attribute(
                x, target=1, sliding_window_shapes=(1, 1, 1), strides=(1, 1, 1),
                baselines=0.0, perturbations_per_eval=64,
            )
        )
        print(
            f"{size}x{size}, {args.n} images: ours (300 steps) {t_ra:.1f} s, "
            f"Occlusion 1x1 ({size * size} windows) {t_occ:.1f} s, ratio Occlusion/ours {t_occ / t_ra:.2f}"
        )
    trained, _ = load_or_train(TrainConfig("lesions"))
    trained = trained.to(device)
    val = TrainConfig("lesions").val_data()
    probs = predict_proba(trained, val.images)
    idx = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[: args.n]
    x = val.images[idx].to(device)
    t_ra, (m_ra, j_ra) = timed(
        lambda: RegularizedAdversarial(trained).attribute(
            x, target=1, bounds=(0.0, 1.0), return_perturbed=True, search_steps=0
        )
    )
    t_mp, (s_mp, j_mp) = timed(
        lambda: MeaningfulPerturbation(trained).attribute(
            x, target=1, steps=300, objective="log_odds", return_perturbed=True
        )
    )
    a_ra = float(ape_d(trained, x, j_ra, target=1).mean())
    a_mp = float(ape_d(trained, x, j_mp, target=1).mean())
    print(
        f"lesions 128x128, {x.shape[0]} positives, 300 steps each: ours {t_ra:.1f} s APE_D {a_ra:.4f}; "
        f"MP blur {t_mp:.1f} s APE_D {a_mp:.4f} (its continuous cross-fade, unthresholded); "
        f"time ratio MP/ours {t_mp / t_ra:.2f}"
    )


if __name__ == "__main__":
    main()
