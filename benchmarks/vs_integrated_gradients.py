"""This method against Captum's IntegratedGradients: time per image, same model, same images.

    python benchmarks/vs_integrated_gradients.py [--device cuda] [--n 8]
        [--model lesions|untrained] [--size 128] [--ig-steps 50]

Both explain the same ``--n`` images in one call each: the lesion positives
the trained benchmark CNN classifies as positive (``--model lesions``, the
cached model, 128x128), or a seeded batch through the untrained CNN.
IntegratedGradients runs ``--ig-steps`` (default 50) interpolation steps,
``n_steps * n`` examples in one forward+backward pass (``--ig-batch`` caps
that, Captum's ``internal_batch_size``); this method runs its default
schedule (60 + 20 + 10 steps, 8 refinement candidates, the weight search on).
Interleaved rounds, best of ``--repeats``; prints the seconds per image of
each, the passes this method ran (``last_diagnostics``) and the time ratio
(goal: this method <= 3x IntegratedGradients).
"""

from __future__ import annotations

import torch
from _common import batch, model_on, parser, round_times, setup
from captum.attr import IntegratedGradients

from captum_regadv import RegularizedAdversarial


def _images(kind: str, n: int, size: int, device: torch.device
            ) -> tuple[torch.nn.Module, torch.Tensor]:
    if kind == "untrained":
        return model_on(device), batch(n, size, device)
    from captum_regadv.benchmark.model import TrainConfig, load_or_train, predict_proba

    model, _ = load_or_train(TrainConfig("lesions"))
    val = TrainConfig("lesions").val_data()
    probs = predict_proba(model, val.images)
    idx = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:n]
    return model.to(device).eval(), val.images[idx].to(device)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="image side (--model untrained)")
    p.add_argument("--model", choices=("lesions", "untrained"), default="lesions")
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--ig-batch", type=int, default=None)
    args = p.parse_args()
    device = setup(args)
    model, x = _images(args.model, args.n, args.size, device)
    ra = RegularizedAdversarial(model)
    ig = IntegratedGradients(model)

    def ours() -> None:
        ra.attribute(x, target=1, bounds=(0.0, 1.0))

    def theirs() -> None:
        ig.attribute(x, target=1, baselines=0.0, n_steps=args.ig_steps,
                     internal_batch_size=args.ig_batch)

    times = round_times([theirs, ours], args.repeats, device)
    t_ig, t_ra = (min(t[i] for t in times) for i in (0, 1))
    d = ra.last_diagnostics
    assert d is not None
    n = x.shape[0]
    print(f"device={device} threads={torch.get_num_threads()} model={args.model} "
          f"{n} images {tuple(x.shape[1:])}, best of {args.repeats} interleaved rounds")
    print(f"IntegratedGradients ({args.ig_steps} steps): {t_ig:.3f} s, "
          f"{t_ig / n:.4f} s/image")
    print(f"RegularizedAdversarial (defaults):  {t_ra:.3f} s, {t_ra / n:.4f} s/image; "
          f"passes per image {d.passes.float().mean():.1f} forward+backward, "
          f"{d.forward_passes.float().mean():.1f} forward; weight search re-ran "
          f"{int((d.attempts > 1).sum())} of {n} image(s)")
    print(f"time ratio RegularizedAdversarial / IntegratedGradients: {t_ra / t_ig:.2f}")


if __name__ == "__main__":
    main()
