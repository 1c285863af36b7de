"""Shared set-up of the speed benchmarks: the benchmark CNN (untrained weights are
enough for timing) and a seeded batch, on the requested device."""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from captum_regadv.benchmark.model import BenchmarkCNN


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def model_on(device: torch.device, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return BenchmarkCNN().to(device).eval()


def batch(n: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g).to(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def round_times(
    fns: list[Callable[[], object]], repeats: int, device: torch.device
) -> list[list[float]]:
    """Wall times of each function in each of ``repeats`` rounds, run
    interleaved (a, b, a, b, ...) after one warm-up call each, so that load
    from other processes hits both alike: ``times[round][function]``."""
    for fn in fns:
        fn()
    return [[_timed(fn, device) for fn in fns] for _ in range(repeats)]


def best_times(
    fns: list[Callable[[], object]], repeats: int, device: torch.device
) -> list[float]:
    """Best wall time of each function over ``repeats`` interleaved rounds."""
    times = round_times(fns, repeats, device)
    return [min(t[k] for t in times) for k in range(len(fns))]


def bare_loop(model: torch.nn.Module, x: torch.Tensor, steps: int) -> Callable[[], None]:
    """K forward+backward passes w.r.t. the input, with an Adam step: the floor."""

    def run() -> None:
        j = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([j], lr=0.002)
        for _ in range(steps):
            loss = torch.softmax(model(j), 1)[:, 1].sum()
            (g,) = torch.autograd.grad(loss, [j])
            j.grad = g
            opt.step()

    return run
