"""Peers behind NAT: circuit relay v2 (py-libp2p's), a reservation keeper, and DCUtR.

A peer behind a NAT can dial out but nobody can dial in. With ``behind_nat`` it
reserves a slot on each of its bootstrap peers that relays (``relay = true``),
and advertises ``<relay address>/p2p-circuit/p2p/<its id>`` next to its own
addresses (in its ``join`` entry, in its DHT provider records, in identify).
Any peer that finds only such an address dials it through the relay
(:func:`dial_circuit`, used by :func:`learnae.gossip.host.connect`); once
connected, DCUtR (py-libp2p's ``DCUtRProtocol``, run by NATed peers and relays)
tries to replace the relayed connection with a direct one.

py-libp2p 0.8.1 ships the protocols but wires none of them into its host: its
swarm drops ``/p2p-circuit`` addresses when it dials ("no relay transport"),
and its ``CircuitV2Transport`` reserves a slot before every dial. So learnae
dials circuits itself (one HOP ``CONNECT``, then the usual Noise + Yamux
upgrade over the relayed stream) and keeps its reservations itself.

Layering: part of :mod:`learnae.gossip`; :func:`open_host` enters
:func:`relay_services` when given :class:`RelayParams`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service

from learnae.gossip.host import DialError, connect, parse_peer_addr

__all__ = ["RelayParams", "RELAY_LIMITS", "relay_services", "dial_circuit", "is_circuit", "relayed_peers"]

log = logging.getLogger(__name__)

# What one relay gives: at most 32 peers behind NAT hold a slot, each reachable over at most
# 16 relayed connections at once; a relayed connection lasts at most an hour and carries at
# most 256 MiB (then it is reset, and redialed, directly if DCUtR upgraded it meanwhile).
RELAY_LIMITS = RelayLimits(duration=3600, data=256 * 1024 * 1024, max_circuit_conns=16, max_reservations=32,
                           reservation_ttl=3600)
RESERVE_EVERY_S = 60.0  # refresh (or retake, after a relay restart) every reservation this often
RETRY_S = 5.0  # a relay that gave no slot is asked again this often
NO_RELAY = "it is no relay"
RESERVE_TIMEOUT_S = 5.0
FIRST_ROUND_S = 8.0  # open_host waits this long at most for the first reservations (so `join` advertises them)


@dataclass(frozen=True, slots=True)
class RelayParams:
    """What a host does about NAT (``PeerConfig.relay`` and ``behind_nat``)."""

    serve: bool = False  # relay for peers behind NAT (circuit relay v2 "hop"), within RELAY_LIMITS
    reserve_on: tuple[str, ...] = ()  # this host is behind NAT: reserve a slot on these peers (full multiaddrs)


def is_circuit(addr) -> bool:
    return "/p2p-circuit" in str(addr)


def relayed_peers(host: IHost) -> dict[str, bool]:
    """Connected peers reached through a relay: peer ID -> whether a direct connection exists too."""
    out = {}
    for pid, conns in dict(host.get_network().connections).items():
        conns = conns if isinstance(conns, list) else [conns]
        kinds = [_is_relayed(c) for c in conns]
        if any(kinds):
            out[pid.to_base58()] = not all(kinds)
    return out


def _is_relayed(conn) -> bool:
    actual = getattr(conn, "_actual_transport_addresses", None)
    return bool(actual) and all(is_circuit(a) for a in actual)


async def dial_circuit(host: IHost, addr: str, timeout_s: float) -> None:
    """Connect to the peer at ``<relay>/p2p-circuit/p2p/<peer>`` through that relay.

    Raises:
        DialError: the relay cannot be reached, refuses (the peer holds no slot there,
            or its limits are reached), or the peer does not answer through it.
    """
    head, _, tail = str(addr).partition("/p2p-circuit")
    try:
        relay = parse_peer_addr(head)
        dest = ID.from_base58(tail.rsplit("/p2p/", 1)[1])
    except Exception as exc:
        raise DialError(f"{addr} is not a relayed address (<relay multiaddr>/p2p-circuit/p2p/<peer-id>)") from exc
    circuit = multiaddr.Multiaddr(f"/p2p/{relay.peer_id.to_base58()}/p2p-circuit/p2p/{dest.to_base58()}")
    stream = None
    try:
        with trio.fail_after(timeout_s):
            if relay.peer_id not in host.get_connected_peers():
                await connect(host, relay, timeout_s=timeout_s)
            stream = await host.new_stream(relay.peer_id, [HOP_PROTOCOL_ID])
            await write_delimited_msg(stream, HopMessage(type=HopMessage.CONNECT,
                                                         peer=CircuitPeerId(id=dest.to_bytes())))
            resp = await read_delimited_msg(stream, HopMessage)
            status = StatusCode(resp.status) if resp.HasField("status") else StatusCode.OK
            if status != StatusCode.OK:
                raise DialError(f"relay {relay.peer_id} refused to connect {dest}: {status.name}")
            raw = RawConnection(stream=stream, initiator=True, connection_type=ConnectionType.RELAYED,
                                addresses=[circuit])
            conn = await host.upgrade_outbound_connection(raw, dest)
            # py-libp2p's upgrade cannot tell a relayed stream from TCP: tag it, as its STOP side does
            conn.set_transport_info([circuit], ConnectionType.RELAYED)
    except DialError:
        await _reset(stream)
        raise
    except trio.TooSlowError as exc:
        await _reset(stream)
        raise DialError(f"dialing {addr} through the relay timed out after {timeout_s:g} s") from exc
    except Exception as exc:
        await _reset(stream)
        raise DialError(f"dialing {addr} through the relay failed: {exc}") from exc
    log.info("connected to %s through relay %s", dest, relay.peer_id)


async def _reset(stream) -> None:
    if stream is not None:
        try:
            await stream.reset()
        except Exception:  # already gone
            pass


async def _close(stream) -> None:
    try:
        await stream.close()
    except Exception:  # the relay went away meanwhile: the slot is taken all the same
        pass


async def _watch_upgrades(host: IHost, every_s: float = 1.0) -> None:
    """Log each peer reached through a relay only, and when it gets a direct connection
    (DCUtR's work, or that peer dialing us)."""
    relayed_only: set[str] = set()
    while True:
        now = relayed_peers(host)
        for pid, direct in now.items():
            if not direct and pid not in relayed_only:
                relayed_only.add(pid)
                log.info("connected to %s through a relay only", pid)
        live = {p.to_base58() for p in host.get_connected_peers()}
        for pid in list(relayed_only):
            if now.get(pid) or (pid in live and pid not in now):
                log.info("connection to %s upgraded: direct now (DCUtR)", pid)
                relayed_only.discard(pid)
            elif pid not in live:
                relayed_only.discard(pid)
        await trio.sleep(every_s)


class _Reservations:
    """The relayed addresses this host holds a slot for, added to what ``host.get_addrs()`` advertises."""

    def __init__(self, host: IHost, relays: tuple[str, ...]):
        self.host, self.relays = host, relays
        self.addrs: dict[str, multiaddr.Multiaddr] = {}  # relay addr -> our circuit addr through it
        self.why: dict[str, str] = {}  # relay addr -> why the last attempt failed
        self._told: set[str] = set()
        own = host.get_addrs

        def get_addrs() -> list[multiaddr.Multiaddr]:  # py-libp2p's own get_addrs would strip the circuit
            return [*own(), *self.addrs.values()]

        host.get_addrs = get_addrs  # DHT provider records, identify and `join` entries use it

    async def round(self) -> bool:
        """Take or refresh a slot on every relay; True when none is left to retry soon (each gave a
        slot or is no relay at all)."""
        async with trio.open_nursery() as nursery:
            for relay in self.relays:
                nursery.start_soon(self._reserve, relay)
        return all(r in self.addrs or self.why.get(r) == NO_RELAY for r in self.relays)

    async def _reserve(self, relay: str) -> None:
        me = self.host.get_id().to_base58()
        stream = None
        try:
            with trio.fail_after(RESERVE_TIMEOUT_S):
                info = await connect(self.host, relay, timeout_s=RESERVE_TIMEOUT_S)
                stream = await self.host.new_stream(info.peer_id, [HOP_PROTOCOL_ID])
                await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
                resp = await read_delimited_msg(stream, HopMessage)
            status = StatusCode(resp.status) if resp.HasField("status") else StatusCode.OK
            if status != StatusCode.OK:
                raise DialError(f"refused: {status.name}")
        except Exception as exc:  # not a relay (yet), unreachable, full: tried again
            await _reset(stream)
            self.why[relay] = _why(exc)
            if self.addrs.pop(relay, None) is not None:
                log.warning("lost the relay slot on %s (%s)", relay, self.why[relay])
            return
        await _close(stream)
        self.why.pop(relay, None)
        if relay not in self.addrs:
            self.addrs[relay] = multiaddr.Multiaddr(f"{relay}/p2p-circuit/p2p/{me}")
            log.info("reserved a relay slot: other peers reach this one at %s", self.addrs[relay])

    def tell(self) -> None:
        """One WARNING per relay that gives no slot (again after it gave one)."""
        for relay in self.relays:
            if relay in self.addrs:
                self._told.discard(relay)
            elif relay not in self._told:
                self._told.add(relay)
                log.warning("no relay slot on %s (%s); peers outside this network may not reach this one "
                            "(the relay must run with --relay)", relay, self.why.get(relay, "no answer"))

    async def first(self) -> None:
        """Retry for up to FIRST_ROUND_S (a relay started at the same time may not listen yet)."""
        delay = 0.5
        with trio.move_on_after(FIRST_ROUND_S):
            while not await self.round():
                await trio.sleep(delay)
                delay = min(delay * 2, 4.0)
        self.tell()

    async def keep(self) -> None:
        while True:
            settled = all(r in self.addrs for r in self.relays)
            await trio.sleep(RESERVE_EVERY_S if settled else RETRY_S)
            await self.round()
            self.tell()


def _why(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:  # py-libp2p's StreamFailure hides the multiselect refusal in its cause
        if "protocol not supported" in str(seen) or "protocols not supported" in str(seen):
            return NO_RELAY
        seen = seen.__cause__ or seen.__context__
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


@asynccontextmanager
async def relay_services(host: IHost, params: RelayParams) -> AsyncIterator[None]:
    """Run on a started ``host`` what ``params`` asks: the relay, the reservations, DCUtR.

    A relay also accepts relayed connections and runs DCUtR; a peer behind NAT
    accepts relayed connections (circuit v2 "stop"), keeps its reservations and
    runs DCUtR. A peer with neither runs nothing here (it can still dial
    relayed addresses: :func:`dial_circuit`).
    """
    if not params.serve and not params.reserve_on:
        yield
        return
    async with AsyncExitStack() as stack:
        protocol = CircuitV2Protocol(host, limits=RELAY_LIMITS, allow_hop=params.serve)
        await stack.enter_async_context(background_trio_service(protocol))
        await stack.enter_async_context(background_trio_service(DCUtRProtocol(host)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_upgrades, host)
            if params.reserve_on:
                keeper = _Reservations(host, params.reserve_on)
                await keeper.first()
                nursery.start_soon(keeper.keep)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
