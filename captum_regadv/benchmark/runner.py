"""``captum-regadv benchmark``: the Table 1 reproduction on generated data.

Trains (or loads from the cache) the benchmark CNN, explains the validation
positives that it classifies as positive with every method, and writes
``table.md``, ``table.csv``, ``table.json``, ``figure1.png`` and
``figure2.png`` into the output folder (each file written atomically).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import time
from dataclasses import asdict
from typing import Any, Sequence

import torch

from ..image_io import write_bytes_atomic, write_json_atomic
from ..visualization import comparison_figure, zoom_figure
from .model import TrainConfig, load_or_train, predict_proba
from .table1 import MethodRow, Table1Settings, run_table1

__all__ = ["add_arguments", "run", "format_markdown"]

QUICK_CONFIG = dict(size=64, n_train=600, n_val=120, epochs=4)
COLUMNS = (
    "method", "l0_coeff", "tv_coeff", "tv_beta", "l0", "tv", "classification",
    "ape_d", "cc_hit_rate", "images_hit", "seconds_per_image", "threshold",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``benchmark`` subcommand."""
    parser.add_argument("--out", default="results/benchmark", help="output folder")
    parser.add_argument("--dataset", default="lesions", help="benchmark domain (default lesions)")
    parser.add_argument("--quick", action="store_true", help="a few 64x64 images, small budgets (< 2 min)")
    parser.add_argument("--n-images", type=int, default=None, help="positives to explain (default 16, quick 4)")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the domain's, 128 for lesions)")
    parser.add_argument("--seed", type=int, default=0, help="master seed of data and model")
    parser.add_argument("--patience", type=int, default=None, help="per-example early stopping of every optimisation")
    parser.add_argument("--no-captum", action="store_true", help="skip IntegratedGradients, Occlusion, Saliency")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_markdown(rows: Sequence[MethodRow]) -> str:
    """Rows as a Markdown table, in the paper's column order."""
    head = ["Method", "L0 coeff", "tv coeff", "tv_beta", "L0", "tv", "classification",
            "APE_D", "CC hit rate (%)", "images hit (%)", "s / image", "threshold"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        d = r.as_dict()
        lines.append("| " + " | ".join(_fmt(d[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[MethodRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS))
    writer.writeheader()
    for r in rows:
        writer.writerow(r.as_dict())
    return buffer.getvalue()


def _figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; returns the exit status."""
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = dict(QUICK_CONFIG) if args.quick else {}
    if args.size is not None:
        overrides["size"] = args.size
    config = TrainConfig(args.dataset, seed=args.seed, **overrides)
    n_images = args.n_images or (4 if args.quick else 16)
    settings = Table1Settings(
        ours_steps=60 if args.quick else None,
        ours_phase2_steps=30 if args.quick else None,
        mp_steps=40 if args.quick else 150,
        rule_steps=10 if args.quick else 30,
        thresholds=4 if args.quick else 12,
        ig_steps=8 if args.quick else 16,
        patience=args.patience,
    )
    os.makedirs(args.out, exist_ok=True)
    model, model_metrics = load_or_train(config)
    val = config.val_data()
    probs = predict_proba(model, val.images)
    chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:n_images]
    if chosen.numel() == 0:
        print("benchmark: the model classifies no validation positive as positive")
        return 1
    images, truth = val.images[chosen], val.masks[chosen]
    rows, outputs = run_table1(
        model, images, truth, settings=settings,
        include_captum=not args.no_captum, show_progress=not args.no_progress,
    )
    report = {
        "dataset": args.dataset,
        "train_config": asdict(config),
        "table1_settings": asdict(settings),
        "n_images": int(chosen.numel()),
        "image_probabilities": [float(p) for p in probs[chosen]],
        "model_metrics": model_metrics,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "seconds_total": time.perf_counter() - started,
        "rows": [r.as_dict() for r in rows],
    }
    command = "captum-regadv benchmark " + " ".join(
        f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f"--{k.replace('_', '-')}"
        for k, v in sorted(vars(args).items())
        if k not in ("func", "command") and v not in (None, False)
    )
    header = (
        f"Table 1 on generated `{args.dataset}` data: {report['n_images']} validation positives "
        f"({config.resolved_size}x{config.resolved_size}); model validation accuracy "
        f"{model_metrics.get('val_accuracy', float('nan')):.3f}, ROC AUC "
        f"{model_metrics.get('val_roc_auc', float('nan')):.3f}, positives with p > 0.99: "
        f"{model_metrics.get('val_frac_pos_confident', float('nan')):.2f}.\n\n"
        f"Made by `{command}` in {report['seconds_total']:.0f} s.\n\n"
    )
    write_bytes_atomic(os.path.join(args.out, "table.md"), (header + format_markdown(rows)).encode())
    write_bytes_atomic(os.path.join(args.out, "table.csv"), _csv(rows).encode())
    write_json_atomic(os.path.join(args.out, "table.json"), report)

    ours = outputs["ours (defaults)"]
    best_mp = min(
        (label for label in outputs if label.startswith("MP")),
        key=lambda label: next(r.ape_d for r in rows if _label(r) == label),
        default=None,
    )
    masks = {"ours (defaults)": ours.masks}
    maps = {}
    if best_mp is not None:
        masks[f"{best_mp} (mask)"] = outputs[best_mp].masks
        maps[f"{best_mp} (1 - m)"] = outputs[best_mp].saliency
    for name in ("IntegratedGradients", "Occlusion"):
        if name in outputs:
            maps[name] = outputs[name].saliency
    fig1 = comparison_figure(images, truth, masks, maps)
    write_bytes_atomic(os.path.join(args.out, "figure1.png"), _figure_png(fig1))
    perturbed: dict[str, torch.Tensor] = {
        label: outputs[label].perturbed
        for label in ("MP blur 6/120/1", "MP min 6/120/1")
        if label in outputs
    }
    perturbed["ours (defaults)"] = ours.perturbed
    fig2 = zoom_figure(images, truth, perturbed)
    write_bytes_atomic(os.path.join(args.out, "figure2.png"), _figure_png(fig2))
    print(header + format_markdown(rows))
    print(f"wrote {args.out}/table.md, table.csv, table.json, figure1.png, figure2.png")
    return 0


def _label(row: MethodRow) -> str:
    if row.method.startswith("MP"):
        return f"{row.method} {row.l0_coeff:g}/{row.tv_coeff:g}/{row.tv_beta:g}"
    return row.method


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m captum_regadv.benchmark.runner``)."""
    parser = argparse.ArgumentParser(prog="captum-regadv benchmark", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())


