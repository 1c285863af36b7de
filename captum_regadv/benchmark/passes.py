r"""Count the model passes a method spends: the currency of every Table 1 row.

A forward hook on the model counts the examples (rows of the first input)
of every call; a gradient hook on the call's output counts those rows again
when a backward pass goes through them. A row of a call is therefore either
a *forward+backward* pass (a gradient came back through it) or a
*forward-only* pass, whatever the method does with the output; nothing is
inferred from the method's own bookkeeping.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

__all__ = ["PassCount", "count_passes"]


@dataclass
class PassCount:
    """Model passes over a set of examples (totals, not per example).

    ``forward_backward``: rows of calls whose output a backward pass went
    through; ``forward_only``: rows of the other calls.
    """

    forward_backward: int = 0
    forward_only: int = 0

    def per_example(self, n: int) -> tuple[float, float]:
        """``(forward+backward, forward-only)`` passes per example of ``n``."""
        return self.forward_backward / n, self.forward_only / n

    def __add__(self, other: "PassCount") -> "PassCount":
        return PassCount(
            self.forward_backward + other.forward_backward, self.forward_only + other.forward_only
        )


def _rows(args: tuple[Any, ...]) -> int:
    first = args[0] if args else None
    if isinstance(first, (tuple, list)) and first:
        first = first[0]
    return int(first.shape[0]) if isinstance(first, Tensor) and first.dim() > 0 else 1


@contextlib.contextmanager
def count_passes(model: torch.nn.Module) -> Iterator[PassCount]:
    """Count the passes of ``model`` inside the ``with`` block.

    Example:
        >>> model = torch.nn.Linear(3, 2)
        >>> with count_passes(model) as count:
        ...     model(torch.rand(4, 3)).sum().backward()
        ...     with torch.no_grad():
        ...         _ = model(torch.rand(5, 3))
        >>> count.forward_backward, count.forward_only
        (4, 5)
    """
    count = PassCount()

    def on_forward(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        rows = _rows(args)
        count.forward_only += rows
        if isinstance(output, Tensor) and output.requires_grad:
            done = [False]  # a second backward through the same call counts once

            def on_backward(grad: Tensor) -> None:
                if not done[0]:
                    done[0] = True
                    count.forward_only -= rows
                    count.forward_backward += rows

            output.register_hook(on_backward)  # type: ignore[no-untyped-call]

    handle = model.register_forward_hook(on_forward)
    try:
        yield count
    finally:
        handle.remove()
