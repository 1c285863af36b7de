r"""Atomic file writing: a whole file or nothing.

Every writer writes a temporary file ``.<name>.<random>.regadv-tmp`` in the
target's folder, flushes and ``fsync``-s it, ``os.replace``-s it onto the
target and ``fsync``-s the folder. A process killed mid-write leaves at worst
such a hidden temporary file, which :func:`remove_temp_files` cleans up.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Callable, Iterable, Mapping, Optional

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = [
    "TEMP_SUFFIX",
    "write_bytes_atomic",
    "write_png_atomic",
    "write_npz_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "append_jsonl",
    "remove_temp_files",
]

TEMP_SUFFIX = ".regadv-tmp"



def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: str, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``write(file)`` all at once or not at all."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, _file_mode())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(folder)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    _write_atomic(path, lambda f: f.write(data))


def write_png_atomic(path: str, image: npt.NDArray[Any]) -> None:
    """Write a uint8 ``H x W`` (gray) or ``H x W x 3`` (RGB) array as PNG, atomically."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected uint8 H x W or H x W x 3, got {array.dtype} {array.shape}")
    _write_atomic(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def write_npz_atomic(path: str, arrays: Mapping[str, Any]) -> None:
    """Write named arrays as a compressed ``.npz``, atomically (readable without pickle)."""
    data = {k: np.asarray(v) for k, v in arrays.items()}
    _write_atomic(path, lambda f: np.savez_compressed(f, **data))  # type: ignore[arg-type]


def _json_bytes(obj: Any, indent: Optional[int]) -> bytes:
    return json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False).encode("utf-8")


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN/Inf refused), atomically."""
    _write_atomic(path, lambda f: f.write(_json_bytes(obj, 2) + b"\n"))


def write_jsonl_atomic(path: str, rows: Iterable[Any]) -> None:
    """Write one compact JSON line per row, atomically."""
    data = b"".join(_json_bytes(row, None) + b"\n" for row in rows)
    write_bytes_atomic(path, data)


def append_jsonl(path: str, row: Any) -> None:
    """Append one JSON line to ``path`` and ``fsync`` it.

    Not atomic across a crash: a kill mid-write can leave a torn last line,
    which readers should ignore; use :func:`write_jsonl_atomic` to rewrite
    the whole file when that matters.
    """
    with open(path, "ab") as f:
        f.write(_json_bytes(row, None) + b"\n")
        f.flush()
        os.fsync(f.fileno())


def remove_temp_files(root: str) -> int:
    """Delete the leftovers of interrupted atomic writes under ``root``; return how many."""
    removed = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed

