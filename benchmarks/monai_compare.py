"""Side by side with MONAI's explainers on the 3-D benchmark (same volumes, same model).

    python benchmarks/monai_compare.py [--n-volumes 8] [--out results/monai_compare]
        [--threads 1] [--rule-steps 30] [--thresholds 12]

Loads (or trains and caches) the benchmark's MONAI DenseNet for
``VolumeTrainConfig()`` (64^3 volumes), takes the first ``--n-volumes``
validation positives that it classifies as positive, and runs
:func:`captum_regadv.benchmark.monai_compare.compare_methods`: MONAI's
OcclusionSensitivity, GradCAM and GradCAMpp, Captum's IntegratedGradients and
Occlusion, MeaningfulPerturbation and RegularizedAdversarial. Prints the
table as Markdown and a summary in words, and writes ``table.md``,
``table.json`` and ``slices.png`` (three orthogonal slices of the first
volume, every method's scored mask) into ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time

import torch

from captum_regadv.benchmark.model import predict_proba
from captum_regadv.benchmark.monai_compare import (
    CompareSettings, compare_methods, format_compare_markdown, summary_in_words,
)
from captum_regadv.benchmark.monai_model import VolumeTrainConfig, load_or_train_volumes
from captum_regadv.image_io import write_bytes_atomic
from captum_regadv.volume_figures import orthogonal_slices_figure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-volumes", type=int, default=8)
    p.add_argument("--out", default="results/monai_compare")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rule-steps", type=int, default=30)
    p.add_argument("--thresholds", type=int, default=12)
    p.add_argument("--size", type=int, default=64, help="volume side (trains a model if not cached)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = VolumeTrainConfig(size=args.size)
    model, metrics = load_or_train_volumes(config)
    val = config.val_data()
    probs = predict_proba(model, val.images, batch_size=16)
    chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[: args.n_volumes]
    device = torch.device(args.device)
    model = model.to(device)
    volumes, truth = val.images[chosen].to(device), val.masks[chosen].to(device)
    settings = CompareSettings(rule_steps=args.rule_steps, thresholds=args.thresholds)
    rows, outputs = compare_methods(
        model, volumes, truth, settings=settings,
        progress=lambda name: print(f"[{time.perf_counter() - started:.0f} s] {name}", flush=True),
    )
    command = "python benchmarks/monai_compare.py " + " ".join(a for a in (argv or sys.argv[1:]))
    header = (
        f"Side by side on {len(chosen)} generated {args.size}^3 validation positives "
        f"(lesion voxels per volume: {[int(t.sum()) for t in truth]}), MONAI DenseNet with "
        f"validation accuracy {metrics['val_accuracy']:.3f}, ROC AUC {metrics['val_roc_auc']:.4f}; "
        f"p(class 1) of the volumes: {[round(float(v), 3) for v in probs[chosen]]}. "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{platform.machine()}. Made by `{command.strip()}` in "
        f"{time.perf_counter() - started:.0f} s.\n\n"
    )
    table = format_compare_markdown(rows)
    words = summary_in_words(rows)
    os.makedirs(args.out, exist_ok=True)
    write_bytes_atomic(os.path.join(args.out, "table.md"), (header + table + "\n" + words).encode())
    write_bytes_atomic(os.path.join(args.out, "table.json"), json.dumps({
        "settings": vars(args), "model_metrics": metrics,
        "probabilities": [float(v) for v in probs[chosen]],
        "rows": [r.as_dict() for r in rows],
    }, indent=2).encode())
    fig = orthogonal_slices_figure(
        volumes[0].cpu(), truth[0].cpu(),
        {name: out["mask"][0].cpu() for name, out in outputs.items()}, {},
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    write_bytes_atomic(os.path.join(args.out, "slices.png"), buffer.getvalue())
    print(header + table + "\n" + words)
    print(f"wrote {args.out}/table.md, table.json, slices.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
