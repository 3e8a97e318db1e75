"""Finding peers with no coordinator: bootstrap addresses, mDNS, and the Kademlia DHT.

* **Bootstrap**: any peer's full multiaddr (the first line it prints) can be passed
  as ``--bootstrap``; the peer stays connected to it (:mod:`learnae.gossip.health`).
* **mDNS** (off by default because it sends LAN multicast): peers on one network
  find each other with zero configuration. py-libp2p's zeroconf listener runs in a
  thread; :class:`Discovery` carries its findings into trio and dials them.
* **Kademlia DHT** in server mode among the swarm's peers (never the public DHT:
  its routing table holds only peers we connected to). Every connected peer is
  added to the routing table; the swarm's *rendezvous key* (a CID derived from the
  topic) is provided by every member and looked up periodically, so a peer that
  knows one member finds the others. ``provide``/``find_providers`` are exposed for
  content (e.g. snapshot CIDs).

Example:
    >>> async with open_host(ident) as host, open_discovery(  # doctest: +SKIP
    ...         host, sid, DiscoveryParams(bootstrap=("/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...",))
    ...     ) as disc:
    ...     print([r.peer_id for r in disc.table.connected()])
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass

import trio
from libp2p.abc import IHost
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiformats import CID, multihash

from learnae.errors import ServiceError
from learnae.gossip.health import PeerTable, keep_bootstrap, watch_isolation
from learnae.gossip.host import connect, parse_peer_addr
from learnae.gossip.routing import open_dht
from learnae.gossip.topics import topic as topic_name

__all__ = ["DiscoveryParams", "Discovery", "MdnsFindings", "open_discovery", "rendezvous_key", "watch_mdns"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DiscoveryParams:
    """How a peer finds others (defaults: nothing leaves loopback unless asked)."""

    bootstrap: tuple[str, ...] = ()  # full multiaddrs ending in /p2p/<peer-id>
    mdns: bool = False  # the host must be opened with mdns=True as well
    dht: bool = True
    rendezvous_every_s: float = 30.0  # provide + look up the swarm's rendezvous key
    dht_timeout_s: float = 10.0
    max_rendezvous_dials: int = 16  # new peers dialed per rendezvous round


def rendezvous_key(swarm: str) -> str:
    """A CID string (raw, sha2-256 of the topic name) that every swarm member provides."""
    digest = hashlib.sha256(topic_name(swarm).encode()).digest()
    return str(CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256")))


class MdnsFindings:
    """Every peer mDNS reported since the host started, for discovery to dial.

    Zeroconf reports a peer once, from its own thread, as soon as the host's
    listener sees it: often before the swarm is joined. Watching from the moment
    the host is open (:func:`watch_mdns`) means no finding is lost to that race.
    """

    def __init__(self, host: IHost):
        self.host = host
        self._token = trio.lowlevel.current_trio_token()
        self._found: dict[ID, PeerInfo] = {}
        self._new: list[PeerInfo] = []
        self.changed = trio.Event()

    def _on_found(self, info: PeerInfo) -> None:
        """Called by zeroconf's thread: hand the finding to trio without blocking."""
        try:
            self._token.run_sync_soon(self._add, info)
        except trio.RunFinishedError:
            pass

    def _add(self, info: PeerInfo) -> None:
        if info.peer_id == self.host.get_id():
            return
        self._found[info.peer_id] = info
        self._new.append(info)
        self.changed.set()

    def take_new(self) -> list[PeerInfo]:
        """The findings not taken yet (each peer's latest addresses)."""
        new, self._new = self._new, []
        self.changed = trio.Event()
        return [self._found[pid] for pid in dict.fromkeys(i.peer_id for i in new)]

    def all(self) -> list[PeerInfo]:
        """Every peer found so far."""
        return list(self._found.values())


@contextmanager
def watch_mdns(host: IHost) -> Iterator[MdnsFindings]:
    """Collect mDNS findings for ``host`` (opened with ``mdns=True``) until the block exits.

    Raises:
        ServiceError: the host was opened without mDNS.
    """
    if getattr(host, "mDNS", None) is None:
        raise ServiceError("mDNS discovery needs the host opened with open_host(..., mdns=True)")
    findings = MdnsFindings(host)
    peerDiscovery.register_peer_discovered_handler(findings._on_found)
    try:
        yield findings
    finally:
        peerDiscovery.unregister_peer_discovered_handler(findings._on_found)


