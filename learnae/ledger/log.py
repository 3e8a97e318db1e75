"""An append-only file of length-prefixed, checksummed records (how entries live on disk).

Record layout: ``u32 big-endian length || u32 crc32(payload) || payload``.

Why one log file rather than one file per entry (``fsutil.atomic_write``): an
append costs one ``write`` and one ``fsync`` of a single file (no temp file,
rename and directory fsync per entry), startup reads entries sequentially, and a
``kill -9`` can only ever damage the *last* record. On open, a tail that is
shorter than its header says or fails its checksum is an interrupted append:
it is cut off (and the truncation fsynced), so the entry is either fully there
or absent. Appends use ``os.write`` on an unbuffered descriptor, so nothing
waits in a Python buffer when the process dies.

Example:
    >>> import tempfile, pathlib
    >>> log = EntryLog(pathlib.Path(tempfile.mkdtemp()) / "x.log")
    >>> off = log.append(b"hello")
    >>> log.read(off, 5)
    b'hello'
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from learnae.errors import StoreError
from learnae.fsutil import fsync_dir

__all__ = ["EntryLog", "scan_records", "HEADER_BYTES"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
HEADER_BYTES = _HEADER.size
MAX_RECORD_BYTES = 1 << 20


def scan_records(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Split log bytes into ``[(payload offset, payload)]`` and the length of the valid prefix.

    Everything after the first short or corrupt record is the torn tail.
    """
    out = []
    pos, size = 0, len(data)
    while pos + HEADER_BYTES <= size:
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + HEADER_BYTES
        end = start + length
        if length > MAX_RECORD_BYTES or end > size:
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        out.append((start, payload))
        pos = end
    return out, pos


class EntryLog:
    """One append-only record file; opening it repairs a torn tail.

    Args:
        path: the log file (created with its directory if missing).
        readonly: never modify the file (a torn tail is then only reported in
            :attr:`torn_bytes`).
    """

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.torn_bytes = 0
        if readonly:
            self._fd = os.open(self.path, os.O_RDONLY) if self.path.exists() else None
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if created:
                fsync_dir(self.path.parent)
        self.records, self.size = self._scan()

    def _scan(self) -> tuple[list[tuple[int, bytes]], int]:
        if self._fd is None:
            return [], 0
        total = os.fstat(self._fd).st_size
        data = os.pread(self._fd, total, 0)
        records, valid = scan_records(data)
        self.torn_bytes = total - valid
        if self.torn_bytes and not self.readonly:
            log.warning("%s: dropping %d bytes of an interrupted append at the tail", self.path, self.torn_bytes)
            os.ftruncate(self._fd, valid)
            os.fsync(self._fd)
        return records, valid

    def append(self, payload: bytes, *, durable: bool = True) -> int:
        """Append one record; return the payload's offset. ``durable`` fsyncs before returning.

        Raises:
            StoreError: if the write fails (disk full, I/O error).
        """
        if self.readonly or self._fd is None:
            raise StoreError(f"{self.path}: log opened read-only")
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            written = os.pwrite(self._fd, record, self.size)
            if written != len(record):
                raise OSError(f"short write ({written} of {len(record)} bytes)")
            if durable:
                os.fsync(self._fd)
        except OSError as exc:
            # leave the file as it was so the next append does not build on a torn record
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass
            raise StoreError(f"{self.path}: append failed: {exc}") from exc
        offset = self.size + HEADER_BYTES
        self.size += len(record)
        return offset

    def sync(self) -> None:
        """fsync appends made with ``durable=False``."""
        if self._fd is not None and not self.readonly:
            os.fsync(self._fd)

    def read(self, offset: int, length: int) -> bytes:
        """Read one payload back by the offset :meth:`append` returned."""
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise StoreError(f"{self.path}: record at {offset} is cut short")
        return data

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(self.records)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
