"""The device table: throughput, memory, large images, bf16 autocast and torch.compile.

    python benchmarks/gpu.py [--device cuda] [--dry-run]

One table, one row per measurement, on the untrained benchmark CNN with
the default schedule (60 + 20 + 10 steps, 8 refinement candidates;
``search_steps=0``, so that every image runs the same passes):

* ``batch B``: B seeded 128x128 images explained in one call
  (``internal_batch_size=B``): passes per image (``last_diagnostics``),
  seconds per image, images per second, peak memory;
* ``single SxS`` and ``single SxS c2f``: one grayscale image of that side,
  plain and with ``coarse_to_fine=4``;
* ``batch 32 bf16/compile``: the batch-32 row again with the model's forward
  under ``torch.autocast(dtype=torch.bfloat16)`` and/or ``torch.compile``
  (the attribution itself stays in float32: the wrapper returns float32
  logits), each switch on and off; these rows are timed after one
  identical warm-up call (compilation excluded).

Peak memory is ``torch.cuda.max_memory_allocated`` per row on CUDA; on the
CPU it is the process's ``ru_maxrss`` so far (monotonic: an upper bound for
the row). ``--dry-run`` runs every row on the CPU with tiny sizes and steps
(for the tests; ``torch.compile`` then uses the ``eager`` backend).
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from _common import batch, model_on, parser, setup

from captum_regadv import RegularizedAdversarial


@dataclass(frozen=True)
class Config:
    """Sizes and schedule of one table."""

    size: int = 128
    batches: tuple[int, ...] = (1, 8, 32, 128)
    large: tuple[int, ...] = (2048, 4096)
    switch_batch: int = 32
    steps: int = 60
    phase2_steps: int = 20
    refine_steps: int = 10
    factor: int = 4
    compile_backend: str = "inductor"


DRY_RUN = Config(size=32, batches=(1, 2), large=(64, 128), switch_batch=2, steps=3,
                 phase2_steps=2, refine_steps=1, factor=2, compile_backend="eager")


@dataclass(frozen=True)
class Row:
    name: str
    images: int
    passes: float
    seconds: float
    peak_gib: float

    def cells(self) -> list[str]:
        return [self.name, f"{self.passes:.0f}", f"{self.seconds / self.images:.4f}",
                f"{self.images / self.seconds:.2f}", f"{self.peak_gib:.2f}"]


HEADER = ["measurement", "passes/image", "s/image", "images/s", "peak GiB"]


class Switched(torch.nn.Module):
    """The model's forward, optionally under bf16 autocast; float32 logits out."""

    def __init__(self, model: torch.nn.Module, device: torch.device, bf16: bool) -> None:
        super().__init__()
        self.model, self.device_type, self.bf16 = model, device.type, bf16
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(x).float()


def _peak(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(name: str, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            cfg: Config, *, chunk: Optional[int] = None, factor: Optional[int] = None,
            full_warmup: bool = False) -> Row:
    """One timed ``attribute`` call, after a small warm-up call (or, with
    ``full_warmup``, the same call: ``torch.compile`` compiles per shape)."""
    device = x.device
    explainer = RegularizedAdversarial(forward)
    kwargs = dict(target=1, bounds=(0.0, 1.0), steps=cfg.steps, phase2_steps=cfg.phase2_steps,
                  refine_steps=cfg.refine_steps, search_steps=0, internal_batch_size=chunk)
    if full_warmup:
        explainer.attribute(x, coarse_to_fine=factor, **kwargs)
    else:
        explainer.attribute(x[:1, ..., :64, :64], **{**kwargs, "steps": 2, "phase2_steps": 1})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    explainer.attribute(x, coarse_to_fine=factor, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    d = explainer.last_diagnostics
    assert d is not None
    return Row(name, x.shape[0], float(d.passes.float().mean()), seconds, _peak(device))


def build_table(device: torch.device, cfg: Config) -> list[Row]:
    # the batch shrinks as examples stop, chunks differ, and grad mode toggles
    # between the optimisation and the scoring passes: each is a recompile
    torch._dynamo.config.recompile_limit = 64  # type: ignore[attr-defined]
    model = model_on(device)
    rows = []
    for b in cfg.batches:
        rows.append(measure(f"batch {b}", model, batch(b, cfg.size, device), cfg, chunk=b))
    for side in cfg.large:
        x = batch(1, side, device)
        try:
            rows.append(measure(f"single {side}x{side}", model, x, cfg))
            rows.append(measure(f"single {side}x{side} c2f f={cfg.factor}", model, x, cfg,
                                factor=cfg.factor))
        except torch.cuda.OutOfMemoryError:
            rows.append(Row(f"single {side}x{side}: out of memory", 1, 0, float("nan"), 0))
    x = batch(cfg.switch_batch, cfg.size, device)
    for bf16 in (False, True):
        for compiled in (False, True):
            forward: torch.nn.Module = Switched(model, device, bf16)
            if compiled:
                forward = torch.compile(  # type: ignore[assignment]
                    forward, backend=cfg.compile_backend, dynamic=True
                )
            name = (f"batch {cfg.switch_batch} bf16 {'on' if bf16 else 'off'}, "
                    f"compile {'on' if compiled else 'off'}")
            rows.append(measure(name, forward, x, cfg, chunk=cfg.switch_batch,
                                full_warmup=True))
    return rows


def format_table(rows: list[Row]) -> str:
    cells = [HEADER] + [r.cells() for r in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(len(HEADER))]
    lines = ["| " + " | ".join(c[k].ljust(widths[k]) for k in range(len(c))) + " |"
             for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    p: argparse.ArgumentParser = parser(__doc__ or "")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (for the tests)")
    p.add_argument("--large", default=None, help="comma-separated sides of the single images")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device = "cpu"
    device = setup(args)
    cfg = DRY_RUN if args.dry_run else Config()
    if args.large:
        cfg = Config(**{**cfg.__dict__, "large": tuple(int(s) for s in args.large.split(","))})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device={device} ({name}) torch={torch.__version__} threads={torch.get_num_threads()} "
          f"schedule={cfg.steps}+{cfg.phase2_steps}+{cfg.refine_steps} "
          f"images {cfg.size}x{cfg.size}")
    print(format_table(build_table(device, cfg)), flush=True)


if __name__ == "__main__":
    main()
