"""Fetching a DAG over Bitswap: providers, a sliding window of wants, deadlines, retries.

Providers are tried in this order: the ones the caller names (the
announcement's author first), then every connected peer, then whatever the DHT
hook (``Bitswap.find_providers``) returns once the others are exhausted. The
root is asked as WANT-BLOCK of the first provider and as WANT-HAVE of the rest;
every provider that answers HAVE or delivers a block joins the working set,
and the remaining blocks are spread over that set, at most ``window_blocks``
outstanding per provider. A want unanswered after ``request_timeout_s``, or
answered DONT_HAVE, is asked of the next provider (a provider that times out
three times is dropped; a block arriving from a provider renews the deadlines of its
other wants, which are queued behind it). Every block is verified (its CID is recomputed from
its bytes), written straight to the block store, and its links are queued, each
block once however often the DAG links it, so memory holds at most the window,
never the file.

With ``max_bytes`` the DAG must be a UnixFS file of at most that size, and a
:class:`~learnae.storage.unixfs.FileSizeGuard` checks every block before its
children are asked for: the root's declared size first, then that every child is
as large as its parent declares. A DAG claiming too much, or linking one block
many times beyond what its size allows (a "DAG bomb"), is refused with
:class:`~learnae.errors.InvalidBlockError` (``reason`` ``too-large`` or
``bad-unixfs``) after the blocks that show it, never after the file; the blocks
this fetch received are then deleted again. The bytes received are counted too:
a fetch never takes in more than ``max_bytes`` plus the structure the file needs
(:func:`~learnae.storage.unixfs.structure_allowance`), give or take the one
window of blocks already on their way.

Example:
    stats = await bitswap.fetch(cid, ["/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW..."], timeout_s=30)
    stats.blocks, stats.bytes, stats.providers
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from multiformats import CID

from learnae.errors import FetchError, InvalidBlockError, StoreError
from learnae.storage.bitswap.message import DONT_HAVE, HAVE, WANT_BLOCK, WANT_HAVE, WantEntry
from learnae.storage.cid import RAW, parse_cid
from learnae.storage.unixfs import FileSizeGuard, structure_allowance

__all__ = ["FetchStats", "fetch_dag"]

log = logging.getLogger(__name__)
_MAX_STRIKES = 3


@dataclass(frozen=True, slots=True)
class FetchStats:
    """What a fetch did: blocks and bytes brought over the network, from whom, how long."""

    root: CID
    blocks: int
    bytes: int
    local_blocks: int
    providers: tuple[str, ...]
    elapsed_s: float


@dataclass(slots=True)
class _Want:
    cid: CID
    peer: object | None = None
    deadline: float = 0.0
    asked: set = field(default_factory=set)
    rounds: int = 0


class _Session:
    def __init__(self, bitswap, root: CID, recursive: bool, eager: bool = True, max_bytes: int | None = None):
        self.bs = bitswap
        self.root = root
        self.recursive = recursive
        self.eager = eager
        # with a bound, the DAG is a UnixFS file whose size claims are checked block by block
        self.guard = FileSizeGuard(root, max_bytes) if recursive and max_bytes is not None else None
        self.byte_limit = None if max_bytes is None else max_bytes + structure_allowance(max_bytes)
        self.queued: set[tuple[int, bytes]] = {(root.codec.code, bytes(root.digest))}  # each block asked once
        self.received: list[CID] = []  # blocks this fetch stored: deleted again if the DAG is refused
        self.send_ch, self.recv_ch = trio.open_memory_channel(max(4, 2 * bitswap.window_blocks))
        self.order: list = []
        self.good: set = set()
        self.strikes: collections.Counter = collections.Counter()
        self.inflight: dict[bytes, _Want] = {}
        self.per_peer: collections.Counter = collections.Counter()
        self.state: dict[bytes, _Want] = {}  # every want not yet served, with who was asked
        self.todo: collections.deque[CID] = collections.deque()
        self.listening: set[CID] = set()
        self.have_asked: dict[bytes, set] = {}
        self.dht_asked = False
        self.filling: set = set()  # providers whose window is being topped up in this pass
        self.blocks = self.bytes = self.local = 0
        self.from_peers: set[str] = set()

    async def deliver(self, item) -> None:
        try:
            await self.send_ch.send(item)  # blocks while the session is busy: backpressure
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the fetch has ended

    # -- providers -----------------------------------------------------------------

    async def add_providers(self, providers: Sequence[object]) -> None:
        for p in providers:
            pid = await self._resolve(p)
            if pid is not None and pid not in self.order and pid != self.bs.host.get_id():
                self.order.append(pid)

    async def _resolve(self, p) -> ID | None:
        try:
            if isinstance(p, ID):
                return p
            if isinstance(p, PeerInfo):
                info = p
            elif isinstance(p, str) and not p.startswith("/"):
                return ID.from_base58(p)
            else:
                info = info_from_p2p_addr(multiaddr.Multiaddr(str(p)))
            with trio.fail_after(self.bs.connect_timeout_s):
                await self.bs.host.connect(info)
            return info.peer_id
        except (trio.TooSlowError, Exception) as exc:  # noqa: BLE001 - an unreachable provider is skipped
            log.info("bitswap: provider %s unusable: %r", p, exc)
            return None

    def _candidates(self, w: _Want) -> list:
        return [p for p in self.order if p not in w.asked and self.strikes[p] < _MAX_STRIKES]

    # -- wants ---------------------------------------------------------------------

    def _pick(self, w: _Want):
        """The provider to ask ``w`` next, or None to wait (all busy) / give up (none left)."""
        cands = self._candidates(w)
        good = [p for p in cands if p in self.good]
        pool = good or cands[:1]
        # A provider's window is refilled once half of it has drained, in one go:
        # one want message per 16 blocks instead of one per block.
        free = [p for p in pool if self.per_peer[p] < self.bs.window_blocks
                and (p in self.filling or self.per_peer[p] <= self.bs.window_blocks // 2)]
        if not free:
            return None
        return min(free, key=lambda p: (self.per_peer[p], self.order.index(p)))

    def _send(self, w: _Want, peer) -> None:
        self.filling.add(peer)
        key = w.cid.digest
        w.peer, w.deadline = peer, trio.current_time() + self.bs.request_timeout_s
        w.asked.add(peer)
        self.per_peer[peer] += 1
        self.inflight[key] = w
        self.state[key] = w
        self._listen(w.cid)
        self.bs.send_wants(peer, [WantEntry(w.cid, WANT_BLOCK, send_dont_have=True)])

    def _listen(self, cid: CID) -> None:
        if cid not in self.listening:
            self.listening.add(cid)
            self.bs.listen(cid, self)

    def _release(self, w: _Want) -> None:
        if w.peer is not None:
            self.per_peer[w.peer] -= 1
            w.peer = None

    async def _retry(self, w: _Want, why: str) -> None:
        """Ask ``w`` of another provider (or again of the same ones, up to 3 rounds)."""
        self._release(w)
        if not self._candidates(w) and not self.dht_asked and self.bs.find_providers is not None:
            self.dht_asked = True
            try:
                with trio.fail_after(self.bs.request_timeout_s * 2):
                    found = await self.bs.find_providers(w.cid)
                await self.add_providers(found)
            except (trio.TooSlowError, Exception) as exc:  # noqa: BLE001 - the DHT is best effort
                log.info("bitswap: provider lookup for %s failed: %r", w.cid, exc)
        if not self._candidates(w):
            w.rounds += 1
            live = [p for p in self.order if self.strikes[p] < _MAX_STRIKES]
            if w.rounds >= 3 or not live:
                raise FetchError(f"no provider delivered block {w.cid} of {self.root} ({why}); "
                                 f"asked {len(self.order)} peer(s)")
            w.asked.clear()
        self.inflight.pop(w.cid.digest, None)
        self.todo.appendleft(w.cid)

    async def _schedule(self) -> None:
        try:
            await self._schedule_pass()
        finally:
            self.filling.clear()

    async def _schedule_pass(self) -> None:
        while self.todo:
            cid = self.todo[0]
            key = cid.digest
            if key in self.inflight:
                self.todo.popleft()
                continue
            if await self._take_local(cid):
                self.todo.popleft()
                continue
            w = self.state.get(key) or _Want(cid)
            peer = self._pick(w)
            if peer is None:
                if not self._candidates(w):
                    self.todo.popleft()
                    await self._retry(w, "no provider left")
                    continue
                return  # every provider's window is full
            self.todo.popleft()
            self._send(w, peer)

    async def _take_local(self, cid: CID) -> bool:
        if not self.bs.blocks.has(cid):
            return False
        if cid.codec.code == RAW:  # no links to read; it is verified when the file is read
            self.local += 1
            self._queue_links(cid, self.bs.blocks.size(cid), None)
            return True
        try:
            data = await trio.to_thread.run_sync(self.bs.blocks.get_block, cid)
        except StoreError:  # corrupt (now quarantined) or gone: fetch it
            return False
        self.local += 1
        self._queue_links(cid, len(data), data)
        return True

    def _queue_links(self, cid: CID, size: int, data: bytes | None) -> None:
        """Queue the children of a block we now hold (``data`` None: a raw leaf, no children)."""
        if not self.recursive:
            return
        if self.guard is not None:  # checks the block's size claims before its children are asked for
            children = self.guard.visit(cid, size, data)
        elif data is None:
            return
        else:
            try:
                links = self.bs.blocks.links(cid, data)
            except InvalidBlockError:
                raise
            except Exception as exc:  # noqa: BLE001 - undecodable dag-cbor from a verified block
                raise InvalidBlockError(f"block {cid} does not decode: {exc}", reason="bad-block") from None
            # a DAG may link one block many times: walk it once, or the walk grows with the links
            children = []
            for link in links:
                key = (link.codec.code, bytes(link.digest))
                if key not in self.queued:
                    self.queued.add(key)
                    children.append(link)
        self.todo.extendleft(reversed(children))

    # -- the loop --------------------------------------------------------------------

    async def _on_block(self, peer, cid: CID, size: int, data: bytes | None) -> None:
        """A wanted block arrived; the engine has verified and stored it already."""
        key = cid.digest
        w = self.state.pop(key, None)
        if w is None:
            return  # a duplicate or a late answer to a want already served
        if self.inflight.pop(key, None) is not None:
            self._release(w)
        elif w.cid in self.todo:  # answered late, after being queued for a retry
            self.todo.remove(w.cid)
        self.blocks += 1
        self.bytes += size
        self.received.append(cid)
        if self.byte_limit is not None and self.bytes > self.byte_limit:
            raise InvalidBlockError(f"{self.root}: received {self.bytes} bytes, over the {self.byte_limit} "
                                    "a file within the bound can need", reason="too-large")
        # the provider is making progress: what it still owes us is queued behind
        # this block, not lost, so its other wants get a fresh deadline
        deadline = trio.current_time() + self.bs.request_timeout_s
        for other in self.inflight.values():
            if other.peer == peer:
                other.deadline = deadline
        self.good.add(peer)
        self.strikes[peer] = 0
        self.from_peers.add(peer)
        others = (w.asked | self.have_asked.pop(cid.digest, set())) - {peer}
        for other in others:
            self.bs.send_wants(other, [WantEntry(cid, cancel=True)])
        self._queue_links(cid, size, data)

    async def _on_presence(self, peer, cid: CID, kind: int) -> None:
        if kind == HAVE:
            self.good.add(peer)
            return
        w = self.inflight.get(cid.digest)
        if kind == DONT_HAVE and w is not None and w.peer == peer:
            await self._retry(w, f"{peer} has not got it")

    async def _check_deadlines(self) -> None:
        now = trio.current_time()
        for w in [w for w in self.inflight.values() if w.peer is not None and w.deadline <= now]:
            self.strikes[w.peer] += 1
            self.bs.stats["want_timeouts"] += 1
            await self._retry(w, f"{w.peer} did not answer in {self.bs.request_timeout_s} s")

    async def run(self) -> None:
        if not await self._take_local(self.root):
            if not self.order and self.bs.find_providers is not None:
                self.dht_asked = True
                with trio.move_on_after(self.bs.request_timeout_s * 2):
                    await self.add_providers(await self.bs.find_providers(self.root))
            if not self.order:
                raise FetchError(f"{self.root} is not stored locally and no provider is known or connected")
            first = self.order[0]
            w = _Want(self.root)
            self._send(w, first)
            others = self.order[1:] if self.eager else []
            if others:
                self.have_asked[self.root.digest] = set(others)
                for p in others:
                    self.bs.send_wants(p, [WantEntry(self.root, WANT_HAVE, send_dont_have=True)])
        while True:
            await self._schedule()
            if not self.todo and not self.inflight:
                return
            deadlines = [w.deadline for w in self.inflight.values() if w.peer is not None]
            wake_at = min(deadlines) if deadlines else trio.current_time() + self.bs.request_timeout_s
            with trio.move_on_at(wake_at):
                item = await self.recv_ch.receive()
                if item[0] == "block":
                    await self._on_block(*item[1:])
                else:
                    await self._on_presence(*item[1:])
            await self._check_deadlines()

    def close(self) -> None:
        self.recv_ch.close()
        for cid in self.listening:
            self.bs.unlisten(cid, self)
        for w in self.inflight.values():
            if w.peer is not None:
                self.bs.send_wants(w.peer, [WantEntry(w.cid, cancel=True)])


async def fetch_dag(bitswap, root: CID, providers: Sequence[object] = (), *, recursive: bool = True,
                    timeout_s: float = 120.0, eager: bool = True, max_bytes: int | None = None) -> FetchStats:
    """Fetch ``root`` and (if ``recursive``) its whole DAG into ``bitswap.blocks``.

    Args:
        bitswap: a running :class:`~learnae.storage.bitswap.Bitswap`.
        root: the CID to fetch.
        providers: peers to ask first, in order: full multiaddrs
            (``/ip4/.../tcp/.../p2p/<id>``, dialled), peer ID strings or
            ``libp2p`` ``ID``/``PeerInfo`` objects. Connected peers follow.
        recursive: also fetch every block ``root`` links to.
        timeout_s: deadline for the whole fetch.
        eager: also ask every other candidate for the root at once (WANT-HAVE), so a
            second source is known early. Off, the others are asked only when the
            first provider fails (DONT_HAVE or no answer): one want and one block on
            the wire when the named provider has the DAG, as for a snapshot fetched
            from its author.
        max_bytes: the DAG must be a UnixFS file of at most this many bytes
            (e.g. :func:`~learnae.storage.snapshot.snapshot_size_bound`); its size
            claims are checked block by block, before children are asked for
            (see the module docstring). None: any DAG, any size.

    Raises:
        FetchError: no provider, or a block no provider delivered in time.
        InvalidBlockError: a verified block is not decodable as its codec; with
            ``max_bytes``, the DAG is no UnixFS file (``not-unixfs``), its sizes do
            not add up (``bad-unixfs``) or it is over the bound (``too-large``).
            Counted in ``bitswap.stats["rejected:<reason>"]``; the blocks this
            fetch received are deleted.
    """
    root = parse_cid(root)
    started = time.monotonic()
    session = _Session(bitswap, root, recursive, eager, max_bytes)
    refused: InvalidBlockError | None = None
    try:
        with trio.fail_after(timeout_s):
            await session.add_providers(providers)
            await session.add_providers(bitswap.host.get_connected_peers())
            await session.run()
    except trio.TooSlowError:
        raise FetchError(f"fetching {root} took longer than {timeout_s} s "
                         f"({session.blocks} blocks received)") from None
    except InvalidBlockError as exc:
        refused = exc
        raise
    finally:
        session.close()
        if refused is not None:
            bitswap.stats[f"rejected:{refused.reason}"] += 1
            log.warning("bitswap: refused %s: %s", root, refused)
            if session.guard is not None and session.received:
                # nothing of a refused DAG is kept (it was not wanted before this fetch: it was missing)
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_forget, bitswap.blocks, session.received)
    return FetchStats(root, session.blocks, session.bytes, session.local,
                      tuple(sorted(str(p) for p in session.from_peers)), time.monotonic() - started)


def _forget(blocks, cids: list[CID]) -> None:
    """Delete blocks a refused fetch stored (not a pinned root: a concurrent ``put`` may have made it)."""
    for cid in cids:
        if not blocks.is_pinned(cid):
            blocks.delete_block(cid)
