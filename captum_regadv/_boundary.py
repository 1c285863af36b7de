"""Checks and conversions at the public boundary, shared by methods and metrics.

Every user-facing function validates its arguments here before any work, so
that bad input gives a ``ValueError``/``TypeError`` that names the argument.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from types import FrameType
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ._optimization import LoopSettings, OptimizerClass, short_memory_adam
from .perturbations import default_tv_dims

TensorOrTuple = Union[Tensor, tuple[Tensor, ...]]
BoundValue = Union[float, int, Tensor, None]
Bounds = Union[None, tuple[BoundValue, BoundValue], Sequence[Union[None, tuple[BoundValue, BoundValue]]]]
TvDims = Union[None, Sequence[int], Sequence[Sequence[int]]]


def as_tuple(inputs: TensorOrTuple, name: str = "inputs") -> tuple[Tensor, ...]:
    """Captum's input convention: one tensor or a tuple of tensors."""
    if isinstance(inputs, Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and len(inputs) > 0 and all(
        isinstance(t, Tensor) for t in inputs
    ):
        return tuple(inputs)
    raise TypeError(f"{name} must be a tensor or a non-empty tuple of tensors")


def check_inputs(
    inputs: tuple[Tensor, ...], name: str = "inputs", *, min_dim: int = 2
) -> int:
    """Floating, finite, batched alike, non-empty examples; returns the batch size.

    ``min_dim=1`` also accepts ``(N,)`` batches of scalars (the public methods
    and metrics lift them to ``N x 1`` with :mod:`captum_regadv._shapes`).
    """
    n = None
    for k, t in enumerate(inputs):
        label = name if len(inputs) == 1 else f"{name}[{k}]"
        if t.layout != torch.strided:
            raise TypeError(f"{label} must be a dense tensor, got layout {t.layout} (call .to_dense())")
        if not t.is_floating_point():
            raise TypeError(f"{label} must be a floating-point tensor, got {t.dtype}")
        if t.dim() < min_dim:
            raise ValueError(
                f"{label} must be a batch N x ... with at least {min_dim} dimension(s), "
                f"got shape {tuple(t.shape)}"
            )
        if t.shape[0] == 0:
            raise ValueError(f"{label} has an empty batch")
        if t[0].numel() == 0:
            raise ValueError(
                f"{label} has examples with no elements (shape {tuple(t.shape)})"
            )
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{label} contains NaN or Inf")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise ValueError(
                f"all {name} must have the same batch size, got {n} and {t.shape[0]}"
            )
    assert n is not None
    return n


def check_like(
    reference: tuple[Tensor, ...], other: tuple[Tensor, ...], name: str, ref_name: str = "inputs"
) -> None:
    """``other`` has the same number of tensors and shapes as ``reference``."""
    if len(other) != len(reference):
        raise ValueError(
            f"{name} has {len(other)} tensor(s) but {ref_name} has {len(reference)}"
        )
    for k, (r, o) in enumerate(zip(reference, other)):
        if o.shape != r.shape:
            raise ValueError(
                f"{name}[{k}] has shape {tuple(o.shape)}, expected {tuple(r.shape)} "
                f"(the shape of {ref_name}[{k}])"
            )


def format_additional_args(args: Any) -> tuple[Any, ...]:
    """Captum's convention: ``None``, one value, or a tuple of values."""
    if args is None:
        return ()
    if isinstance(args, tuple):
        return args
    return (args,)


def select_examples(args: tuple[Any, ...], index: Tensor, batch_size: int) -> tuple[Any, ...]:
    """Rows ``index`` of every tensor argument whose first dimension is the batch."""
    return tuple(
        a[index] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == batch_size else a
        for a in args
    )


