"""The device table builder (``benchmarks/gpu.py``) runs on the CPU with tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _run(*args: str) -> str:
    """Run a benchmark script with this checkout's package first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    done = subprocess.run([sys.executable, *args], cwd=BENCHMARKS, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gpu_table_dry_run():
    lines = _run("gpu.py", "--dry-run").strip().splitlines()
    assert lines[1].startswith("| measurement") and "images/s" in lines[1]
    rows = [line.split("|")[1].strip() for line in lines[3:]]
    assert rows == [
        "batch 1", "batch 2", "single 64x64", "single 64x64 c2f f=2", "single 128x128",
        "single 128x128 c2f f=2",
        "batch 2 bf16 off, compile off", "batch 2 bf16 off, compile on",
        "batch 2 bf16 on, compile off", "batch 2 bf16 on, compile on",
    ]
    for line in lines[3:]:
        passes, seconds, rate, peak = (float(c) for c in line.split("|")[2:6])
        assert passes > 0 and seconds > 0 and rate > 0 and peak > 0


#: scripts that only read other runs' results (no model, no device)
READS_RESULTS_ONLY = {"like_for_like_summary.py"}


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("[!_]*.py")
                                          if p.name not in READS_RESULTS_ONLY))
def test_every_benchmark_takes_device(script):
    """Read from the source (an import of each would cost seconds): the shared
    parser of ``_common`` or its own ``--device`` option."""
    source = (BENCHMARKS / script).read_text()
    assert "from _common import" in source and "parser(" in source or '"--device"' in source


def _row(method, rule, ape_d, cc, **extra):
    row = dict(method=method, rule=rule, ape_d=ape_d, cc_hit_rate=cc, mask_area=0.5,
               better_on=0, n_images=4, deletion_auc=None, deletion_10=0.2, pointing_game=100.0,
               l0_coeff=None, tv_coeff=None, tv_beta=None)
    row.update(extra)
    return row


def test_like_for_like_summary_needs_both_measures_at_once(tmp_path):
    """The verdict holds only when APE_D is below every other same-rule row AND the
    CC hit rate is at least the best same-rule row's; this method's own same-rule
    row is listed, never a competitor."""
    import json

    mp = dict(l0_coeff=40.0, tv_coeff=120.0, tv_beta=1.0)
    cases = {
        "win": (0.010, 100.0),
        "lower_ape_worse_cc": (0.010, 90.0),  # a lower APE_D bought with a worse hit rate
        "higher_ape": (0.013, 100.0),
    }
    for name, (ape, cc) in cases.items():
        rows = [
            _row("ours (defaults)", "phase 2", ape, cc),
            _row("ours (defaults)", "same rule", 0.001, cc),
            _row("MP blur", "own J", 0.5, 20.0, **mp),
            _row("MP blur", "same rule", 0.012, 96.0, passes_per_image=391.125,
                 forward_passes_per_image=34.0, **mp),
            _row("Occlusion", "same rule", 0.3, 99.0),
        ]
        (tmp_path / name).mkdir()
        (tmp_path / name / "table.json").write_text(json.dumps({"dataset": name, "rows": rows}))
    out = _run("like_for_like_summary.py", *(str(tmp_path / n) for n in cases), "--top", "2")
    verdicts = {line.split(":")[0][2:]: line for line in out.splitlines() if line.startswith("* ")}
    assert verdicts["win"].endswith("both hold.")
    assert "LOWER" in verdicts["lower_ape_worse_cc"]
    assert verdicts["lower_ape_worse_cc"].endswith("the goal is not met.")
    assert "NOT lower" in verdicts["higher_ape"] and "MP blur 40/120/1" in verdicts["higher_ape"]
    table = [line for line in out.splitlines() if line.startswith("| win |")]
    assert [line.split("|")[2].strip() for line in table] == [
        "ours (defaults)", "ours (defaults)", "MP blur 40/120/1", "MP blur 40/120/1", "Occlusion"
    ]
    assert "| - |" in table[0]  # a skipped ranking column
    assert table[3].rstrip().endswith("| 391.1 | 34 |")  # the passes per image
    assert table[4].rstrip().endswith("| - | - |")  # a run without them


def test_equal_budget_verdict_needs_both_measures(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from equal_budget import verdict

    ours = dict(ape_d=0.010, cc=95.0)
    assert verdict(ours, dict(ape_d=0.012, cc=95.0)) == "ours better on both"
    assert verdict(ours, dict(ape_d=0.009, cc=96.0)) == "**MP better on both**"
    assert verdict(ours, dict(ape_d=0.012, cc=96.0)) == "ours: lower APE_D, lower CC"
    assert verdict(ours, dict(ape_d=0.009, cc=90.0)).startswith("**ours: higher APE_D**")


def test_input_jitter_shifts_inputs_and_model_alike(image_case, monkeypatch):
    """The shifted model of the shifted inputs is the model of the inputs (up to
    rounding), and this method's row runs with the shifted bounds."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from input_jitter import SHIFTS, Shifted, ours, spread

    model, x, truth = image_case
    assert SHIFTS[0] == 0.0 and max(abs(s) for s in SHIFTS) <= 3e-7
    for shift in SHIFTS:
        shifted = Shifted(model, shift).eval()
        with torch.no_grad():
            assert torch.allclose(shifted(x + shift), model(x), atol=1e-4)
    shifted = Shifted(model, 2e-7).eval()
    masks, j = ours(shifted, x + 2e-7, 2e-7)
    assert not bool(masks[~truth].any()) and bool((masks.flatten(1).sum(1) > 0).all())
    assert spread([1.0, 2.0, 3.0], 1) == "2.0 +- 1.0 (1.0-3.0)"
