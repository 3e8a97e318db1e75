"""Peer health: who is connected since when, reconnecting to bootstrap peers, isolation.

* :class:`PeerTable` records every peer this host has been connected to, when it
  connected, when it was last seen connected, and how often it dropped.
* :func:`keep_bootstrap` dials each bootstrap peer and redials it with
  exponential backoff (0.5 s doubling to 30 s, with jitter) whenever it is gone.
* :func:`watch_isolation` logs one WARNING when the peer has no connection left
  (and how others can reach it), and one INFO line when it is connected again.

Example:
    >>> table = PeerTable(host)                     # doctest: +SKIP
    >>> async with trio.open_nursery() as n:
    ...     n.start_soon(table.run)
    ...     n.start_soon(keep_bootstrap, host, ["/ip4/10.0.0.2/tcp/4010/p2p/12D3KooW..."])
    ...     n.start_soon(watch_isolation, host, table)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import trio
from libp2p.abc import IHost

from learnae.errors import ServiceError
from learnae.gossip.host import connect, dial_line, parse_peer_addr

__all__ = ["PeerRecord", "PeerTable", "Backoff", "keep_bootstrap", "watch_isolation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """What this host knows about one peer's connection (times are ``time.time()`` seconds)."""

    peer_id: str
    first_seen_s: float
    last_seen_s: float
    connected: bool
    disconnects: int = 0


class PeerTable:
    """The connected-peer table, refreshed every ``interval_s`` from the host's connections.

    Args:
        host: the host to watch.
        interval_s: refresh period.
        on_connect: called with a peer ID string when a peer connects (e.g. to add it
            to the DHT routing table).
    """

    def __init__(self, host: IHost, interval_s: float = 0.5,
                 on_connect: Callable[[str], None] | None = None):
        self.host = host
        self.interval_s = interval_s
        self.on_connect = on_connect
        self._peers: dict[str, PeerRecord] = {}
        self.changed = trio.Event()

    def refresh(self) -> None:
        now = time.time()
        live = {p.to_base58() for p in self.host.get_connected_peers()}
        for pid in live:
            rec = self._peers.get(pid)
            if rec is None:
                self._peers[pid] = PeerRecord(pid, now, now, True)
                log.info("peer %s connected", pid)
            else:
                if not rec.connected:
                    log.info("peer %s reconnected", pid)
                self._peers[pid] = replace(rec, last_seen_s=now, connected=True)
            if (rec is None or not rec.connected) and self.on_connect is not None:
                self.on_connect(pid)
        for pid, rec in list(self._peers.items()):
            if rec.connected and pid not in live:
                self._peers[pid] = replace(rec, connected=False, disconnects=rec.disconnects + 1)
                log.info("peer %s disconnected (last seen %.1f s ago)", pid, now - rec.last_seen_s)
        self.changed.set()
        self.changed = trio.Event()

    def connected(self) -> list[PeerRecord]:
        return sorted((r for r in self._peers.values() if r.connected), key=lambda r: r.peer_id)

    def all(self) -> list[PeerRecord]:
        return sorted(self._peers.values(), key=lambda r: r.peer_id)

    def get(self, peer_id: str) -> PeerRecord | None:
        return self._peers.get(peer_id)

    async def run(self) -> None:
        while True:
            self.refresh()
            await trio.sleep(self.interval_s)


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with +-25 % jitter: 0.5, 1, 2, ... up to ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0
    current_s: float = 0.0

    def next(self) -> float:
        self.current_s = self.initial_s if self.current_s == 0 else min(self.current_s * 2, self.max_s)
        return self.current_s * random.uniform(0.75, 1.25)

    def reset(self) -> None:
        self.current_s = 0.0


async def _keep_one(host: IHost, addr: str, check_s: float, timeout_s: float) -> None:
    info = parse_peer_addr(addr)
    backoff = Backoff()
    failures = 0
    while True:
        if info.peer_id in host.get_connected_peers():
            backoff.reset()
            failures = 0
            await trio.sleep(check_s)
            continue
        try:
            await connect(host, info, timeout_s=timeout_s)
        except ServiceError as exc:
            failures += 1
            delay = backoff.next()
            (log.warning if failures in (1, 10) or failures % 50 == 0 else log.debug)(
                "bootstrap peer %s unreachable (%d attempt(s)): %s; retrying in %.1f s",
                addr, failures, exc, delay)
            await trio.sleep(delay)
        else:
            log.info("connected to bootstrap peer %s", addr)
            backoff.reset()


async def keep_bootstrap(host: IHost, addrs: Sequence[str], *, check_s: float = 1.0,
                         timeout_s: float = 5.0) -> None:
    """Stay connected to every bootstrap peer, redialing with backoff when one is lost.

    Raises:
        ConfigError: an address is not a full multiaddr with ``/p2p/<peer-id>``.
    """
    for a in addrs:  # fail on a typo before starting anything
        parse_peer_addr(a)
    async with trio.open_nursery() as nursery:
        for a in addrs:
            nursery.start_soon(_keep_one, host, a, check_s, timeout_s)


async def watch_isolation(host: IHost, table: PeerTable, *, grace_s: float = 3.0) -> None:
    """Log a clear line when the peer has had no connection for ``grace_s``, and when
    that ends."""
    isolated = was_connected = False
    alone_since = time.monotonic()
    while True:
        if table.connected():
            was_connected = True
            if isolated:
                log.info("no longer isolated: %d peer(s) connected", len(table.connected()))
            isolated = False
            alone_since = time.monotonic()
        elif not isolated and time.monotonic() - alone_since >= grace_s:
            isolated = True
            try:
                where = dial_line(host)
            except ServiceError:  # the host is shutting down: no listener left
                where = "(no listen address)"
            # Alone from the start is how a swarm's first peer begins (INFO); losing every
            # connection is news (WARNING).
            (log.warning if was_connected else log.info)(
                "isolated: no connected peers; waiting to be dialed at %s "
                "(pass it to another peer with --bootstrap)", where)
        with trio.move_on_after(1.0):
            await table.changed.wait()
