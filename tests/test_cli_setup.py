"""``captum-regadv explain``: special files, reserved names, option checks, the
output folder's lock, setup that leaves nothing behind, mixed channels, the
settings fingerprint and the summary's pass counts (issue 13 §3)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from captum_regadv import RegularizedAdversarial, cli
from captum_regadv.fileio import TEMP_SUFFIX
from test_cli import (  # helpers only (no test_ names: nothing is collected twice)
    FAST,
    TinyNet,
    blob_image,
    make_dataset,
    one_line_error,
    read_jsonl,
    read_summary,
    restore_torch_threads,
    save_scripted,
)

fcntl = pytest.importorskip("fcntl")  # the output folder's lock is POSIX flock
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
__all__ = ["restore_torch_threads"]  # the autouse fixture applies here too


@pytest.fixture
def model_file(tmp_path: Path) -> str:
    return save_scripted(TinyNet(), tmp_path / "model.pt")


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging forever (a FIFO read blocks until a writer comes)."""

    def timeout(signum: int, frame: Any) -> None:
        raise TimeoutError("the run hangs")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def gray_png(path: Path, seed: int, shape: tuple[int, int] = (12, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((blob_image(shape, seed) * 255).astype(np.uint8)).save(path)


def rgb_png(path: Path, seed: int, shape: tuple[int, int] = (12, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.dstack([blob_image(shape, seed + k) for k in range(3)])
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)


# --------------------------------------------------------------------------- special files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_and_devices_are_reported_and_skipped(
    tmp_path: Path, model_file: str, alarm: None, capsys: pytest.CaptureFixture[str]
) -> None:
    gray_png(tmp_path / "data" / "a.png", 1)
    os.mkfifo(tmp_path / "data" / "x.png")
    os.mkfifo(tmp_path / "data" / "IM0001")  # no suffix: the DICOM magic test must not open it
    out = tmp_path / "out"
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "data"),
            "/dev/null", *FAST]
    assert cli.main(argv) == 1
    summary = read_summary(out)
    assert (summary["inputs"], summary["ok"], summary["failed"]) == (3, 1, 2)
    reasons = {f["input"]: f["reason"] for f in summary["failures"]}
    assert "FIFO" in reasons[str(tmp_path / "data" / "x.png")]
    assert "character device" in reasons["/dev/null"]
    assert "x.png" in capsys.readouterr().err


# --------------------------------------------------------------------------- reserved names


def test_input_folders_named_like_the_runs_own_files(tmp_path: Path, model_file: str) -> None:
    gray_png(tmp_path / "data" / "summary.json" / "a.png", 1)
    gray_png(tmp_path / "data" / "results.jsonl" / "b.png", 2)
    gray_png(tmp_path / "data" / "c.png", 3)
    out = tmp_path / "out"
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "data"), *FAST]
    assert cli.main(argv) == 0
    assert (out / "summary.json").is_file() and (out / "results.jsonl").is_file()
    names = [r["name"] for r in read_jsonl(out / "results.jsonl")]
    assert names == ["c.png", "results.jsonl_/b.png", "summary.json_/a.png"]
    assert (out / "summary.json_" / "a.png.mask.png").is_file()
    assert cli.main(argv) == 0  # the rerun works and skips everything
    assert (read_summary(out)["ok"], read_summary(out)["skipped"]) == (0, 3)


