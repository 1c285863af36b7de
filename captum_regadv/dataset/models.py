"""Loading the user's model (TorchScript, ``torch.export`` ``.pt2``, or a factory
plus an optional state dict) and the user's preprocessing transform (a factory)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import os
import re
import sys
from typing import Any, Callable, Iterator, Mapping, Optional, cast

import torch

from .config import SetupError, one_line

__all__ = ["load_model", "load_transform"]

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


def _call_factory(spec: str, option: str = "--model") -> Any:
    """Import ``package.module:factory`` and call it (errors name ``option``)."""
    module_name, _, attribute = spec.partition(":")
    with _cwd_importable():
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                obj = getattr(obj, part)
        except Exception as err:  # an import can fail in any way
            raise SetupError(f"cannot load {option} {spec}: {one_line(err)}") from err
        if not callable(obj):
            raise SetupError(f"{option} {spec}: {attribute} is not callable")
        try:
            return obj()
        except Exception as err:  # the user's factory can fail in any way
            raise SetupError(f"{option} {spec} failed: {one_line(err)}") from err


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _load_weights(model: torch.nn.Module, spec: str, path: str, device: torch.device) -> None:
    """Load a state dict into the factory's model, strictly, with a clear error."""
    if not os.path.isfile(path):
        raise SetupError(f"--weights '{path}' does not exist")
    try:
        state: Any = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # pickle, zip and torch errors
        raise SetupError(
            f"cannot load --weights '{path}' (save it with torch.save(model.state_dict(), "
            f"path)): {one_line(err)}"
        ) from err
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise SetupError(
            f"--weights '{path}' holds a {type(state).__name__}, not a state dict (names to "
            "tensors); save it with torch.save(model.state_dict(), path)"
        )
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_listed(shapes)}")
    if problems:
        raise SetupError(f"--weights '{path}' does not fit --model {spec}: {'; '.join(problems)}")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as err:  # e.g. dtypes torch cannot copy
        raise SetupError(f"--weights '{path}' cannot be loaded: {one_line(err)}") from err


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


def load_model(
    spec: str, device: torch.device, weights: Optional[str] = None
) -> torch.nn.Module:
    """Load the model: a TorchScript file, a ``torch.export`` ``.pt2`` file, or
    ``package.module:factory``, with ``weights`` (a state dict saved with
    ``torch.save(model.state_dict(), path)``) loaded into the factory's model.

    The returned module is this process's own instance, on ``device``, in
    eval mode (export the model in eval mode), with gradients of its
    parameters switched off.

    Raises:
        SetupError: the file is missing or cannot be loaded, the factory
            cannot be imported or called, or it returns no ``nn.Module``;
            ``weights`` is given with a model file, cannot be read, is no
            state dict, or does not fit the model (missing or unexpected
            keys, shape mismatches: all named).
    """
    if weights is not None and not _FACTORY.fullmatch(spec):
        raise SetupError(
            "--weights loads a state dict into a package.module:factory model; a "
            "TorchScript or .pt2 file carries its own weights"
        )
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
        if weights is not None:
            _load_weights(made, spec, weights, device)
        model = made.to(device).eval()
    else:
        raise SetupError(
            f"model '{spec}' is neither an existing TorchScript/.pt2 file nor "
            "package.module:factory"
        )
    for parameter in model.parameters():  # ScriptModules have no requires_grad_()
        parameter.requires_grad_(False)
    return model


def load_transform(spec: str) -> Callable[[torch.Tensor], Any]:
    """The user's preprocessing: ``package.module:factory`` returning a callable
    (for example a ``monai.transforms.Compose``).

    Raises:
        SetupError: ``spec`` is no ``package.module:factory``, the factory
            cannot be imported or called, or it returns no callable.
    """
    if not _FACTORY.fullmatch(spec):
        raise SetupError(
            f"--preprocess '{spec}' is not package.module:factory (a function returning "
            "a transform, e.g. a monai.transforms.Compose)"
        )
    made = _call_factory(spec, "--preprocess")
    if not callable(made):
        raise SetupError(
            f"--preprocess {spec} returned {type(made).__name__}, expected a callable transform"
        )
    return cast(Callable[[torch.Tensor], Any], made)


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
