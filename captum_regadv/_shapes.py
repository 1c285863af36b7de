"""Batches of scalars: ``(N,)`` inputs are explained as ``N x 1``.

Captum accepts inputs of shape ``(N,)`` (one scalar feature per example).
The methods and metrics lift such a tensor to ``N x 1`` for their own work,
call the forward function with the ``(N,)`` view it expects, and return
attributions and perturbed inputs as ``(N,)`` again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

__all__ = ["Lifted", "lift_scalars", "take_rows"]


def take_rows(values: Tensor, rows: Tensor) -> Tensor:
    """``values[rows]`` for increasing indices ``rows``; ``values`` itself, without a
    copy, when ``rows`` is the whole batch."""
    return values if rows.numel() == values.shape[0] else values[rows]


@dataclass(frozen=True)
class Lifted:
    """Inputs with every ``(N,)`` tensor viewed as ``N x 1`` (``flags`` marks them)."""

    inputs: tuple[Tensor, ...]
    flags: tuple[bool, ...]

    @property
    def any(self) -> bool:
        return any(self.flags)

    def forward(self, forward_func: Callable[..., Any]) -> Callable[..., Any]:
        """``forward_func`` called with the lifted tensors viewed back as ``(N,)``."""
        if not self.any:
            return forward_func
        count = len(self.flags)
        flags = self.flags

        def lowered(*args: Any) -> Any:
            inputs = tuple(
                t.reshape(-1) if flag else t for t, flag in zip(args[:count], flags)
            )
            return forward_func(*inputs, *args[count:])

        return lowered

    def lower(self, values: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Results shaped like the lifted inputs, back to the caller's shapes."""
        return tuple(v.reshape(-1) if flag else v for v, flag in zip(values, self.flags))

    def lift_like(self, values: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Tensors shaped like the caller's inputs (e.g. perturbed inputs), lifted."""
        if len(values) != len(self.flags):
            return values  # the caller's length check reports it
        return tuple(
            v.unsqueeze(1) if flag and v.dim() == 1 else v for v, flag in zip(values, self.flags)
        )


def lift_scalars(inputs: tuple[Tensor, ...]) -> Lifted:
    """View every 1-D ``(N,)`` tensor of ``inputs`` as ``N x 1``."""
    flags = tuple(t.dim() == 1 for t in inputs)
    return Lifted(tuple(t.unsqueeze(1) if f else t for t, f in zip(inputs, flags)), flags)
