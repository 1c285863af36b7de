"""Cost of one large volume: RegularizedAdversarial (package defaults) on the 3-D benchmark's network.

    python benchmarks/volume_cost.py [--sizes 128,256] [--threads 2]

For every size, one positive generated volume ``1 x 1 x S x S x S`` (the volumes
domain, seed 1; lesions keep their voxel sizes) is explained for class 1 by
the benchmark's MONAI DenseNet (the trained weights of ``VolumeTrainConfig()``
from the cache; the network is fully convolutional up to a global pool, so it
takes any size) with the package defaults (``bounds=(0, 1)``). Each size runs
in a fresh subprocess, so its peak memory is its own: ``ru_maxrss`` of the
child (it includes the Python process, torch and the model, about 0.3 GiB).
``--steps``/``--phase2-steps`` cap the schedule (for sizes where the default
schedule takes hours: seconds per pass and peak memory do not depend on the
number of steps). Prints wall time, model passes (``last_diagnostics.passes``), peak memory,
the class probability before and after, the mask's voxels, and the largest
cube that fits in 16 GB by a linear fit of peak memory against voxels over
the sizes run (an extrapolation, not a run).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from captum_regadv import RegularizedAdversarial


def child(size: int, steps: int | None, phase2_steps: int | None, device: str) -> dict[str, float]:
    from captum_regadv.benchmark.monai_model import load_or_train_volumes
    from captum_regadv.benchmark.volumes import make_volume_dataset

    model, _ = load_or_train_volumes()
    model = model.to(device)
    x = make_volume_dataset(1, size=size, positive_fraction=1.0, seed=1).images.to(device)
    explainer = RegularizedAdversarial(model)
    start = time.perf_counter()
    budget = {k: v for k, v in (("steps", steps), ("phase2_steps", phase2_steps)) if v}
    mask = explainer.attribute(x, target=1, bounds=(0.0, 1.0), **budget)
    seconds = time.perf_counter() - start
    d = explainer.last_diagnostics
    assert d is not None and isinstance(mask, torch.Tensor)
    return {
        "size": size, "seconds": seconds, "passes": int(d.passes[0]),
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "score_before": float(d.score_before[0]), "score_after": float(d.score_after[0]),
        "mask_voxels": int(mask.sum()), "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", default="128,256")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="peak memory is ru_maxrss: CPU only")
    p.add_argument("--steps", type=int, default=None, help="cap phase 1 (default: the package's)")
    p.add_argument("--phase2-steps", type=int, default=None, help="cap phase 2 (default: the package's)")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        print(json.dumps(child(args.child, args.steps, args.phase2_steps, args.device)))
        return
    budget = "defaults" if not (args.steps or args.phase2_steps) else (
        f"steps={args.steps}, phase2_steps={args.phase2_steps} (a capped schedule)")
    print(f"torch {torch.__version__}, {args.threads} thread(s); RegularizedAdversarial {budget}")
    print("size         seconds  passes  s/pass  peak GiB  p before  p after  mask voxels")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(size), "--threads", str(args.threads),
               "--device", args.device]
        cmd += [f"--{k}={v}" for k, v in (("steps", args.steps), ("phase2-steps", args.phase2_steps)) if v]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        print(f"{size}^3{'':6} {r['seconds']:8.1f} {r['passes']:7d} {r['seconds'] / r['passes']:7.3f} "
              f"{r['peak_gib']:9.2f} {r['score_before']:9.4f} {r['score_after']:8.4f} "
              f"{r['mask_voxels']:11d}", flush=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        per_voxel = (b["peak_gib"] - a["peak_gib"]) / (b["size"] ** 3 - a["size"] ** 3)
        fixed = a["peak_gib"] - per_voxel * a["size"] ** 3
        side = int(((16 - fixed) / per_voxel) ** (1 / 3)) if per_voxel > 0 else 0
        print(f"peak ~ {fixed:.2f} GiB + {per_voxel * 2**20:.3f} GiB per million voxels; largest "
              f"cube in 16 GB ~ {side}^3 (linear extrapolation from {a['size']}^3 and "
              f"{b['size']}^3)")


if __name__ == "__main__":
    main()