def test_a_folder_in_place_of_the_summary_is_a_setup_error(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gray_png(tmp_path / "a.png", 1)
    (tmp_path / "out" / "summary.json").mkdir(parents=True)
    assert cli.main(["explain", "--model", model_file, "--out", str(tmp_path / "out"),
                     str(tmp_path / "a.png"), *FAST]) == 2
    assert "summary.json' is a folder" in one_line_error(capsys)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("option", [
    ["--lr", "nan"], ["--mean", "nan"], ["--std", "inf"], ["--mean", "0.5,inf,0.5"],
    ["--sparsity-weight", "inf"], ["--tv-weight", "nan"], ["--epsilon", "inf"],
    ["--gamma", "nan"], ["--bounds", "0", "nan"], ["--bounds", "0", "inf"],
])
def test_non_finite_numbers_are_usage_errors(
    tmp_path: Path, model_file: str, option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    gray_png(tmp_path / "a.png", 1)
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model_file, "--out", str(out),
                     str(tmp_path / "a.png"), *FAST, *option]) == 2
    assert "finite" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flag, key, good, value, bad", [
    ("--search-steps", "search_steps", "0", 0, ("-1",)),
    ("--shrink-rate", "shrink_rate", "0", 0.0, ("1", "-0.1", "nan")),
    ("--phase1-view", "phase1_view", "all", "all", ("none", "MASK")),
])
def test_method_option_reaches_the_run(
    flag: str, key: str, good: str, value: Any, bad: tuple[str, ...], tmp_path: Path,
    model_file: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["explain", "--help"]) == 0
    assert flag in capsys.readouterr().out
    from captum_regadv import dataset_run

    seen: dict[str, Any] = {}
    monkeypatch.setattr(dataset_run, "run_explain", lambda c: seen.update(c.method) or 0)
    assert cli.main(["explain", "--model", model_file, "--out", str(tmp_path),
                     flag, good, str(tmp_path)]) == 0
    assert seen == {key: value}
    for text in bad:
        assert cli.main(["explain", "--model", model_file, "--out", str(tmp_path),
                         flag, text, str(tmp_path)]) == 2


# --------------------------------------------------------------------------- the output folder


def test_a_second_run_on_a_locked_folder_stops_and_touches_nothing(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gray_png(tmp_path / "a.png", 1)
    out = tmp_path / "out"
    out.mkdir()
    others_temp = out / f".a.png.npz.abc{TEMP_SUFFIX}"  # the other run's file in flight
    others_temp.write_bytes(b"half written")
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "a.png"), *FAST]
    with open(out / ".captum-regadv.lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        assert cli.main(argv) == 2
        line = one_line_error(capsys)
        assert "another captum-regadv run (process 4242)" in line and str(out) in line
        assert others_temp.read_bytes() == b"half written"
        assert sorted(p.name for p in out.iterdir()) == [".a.png.npz.abc.regadv-tmp",
                                                         ".captum-regadv.lock"]
    assert cli.main(argv) == 0  # released: the run goes ahead and cleans up
    assert read_summary(out)["ok"] == 1 and not others_temp.exists()


def test_failed_setup_leaves_no_new_folder(tmp_path: Path, model_file: str) -> None:
    gray_png(tmp_path / "a.png", 1)
    out = tmp_path / "new" / "deeper" / "out"
    assert cli.main(["explain", "--model", str(tmp_path / "missing.pt"), "--out", str(out),
                     str(tmp_path / "a.png"), *FAST]) == 2
    assert cli.main(["explain", "--model", model_file, "--out", str(out), "--target", "9",
                     str(tmp_path / "a.png"), *FAST]) == 2
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- mixed channels


@pytest.mark.parametrize("model_channels", [1, 3])
def test_mixed_gray_and_rgb_give_one_outcome_whatever_the_order(
    tmp_path: Path, model_channels: int
) -> None:
    model = save_scripted(TinyNet(channels=model_channels), tmp_path / "model.pt")
    outcomes = []
    for order, (first, second) in enumerate([(rgb_png, gray_png), (gray_png, rgb_png)]):
        data = tmp_path / f"data{order}"
        first(data / "a.png", 1)
        second(data / "b.png", 2)
        out = tmp_path / f"out{order}"
        code = cli.main(["explain", "--model", model, "--out", str(out), str(data), *FAST])
        summary = read_summary(out)
        reasons = [f["reason"] for f in summary["failures"]]
        outcomes.append((code, summary["ok"], summary["failed"], reasons))
    other = 3 if model_channels == 1 else 1
    reason = (f"has {other} channel(s) but the model takes {model_channels}; "
              f"use --channels {model_channels} to convert")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:3] == (1, 1, 1) and outcomes[0][3][0].startswith(reason + " (the call failed")


