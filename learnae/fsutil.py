"""Crash-safe file writes, and the one place that prepares where a command writes.

A write goes to a temporary file in the same directory, is fsynced, renamed
over the target and the directory is fsynced, so after ``kill -9`` or a power
cut the target holds either the old content or the new, never half of it.

Every command that writes a data dir or an output calls :func:`prepare_dir` or
:func:`prepare_output` first: a place that cannot be written (under ``/proc``,
through a regular file, without permission) is then a one-line
:class:`~learnae.errors.UserError` naming the option and the fix, before any
work is done, never a traceback halfway through.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from pathlib import Path

from learnae.errors import UserError

__all__ = ["atomic_write", "fsync_dir", "prepare_dir", "prepare_output"]

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


def prepare_dir(path: Path | str, *, what: str) -> Path:
    """Create the directory ``path`` (and its parents) and check that files can be created in it.

    Args:
        path: a data dir or an output directory (``~`` is expanded).
        what: how the user named it, for the message: ``"--data-dir"``, ``"--out"``, ...

    Returns:
        The expanded path.

    Raises:
        UserError: ``<what> <path>: <why it cannot be written>; <fix>`` on one line.

    Example:
        >>> prepare_dir("/proc/x", what="--data-dir")
        Traceback (most recent call last):
        learnae.errors.UserError: --data-dir /proc/x: cannot create a directory in /proc (No such file or directory); pass a directory you can write to
    """
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as exc:
        raise UserError(f"{what} {path}: {_why(path, exc)}; pass a directory you can write to") from None
    return path


def prepare_output(path: Path | str, *, what: str) -> Path:
    """Create the parent directory of the output file ``path`` and check that the file can be written.

    Args:
        path: the file a command will write (``~`` is expanded); it may exist.
        what: how the user named it, for the message: ``"-o"``, ``"FILE"``, ...

    Returns:
        The expanded path.

    Raises:
        UserError: ``<what> <path>: <why it cannot be written>; <fix>`` on one line.
    """
    path = Path(path).expanduser()
    fix = "pass a file path in a directory you can write to"
    if path.is_dir():
        raise UserError(f"{what} {path}: is a directory; pass a file path, e.g. {path / 'out'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _probe(path.parent)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    except OSError as exc:
        raise UserError(f"{what} {path}: {_why(path.parent, exc)}; {fix}") from None
    return path


def _probe(directory: Path) -> None:
    # mkdir succeeds on an existing directory nobody may write (/proc, a read-only mount);
    # creating a file is the only test that cannot lie (os.access says yes to root).
    probe = directory / f".learnae-probe.{os.getpid()}.{threading.get_ident()}.{next(_unique)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()


def _why(directory: Path, exc: OSError) -> str:
    """Why files cannot be created in ``directory``, in words: a file in the way, or what the system refused."""
    reason = exc.strerror or str(exc)
    for parent in reversed((directory, *directory.parents)):  # from the root down: the first one in the way
        if parent.exists() and not parent.is_dir():
            return f"{parent} is a file, not a directory"
        if not parent.exists():
            return f"cannot create a directory in {parent.parent} ({reason})"
    if isinstance(exc, PermissionError) and exc.filename and Path(exc.filename).parent == directory:
        return f"cannot write {exc.filename} ({reason})"
    return f"cannot create files in {directory} ({reason})"
