"""One large grayscale image, the full-resolution path against ``coarse_to_fine``.

    python benchmarks/large_image.py [--device cuda] [--sizes 1024,2048] [--factor 4]
        [--model lesions|untrained] [--steps 60 --phase2-steps 20 --refine-steps 10]

For every size, a positive synthetic mammogram of that size (the lesion
generator, seed 1; lesions scale with the image, micro-calcifications stay
1-2 pixels) is explained by the benchmark CNN (``--model lesions``: the
trained lesion model from the cache; ``untrained``: seeded random weights
and a seeded uniform image, for timing only),
once on the plain path and once with ``coarse_to_fine=--factor``. Each run is
a fresh subprocess, so its peak memory is its own: ``ru_maxrss`` of the
child (CPU; it includes the Python process and the model, about 0.3 GiB) or
``torch.cuda.max_memory_allocated`` (CUDA). Prints wall time, passes
(``last_diagnostics.passes``), peak memory, APE_D and the score after, the
ratios fast/plain, and the largest square image that fits in 16 GB by a
linear fit of peak memory against pixels over the sizes run (an
extrapolation, not a run).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from _common import batch, model_on, parser, setup

from captum_regadv import RegularizedAdversarial, ape_d


def _model(kind: str, device: torch.device) -> torch.nn.Module:
    if kind == "untrained":
        return model_on(device)
    from captum_regadv.benchmark.model import TrainConfig, load_or_train

    model, _ = load_or_train(TrainConfig("lesions"))
    return model.to(device).eval()


def _image(size: int, device: torch.device, kind: str) -> torch.Tensor:
    if kind == "untrained":  # no generator time: a seeded uniform image
        return batch(1, size, device)
    from captum_regadv.benchmark.datasets import make_dataset

    return make_dataset("lesions", 1, size=size, positive_fraction=1.0, seed=1).images.to(device)


def child(args: argparse.Namespace) -> dict[str, float]:
    device = setup(args)
    model = _model(args.model, device)
    x = _image(args.child, device, args.model)
    factor = None if args.child_factor == 0 else args.child_factor
    explainer = RegularizedAdversarial(model)
    explainer.attribute(x[..., :64, :64], target=1, steps=2, phase2_steps=1)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    mask, j = explainer.attribute(
        x, target=1, bounds=(0.0, 1.0), steps=args.steps, phase2_steps=args.phase2_steps,
        refine_steps=args.refine_steps, coarse_to_fine=factor, return_perturbed=True,
        internal_batch_size=1,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    seconds = time.perf_counter() - start
    d = explainer.last_diagnostics
    assert d is not None
    return {
        "size": args.child, "factor": args.child_factor, "seconds": seconds, "peak_gib": peak,
        "passes": int(d.passes[0]), "forward_passes": int(d.forward_passes[0]),
        "ape_d": float(ape_d(model, x, j, target=1)[0]),
        "score_before": float(d.score_before[0]), "score_after": float(d.score_after[0]),
        "mask_pixels": int(mask.sum()),
    }


def run_child(args: argparse.Namespace, size: int, factor: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(size), "--child-factor", str(factor),
           "--device", args.device, "--model", args.model, "--steps", str(args.steps),
           "--phase2-steps", str(args.phase2_steps), "--refine-steps", str(args.refine_steps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--sizes", default="1024,2048")
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--model", choices=("lesions", "untrained"), default="lesions")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--phase2-steps", type=int, default=20)
    p.add_argument("--refine-steps", type=int, default=10)
    p.add_argument("--skip-plain", action="store_true", help="only the coarse-to-fine runs")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-factor", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args)))
        return
    print(f"device={args.device} model={args.model} schedule={args.steps}+{args.phase2_steps}"
          f"+{args.refine_steps}")
    print("size       path        seconds  passes  peak GiB   APE_D    score   mask px")
    rows: dict[tuple[int, int], dict[str, float]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        for factor in ((args.factor,) if args.skip_plain else (0, args.factor)):
            r = run_child(args, size, factor)
            rows[size, factor] = r
            path = "plain" if factor == 0 else f"c2f f={factor}"
            print(f"{size}x{size:<5} {path:10s} {r['seconds']:8.1f} {r['passes']:7d} "
                  f"{r['peak_gib']:9.2f} {r['ape_d']:8.4f} {r['score_after']:8.4f} "
                  f"{r['mask_pixels']:8d}", flush=True)
        if not args.skip_plain:
            a, b = rows[size, 0], rows[size, args.factor]
            print(f"  ratio c2f/plain: time {b['seconds'] / a['seconds']:.3f}, "
                  f"APE_D {b['ape_d'] / a['ape_d']:.3f}, peak memory "
                  f"{b['peak_gib'] / a['peak_gib']:.3f}")
    for factor in (0, args.factor):
        runs = sorted((s, r) for (s, f), r in rows.items() if f == factor)
        if len(runs) < 2:
            continue
        (s0, a), (s1, b) = runs[0], runs[-1]
        per_pixel = (b["peak_gib"] - a["peak_gib"]) / (s1**2 - s0**2)
        fixed = a["peak_gib"] - per_pixel * s0**2
        side = int(((16 - fixed) / per_pixel) ** 0.5) if per_pixel > 0 else 0
        print(f"{'plain' if factor == 0 else f'c2f f={factor}'}: peak ~ {fixed:.2f} GiB + "
              f"{per_pixel * 2**20:.3f} GiB per megapixel; largest square image in 16 GB "
              f"~ {side}x{side} (linear extrapolation)")


if __name__ == "__main__":
    main()
