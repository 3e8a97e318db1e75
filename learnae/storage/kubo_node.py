"""A peer whose snapshots and shards live in a Kubo daemon (``storage = "kubo"``).

The peer keeps its own libp2p host for gossip, discovery and the ledger, and
its own Bitswap on that host, but only for what the ledger needs: ledger
entries (dag-cbor) are served from the ledger and fetched from other learnae
peers when filling gaps in a chain, exactly as with the embedded store. Every
UnixFS file (own snapshots, the shard, neighbours' snapshots, a dataset
manifest) goes through the daemon's RPC API instead:

============================  =================================================
``put`` (snapshots, shard)    ``ipfs add --cid-version=1 --raw-leaves``, pinned
                              in Kubo
``unpin`` (old own snapshot)  ``ipfs pin rm``
``bitswap.fetch`` + ``get``   ``block/get`` of every block of the DAG, verified
                              here; Kubo's own Bitswap finds what it lacks
                              (its peers, its DHT), within ``fetch_timeout_s``
``gc``                        the data dir's blocks only; never ``repo/gc``
ledger entries                the data dir and this host's own Bitswap
============================  =================================================

Why ``gc`` leaves Kubo alone: ``ipfs repo gc`` is repo-wide. It would remove
every unpinned block of everyone using that daemon (other peers sharing it, in
the middle of a fetch; the user's own cache), so a peer running it on its
checkpoint schedule would be a surprise. Unpinned blocks (old own snapshots,
merged neighbours' snapshots) stay in the repo until Kubo collects them itself
(``ipfs daemon --enable-gc``, or ``ipfs repo gc`` by hand).

A fetch that fails (the daemon is down, answered an error, or the deadline
passed) raises a :class:`~learnae.errors.LearnaeError` and is counted in
``bitswap.stats``; the merger logs it, counts it and merges without that
snapshot. A ``put`` that fails (the daemon went away mid-run) is not hidden:
the peer stops with a one-line error, and a restart resumes from its checkpoint.

Example::

    await check_kubo_api(cfg.kubo_api)      # UserError naming --kubo-api when nothing answers
    async with open_host(identity) as host, \\
            open_kubo_node(host, data_dir, api=cfg.kubo_api, fetch_timeout_s=10) as node:
        cid = await node.put(snapshot_bytes)                    # in Kubo, pinned
        await node.bitswap.fetch(their_cid, [author], timeout_s=10)
        theirs = await node.get(their_cid)
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from multiformats import CID

from learnae.errors import FetchError, InvalidBlockError, KuboError, LearnaeError, RemoteError, UserError
from learnae.storage.cid import parse_cid
from learnae.storage.kubo import KuboStore
from learnae.storage.node import open_embedded_node
from learnae.storage.store import EmbeddedStore, Store

__all__ = ["KuboNode", "KuboFetcher", "check_kubo_api", "open_kubo_node"]

log = logging.getLogger(__name__)

_DAG_CBOR = 0x71  # ledger entries: kept by the peer itself, never in Kubo
PROBE_TIMEOUT_S = 5.0  # how long the start-up check waits for the daemon
WRITE_TIMEOUT_S = 120.0  # one add / pin / unpin RPC (a large snapshot on a slow disk)
STASH_FILES = 8  # fetched files kept for the get that follows a fetch
STASH_BYTES = 256 * 1024 * 1024


async def check_kubo_api(api: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """Check that a Kubo RPC API answers at ``api``; return the daemon's version.

    Raises:
        UserError: nothing (or something other than Kubo) answers there; the
            one-line message names ``--kubo-api`` and the fixes (exit code 2).
    """
    probe = None
    try:
        probe = KuboStore(api, timeout_s=timeout_s)
        with trio.fail_after(timeout_s + 1):
            version = await probe.version()
    except (KuboError, FetchError, trio.TooSlowError) as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise UserError(
            f"--kubo-api {api}: no Kubo RPC API answers there ({_short(cause)}); start one with `ipfs daemon` "
            "and pass the address of its 'RPC API server listening on' line, or use --storage embedded"
        ) from exc
    finally:
        if probe is not None:
            await probe.aclose()
    log.info("storage: Kubo %s at %s", version, api)
    return version


def _short(exc: BaseException) -> str:
    text = str(exc)
    for needle, short in (("refused", "connection refused"), ("timed out", "no answer in time"),
                          ("Max retries", "cannot connect")):
        if needle in text:
            return short
    return f"{type(exc).__name__}: {text}"[:160]


class KuboFetcher:
    """What the runtime calls ``bitswap`` when storage is Kubo: fetches go through the daemon.

    Args:
        kubo: the store used for fetching (its ``timeout_s`` bounds each RPC).
        own: the peer's own running :class:`~learnae.storage.bitswap.Bitswap`
            (ledger entries); its counters are part of :attr:`stats`.
    """

    def __init__(self, kubo: KuboStore, own):
        self.kubo = kubo
        self.own = own
        self._stats: Counter = Counter()
        self._stash: OrderedDict[CID, bytes] = OrderedDict()

    @property
    def stats(self) -> Counter:
        """The own Bitswap's counters (ledger entries) plus ``kubo_*`` ones.

        ``bytes_received`` adds the bytes read from Kubo for fetched files;
        ``bytes_sent`` counts only what the own Bitswap served (Kubo serves the
        snapshots, and a shared daemon cannot tell whose they were).
        """
        out = Counter(self.own.stats)
        out.update(self._stats)
        return out

    async def fetch(self, root: CID, providers: Sequence[object] = (), *, recursive: bool = True,
                    timeout_s: float = 120.0, eager: bool = True, max_bytes: int | None = None) -> None:
        """Have Kubo bring the DAG under ``root`` (it finds providers itself); verify every block.

        ``providers`` and ``eager`` are ignored: Kubo looks among its own connections and DHT.
        The verified file is kept briefly for the :meth:`KuboNode.get` that follows.
        ``max_bytes`` bounds the file as in :meth:`KuboStore.get` (checked level by level,
        before the blocks of the next level are asked for).

        Raises:
            FetchError: not delivered within ``timeout_s`` (or Kubo did not find it).
            KuboError: the daemon is unreachable or refused.
            InvalidBlockError: ``root`` is not a UnixFS file, or it is over ``max_bytes``
                (``reason`` ``too-large``).
        """
        root = parse_cid(root)
        self._stats["kubo_fetches"] += 1
        try:
            with trio.fail_after(timeout_s):
                data = await (self.kubo.get(root, max_bytes=max_bytes) if recursive else self.kubo.get_block(root))
        except trio.TooSlowError:
            self._stats["kubo_fetch_timeouts"] += 1
            raise FetchError(f"Kubo at {self.kubo.api} did not deliver {root} within {timeout_s} s") from None
        except RemoteError as exc:  # countable by reason, like the embedded Bitswap's rejections
            self._stats["kubo_fetch_errors"] += 1
            self._stats[f"rejected:{exc.reason}"] += 1
            raise
        except LearnaeError:
            self._stats["kubo_fetch_errors"] += 1
            raise
        self._stats["bytes_received"] += len(data)
        if recursive and len(data) <= STASH_BYTES:
            self._stash[root] = data
            while len(self._stash) > STASH_FILES or sum(map(len, self._stash.values())) > STASH_BYTES:
                self._stash.popitem(last=False)

    def take(self, root: CID) -> bytes | None:
        """The file :meth:`fetch` just verified, once (None when not kept)."""
        return self._stash.pop(root, None)


class KuboNode(Store):
    """A peer's store with ``storage = "kubo"``: UnixFS files in Kubo, ledger entries local.

    Dag-cbor blocks (ledger entries) go to ``local``, an :class:`EmbeddedStore`
    on the data dir whose fetcher is the peer's own Bitswap; everything else goes
    to Kubo. :meth:`gc` collects ``local`` only (see the module docstring).

    Args:
        writer: the Kubo store for add, pin and unpin (a generous RPC timeout).
        fetcher: the :class:`KuboFetcher` (its store's RPC timeout is the fetch deadline).
        local: the data dir's store, fetching over the own Bitswap.
        fetch_timeout_s: deadline of a ``get`` that was not preceded by a fetch.
    """

    def __init__(self, writer: KuboStore, fetcher: KuboFetcher, local: EmbeddedStore, *, fetch_timeout_s: float):
        self.kubo = writer
        self.bitswap = fetcher
        self.local = local
        self.fetch_timeout_s = fetch_timeout_s

    @staticmethod
    def _is_local(cid: CID) -> bool:
        return cid.codec.code == _DAG_CBOR

    async def put(self, data: bytes, *, pin: bool = True) -> CID:
        return await self.kubo.put(data, pin=pin)

    async def get(self, cid: CID, *, providers: Sequence[object] = (), max_bytes: int | None = None) -> bytes:
        cid = parse_cid(cid)
        limit = self.get_limit(max_bytes)
        if self._is_local(cid):  # a ledger entry is no UnixFS file, and never in Kubo: say so at once
            return await self.local.get(cid, providers=providers, max_bytes=limit)
        data = self.bitswap.take(cid)
        if data is not None and len(data) > limit:  # fetched earlier under a looser bound
            raise InvalidBlockError(f"UnixFS file {cid} has {len(data)} bytes, over the {limit}-byte limit",
                                    reason="too-large")
        if data is None:
            await self.bitswap.fetch(cid, providers, timeout_s=self.fetch_timeout_s, max_bytes=limit)
            data = self.bitswap.take(cid)
        if data is None:  # larger than the stash: read it again (from Kubo's repo now)
            with trio.fail_after(self.fetch_timeout_s):
                data = await self.bitswap.kubo.get(cid, max_bytes=limit)
        return data

    async def has(self, cid: CID) -> bool:
        cid = parse_cid(cid)
        return await (self.local.has(cid) if self._is_local(cid) else self.kubo.has(cid))

    async def pin(self, cid: CID) -> None:
        cid = parse_cid(cid)
        await (self.local.pin(cid) if self._is_local(cid) else self.kubo.pin(cid))

    async def unpin(self, cid: CID) -> None:
        cid = parse_cid(cid)
        await (self.local.unpin(cid) if self._is_local(cid) else self.kubo.unpin(cid))

    async def pins(self) -> list[CID]:
        """Kubo's recursive pins (every user's, if the daemon is shared) and the local ones."""
        return [*await self.kubo.pins(), *await self.local.pins()]

    async def gc(self) -> int:
        """Collect the data dir's unpinned blocks; Kubo's repo is left to Kubo."""
        return await self.local.gc()

    async def put_block(self, cid: CID, data: bytes) -> None:
        cid = parse_cid(cid)
        await (self.local.put_block(cid, data) if self._is_local(cid) else self.kubo.put_block(cid, data))

    async def get_block(self, cid: CID) -> bytes:
        """A ledger entry from the data dir or other learnae peers; any other block from Kubo."""
        cid = parse_cid(cid)
        if self._is_local(cid):
            return await self.local.get_block(cid)
        with trio.fail_after(self.fetch_timeout_s):
            return await self.bitswap.kubo.get_block(cid)

    async def aclose(self) -> None:
        await self.kubo.aclose()
        await self.bitswap.kubo.aclose()


@asynccontextmanager
async def open_kubo_node(host, data_dir: str | Path, *, api: str, fetch_timeout_s: float = 120.0,
                         serve=None, **bitswap_opts) -> AsyncIterator[KuboNode]:
    """Run the peer's own Bitswap (ledger entries) on ``host`` and store files in Kubo at ``api``.

    Takes the arguments of :func:`~learnae.storage.node.open_embedded_node`
    (``serve`` wraps what the own Bitswap answers from, e.g. ledger entries),
    plus ``api``. Call :func:`check_kubo_api` first for a clear error when no
    daemon answers.

    Yields:
        the :class:`KuboNode`; ``node.bitswap`` fetches through Kubo.
    """
    async with open_embedded_node(host, data_dir, fetch_timeout_s=fetch_timeout_s, serve=serve,
                                  **bitswap_opts) as local:
        writer = KuboStore(api, timeout_s=max(WRITE_TIMEOUT_S, fetch_timeout_s))
        fetcher = KuboFetcher(KuboStore(api, timeout_s=fetch_timeout_s), local.bitswap)
        node = KuboNode(writer, fetcher, local, fetch_timeout_s=fetch_timeout_s)
        try:
            yield node
        finally:
            with trio.CancelScope(shield=True):
                await node.aclose()
