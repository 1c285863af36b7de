"""Tests of ``captum-regadv explain`` (cli.py + dataset_run.py) on generated files.

A tiny scripted conv net is saved to ``tmp_path``; images of every supported
format are generated there. Runs are in-process through ``main(argv)``,
except the kill-and-resume test (a real ``SIGKILL`` to a subprocess started
with ``python -m captum_regadv.cli``) and the ``torchrun`` test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from _dicom import write_dicom
from captum_regadv import cli
from captum_regadv.image_io import TEMP_SUFFIX

pydicom = pytest.importorskip("pydicom")
tifffile = pytest.importorskip("tifffile")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

FAST = [
    "--steps", "5", "--phase2-steps", "3", "--lr", "0.03",
    "--sparsity-weight", "1", "--tv-weight", "1", "--quiet", "--threads", "1",
]


class TinyNet(torch.nn.Module):
    """Conv + max pooling: any input size, a localised, non-empty mask."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()
            self.fc.weight.copy_(2 * torch.randn(self.fc.weight.shape, generator=generator))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).amax(dim=(2, 3)))


class FixedSizeNet(torch.nn.Module):
    """Accepts 1 x 16 x 16 inputs only."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(256, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


ROOT = Path(__file__).resolve().parents[1]


def subprocess_env() -> dict[str, str]:
    """The environment for a child ``python``: this checkout's package first."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def save_scripted(module: torch.nn.Module, path: Path) -> str:
    torch.jit.script(module.eval()).save(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def restore_torch_threads() -> Any:
    """``--threads`` sets the process's torch threads; give them back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model_file(tmp_path: Path) -> str:
    return save_scripted(TinyNet(), tmp_path / "model.pt")


def blob_image(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Values in [0, 1]: smooth noise with one bright spot."""
    rng = np.random.default_rng(seed)
    image = 0.3 * rng.random(shape)
    r, c = rng.integers(2, shape[0] - 2), rng.integers(2, shape[1] - 2)
    image[r - 2:r + 2, c - 2:c + 2] = 1.0
    return image


def make_dataset(root: Path) -> dict[str, np.ndarray]:
    """One image per format; two share the basename ``a.png``. Returns rel path -> image."""
    images = {
        "png8/a.png": (blob_image((16, 16), 1) * 255).astype(np.uint8),
        "png16/a.png": (blob_image((16, 16), 2) * 65535).astype(np.uint16),
        "tiff/b.tif": (blob_image((12, 14), 3) * 65535).astype(np.uint16),
        "dicom/c.dcm": (blob_image((16, 16), 4) * 4095).astype(np.uint16),
        "npy/d.npy": blob_image((10, 12), 5),
    }
    for rel, array in images.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png"):
            Image.fromarray(array).save(path)
        elif rel.endswith(".tif"):
            tifffile.imwrite(path, array)
        elif rel.endswith(".dcm"):
            write_dicom(path, array, slope=2.0, intercept=-100.0)
        else:
            np.save(path, array)
    return images


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def snapshot(out: Path) -> dict[str, Any]:
    """What must agree between runs: file list, results (minus timing), masks."""
    files = sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*")
        if p.is_file() and p.name != "summary.json"
    )
    records = [
        {k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(out / "results.jsonl")
    ]
    arrays = {}
    for npz in sorted(out.rglob("*.npz")):
        with np.load(npz, allow_pickle=False) as z:
            arrays[npz.relative_to(out).as_posix()] = {k: z[k].copy() for k in z.files}
    return {"files": files, "records": records, "arrays": arrays}


def assert_same_snapshot(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["files"] == b["files"]
    assert a["records"] == b["records"]
    assert a["arrays"].keys() == b["arrays"].keys()
    for name in a["arrays"]:
        for key, value in a["arrays"][name].items():
            np.testing.assert_array_equal(value, b["arrays"][name][key], err_msg=f"{name}:{key}")


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("captum-regadv explain: error: ")
    return err[0]


# --------------------------------------------------------------------------- outputs


def test_explain_every_format(tmp_path: Path, model_file: str) -> None:
    images = make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model_file, "--out", str(out),
                     str(tmp_path / "data"), *FAST]) == 0

    records = read_jsonl(out / "results.jsonl")
    assert [r["name"] for r in records] == sorted(images)  # sorted, unique names
    some_mask = False
    for record in records:
        original = images[record["name"]]
        assert record["input"] == str(tmp_path / "data" / record["name"])
        assert record["shape"] == list(original.shape)
        for key in ("mask", "overlay", "npz"):
            assert (out / record["outputs"][key]).is_file()
        mask_png = np.asarray(Image.open(out / record["outputs"]["mask"]))
        assert mask_png.shape == original.shape and set(np.unique(mask_png)) <= {0, 255}
        overlay = np.asarray(Image.open(out / record["outputs"]["overlay"]))
        assert overlay.shape == original.shape + (3,)
        with np.load(out / record["outputs"]["npz"], allow_pickle=False) as z:
            assert z["mask"].shape == original.shape
            np.testing.assert_array_equal(z["mask"] * 255, mask_png)
            assert z["input"].shape == z["perturbed"].shape == (1,) + original.shape
            assert z["mask_model"].shape == (1,) + original.shape
            assert int(z["target"]) == record["target"]
            assert float(z["score_before"]) == record["score_before"]
            assert float(z["score_after"]) == record["score_after"]
            for c in ("sparsity", "smoothness", "classification", "total"):
                assert float(z[f"ape_d_{c}"]) == pytest.approx(record["ape_d"][c])
            # outside the mask the perturbed input is the input
            outside = z["mask_model"] == 0
            np.testing.assert_array_equal(z["perturbed"][outside], z["input"][outside])
            assert z["input"].min() >= 0.0 and z["input"].max() <= 1.0
            some_mask = some_mask or bool(z["mask"].any())
        assert record["ape_d"]["classification"] == pytest.approx(record["score_after"])
        assert record["seconds"] > 0
    assert some_mask

    summary = read_summary(out)
    counts = (summary["inputs"], summary["ok"], summary["skipped"], summary["failed"])
    assert counts == (5, 5, 0, 0)
    assert summary["failures"] == []
    mean_total = np.mean([r["ape_d"]["total"] for r in records])
    assert summary["mean_ape_d"]["total"] == pytest.approx(mean_total)
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_explain_on_cuda(tmp_path: Path, model_file: str) -> None:
    images = make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model_file, "--out", str(out), "--device", "cuda",
                     "--batch-size", "2", str(tmp_path / "data"), *FAST]) == 0
    for record in read_jsonl(out / "results.jsonl"):
        with np.load(out / record["outputs"]["npz"]) as z:
            assert z["mask"].shape == images[record["name"]].shape


