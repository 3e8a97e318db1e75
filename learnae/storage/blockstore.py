"""The on-disk block store: ``<data-dir>/blocks``.

Layout (like Kubo's flatfs ``next-to-last/2``)::

    blocks/<xx>/<base32 CIDv1>.data    one file per block
    blocks/pins/<base32 CIDv1>         one empty file per recursive pin

Guarantees:

* Every block is checked against its CID on write (:meth:`BlockStore.put_block`)
  and on every read (:meth:`BlockStore.get_block`). A file that fails the check
  (bit rot, a truncated file after a power cut, tampering) is moved to
  ``blocks/corrupt/``, counted in :attr:`BlockStore.corrupt_blocks`, logged,
  and reported as :class:`CorruptBlockError` (a ``StoreError``); it is never
  returned. The embedded store then refetches it from the network.
* Writes are atomic: a block goes to a unique temp file and is renamed into
  place, so a crash (``kill -9``) mid-write leaves no half block. Blocks are not
  fsynced one by one (that costs 5x in import speed here); with
  ``durable=True`` they are. After a power cut a non-durable block may be lost,
  which the read check detects. Pins follow the same setting (an fsync on a
  busy ext4 disk flushes everyone's dirty data and can take seconds).
* Blocks over 2 MiB are rejected (:class:`~learnae.errors.InvalidBlockError`).
* Private: the directories are created mode 0700 and every file 0600 (a data dir
  may hold a peer's training shard), and an existing ``blocks`` directory that is
  open to other users is closed (0700) when the store is opened.

Methods are synchronous (local file I/O); the async :class:`~learnae.storage.store.Store`
runs them in worker threads.

Example:
    >>> import tempfile
    >>> bs = BlockStore(tempfile.mkdtemp())
    >>> cid = cid_of(b"data")
    >>> bs.put_block(cid, b"data"); bs.get_block(cid)
    b'data'
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dag_cbor
from multiformats import CID

from learnae.errors import FetchError, InvalidBlockError, StoreError
from learnae.fsutil import atomic_write, fsync_dir
from learnae.storage.cid import DAG_CBOR, DAG_PB, block_key, cid_of, parse_cid, verify_block
from learnae.storage.dagpb import decode_node

__all__ = ["BlockStore", "CorruptBlockError", "BlockNotFoundError", "cid_of", "block_links"]

log = logging.getLogger(__name__)

# Blocks may hold a peer's shard (its private training data): readable by its owner only.
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def _close_to_others(directory: Path) -> None:
    """Make ``directory`` 0700 if group or others have any access (a data dir made by an older version)."""
    try:
        mode = directory.stat().st_mode
        if mode & 0o077:
            os.chmod(directory, stat.S_IMODE(mode) & ~0o077)
    except OSError as exc:  # not ours (a shared mount): say so, do not fail
        log.warning("cannot make %s private: %s", directory, exc)


class CorruptBlockError(StoreError):
    """A block file on disk does not match its CID (it has been quarantined)."""


class BlockNotFoundError(FetchError, KeyError):
    """The block is not in the local store (and, for a store with a network, no provider had it)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class BlockStore:
    """Content-addressed blocks in a directory, verified on every read and write.

    Args:
        root: the directory (``<data-dir>/blocks``); created if missing.
        durable: fsync every block file (slower; see the module docstring).
    """

    def __init__(self, root: str | Path, *, durable: bool = False):
        self.root = Path(root)
        self.durable = durable
        self.corrupt_blocks = 0
        self._gc_lock = threading.RLock()
        self._gc_running = False
        self._fresh: set[str] = set()  # keys written while a gc runs (kept by it)
        self._root_s = str(self.root)
        self._shards: set[str] = set()  # shard dirs known to exist
        # temp names unique per process and store: no collisions between writer threads
        self._tmp_tag = f"{os.getpid()}.{secrets.token_hex(3)}."
        self._tmp_seq = itertools.count()
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        _close_to_others(self.root)
        (self.root / "pins").mkdir(mode=_DIR_MODE, exist_ok=True)

    # -- paths -------------------------------------------------------------------

    def _path(self, cid: CID) -> Path:
        return Path(self._path_s(cid))

    def _path_s(self, cid: CID) -> str:
        key = block_key(cid)
        return f"{self._root_s}/{key[-3:-1]}/{key}.data"

    # -- blocks ------------------------------------------------------------------

    def has(self, cid: CID) -> bool:
        """Whether a file for ``cid`` exists (not verified; :meth:`get_block` verifies)."""
        return os.path.isfile(self._path_s(cid))

    def size(self, cid: CID) -> int:
        """The stored file's size in bytes (0 when not stored; not verified)."""
        try:
            return os.stat(self._path_s(cid)).st_size
        except FileNotFoundError:
            return 0

    def put_block(self, cid: CID, data: bytes | memoryview) -> None:
        """Verify ``data`` against ``cid`` and store it.

        Raises:
            InvalidBlockError: wrong hash, unsupported hash or over 2 MiB.
        """
        verify_block(cid, data)
        self.put_verified(cid, data)

    def put_verified(self, cid: CID, data: bytes | memoryview, *, check_exists: bool = True) -> None:
        """Store a block whose CID the caller has just computed from ``data`` itself.

        With ``check_exists=False`` an existing file is replaced by the same bytes
        (cheaper than a stat when the block is almost surely new: imports, fetches).
        """
        path = self._path_s(cid)  # strings, not Paths: this runs once per block
        if self._gc_running:
            self._fresh.add(block_key(cid))
        if check_exists and os.path.isfile(path):
            return
        shard, name = path.rsplit("/", 1)
        if shard not in self._shards:
            try:
                os.mkdir(shard, _DIR_MODE)
            except FileExistsError:
                pass
            self._shards.add(shard)
        tmp = f"{shard}/.{name}.{self._tmp_tag}{next(self._tmp_seq)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        if self.durable:
            fsync_dir(Path(shard))

    @contextlib.contextmanager
    def writer(self, depth_blocks: int = 8) -> Iterator[Callable[[CID, bytes], None]]:
        """A sink that stores verified blocks from a second thread while the caller goes on.

        Hashing (the caller) and file writes (the writer thread) both release
        the GIL, so an import overlaps them. At most ``depth_blocks`` blocks wait
        in memory. The block exits once everything is written; a write error
        is raised there.

        Example:
            >>> import tempfile
            >>> from learnae.storage.unixfs import import_bytes
            >>> bs = BlockStore(tempfile.mkdtemp())
            >>> with bs.writer() as sink:
            ...     root = import_bytes(b"x" * 600_000, sink)
            >>> bs.has(root)
            True
        """
        q: queue.Queue = queue.Queue(maxsize=max(1, depth_blocks // 4))
        errors: list[BaseException] = []
        batch: list[tuple[CID, bytes]] = []  # handed over 4 at a time: fewer thread wake-ups

        def drain() -> None:
            while (items := q.get()) is not None:
                for cid, data in items:
                    if errors:
                        break
                    try:
                        self.put_verified(cid, data, check_exists=False)
                    except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                        errors.append(exc)

        thread = threading.Thread(target=drain, name="blockstore-writer", daemon=True)
        thread.start()

        def sink(cid: CID, data: bytes) -> None:
            if errors:
                raise errors[0]
            batch.append((cid, data))
            if len(batch) >= 4:
                q.put(batch[:])
                batch.clear()

        try:
            yield sink
            if batch:
                q.put(batch[:])
        finally:
            q.put(None)
            thread.join()
        if errors:
            raise errors[0]

    def get_block(self, cid: CID) -> bytes:
        """Return the verified bytes of ``cid``.

        Raises:
            BlockNotFoundError: not stored locally.
            CorruptBlockError: the file fails its CID check (now quarantined).
        """
        path = self._path_s(cid)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise BlockNotFoundError(f"block {cid} is not in {self.root}") from None
        try:
            verify_block(cid, data)
        except InvalidBlockError as exc:
            self._quarantine(cid, Path(path), exc)
            raise CorruptBlockError(
                f"block {cid} on disk is corrupt ({exc.reason}); moved to {self.root / 'corrupt'}"
            ) from exc
        return data

    def _quarantine(self, cid: CID, path: Path, exc: Exception) -> None:
        self.corrupt_blocks += 1
        log.warning("corrupt block %s at %s: %s (quarantined)", cid, path, exc)
        dest = self.root / "corrupt"
        dest.mkdir(mode=_DIR_MODE, exist_ok=True)
        try:
            os.replace(path, dest / f"{path.name}.{secrets.token_hex(4)}")
        except FileNotFoundError:
            pass

    def delete_block(self, cid: CID) -> None:
        self._path(cid).unlink(missing_ok=True)

    def cids(self) -> Iterator[CID]:
        """Every stored block's CID (as CIDv1)."""
        for shard in self.root.iterdir():
            if not shard.is_dir() or shard.name in ("pins", "corrupt"):
                continue
            for f in shard.iterdir():
                if f.suffix == ".data" and not f.name.startswith("."):
                    try:
                        yield parse_cid(f.stem)
                    except Exception:
                        log.warning("stray file %s in the block store", f)

    # -- pins ----------------------------------------------------------------------

    def pin(self, cid: CID) -> None:
        """Pin ``cid`` recursively: :meth:`gc` keeps it and every block it links to."""
        atomic_write(self.root / "pins" / block_key(cid), str(cid).encode(), mode=_FILE_MODE, durable=self.durable)

    def unpin(self, cid: CID) -> None:
        (self.root / "pins" / block_key(cid)).unlink(missing_ok=True)

    def pins(self) -> list[CID]:
        """The pinned roots, as they were given to :meth:`pin`."""
        out = []
        for f in sorted((self.root / "pins").iterdir()):
            if f.name.startswith("."):
                continue
            try:
                text = f.read_text()
            except FileNotFoundError:  # unpinned while we listed (a publish runs beside a gc)
                continue
            out.append(parse_cid(text.strip() or f.name))
        return out

    def is_pinned(self, cid: CID) -> bool:
        return (self.root / "pins" / block_key(cid)).is_file()

    # -- garbage collection ----------------------------------------------------------

    def links(self, cid: CID, data: bytes) -> list[CID]:
        """CIDs a block links to (dag-pb links, or CID values inside dag-cbor)."""
        return block_links(cid, data)

    def gc(self) -> int:
        """Delete every block not reachable from a pin; return how many were removed.

        Blocks written after the collection started are kept (a concurrent
        ``put`` is not yet pinned).
        """
        with self._gc_lock:
            self._gc_running, self._fresh = True, set()
            try:
                return self._collect(time.time())
            finally:
                self._gc_running = False

    def _collect(self, started: float) -> int:
        keep: set[str] = set()
        stack = list(self.pins())
        while stack:
            cid = stack.pop()
            key = block_key(cid)
            if key in keep:
                continue
            keep.add(key)
            try:
                stack.extend(self.links(cid, self.get_block(cid)))
            except Exception:  # noqa: BLE001 - missing, corrupt or undecodable
                continue  # nothing below it to keep
        removed = 0
        for cid in list(self.cids()):
            path = self._path(cid)
            if block_key(cid) in keep or block_key(cid) in self._fresh:
                continue
            try:
                if path.stat().st_mtime >= started:
                    continue
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        # temp files left by a writer killed mid-write (older than 10 minutes)
        for tmp in self.root.glob("*/.*.tmp"):
            try:
                if tmp.stat().st_mtime < started - 600:
                    tmp.unlink()
            except FileNotFoundError:
                pass
        return removed


def block_links(cid: CID, data: bytes) -> list[CID]:
    """CIDs a block links to: dag-pb links, or CID values anywhere inside a dag-cbor value."""
    if cid.codec.code == DAG_PB:
        return [link.cid for link in decode_node(data).links]
    if cid.codec.code != DAG_CBOR:
        return []
    found: list[CID] = []
    stack = [dag_cbor.decode(data)]
    while stack:
        v = stack.pop()
        if isinstance(v, CID):
            found.append(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found
