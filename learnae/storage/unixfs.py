"""UnixFS files: the importer (bytes -> blocks + root CID) and the reader.

The importer reproduces ``ipfs add --cid-version=1`` exactly: fixed 256 KiB
chunks, raw leaves, CIDv1 sha2-256, a balanced DAG of at most 174 links per
node; a one-chunk file is its own root. ``cid_version=0`` gives Kubo's plain
``ipfs add`` (CIDv0, leaves wrapped as UnixFS ``file`` nodes). It streams: only
one chunk plus the pending links of each level are in memory, so a file of any
size imports in constant memory (blocks go to ``sink`` as they are made).

The reader walks any UnixFS file DAG (balanced or trickle, raw or dag-pb
leaves) depth first and yields the file's bytes in order. It believes no size
claim it has not checked: a node's ``filesize`` must equal its own data plus its
``blocksizes``, and every child must be exactly as large as its parent says, so
the bytes yielded are exactly the root's declared size, and a root declaring
more than ``max_bytes`` is refused before any child is read. A DAG that links
one block many times (a "DAG bomb": a few hundred kilobytes of blocks claiming
gigabytes) therefore costs at most ``max_bytes``, and walking its structure
is bounded too (:func:`structure_allowance`). :class:`FileSizeGuard` applies the
same rules to a DAG being fetched, block by block, before its children are asked for.

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
           "unixfs_cid", "read_file", "walk_links", "FileSizeGuard", "structure_allowance", "VISIT_COST"]

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


def structure_allowance(file_bytes: int) -> int:
    """Bytes of structure a file of ``file_bytes`` may need to be read.

    Structure is every dag-pb block's bytes beyond its file data, plus
    :data:`VISIT_COST` for every block visited. ``ipfs add`` spends about 40 bytes
    of links per 256 KiB chunk (0.02 %); even a 1 KiB chunker stays under 10 %. A
    quarter of the file plus 64 KiB is far above any real layout, and it stops a
    DAG whose links cost more than the data they carry (many links to empty or
    repeated blocks) from keeping a reader busy for nothing.
    """
    return (64 << 10) + file_bytes // 4


VISIT_COST = 64  # structure bytes charged per block visited: reading and checking one is not free


def _too_large(root: CID, declared: int, max_bytes: int) -> InvalidBlockError:
    return InvalidBlockError(f"UnixFS file {root} declares {declared} bytes, over the {max_bytes}-byte limit",
                             reason="too-large")


def _bad_size(cid: CID, actual: int, expected: int) -> InvalidBlockError:
    return InvalidBlockError(f"UnixFS block {cid} holds {actual} bytes of the file, its parent says {expected}",
                             reason="bad-unixfs")


def _file_node(cid: CID, block: bytes):
    """Decode a dag-pb block of a UnixFS file; return ``(node, unixfs data, file bytes under it)``.

    Raises:
        InvalidBlockError: not dag-pb UnixFS file data, or its sizes do not add up
            (``filesize`` must be ``len(data) + sum(blocksizes)`` with one blocksize
            per link, as go-unixfs and the JS importer write them).
    """
    if cid.codec.code != DAG_PB:
        raise InvalidBlockError(f"{cid} is {cid.codec.name}, not a UnixFS file", reason="not-unixfs")
    node = decode_node(block)
    if node.data is None:
        raise InvalidBlockError(f"{cid} is a dag-pb node without UnixFS data", reason="not-unixfs")
    fs = decode_unixfs(node.data)
    if fs.type not in (FILE, RAW_TYPE):
        raise InvalidBlockError(f"{cid} is a UnixFS type {fs.type} node, not a file", reason="not-a-file")
    if len(fs.blocksizes) != len(node.links):
        raise InvalidBlockError(f"{cid} has {len(node.links)} links but {len(fs.blocksizes)} blocksizes",
                                reason="bad-unixfs")
    size = len(fs.data) + sum(fs.blocksizes)
    if fs.filesize is not None and fs.filesize != size:
        raise InvalidBlockError(f"{cid} declares filesize {fs.filesize} but its data and blocksizes add up to {size}",
                                reason="bad-unixfs")
    return node, fs, size


def read_file(root: CID, get_block: Callable[[CID], bytes], *, max_bytes: int | None = None) -> Iterator[bytes]:
    """Yield the bytes of the UnixFS file ``root``, in order.

    Args:
        root: the file's root CID.
        get_block: returns a block's verified bytes (e.g. ``BlockStore.get_block``).
        max_bytes: refuse a file declaring more (checked at the root, before
            any child is read); None: any size.

    Raises:
        InvalidBlockError: a block is not UnixFS file data, sizes do not add up
            (``reason`` ``bad-unixfs``), the file declares more than
            ``max_bytes`` or needs more structure than :func:`structure_allowance`
            (``too-large``), or the DAG is too deep.
    """
    # (cid, depth, bytes of the file its parent says are under it; None for the root)
    stack: list[tuple[CID, int, int | None]] = [(root, 0, None)]
    structure = allowance = 0
    while stack:
        cid, depth, expected = stack.pop()
        if depth > _MAX_DEPTH:
            raise InvalidBlockError(f"UnixFS DAG under {root} is deeper than {_MAX_DEPTH}", reason="too-deep")
        block = get_block(cid)
        if cid.codec.code == RAW:
            if expected is None and max_bytes is not None and len(block) > max_bytes:
                raise _too_large(root, len(block), max_bytes)
            if expected is not None and len(block) != expected:
                raise _bad_size(cid, len(block), expected)
            structure += VISIT_COST
            if structure > allowance and expected is not None:
                raise InvalidBlockError(f"UnixFS file {root} needs more than {allowance} bytes of structure for "
                                        "its size (a block linked many times?)", reason="too-large")
            if block:
                yield block
            continue
        node, fs, size = _file_node(cid, block)
        if expected is None:
            if max_bytes is not None and size > max_bytes:
                raise _too_large(root, size, max_bytes)
            allowance = structure_allowance(size)
        elif size != expected:
            raise _bad_size(cid, size, expected)
        # counted at every visit, not once per block: a node linked many times costs each time
        structure += VISIT_COST + len(block) - len(fs.data)
        if structure > allowance:
            raise InvalidBlockError(f"UnixFS file {root} needs more than {allowance} bytes of structure for "
                                    "its size (a block linked many times?)", reason="too-large")
        if fs.data:
            yield fs.data
        stack.extend((link.cid, depth + 1, n) for link, n in zip(reversed(node.links), reversed(fs.blocksizes)))


def _key(cid: CID) -> tuple[int, bytes]:
    # CIDv0 and CIDv1 of one dag-pb block are one block; a raw and a dag-pb CID of the same bytes are not
    return cid.codec.code, bytes(cid.digest)


class FileSizeGuard:
    """Checks the size claims of a UnixFS file DAG block by block, as it is fetched.

    Feed it every block of the DAG (local or received) with :meth:`visit`; it
    returns the children still to fetch, each once. Before any child is asked
    for, the root's declared size is checked against ``max_bytes``; every child
    must then be exactly as large as its parent declared (so the distinct file
    bytes fetched never exceed the root's size), the same block may not be
    declared with two sizes, and the dag-pb structure fetched is bounded by
    :func:`structure_allowance`. Any violation is an
    :class:`~learnae.errors.InvalidBlockError` (``too-large``, ``bad-unixfs``,
    ``not-unixfs``, ``not-a-file``) raised by :meth:`visit`.

    Attributes:
        file_bytes: file data in the distinct blocks visited so far.
        structure_bytes: dag-pb bytes beyond file data visited so far, plus
            :data:`VISIT_COST` per block.

    Example:
        >>> blocks = {}
        >>> root = import_bytes(b"x" * 600_000, sink=lambda c, b: blocks.setdefault(c, bytes(b)))
        >>> len(FileSizeGuard(root, max_bytes=10**6).visit(root, len(blocks[root]), blocks[root]))  # 3 chunks, 2 equal
        2
        >>> try:
        ...     FileSizeGuard(root, max_bytes=1000).visit(root, len(blocks[root]), blocks[root])
        ... except InvalidBlockError as exc:
        ...     print(exc.reason)
        too-large
    """

    def __init__(self, root: CID, max_bytes: int | None):
        self.root = root
        self.max_bytes = max_bytes
        self.file_bytes = 0
        self.structure_bytes = 0
        self._allowance = 0
        self._expected: dict[tuple[int, bytes], int | None] = {_key(root): None}
        self._visited: set[tuple[int, bytes]] = set()

    def visit(self, cid: CID, size: int, block: bytes | None = None) -> list[CID]:
        """Check one block of the DAG; return its children not seen before.

        Args:
            cid: the block's CID (the root, or a child a visited block linked to).
            size: the block's length in bytes.
            block: its bytes (needed for dag-pb blocks; raw leaves need only ``size``).
        """
        key = _key(cid)
        if key not in self._expected:
            raise InvalidBlockError(f"block {cid} is not part of {self.root}", reason="not-unixfs")
        if key in self._visited:
            return []
        self._visited.add(key)
        expected = self._expected[key]
        if cid.codec.code == RAW:
            if expected is None and self.max_bytes is not None and size > self.max_bytes:
                raise _too_large(self.root, size, self.max_bytes)
            if expected is not None and size != expected:
                raise _bad_size(cid, size, expected)
            self.file_bytes += size
            self.structure_bytes += VISIT_COST
            if expected is not None and self.structure_bytes > self._allowance:
                raise self._over_allowance()
            return []
        if block is None:
            raise ValueError("a dag-pb block must be visited with its bytes")
        node, fs, declared = _file_node(cid, block)
        if expected is None:
            if self.max_bytes is not None and declared > self.max_bytes:
                raise _too_large(self.root, declared, self.max_bytes)
            self._allowance = structure_allowance(declared)
        elif declared != expected:
            raise _bad_size(cid, declared, expected)
        self.file_bytes += len(fs.data)
        self.structure_bytes += VISIT_COST + len(block) - len(fs.data)
        if self.structure_bytes > self._allowance:
            raise self._over_allowance()
        children = []
        for link, n in zip(node.links, fs.blocksizes):
            k = _key(link.cid)
            if k in self._expected:
                if self._expected[k] != n:  # one block cannot hold two sizes of file
                    raise InvalidBlockError(f"{cid} declares {link.cid} with {n} bytes, another node with "
                                            f"{self._expected[k]}", reason="bad-unixfs")
                continue
            self._expected[k] = n
            children.append(link.cid)
        return children

    def _over_allowance(self) -> InvalidBlockError:
        return InvalidBlockError(f"UnixFS file {self.root} needs more than {self._allowance} bytes of structure "
                                 "for its size", reason="too-large")
