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
import time
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


def scan_records(data: bytes) -> tuple[list[tuple[int, bytes]], int, bool]:
    """Split log bytes into ``[(payload offset, payload)]``, the valid prefix length, and damage.

    The first bad record ends the valid prefix. It is a *torn tail* (an
    interrupted append: harmless) when it runs to or past the end of the file,
    or everything from it on is zero bytes (blocks never written before a power
    cut). Otherwise valid-looking data follows a bad record: the file is
    *damaged* in the middle, reported as the third value.
    """
    out = []
    pos, size = 0, len(data)
    while pos + HEADER_BYTES <= size:
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + HEADER_BYTES
        end = start + length
        if length == 0 or length > MAX_RECORD_BYTES or end > size:
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        out.append((start, payload))
        pos = end
    if pos == size:
        return out, pos, False
    rest = data[pos:]
    length = _HEADER.unpack_from(data, pos)[0] if pos + HEADER_BYTES <= size else 0
    torn = pos + HEADER_BYTES > size or pos + HEADER_BYTES + length >= size or not rest.strip(b"\0")
    return out, pos, not torn


class EntryLog:
    """One append-only record file; opening it repairs a torn tail.

    Args:
        path: the log file (created with its directory if missing).
        readonly: never modify the file (a torn tail is then only reported in
            :attr:`torn_bytes`).
    """

    # Tests set this to write records in small pieces, so a kill -9 can land inside a record
    # the way a power cut or a full disk leaves one (one pwrite is all-or-nothing for a kill).
    write_chunk_bytes: int | None = None
    write_pause_s: float = 0.0  # and pause between the pieces

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.torn_bytes = 0
        self.damaged = False
        if readonly:
            self._fd = os.open(self.path, os.O_RDONLY) if self.path.exists() else None
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # a peer's ledger is its own business
            if created:
                fsync_dir(self.path.parent)
        self.records, self.size = self._scan()

    def _scan(self) -> tuple[list[tuple[int, bytes]], int]:
        if self._fd is None:
            return [], 0
        total = os.fstat(self._fd).st_size
        data = os.pread(self._fd, total, 0)
        records, valid, damaged = scan_records(data)
        self.damaged = damaged
        self.torn_bytes = total - valid
        if damaged and not self.readonly:
            raise StoreError(f"{self.path} is damaged at byte {valid} of {total} (not an interrupted append); "
                             f"restore the data dir's ledger/ folder from a backup (a peer then takes back from "
                             f"the swarm what it signed since), and check it with `learnae ledger verify`; "
                             f"never start this key over with an empty ledger: the swarm would see a fork")
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
            step = self.write_chunk_bytes or len(record)
            for i in range(0, len(record), step):
                piece = record[i:i + step]
                written = os.pwrite(self._fd, piece, self.size + i)
                if written != len(piece):
                    raise OSError(f"short write ({written} of {len(piece)} bytes)")
                if self.write_pause_s:
                    time.sleep(self.write_pause_s)
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
