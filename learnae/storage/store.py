"""The storage interface every backend implements, and the embedded store.

``Store`` is what the rest of learnae uses: ``put`` bytes as a UnixFS file
(the CID ``ipfs add --cid-version=1`` prints), ``get`` them back (always
verified against the CID, and bounded in size: ``max_bytes``, and the store's
``max_get_bytes`` for every get), ``pin``/``unpin``/``gc``, and raw blocks for
dag-cbor ledger entries. :class:`EmbeddedStore` keeps blocks in
``<data-dir>/blocks`` and, when given a fetcher (a running
:class:`~learnae.storage.bitswap.Bitswap`), fetches missing or corrupt blocks
from other peers. :class:`~learnae.storage.kubo.KuboStore` talks to a daemon.

Example:
    >>> import trio, tempfile
    >>> async def demo():
    ...     store = EmbeddedStore(tempfile.mkdtemp())
    ...     cid = await store.put(b"weights")
    ...     return await store.get(cid)
    >>> trio.run(demo)
    b'weights'
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import trio
from multiformats import CID

from learnae.storage.blockstore import BlockNotFoundError, BlockStore, CorruptBlockError
from learnae.storage.cid import RAW, parse_cid
from learnae.storage.unixfs import Importer, read_file
from learnae.threads import INLINE_BYTES, run_sized

__all__ = ["Store", "EmbeddedStore", "open_store", "DEFAULT_MAX_GET_BYTES", "read_unixfs"]

log = logging.getLogger(__name__)

# async fetcher(cid, providers=(), *, recursive=True, max_bytes=None): Bitswap.fetch has this shape
Fetcher = Callable[..., Awaitable[object]]
T = TypeVar("T")

# A get holds the whole file in memory (twice, briefly, while joining): no file larger than this,
# whatever a remote DAG claims. Store.max_get_bytes overrides it per store.
DEFAULT_MAX_GET_BYTES = 1 << 30
# One worker-thread trip of a read: a few milliseconds of reading and hashing, so a caller's
# deadline (trio.fail_after around a get) takes effect within that long.
READ_BATCH_BYTES = 4 << 20


def _pull(reader: Iterator[bytes], budget: int) -> tuple[list[bytes], int, bool]:
    """Up to about ``budget`` bytes of pieces from ``reader``: (pieces, their bytes, reader exhausted)."""
    pieces, n = [], 0
    for piece in reader:
        pieces.append(piece)
        n += len(piece)
        if n >= budget:
            return pieces, n, False
    return pieces, n, True


async def read_unixfs(root: CID, get_block: Callable[[CID], bytes], max_bytes: int | None, *,
                      inline: bool = False) -> bytes:
    """The UnixFS file ``root``, read with :func:`~learnae.storage.unixfs.read_file` in bounded steps.

    Each step reads about :data:`READ_BATCH_BYTES` in a worker thread (inline
    when ``inline``: a small one-block file), so a caller's deadline cancels the
    read between steps, and the size checks of ``read_file`` (``max_bytes``, a
    DAG linking a block many times) stop it before memory grows.

    Raises:
        InvalidBlockError: see :func:`~learnae.storage.unixfs.read_file`.
        whatever ``get_block`` raises (e.g. BlockNotFoundError).
    """
    reader = read_file(root, get_block, max_bytes=max_bytes)
    pieces: list[bytes] = []
    total, done = 0, False
    while not done:
        if inline:
            await trio.lowlevel.checkpoint()
            batch, n, done = _pull(reader, READ_BATCH_BYTES)
        else:
            batch, n, done = await trio.to_thread.run_sync(_pull, reader, READ_BATCH_BYTES)
        pieces += batch
        total += n
    if len(pieces) == 1:
        return bytes(pieces[0])
    return await run_sized(b"".join, total, pieces)


class Store(abc.ABC):
    """Content-addressed storage (async). Every implementation passes tests/storage/test_store_contract.py."""

    @abc.abstractmethod
    async def put(self, data: bytes, *, pin: bool = True) -> CID:
        """Store ``data`` as a UnixFS file (CIDv1, raw leaves); pinned unless ``pin=False``
        (like ``ipfs add``). Returns the root CID."""

    #: No get returns (or fetches) a file larger than this; set per store (e.g. from the config).
    max_get_bytes: int = DEFAULT_MAX_GET_BYTES

    def get_limit(self, max_bytes: int | None) -> int:
        """The size bound of one get: ``max_bytes`` within :attr:`max_get_bytes`."""
        return self.max_get_bytes if max_bytes is None else min(int(max_bytes), self.max_get_bytes)

    @abc.abstractmethod
    async def get(self, cid: CID, *, providers: Sequence[object] = (), max_bytes: int | None = None) -> bytes:
        """The file's bytes, verified block by block against ``cid``.

        ``providers`` are hints: peers likely to have the content (the
        announcement's author first), as full multiaddrs or peer IDs. The
        embedded store asks them first over Bitswap; Kubo finds its own.

        ``max_bytes`` bounds the file (e.g. a snapshot's
        :func:`~learnae.storage.snapshot.snapshot_size_bound`); :attr:`max_get_bytes`
        bounds every get. The root's declared size is checked before any leaf is
        fetched or read, every block must be as large as its parent declares, and
        a DAG linking one block many times is refused, so memory never grows past
        the bound whatever the DAG claims. The work is done in bounded steps: a
        caller's deadline (``trio.fail_after``) cancels a get promptly.

        Raises:
            FetchError: not available (locally, or from any provider in time).
            StoreError: a local block is corrupt and could not be refetched.
            InvalidBlockError: ``cid`` is not a UnixFS file, its sizes do not add
                up (``reason`` ``bad-unixfs``), or it is over the bound (``too-large``).
        """

    @abc.abstractmethod
    async def has(self, cid: CID) -> bool:
        """Whether the block ``cid`` is stored locally (no network lookup)."""

    @abc.abstractmethod
    async def pin(self, cid: CID) -> None:
        """Keep ``cid`` and everything it links to through :meth:`gc` (fetching it if needed)."""

    @abc.abstractmethod
    async def unpin(self, cid: CID) -> None:
        """Let :meth:`gc` remove ``cid`` (no error if it was not pinned)."""

    @abc.abstractmethod
    async def pins(self) -> list[CID]:
        """The recursively pinned roots."""

    @abc.abstractmethod
    async def gc(self) -> int:
        """Remove unpinned blocks; return how many were removed."""

    @abc.abstractmethod
    async def put_block(self, cid: CID, data: bytes) -> None:
        """Store one block under ``cid`` (e.g. a dag-cbor ledger entry).

        Raises:
            InvalidBlockError: ``data`` does not hash to ``cid`` or is over 2 MiB.
        """

    @abc.abstractmethod
    async def get_block(self, cid: CID) -> bytes:
        """One block's bytes, verified against ``cid``.

        Raises:
            FetchError: not available.
        """

    async def aclose(self) -> None:
        """Release resources (nothing by default)."""


class EmbeddedStore(Store):
    """The default store: blocks in ``<data-dir>/blocks``, no daemon.

    Args:
        root: the blocks directory (``<data-dir>/blocks``).
        fetcher: ``async fetcher(cid, providers=(), *, recursive=True, max_bytes=None)``
            that brings the DAG under ``cid`` into :attr:`blocks` from the network
            (fetching no more than ``max_bytes`` of file data when given); pass a
            running ``Bitswap``'s ``fetch`` (its blocks must be :attr:`blocks`).
            Without it the store is local only.
        durable: fsync every block (see :mod:`learnae.storage.blockstore`).
        max_get_bytes: the bound of every :meth:`get` (default 1 GiB).

    Example (a peer wiring its host)::

        store = EmbeddedStore(data_dir / "blocks")
        async with Bitswap(host, store.blocks, find_providers=dht_lookup).run() as bitswap:
            store.fetcher = bitswap.fetch
            weights = await store.get(cid, providers=[author_addr], max_bytes=snapshot_size_bound(specs))
    """

    def __init__(self, root: str | Path, *, fetcher: Fetcher | None = None, durable: bool = False,
                 max_get_bytes: int = DEFAULT_MAX_GET_BYTES):
        self.blocks = BlockStore(root, durable=durable)
        self.fetcher = fetcher
        self.max_get_bytes = max_get_bytes
        self.bitswap = None  # set by open_embedded_node

    async def put(self, data: bytes, *, pin: bool = True) -> CID:
        def work() -> CID:
            with self.blocks.writer() as sink:  # hashing here, file writes in a second thread
                imp = Importer(sink)
                imp.write(data)
                return imp.finish()

        cid = await trio.to_thread.run_sync(work)
        if pin:
            await trio.to_thread.run_sync(self.blocks.pin, cid)
        return cid

    async def put_file(self, path: Path, *, pin: bool = True) -> CID:
        """Import a file from disk in constant memory."""
        def work() -> CID:
            with self.blocks.writer() as sink, open(path, "rb") as fh:
                imp = Importer(sink)
                while chunk := fh.read(4 * 1024 * 1024):
                    imp.write(chunk)
                return imp.finish()

        cid = await trio.to_thread.run_sync(work)
        if pin:
            await trio.to_thread.run_sync(self.blocks.pin, cid)
        return cid

    async def _with_refetch(self, cid: CID, attempt: Callable[[], Awaitable[T]], providers: Sequence[object] = (),
                            *, max_bytes: int | None = None) -> T:
        """``await attempt()``; on a missing or corrupt block, fetch ``cid`` once (within
        ``max_bytes``) and try again."""
        try:
            return await attempt()
        except (BlockNotFoundError, CorruptBlockError) as exc:
            if self.fetcher is None:
                raise
            log.info("%s: %s; fetching from the network", cid, exc)
        if max_bytes is None:
            await self.fetcher(cid, tuple(providers))
        else:
            await self.fetcher(cid, tuple(providers), max_bytes=max_bytes)
        return await attempt()

    async def get(self, cid: CID, *, providers: Sequence[object] = (), max_bytes: int | None = None) -> bytes:
        cid = parse_cid(cid)
        limit = self.get_limit(max_bytes)
        # a file of one raw block (up to a chunk) is read inline: cheaper than a thread trip
        small = cid.codec.code == RAW and 0 < self.blocks.size(cid) <= INLINE_BYTES
        return await self._with_refetch(
            cid, lambda: read_unixfs(cid, self.blocks.get_block, limit, inline=small), providers, max_bytes=limit)

    async def get_to_file(self, cid: CID, path: Path, *, providers: Sequence[object] = (),
                          max_bytes: int | None = None) -> int:
        """Write the file ``cid`` to ``path`` atomically, streaming (constant memory); return its size.

        Unlike :meth:`get` there is no default bound (the file goes to disk, not to
        memory); ``max_bytes`` sets one. It is read in bounded steps, like :meth:`get`.
        """
        cid = parse_cid(cid)
        path = Path(path)

        def write_batch(reader, fh) -> tuple[int, bool]:
            pieces, n, done = _pull(reader, READ_BATCH_BYTES)
            for piece in pieces:
                fh.write(piece)
            return n, done

        async def attempt() -> int:
            tmp = path.with_name(f".{path.name}.part")
            reader = read_file(cid, self.blocks.get_block, max_bytes=max_bytes)
            fh = await trio.to_thread.run_sync(open, tmp, "wb")
            n, done = 0, False
            try:
                while not done:
                    wrote, done = await trio.to_thread.run_sync(write_batch, reader, fh)
                    n += wrote
            except BaseException:
                fh.close()
                tmp.unlink(missing_ok=True)
                raise
            fh.close()
            tmp.replace(path)
            return n

        return await self._with_refetch(cid, attempt, providers, max_bytes=max_bytes)

    async def has(self, cid: CID) -> bool:
        return self.blocks.has(parse_cid(cid))

    async def pin(self, cid: CID) -> None:
        cid = parse_cid(cid)
        # a pin must hold the whole DAG: read it all (fetching what is missing)
        await self._with_refetch(cid, lambda: trio.to_thread.run_sync(_walk_all, self.blocks, cid))
        await trio.to_thread.run_sync(self.blocks.pin, cid)

    async def unpin(self, cid: CID) -> None:
        await trio.to_thread.run_sync(self.blocks.unpin, parse_cid(cid))

    async def pins(self) -> list[CID]:
        return await trio.to_thread.run_sync(self.blocks.pins)

    async def gc(self) -> int:
        return await trio.to_thread.run_sync(self.blocks.gc)

    async def put_block(self, cid: CID, data: bytes) -> None:
        await trio.to_thread.run_sync(self.blocks.put_block, parse_cid(cid), data)

    async def get_block(self, cid: CID) -> bytes:
        cid = parse_cid(cid)
        try:
            return await trio.to_thread.run_sync(self.blocks.get_block, cid)
        except (BlockNotFoundError, CorruptBlockError):
            if self.fetcher is None:
                raise
        await self.fetcher(cid, (), recursive=False)
        return await trio.to_thread.run_sync(self.blocks.get_block, cid)


def _walk_all(blocks: BlockStore, root: CID) -> None:
    stack = [root]
    seen: set[CID] = set()
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        stack.extend(blocks.links(cid, blocks.get_block(cid)))


def open_store(config, *, fetcher: Fetcher | None = None) -> Store:
    """The store a :class:`~learnae.peer.config.PeerConfig` asks for.

    ``storage = "embedded"`` gives an :class:`EmbeddedStore` on
    ``<data_dir>/blocks``; ``storage = "kubo"`` a
    :class:`~learnae.storage.kubo.KuboStore` on ``kubo_api``.

    Raises:
        KuboError: storage is kubo and the daemon is unreachable.
    """
    if config.storage == "kubo":
        from learnae.storage.kubo import KuboStore

        return KuboStore(config.kubo_api)
    return EmbeddedStore(Path(config.data_dir).expanduser() / "blocks", fetcher=fetcher)