def test_dicom_rescale_reaches_the_model(tmp_path: Path, model_file: str) -> None:
    stored = (blob_image((16, 16), 7) * 4095).astype(np.uint16)
    write_dicom(tmp_path / "x.dcm", stored, slope=2.0, intercept=-100.0)
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model_file, "--out", str(out), "--scale", "none",
                     str(tmp_path / "x.dcm"), *FAST]) == 0
    with np.load(out / "x.dcm.npz") as z:
        np.testing.assert_allclose(z["input"][0], stored * 2.0 - 100.0)
        assert z["perturbed"].min() >= -100.0 and z["perturbed"].max() <= 4095 * 2.0 - 100.0


def test_size_channels_and_fixed_target(tmp_path: Path) -> None:
    model = save_scripted(TinyNet(channels=3), tmp_path / "rgb.pt")
    Image.fromarray((blob_image((20, 12), 1) * 255).astype(np.uint8)).save(tmp_path / "g.png")
    rgb = (np.dstack([blob_image((18, 16), s) for s in (2, 3, 4)]) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    out = tmp_path / "out"
    argv = ["explain", "--model", model, "--out", str(out), "--channels", "3", "--size", "8", "8",
            "--mean", "0.5", "--std", "0.25,0.25,0.25", "--target", "1", "--batch-size", "2",
            str(tmp_path / "g.png"), str(tmp_path / "c.png"), *FAST]
    assert cli.main(argv) == 0
    with np.load(out / "g.png.npz") as z:
        assert z["mask"].shape == (20, 12)
        assert z["mask_model"].shape == z["input"].shape == (3, 8, 8)
        assert z["input"].min() >= -2.0 and z["input"].max() <= 2.0
    with np.load(out / "c.png.npz") as z:
        assert z["mask"].shape == (18, 16, 3)
    assert np.asarray(Image.open(out / "c.png.mask.png")).shape == (18, 16)
    assert [r["target"] for r in read_jsonl(out / "results.jsonl")] == [1, 1]


def test_factory_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "regadv_factory_mod.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1),\n"
        "                               torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(),\n"
        "                               torch.nn.Linear(2, 2)).train()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    np.save(tmp_path / "x.npy", blob_image((8, 8), 1))
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", "regadv_factory_mod:make", "--out", str(out),
                     str(tmp_path / "x.npy"), *FAST]) == 0
    assert read_summary(out)["ok"] == 1


