"""UnixFS files: the importer (bytes -> blocks + root CID) and the reader.

The importer reproduces ``ipfs add --cid-version=1`` exactly: fixed 256 KiB
chunks, raw leaves, CIDv1 sha2-256, a balanced DAG of at most 174 links per
node; a one-chunk file is its own root. ``cid_version=0`` gives Kubo's plain
``ipfs add`` (CIDv0, leaves wrapped as UnixFS ``file`` nodes). It streams: only
one chunk plus the pending links of each level are in memory, so a file of any
size imports in constant memory (blocks go to ``sink`` as they are made).

The reader walks any UnixFS file DAG (balanced or trickle, raw or dag-pb
leaves) depth first and yields the file's bytes in order.

Example:
    >>> blocks = {}
    >>> root = import_bytes(b"hello", sink=lambda cid, data: blocks.setdefault(cid, bytes(data)))
    >>> str(root)
    'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
    >>> b"".join(read_file(root, blocks.__getitem__))
    b'hello'
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from multiformats import CID

from learnae.errors import InvalidBlockError
from learnae.storage.cid import DAG_PB, RAW, make_cid
from learnae.storage.dagpb import (
    FILE, RAW_TYPE, Link, decode_node, decode_unixfs, encode_node, encode_unixfs,
)

__all__ = ["CHUNK_BYTES", "MAX_LINKS", "Importer", "import_bytes", "import_file",
           "unixfs_cid", "read_file", "walk_links"]

CHUNK_BYTES = 256 * 1024
MAX_LINKS = 174
_MAX_DEPTH = 64  # far beyond any real file (174^64 chunks); stops hostile deep DAGs

Sink = Callable[[CID, bytes], None]


class Importer:
    """Build a UnixFS file DAG from a stream of bytes.

    Args:
        sink: called with ``(cid, block)`` for every block made (leaves and
            nodes), or ``None`` to only compute the CID (``--only-hash``).
        cid_version: 1 (raw leaves, ``ipfs add --cid-version=1``) or 0 (Kubo's default).

    Example:
        >>> imp = Importer(None)
        >>> imp.write(b"hel"); imp.write(b"lo")
        >>> str(imp.finish())
        'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
    """

    def __init__(self, sink: Sink | None, *, cid_version: int = 1):
        if cid_version not in (0, 1):
            raise ValueError("cid_version must be 0 or 1")
        self._sink = sink
        self._v = cid_version
        self._buf = bytearray()
        # levels[i]: pending links at depth i (0 = leaves) as (cid, tsize, filesize)
        self._levels: list[list[tuple[CID, int, int]]] = [[]]
        self.size_bytes = 0

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes to the file."""
        mv = memoryview(data)
        self.size_bytes += len(mv)
        if self._buf:
            take = min(CHUNK_BYTES - len(self._buf), len(mv))
            self._buf += mv[:take]
            mv = mv[take:]
            if len(self._buf) < CHUNK_BYTES or not mv:
                return
            self._leaf(bytes(self._buf))
            self._buf.clear()
        # Whole chunks straight from the caller's buffer; keep the last (maybe
        # partial) chunk back, since only finish() knows whether it is the only one.
        while len(mv) > CHUNK_BYTES:
            self._leaf(mv[:CHUNK_BYTES])
            mv = mv[CHUNK_BYTES:]
        self._buf += mv

    def finish(self) -> CID:
        """Flush the last chunk and the pending levels; return the root CID."""
        if self._buf or not self._levels[0]:
            self._leaf(bytes(self._buf))
            self._buf.clear()
        levels = self._levels
        if len(levels) == 1 and len(levels[0]) == 1:
            return levels[0][0][0]  # one chunk: the leaf is the root
        depth = 0
        while True:
            top = depth == len(levels) - 1
            if top and len(levels[depth]) == 1 and depth > 0:
                return levels[depth][0][0]
            if levels[depth]:
                self._flush(depth)
            depth += 1

    # -- internals -------------------------------------------------------------

    def _emit(self, cid: CID, block: bytes | memoryview) -> None:
        if self._sink is not None:
            self._sink(cid, block)

    def _leaf(self, chunk: bytes | memoryview) -> None:
        n = len(chunk)
        if self._v == 1:
            cid = make_cid(RAW, hashlib.sha256(chunk).digest())
            self._emit(cid, chunk)
            self._push(0, (cid, n, n))
        else:
            block = encode_node([], encode_unixfs(FILE, data=bytes(chunk), filesize=n))
            cid = make_cid(DAG_PB, hashlib.sha256(block).digest(), version=0)
            self._emit(cid, block)
            self._push(0, (cid, len(block), n))

    def _push(self, depth: int, entry: tuple[CID, int, int]) -> None:
        if len(self._levels[depth]) == MAX_LINKS:
            self._flush(depth)
        self._levels[depth].append(entry)

    def _flush(self, depth: int) -> None:
        """Turn the pending links of ``depth`` into one node at ``depth + 1``."""
        entries = self._levels[depth]
        self._levels[depth] = []
        filesize = sum(e[2] for e in entries)
        data = encode_unixfs(FILE, filesize=filesize, blocksizes=[e[2] for e in entries])
        block = encode_node([Link(c, t) for c, t, _ in entries], data)
        cid = make_cid(DAG_PB, hashlib.sha256(block).digest(), version=self._v)
        self._emit(cid, block)
        if depth + 1 == len(self._levels):
            self._levels.append([])
        self._push(depth + 1, (cid, len(block) + sum(e[1] for e in entries), filesize))


def import_bytes(data: bytes | memoryview, sink: Sink | None = None, *, cid_version: int = 1) -> CID:
    """Import ``data`` as one UnixFS file; return its root CID."""
    imp = Importer(sink, cid_version=cid_version)
    imp.write(data)
    return imp.finish()


def import_file(path: Path, sink: Sink | None = None, *, cid_version: int = 1) -> CID:
    """Import a file from disk in constant memory; return its root CID."""
    imp = Importer(sink, cid_version=cid_version)
    with open(path, "rb") as fh:
        while chunk := fh.read(16 * CHUNK_BYTES):
            imp.write(chunk)
    return imp.finish()


def unixfs_cid(data: bytes, *, cid_version: int = 1) -> CID:
    """The CID ``ipfs add`` would print for ``data`` (nothing is stored)."""
    return import_bytes(data, None, cid_version=cid_version)


def walk_links(cid: CID, block: bytes) -> list[CID]:
    """The children of a block in a UnixFS file DAG (empty for leaves).

    Raises:
        InvalidBlockError: the block is not part of a UnixFS file.
    """
    if cid.codec.code == RAW:
        return []
    if cid.codec.code != DAG_PB:
        raise InvalidBlockError(f"{cid} is {cid.codec.name}, not a UnixFS file block", reason="not-unixfs")
    node = decode_node(block)
    if node.links:
        fs = decode_unixfs(node.data or b"")
        if fs.type not in (FILE, RAW_TYPE):
            raise InvalidBlockError(f"{cid} is a UnixFS type {fs.type}, not a file", reason="not-a-file")
    return [link.cid for link in node.links]


def read_file(root: CID, get_block: Callable[[CID], bytes]) -> Iterator[bytes]:
    """Yield the bytes of the UnixFS file ``root``, in order.

    Args:
        root: the file's root CID.
        get_block: returns a block's verified bytes (e.g. ``BlockStore.get_block``).

    Raises:
        InvalidBlockError: a block is not UnixFS file data, or the DAG is too deep.
    """
    stack: list[tuple[CID, int]] = [(root, 0)]
    while stack:
        cid, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise InvalidBlockError(f"UnixFS DAG under {root} is deeper than {_MAX_DEPTH}", reason="too-deep")
        block = get_block(cid)
        if cid.codec.code == RAW:
            if block:
                yield block
            continue
        if cid.codec.code != DAG_PB:
            raise InvalidBlockError(f"{cid} is {cid.codec.name}, not a UnixFS file", reason="not-unixfs")
        node = decode_node(block)
        fs = decode_unixfs(node.data or b"")
        if fs.type not in (FILE, RAW_TYPE):
            raise InvalidBlockError(f"{cid} is a UnixFS type {fs.type} node, not a file", reason="not-a-file")
        if fs.data:
            yield fs.data
        stack.extend((link.cid, depth + 1) for link in reversed(node.links))
