"""One large grayscale image through the fully convolutional benchmark CNN.

    python benchmarks/full_resolution.py [--device cuda] [--sizes 1024,2048]

Each size runs in a fresh subprocess so that its peak memory (ru_maxrss on
CPU, max_memory_allocated on CUDA) is its own. Prints wall time per
forward+backward pass (``last_diagnostics.passes``; the forward-only passes
are in the time too), the extrapolated time for the default schedule
(60 + 20 + 10 = 90 passes), and peak memory; then
the largest square image that fits in 16 GB by linear extrapolation of the
memory per pixel.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import torch
from _common import model_on, parser, setup

from captum_regadv import RegularizedAdversarial


def one(size: int, steps: int, device_name: str) -> dict[str, float]:
    device = torch.device(device_name)
    model = model_on(device)
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    RegularizedAdversarial(model).attribute(x[..., :64, :64], target=1, steps=2, phase2_steps=1)
    start = time.perf_counter()
    explainer = RegularizedAdversarial(model)
    explainer.attribute(x, target=1, steps=steps, phase2_steps=steps // 2,
                        refine_steps=max(1, steps // 4), bounds=(0.0, 1.0), search_steps=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    seconds = time.perf_counter() - start
    d = explainer.last_diagnostics
    assert d is not None
    return {"size": size, "seconds": seconds, "steps": int(d.passes[0]), "peak_gib": peak}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--sizes", default="1024,2048")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--child", type=int, default=None, help=argparse_hidden())
    args = p.parse_args()
    if args.child is not None:
        setup(args)
        print(json.dumps(one(args.child, args.steps, args.device)))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(size), "--steps", str(args.steps), "--device", args.device]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        results.append(r)
        per_step = r["seconds"] / r["steps"]
        print(
            f"{size}x{size} on {args.device}: {per_step:.2f} s/pass, ~{90 * per_step / 60:.1f} min for "
            f"the default 60+20+10 passes, peak memory {r['peak_gib']:.2f} GiB"
        )
    if len(results) >= 2:
        a, b = results[-2], results[-1]
        per_pixel = (b["peak_gib"] - a["peak_gib"]) / (b["size"] ** 2 - a["size"] ** 2)
        fixed = a["peak_gib"] - per_pixel * a["size"] ** 2
        side = int(((16 - fixed) / per_pixel) ** 0.5) if per_pixel > 0 else 0
        print(f"memory ~ {fixed:.2f} GiB + {per_pixel * 2**20:.3f} GiB per megapixel: "
              f"largest square image in 16 GB ~ {side}x{side}")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
