"""``captum-regadv benchmark``: the Table 1 reproduction on generated data.

Trains (or loads from the cache) the benchmark CNN (for ``--dataset volumes``
the MONAI network of :mod:`.monai_model`), explains the validation
positives that it classifies as positive with every method, and writes
``table.md``, ``table.csv``, ``table.json``, ``figure1.png`` and
``figure2.png`` into the output folder (each file written atomically).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import platform
import time
from dataclasses import asdict
from typing import Any, Sequence

import torch

from ..image_io import write_bytes_atomic, write_json_atomic
from ..visualization import comparison_figure, zoom_figure
from .model import TrainConfig, load_or_train, predict_proba
from .table1 import SAME_RULE, MethodRow, Table1Settings, row_label, run_table1

__all__ = ["add_arguments", "run", "format_markdown", "like_for_like"]

QUICK_CONFIG = dict(size=64, n_train=600, n_val=120, epochs=4)
VOLUME_QUICK_CONFIG = dict(size=32, n_train=300, n_val=60, epochs=6)
COLUMNS = (
    "method", "rule", "l0_coeff", "tv_coeff", "tv_beta", "l0", "tv", "classification",
    "ape_d", "ape_s", "cc_hit_rate", "images_hit", "mask_area", "better_on", "n_images",
    "deletion_auc", "insertion_auc", "deletion_10", "pointing_game", "seconds_per_image",
    "threshold", "passes_per_image", "forward_passes_per_image", "components_outside",
    "outside_distance",
)
#: the Markdown table's columns (``better_on`` shown as ``k/N``).
MARKDOWN_COLUMNS = (
    ("Method", "method"), ("J rule", "rule"), ("L0 coeff", "l0_coeff"),
    ("tv coeff", "tv_coeff"), ("tv_beta", "tv_beta"), ("L0", "l0"), ("tv", "tv"),
    ("classification", "classification"), ("APE_D", "ape_d"), ("APE_S", "ape_s"),
    ("CC hit rate (%)", "cc_hit_rate"), ("images hit (%)", "images_hit"),
    ("mask area (%)", "mask_area"), ("components outside GT", "components_outside"),
    ("their median distance (px)", "outside_distance"),
    ("APE_D better than ours on", "better_on"),
    ("deletion AUC", "deletion_auc"), ("insertion AUC", "insertion_auc"),
    ("deletion@10%", "deletion_10"), ("pointing game (%)", "pointing_game"),
    ("fwd+bwd / image", "passes_per_image"), ("fwd / image", "forward_passes_per_image"),
    ("s / image", "seconds_per_image"), ("threshold", "threshold"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``benchmark`` subcommand."""
    parser.add_argument("--out", default="results/benchmark", help="output folder")
    parser.add_argument("--dataset", default="lesions", help="benchmark domain: lesions (default), shapes, shortcut, volumes (3-D, MONAI)")
    parser.add_argument("--quick", action="store_true", help="a few 64x64 images, small budgets (< 2 min)")
    parser.add_argument("--n-images", type=int, default=None, help="positives to explain (default 16, quick 4)")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the domain's, 128 for lesions)")
    parser.add_argument("--seed", type=int, default=0, help="master seed of data and model")
    parser.add_argument("--patience", type=int, default=None, help="per-example early stopping of every optimisation")
    parser.add_argument("--no-captum", action="store_true", help="skip IntegratedGradients, Occlusion, Saliency")
    parser.add_argument("--no-same-rule", action="store_true", help="skip the same-rule rows of the map methods")
    parser.add_argument(
        "--ranking-steps", type=int, default=None,
        help="curve points of the deletion/insertion AUCs (default 50, quick 10; 0 skips them)",
    )
    parser.add_argument("--rule-steps", type=int, default=None, help="steps of the same-rule phase-2 rule (default 30, quick 10)")
    parser.add_argument("--thresholds", type=int, default=None, help="thresholds scanned per map row (default 12, quick 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_markdown(rows: Sequence[MethodRow]) -> str:
    """Rows as a Markdown table, in the paper's column order, then the added columns."""
    head = [title for title, _ in MARKDOWN_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        d = r.as_dict()
        cells = [
            f"{r.better_on}/{r.n_images}" if key == "better_on" else _fmt(d[key])
            for _, key in MARKDOWN_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def like_for_like(rows: Sequence[MethodRow]) -> str:
    """The like-for-like result in words: this method's defaults against every same-rule row."""
    ours = next((r for r in rows if r.method == "ours (defaults)" and r.rule != SAME_RULE), None)
    ours_rule = next((r for r in rows if r.method == "ours (defaults)" and r.rule == SAME_RULE),
                     None)
    same = [r for r in rows if r.rule == SAME_RULE and not r.method.startswith("ours")]
    if ours is None or not same:
        return ""
    best = min(same, key=lambda r: r.ape_d)
    beaten = [r for r in same if r.ape_d < ours.ape_d]
    text = (
        f"Like for like (every mask turned into J by the same phase-2 rule): this method "
        f"(defaults) has APE_D {ours.ape_d:.4g}, CC hit rate {ours.cc_hit_rate:.1f}%, mask "
        f"area {ours.mask_area:.2f}%, {ours.passes_per_image:.0f} forward+backward passes per "
        f"image"
    )
    if ours_rule is not None:
        text += f" (its masks through the same rule: APE_D {ours_rule.ape_d:.4g})"
    text += (
        f"; the best same-rule row is {row_label(best)} with APE_D "
        f"{best.ape_d:.4g}, CC hit rate {best.cc_hit_rate:.1f}%, mask area "
        f"{best.mask_area:.2f}%, {best.passes_per_image:.0f} forward+backward passes per image "
        f"(its threshold scanned on these images), lower APE_D than this method on "
        f"{best.better_on}/{best.n_images} images. "
    )
    if beaten:
        text += (
            f"{len(beaten)} of {len(same)} same-rule rows have a lower mean APE_D than this "
            f"method: " + ", ".join(row_label(r) for r in beaten) + "."
        )
    else:
        text += f"None of the {len(same)} same-rule rows has a lower mean APE_D than this method."
    return text + "\n"


def json_row(row: MethodRow) -> dict[str, Any]:
    """``row.as_dict()`` with every non-finite number as ``None`` (JSON has no NaN):
    ``--ranking-steps 0`` leaves the ranking columns NaN."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in row.as_dict().items()
    }


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
    config: Any
    if args.dataset == "volumes":  # 3-D: the MONAI network (needs the monai extra)
        from .monai_model import VolumeTrainConfig, load_or_train_volumes

        volume: dict[str, Any] = dict(VOLUME_QUICK_CONFIG) if args.quick else {}
        if args.size is not None:
            volume["size"] = args.size
        config = VolumeTrainConfig(seed=args.seed, **volume)
    else:
        config = TrainConfig(args.dataset, seed=args.seed, **overrides)
    n_images = args.n_images or (4 if args.quick else 16)
    settings = Table1Settings(
        ours_steps=60 if args.quick else None,
        ours_phase2_steps=30 if args.quick else None,
        mp_steps=40 if args.quick else 150,
        rule_steps=args.rule_steps or (10 if args.quick else 30),
        thresholds=args.thresholds or (4 if args.quick else 12),
        ig_steps=8 if args.quick else 16,
        patience=args.patience,
        same_rule=not args.no_same_rule,
        ranking_steps=(10 if args.quick else 50) if args.ranking_steps is None else args.ranking_steps,
    )
    os.makedirs(args.out, exist_ok=True)
    model, model_metrics = (
        load_or_train_volumes(config) if args.dataset == "volumes" else load_or_train(config)
    )
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
        "rows": [json_row(r) for r in rows],
    }
    command = "captum-regadv benchmark " + " ".join(
        f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f"--{k.replace('_', '-')}"
        for k, v in sorted(vars(args).items())
        if k not in ("func", "command") and v not in (None, False)
    )
    header = (
        f"Table 1 on generated `{args.dataset}` data: {report['n_images']} validation positives "
        f"({'x'.join([str(config.resolved_size)] * (images.dim() - 2))}); model validation accuracy "
        f"{model_metrics.get('val_accuracy', float('nan')):.3f}, ROC AUC "
        f"{model_metrics.get('val_roc_auc', float('nan')):.3f}, positives with p > 0.99: "
        f"{model_metrics.get('val_frac_pos_confident', float('nan')):.2f}.\n\n"
        f"Made by `{command}` in {report['seconds_total']:.0f} s.\n\n"
    )
    summary = like_for_like(rows)
    if summary:
        header += summary + "\n"
    write_bytes_atomic(os.path.join(args.out, "table.md"), (header + format_markdown(rows)).encode())
    write_bytes_atomic(os.path.join(args.out, "table.csv"), _csv(rows).encode())
    write_json_atomic(os.path.join(args.out, "table.json"), report)

    ours = outputs["ours (defaults)"]
    if images.dim() == 5:  # volumes: three orthogonal slices of the first one
        from ..volume_figures import orthogonal_slices_figure

        panels = {"ours (defaults)": ours.masks[0]}
        panels.update({k: outputs[k + " + same rule"].masks[0] for k in ("IntegratedGradients", "Occlusion")
                       if k + " + same rule" in outputs})
        fig = orthogonal_slices_figure(images[0], truth[0], panels, {})
        write_bytes_atomic(os.path.join(args.out, "figure1.png"), _figure_png(fig))
        print(header + format_markdown(rows))
        print(f"wrote {args.out}/table.md, table.csv, table.json, figure1.png")
        return 0
    best_mp = min(
        (row_label(r) for r in rows if r.method.startswith("MP") and r.rule != SAME_RULE),
        key=lambda label: next(r.ape_d for r in rows if row_label(r) == label),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m captum_regadv.benchmark.runner``)."""
    parser = argparse.ArgumentParser(prog="captum-regadv benchmark", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())


