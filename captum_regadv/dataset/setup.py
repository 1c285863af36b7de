"""Setup: every check that can fail before any work, and the run's settings.

The settings fingerprint covers everything that changes the results: the
model (its file's hash; a factory's name and its ``--weights`` file's
hash), target, preprocessing (``--window``, the ``--preprocess`` factory's
name), method options, score,
package and torch versions, device (type and GPU name), input dtype, CPU
threads and batch size (reductions split differently across threads or
batch sizes change masks in the last bits). A record made with another
fingerprint is redone, so a resumed run never mixes settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..fileio import ImageReadError, LoadedImage, list_images, load_image, preprocess
from ..scores import class_score, resolve_target
from .config import ExplainConfig, SetupError, one_line
from .models import load_model, load_transform, model_dtype, model_identity
from .naming import output_names
from .outdir import check_out_dir

__all__ = ["Plan", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """What the run does: inputs, output names, model, and what the model takes."""

    files: list[str]
    names: list[str]
    model: torch.nn.Module
    device: torch.device
    config: ExplainConfig
    fingerprint: str
    settings: dict[str, Any]
    channels: int
    spatial: int


def _check_output(output: Any, config: ExplainConfig, shape: tuple[int, ...]) -> None:
    if not isinstance(output, Tensor) or output.dim() != 2 or output.shape[0] != 1:
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise SetupError(
            f"the model must return N x C scores for an input of shape {shape}, got {got}"
        )
    target = 0 if config.target == "predicted" else config.target
    try:
        class_score(output, resolve_target(target, output), config.score)
    except (ValueError, TypeError) as err:
        raise SetupError(f"--target/--score do not fit the model's output: {err}") from None


def _forward(model: torch.nn.Module, x: Tensor) -> Any:
    with torch.no_grad():
        return model(x)


def _converted(
    model: torch.nn.Module, image: LoadedImage, config: ExplainConfig, device: torch.device,
    have: int,
) -> Optional[tuple[Any, Tensor]]:
    """Without ``--channels``: the model's output on the image converted to 1 or 3 channels."""
    if config.preprocessing.channels is not None:
        return None
    for channels in (1, 3):
        if channels == have:
            continue
        try:
            prep = replace(config.preprocessing, channels=channels)
            x = preprocess(image, prep).tensor[None].to(device)
            return _forward(model, x), x
        except Exception:  # the model does not take this either
            continue
    return None


def probe(
    model: torch.nn.Module, files: Sequence[str], config: ExplainConfig, device: torch.device
) -> tuple[int, int]:
    """One forward pass on the first readable input: the model's (channels, spatial dims).

    When the model fails on that input and no ``--channels`` was given, the
    input converted to 1 or 3 channels is tried, so that a folder mixing gray
    and RGB images has the same outcome whatever its order: the images whose
    channels the model does not take are reported and skipped.
    """
    for path in files:
        try:
            image = load_image(path)
        except ImageReadError:
            continue
        try:
            x = preprocess(image, config.preprocessing).tensor[None].to(device)
        except ValueError as err:
            raise SetupError(f"the preprocessing fails on '{path}': {err}") from None
        try:
            output = _forward(model, x)
        except Exception as err:  # the user's model can fail in any way
            other = _converted(model, image, config, device, x.shape[1])
            if other is None:
                raise SetupError(
                    f"the model fails on an input of shape {tuple(x.shape)} (from '{path}'): "
                    f"{one_line(err)}"
                ) from err
            output, x = other
        _check_output(output, config, tuple(x.shape))
        return int(x.shape[1]), image.spatial
    return (config.preprocessing.channels or 1), 2


def _settings(
    config: ExplainConfig, model: str, device: torch.device, weights: Optional[str]
) -> dict[str, Any]:
    from .. import __version__

    prep = config.preprocessing
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "model": model,
        "weights": weights,
        "window": None if prep.window is None else list(prep.window),
        "preprocess": config.preprocess,
        "target": config.target,
        "scale": prep.scale,
        "mean": None if prep.mean is None else list(prep.mean),
        "std": None if prep.std is None else list(prep.std),
        "channels": prep.channels,
        "size": None if prep.size is None else list(prep.size),
        "bounds": None if prep.bounds is None else list(prep.bounds),
        "method": dict(sorted(config.method.items())),
        "score": config.score,
        "version": __version__,
        "torch": torch.__version__,
        "device": name,
        "dtype": str(prep.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "batch_size": config.batch_size,
    }


def make_plan(config: ExplainConfig, device: torch.device) -> Plan:
    """Every check that can fail before any work; creates nothing on disk."""
    bounds = config.preprocessing.bounds
    if bounds is not None and not bounds[0] < bounds[1]:
        raise SetupError(f"--bounds: LO must be below HI, got {bounds[0]:g} {bounds[1]:g}")
    out = os.path.abspath(config.out)
    try:
        files = list_images(config.inputs, exclude=[out])
    except FileNotFoundError as err:
        raise SetupError(str(err)) from None
    if not files:
        raise SetupError(f"no input images found in {' '.join(config.inputs)}")
    check_out_dir(out)
    model = load_model(config.model, device, config.weights)
    prep = replace(config.preprocessing, dtype=model_dtype(model))
    if config.preprocess is not None:
        prep = replace(prep, transform=load_transform(config.preprocess))
    config = replace(config, out=out, preprocessing=prep, method=dict(config.method))
    channels, spatial = probe(model, files, config, device)
    weights = config.weights
    identity = _settings(config, model_identity(config.model), device,
                         None if weights is None else model_identity(weights))
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return Plan(
        files, output_names(files), model, device, config, fingerprint,
        _settings(config, config.model, device, weights), channels, spatial,
    )
