"""Loading the user's model: TorchScript, ``torch.export`` (``.pt2``) or a factory."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import os
import re
import sys
from typing import Any, Iterator, cast

import torch

from .config import SetupError, one_line

__all__ = ["load_model"]

_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


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
            raise SetupError(f"cannot load --model {spec}: {one_line(err)}") from err
        if not callable(obj):
            raise SetupError(f"--model {spec}: {attribute} is not callable")
        try:
            return obj()
        except Exception as err:  # the user's factory can fail in any way
            raise SetupError(f"--model {spec} failed: {one_line(err)}") from err


def _load_torchscript(path: str, device: torch.device) -> torch.nn.Module:
    try:
        model = torch.jit.load(path, map_location=device)  # type: ignore[no-untyped-call]
    except Exception as err:  # torch raises RuntimeError, ValueError, zip errors...
        raise SetupError(
            f"cannot load TorchScript model '{path}' (save it with torch.jit.save, or "
            f"torch.export.save as .pt2): {one_line(err)}"
        ) from err
    model.eval()
    return cast(torch.nn.Module, model)


def _load_exported(path: str, device: torch.device) -> torch.nn.Module:
    try:
        module = torch.export.load(path).module().to(device)
    except Exception as err:  # torch raises many kinds of errors here
        raise SetupError(
            f"cannot load exported program '{path}' (save it with torch.export.save): "
            f"{one_line(err)}"
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


def model_identity(spec: str) -> str:
    """What the settings fingerprint records of the model: its file's hash or the spec."""
    if not os.path.isfile(spec):
        return spec
    digest = hashlib.sha256()
    with open(spec, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32
