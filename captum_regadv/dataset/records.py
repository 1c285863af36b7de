"""Writing an input's outputs (the record last) and finding complete ones."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from ..fileio import (
    mask_to_original,
    render_overlay,
    render_slices,
    write_bytes_atomic,
    write_json_atomic,
    write_nifti_atomic,
    write_npz_atomic,
    write_png_atomic,
)
from .config import RECORD_SUFFIX
from .explain import Explained, Item, metric_name
from .naming import output_path, outputs_of
from .setup import Plan

__all__ = ["complete_record", "write_item"]


def _numpy(t: Tensor) -> np.ndarray[Any, Any]:
    return (t if t.dtype in (torch.float32, torch.float64) else t.float()).numpy()


def _write_pictures(
    out: str, outputs: dict[str, str], item: Item, mask: np.ndarray[Any, Any]
) -> None:
    """The mask and its picture: PNGs for an image; NIfTI and slices for a volume."""
    image = item.image
    if image.spatial == 3:
        affine = image.affine if image.affine is not None else np.eye(4)
        write_nifti_atomic(output_path(out, outputs["mask"]), mask, affine)
        write_bytes_atomic(
            output_path(out, outputs["slices"]),
            render_slices(image.pixels, mask, affine, spacing=image.spacing),
        )
        return
    flat = mask if mask.ndim == 2 else np.asarray(mask.any(axis=2), dtype=np.uint8)
    write_png_atomic(output_path(out, outputs["mask"]), flat * np.uint8(255))
    write_png_atomic(output_path(out, outputs["overlay"]), render_overlay(image.pixels, flat))


def write_item(plan: Plan, item: Item, result: Explained) -> dict[str, Any]:
    """Write the input's outputs, the record last; return the record."""
    out = plan.config.out
    base = output_path(out, item.name)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    outputs = outputs_of(item.name, item.image.spatial)
    mask = mask_to_original(result.mask, item.image.pixels.shape)
    metric = metric_name(plan.config)
    _write_pictures(out, outputs, item, mask)
    arrays: dict[str, Any] = {
        "mask": mask,
        "mask_model": result.mask.to(torch.uint8).numpy(),
        "input": _numpy(result.inputs),
        "perturbed": _numpy(result.perturbed),
        "target": np.int64(result.target),
        "score_before": np.float64(result.score_before),
        "score_after": np.float64(result.score_after),
    }
    if item.image.affine is not None:
        arrays["affine"] = item.image.affine
    if item.image.spacing is not None:
        arrays["spacing"] = np.asarray(item.image.spacing, dtype=np.float64)
    arrays.update({f"{metric}_{c}": np.float64(v) for c, v in result.ape.items()})
    write_npz_atomic(output_path(out, outputs["npz"]), arrays)
    record = {
        "input": item.path,
        "name": item.name,
        "outputs": outputs,
        "shape": list(item.image.pixels.shape),
        "spacing": None if item.image.spacing is None else list(item.image.spacing),
        "model_input_shape": list(result.inputs.shape),
        "target": result.target,
        "score_before": result.score_before,
        "score_after": result.score_after,
        metric: result.ape,
        "passes": result.passes,
        "forward_passes": result.forward_passes,
        "attempts": result.attempts,
        "weight_search": result.attempts > 1,
        "mask_fraction": result.mask_fraction,
        "large_mask": result.large_mask,
        "not_destroyed": result.not_destroyed,
        "target_not_predicted": result.target_not_predicted,
        "seconds": result.seconds,
        "fingerprint": plan.fingerprint,
    }
    write_json_atomic(base + RECORD_SUFFIX, record)
    return record


def complete_record(plan: Plan, index: int) -> Optional[dict[str, Any]]:
    """The input's record if its outputs are complete and made with these settings."""
    out = plan.config.out
    base = output_path(out, plan.names[index])
    try:
        with open(base + RECORD_SUFFIX, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != plan.fingerprint:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not all(
        isinstance(p, str) and os.path.isfile(output_path(out, p)) for p in outputs.values()
    ):
        return None
    return record
