"""Bitswap 1.2.0 on a running py-libp2p host: the wire, the server, the dispatcher.

Why not py-libp2p's shipped ``libp2p.bitswap`` (0.8.1, docs/storage.md): it answers
on the requester's stream, and go-bitswap (Kubo) only reads answers from
streams the *responder* opens, so Kubo cannot fetch from it; and it stalls ~1 s
every 32 blocks. Here, as in go-bitswap, every peer gets one long-lived
outbound stream that carries everything we send it (wants, blocks, presences),
and every inbound stream is only read. Replies therefore always travel on a
stream the responder opened.

Serving: WANT-HAVE gets HAVE (or DONT_HAVE when asked for it), WANT-BLOCK gets
the block (loaded from disk and verified only when it is about to be sent, so a
long wantlist costs no memory), CANCEL removes what is still queued.

Receiving: a block's CID is computed from its own bytes (see
:mod:`.message`), so only blocks that really are a wanted CID reach a fetch
session; everything else is counted in :attr:`Bitswap.stats` and dropped.
Fetching a DAG is :meth:`Bitswap.fetch` (:mod:`.fetch`).

Example:
    async with Bitswap(host, blockstore).run() as bitswap:
        await bitswap.fetch(cid, providers=["/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW..."])
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import trio
from multiformats import CID

from learnae.errors import FetchError, InvalidBlockError, StoreError
from learnae.storage.bitswap.message import (
    DONT_HAVE, HAVE, WANT_HAVE, Message, WantEntry, block_cid, decode_message, encode_message,
)
from learnae.storage.cid import RAW
from learnae.storage.blockstore import BlockStore
from learnae.storage.cid import MAX_BLOCK_BYTES
from learnae.threads import run_sized

__all__ = ["Bitswap", "PROTOCOLS", "ProviderLookup"]

log = logging.getLogger(__name__)

PROTOCOLS = ("/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0", "/ipfs/bitswap")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # go-bitswap's limit
_SEND_BATCH_BYTES = 1024 * 1024
_MAX_QUEUED = 4096  # per peer; a longer wantlist is truncated (counted)
# py-libp2p's yamux starts every stream with a 256 KiB receive window and only
# grows it when window updates come within 4 RTTs, which a Python event loop
# rarely manages; the sender then stalls 10 ms at every empty window (one per
# 256 KiB block). We open the window of streams that carry blocks to us up front.
RECV_WINDOW_BYTES = 8 * 1024 * 1024

# async find_providers(cid) -> peer IDs or multiaddrs; the gossip engineer's DHT plugs in here
ProviderLookup = Callable[[CID], Awaitable[Sequence[object]]]


class _Reader:
    """Length-prefixed messages from a stream, with one growing buffer."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self, need: int) -> bool:
        while len(self.buf) < need:
            chunk = await self.stream.read(max(need - len(self.buf), 256 * 1024))
            if not chunk:
                return False
            self.buf += chunk
        return True

    async def read_message(self, body_timeout_s: float) -> bytes | None:
        """The next message body, or None at a clean end of stream."""
        n = shift = i = 0
        while True:
            if i >= len(self.buf) and not await self._fill(i + 1):
                if i == 0:
                    return None
                raise InvalidBlockError("stream ended inside a length prefix", reason="bad-bitswap-message")
            b = self.buf[i]
            n |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if shift > 35:
                raise InvalidBlockError("overlong length prefix", reason="bad-bitswap-message")
        if n > MAX_MESSAGE_BYTES:
            raise InvalidBlockError(f"message of {n} bytes is over the 4 MiB limit", reason="message-too-large")
        with trio.fail_after(body_timeout_s):
            if not await self._fill(i + n):
                raise InvalidBlockError("stream ended inside a message", reason="bad-bitswap-message")
        with memoryview(self.buf) as view:  # one copy, not two
            body = bytes(view[i:i + n])
        del self.buf[:i + n]
        return body


class _Outbox:
    """What we still have to send one peer, and its outbound stream."""

    def __init__(self, peer_id):
        self.peer_id = peer_id
        self.wants: list[WantEntry] = []
        self.presences: list[tuple[CID, int]] = []
        self.blocks: collections.deque[CID] = collections.deque()
        self.wake = trio.Event()
        self.stream = None
        self.v100 = False
        self.scope = trio.CancelScope()  # cancelled when the peer is unreachable

    def __bool__(self) -> bool:
        return bool(self.wants or self.presences or self.blocks)

    def cancel(self, cid: CID) -> None:
        if cid in self.blocks:
            self.blocks.remove(cid)
        self.presences = [p for p in self.presences if p[0] != cid]