class _AnyChannels(torch.nn.Module):
    """TinyNet on the mean over the channels: takes any number of channels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyNet(channels=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.mean(dim=1, keepdim=True))


def test_a_failure_with_another_cause_keeps_it_beside_the_channel_mismatch(
    tmp_path: Path,
) -> None:
    """bounds that the input leaves fail the RGB image too: its reason names
    the channels and the bounds, not the channels alone."""
    model = save_scripted(_AnyChannels(), tmp_path / "model.pt")
    gray_png(tmp_path / "data" / "a.png", 1)
    rgb_png(tmp_path / "data" / "b.png", 2)
    out = tmp_path / "out"
    code = cli.main(["explain", "--model", model, "--out", str(out), str(tmp_path / "data"),
                     "--bounds", "0.5", "0.6", *FAST])
    failures = {Path(f["input"]).name: f["reason"] for f in read_summary(out)["failures"]}
    assert code == 1 and set(failures) == {"a.png", "b.png"}
    assert "outside bounds" in failures["a.png"]
    assert failures["b.png"].startswith("has 3 channel(s) but the model takes 1")
    assert "outside bounds" in failures["b.png"]


# --------------------------------------------------------------------------- settings


def test_other_threads_or_batch_size_redo_the_inputs(tmp_path: Path, model_file: str) -> None:
    make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "data"), *FAST]
    assert cli.main(argv) == 0
    first = read_summary(out)
    assert first["settings"]["threads"] == 1
    assert first["settings"]["torch"] == torch.__version__
    assert (first["settings"]["device"], first["settings"]["dtype"]) == ("cpu", "float32")
    assert cli.main(argv) == 0
    assert (read_summary(out)["ok"], read_summary(out)["skipped"]) == (0, 5)
    assert cli.main([*argv, "--threads", "2"]) == 0
    second = read_summary(out)
    assert (second["ok"], second["skipped"]) == (5, 0)
    assert second["fingerprint"] != first["fingerprint"]
    assert cli.main([*argv, "--batch-size", "2"]) == 0
    assert (read_summary(out)["ok"], read_summary(out)["skipped"]) == (5, 0)


# --------------------------------------------------------------------------- the summary's counts


class GlobalMeanNet(torch.nn.Module):
    """Class 1 means "brighter than 0.5 on average": on a bright image only a
    mask over more than half of it can destroy the class."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), 40.0 * (m - 0.5)], dim=1)


def test_summary_counts_passes_weight_searches_and_large_masks(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "data"),
            *[a for a in FAST if a != "--quiet"]]
    assert cli.main(argv) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    records = read_jsonl(out / "results.jsonl")
    summary = read_summary(out)
    assert summary["passes"] == sum(r["passes"] for r in records) > 0
    assert summary["forward_passes"] == sum(r["forward_passes"] for r in records)
    assert summary["weight_searches"] == sum(r["attempts"] > 1 for r in records)
    assert summary["large_masks"] == sum(r["mask_fraction"] > 0.5 for r in records)
    assert f"{summary['passes']} forward+backward passes" in last
    assert f"{summary['weight_searches']} weight searches" in last
    for r in records:
        assert r["weight_search"] == (r["attempts"] > 1)
        assert r["large_mask"] == (r["mask_fraction"] > 0.5)
        with np.load(out / r["outputs"]["npz"]) as z:
            assert r["mask_fraction"] == pytest.approx(z["mask_model"].mean())
    # the counts are the library's own diagnostics for the same call
    record = records[0]
    with np.load(out / record["outputs"]["npz"]) as z:
        x = torch.from_numpy(z["input"])[None]
    explainer = RegularizedAdversarial(torch.jit.load(model_file))
    explainer.attribute(x, target=record["target"], bounds=(0.0, 1.0), steps=5,
                        phase2_steps=3, lr=0.03, sparsity_weight=1.0, tv_weight=1.0)
    assert explainer.last_diagnostics is not None
    assert record["passes"] == int(explainer.last_diagnostics.passes[0])
    assert record["attempts"] == int(explainer.last_diagnostics.attempts[0])