class Discovery:
    """Running discovery for one host (made by :func:`open_discovery`)."""

    def __init__(self, host: IHost, swarm: str, params: DiscoveryParams, dht: KadDHT | None):
        self.host = host
        self.swarm = swarm
        self.params = params
        self.dht = dht
        self.table = PeerTable(host, on_connect=self._on_connect)
        self.found_by_mdns: set[str] = set()
        self.found_by_dht: set[str] = set()
        self._mdns_send, self._mdns_recv = trio.open_memory_channel[PeerInfo](64)
        self._nursery: trio.Nursery | None = None

    # -- DHT -------------------------------------------------------------------------
    def _on_connect(self, peer_id: str) -> None:
        if self.dht is not None and self._nursery is not None:
            self._nursery.start_soon(self._add_to_dht, peer_id)

    async def _add_to_dht(self, peer_id: str) -> None:
        try:
            await self.dht.add_peer(ID.from_base58(peer_id), skip_server_mode_check=True)
        except Exception as exc:  # a peer that vanished meanwhile
            log.debug("could not add %s to the DHT routing table: %r", peer_id, exc)

    def _need_dht(self) -> KadDHT:
        if self.dht is None:
            raise ServiceError("the DHT is off (dht = false); turn it on to provide or find content")
        return self.dht

    async def provide(self, key: str) -> bool:
        """Announce in the DHT that this peer provides ``key`` (a CID string).

        Raises:
            ServiceError: the DHT is off, or the announcement timed out.
        """
        dht = self._need_dht()
        try:
            with trio.fail_after(self.params.dht_timeout_s):
                return await dht.provide(key)
        except trio.TooSlowError as exc:
            raise ServiceError(f"providing {key} timed out after {self.params.dht_timeout_s:g} s") from exc

    async def find_providers(self, key: str, count: int = 20) -> list[PeerInfo]:
        """Peers that provide ``key`` according to the DHT (empty if none answered in time)."""
        dht = self._need_dht()
        with trio.move_on_after(self.params.dht_timeout_s):
            return await dht.find_providers(key, count)
        log.info("looking up providers of %s timed out after %g s", key, self.params.dht_timeout_s)
        return []

    async def _rendezvous(self) -> None:
        key = rendezvous_key(self.swarm)
        while True:
            if self.table.connected():
                try:
                    await self.provide(key)
                    me = self.host.get_id()
                    live = set(self.host.get_connected_peers())
                    fresh = [p for p in await self.find_providers(key, 64)
                             if p.peer_id != me and p.peer_id not in live and p.addrs]
                    for info in fresh[: self.params.max_rendezvous_dials]:
                        try:
                            await connect(self.host, info, timeout_s=5.0)
                            self.found_by_dht.add(info.peer_id.to_base58())
                            log.info("found swarm peer %s through the DHT", info.peer_id)
                        except ServiceError as exc:
                            log.debug("DHT-found peer %s unreachable: %s", info.peer_id, exc)
                except ServiceError as exc:
                    log.info("swarm rendezvous round failed: %s", exc)
                except Exception as exc:  # the DHT's own errors must not take the peer down
                    log.warning("swarm rendezvous round failed unexpectedly: %r", exc)
                await trio.sleep(self.params.rendezvous_every_s)
            else:
                with trio.move_on_after(1.0):
                    await self.table.changed.wait()

    # -- mDNS --------------------------------------------------------------------------
    async def _mdns_dialer(self, findings: MdnsFindings) -> None:
        pending = findings.all()  # found before discovery started, too
        findings.take_new()
        while True:
            for info in pending:
                if info.peer_id == self.host.get_id() or info.peer_id in self.host.get_connected_peers():
                    continue
                try:
                    await connect(self.host, info, timeout_s=5.0)
                    self.found_by_mdns.add(info.peer_id.to_base58())
                    log.info("found peer %s by mDNS", info.peer_id)
                except ServiceError as exc:
                    log.info("mDNS-found peer %s unreachable: %s", info.peer_id, exc)
            await findings.changed.wait()
            pending = findings.take_new()


@asynccontextmanager
async def open_discovery(host: IHost, swarm: str, params: DiscoveryParams | None = None, *,
                         dht: KadDHT | None = None, mdns: MdnsFindings | None = None) -> AsyncIterator[Discovery]:
    """Run bootstrap dialing, mDNS, the DHT and peer health for ``host``.

    Args:
        host: a running host.
        swarm: the swarm id (its rendezvous key is provided and looked up).
        params: what to run.
        dht: a DHT already running on ``host`` (:func:`learnae.gossip.routing.open_dht`),
            e.g. the one the peer's block exchange also asks for providers; without it,
            and with ``params.dht``, discovery runs a DHT of its own.
        mdns: the host's mDNS findings (:func:`watch_mdns`, entered when the host opened);
            without it, and with ``params.mdns``, discovery watches from now on.

    Raises:
        ConfigError: a bootstrap address is malformed.
        ServiceError: ``mdns`` is asked for but the host was opened without it.
    """
    params = params or DiscoveryParams()
    for addr in params.bootstrap:  # a typo fails here, before anything starts
        parse_peer_addr(addr)
    async with AsyncExitStack() as stack:
        if mdns is None and params.mdns:
            mdns = stack.enter_context(watch_mdns(host))
        if dht is None and params.dht:  # entered first, left last: the tasks below use it
            dht = await stack.enter_async_context(open_dht(host))
        disc = Discovery(host, swarm, params, dht)
        async with trio.open_nursery() as nursery:
            disc._nursery = nursery
            if params.mdns:
                nursery.start_soon(disc._mdns_dialer, mdns)
            if dht is not None:
                nursery.start_soon(disc._rendezvous)
            nursery.start_soon(disc.table.run)
            nursery.start_soon(watch_isolation, host, disc.table)
            if params.bootstrap:
                nursery.start_soon(keep_bootstrap, host, list(params.bootstrap))
            try:
                yield disc
            finally:
                nursery.cancel_scope.cancel()