def check_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    strict: bool = False,
    integer: bool = False,
) -> None:
    """A finite real (or int) number, at least (or above) ``minimum``; NumPy
    scalars count (``numpy.int64`` as an int), booleans do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # NumPy's bool is no Real
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if integer and not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        if strict and not number > minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value}")
        if not strict and not number >= minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_optional_int(value: Any, name: str, minimum: int = 1) -> None:
    if value is not None:
        check_number(value, name, minimum=minimum, integer=True)


def resolve_tv_dims(tv_dims: TvDims, inputs: tuple[Tensor, ...]) -> tuple[tuple[int, ...], ...]:
    """One tuple of spatial dims per input tensor (default: all dims after N, C)."""
    if tv_dims is None:
        return tuple(default_tv_dims(t.dim()) for t in inputs)
    if not isinstance(tv_dims, (tuple, list)):
        raise TypeError(
            "tv_dims must be None, a sequence of ints such as (2, 3), or one such "
            f"sequence per input, got {type(tv_dims).__name__}"
        )
    items = list(tv_dims)
    if all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in items):
        per_input: list[Sequence[int]] = [items] * len(inputs)  # type: ignore[list-item]
    elif all(isinstance(d, (tuple, list)) for d in items):
        if len(items) != len(inputs):
            raise ValueError(
                f"tv_dims has {len(items)} entries but there are {len(inputs)} input tensors"
            )
        per_input = items  # type: ignore[assignment]
    else:
        raise TypeError("tv_dims must be None, a sequence of ints, or one such sequence per input")
    out = []
    for k, (dims, t) in enumerate(zip(per_input, inputs)):
        resolved: list[int] = []
        for d in dims:
            if not isinstance(d, numbers.Integral) or isinstance(d, bool):
                raise TypeError(f"tv_dims entries must be ints, got {type(d).__name__}")
            if not -t.dim() <= d < t.dim() or d % t.dim() == 0:
                raise ValueError(
                    f"tv_dims entry {d} is not a non-batch dimension of input {k} "
                    f"(shape {tuple(t.shape)})"
                )
            resolved.append(int(d) % t.dim())
        out.append(tuple(sorted(set(resolved))))
    return tuple(out)


def _bound_tensor(value: BoundValue, like: Tensor, name: str) -> Tensor | None:
    """The bound as a tensor that broadcasts to ``like`` (not expanded: no copy)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float, a tensor or None, got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    try:
        shape = torch.broadcast_shapes(t.shape, like.shape)  # type: ignore[no-untyped-call]
        if t.dim() > like.dim() or tuple(shape) != tuple(like.shape):
            raise RuntimeError
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to the input shape "
            f"{tuple(like.shape)}"
        ) from None
    t = t.reshape((1,) * (like.dim() - t.dim()) + tuple(t.shape))
    if t.shape[0] != like.shape[0]:
        t = t.expand((like.shape[0],) + tuple(t.shape[1:])) if t.shape[0] != 1 else t
    return t


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(
        v is None or isinstance(v, (int, float, Tensor)) and not isinstance(v, bool)
        for v in value
    )