def test_exported_program_model(tmp_path: Path) -> None:
    auto = torch.export.Dim.AUTO
    program = torch.export.export(
        TinyNet().eval(), (torch.rand(2, 1, 16, 16),),
        dynamic_shapes=({0: auto, 2: auto, 3: auto},),
    )
    torch.export.save(program, str(tmp_path / "model.pt2"))
    images = make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", str(tmp_path / "model.pt2"), "--out", str(out),
                     str(tmp_path / "data"), *FAST]) == 0
    assert read_summary(out)["ok"] == len(images)


def test_rerun_skips_complete_inputs_and_redoes_changed_settings(
    tmp_path: Path, model_file: str
) -> None:
    make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "data"), *FAST]
    assert cli.main(argv) == 0
    first = snapshot(out)
    assert cli.main(argv) == 0
    assert (read_summary(out)["ok"], read_summary(out)["skipped"]) == (0, 5)
    assert_same_snapshot(first, snapshot(out))
    assert cli.main([*argv, "--steps", "6"]) == 0
    assert (read_summary(out)["ok"], read_summary(out)["skipped"]) == (5, 0)


def test_output_folder_inside_the_input_folder_is_not_an_input(
    tmp_path: Path, model_file: str
) -> None:
    make_dataset(tmp_path / "data")
    out = tmp_path / "data" / "results"
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "data"), *FAST]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0
    assert (read_summary(out)["inputs"], read_summary(out)["skipped"]) == (5, 5)