class Bitswap:
    """Bitswap 1.2.0 client and server on an already running py-libp2p host.

    Args:
        host: a started py-libp2p host (e.g. from ``learnae.gossip.open_host``).
        blocks: the block store to serve from and fetch into.
        find_providers: optional ``async find_providers(cid)`` (the DHT), asked
            when neither the given providers nor the connected peers have a block.
        window_blocks: wants outstanding per provider while fetching.
        request_timeout_s: how long one want may stay unanswered before it is
            asked of another provider.
        connect_timeout_s: deadline for dialling a provider and opening a stream.
    """

    def __init__(self, host, blocks: BlockStore, *, find_providers: ProviderLookup | None = None,
                 window_blocks: int = 32, request_timeout_s: float = 5.0, connect_timeout_s: float = 5.0):
        self.host = host
        self.blocks = blocks
        self.find_providers = find_providers
        self.window_blocks = window_blocks
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.stats: collections.Counter[str] = collections.Counter()
        self._outboxes: dict[object, _Outbox] = {}
        self._listeners: dict[bytes, set] = {}  # multihash -> fetch sessions waiting for it
        self._nursery: trio.Nursery | None = None
        self._inbound: set = set()  # streams peers opened to us; reset when we stop

    # -- lifecycle ---------------------------------------------------------------

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Bitswap]:
        """Serve and fetch until the block exits."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for proto in PROTOCOLS:
                self.host.set_stream_handler(proto, self._handle_stream)
            try:
                yield self
            finally:
                for proto in PROTOCOLS:  # replaced, not removed: see _refuse
                    self.host.set_stream_handler(proto, _refuse)
                nursery.cancel_scope.cancel()
                self._nursery = None
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    for box in list(self._outboxes.values()):  # senders may drop theirs meanwhile
                        await _close(box.stream)
                    for stream in list(self._inbound):  # their reader tasks belong to the host
                        await _reset(stream)
                self._outboxes.clear()
                self._listeners.clear()

    # -- receiving ---------------------------------------------------------------

    async def _handle_stream(self, stream) -> None:
        peer = stream.muxed_conn.peer_id
        reader = _Reader(stream)
        self._inbound.add(stream)
        await _open_recv_window(stream, RECV_WINDOW_BYTES)
        try:
            while self._nursery is not None:
                body = await reader.read_message(body_timeout_s=60.0)
                if body is None:
                    break
                try:
                    msg = decode_message(body, verify=False)
                except InvalidBlockError as exc:
                    self._reject(peer, exc)
                    continue
                await self._on_message(peer, msg)
        except InvalidBlockError as exc:
            self._reject(peer, exc)
            await _reset(stream)
        except (trio.TooSlowError, Exception) as exc:  # noqa: BLE001 - a peer going away is normal
            log.debug("bitswap stream from %s ended: %r", peer, exc)
        finally:
            self._inbound.discard(stream)
            await _close(stream)

    def _reject(self, peer, exc: InvalidBlockError) -> None:
        self.stats[f"rejected:{exc.reason}"] += 1
        log.warning("bitswap: rejected data from %s: %s", peer, exc)

    def _accept_blocks(self, raw_blocks) -> tuple[list[tuple[CID, int, bytes | None]], collections.Counter]:
        """In a worker thread: hash each block, keep only wanted ones, store them.

        Returns (cid, size, data) per stored block, ``data`` only for blocks with
        links (dag-pb, dag-cbor), which the fetch session must read; and the
        rejections to count (counted on the event loop, not here).
        """
        out, rejected = [], collections.Counter()
        for prefix, data in raw_blocks:
            if len(data) > MAX_BLOCK_BYTES:
                rejected["rejected:block-too-large"] += 1
                continue
            cid = block_cid(prefix, data)
            if cid is None:
                rejected["rejected:unsupported-block-prefix"] += 1
                continue
            if cid.digest not in self._listeners:  # not wanted (or not the bytes we asked for)
                rejected["unsolicited_blocks"] += 1
                continue
            self.blocks.put_verified(cid, data, check_exists=False)  # CID computed from these bytes; wanted = missing
            out.append((cid, len(data), None if cid.codec.code == RAW else bytes(data)))
        return out, rejected

    async def _on_message(self, peer, msg: Message) -> None:
        if msg.rejected:
            self.stats["rejected:unsupported-block-prefix"] += msg.rejected
        if msg.wants:
            self.stats["wants_received"] += len(msg.wants)
            self._serve(peer, msg.wants)
        stored: list = []
        if msg.raw_blocks:
            nbytes = sum(len(b[-1]) for b in msg.raw_blocks)
            stored, rejected = await run_sized(self._accept_blocks, nbytes, msg.raw_blocks)
            if rejected:
                self.stats.update(rejected)
                log.info("bitswap: dropped blocks from %s: %s", peer, dict(rejected))
        for cid, size, data in stored:
            self.stats["blocks_received"] += 1
            self.stats["bytes_received"] += size
            for session in list(self._listeners.get(cid.digest, ())):
                await session.deliver(("block", peer, cid, size, data))
        for cid, kind in msg.presences:
            for session in list(self._listeners.get(cid.digest, ())):
                await session.deliver(("presence", peer, cid, kind))

    # -- serving -----------------------------------------------------------------

    def _serve(self, peer, wants: list[WantEntry]) -> None:
        box = self._outbox(peer)
        for w in wants:
            if w.cancel:
                box.cancel(w.cid)
                continue
            if len(box.blocks) + len(box.presences) >= _MAX_QUEUED:
                self.stats["wants_dropped"] += 1
                continue
            have = self.blocks.has(w.cid)
            if have and w.want_type != WANT_HAVE:
                box.blocks.append(w.cid)
            elif have:
                box.presences.append((w.cid, HAVE))
            elif w.send_dont_have:
                box.presences.append((w.cid, DONT_HAVE))
        box.wake.set()

    # -- sending -----------------------------------------------------------------

    def _outbox(self, peer) -> _Outbox:
        box = self._outboxes.get(peer)
        if box is None:
            box = self._outboxes[peer] = _Outbox(peer)
            if self._nursery is None:
                raise RuntimeError("Bitswap is not running; use `async with bitswap.run():`")
            self._nursery.start_soon(self._send_loop, box)
        return box

    def send_wants(self, peer, wants: list[WantEntry]) -> None:
        """Queue wants (or cancels) for ``peer``; they go out on our stream to it."""
        box = self._outbox(peer)
        box.wants.extend(wants)
        box.wake.set()

    def listen(self, cid: CID, session) -> None:
        self._listeners.setdefault(cid.digest, set()).add(session)

    def unlisten(self, cid: CID, session) -> None:
        key = cid.digest
        sessions = self._listeners.get(key)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._listeners[key]

    async def _send_loop(self, box: _Outbox) -> None:
        # Two stages, one batch apart: blocks are read from disk (in a thread) while
        # the previous batch is on the wire. At most ~3 MiB per peer is in memory.
        ready_send, ready_recv = trio.open_memory_channel(1)
        with box.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._load_loop, box, ready_send)
                async for wants, presences, blocks in ready_recv:
                    await self._send(box, wants, presences, blocks)

    async def _load_loop(self, box: _Outbox, ready: trio.MemorySendChannel) -> None:
        while True:
            await box.wake.wait()
            box.wake = trio.Event()
            while box:
                wants, box.wants = box.wants, []
                presences, box.presences = box.presences, []
                cids = []
                while box.blocks and len(cids) < 4:
                    cids.append(box.blocks.popleft())
                nbytes = sum(self.blocks.size(c) for c in cids)
                blocks = await run_sized(self._load, nbytes, cids) if cids else []
                await ready.send((wants, presences, blocks))

    def _load(self, cids: list[CID]) -> list[tuple[CID, bytes]]:
        out = []
        for cid in cids:
            try:
                out.append((cid, self.blocks.get_block(cid)))  # verified: never serve a corrupt block
            except (StoreError, FetchError) as exc:  # gone since the want (gc), or corrupt (now quarantined)
                log.info("bitswap: cannot serve %s: %s", cid, exc)
        return out

    async def _send(self, box: _Outbox, wants, presences, blocks) -> None:
        messages, batch, size = [], [], 0
        for cid, data in blocks:
            if batch and size + len(data) > _SEND_BATCH_BYTES:
                messages.append(batch)
                batch, size = [], 0
            batch.append((cid, data))
            size += len(data)
        messages.append(batch)
        for i, part in enumerate(messages):
            if i == 0 and not (wants or presences or part):
                continue
            frame = encode_message(wants=wants if i == 0 else (), presences=presences if i == 0 else (),
                                   blocks=part, v100=box.v100, length_prefix=True)
            if not await self._write(box, frame):
                self.stats["send_failures"] += 1
                # The peer is gone or does not speak Bitswap: forget it (its queued
                # items with it); a later message to it starts afresh.
                if self._outboxes.get(box.peer_id) is box:
                    del self._outboxes[box.peer_id]
                box.scope.cancel()
                return
            if part:
                self.stats["blocks_sent"] += len(part)
                self.stats["bytes_sent"] += sum(len(d) for _, d in part)

    async def _write(self, box: _Outbox, frame: bytes) -> bool:
        for attempt in (1, 2):
            try:
                if box.stream is None:
                    with trio.fail_after(self.connect_timeout_s):
                        box.stream = await self.host.new_stream(box.peer_id, list(PROTOCOLS))
                    proto = str(box.stream.get_protocol())
                    box.v100 = proto in ("/ipfs/bitswap/1.0.0", "/ipfs/bitswap")
                    if self._nursery is not None:
                        self._nursery.start_soon(self._watch, box, box.stream)
                with trio.fail_after(60):
                    await box.stream.write(frame)
                return True
            except (trio.TooSlowError, Exception) as exc:  # noqa: BLE001 - retried once on a new stream
                log.debug("bitswap: send to %s failed (attempt %d): %r", box.peer_id, attempt, exc)
                await _reset(box.stream)
                box.stream = None
        return False

    async def _watch(self, box: _Outbox, stream) -> None:
        """Read our outbound stream to a peer until the peer resets or closes it.

        go-bitswap and learnae never answer on a stream the requester opened, but
        py-libp2p's shipped Bitswap does: what arrives here is handled like any
        inbound message. When the stream ends (the peer's Bitswap restarted or
        crashed) the next message goes on a new stream, because writes into a
        dead yamux stream can still succeed locally.
        """
        reader = _Reader(stream)
        try:
            while (body := await reader.read_message(body_timeout_s=60.0)) is not None:
                try:
                    msg = decode_message(body, verify=False)
                except InvalidBlockError as exc:
                    self._reject(box.peer_id, exc)
                    continue
                await self._on_message(box.peer_id, msg)
        except InvalidBlockError as exc:
            self._reject(box.peer_id, exc)
        except (trio.TooSlowError, Exception):  # noqa: BLE001 - a reset is what we wait for
            pass
        if box.stream is stream:
            box.stream = None
            await _reset(stream)
            if not box and self._outboxes.get(box.peer_id) is box:  # idle: forget the peer
                del self._outboxes[box.peer_id]
                box.scope.cancel()

    # -- fetching ------------------------------------------------------------------

    async def fetch(self, root: CID, providers: Sequence[object] = (), *, recursive: bool = True,
                    timeout_s: float = 120.0, eager: bool = True, max_bytes: int | None = None):
        """Fetch ``root`` (and, if ``recursive``, every block under it) into :attr:`blocks`.

        With ``max_bytes`` the DAG must be a UnixFS file of at most that size,
        checked block by block before children are asked for. See
        :func:`learnae.storage.bitswap.fetch.fetch_dag`.
        """
        from learnae.storage.bitswap.fetch import fetch_dag

        return await fetch_dag(self, root, providers, recursive=recursive, timeout_s=timeout_s, eager=eager,
                               max_bytes=max_bytes)


async def _open_recv_window(stream, target_bytes: int) -> None:
    """Grow a yamux stream's receive window to ``target_bytes`` (no-op on other muxers)."""
    ys = getattr(stream, "muxed_stream", None)
    needed = ("window_lock", "recv_window", "target_recv_window", "send_window_update")
    if ys is None or not all(hasattr(ys, name) for name in needed):
        return
    try:
        async with ys.window_lock:
            increment = target_bytes - ys.recv_window
            if increment <= 0:
                return
            ys.target_recv_window = max(ys.target_recv_window, target_bytes)
            ys.recv_window += increment
        await ys.send_window_update(increment)
    except Exception as exc:  # noqa: BLE001 - an optimisation only
        log.debug("could not grow the yamux window: %r", exc)


async def _close(stream) -> None:
    if stream is not None:
        try:
            with trio.move_on_after(1):
                await stream.close()
        except Exception:  # noqa: BLE001
            pass


async def _refuse(stream) -> None:
    """A stream opened while Bitswap stops. The handler is replaced rather than
    removed: py-libp2p's multiselect checks that a handler exists, answers,
    then looks it up again, and a removal in between raises KeyError inside
    the connection's nursery, taking the host down."""
    await _reset(stream)


async def _reset(stream) -> None:
    if stream is not None:
        try:
            with trio.move_on_after(1):
                await stream.reset()
        except Exception:  # noqa: BLE001
            pass
