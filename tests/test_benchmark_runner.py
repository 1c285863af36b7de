"""`captum-regadv benchmark --quick` runs the whole Table 1 pipeline and writes every output."""

from __future__ import annotations

import csv
import json
import math

import pytest

from captum_regadv.benchmark.table1 import PAPER_MP_SETTINGS, PAPER_OURS_SETTINGS
from captum_regadv.cli import main

NUMERIC = ("l0", "tv", "classification", "ape_d", "cc_hit_rate", "images_hit", "seconds_per_image")


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
    assert methods.count("MP min") == len(PAPER_MP_SETTINGS)
    assert methods.count("MP blur") == len(PAPER_MP_SETTINGS)
    assert methods.count("ours") == len(PAPER_OURS_SETTINGS)
    for name in ("ours (defaults)", "IntegratedGradients", "Occlusion", "Saliency"):
        assert methods.count(name) == 1, name
    for r in rows:
        for column in NUMERIC:
            assert math.isfinite(r[column]), (r["method"], column)
        assert 0.0 <= r["l0"] <= 1.0 and 0.0 <= r["classification"] <= 1.0
        assert 0.0 <= r["cc_hit_rate"] <= 100.0 and 0.0 <= r["images_hit"] <= 100.0
        assert r["ape_d"] == pytest.approx(r["l0"] + r["tv"] + r["classification"])
    with open(out / "table.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    md = (out / "table.md").read_text()
    assert md.count("\n| ") >= len(rows) and "APE_D" in md
    assert report["model_metrics"]["val_accuracy"] > 0.75