def test_corrupt_and_unsupported_inputs_are_skipped(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_dataset(tmp_path / "data")
    (tmp_path / "data" / "png8" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "data" / "npy" / "nan.npy").write_bytes(b"")
    np.save(tmp_path / "data" / "npy" / "nan.npy", np.array([[0.0, np.nan]]))
    (tmp_path / "data" / "README.txt").write_text("ignored inside folders")
    (tmp_path / "notes.txt").write_text("named explicitly: reported")
    out = tmp_path / "out"
    argv = ["explain", "--model", model_file, "--out", str(out), str(tmp_path / "data"),
            str(tmp_path / "notes.txt"), *FAST]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    summary = read_summary(out)
    assert (summary["inputs"], summary["ok"], summary["failed"]) == (8, 5, 3)
    reasons = {Path(f["input"]).name: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"broken.png", "nan.npy", "notes.txt"}
    assert "NaN or Inf" in reasons["nan.npy"]
    assert "unsupported file type .txt" in reasons["notes.txt"]
    for name in reasons:
        assert f"warning: skipped {tmp_path}" in err and name in err
    assert len(read_jsonl(out / "results.jsonl")) == 5
    assert not list(out.rglob("broken*")) and not list(out.rglob("notes*"))
    assert cli.main(argv) == 1  # still failing; the rest is done
    assert (read_summary(out)["ok"], read_summary(out)["skipped"]) == (0, 5)


# --------------------------------------------------------------------------- setup errors


def test_bad_model_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", blob_image((8, 8), 1))
    argv = ["explain", "--out", str(tmp_path / "out"), str(tmp_path / "x.npy"), *FAST]
    assert cli.main([*argv, "--model", str(tmp_path / "missing.pt")]) == 2
    assert "neither an existing TorchScript/.pt2 file" in one_line_error(capsys)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert cli.main([*argv, "--model", str(tmp_path / "junk.pt")]) == 2
    assert "cannot load TorchScript model" in one_line_error(capsys)
    (tmp_path / "junk.pt2").write_bytes(b"not a model")
    assert cli.main([*argv, "--model", str(tmp_path / "junk.pt2")]) == 2
    assert "cannot load exported program" in one_line_error(capsys)
    assert cli.main([*argv, "--model", "no_such_module_xyz:make"]) == 2
    assert "ModuleNotFoundError" in one_line_error(capsys)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_model_failing_on_the_input_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_scripted(FixedSizeNet(), tmp_path / "fixed.pt")
    np.save(tmp_path / "x.npy", blob_image((20, 20), 1))
    out = tmp_path / "out"
    assert cli.main(["explain", "--model", model, "--out", str(out),
                     str(tmp_path / "x.npy"), *FAST]) == 2
    line = one_line_error(capsys)
    assert "the model fails on an input of shape (1, 1, 20, 20)" in line
    assert "x.npy" in line and "mat1 and mat2" in line
    assert not out.exists()  # no work done, no empty output folder left behind


def test_preprocessing_that_does_not_fit(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", blob_image((8, 8), 1))
    assert cli.main(["explain", "--model", model_file, "--out", str(tmp_path / "out"),
                     "--mean", "0.1,0.2", str(tmp_path / "x.npy"), *FAST]) == 2
    assert "--mean has 2 values but the model input has 1 channels" in one_line_error(capsys)
    assert cli.main(["explain", "--model", model_file, "--out", str(tmp_path / "out"),
                     "--bounds", "1", "0", str(tmp_path / "x.npy"), *FAST]) == 2
    assert "LO must be below HI" in one_line_error(capsys)


def test_target_out_of_range(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", blob_image((8, 8), 1))
    assert cli.main(["explain", "--model", model_file, "--out", str(tmp_path / "out"),
                     "--target", "7", str(tmp_path / "x.npy"), *FAST]) == 2
    assert "out of range" in one_line_error(capsys)


def test_unwritable_output_folder(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", blob_image((8, 8), 1))
    (tmp_path / "file").write_text("")
    argv = ["explain", "--model", model_file, str(tmp_path / "x.npy"), *FAST]
    assert cli.main([*argv, "--out", str(tmp_path / "file")]) == 2
    assert "is not a folder" in one_line_error(capsys)
    assert cli.main([*argv, "--out", str(tmp_path / "file" / "out")]) == 2
    assert "cannot write to output folder" in one_line_error(capsys)
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            assert cli.main([*argv, "--out", str(locked)]) == 2
            assert "cannot write to output folder" in one_line_error(capsys)
        finally:
            locked.chmod(0o700)


def test_missing_input_and_usage_errors(
    tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["explain", "--model", model_file, "--out", str(tmp_path / "out")]
    assert cli.main([*argv, str(tmp_path / "nope")]) == 2
    assert "does not exist" in one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert cli.main([*argv, str(tmp_path / "empty")]) == 2
    assert "no input images" in one_line_error(capsys)
    assert cli.main([*argv, "--target", "cat", str(tmp_path)]) == 2
    assert "'predicted'" in capsys.readouterr().err
    assert cli.main([*argv, "--std", "0.5,0", str(tmp_path)]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert cli.main([]) == 2
    capsys.readouterr()


# --------------------------------------------------------------------------- parser


def test_help_lists_options_with_library_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "explain" in top and "benchmark" in top
    assert cli.main(["explain", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--steps", "--phase2-steps", "--sparsity-weight", "--tv-weight", "--lr",
                 "--epsilon", "--gamma", "--mode", "--patience", "--scale", "--mean", "--std",
                 "--channels", "--size", "--bounds", "--batch-size", "--device", "--target"):
        assert flag in text
    assert "(default: 60)" in text  # --steps, from the library's signature


def test_only_user_set_method_options_are_passed(
    tmp_path: Path, model_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    from captum_regadv import dataset_run

    def fake_run(config: dataset_run.ExplainConfig) -> int:
        seen.update(config.method)
        return 0

    monkeypatch.setattr(dataset_run, "run_explain", fake_run)
    assert cli.main(["explain", "--model", model_file, "--out", str(tmp_path), "--steps", "7",
                     "--mode", "preserve", str(tmp_path)]) == 0
    assert seen == {"steps": 7, "mode": "preserve"}


def test_benchmark_subcommand_is_lazy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_BENCHMARK_MODULE", "captum_regadv.benchmark.no_such_runner")
    assert cli.main(["benchmark"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("captum-regadv benchmark: error:")

    runner = types.ModuleType("fake_runner")
    setattr(runner, "add_arguments", lambda p: p.add_argument("--quick", action="store_true"))
    setattr(runner, "run", lambda args: 3 if args.quick else 4)
    monkeypatch.setitem(sys.modules, "fake_runner", runner)
    monkeypatch.setattr(cli, "_BENCHMARK_MODULE", "fake_runner")
    assert cli.main(["benchmark", "--quick"]) == 3


# --------------------------------------------------------------------------- kill, torchrun


def make_many(root: Path, n: int, size: int = 24) -> None:
    for k in range(n):
        folder = root / ("left" if k % 2 else "right")
        folder.mkdir(parents=True, exist_ok=True)
        image = (blob_image((size, size), k) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{k:02d}.png")


def count_records(out: Path) -> int:
    return len(list(out.rglob("*.record.json")))


def assert_no_corrupt_files(out: Path) -> None:
    for path in out.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                [z[k] for k in z.files]
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            read_jsonl(path)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_killed_run_resumes_to_the_same_results(tmp_path: Path, model_file: str) -> None:
    n = 24
    make_many(tmp_path / "data", n)
    heavy = ["--steps", "60", "--phase2-steps", "20", *FAST[4:]]
    args = ["explain", "--model", model_file, str(tmp_path / "data"), *heavy]
    out = tmp_path / "out"
    with open(tmp_path / "stderr.txt", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "captum_regadv.cli", *args, "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path, env=subprocess_env(),
        )
        deadline = time.monotonic() + 120
        while not out.exists() or count_records(out) < 3:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    done = count_records(out)
    assert 3 <= done < n, "the run was not killed midway"
    assert not (out / "summary.json").exists()
    assert_no_corrupt_files(out)

    assert cli.main([*args, "--out", str(out)]) == 0
    summary = read_summary(out)
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (n - done, done, 0)
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    assert_no_corrupt_files(out)

    reference = tmp_path / "reference"
    assert cli.main([*args, "--out", str(reference)]) == 0
    assert_same_snapshot(snapshot(reference), snapshot(out))
    assert len(read_jsonl(out / "results.jsonl")) == n


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="needs torch.distributed with gloo",
)
def test_torchrun_two_processes_match_one(tmp_path: Path, model_file: str) -> None:
    make_many(tmp_path / "data", 7, size=16)
    (tmp_path / "data" / "left" / "zz_broken.png").write_bytes(b"broken")
    args = ["explain", "--model", model_file, "--device", "cpu", str(tmp_path / "data"), *FAST]
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert cli.main([*args, "--out", str(single)]) == 1
    env = subprocess_env()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "captum_regadv.cli", *args, "--out", str(multi)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env,
    )
    assert done.returncode != 0  # the broken input makes both ranks exit 1
    assert "zz_broken.png" in done.stderr
    assert_same_snapshot(snapshot(single), snapshot(multi))
    a, b = read_summary(single), read_summary(multi)
    assert (b["processes"], a["processes"]) == (2, 1)
    for key in ("inputs", "ok", "skipped", "failed", "failures", "mean_ape_d", "fingerprint"):
        assert a[key] == b[key], key