def resolve_bounds(bounds: Bounds, inputs: tuple[Tensor, ...]) -> tuple[tuple[Tensor, Tensor], ...]:
    """Lower and upper bound tensors that broadcast to each input's shape.

    Each bound has the input's number of dims and a first dim of 1 (shared by
    the batch) or ``N`` (per example), so ``bound[rows]`` is only needed in the
    latter case (see :func:`bound_rows`).

    ``bounds`` is ``None`` (each example's own min and max, per input tensor),
    one pair ``(low, high)`` of floats or broadcastable tensors for every
    input, or a sequence with one such pair (or ``None``) per input tensor.
    A ``None`` inside a pair means the example's own min (or max).
    """
    if bounds is None:
        pairs: list[Any] = [None] * len(inputs)
    elif _is_pair(bounds) and not (
        len(inputs) == 2 and all(p is None or _is_pair(p) for p in bounds)  # type: ignore[union-attr]
    ):
        pairs = [bounds] * len(inputs)
    elif isinstance(bounds, (tuple, list)) and all(p is None or _is_pair(p) for p in bounds):
        if len(bounds) != len(inputs):
            raise ValueError(
                f"bounds has {len(bounds)} pairs but there are {len(inputs)} input tensors"
            )
        pairs = list(bounds)
    else:
        raise TypeError(
            "bounds must be None, a pair (low, high), or one pair per input tensor"
        )
    out = []
    for k, (pair, t) in enumerate(zip(pairs, inputs)):
        label = "bounds" if len(inputs) == 1 else f"bounds[{k}]"
        low_v, high_v = (None, None) if pair is None else pair
        low = _bound_tensor(low_v, t, f"{label} lower")
        high = _bound_tensor(high_v, t, f"{label} upper")
        flat = t.detach().flatten(1)
        if low is None:
            low = flat.min(1).values.view((-1,) + (1,) * (t.dim() - 1))
        if high is None:
            high = flat.max(1).values.view((-1,) + (1,) * (t.dim() - 1))
        if bool((low > high).any()):
            raise ValueError(f"{label}: lower bound exceeds upper bound")
        if bool(((t < low) | (t > high)).any()):
            raise ValueError(
                f"inputs lie outside {label}; widen the bounds or clip the inputs (inside "
                "NoiseTunnel, whose noise leaves any fixed range, pass bounds=None: each "
                "noisy example's own min and max)"
            )
        out.append((low, high))
    room = torch.stack([
        (high - low).expand_as(t).flatten(1).amax(1) > 0 for t, (low, high) in zip(inputs, out)
    ]).any(0)
    if not bool(room.all()):
        stuck = torch.nonzero(~room).flatten()
        message = (
            f"bounds leave no room to change {stuck.numel()} of {room.numel()} example(s) "
            f"{stuck[:4].tolist()}{' ...' if stuck.numel() > 4 else ''}: their lower and "
            "upper bounds are equal everywhere (bounds=None takes each example's own min "
            "and max, which are equal for a constant example or a (N,) batch of scalars); "
            "pass bounds=(low, high)"
        )
        if not bool(room.any()):
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=4)
    return tuple(out)


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def resolve_optimizer(optimizer: object) -> OptimizerClass:
    """``optimizer`` checked, ``None`` replaced by :func:`short_memory_adam`."""
    if optimizer is None:
        return short_memory_adam
    message = (
        "optimizer must be a torch.optim.Optimizer class or a factory called as "
        "optimizer(params, lr=...) that returns one"
    )
    if isinstance(optimizer, type):
        if not issubclass(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{message}, got the class {optimizer.__name__}")
        return optimizer  # type: ignore[return-value]
    if not callable(optimizer):
        raise TypeError(f"{message}, got {type(optimizer).__name__}")
    try:
        made = optimizer([torch.zeros(1, requires_grad=True)], lr=1e-3)
    except Exception as error:  # the factory's own error, re-raised naming the argument
        raise TypeError(f"{message}; calling it on a test parameter failed: {error!r}") from error
    if not isinstance(made, torch.optim.Optimizer):
        raise TypeError(f"{message}; it returned {type(made).__name__}")
    return optimizer  # type: ignore[return-value]


def check_step_size(value: float, name: str, inputs: tuple[Tensor, ...]) -> None:
    """``value`` (a step size) is finite in every input's dtype."""
    for t in inputs:
        if not value < torch.finfo(t.dtype).max:
            raise ValueError(
                f"{name}={value} overflows the inputs' dtype {t.dtype} "
                f"(largest finite value {torch.finfo(t.dtype).max:g})"
            )


def reject_inside_noise_tunnel(return_perturbed: bool, method: str) -> None:
    """``return_perturbed=True`` cannot be averaged by ``captum.attr.NoiseTunnel``."""
    if not return_perturbed:
        return
    from captum.attr import NoiseTunnel

    # attribute's callers (NoiseTunnel calls attribute.__wrapped__ directly)
    frame: Optional[FrameType] = sys._getframe(2)
    inside = False
    for _ in range(3):
        if frame is None:
            break
        inside = inside or isinstance(frame.f_locals.get("self"), NoiseTunnel)
        frame = frame.f_back
    if inside:
        raise ValueError(
            f"return_perturbed=True is not supported inside NoiseTunnel({method}): "
            "NoiseTunnel would average the perturbed inputs J of different noisy "
            "inputs as if they were attributions; call attribute(noisy_inputs, ..., "
            "return_perturbed=True) on each noisy input instead"
        )


def loop_settings(
    *,
    optimizer: object,
    lr: float,
    steps: int,
    patience: Optional[int],
    rel_tol: float,
    internal_batch_size: Optional[int],
) -> LoopSettings:
    """The public optimisation arguments, checked (errors name them), as one
    :class:`LoopSettings`; ``optimizer=None`` is :func:`short_memory_adam`."""
    check_number(steps, "steps", minimum=1, integer=True)
    check_number(lr, "lr", minimum=0.0, strict=True)
    check_number(rel_tol, "rel_tol", minimum=0.0)
    check_optional_int(patience, "patience")
    check_optional_int(internal_batch_size, "internal_batch_size")
    return LoopSettings(
        resolve_optimizer(optimizer), float(lr), steps, patience, float(rel_tol), internal_batch_size
    )


def bound_rows(bound: Tensor, rows: Tensor) -> Tensor:
    """The rows ``rows`` of a bound from :func:`resolve_bounds` (shared bounds as they are)."""
    return bound if bound.shape[0] == 1 else bound[rows]
