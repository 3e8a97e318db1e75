"""The libp2p host every learnae peer runs: Ed25519 identity, TCP + Noise + Yamux.

py-libp2p's ``new_host()`` defaults are not what a peer wants (measured on 0.8.1):
it offers plaintext, secio and TLS next to Noise, every ``connect()`` waits
~250 ms for a happy-eyeballs race unless ``max_connections_per_peer=1``, and
leaving its context while streams are busy can crash the process. This module
builds the host once, the way learnae needs it, and gives it a structured lifetime.

Example:
    >>> async def main():
    ...     async with open_host(Identity.generate()) as host:
    ...         print(dial_line(host))          # first line a waiting peer prints
    ...         # /ip4/127.0.0.1/tcp/40123/p2p/12D3KooW...

Layering: this package may import libp2p and learnae.ledger (entry decoding);
storage and ledger never import gossip.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from learnae.errors import ConfigError, ServiceError
from learnae.identity import Identity
from learnae.log import adopt_library_loggers

if TYPE_CHECKING:
    from learnae.gossip.relay import RelayParams

__all__ = [
    "open_host",
    "full_addrs",
    "dial_line",
    "parse_peer_addr",
    "connect",
    "disconnect_all",
    "stop_listening",
    "DialError",
]

log = logging.getLogger(__name__)
adopt_library_loggers()  # py-libp2p just configured its loggers on import: route them through ours

DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)
CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0


class DialError(ServiceError):
    """A remote peer could not be reached (its address is in the message)."""


def connection_config(**overrides: Any) -> ConnectionConfig:
    """The connection settings learnae uses.

    ``max_connections_per_peer=1`` turns py-libp2p's 250 ms dial race into a
    single direct dial (4.4 ms on loopback, measured with py-libp2p 0.8.1).
    """
    params: dict[str, Any] = {"max_connections_per_peer": 1, "dial_timeout": CONNECT_TIMEOUT_S}
    params.update(overrides)
    return ConnectionConfig(**params)


def _parse_listen(addrs: Sequence[str]) -> list[multiaddr.Multiaddr]:
    out = []
    for a in addrs:
        try:
            ma = multiaddr.Multiaddr(a)
        except Exception as exc:  # multiaddr raises a zoo of types
            raise ConfigError(
                f"listen address {a!r} is not a multiaddr; use e.g. /ip4/127.0.0.1/tcp/4010",
                key="listen",
            ) from exc
        names = [p.name for p in ma.protocols()]
        if "tcp" not in names or not ({"ip4", "ip6"} & set(names)):
            raise ConfigError(
                f"listen address {a!r} is not an IP/TCP multiaddr; use e.g. /ip4/0.0.0.0/tcp/4010",
                key="listen",
            )
        out.append(ma)
    return out


def _check_port_free(ma: multiaddr.Multiaddr) -> None:
    """Refuse a listen address another socket listens on.

    py-libp2p binds with SO_REUSEPORT, so a second peer on a busy port would
    silently share it with the first (and other peers' handshakes would land on
    either). A plain bind (SO_REUSEADDR only: a port in TIME_WAIT after a restart is
    fine) fails exactly when someone listens there.

    Raises:
        ConfigError: the address is in use (exit code 2 on the CLI).
    """
    v6 = "ip6" in [p.name for p in ma.protocols()]
    family = socket.AF_INET6 if v6 else socket.AF_INET
    ip = ma.value_for_protocol("ip6" if v6 else "ip4")
    port = int(ma.value_for_protocol("tcp"))
    if port == 0:
        return
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"listen address {ma} is in use by another program (another learnae peer?); pass another "
                    f"--listen port, or port 0 for any free one", key="listen") from None
            # anything else (an address not on this machine...) is for the real bind to report


def build_host(identity: Identity, listen: Sequence[multiaddr.Multiaddr], *, mdns: bool = False,
               conn: ConnectionConfig | None = None) -> IHost:
    """Construct (not start) a host with only Noise and Yamux on offer."""
    key_pair = identity.to_libp2p_keypair()
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    # py-libp2p names its mDNS service with the global `random` module, which a peer has
    # seeded for training (the same --seed on every peer): two peers would announce one name,
    # zeroconf refuses the second (NonUniqueNameException) and they never meet. Draw the name
    # from fresh entropy, and leave the training RNG's state as it was.
    state = random.getstate()
    random.seed(os.urandom(32))
    try:
        host = _new_host(key_pair, listen, noise, conn, mdns)
    finally:
        random.setstate(state)
    # py-libp2p's AutoConnector dials any peer in the peerstore (addresses other
    # peers told us about) whenever we have fewer than 100 connections, and redials
    # the peers we just closed during shutdown. learnae decides whom to dial
    # (bootstrap, mDNS, the swarm's DHT rendezvous), so it stays off.
    host.get_network().auto_connector.maybe_connect = _no_auto_connect
    return host


def _new_host(key_pair, listen, noise, conn, mdns: bool) -> IHost:
    return new_host(
        key_pair=key_pair,
        listen_addrs=list(listen),
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        connection_config=conn or connection_config(),
        enable_mDNS=mdns,  # LAN multicast: off unless the user turns it on
        enable_upnp=False,
        enable_quic=False,
    )


async def _no_auto_connect() -> None:
    return None


@asynccontextmanager
async def open_host(
    identity: Identity,
    listen_addrs: Sequence[str] = DEFAULT_LISTEN,
    *,
    mdns: bool = False,
    connection: ConnectionConfig | None = None,
    relay: RelayParams | None = None,
) -> AsyncIterator[IHost]:
    """Start a py-libp2p host for ``identity`` and stop it cleanly on exit.

    Args:
        identity: the peer's key; the host's peer ID is ``identity.peer_id``.
        listen_addrs: TCP multiaddrs to listen on (port 0 picks a free port).
        mdns: announce and discover peers by multicast DNS on the LAN (sends
            multicast: off by default).
        connection: override :func:`connection_config`.
        relay: relay for peers behind NAT, or be one of them (:mod:`learnae.gossip.relay`);
            None runs neither (the host can still dial relayed addresses).

    Yields:
        the running host (``host.get_id()``, ``host.connect()``, ``host.new_stream()``).

    Raises:
        ConfigError: a listen address is not an IP/TCP multiaddr.
        ServiceError: the address could not be bound (in use, not local).

    On exit every connection is closed before the host's nurseries are left,
    so streams still delivering data cannot crash the shutdown.

    Example:
        >>> async with open_host(ident, ["/ip4/127.0.0.1/tcp/0"]) as host:
        ...     await connect(host, "/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...")
    """
    listen = _parse_listen(listen_addrs)
    for ma in listen:
        _check_port_free(ma)
    host = build_host(identity, listen, mdns=mdns, conn=connection)
    try:
        async with host.run(listen_addrs=listen), AsyncExitStack() as stack:
            try:
                if relay is not None:
                    from learnae.gossip.relay import relay_services

                    await stack.enter_async_context(relay_services(host, relay))
                yield host
            finally:
                with trio.CancelScope(shield=True):
                    await stop_listening(host)
                    await disconnect_all(host)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {', '.join(listen_addrs)}: {exc.strerror or exc}") from exc


async def stop_listening(host: IHost, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close the listeners, so no peer can connect while the host shuts down
    (a connection accepted by a stopping swarm fails with a LifecycleError); the
    host then has no addresses."""
    listeners = host.get_network().listeners
    with trio.move_on_after(timeout_s):
        for key in list(listeners):
            # Unlisted before it closes: GossipSub's heartbeat, still running, signs the host's
            # addresses into a peer record, and a closing socket's getsockname() raises EBADF.
            listener = listeners.pop(key)
            try:
                await listener.close()
            except Exception as exc:
                log.debug("closing listener: %r", exc)


