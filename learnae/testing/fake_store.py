"""``MemoryStore``: an in-memory :class:`~learnae.storage.store.Store` for unit tests.

It implements the whole ``Store`` interface over a dict of blocks, with the
CIDs of the real stores: ``put`` imports the bytes as a UnixFS file with
:class:`~learnae.storage.unixfs.Importer` (256 KiB chunks, raw leaves, CIDv1),
so it returns exactly the CID ``ipfs add --cid-version=1`` prints, and every
block of the DAG (leaves and inner ``dag-pb`` nodes) can be read back with
``get_block``. Pins are recursive, ``gc`` removes what no pin reaches, and
``put_block``/``get_block`` take single blocks (e.g. dag-cbor ledger entries).
Nothing touches the disk or the network. It passes the same contract as the
real stores (``tests/storage/test_store_contract.py``), so code tested against
it behaves the same on an :class:`~learnae.storage.store.EmbeddedStore` or Kubo.

Errors, as the real stores raise them:

* :class:`~learnae.errors.FetchError` for content that is not stored (nothing is
  fetched from anywhere, so it is immediate);
* :class:`~learnae.errors.InvalidBlockError` for a block that does not hash to
  its CID (in ``put_block``, or a block a test tampered with in :attr:`MemoryStore.blocks`
  when it is read) or is over :data:`~learnae.storage.cid.MAX_BLOCK_BYTES`, and
  for a ``get`` of a CID that is not a UnixFS file.

``puts`` and ``gets`` count the calls of :meth:`MemoryStore.put` and
:meth:`MemoryStore.get` (not of the block methods).

Example:
    >>> import trio
    >>> store = MemoryStore()
    >>> cid = trio.run(store.put, b"hello")
    >>> str(cid)                             # what `ipfs add --cid-version=1` prints
    'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
    >>> trio.run(store.get, cid)
    b'hello'
    >>> async def loose_file():
    ...     big = await store.put(bytes(600_000), pin=False)   # 3 chunks, 2 of them equal
    ...     return big, await store.gc(), await store.has(big), await store.has(cid)
    >>> big, removed, has_big, has_hello = trio.run(loose_file)
    >>> removed, has_big, has_hello          # the root and its 2 distinct leaves went; "hello" is pinned
    (3, False, True)
    >>> store.puts, store.gets
    (2, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
from multiformats import CID

from learnae.errors import FetchError
from learnae.storage.blockstore import block_links
from learnae.storage.cid import block_key, parse_cid, verify_block
from learnae.storage.store import Store, read_unixfs
from learnae.storage.unixfs import Importer, unixfs_cid

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Content-addressed blocks in a dict; counts ``puts`` and ``gets``.

    Attributes:
        blocks: every stored block, by :func:`~learnae.storage.cid.block_key`
            (base32 CIDv1, so a CIDv0 and a CIDv1 of one block share an entry).
            Tests may tamper with it; reads verify every block.
        puts: how many times :meth:`put` was called.
        gets: how many times :meth:`get` was called.
    """

    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}
        self._pins: dict[str, CID] = {}  # block_key -> the CID as given to pin()
        self.puts = 0
        self.gets = 0

    @staticmethod
    def cid_of(data: bytes) -> CID:
        """The CID :meth:`put` gives ``data`` (``ipfs add --cid-version=1``); nothing is stored."""
        return unixfs_cid(data)

    # -- files ---------------------------------------------------------------------

    async def put(self, data: bytes, *, pin: bool = True) -> CID:
        """Store ``data`` as a UnixFS file (pinned unless ``pin=False``); return its root CID."""
        await trio.lowlevel.checkpoint()
        self.puts += 1
        imp = Importer(self._store_verified)
        imp.write(data)
        cid = imp.finish()
        if pin:
            self._pins[block_key(cid)] = cid
        return cid

    async def get(self, cid: CID | str, *, providers: Sequence[object] = (), max_bytes: int | None = None) -> bytes:
        """The file's bytes, every block verified (``providers`` are ignored: nothing is fetched).

        Bounded like every store's get: by ``max_bytes`` and :attr:`max_get_bytes`.

        Raises:
            FetchError: a block of the file is not stored.
            InvalidBlockError: a stored block does not match its CID, ``cid`` is not a UnixFS
                file, or the file declares more than the bound (``reason`` ``too-large``).
        """
        await trio.lowlevel.checkpoint()
        self.gets += 1
        cid = parse_cid(cid)
        return await read_unixfs(cid, self._read, self.get_limit(max_bytes), inline=True)

    async def has(self, cid: CID | str) -> bool:
        await trio.lowlevel.checkpoint()
        return block_key(parse_cid(cid)) in self.blocks

    # -- pins and gc ---------------------------------------------------------------

    async def pin(self, cid: CID | str) -> None:
        """Pin ``cid`` recursively.

        Raises:
            FetchError: ``cid`` or a block it links to is not stored (nothing is pinned).
        """
        await trio.lowlevel.checkpoint()
        cid = parse_cid(cid)
        self._reachable([cid], strict=True)
        self._pins[block_key(cid)] = cid

    async def unpin(self, cid: CID | str) -> None:
        await trio.lowlevel.checkpoint()
        self._pins.pop(block_key(parse_cid(cid)), None)

    async def pins(self) -> list[CID]:
        await trio.lowlevel.checkpoint()
        return list(self._pins.values())

    async def gc(self) -> int:
        """Remove every block no pin reaches (dag-pb links, CIDs inside dag-cbor); return how many."""
        await trio.lowlevel.checkpoint()
        keep = self._reachable(list(self._pins.values()), strict=False)
        gone = [key for key in self.blocks if key not in keep]
        for key in gone:
            del self.blocks[key]
        return len(gone)

    # -- blocks --------------------------------------------------------------------

    async def put_block(self, cid: CID | str, data: bytes) -> None:
        """Store one block under ``cid``.

        Raises:
            InvalidBlockError: ``data`` does not hash to ``cid``, or is over 2 MiB.
        """
        await trio.lowlevel.checkpoint()
        cid = parse_cid(cid)
        verify_block(cid, data)
        self.blocks[block_key(cid)] = bytes(data)

    async def get_block(self, cid: CID | str) -> bytes:
        """One block's bytes, verified.

        Raises:
            FetchError: not stored.
            InvalidBlockError: the stored bytes do not match ``cid``.
        """
        await trio.lowlevel.checkpoint()
        return self._read(parse_cid(cid))

    # -- internals -----------------------------------------------------------------

    def _store_verified(self, cid: CID, data: bytes | memoryview) -> None:
        """The importer's sink: ``cid`` was just computed from ``data``; copy the (maybe borrowed) bytes."""
        self.blocks[block_key(cid)] = bytes(data)

    def _read(self, cid: CID) -> bytes:
        try:
            data = self.blocks[block_key(cid)]
        except KeyError:
            raise FetchError(f"{cid} is not in this MemoryStore") from None
        verify_block(cid, data)
        return data

    def _reachable(self, roots: list[CID], *, strict: bool) -> set[str]:
        """The keys of every block under ``roots``; a missing or undecodable block ends its branch
        (or, with ``strict``, raises: FetchError for a missing one)."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            cid = stack.pop()
            key = block_key(cid)
            if key in seen:
                continue
            seen.add(key)
            if not strict and key not in self.blocks:
                continue
            try:
                stack.extend(block_links(cid, self._read(cid)))
            except Exception:
                if strict:
                    raise
        return seen
