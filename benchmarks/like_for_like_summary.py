"""Like-for-like summary of several Table 1 runs: one Markdown table, every domain.

    python benchmarks/like_for_like_summary.py results/benchmark-lesions \
        results/benchmark-shapes results/benchmark-shortcut [--top 3]

Reads each run's ``table.json`` (written by ``captum-regadv benchmark``) and
prints, per domain: this method's defaults with its own phase 2 and through
the same rule, the best own-J row of the other methods, and the ``--top``
same-rule rows of the other methods with the lowest mean APE_D, then one
line per domain saying whether this method's APE_D is below every other
same-rule row and its CC hit rate at least the best same-rule row's (the
two must hold at once).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

COLUMNS = (
    ("APE_D", "ape_d"), ("CC hit (%)", "cc_hit_rate"), ("mask area (%)", "mask_area"),
    ("components outside GT", "components_outside"),
    ("their median distance (px)", "outside_distance"),
    ("APE_D better than ours on", "better_on"), ("deletion AUC", "deletion_auc"),
    ("deletion@10%", "deletion_10"), ("pointing game (%)", "pointing_game"),
    ("fwd+bwd / image", "passes_per_image"), ("fwd / image", "forward_passes_per_image"),
)


def label(row: dict[str, Any]) -> str:
    name = row["method"]
    if name.startswith("MP"):
        name += f" {row['l0_coeff']:g}/{row['tv_coeff']:g}/{row['tv_beta']:g}"
    return name


def cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)  # runs before the pass columns have none
    if key == "better_on":
        return f"{value}/{row['n_images']}"
    if value is None:
        return "-"
    return f"{value:.4g}"


def summarise(report: dict[str, Any], top: int) -> tuple[list[dict[str, Any]], str]:
    rows = report["rows"]
    ours = [r for r in rows if r["method"] == "ours (defaults)"]
    others = [r for r in rows if not r["method"].startswith("ours")]
    own = sorted((r for r in others if r["rule"] == "own J"), key=lambda r: r["ape_d"])[:1]
    same = sorted((r for r in others if r["rule"] == "same rule"), key=lambda r: r["ape_d"])
    mine = next(r for r in ours if r["rule"] == "phase 2")
    best_cc = max(r["cc_hit_rate"] for r in same)
    lower = mine["ape_d"] < same[0]["ape_d"]
    localised = mine["cc_hit_rate"] >= best_cc
    verdict = (
        f"APE_D {mine['ape_d']:.4g} against the best other same-rule row's "
        f"{same[0]['ape_d']:.4g} ({label(same[0])}): {'lower' if lower else 'NOT lower'}; "
        f"CC hit rate {mine['cc_hit_rate']:.1f}% against the best same-rule CC "
        f"{best_cc:.1f}%: {'at least as high' if localised else 'LOWER'}; "
        f"{'both hold' if lower and localised else 'the goal is not met'}"
    )
    return ours + own + same[:top], verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="output folders of captum-regadv benchmark")
    parser.add_argument("--top", type=int, default=3, help="same-rule rows per domain")
    args = parser.parse_args()
    head = ["domain", "row", "J rule"] + [title for title, _ in COLUMNS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    verdicts = []
    for run in args.runs:
        with open(os.path.join(run, "table.json")) as handle:
            report = json.load(handle)
        domain = report.get("dataset") or os.path.basename(run.rstrip("/"))
        if "n_images" in report:
            domain += f", {report['n_images']}"
        rows, verdict = summarise(report, args.top)
        for r in rows:
            cells = [domain, label(r), r["rule"]] + [cell(r, key) for _, key in COLUMNS]
            print("| " + " | ".join(cells) + " |")
        verdicts.append(f"* {domain}: {verdict}.")
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
