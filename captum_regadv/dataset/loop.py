"""The run loop: each process explains its shard; rank 0 writes the summary."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..fileio import (
    ImageReadError,
    load_image,
    preprocess,
    remove_temp_files,
    write_json_atomic,
    write_jsonl_atomic,
)
from .config import COMPONENTS, RESULTS_FILE, SUMMARY_FILE, ExplainConfig, SetupError, one_line
from .explain import Item, explain_robustly, metric_name
from .outdir import OutputFolder, open_out_dir
from .records import complete_record, write_item
from .setup import Plan, make_plan
from .world import World, first_error, gather, start_world, stop_world

__all__ = ["run_explain"]


@dataclass
class _Outcome:
    """What one process did: counts and failures (sent to rank 0)."""

    ok: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


def _mismatch(plan: Plan, spatial: int, channels: int) -> Optional[str]:
    """Why the model may not take this input: it differs from the probed one in
    dimensionality or (without ``--channels``) in channels.

    Leads the reason when such an input fails (so that the reason does not
    depend on which input the probe happened to read first), followed by the
    error the call raised, which may have another cause (bounds, ...).
    """
    if spatial != plan.spatial:
        kinds = {2: ("a 2-D image", "2-D images"), 3: ("a 3-D volume", "3-D volumes")}
        return f"is {kinds[spatial][0]} but the model takes {kinds[plan.spatial][1]}"
    if plan.config.preprocessing.channels is None and channels != plan.channels:
        return (
            f"has {channels} channel(s) but the model takes {plan.channels}; use "
            f"--channels {plan.channels} to convert"
        )
    return None


def _read_batches(
    indices: Sequence[int], plan: Plan, fail: Callable[[str, str], None]
) -> Iterator[list[Item]]:
    """Read inputs in order and group equal shapes into batches of ``batch_size``."""
    buckets: dict[tuple[int, ...], list[Item]] = {}
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
        bucket.append(Item(path, plan.names[i], image, prepared))
        if len(bucket) == plan.config.batch_size:
            yield bucket
            buckets[tuple(prepared.tensor.shape)] = []
    yield from (bucket for bucket in buckets.values() if bucket)


def _run_shard(plan: Plan, world: World) -> _Outcome:
    """Explain this process's slice of the inputs; skip the complete ones."""
    shard = range(world.rank, len(plan.files), world.size)
    pending = [i for i in shard if complete_record(plan, i) is None]
    outcome = _Outcome(skipped=len(shard) - len(pending))
    bar = tqdm(
        total=len(shard), initial=outcome.skipped, desc="explain", unit="input",
        disable=not plan.config.progress or world.rank != 0, file=sys.stderr,
    )

    def fail(path: str, reason: str) -> None:
        outcome.failures.append({"input": path, "reason": reason})
        tqdm.write(f"warning: skipped {path}: {reason}", file=sys.stderr)
        bar.update(1)

    with bar:
        for batch in _read_batches(pending, plan, fail):
            for item, result in zip(batch, explain_robustly(batch, plan)):
                if isinstance(result, str):
                    shape = item.prepared.tensor.shape
                    mismatch = _mismatch(plan, item.image.spatial, shape[0])
                    fail(item.path, result if mismatch is None
                         else f"{mismatch} (the call failed with: {result})")
                    continue
                try:
                    write_item(plan, item, result)
                except (OSError, ValueError) as err:
                    fail(item.path, f"cannot write outputs: {one_line(err)}")
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
    return {c: float(np.mean([v[c] for v in values])) for c in COMPONENTS}


