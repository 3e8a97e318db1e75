"""The storage interface every backend implements, and the embedded store.

``Store`` is what the rest of learnae uses: ``put`` bytes as a UnixFS file
(the CID ``ipfs add --cid-version=1`` prints), ``get`` them back (always
verified against the CID), ``pin``/``unpin``/``gc``, and raw blocks for
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
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio
from multiformats import CID

from learnae.storage.blockstore import BlockNotFoundError, BlockStore, CorruptBlockError
from learnae.storage.cid import RAW, parse_cid
from learnae.storage.unixfs import Importer, read_file
from learnae.threads import run_sized

__all__ = ["Store", "EmbeddedStore", "open_store"]

log = logging.getLogger(__name__)

# async fetcher(cid, providers=(), *, recursive=True): Bitswap.fetch has this shape
Fetcher = Callable[..., Awaitable[object]]


class Store(abc.ABC):
    """Content-addressed storage (async). Every implementation passes tests/storage/test_store_contract.py."""

    @abc.abstractmethod
    async def put(self, data: bytes, *, pin: bool = True) -> CID:
        """Store ``data`` as a UnixFS file (CIDv1, raw leaves); pinned unless ``pin=False``
        (like ``ipfs add``). Returns the root CID."""

    @abc.abstractmethod
    async def get(self, cid: CID, *, providers: Sequence[object] = ()) -> bytes:
        """The file's bytes, verified block by block against ``cid``.

        ``providers`` are hints: peers likely to have the content (the
        announcement's author first), as full multiaddrs or peer IDs. The
        embedded store asks them first over Bitswap; Kubo finds its own.

        Raises:
            FetchError: not available (locally, or from any provider in time).
            StoreError: a local block is corrupt and could not be refetched.
            InvalidBlockError: ``cid`` is not a UnixFS file.
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
        fetcher: ``async fetcher(cid, providers=(), *, recursive=True)`` that
            brings the DAG under ``cid`` into :attr:`blocks` from the network;
            pass a running ``Bitswap``'s ``fetch`` (its blocks must be
            :attr:`blocks`). Without it the store is local only.

    Example (a peer wiring its host)::

        store = EmbeddedStore(data_dir / "blocks")
        async with Bitswap(host, store.blocks, find_providers=dht_lookup).run() as bitswap:
            store.fetcher = bitswap.fetch
            weights = await store.get(cid, providers=[author_addr])
        durable: fsync every block (see :mod:`learnae.storage.blockstore`).
    """

    def __init__(self, root: str | Path, *, fetcher: Fetcher | None = None, durable: bool = False):
        self.blocks = BlockStore(root, durable=durable)
        self.fetcher = fetcher
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

    async def _with_refetch(self, cid: CID, work: Callable[[], object], providers: Sequence[object] = (),
                            *, nbytes: int | None = None):
        """Run ``work`` (in a thread unless ``nbytes`` is small); on a missing or corrupt block,
        fetch ``cid`` once and retry."""
        try:
            return await (trio.to_thread.run_sync(work) if nbytes is None else run_sized(work, nbytes))
        except (BlockNotFoundError, CorruptBlockError) as exc:
            if self.fetcher is None:
                raise
            log.info("%s: %s; fetching from the network", cid, exc)
        await self.fetcher(cid, tuple(providers))
        return await trio.to_thread.run_sync(work)

    async def get(self, cid: CID, *, providers: Sequence[object] = ()) -> bytes:
        cid = parse_cid(cid)
        # a file of one raw block (up to a chunk) is read inline: cheaper than a thread trip
        nbytes = self.blocks.size(cid) if cid.codec.code == RAW else None
        return await self._with_refetch(cid, lambda: b"".join(read_file(cid, self.blocks.get_block)), providers,
                                        nbytes=nbytes or None)

    async def get_to_file(self, cid: CID, path: Path, *, providers: Sequence[object] = ()) -> int:
        """Write the file ``cid`` to ``path`` atomically, streaming (constant memory); return its size."""
        cid = parse_cid(cid)
        path = Path(path)

        def work() -> int:
            tmp = path.with_name(f".{path.name}.part")
            n = 0
            with open(tmp, "wb") as fh:
                for piece in read_file(cid, self.blocks.get_block):
                    fh.write(piece)
                    n += len(piece)
            tmp.replace(path)
            return n

        return await self._with_refetch(cid, work, providers)

    async def has(self, cid: CID) -> bool:
        return self.blocks.has(parse_cid(cid))

    async def pin(self, cid: CID) -> None:
        cid = parse_cid(cid)
        # a pin must hold the whole DAG: read it all (fetching what is missing)
        await self._with_refetch(cid, lambda: _walk_all(self.blocks, cid))
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