def test_masks_over_half_the_input_are_counted(tmp_path: Path) -> None:
    model = save_scripted(GlobalMeanNet(), tmp_path / "mean.pt")
    Image.fromarray(np.full((12, 12), 230, dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model, "--out", str(out), str(tmp_path / "a.png"),
                     "--steps", "30", "--phase2-steps", "5", "--search-steps", "0",
                     "--sparsity-weight", "0.1", "--tv-weight", "0", "--lr", "0.05",
                     "--quiet", "--threads", "1"]) == 0
    (record,) = read_jsonl(out / "results.jsonl")
    assert record["large_mask"] and record["mask_fraction"] > 0.5
    assert record["attempts"] == 1 and not record["weight_search"]
    assert (read_summary(out)["large_masks"], read_summary(out)["weight_searches"]) == (1, 0)


def test_two_runs_on_one_folder_lose_nothing_and_report_no_false_failure(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real second process: refused while the first runs; the first completes."""
    import subprocess
    import sys
    import time

    from test_cli import make_many, subprocess_env

    n = 6
    make_many(tmp_path / "data", n)
    args = ["explain", "--model", model_file, str(tmp_path / "data"), "--steps", "60",
            "--phase2-steps", "20", *FAST[4:]]
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "captum_regadv.cli", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, env=subprocess_env(),
    )
    deadline = time.monotonic() + 120
    while not list(out.rglob("*.record.json")):  # the first run is under way
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert cli.main([*args, "--out", str(out)]) == 2
    assert f"(process {first.pid})" in one_line_error(capsys)
    assert first.wait(timeout=240) == 0
    summary = read_summary(out)
    assert (summary["ok"], summary["failed"], summary["complete"]) == (n, 0, n)
    assert cli.main([*args, "--out", str(out)]) == 0  # and a later run resumes as usual
    assert (read_summary(out)["skipped"], read_summary(out)["failed"]) == (n, 0)


class ChannelMeanNet(TinyNet):
    """Takes any number of channels (their mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = x.mean(dim=1, keepdim=True)
        return self.fc(torch.relu(self.conv(gray)).amax(dim=(2, 3)))


def test_a_model_taking_any_channels_explains_gray_and_rgb_in_any_order(
    tmp_path: Path,
) -> None:
    model = save_scripted(ChannelMeanNet(), tmp_path / "model.pt")
    for order, (first, second) in enumerate([(rgb_png, gray_png), (gray_png, rgb_png)]):
        data = tmp_path / f"data{order}"
        first(data / "a.png", 1)
        second(data / "b.png", 2)
        out = tmp_path / f"out{order}"
        assert cli.main(["explain", "--model", model, "--out", str(out), str(data), *FAST]) == 0
        assert read_summary(out)["ok"] == 2


_PARTS = ["a", "b", "summary.json", "results.jsonl", "summary.json_", "Summary.JSON",
          ".captum-regadv.lock", "x.png"]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.lists(st.sampled_from(_PARTS), min_size=1, max_size=3).map(tuple),
               min_size=1, max_size=8))
def test_output_names_are_unique_and_never_take_the_runs_own_files(
    paths: set[tuple[str, ...]],
) -> None:
    from captum_regadv.dataset_run import output_names

    files = sorted("/data/" + "/".join(p) + "/img.png" for p in paths)
    names = output_names(files)
    assert len(set(names)) == len(names)
    reserved = {"summary.json", "results.jsonl", ".captum-regadv.lock"}
    for name in names:
        assert name.split("/")[0].casefold() not in reserved
    assert output_names(files) == names  # deterministic
