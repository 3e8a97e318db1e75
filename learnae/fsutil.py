"""Crash-safe file writes shared by every package that persists state.

A write goes to a temporary file in the same directory, is fsynced, renamed
over the target and the directory is fsynced, so after ``kill -9`` or a power
cut the target holds either the old content or the new, never half of it.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir"]

_unique = itertools.count()  # next() is atomic under the GIL


def fsync_dir(directory: Path) -> None:
    """Make a rename or create in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically.

    Args:
        path: target file; its parent directories are created.
        data: the complete new content.
        mode: permission bits of the new file (e.g. ``0o600`` for secrets); the
            file is created with them, never briefly more open.
        durable: fsync the file and directory (turn off only for caches).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per call: two threads writing the same target must not share it
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{next(_unique)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)