def _finalize(plan: Plan, world: World, outcomes: Sequence[_Outcome]) -> dict[str, Any]:
    """Rank 0: rebuild results.jsonl from the records; write summary.json."""
    out = plan.config.out
    records = [r for i in range(len(plan.files)) if (r := complete_record(plan, i)) is not None]
    write_jsonl_atomic(os.path.join(out, RESULTS_FILE), records)
    failures = sorted((f for o in outcomes for f in o.failures), key=lambda f: f["input"])
    metric = metric_name(plan.config)
    summary = {
        "inputs": len(plan.files),
        "ok": sum(o.ok for o in outcomes),
        "skipped": sum(o.skipped for o in outcomes),
        "failed": len(failures),
        "complete": len(records),
        f"mean_{metric}": _mean_components(records, metric),
        "passes": sum(int(r.get("passes", 0)) for r in records),
        "forward_passes": sum(int(r.get("forward_passes", 0)) for r in records),
        "weight_searches": sum(bool(r.get("weight_search")) for r in records),
        "large_masks": sum(bool(r.get("large_mask")) for r in records),
        "not_destroyed": sum(bool(r.get("not_destroyed")) for r in records),
        "target_not_predicted": sum(bool(r.get("target_not_predicted")) for r in records),
        "failures": failures,
        "processes": world.size,
        "results": RESULTS_FILE,
        "fingerprint": plan.fingerprint,
        "settings": plan.settings,
    }
    write_json_atomic(os.path.join(out, SUMMARY_FILE), summary)
    remove_temp_files(out)  # only this run writes here: it holds the folder's lock
    return summary


def _final_line(summary: Mapping[str, Any], out: str, mode: str = "destroy") -> str:
    not_destroyed = "not destroyed" if mode == "destroy" else "score not kept"
    return (
        f"{summary['ok']} explained, {summary['skipped']} already done, "
        f"{summary['failed']} failed; {summary['passes']} forward+backward passes, "
        f"{summary['weight_searches']} weight searches, {summary['large_masks']} masks "
        f"over half the input, {summary['not_destroyed']} {not_destroyed}, "
        f"{summary['target_not_predicted']} target not predicted; "
        f"see {os.path.join(out, SUMMARY_FILE)}"
    )


def _setup(config: ExplainConfig, device: torch.device, world: World) -> tuple[Plan, Any]:
    """Plan on every process; rank 0 then creates and locks the output folder."""
    plan: Optional[Plan] = None
    folder: Optional[OutputFolder] = None
    error: Optional[str] = None
    try:
        plan = make_plan(config, device)
        if world.rank == 0:
            folder = open_out_dir(plan.config.out)
    except SetupError as err:
        error = str(err)
    error = first_error(world, error)
    if error is not None or plan is None:
        if folder is not None:
            folder.remove_if_created()
        raise SetupError(error or "setup failed", report=world.rank == 0)
    return plan, folder


def run_explain(config: ExplainConfig) -> int:
    """Explain every input of ``config``; resumable; torchrun-aware.

    Returns:
        0 when every input is explained, 1 when some failed (reported in
        ``summary.json`` and on stderr). Under torchrun only rank 0 returns
        1, after every process is done, so that torchrun stops nothing early
        and reports rank 0.

    Raises:
        SetupError: before any work (and leaving no new folder behind), for
            a bad model, device, input list or output folder, an output
            folder in use by another run, or a model that fails on the first
            input.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    world, device = start_world(config.device)
    folder: Optional[OutputFolder] = None
    try:
        plan, folder = _setup(config, device, world)
        outcome = _run_shard(plan, world)
        if world.distributed:
            dist.barrier()
        outcomes: list[_Outcome] = gather(world, outcome)
        failed = sum(len(o.failures) for o in outcomes)
        if world.rank == 0:
            summary = _finalize(plan, world, outcomes)
            if config.progress:
                print(
                    _final_line(
                        summary, plan.config.out,
                        str(plan.config.method.get("mode", "destroy")),
                    ),
                    file=sys.stderr,
                )
        if world.distributed:
            # No process may exit before rank 0 has written the summary: torchrun
            # stops every process as soon as one exits with an error.
            dist.barrier()
        # Under torchrun, rank 0 alone carries "some inputs failed".
        return 1 if failed and world.rank == 0 else 0
    finally:
        if folder is not None:
            folder.release()
        stop_world(world)
