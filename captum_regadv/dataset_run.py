r"""Explain every image of a dataset, resumably, in one process or many.

This is the engine of ``captum-regadv explain`` (see :mod:`captum_regadv.cli`);
:func:`run_explain` takes an :class:`ExplainConfig` and returns the exit status.

**Outputs.** Each input gets its outputs under ``OUT``, named by the input's
path relative to the folder common to all inputs (so ``a/x.png`` and
``b/x.png`` never collide) plus a suffix:

* ``<name>.mask.png``: the mask at the image's resolution, 0 or 255;
* ``<name>.overlay.png``: the image in gray, the mask tinted and outlined;
* ``<name>.npz``: ``mask`` (the image's shape, 0/1), ``mask_model``,
  ``input`` and ``perturbed`` (model space, ``C x h x w``), ``target``,
  ``score_before``, ``score_after`` and the APE components
  (``ape_d_sparsity``, ``ape_d_smoothness``, ``ape_d_classification``,
  ``ape_d_total``; ``ape_s_*`` with ``--mode preserve``);
* ``<name>.record.json``: the input's results line, written last.

At the end ``OUT/results.jsonl`` (one line per completed input, in input
order: input, name, outputs relative to ``OUT``, shape, target, scores
before and after, APE components, seconds) and ``OUT/summary.json`` are
rebuilt from the records. The summary counts ``inputs``, ``ok`` (explained
by this run), ``skipped`` (complete from an earlier run), ``failed`` and
``complete``, gives ``mean_ape_d`` (``mean_ape_s`` with ``--mode
preserve``) over the complete inputs, the
``failures`` with their reasons, and the settings.

**Nothing is lost.** Every file is written atomically (temporary file in the
same folder, ``fsync``, ``os.replace``), and an input is done only once its
record exists, which is written after its other outputs. A run killed at any
moment leaves complete files only; rerunning the same command skips the
inputs whose record matches the settings (a record made with other settings
is redone) and finishes the rest. Unreadable inputs are reported, skipped,
and make the exit status 1; a bad model, device or output folder stops the
run before any work with exit status 2.

**Scaling out.** Under ``torchrun`` (the variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` are set) every process takes the slice ``inputs[rank::world]``
of the sorted input list, on ``cuda:LOCAL_RANK`` with NCCL (or the CPU with
gloo when ``--device cpu`` or no GPU), writes its own per-input outputs,
waits for the others, and rank 0 writes ``results.jsonl`` and
``summary.json`` for all inputs: the same files as a single-process run.
One machine with 4 GPUs::

    torchrun --standalone --nproc-per-node 4 -m captum_regadv.cli explain \
        --model model.pt --out results/ data/

CPU processes instead of GPUs (gloo)::

    torchrun --standalone --nproc-per-node 8 -m captum_regadv.cli explain \
        --device cpu --model model.pt --out results/ data/

Two machines with 4 GPUs each; ``OUT`` and the inputs must be on a file
system both machines see under the same paths. Run on each machine, with
``--node-rank 0`` on ``host0`` and ``--node-rank 1`` on the other::

    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 \
        --master-addr host0 --master-port 29500 \
        -m captum_regadv.cli explain --model model.pt --out /shared/results /shared/data

or with rendezvous (the same command on every machine)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-id regadv-1 \
        --rdzv-backend c10d --rdzv-endpoint host0:29500 \
        -m captum_regadv.cli explain --model model.pt --out /shared/results /shared/data

``torchrun`` is ``python -m torch.distributed.run``. A killed distributed
run resumes like a single one, with any number of processes.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib
import itertools
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any, Callable, Iterator, Literal, Mapping, Optional, Sequence, Union, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from .image_io import (
    TEMP_SUFFIX,
    ImageReadError,
    LoadedImage,
    Prepared,
    Preprocessing,
    list_images,
    load_image,
    mask_to_original,
    preprocess,
    remove_temp_files,
    render_overlay,
    write_json_atomic,
    write_jsonl_atomic,
    write_npz_atomic,
    write_png_atomic,
)
from .regularized_adversarial import RegularizedAdversarial
from .scores import Score, class_score, resolve_target

__all__ = ["ExplainConfig", "SetupError", "Target", "load_model", "output_names", "run_explain"]

Target = Union[int, Literal["predicted"]]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
MASK_SUFFIX = ".mask.png"
OVERLAY_SUFFIX = ".overlay.png"
NPZ_SUFFIX = ".npz"
RECORD_SUFFIX = ".record.json"
# Ranks that finish early wait at the final barrier for the slowest one.
DIST_TIMEOUT = datetime.timedelta(hours=24)
_COMPONENTS = ("sparsity", "smoothness", "classification", "total")
_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class SetupError(Exception):
    """A problem found before any work (model, device, inputs, output folder).

    ``report`` is false on the processes of a distributed run that should
    stay silent because rank 0 reports the error.
    """

    def __init__(self, message: str, *, report: bool = True) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ExplainConfig:
    """Everything ``captum-regadv explain`` was asked to do.

    Attributes:
        inputs: image files and folders.
        out: output folder (created if needed).
        model: a TorchScript file, a ``torch.export`` ``.pt2`` file, or
            ``package.module:factory`` returning an ``nn.Module``.
        target: a class index, or ``"predicted"`` (the model's top class).
        preprocessing: how images become model inputs; its ``dtype`` is
            replaced by the model's parameter type.
        method: keyword arguments for ``RegularizedAdversarial.attribute``
            (only those the user set; the library's defaults apply otherwise).
        score: ``"softmax"``, ``"sigmoid"`` or ``"identity"``.
        batch_size: inputs of equal size explained in one ``attribute`` call.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` = cuda if
            available. Under torchrun a CUDA device is ``cuda:LOCAL_RANK``.
        progress: show a progress bar and a final line (rank 0).
        threads: CPU threads of this process (``torch.set_num_threads``);
            ``None`` keeps torch's default. One thread is often fastest for
            small images or on a busy machine.
    """

    inputs: tuple[str, ...]
    out: str
    model: str
    target: Target = "predicted"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    method: Mapping[str, Any] = field(default_factory=dict)
    score: Score = "softmax"
    batch_size: int = 1
    device: Optional[str] = None
    progress: bool = True
    threads: Optional[int] = None


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class _World:
    rank: int = 0
    size: int = 1
    distributed: bool = False


def _launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _resolve_device(spec: Optional[str], local_rank: Optional[int] = None) -> torch.device:
    """The device to run on; ``local_rank`` picks the GPU under torchrun.

    Raises:
        SetupError: the device is malformed or not available.
    """
    if spec is None:
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise SetupError(f"invalid --device '{spec}' (use cpu, cuda or cuda:N)") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise SetupError(f"--device {spec}: CUDA is not available on this machine")
    index = local_rank if local_rank is not None else (device.index or 0)
    if index >= torch.cuda.device_count():
        raise SetupError(
            f"--device {spec}: there is no cuda:{index} ({torch.cuda.device_count()} GPUs)"
        )
    return torch.device("cuda", index)


def _start_world(spec: Optional[str]) -> tuple[_World, torch.device]:
    """Join the torchrun process group when launched by torchrun."""
    if not _launched_by_torchrun():
        return _World(), _resolve_device(spec)
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = _resolve_device(spec, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available():
        raise SetupError("launched by torchrun but torch.distributed is not available")
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=DIST_TIMEOUT)
    except Exception as err:  # any init failure is a setup error of this process
        raise SetupError(f"cannot start torch.distributed ({backend}): {_one_line(err)}") from err
    return _World(rank, size, True), device


def _stop_world(world: _World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _gather(world: _World, obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order."""
    if not world.distributed:
        return [obj]
    everything: list[Any] = [None] * world.size
    dist.all_gather_object(everything, obj)
    return everything


# --------------------------------------------------------------------------- setup


def _one_line(err: BaseException) -> str:
    """The most telling line of an error (TorchScript errors span many lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    text = named[-1] if named else (lines[0] if lines else "")
    if not text:
        return type(err).__name__
    return text if named else f"{type(err).__name__}: {text}"


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """Let the user's own modules in the current folder be imported, as ``python -m`` does."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _call_factory(spec: str) -> Any:
    """Import ``package.module:factory`` and call it."""
    module_name, _, attribute = spec.partition(":")
    with _cwd_importable():
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                obj = getattr(obj, part)
        except Exception as err:  # an import can fail in any way
            raise SetupError(f"cannot load --model {spec}: {_one_line(err)}") from err
        if not callable(obj):
            raise SetupError(f"--model {spec}: {attribute} is not callable")
        try:
            return obj()
        except Exception as err:  # the user's factory can fail in any way
            raise SetupError(f"--model {spec} failed: {_one_line(err)}") from err


def _load_torchscript(path: str, device: torch.device) -> torch.nn.Module:
    try:
        model = torch.jit.load(path, map_location=device)  # type: ignore[no-untyped-call]
    except Exception as err:  # torch raises RuntimeError, ValueError, zip errors...
        raise SetupError(
            f"cannot load TorchScript model '{path}' (save it with torch.jit.save, or "
            f"torch.export.save as .pt2): {_one_line(err)}"
        ) from err
    model.eval()
    return cast(torch.nn.Module, model)


def _load_exported(path: str, device: torch.device) -> torch.nn.Module:
    try:
        module = torch.export.load(path).module().to(device)
    except Exception as err:  # torch raises many kinds of errors here
        raise SetupError(
            f"cannot load exported program '{path}' (save it with torch.export.save): "
            f"{_one_line(err)}"
        ) from err
    # An exported graph keeps the mode it was exported in and refuses eval();
    # only the flag is cleared, so that nothing warns about training mode.
    for sub in module.modules():
        sub.training = False
    return module


def load_model(spec: str, device: torch.device) -> torch.nn.Module:
    """Load the model: a TorchScript file, a ``torch.export`` ``.pt2`` file, or
    ``package.module:factory``.

    The returned module is this process's own instance, on ``device``, in
    eval mode (export the model in eval mode), with gradients of its
    parameters switched off.

    Raises:
        SetupError: the file is missing or cannot be loaded, the factory
            cannot be imported or called, or it returns no ``nn.Module``.
    """
    if os.path.isfile(spec):
        if spec.lower().endswith(".pt2"):
            model = _load_exported(spec, device)
        else:
            model = _load_torchscript(spec, device)
    elif _FACTORY.fullmatch(spec):
        made = _call_factory(spec)
        if not isinstance(made, torch.nn.Module):
            raise SetupError(
                f"--model {spec} returned {type(made).__name__}, expected a torch.nn.Module"
            )
        model = made.to(device).eval()
    else:
        raise SetupError(
            f"model '{spec}' is neither an existing TorchScript/.pt2 file nor "
            "package.module:factory"
        )
    for parameter in model.parameters():  # ScriptModules have no requires_grad_()
        parameter.requires_grad_(False)
    return model


def _model_identity(spec: str) -> str:
    """What the settings fingerprint records of the model: its file's hash or the spec."""
    if not os.path.isfile(spec):
        return spec
    digest = hashlib.sha256()
    with open(spec, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def _check_out_dir(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise SetupError(f"output folder '{out}' exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise SetupError(f"cannot write to output folder '{out}': {err.strerror or err}") from None


def output_names(files: Sequence[str]) -> list[str]:
    """Unique output names: each path relative to the inputs' common folder (posix).

    Example:
        >>> output_names(["/data/a/x.png", "/data/b/x.png", "/data/b/c/y.dcm"])
        ['a/x.png', 'b/x.png', 'b/c/y.dcm']
    """
    if not files:
        return []
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    return [PurePath(os.path.relpath(os.path.abspath(f), root)).as_posix() for f in files]


def _check_output(output: Any, config: ExplainConfig, shape: tuple[int, ...]) -> None:
    if not isinstance(output, Tensor) or output.dim() != 2 or output.shape[0] != 1:
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise SetupError(
            f"the model must return N x C scores for an input of shape {shape}, got {got}"
        )
    target = 0 if config.target == "predicted" else config.target
    try:
        class_score(output, resolve_target(target, output), config.score)
    except (ValueError, TypeError) as err:
        raise SetupError(f"--target/--score do not fit the model's output: {err}") from None


def _probe(
    model: torch.nn.Module, files: Sequence[str], config: ExplainConfig, device: torch.device
) -> None:
    """One forward pass on the first readable input; unreadable ones fail later."""
    for path in files:
        try:
            image = load_image(path)
        except ImageReadError:
            continue
        try:
            x = preprocess(image, config.preprocessing).tensor[None].to(device)
        except ValueError as err:
            raise SetupError(f"the preprocessing fails on '{path}': {err}") from None
        try:
            with torch.no_grad():
                output = model(x)
        except Exception as err:  # the user's model can fail in any way
            raise SetupError(
                f"the model fails on an input of shape {tuple(x.shape)} (from '{path}'): "
                f"{_one_line(err)}"
            ) from err
        _check_output(output, config, tuple(x.shape))
        return


@dataclass(frozen=True)
class _Plan:
    files: list[str]
    names: list[str]
    model: torch.nn.Module
    device: torch.device
    config: ExplainConfig
    fingerprint: str
    settings: dict[str, Any]


def _settings(config: ExplainConfig, model: str) -> dict[str, Any]:
    from . import __version__

    prep = config.preprocessing
    return {
        "model": model,
        "target": config.target,
        "scale": prep.scale,
        "mean": None if prep.mean is None else list(prep.mean),
        "std": None if prep.std is None else list(prep.std),
        "channels": prep.channels,
        "size": None if prep.size is None else list(prep.size),
        "bounds": None if prep.bounds is None else list(prep.bounds),
        "method": dict(sorted(config.method.items())),
        "score": config.score,
        "version": __version__,
    }


def _plan(config: ExplainConfig, device: torch.device) -> _Plan:
    """Every check that can fail before any work."""
    bounds = config.preprocessing.bounds
    if bounds is not None and not bounds[0] < bounds[1]:
        raise SetupError(f"--bounds: LO must be below HI, got {bounds[0]:g} {bounds[1]:g}")
    out = os.path.abspath(config.out)
    try:
        files = list_images(config.inputs, exclude=[out])
    except FileNotFoundError as err:
        raise SetupError(str(err)) from None
    if not files:
        raise SetupError(f"no input images found in {' '.join(config.inputs)}")
    _check_out_dir(out)
    model = load_model(config.model, device)
    prep = replace(config.preprocessing, dtype=_model_dtype(model))
    config = replace(config, out=out, preprocessing=prep, method=dict(config.method))
    _probe(model, files, config, device)
    identity = _settings(config, _model_identity(config.model))
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return _Plan(
        files, output_names(files), model, device, config, fingerprint,
        _settings(config, config.model),
    )


# --------------------------------------------------------------------------- per input


@dataclass(frozen=True)
class _Item:
    path: str
    name: str
    image: LoadedImage
    prepared: Prepared


@dataclass(frozen=True)
class _Explained:
    target: int
    mask: Tensor
    inputs: Tensor
    perturbed: Tensor
    score_before: float
    score_after: float
    ape: dict[str, float]
    seconds: float


def _metric_name(config: ExplainConfig) -> str:
    return "ape_s" if config.method.get("mode") == "preserve" else "ape_d"


def _explain_batch(items: Sequence[_Item], plan: _Plan) -> list[_Explained]:
    """One ``attribute`` call for inputs of equal shape, with scores and APE."""
    from .metrics import ape_d, ape_s

    config, model = plan.config, plan.model
    start = time.perf_counter()
    x = torch.stack([it.prepared.tensor for it in items]).to(plan.device)
    low = torch.stack([it.prepared.low for it in items]).to(plan.device)
    high = torch.stack([it.prepared.high for it in items]).to(plan.device)
    with torch.no_grad():
        before = model(x)
    if config.target == "predicted":
        targets = [int(t) for t in before.argmax(dim=1).tolist()]
    else:
        targets = [config.target] * len(items)
    mask, perturbed = cast(
        tuple[Tensor, Tensor],
        RegularizedAdversarial(model).attribute(
            x, target=targets, bounds=(low, high), score=config.score,
            return_perturbed=True, **config.method,
        ),
    )
    with torch.no_grad():
        after = model(perturbed)
    index = resolve_target(targets, before)
    score_before = class_score(before, index, config.score).tolist()
    score_after = class_score(after, index, config.score).tolist()
    metric = ape_s if _metric_name(config) == "ape_s" else ape_d
    components = metric(
        model, x, perturbed, target=targets, score=config.score, return_components=True
    )
    if plan.device.type == "cuda":
        torch.cuda.synchronize(plan.device)
    seconds = (time.perf_counter() - start) / len(items)
    return [
        _Explained(
            targets[k], mask[k].cpu(), x[k].cpu(), perturbed[k].cpu(),
            float(score_before[k]), float(score_after[k]),
            {c: float(getattr(components, c)[k]) for c in _COMPONENTS}, seconds,
        )
        for k in range(len(items))
    ]


def _explain_robustly(items: Sequence[_Item], plan: _Plan) -> list[Union[_Explained, str]]:
    """Explain a batch; when it fails, each input alone, so one bad input fails alone."""
    try:
        return list(_explain_batch(items, plan))
    except Exception as err:  # reported per input; the run goes on
        if len(items) == 1:
            return [_one_line(err)]
        return [r for item in items for r in _explain_robustly([item], plan)]


def _numpy(t: Tensor) -> np.ndarray[Any, Any]:
    return (t if t.dtype in (torch.float32, torch.float64) else t.float()).numpy()


def _base(out: str, name: str) -> str:
    return os.path.join(out, *name.split("/"))


def _write_item(plan: _Plan, item: _Item, result: _Explained) -> dict[str, Any]:
    """Write the input's outputs, the record last; return the record."""
    base = _base(plan.config.out, item.name)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    mask = mask_to_original(result.mask, item.image.pixels.shape)
    flat = mask if mask.ndim == 2 else np.asarray(mask.any(axis=2), dtype=np.uint8)
    metric = _metric_name(plan.config)
    write_png_atomic(base + MASK_SUFFIX, flat * np.uint8(255))
    write_png_atomic(base + OVERLAY_SUFFIX, render_overlay(item.image.pixels, flat))
    arrays: dict[str, Any] = {
        "mask": mask,
        "mask_model": result.mask.to(torch.uint8).numpy(),
        "input": _numpy(result.inputs),
        "perturbed": _numpy(result.perturbed),
        "target": np.int64(result.target),
        "score_before": np.float64(result.score_before),
        "score_after": np.float64(result.score_after),
    }
    arrays.update({f"{metric}_{c}": np.float64(v) for c, v in result.ape.items()})
    write_npz_atomic(base + NPZ_SUFFIX, arrays)
    record = {
        "input": item.path,
        "name": item.name,
        "outputs": {
            "mask": item.name + MASK_SUFFIX,
            "overlay": item.name + OVERLAY_SUFFIX,
            "npz": item.name + NPZ_SUFFIX,
        },
        "shape": list(item.image.pixels.shape),
        "model_input_shape": list(result.inputs.shape),
        "target": result.target,
        "score_before": result.score_before,
        "score_after": result.score_after,
        metric: result.ape,
        "seconds": result.seconds,
        "fingerprint": plan.fingerprint,
    }
    write_json_atomic(base + RECORD_SUFFIX, record)
    return record


def _complete_record(plan: _Plan, index: int) -> Optional[dict[str, Any]]:
    """The input's record if its outputs are complete and made with these settings."""
    base = _base(plan.config.out, plan.names[index])
    try:
        with open(base + RECORD_SUFFIX, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != plan.fingerprint:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not all(
        isinstance(p, str) and os.path.isfile(_base(plan.config.out, p))
        for p in outputs.values()
    ):
        return None
    return record


# --------------------------------------------------------------------------- the loop


@dataclass
class _Outcome:
    """What one process did: counts and failures (sent to rank 0)."""

    ok: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


def _read_batches(
    indices: Sequence[int], plan: _Plan, fail: Callable[[str, str], None]
) -> Iterator[list[_Item]]:
    """Read inputs in order and group equal shapes into batches of ``batch_size``."""
    buckets: dict[tuple[int, ...], list[_Item]] = {}
    for i in indices:
        path = plan.files[i]
        try:
            image = load_image(path)
            prepared = preprocess(image, plan.config.preprocessing)
        except ImageReadError as err:
            fail(path, err.reason)
            continue
        except ValueError as err:
            fail(path, str(err))
            continue
        bucket = buckets.setdefault(tuple(prepared.tensor.shape), [])
        bucket.append(_Item(path, plan.names[i], image, prepared))
        if len(bucket) == plan.config.batch_size:
            yield bucket
            buckets[tuple(prepared.tensor.shape)] = []
    yield from (bucket for bucket in buckets.values() if bucket)


def _run_shard(plan: _Plan, world: _World) -> _Outcome:
    """Explain this process's slice of the inputs; skip the complete ones."""
    shard = range(world.rank, len(plan.files), world.size)
    pending = [i for i in shard if _complete_record(plan, i) is None]
    outcome = _Outcome(skipped=len(shard) - len(pending))
    bar = tqdm(
        total=len(shard), initial=outcome.skipped, desc="explain", unit="image",
        disable=not plan.config.progress or world.rank != 0, file=sys.stderr,
    )

    def fail(path: str, reason: str) -> None:
        outcome.failures.append({"input": path, "reason": reason})
        tqdm.write(f"warning: skipped {path}: {reason}", file=sys.stderr)
        bar.update(1)

    with bar:
        for batch in _read_batches(pending, plan, fail):
            for item, result in zip(batch, _explain_robustly(batch, plan)):
                if isinstance(result, str):
                    fail(item.path, result)
                    continue
                try:
                    _write_item(plan, item, result)
                except (OSError, ValueError) as err:
                    fail(item.path, f"cannot write outputs: {_one_line(err)}")
                    continue
                outcome.ok += 1
                bar.update(1)
    return outcome


def _mean_components(
    records: Sequence[Mapping[str, Any]], metric: str
) -> Optional[dict[str, float]]:
    values = [r[metric] for r in records if isinstance(r.get(metric), dict)]
    if not values:
        return None
    return {c: float(np.mean([v[c] for v in values])) for c in _COMPONENTS}


def _finalize(plan: _Plan, world: _World, outcomes: Sequence[_Outcome]) -> dict[str, Any]:
    """Rank 0: rebuild results.jsonl from the records; write summary.json."""
    out = plan.config.out
    records = [r for i in range(len(plan.files)) if (r := _complete_record(plan, i)) is not None]
    write_jsonl_atomic(os.path.join(out, RESULTS_FILE), records)
    failures = sorted((f for o in outcomes for f in o.failures), key=lambda f: f["input"])
    metric = _metric_name(plan.config)
    summary = {
        "inputs": len(plan.files),
        "ok": sum(o.ok for o in outcomes),
        "skipped": sum(o.skipped for o in outcomes),
        "failed": len(failures),
        "complete": len(records),
        f"mean_{metric}": _mean_components(records, metric),
        "failures": failures,
        "processes": world.size,
        "results": RESULTS_FILE,
        "fingerprint": plan.fingerprint,
        "settings": plan.settings,
    }
    write_json_atomic(os.path.join(out, SUMMARY_FILE), summary)
    remove_temp_files(out)
    return summary


def _first_error(world: _World, error: Optional[str]) -> Optional[str]:
    """The same setup verdict on every process (the first failing rank's message)."""
    for rank, message in enumerate(_gather(world, error)):
        if message is not None:
            return message if rank == 0 else f"rank {rank}: {message}"
    return None


def run_explain(config: ExplainConfig) -> int:
    """Explain every input of ``config``; resumable; torchrun-aware.

    Returns:
        0 when every input is explained, 1 when some failed (reported in
        ``summary.json`` and on stderr). Under torchrun only rank 0 returns
        1, after every process is done, so that torchrun stops nothing early
        and reports rank 0.

    Raises:
        SetupError: before any work, for a bad model, device, input list or
            output folder, or a model that fails on the first input.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    world, device = _start_world(config.device)
    try:
        plan: Optional[_Plan] = None
        error: Optional[str] = None
        try:
            plan = _plan(config, device)
        except SetupError as err:
            error = str(err)
        error = _first_error(world, error)
        if error is not None or plan is None:
            raise SetupError(error or "setup failed", report=world.rank == 0)
        outcome = _run_shard(plan, world)
        if world.distributed:
            dist.barrier()
        outcomes: list[_Outcome] = _gather(world, outcome)
        failed = sum(len(o.failures) for o in outcomes)
        if world.rank == 0:
            summary = _finalize(plan, world, outcomes)
            if config.progress:
                print(
                    f"{summary['ok']} explained, {summary['skipped']} already done, "
                    f"{failed} failed; see {os.path.join(plan.config.out, SUMMARY_FILE)}",
                    file=sys.stderr,
                )
        if world.distributed:
            # No process may exit before rank 0 has written the summary: torchrun
            # stops every process as soon as one exits with an error.
            dist.barrier()
        # Under torchrun, rank 0 alone carries "some inputs failed".
        return 1 if failed and world.rank == 0 else 0
    finally:
        _stop_world(world)
