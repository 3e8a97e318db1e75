"""One peer per data dir: an exclusive ``flock`` on ``<data-dir>/peer.lock``.

The lock dies with the process (``kill -9`` included), so a crashed peer never
leaves a stale lock behind; the file keeps the pid of the last holder, which is
how ``learnae peer status`` tells a running peer from a stopped one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from learnae.errors import UserError

__all__ = ["DataDirLock", "LOCK_FILE", "holder_pid"]

LOCK_FILE = "peer.lock"


class DataDirLock:
    """Hold ``<data-dir>/peer.lock`` for the life of a ``with`` block.

    Raises:
        UserError: another live process holds the lock.
    """

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder_pid(self.path.parent)
            raise UserError(
                f"data dir {self.path.parent} is in use by another peer (pid {pid}); "
                "stop it or pass another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def holder_pid(data_dir: Path) -> int | None:
    """The pid of the peer running on ``data_dir``, or ``None`` if none is."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
