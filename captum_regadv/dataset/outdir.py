"""The output folder: created only once every check passed, and locked for one run.

Two runs on one folder would delete each other's temporary files and report
each other's inputs as failed, so a run holds an advisory lock
(``fcntl.flock``) on ``OUT/.captum-regadv.lock`` from setup to exit; a
second run stops at setup with exit status 2 and a message naming the
holder's process id. Under torchrun rank 0 holds it for all processes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Optional

from ..fileio import TEMP_SUFFIX
from .config import LOCK_FILE, RESULTS_FILE, SUMMARY_FILE, SetupError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputFolder", "check_out_dir", "open_out_dir"]


def check_out_dir(out: str) -> None:
    """The checks that need no folder: not a file, its own files not folders."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise SetupError(f"output folder '{out}' exists and is not a folder")
    for own in (SUMMARY_FILE, RESULTS_FILE):
        if os.path.isdir(os.path.join(out, own)):
            raise SetupError(
                f"'{os.path.join(out, own)}' is a folder, so the run cannot write its "
                f"{own} (an older version put an input folder named {own} there); "
                "move it away or use another --out"
            )


class OutputFolder:
    """The created (if needed), writable and locked output folder of this run."""

    def __init__(self, out: str, created: list[str], lock: Optional[IO[str]]) -> None:
        self.out = out
        self.created = created
        self._lock = lock

    def release(self) -> None:
        """Drop the lock (the lock file stays: removing it would race a waiting run)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove_if_created(self) -> None:
        """Setup failed: remove the folders this run created (they hold only the lock)."""
        self.release()
        if self.created:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.out, LOCK_FILE))
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _missing_folders(out: str) -> list[str]:
    missing = []
    folder = out
    while not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return list(reversed(missing))


def _lock(out: str) -> Optional[IO[str]]:
    if fcntl is None:
        return None
    f = open(os.path.join(out, LOCK_FILE), "a+", encoding="utf-8")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise SetupError(
            f"another captum-regadv run (process {holder}) is using output folder "
            f"'{out}'; wait for it to finish, or use another --out"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def open_out_dir(out: str) -> OutputFolder:
    """Create ``out`` if needed, check it is writable, and lock it.

    On failure nothing this call created is left behind.

    Raises:
        SetupError: not a folder, not writable, or locked by another run.
    """
    check_out_dir(out)
    created = _missing_folders(out)
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        OutputFolder(out, created, None).remove_if_created()
        raise SetupError(f"cannot write to output folder '{out}': {err.strerror or err}") from None
    try:
        lock = _lock(out)
    except (SetupError, OSError) as err:
        OutputFolder(out, created, None).remove_if_created()
        if isinstance(err, SetupError):
            raise
        raise SetupError(f"cannot lock output folder '{out}': {err}") from None
    return OutputFolder(out, created, lock)
