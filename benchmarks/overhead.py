"""Overhead of RegularizedAdversarial over a bare loop that replays its model calls.

    python benchmarks/overhead.py [--model tiny|conv|both] [--n 16] [--conv-n 4] [--repeats 5]

The explained examples are the first ``--n`` lesion validation positives of
the trained benchmark model (from the cache, or trained once, about a
minute), so every part of the default call runs: phases 1 and 2, the
refinement with its component pruning, the outcome check. Two models:

* ``tiny``: the trained ``BenchmarkCNN`` itself (about 25k weights, 128x128);
* ``conv``: the same network behind a 1x1 lift to 32 channels and a residual
  block of two 3x3 convolutions at full resolution, whose second convolution
  starts at zero and whose channels are averaged back, so the function (and
  so the explanation) is unchanged while a pass costs that of a
  convolution-heavy network (about 12x the tiny one on one CPU thread).

One call of ``attribute`` (package defaults) is recorded with a forward
hook: the input shape of every call of the model and whether gradients were
enabled. The bare loop then replays exactly those calls in order:
grad-enabled calls as forward + backward w.r.t. the input + an Adam step,
the others as forward passes under ``torch.no_grad()``, with the same batch
sizes. Both are timed side by side in interleaved rounds after one warm-up
each; the ratio attribute() / replay is the overhead (goal <= 1.05).
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch
from _common import parser, round_times, setup
from torch import nn

from captum_regadv import RegularizedAdversarial
from captum_regadv.benchmark import TrainConfig, load_or_train, predict_proba


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, padding=1)
        self.b = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.b.weight)
        assert self.b.bias is not None
        nn.init.zeros_(self.b.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.b(torch.relu(self.a(x)))
        return out


class ConvHeavy(nn.Module):
    """``head(stem(x))``: full-resolution residual blocks (identity at start) before
    a trained network, so the function is the trained one and the cost is not."""

    def __init__(self, head: nn.Module, channels: int = 32, blocks: int = 1) -> None:
        super().__init__()
        self.lift = nn.Conv2d(1, channels, 1, bias=False)
        nn.init.ones_(self.lift.weight)  # every channel starts as x
        self.blocks = nn.Sequential(*[_Residual(channels) for _ in range(blocks)])
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.blocks(self.lift(x)).mean(1, keepdim=True))
        return out


def lesion_positives(n: int) -> tuple[nn.Module, torch.Tensor]:
    config = TrainConfig("lesions")
    model, _ = load_or_train(config)
    val = config.val_data()
    probs = predict_proba(model, val.images)
    chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:n]
    return model.eval(), val.images[chosen]


def record_calls(model: nn.Module, run: Callable[[], object]) -> list[tuple[tuple[int, ...], bool]]:
    """The input shape and grad mode of every call of ``model`` during ``run()``."""
    calls: list[tuple[tuple[int, ...], bool]] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: object) -> None:
        calls.append((tuple(args[0].shape), torch.is_grad_enabled()))

    handle = model.register_forward_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return calls


def replay(
    model: nn.Module, x: torch.Tensor, calls: list[tuple[tuple[int, ...], bool]]
) -> Callable[[], None]:
    """The bare loop: ``calls`` replayed in order on rows of ``x``."""

    def rows(shape: tuple[int, ...]) -> torch.Tensor:
        index = torch.arange(shape[0], device=x.device) % x.shape[0]
        return x[index].reshape(shape).clone()

    def run() -> None:
        leaves: dict[tuple[int, ...], tuple[torch.Tensor, torch.optim.Optimizer]] = {}
        for shape, grad in calls:
            if not grad:
                with torch.no_grad():
                    torch.softmax(model(rows(shape)), 1)
                continue
            if shape not in leaves:
                leaf = rows(shape).requires_grad_(True)
                leaves[shape] = (leaf, torch.optim.Adam([leaf], lr=0.005))
            leaf, optimizer = leaves[shape]
            (g,) = torch.autograd.grad(torch.softmax(model(leaf), 1)[:, 1].sum(), [leaf])
            leaf.grad = g
            optimizer.step()

    return run


def measure(name: str, model: nn.Module, x: torch.Tensor, repeats: int,
            device: torch.device) -> None:
    explainer = RegularizedAdversarial(model)

    def ours() -> None:
        explainer.attribute(x, target=1, bounds=(0.0, 1.0))

    calls = record_calls(model, ours)
    grad_calls = sum(1 for _, g in calls if g)
    rows_fwd = sum(s[0] for s, g in calls if not g)
    d = explainer.last_diagnostics
    assert d is not None
    bare = replay(model, x, calls)
    times = round_times([bare, ours], repeats, device)
    t_bare, t_ours = (min(t[i] for t in times) for i in (0, 1))
    ratios = [t[1] / t[0] for t in times]
    print(f"[{name}] {sum(p.numel() for p in model.parameters())} weights; batch "
          f"{tuple(x.shape)}; recorded {len(calls)} model calls ({grad_calls} with gradients, "
          f"{len(calls) - grad_calls} without, {rows_fwd} rows); last_diagnostics: median "
          f"{int(d.passes.median())} forward+backward, {int(d.forward_passes.median())} forward "
          f"passes per example")
    print(f"[{name}] replay of the same calls: {t_bare:.3f} s   attribute(): {t_ours:.3f} s   "
          f"overhead ratio (best of each): {t_ours / t_bare:.3f}   per round: "
          f"{', '.join(f'{r:.3f}' for r in ratios)} (median {statistics.median(ratios):.3f})")


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--model", choices=("tiny", "conv", "both"), default="both")
    p.add_argument("--n", type=int, default=16, help="examples (tiny model)")
    p.add_argument("--conv-n", type=int, default=4, help="examples (convolution-heavy model)")
    p.set_defaults(repeats=5)
    args = p.parse_args()
    device = setup(args)
    tiny, x = lesion_positives(args.n)
    tiny, x = tiny.to(device), x.to(device)
    print(f"device={device} threads={torch.get_num_threads()} repeats={args.repeats}")
    if args.model in ("tiny", "both"):
        measure("tiny", tiny, x, args.repeats, device)
    if args.model in ("conv", "both"):
        torch.manual_seed(0)
        heavy = ConvHeavy(tiny).to(device).eval()
        measure("conv", heavy, x[:args.conv_n], args.repeats, device)


if __name__ == "__main__":
    main()