async def disconnect_all(host: IHost, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close every connection of ``host`` at once (best effort, bounded by ``timeout_s``)."""

    async def close(peer_id) -> None:
        try:
            await host.disconnect(peer_id)
        except Exception as exc:  # a half-closed connection must not stop shutdown
            log.debug("disconnect %s: %r", peer_id, exc)

    with trio.move_on_after(timeout_s):
        async with trio.open_nursery() as nursery:
            for peer_id in list(host.get_connected_peers()):
                nursery.start_soon(close, peer_id)


def full_addrs(host: IHost) -> list[str]:
    """Every address of ``host`` as a dialable string ending in ``/p2p/<peer-id>``.

    Wildcard listen addresses (``0.0.0.0``) are not dialable and come last; relayed ones
    (``.../p2p-circuit/p2p/<id>``, held by a peer behind NAT) come after the direct ones.
    """
    addrs = [str(a) for a in host.get_addrs()]
    return sorted(addrs, key=lambda a: ("/ip4/0.0.0.0/" in a or "/ip6/::/" in a, "/p2p-circuit" in a, a))


def dial_line(host: IHost) -> str:
    """The one line a waiting peer prints first: its best full multiaddr.

    Prefers a concrete address over a wildcard; for a wildcard listener it
    substitutes 127.0.0.1 so the line can be pasted as ``--bootstrap`` on the
    same machine (other machines use the host's LAN IP with the same port).
    """
    addrs = full_addrs(host)
    if not addrs:
        raise ServiceError("the host has no listen address")
    best = addrs[0]
    return best.replace("/ip4/0.0.0.0/", "/ip4/127.0.0.1/", 1)


def parse_peer_addr(addr: str) -> PeerInfo:
    """Parse ``/ip4/H/tcp/P/p2p/<peer-id>`` into a PeerInfo.

    A relayed address, ``<relay's full multiaddr>/p2p-circuit/p2p/<peer-id>`` (a peer
    behind NAT, :mod:`learnae.gossip.relay`), gives that peer with the whole address.

    Raises:
        ConfigError: the string is not a full multiaddr with ``/p2p/<peer-id>``.
    """
    if "/p2p-circuit" in addr:
        return _circuit_info(addr)
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise ConfigError(
            f"peer address {addr!r} is not a full multiaddr; it must end in /p2p/<peer-id>, "
            "as printed on the first line of `learnae peer start`",
            key="bootstrap",
        ) from exc


async def connect(host: IHost, addr: str | PeerInfo, timeout_s: float = CONNECT_TIMEOUT_S) -> PeerInfo:
    """Dial a peer by full multiaddr (or PeerInfo) with a deadline.

    Relayed addresses (``<relay>/p2p-circuit/p2p/<id>``, a peer behind NAT) are dialed
    through their relay, after the direct ones failed (they get half of ``timeout_s``).

    Raises:
        ConfigError: ``addr`` is malformed.
        DialError: the peer did not answer within ``timeout_s``.
    """
    info = parse_peer_addr(addr) if isinstance(addr, str) else addr
    circuits = [str(a) for a in info.addrs if "/p2p-circuit" in str(a)]
    if circuits and info.peer_id not in host.get_connected_peers():
        return await _connect_or_relay(host, info, circuits, timeout_s)
    label = addr if isinstance(addr, str) else "/".join(
        [str(info.addrs[0]) if info.addrs else "", "p2p", info.peer_id.to_base58()])
    # py-libp2p refuses to redial a peer that failed recently ("negative cache"), even
    # when it is back; the callers of connect() keep their own backoff.
    network = host.get_network()
    if hasattr(network, "unblock_peer"):
        network.unblock_peer(info.peer_id)
    try:
        with trio.fail_after(timeout_s):
            await host.connect(info)
    except trio.TooSlowError as exc:
        raise DialError(f"dialing {label} timed out after {timeout_s:g} s") from exc
    except Exception as exc:
        raise DialError(f"dialing {label} failed: {exc}") from exc
    return info


def _circuit_info(addr: str) -> PeerInfo:
    relay, _, dest = addr.partition("/p2p-circuit")
    try:
        parse_peer_addr(relay)
        if not dest.startswith("/p2p/") or dest.count("/") != 2:
            raise ValueError(dest)
        return PeerInfo(ID.from_base58(dest[len("/p2p/"):]), [multiaddr.Multiaddr(addr)])
    except Exception as exc:
        raise ConfigError(f"peer address {addr!r} is not a relayed address; it must be "
                          "<relay multiaddr>/p2p-circuit/p2p/<peer-id>", key="bootstrap") from exc


async def _connect_or_relay(host: IHost, info: PeerInfo, circuits: list[str], timeout_s: float) -> PeerInfo:
    from learnae.gossip.relay import dial_circuit

    direct = [a for a in info.addrs if "/p2p-circuit" not in str(a)]
    failures = []
    if direct:
        try:
            return await connect(host, PeerInfo(info.peer_id, direct), timeout_s / 2)
        except DialError as exc:
            failures.append(str(exc))
    deadline = trio.current_time() + (timeout_s / 2 if direct else timeout_s)
    for circuit in circuits:
        try:
            await dial_circuit(host, circuit, max(0.1, deadline - trio.current_time()))
            return info
        except DialError as exc:
            failures.append(str(exc))
    raise DialError("; ".join(failures))
