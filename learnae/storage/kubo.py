"""The Kubo backend: the :class:`~learnae.storage.store.Store` interface over a daemon's RPC API.

For users who already run IPFS (or pin to a cluster): ``storage = "kubo"``,
``kubo_api = "/ip4/127.0.0.1/tcp/5001"``. It uses ``ipfshttpclient``, with the
client constructed directly, because ``ipfshttpclient.connect()`` refuses every
daemon newer than 0.7. Content is added as ``ipfs add --cid-version=1`` (raw
leaves, 256 KiB chunks), so CIDs equal the embedded store's. Every byte read
back is verified against the CID here, not trusted to the daemon.

Example:
    >>> store = KuboStore("/ip4/127.0.0.1/tcp/5001")       # doctest: +SKIP
    >>> cid = trio.run(store.put, b"weights")              # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import warnings

import trio
from multiformats import CID

from learnae.errors import FetchError, KuboError, LearnaeError
from learnae.storage.cid import parse_cid, verify_block
from learnae.storage.store import DEFAULT_MAX_GET_BYTES, Store, read_unixfs
from learnae.storage.unixfs import _MAX_DEPTH, FileSizeGuard
from learnae.threads import run_sized

__all__ = ["KuboStore"]

log = logging.getLogger(__name__)

# ipfshttpclient 0.7 passes urllib3 an argument it deprecates: a warning per call, on stderr
warnings.filterwarnings("ignore", "The 'strict' parameter", FutureWarning)

_CONCURRENT_GETS = 8  # block/get calls in flight during one get


class KuboStore(Store):
    """A :class:`Store` backed by a running Kubo daemon.

    Args:
        api: the RPC API multiaddr, e.g. ``/ip4/127.0.0.1/tcp/5001``.
        timeout_s: deadline of each RPC call (a ``get`` of content the daemon
            must fetch from the network waits this long).
        max_get_bytes: the bound of every :meth:`get` (default 1 GiB).

    Raises:
        KuboError: (from every method) the daemon is unreachable or answered an error.
    """

    def __init__(self, api: str = "/ip4/127.0.0.1/tcp/5001", *, timeout_s: float = 60.0,
                 max_get_bytes: int = DEFAULT_MAX_GET_BYTES):
        import ipfshttpclient

        self.api = api
        self.timeout_s = timeout_s
        self.max_get_bytes = max_get_bytes
        try:
            self._client = ipfshttpclient.Client(addr=api, timeout=timeout_s)
        except Exception as exc:
            raise KuboError(f"cannot use Kubo RPC API {api}: {exc}") from exc

    async def _call(self, what: str, fn):
        import ipfshttpclient.exceptions as ipe

        def run():
            try:
                return fn(self._client)
            except ipe.ErrorResponse as exc:
                if "not found" in str(exc).lower():
                    raise FetchError(f"Kubo at {self.api}: {what}: {exc}") from exc
                raise KuboError(f"Kubo at {self.api} refused {what}: {exc}") from exc
            except ipe.TimeoutError as exc:
                raise FetchError(f"Kubo at {self.api}: {what} timed out after {self.timeout_s} s") from exc
            except ipe.Error as exc:
                raise KuboError(
                    f"Kubo RPC API {self.api} is unreachable ({type(exc).__name__}: {exc}); "
                    "start the daemon (`ipfs daemon`) or set kubo_api"
                ) from exc

        # abandon_on_cancel: a caller's deadline (trio.fail_after) ends the wait at once; the
        # worker thread finishes on its own within timeout_s and its answer is dropped.
        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)

    async def version(self) -> str:
        """The daemon's version (``/api/v0/version``): a cheap "is it there" probe."""
        res = await self._call("version", lambda c: c.version())
        return str(res.get("Version", "?"))

    async def put(self, data: bytes, *, pin: bool = True) -> CID:
        opts = {"cid-version": 1, "raw-leaves": "true", "chunker": "size-262144", "pin": str(pin).lower()}
        h = await self._call("add", lambda c: c.add_bytes(data, opts=opts))
        return parse_cid(h)

    async def get_block(self, cid: CID) -> bytes:
        cid = parse_cid(cid)
        data = await self._call(f"block/get {cid}", lambda c: c.block.get(str(cid)))
        verify_block(cid, data)  # InvalidBlockError: the daemon returned something else
        return data

    async def get(self, cid: CID, *, providers=(), max_bytes: int | None = None) -> bytes:
        cid = parse_cid(cid)  # providers: Kubo finds its own (its DHT and connected peers)
        # Walk the DAG ourselves so every block is verified here: one block/get per block, a
        # level at a time, a few at once. Every wait is in trio, so a caller's deadline applies.
        # Each level's size claims are checked before the next level is asked for, and every
        # block is asked for once, however often the DAG links it.
        limit = self.get_limit(max_bytes)
        guard = FileSizeGuard(cid, limit)
        blocks: dict[CID, bytes] = {}
        failed: list[LearnaeError] = []
        limiter = trio.CapacityLimiter(_CONCURRENT_GETS)

        async def load(c: CID, scope: trio.CancelScope) -> None:
            try:
                async with limiter:
                    blocks[c] = await self.get_block(c)
            except LearnaeError as exc:  # the first failure ends the walk, raised as itself
                failed.append(exc)
                scope.cancel()

        def children(level: list[CID]) -> list[CID]:
            return [child for c in level for child in guard.visit(c, len(blocks[c]), blocks[c])]

        level = [cid]
        for _ in range(_MAX_DEPTH + 1):  # read_unixfs below refuses anything deeper
            async with trio.open_nursery() as nursery:
                for c in level:
                    nursery.start_soon(load, c, nursery.cancel_scope)
            if failed:
                raise failed[0]
            level = await run_sized(children, sum(len(blocks[c]) for c in level), level)
            if not level:
                break
        return await read_unixfs(cid, blocks.__getitem__, limit)

    async def has(self, cid: CID) -> bool:
        cid = parse_cid(cid)
        try:
            await self._call("block/stat", lambda c: c.block.stat(str(cid), opts={"offline": "true"}))
        except FetchError:
            return False
        except KuboError as exc:
            if "offline" in str(exc) or "not found" in str(exc).lower():
                return False
            raise
        return True

    async def pin(self, cid: CID) -> None:
        cid = parse_cid(cid)
        await self._call(f"pin/add {cid}", lambda c: c.pin.add(str(cid)))

    async def unpin(self, cid: CID) -> None:
        cid = parse_cid(cid)
        try:
            await self._call(f"pin/rm {cid}", lambda c: c.pin.rm(str(cid)))
        except KuboError as exc:
            if "not pinned" not in str(exc):
                raise

    async def pins(self) -> list[CID]:
        res = await self._call("pin/ls", lambda c: c.pin.ls(type="recursive"))
        return [parse_cid(k) for k in res["Keys"]]

    async def gc(self) -> int:
        res = await self._call("repo/gc", lambda c: c.repo.gc())
        return sum(1 for r in res if r.get("Key"))

    async def put_block(self, cid: CID, data: bytes) -> None:
        cid = parse_cid(cid)
        verify_block(cid, data)
        opts = {"cid-codec": cid.codec.name, "mhtype": "sha2-256"}
        res = await self._call("block/put", lambda c: c.block.put(io.BytesIO(data), opts=opts))
        if parse_cid(res["Key"]).digest != cid.digest:
            raise KuboError(f"Kubo stored {res['Key']} for block {cid}")

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._client.close)
