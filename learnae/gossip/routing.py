"""Content routing on the swarm's Kademlia DHT: who holds which CID.

DESIGN's block exchange asks an announcement's author first and the DHT last.
:class:`ContentRouting` is that last resort, on the DHT the swarm's peers run
among themselves (server mode, a routing table of the peers this host connected
to: never the public DHT):

* :meth:`ContentRouting.provide_soon` queues a CID this peer holds (its own
  snapshots, the neighbours' it fetched). A background task announces the queue
  one CID at a time, no faster than ``provide_gap_s``, newest first, and forgets
  the oldest beyond ``max_queued``: providing costs a few DHT messages per CID,
  so it must never grow with the training speed.
* :meth:`ContentRouting.find_providers` answers Bitswap's provider lookup
  (``async find_providers(cid) -> peers``), bounded by ``timeout_s``, and never
  raises: a lookup that fails finds nobody.

Example:
    >>> async with open_dht(host) as dht:                    # doctest: +SKIP
    ...     routing = ContentRouting(dht)
    ...     async with trio.open_nursery() as n:
    ...         n.start_soon(routing.run)
    ...         routing.provide_soon("bafkrei...")
    ...         holders = await routing.find_providers("bafkrei...")
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service

__all__ = ["open_dht", "ContentRouting"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_dht(host: IHost, *, enabled: bool = True) -> AsyncIterator[KadDHT | None]:
    """Run a Kademlia DHT in server mode on ``host`` (yields None when not ``enabled``).

    The routing table starts empty and holds only peers added to it (discovery
    adds every peer it connects to), so lookups never leave the swarm.
    """
    if not enabled:
        yield None
        return
    dht = KadDHT(host, DHTMode.SERVER, enable_random_walk=False)
    async with background_trio_service(dht):
        yield dht


class ContentRouting:
    """Provide and find CIDs on a swarm DHT, with bounded cost.

    Args:
        dht: a running :class:`KadDHT` (from :func:`open_dht`), or None: then
            nothing is provided and nobody is found.
        timeout_s: deadline of one provide or one lookup.
        provide_gap_s: at least this long between two provides.
        max_queued: CIDs waiting to be provided; the oldest are forgotten.

    Attributes:
        provided: CIDs announced so far.
        lookups: provider lookups answered (found or not).
    """

    def __init__(self, dht: KadDHT | None, *, timeout_s: float = 10.0, provide_gap_s: float = 1.0,
                 max_queued: int = 64):
        self.dht = dht
        self.timeout_s = timeout_s
        self.provide_gap_s = provide_gap_s
        self.max_queued = max_queued
        self.provided = 0
        self.lookups = 0
        self._queue: OrderedDict[str, None] = OrderedDict()
        self._wakeup = trio.Event()
        self._known: set = set()  # peers added to the routing table by us

    async def _know_connected(self) -> None:
        """Put every connected peer in the routing table: the DHT is asked through the peers
        this host already talks to, whether or not discovery has added them yet."""
        table = self.dht.routing_table
        for pid in list(self.dht.host.get_connected_peers()):
            if pid in self._known and table.peer_in_table(pid):
                continue
            try:
                await self.dht.add_peer(pid, skip_server_mode_check=True)
                self._known.add(pid)
            except Exception as exc:  # noqa: BLE001 - a peer that vanished meanwhile
                log.debug("could not add %s to the DHT routing table: %r", pid, exc)

    def provide_soon(self, cid: object) -> None:
        """Queue ``cid`` (any object whose ``str`` is a CID) to be announced as held here."""
        if self.dht is None:
            return
        key = str(cid)
        self._queue.pop(key, None)
        self._queue[key] = None
        while len(self._queue) > self.max_queued:
            self._queue.popitem(last=False)
        self._wakeup.set()

    async def find_providers(self, cid: object, count: int = 20) -> list[PeerInfo]:
        """Peers the DHT says hold ``cid`` (empty on time-out or any DHT failure)."""
        if self.dht is None:
            return []
        self.lookups += 1
        with trio.move_on_after(self.timeout_s):
            try:
                await self._know_connected()
                found = await self.dht.find_providers(str(cid), count)
            except Exception as exc:  # noqa: BLE001 - the DHT is best effort, never fatal
                log.debug("provider lookup of %s failed: %r", cid, exc)
                return []
            me = self.dht.host.get_id()
            return [p for p in found if p.peer_id != me]
        log.debug("provider lookup of %s timed out after %g s", cid, self.timeout_s)
        return []

    async def run(self) -> None:
        """Announce queued CIDs, newest first, one per ``provide_gap_s`` at most."""
        if self.dht is None:
            return
        while True:
            if not self._queue:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            key, _ = self._queue.popitem(last=True)
            with trio.move_on_after(self.timeout_s):
                try:
                    await self._know_connected()
                    await self.dht.provide(key)
                    self.provided += 1
                except Exception as exc:  # noqa: BLE001 - a peer that vanished mid-provide
                    log.debug("providing %s failed: %r", key, exc)
            await trio.sleep(self.provide_gap_s)
