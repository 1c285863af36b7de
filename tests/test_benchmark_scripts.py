"""The device table builder (``benchmarks/gpu.py``) runs on the CPU with tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("[!_]*.py")))
def test_every_benchmark_takes_device(script):
    """Read from the source (an import of each would cost seconds): the shared
    parser of ``_common`` or its own ``--device`` option."""
    source = (BENCHMARKS / script).read_text()
    assert "from _common import" in source and "parser(" in source or '"--device"' in source
