"""Ledger replication: every peer holds every author's complete chain.

Gossip delivers an entry once, to whoever is connected then; the ledger's
credits, lineage and fork detection need the whole history. :class:`Replicator`
keeps the local ledger level with the swarm through ledger sync
(:mod:`learnae.gossip.sync`, streamed and bounded):

* **on join**, before this peer writes anything, with up to ``JOIN_PEERS`` of the
  peers it is connected to (bootstrap peers first);
* **on every new connection** to a swarm member (a late joiner, a peer that
  came back, both sides of a healed partition), at most once per
  ``PER_PEER_GAP_S`` per peer;
* **every** ``EVERY_S`` with one random member, which is also how two peers that
  each saw a different entry of an equivocating author meet both twins.

Gaps seen in gossip (an entry whose ``prev`` is missing) are filled entry by
entry through the block exchange as well (:meth:`Ledger.fill_gaps`); sync is
what does not depend on that path.

Example:
    >>> rep = Replicator(host, ledger, swarm, members=connected_peer_ids)   # doctest: +SKIP
    >>> await rep.sync_now(rep.candidates())       # at join
    >>> nursery.start_soon(rep.run)                # from then on
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable

import trio
from libp2p.peer.id import ID

from learnae.gossip.sync import SyncStats, sync_with
from learnae.ledger import Ledger

__all__ = ["Replicator"]

log = logging.getLogger(__name__)

JOIN_PEERS = 3  # peers synced with at join, at once
EVERY_S = 20.0  # one sync with a random member this often
PER_PEER_GAP_S = 10.0  # at most one connection-triggered sync per peer this often
POLL_S = 1.0  # how often new connections are looked for
RETRIES = 3  # attempts at a sync that did not complete
RETRY_S = 2.0  # seconds before the next attempt (growing)


class Replicator:
    """Keeps ``ledger`` level with the swarm's peers.

    Args:
        host: the peer's running host (it serves sync too: :func:`learnae.gossip.sync.serve_sync`).
        ledger: the peer's ledger.
        swarm: the swarm id.
        members: returns the peer IDs (base58) to sync with: the connected peers (one of
            another swarm answers with nothing, so no topic subscription is awaited).
        seed: for the choice of random members.

    Attributes:
        syncs: syncs completed.
        stored: entries stored through sync.
        forks: fork proofs found through sync.
    """

    def __init__(self, host, ledger: Ledger, swarm: str, *, members: Callable[[], Iterable[str]], seed: int = 0):
        self.host, self.ledger, self.swarm = host, ledger, swarm
        self.members = members
        self.syncs = self.stored = self.forks = 0
        self._last: dict[str, float] = {}  # peer -> monotonic time of its last sync
        self._rng = random.Random(seed)

    def candidates(self, preferred: Iterable[str] = ()) -> list[str]:
        """Connected members to sync with at join: ``preferred`` ones (bootstrap peers) first."""
        members = set(self.members())
        first = [p for p in preferred if p in members]
        rest = [p for p in members if p not in first]
        self._rng.shuffle(rest)
        return (first + rest)[:JOIN_PEERS]

    async def sync_now(self, peers: Iterable[str], *, only: Iterable[str] | None = None) -> None:
        """Sync with each of ``peers`` at once (bounded inside; failures are logged, not raised).

        Args:
            only: these authors' chains alone (None: every author's).
        """
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(self._sync, peer, only)

    async def _sync(self, peer: str, only: Iterable[str] | None = None) -> SyncStats | None:
        """Sync with ``peer``; a sync that could not complete (the peer was busy serving others,
        or the connection failed) is tried again a few times, seconds apart."""
        for attempt in range(RETRIES):
            self._last[peer] = time.monotonic()
            try:
                stats = await sync_with(self.host, ID.from_base58(peer), self.ledger, self.swarm, only=only)
            except Exception as exc:  # noqa: BLE001 - a peer's trouble never stops ours
                log.debug("ledger sync with %s failed: %r", peer, exc)
                stats = None
            if stats is not None and stats.complete:
                break
            await trio.sleep(RETRY_S * (attempt + 1))
        if stats is None:
            return None
        self.syncs += 1
        self.stored += stats.stored
        self.forks += stats.forks
        if stats.stored or stats.forks:
            log.info("ledger sync with %s: %d entries stored, %d fork(s) found in %d round(s)",
                     peer, stats.stored, stats.forks, stats.rounds)
        return stats

    async def run(self) -> None:
        """Sync with new connections as they come and with a random member every ``EVERY_S``."""
        known: set[str] = set(self.members())
        next_random = time.monotonic() + EVERY_S
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(POLL_S)
                now = time.monotonic()
                members = set(self.members())
                for peer in members - known:  # a new connection: a joiner, a return, a heal
                    if now - self._last.get(peer, -PER_PEER_GAP_S) >= PER_PEER_GAP_S:
                        nursery.start_soon(self._sync, peer)
                known = members
                if now >= next_random and members:
                    next_random = now + EVERY_S
                    nursery.start_soon(self._sync, self._rng.choice(sorted(members)))
