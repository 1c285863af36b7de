"""`captum-regadv benchmark --quick` runs the whole Table 1 pipeline and writes every output."""

from __future__ import annotations

import csv
import json
import math

import pytest

from captum_regadv.benchmark.table1 import PAPER_MP_SETTINGS, PAPER_OURS_SETTINGS
from captum_regadv.cli import main

NUMERIC = (
    "l0", "tv", "classification", "ape_d", "ape_s", "cc_hit_rate", "images_hit", "mask_area",
    "deletion_auc", "insertion_auc", "deletion_10", "pointing_game", "seconds_per_image",
    "passes_per_image", "forward_passes_per_image",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    status = main(["benchmark", "--quick", "--out", str(out), "--no-progress", "--threads", "2"])
    return status, out


def test_quick_benchmark_writes_every_output(quick_run):
    status, out = quick_run
    assert status == 0
    for name in ("table.md", "table.csv", "table.json", "figure1.png", "figure2.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_benchmark_has_every_row_and_finite_columns(quick_run):
    _, out = quick_run
    report = json.loads((out / "table.json").read_text())
    rows = report["rows"]
    methods = [r["method"] for r in rows]
    pairs = [(r["method"], r["rule"]) for r in rows]
    for name in ("MP min", "MP blur"):
        assert pairs.count((name, "own J")) == len(PAPER_MP_SETTINGS)
        assert pairs.count((name, "same rule")) == len(PAPER_MP_SETTINGS)
    assert pairs.count(("ours", "phase 2")) == len(PAPER_OURS_SETTINGS)
    assert pairs.count(("ours (defaults)", "phase 2")) == 1
    assert pairs.count(("ours (defaults)", "same rule")) == 1
    own_j, rule_j = (next(r for r in rows if r["method"] == "ours (defaults)" and r["rule"] == k)
                     for k in ("phase 2", "same rule"))
    # the same masks, another J
    assert own_j["mask_area"] == rule_j["mask_area"] and own_j["cc_hit_rate"] == rule_j["cc_hit_rate"]
    for name in ("IntegratedGradients", "Occlusion", "Saliency"):
        assert pairs.count((name, "own J")) == 1 and pairs.count((name, "same rule")) == 1, name
    for r in rows:
        for column in NUMERIC:
            assert math.isfinite(r[column]), (r["method"], column)
        assert 0.0 <= r["l0"] <= 1.0 and 0.0 <= r["classification"] <= 1.0
        assert 0.0 <= r["cc_hit_rate"] <= 100.0 and 0.0 <= r["images_hit"] <= 100.0
        assert r["ape_d"] == pytest.approx(r["l0"] + r["tv"] + r["classification"])
        assert 0.0 <= r["mask_area"] <= 100.0
        assert r["n_images"] == report["n_images"] and 0 <= r["better_on"] <= r["n_images"]
        for column in ("deletion_auc", "insertion_auc", "deletion_10"):
            assert 0.0 <= r[column] <= 1.0, (r["method"], column)
        assert r["pointing_game"] in [100.0 * k / r["n_images"] for k in range(r["n_images"] + 1)]
    ours = next(r for r in rows if r["method"] == "ours (defaults)")
    assert ours["better_on"] == 0
    # the two rows of one map share its ranking columns, not their J
    own = next(r for r in rows if r["method"] == "Occlusion" and r["rule"] == "own J")
    same = next(r for r in rows if r["method"] == "Occlusion" and r["rule"] == "same rule")
    assert own["deletion_auc"] == same["deletion_auc"]
    assert own["pointing_game"] == same["pointing_game"]
    with open(out / "table.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    md = (out / "table.md").read_text()
    assert md.count("\n| ") >= len(rows) and "APE_D" in md
    assert "Like for like" in md and "deletion@10%" in md and "same rule" in md
    assert report["model_metrics"]["val_accuracy"] > 0.75


def test_quick_benchmark_counts_the_passes_of_every_row(quick_run):
    _, out = quick_run
    rows = json.loads((out / "table.json").read_text())["rows"]
    by = {(r["method"], r["rule"], r["l0_coeff"], r["tv_coeff"], r["tv_beta"]): r for r in rows}
    ours = by[("ours (defaults)", "phase 2", None, None, None)]
    ours_rule = by[("ours (defaults)", "same rule", None, None, None)]
    # --quick: 60 + 30 + 3 x (1 + 5) updates, plus the 2-example gradient check of 4 images
    # (each call checks: the rule's 10 steps cost 10.5 too)
    assert ours["passes_per_image"] == pytest.approx(108 + 0.5)
    assert ours_rule["passes_per_image"] == pytest.approx(ours["passes_per_image"] + 10.5)
    assert ours_rule["forward_passes_per_image"] >= ours["forward_passes_per_image"]
    assert by[("Saliency", "own J", None, None, None)]["passes_per_image"] == 1
    assert by[("IntegratedGradients", "own J", None, None, None)]["passes_per_image"] == 8
    occlusion = by[("Occlusion", "own J", None, None, None)]
    assert occlusion["passes_per_image"] == 0 and occlusion["forward_passes_per_image"] > 0
    for coeffs in PAPER_MP_SETTINGS:
        own, same = (by[("MP blur", rule) + coeffs] for rule in ("own J", "same rule"))
        assert own["passes_per_image"] == pytest.approx(40 + 0.5)  # --quick: 40 MP steps
        extra = same["passes_per_image"] - own["passes_per_image"]
        # the same rule runs its 10 steps (and check) once per scanned threshold (at most 4)
        assert extra in (10.5, 21, 31.5, 42)
