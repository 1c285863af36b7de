"""Processes: the device, and the torchrun process group (rank, size, gathering)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

from .config import SetupError, one_line

__all__ = ["World", "first_error", "gather", "resolve_device", "start_world", "stop_world"]

# Ranks that finish early wait at the final barrier for the slowest one.
DIST_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    distributed: bool = False


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(spec: Optional[str], local_rank: Optional[int] = None) -> torch.device:
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


def start_world(spec: Optional[str]) -> tuple[World, torch.device]:
    """Join the torchrun process group when launched by torchrun."""
    if not launched_by_torchrun():
        return World(), resolve_device(spec)
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = resolve_device(spec, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available():
        raise SetupError("launched by torchrun but torch.distributed is not available")
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=DIST_TIMEOUT)
    except Exception as err:  # any init failure is a setup error of this process
        raise SetupError(f"cannot start torch.distributed ({backend}): {one_line(err)}") from err
    return World(rank, size, True), device


def stop_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather(world: World, obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order."""
    if not world.distributed:
        return [obj]
    everything: list[Any] = [None] * world.size
    dist.all_gather_object(everything, obj)
    return everything


def first_error(world: World, error: Optional[str]) -> Optional[str]:
    """The same setup verdict on every process (the first failing rank's message)."""
    for rank, message in enumerate(gather(world, error)):
        if message is not None:
            return message if rank == 0 else f"rank {rank}: {message}"
    return None
