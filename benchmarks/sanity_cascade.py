"""Model-randomisation sanity check (Adebayo et al. 2018) on the lesion benchmark model.

    python benchmarks/sanity_cascade.py [--n 4] [--crop 64] [--out results/sanity_cascade.png]

The trained lesion CNN (``load_or_train(TrainConfig("lesions"))``, cached)
is randomised layer by layer from the logits down to the first convolution
(:func:`captum_regadv.sanity.randomization_cascade`), and each method's
explanation of class 1 on a few validation positives is compared with its
explanation by the trained model: Spearman rank correlation of |attribution|,
SSIM of the normalised |attribution| and, for binary masks, IoU.

Methods: RegularizedAdversarial (package defaults: 60 phase-1 steps with the
per-example multiplier, 20 phase-2 steps and the refinement; an image whose
class survives is reported, not re-run),
the same with weak regularisation and no phase 2 (sparsity and TV weights 1
instead of 40 and 120, ``--ra-steps`` (200) phase-1 steps: a row that tests the phase-1 masks
themselves on models whose outputs are several times less sensitive to the
input),
MeaningfulPerturbation
(objective="log_odds", 150 steps), IntegratedGradients (16 steps, zero
baseline), Occlusion (8x8 window, stride 4, zero baseline) and Saliency.

A method passes when its mean rank correlation at the fully randomised model
is below ``--threshold`` (0.5): its explanation then depends on the weights.
Similarity staying near 1 down the cascade fails the check.

To keep the run within a few minutes on two CPU cores, each image is
cropped to ``--crop`` pixels (default 64; 0 keeps the 128 x 128 image)
around the centroid of its ground-truth lesion mask; the model is fully
convolutional with a global max pool, and only crops it still classifies
as positive are used. Printed: the similarity tables (with the trained
lesion model's mean probability of class 1 after each step), the number of
all-zero explanations per step (an explanation method that finds nothing to
explain on a model that no longer predicts class 1 returns an empty map,
which passes the check trivially), the pass/fail verdicts and the seconds
per method; the figure goes to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency
from torch import Tensor, nn

from captum_regadv import MeaningfulPerturbation, RegularizedAdversarial
from captum_regadv.benchmark.model import TrainConfig, load_or_train, predict_proba
from captum_regadv.sanity import (
    CascadeResult,
    cascade_figure,
    cascade_similarity,
    randomization_cascade,
)

Explain = Callable[[nn.Module, Tensor, Any], Tensor]


def methods(ra_steps: int, mp_steps: int) -> dict[str, Explain]:
    def ra(model: nn.Module, x: Tensor, target: Any) -> Tensor:
        mask = RegularizedAdversarial(model).attribute(x, target=target, bounds=(0.0, 1.0))
        assert isinstance(mask, Tensor)
        return mask

    def ra_weak(model: nn.Module, x: Tensor, target: Any) -> Tensor:
        mask = RegularizedAdversarial(model).attribute(
            x, target=target, bounds=(0.0, 1.0), steps=ra_steps, phase2_steps=0,
            sparsity_weight=1.0, tv_weight=1.0,
        )
        assert isinstance(mask, Tensor)
        return mask

    def mp(model: nn.Module, x: Tensor, target: Any) -> Tensor:
        saliency = MeaningfulPerturbation(model).attribute(
            x, target=target, steps=mp_steps, objective="log_odds"
        )
        assert isinstance(saliency, Tensor)
        return saliency

    def ig(model: nn.Module, x: Tensor, target: Any) -> Tensor:
        out: Tensor = IntegratedGradients(model).attribute(
            x, target=target, baselines=0.0, n_steps=16, internal_batch_size=64
        )
        return out

    def occlusion(model: nn.Module, x: Tensor, target: Any) -> Tensor:
        out: Tensor = Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=(1, 8, 8), strides=(1, 4, 4),
            baselines=0.0, perturbations_per_eval=64,
        )
        return out

    def saliency(model: nn.Module, x: Tensor, target: Any) -> Tensor:
        out: Tensor = Saliency(model).attribute(
            x.clone().requires_grad_(True), target=target, abs=True
        )
        return out

    return {
        "RegularizedAdversarial": ra,
        "RA (alpha=beta=1)": ra_weak,
        "MeaningfulPerturbation": mp,
        "IntegratedGradients": ig,
        "Occlusion": occlusion,
        "Saliency": saliency,
    }


def positives(model: nn.Module, n: int, crop: int) -> Tensor:
    """The first ``n`` validation positives (cropped around their lesion) the model calls positive."""
    val = TrainConfig("lesions").val_data()
    chosen: list[Tensor] = []
    for i in torch.nonzero(val.labels == 1).flatten().tolist():
        image = val.images[i : i + 1]
        if crop:
            ys, xs = torch.nonzero(val.masks[i, 0], as_tuple=True)
            size = image.shape[-1]
            top = min(max(int(ys.float().mean()) - crop // 2, 0), size - crop)
            left = min(max(int(xs.float().mean()) - crop // 2, 0), size - crop)
            image = image[..., top : top + crop, left : left + crop]
        if float(predict_proba(model, image)[0]) > 0.5:
            chosen.append(image)
        if len(chosen) == n:
            break
    return torch.cat(chosen)


def recording(fn: Explain, empty: list[int]) -> Explain:
    """``fn``, also appending the number of all-zero maps of every call to ``empty``."""

    def wrapped(model: nn.Module, x: Tensor, target: Any) -> Tensor:
        out = fn(model, x, target)
        empty.append(int((out.detach().flatten(1).abs().amax(1) == 0).sum()))
        return out

    return wrapped


def table(columns: dict[str, list[float]], layers: tuple[str, ...], fmt: str = ".3f") -> str:
    width = max(len(n) for n in columns) + 2
    header = f"{'layer randomised (cumulative)':<34}" + "".join(f"{n:>{width}}" for n in columns)
    lines = [header, "-" * len(header)]
    for k, layer in enumerate(layers):
        lines.append(f"{layer:<34}" + "".join(f"{v[k]:>{width}{fmt}}" for v in columns.values()))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4, help="validation positives (default 4)")
    p.add_argument("--crop", type=int, default=64, help="crop side around the lesion; 0: full image")
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation")
    p.add_argument("--ra-steps", type=int, default=200, help="phase-1 steps of the weak row")
    p.add_argument("--mp-steps", type=int, default=150)
    p.add_argument("--threshold", type=float, default=0.5, help="pass: final mean rank correlation below this")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("results/sanity_cascade.png"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, _ = load_or_train(TrainConfig("lesions"))
    x = positives(model, args.n, args.crop)
    model, x = model.to(args.device), x.to(args.device)
    types = dict(model.named_modules())
    print(
        f"lesion CNN, {x.shape[0]} validation positives {tuple(x.shape[1:])}, "
        f"p(class 1) = {[round(float(v), 4) for v in predict_proba(model, x)]}, "
        f"threads={torch.get_num_threads()}, seed={args.seed}"
    )
    steps = randomization_cascade(model, seed=args.seed)
    p_class1 = [float(predict_proba(m, x).mean()) for _, m in steps]
    del steps
    results: dict[str, CascadeResult] = {}
    seconds: dict[str, float] = {}
    empty: dict[str, list[int]] = {}
    for name, fn in methods(args.ra_steps, args.mp_steps).items():
        t0 = time.perf_counter()
        empty[name] = []
        results[name] = cascade_similarity(recording(fn, empty[name]), model, x, 1, seed=args.seed)
        seconds[name] = time.perf_counter() - t0
        print(f"  {name}: {seconds[name]:.1f} s", flush=True)
    # label layers with their type for the table and the figure
    labelled = {
        n: CascadeResult(
            tuple(f"{layer} ({type(types[layer]).__name__})" for layer in r.layers),
            r.rank_correlation, r.ssim, r.iou,
        )
        for n, r in results.items()
    }
    layers = next(iter(labelled.values())).layers
    for similarity, title in (
        ("rank_correlation", "Mean Spearman rank correlation of |attribution| with the trained model's"),
        ("ssim", "Mean SSIM of the normalised |attribution| with the trained model's"),
        ("iou", "Mean IoU of the masks with the trained model's (binary masks only)"),
    ):
        columns = {
            n: r.mean(similarity).tolist()  # type: ignore[arg-type]
            for n, r in labelled.items()
            if r.values(similarity) is not None  # type: ignore[arg-type]
        }
        if similarity == "rank_correlation":
            columns = {"p(class 1)": p_class1, **columns}
        print(f"\n{title}\n")
        print(table(columns, layers))
    print(
        f"\nAll-zero explanations (of {x.shape[0]}) per step; trained model: "
        + ", ".join(f"{n} {e[0]}" for n, e in empty.items())
        + "\n"
    )
    print(table({n: [float(v) for v in e[1:]] for n, e in empty.items()}, layers, ".0f"))
    print(f"\nVerdict (pass: mean rank correlation at the fully randomised model < {args.threshold})\n")
    for name, result in results.items():
        final = float(result.mean("rank_correlation")[-1])
        verdict = "pass" if result.passes(threshold=args.threshold) else "FAIL"
        note = "  (trivially: every map empty)" if empty[name][-1] == x.shape[0] else ""
        print(f"  {name:<24} {final:6.3f}  {verdict}   ({seconds[name]:.1f} s){note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig = cascade_figure(labelled, title=f"Cascading randomisation, lesion CNN ({x.shape[0]} images)")
    fig.savefig(args.out, dpi=120)
    print(f"\nfigure: {args.out}\ntotal: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
