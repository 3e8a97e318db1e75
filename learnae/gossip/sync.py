"""Ledger sync: a peer obtains every author's complete chain from another peer, streamed.

Gossip carries each entry once, to whoever is connected at that moment; a peer
that joins late, or was cut off by a partition, misses everything before. Sync
closes that gap directly between two peers, on the protocol ``/learnae/1/ledger-sync``:

1. the client sends what it has: ``{"swarm": id, "have": {author: [seq, CID]},
   "want": [CID, ...]}`` (its head of every author's chain, and entries it asks for
   by CID), and optionally ``"only": [author, ...]`` to hear of those authors alone
   (a joining peer first takes back its own chain, then the rest in the background);
2. the server answers with frames (varint length + bytes): first its own heads
   ``{"heads": {author: [seq, CID]}}``, then entries, each as its signed block: the
   entries it holds beyond the client's head of each author (chain order, at most
   ``limit`` per exchange), the entries the client wanted, and, for every author
   where it holds a different entry at the client's head seq, that entry (so two
   peers with split views of an equivocating author meet both twins), both entries
   of every fork proof it holds (so a peer that missed an equivocation, being down
   or partitioned, detects it itself); then an empty frame.

The client gives every entry to the ledger, which verifies it (signature, schema,
swarm, chain) before storing it, exactly as a gossiped one. It repeats while a
full batch arrived (bounded in rounds), and compares the server's heads with its
own: an entry the server has at a seq where the client holds another is fetched
in the next round, and the ledger then holds the fork proof. Everything is
bounded: the request (``MAX_REQUEST_BYTES``), a frame (one entry), the entries
per exchange, the rounds per sync, and the time of each exchange.

Example:
    >>> serve_sync(host, ledger, swarm)                                   # doctest: +SKIP
    >>> stats = await sync_with(host, peer_id, ledger, swarm)             # doctest: +SKIP
    >>> stats.stored, stats.forks
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dag_cbor
import trio
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed
from multiformats import CID

from learnae.errors import InvalidEntryError
from learnae.gossip.frames import FrameReader, FrameWriter
from learnae.ledger import Ledger, Status
from learnae.ledger.entry import MAX_ENTRY_BYTES

__all__ = ["PROTOCOL", "SyncStats", "serve_sync", "sync_with"]

log = logging.getLogger(__name__)

PROTOCOL = "/learnae/1/ledger-sync"
MAX_REQUEST_BYTES = 1024 * 1024  # a "have" of ~10,000 authors
MAX_HEADS = 8192  # authors a heads frame or a request may name
MAX_WANT = 256  # entries one request may ask for by CID
MAX_FORKS = 128  # fork proofs (two entries each) a server sends per exchange
BATCH = 1024  # entries per exchange (the server sends at most this many)
EXCHANGE_TIMEOUT_S = 30.0
MAX_ROUNDS = 64  # exchanges per sync: 64k entries at most
SERVE_CONCURRENCY = 2  # sync streams served at once


@dataclass(slots=True)
class SyncStats:
    """What one :func:`sync_with` did.

    Attributes:
        rounds: exchanges made.
        received: entries received.
        stored: entries the ledger stored (new, chained and verified; released ones included).
        rejected: entries the ledger rejected.
        forks: fork proofs found.
    """

    rounds: int = 0
    complete: bool = False  # the last exchange ended normally (else: a failure, the peer was busy...)
    received: int = 0
    stored: int = 0
    rejected: int = 0
    forks: int = 0


def _heads_map(ledger: Ledger, swarm: str) -> dict[str, list]:
    # What we hold without a gap: a chain stored only up to seq 3 plus a fork at seq 44
    # (seen before the entries between) asks for 4 onwards, or it would never get them.
    return {a: [seq, cid] for a, (seq, cid) in ledger.chain_heads(swarm, unbroken=True).items()}


def _parse_heads(obj: object, limit: int) -> dict[str, tuple[int, CID]]:
    """``{author: (seq, CID)}`` from a remote map; malformed items are skipped."""
    out: dict[str, tuple[int, CID]] = {}
    if not isinstance(obj, dict):
        return out
    for author, item in list(obj.items())[:limit]:
        if (isinstance(author, str) and isinstance(item, list) and len(item) == 2 and type(item[0]) is int
                and item[0] >= 0 and isinstance(item[1], CID)):
            out[author] = (item[0], item[1])
    return out


# -- the server side --------------------------------------------------------------------------

def serve_sync(host, ledger: Ledger, swarm: str, *, on_twin: Callable[[CID], None] | None = None) -> None:
    """Answer sync requests for ``swarm`` on ``host`` (until the host stops).

    Args:
        on_twin: called with the CID of an entry the client holds at a seq where this
            peer holds another one (an equivocation seen from the other side), so the
            server can fetch it and hold the fork proof too, from the same exchange.
    """
    slots = trio.Semaphore(SERVE_CONCURRENCY)

    async def handler(stream) -> None:
        if slots.value == 0:  # busy: the client tries another peer or later
            await stream.reset()
            return
        async with slots:
            try:
                with trio.fail_after(EXCHANGE_TIMEOUT_S):
                    await _serve_one(stream, ledger, swarm, on_twin)
            except Exception as exc:  # noqa: BLE001 - a client's bad request never hurts the server
                log.debug("serving a ledger sync ended: %r", exc)
                try:
                    await stream.reset()
                except Exception:  # noqa: BLE001 - already gone
                    pass
                return
            await stream.close()

    host.set_stream_handler(PROTOCOL, handler)


async def _serve_one(stream, ledger: Ledger, swarm: str, on_twin) -> None:
    raw = await FrameReader(stream).read(MAX_REQUEST_BYTES)
    request = dag_cbor.decode(raw)
    out = FrameWriter(stream)  # entries go out in writes of ~64 KiB, not one write each
    if not isinstance(request, dict) or request.get("swarm") != swarm:
        await out.write(b"")
        await out.flush()
        return
    have = _parse_heads(request.get("have"), MAX_HEADS)
    mine = ledger.chain_heads(swarm)
    proofs = ledger.fork_proofs(swarm)
    only = request.get("only")
    if isinstance(only, list):  # the client asks about these authors alone
        wanted = {a for a in only[:MAX_HEADS] if isinstance(a, str)}
        mine = {a: head for a, head in mine.items() if a in wanted}
        have = {a: head for a, head in have.items() if a in wanted}
        proofs = [p for p in proofs if p.author in wanted]
    await out.write(dag_cbor.encode({"heads": {a: [seq, cid] for a, (seq, cid) in list(mine.items())[:MAX_HEADS]}}))
    sent = 0
    wants = request.get("want")
    for cid in (wants if isinstance(wants, list) else [])[:MAX_WANT]:
        data = ledger.entry_bytes(cid) if isinstance(cid, CID) else None
        if data is not None:
            await out.write(data)
            sent += 1
    for author, (their_seq, their_cid) in have.items():  # split views: our twin at their head's seq
        ours = ledger.entry_at(author, their_seq)
        if ours and their_cid not in ours:
            await out.write(ledger.entry_bytes(ours[0]))
            sent += 1
            if on_twin is not None:
                on_twin(their_cid)
    for proof in proofs[:MAX_FORKS]:  # forks we proved: the client checks them itself
        for entry in (proof.first, proof.second):
            await out.write(ledger.entry_bytes(entry.cid))
            sent += 1
    # Authors the client knows least of first, so one long chain cannot starve the others.
    behind = sorted((have.get(a, (-1, None))[0] - seq, a) for a, (seq, _) in mine.items()
                    if have.get(a, (-1, None))[0] < seq)
    for _, author in behind:
        if sent >= BATCH:
            break
        for data in ledger.chain_after(author, have.get(author, (-1, None))[0], BATCH - sent):
            await out.write(data)
            sent += 1
    await out.write(b"")
    await out.flush()


# -- the client side --------------------------------------------------------------------------

async def sync_with(host, peer_id: ID, ledger: Ledger, swarm: str, *, max_rounds: int = MAX_ROUNDS,
                    timeout_s: float = EXCHANGE_TIMEOUT_S, only: Iterable[str] | None = None) -> SyncStats:
    """Bring ``ledger`` level with what ``peer_id`` holds of ``swarm``; never raises for the peer's faults.

    Args:
        only: these authors' chains alone (None: every author's).

    Raises:
        trio.Cancelled: only when the caller cancels.
    """
    stats = SyncStats()
    only = None if only is None else sorted(set(only))
    want: list[CID] = []  # entries the server showed at a seq where we hold another
    for _ in range(max_rounds):
        stats.rounds += 1
        stored_before = stats.stored
        try:
            with trio.fail_after(timeout_s):
                received, heads = await _exchange(host, peer_id, ledger, swarm, want, stats, only)
        except (trio.TooSlowError, InvalidEntryError, Exception) as exc:  # noqa: BLE001 - their fault or the network's
            log.debug("ledger sync with %s stopped: %r", peer_id, exc)
            stats.complete = False
            break
        stats.complete = True
        asked, want = want, [cid for a, (seq, cid) in heads.items()
                             if (only is None or a in only)  # an old server answers of everyone
                             and (ours := ledger.entry_at(a, seq)) and cid not in ours][:MAX_WANT]
        if received < BATCH and not want:
            break  # all of it
        if stats.stored == stored_before and want in ([], asked):
            break  # nothing new came, nor will: another round would bring the same
    return stats


async def _exchange(host, peer_id: ID, ledger: Ledger, swarm: str, want: list[CID],
                    stats: SyncStats, only: list[str] | None) -> tuple[int, dict[str, tuple[int, CID]]]:
    stream = await host.new_stream(peer_id, [PROTOCOL])
    try:
        have = _heads_map(ledger, swarm)
        request = {"swarm": swarm, "have": have, "want": want}
        if only is not None:
            request |= {"have": {a: head for a, head in have.items() if a in only}, "only": only}
        await stream.write(encode_varint_prefixed(dag_cbor.encode(request)))
        frames = FrameReader(stream)
        first = await frames.read(MAX_REQUEST_BYTES)
        if not first:
            return 0, {}
        heads = _parse_heads(dag_cbor.decode(first).get("heads"), MAX_HEADS)
        received = 0
        while True:
            data = await frames.read(MAX_ENTRY_BYTES)
            if not data:
                break
            received += 1
            stats.received += 1
            result = ledger.receive(data)
            if result.status is Status.REJECTED:
                stats.rejected += 1
                if result.reason == "forked-author":  # the server has not seen that author's fork yet
                    continue
                # Anything else an honest server never sends: it verified every entry it holds.
                raise InvalidEntryError(f"ledger sync: the peer sent an invalid entry ({result.reason})",
                                        reason="sync-invalid")
            for r in (result, *result.released):
                if r.status is Status.ACCEPTED:
                    stats.stored += 1
                elif r.status is Status.FORK:
                    stats.forks += 1
                    stats.stored += 1
            if received > BATCH + MAX_WANT + MAX_HEADS + 2 * MAX_FORKS:  # more than a server may send
                raise InvalidEntryError("ledger sync: the peer sent more entries than asked for",
                                        reason="sync-flood")
        return received, heads
    finally:
        await stream.close()
