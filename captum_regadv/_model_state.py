"""The caller's model comes back as it was: training-mode warnings and buffers.

A module in training mode (batch norm) updates its running statistics on
every forward call, and dropout makes every pass random; the methods and
metrics must leave the caller's model bit-identical and say when it is in
training mode.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

__all__ = ["preserve_buffers", "warn_if_training", "TRAINING_MODE_WARNING"]


TRAINING_MODE_WARNING = (
    "the model is in training mode: dropout and batch norm make the explanation "
    "random, let examples of a batch influence each other and make the check that "
    "the class was destroyed unreliable; call model.eval() first"
)


def _training_layers(module: torch.nn.Module) -> bool:
    """Whether a layer without sub-modules (the ones whose forward reads
    ``training``: dropout, batch norm) is in training mode. A wrapper module of
    the caller's, created in training mode around an ``eval()`` network, is not."""
    return any(m.training and next(m.children(), None) is None for m in module.modules())


def warn_if_training(forward_func: Callable[..., Any]) -> None:
    """Warn (never change it) when the model is in training mode."""
    module = _module_of(forward_func)
    if module is not None and _training_layers(module):
        warnings.warn(TRAINING_MODE_WARNING, UserWarning, stacklevel=4)


def _module_of(forward_func: Callable[..., Any]) -> Optional[torch.nn.Module]:
    module = forward_func if isinstance(forward_func, torch.nn.Module) else getattr(
        forward_func, "__self__", None
    )
    return module if isinstance(module, torch.nn.Module) else None


@contextlib.contextmanager
def preserve_buffers(forward_func: Callable[..., Any], *, warn: bool = False) -> Iterator[None]:
    """Restore the buffers (bit for bit) of every module in training mode that
    runs inside the block, and with ``warn`` warn when one the caller could not
    be warned about beforehand runs in training mode.

    A module in training mode (batch norm) updates its running statistics
    on every forward call; the caller's model must come back unchanged. The
    model's own modules (a ``torch.nn.Module`` or a bound method of one) are
    saved on entry; the modules a function reaches (one that closes over a
    model, ``lambda x: model(x)[0]``) are found by a forward pre-hook of this
    thread and saved before their first forward.
    """
    module = _module_of(forward_func)
    saved: dict[int, tuple[Tensor, Tensor]] = {}
    if module is not None and any(m.training for m in module.modules()):
        saved = {id(b): (b, b.detach().clone()) for b in module.buffers()}
    thread = threading.get_ident()
    warned = False

    def save_before_forward(layer: torch.nn.Module, args: Any) -> None:
        nonlocal warned
        if not layer.training or threading.get_ident() != thread:
            return
        for buffer in layer.buffers(recurse=False):
            if id(buffer) not in saved:
                saved[id(buffer)] = (buffer, buffer.detach().clone())
        if warn and not warned and next(layer.children(), None) is None:
            warned = True
            warnings.warn(TRAINING_MODE_WARNING, UserWarning, stacklevel=2)

    # a model passed as a module is known whole; only a function needs the hook
    # (a global hook takes every module call off PyTorch's fast path: ~3% here)
    handle = (
        torch.nn.modules.module.register_module_forward_pre_hook(save_before_forward)
        if module is None else None
    )
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()
        with torch.no_grad():
            for buffer, copy in saved.values():
                buffer.copy_(copy)
