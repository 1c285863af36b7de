"""Output naming: where each input's outputs go under the output folder."""

from __future__ import annotations

import os
from pathlib import PurePath
from typing import Sequence

from .config import (
    MASK_SUFFIX,
    NPZ_SUFFIX,
    OVERLAY_SUFFIX,
    RESERVED,
    SLICES_SUFFIX,
    VOLUME_MASK_SUFFIX,
)

__all__ = ["output_names", "output_path", "outputs_of"]


def output_names(files: Sequence[str]) -> list[str]:
    """Unique output names: each path relative to the inputs' common folder (posix).

    A name whose first folder is one of the output folder's own files
    (``summary.json``, ``results.jsonl``, the lock file) gets that folder
    renamed with ``_`` appended (as often as needed to be unused), so that no
    input's outputs can take the place of the run's own files.

    Example:
        >>> output_names(["/data/a/x.png", "/data/b/x.png", "/data/b/c/y.dcm"])
        ['a/x.png', 'b/x.png', 'b/c/y.dcm']
        >>> output_names(["/d/summary.json/x.png", "/d/results.jsonl/y.png", "/d/z.png"])
        ['summary.json_/x.png', 'results.jsonl_/y.png', 'z.png']
    """
    if not files:
        return []
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    names = [PurePath(os.path.relpath(os.path.abspath(f), root)).as_posix() for f in files]
    reserved = {r.casefold() for r in RESERVED}
    used = {n.split("/")[0].casefold() for n in names}
    renamed: dict[str, str] = {}
    for k, name in enumerate(names):
        first, sep, rest = name.partition("/")
        if not sep or first.casefold() not in reserved:
            continue
        if first not in renamed:
            new = first + "_"
            while new.casefold() in used or new.casefold() in reserved:
                new += "_"
            used.add(new.casefold())
            renamed[first] = new
        names[k] = f"{renamed[first]}/{rest}"
    return names


def output_path(out: str, name: str) -> str:
    """The absolute path of ``name`` (posix, relative to ``out``)."""
    return os.path.join(out, *name.split("/"))


def outputs_of(name: str, spatial: int) -> dict[str, str]:
    """The outputs of an input (relative posix paths), the record excluded."""
    if spatial == 3:
        return {
            "mask": name + VOLUME_MASK_SUFFIX,
            "slices": name + SLICES_SUFFIX,
            "npz": name + NPZ_SUFFIX,
        }
    return {
        "mask": name + MASK_SUFFIX,
        "overlay": name + OVERLAY_SUFFIX,
        "npz": name + NPZ_SUFFIX,
    }
