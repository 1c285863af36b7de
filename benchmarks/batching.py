"""Images per second explaining 64 images in one call, by internal batch size.

    python benchmarks/batching.py [--device cuda] [--n 64] [--size 128]

``internal_batch_size`` bounds memory: at most that many examples are
optimised at once. The masks do not depend on it (tests check this).
"""

from __future__ import annotations

import time

import torch
from _common import batch, model_on, parser, setup

from captum_regadv import RegularizedAdversarial


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--phase2-steps", type=int, default=20)
    p.add_argument("--batch-sizes", default="1,8,32,64")
    args = p.parse_args()
    device = setup(args)
    model = model_on(device)
    x = batch(args.n, args.size, device)
    ra = RegularizedAdversarial(model)
    ra.attribute(x[:2], target=1, steps=2, phase2_steps=1)  # warm-up
    print(f"device={device} threads={torch.get_num_threads()} {args.n} images {args.size}x{args.size}, "
          f"{args.steps}+{args.phase2_steps} steps")
    base = None
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        ra.attribute(x, target=1, steps=args.steps, phase2_steps=args.phase2_steps,
                     bounds=(0.0, 1.0), internal_batch_size=bs, search_steps=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rate = args.n / seconds
        base = base or rate
        print(f"internal_batch_size={bs:3d}: {seconds:7.1f} s, {rate:7.2f} images/s, x{rate / base:.2f} vs batch 1")


if __name__ == "__main__":
    main()
