"""How other peers reach this one, and what is wrong when it cannot reach a bootstrap peer.

* :func:`other_machine_addrs`: a host listening on every interface (``0.0.0.0``, the
  default) prints ``127.0.0.1`` as its dial line, which only works on this machine;
  these are the addresses a peer on another machine dials instead.
* :func:`explain_dial_failure`: a failed dial in a person's words: nothing listens
  there, no answer, or another peer answers (and which one).
* :func:`watch_bootstrap`: discovery dials and redials the bootstrap peers
  (:func:`learnae.gossip.health.keep_bootstrap`); this says once, per address, why one
  is not reached, and keeps the redials quiet.

Example:
    >>> async with trio.open_nursery() as nursery:                        # doctest: +SKIP
    ...     nursery.start_soon(watch_bootstrap, node.host, cfg.bootstrap)
    WARNING learnae.peer.reach: bootstrap /ip4/10.0.0.2/tcp/4010/p2p/12D3KooWA...: the peer at
    /ip4/10.0.0.2/tcp/4010 has ID 12D3KooWB..., not 12D3KooWA...: copy its current first line ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import trio

from learnae.errors import ServiceError

__all__ = ["other_machine_addrs", "other_machine_lines", "explain_dial_failure", "watch_bootstrap"]

log = logging.getLogger(__name__)

WATCH_GRACE_S = 6.0  # discovery's first dial of a bootstrap peer has a 5 s deadline
PROBE_TIMEOUT_S = 5.0  # the dial that learns why a bootstrap peer is not reached

_WILDCARDS = {"ip4": ("0.0.0.0", 4), "ip6": ("::", 6)}
_ACTUAL_ID = re.compile(r"remote_peer_id_from_pubkey=(\w+)")  # py-libp2p's PeerIDMismatchesPubkey


def other_machine_addrs(host) -> list[str] | None:
    """The full multiaddrs a peer on another machine dials, when ``host`` listens on a wildcard.

    Returns:
        None when no listen address is a wildcard (the dial line is the address);
        else one ``/ip4/<address>/tcp/<port>/p2p/<id>`` per address of this machine's
        interfaces other than loopback and link-local (an empty list: there is none,
        so only peers on this machine can reach it).
    """
    from multiaddr.utils import get_network_addrs

    out, wildcard = [], False
    for addr in (str(a) for a in host.get_addrs()):
        _, proto, ip, rest = (addr.split("/", 3) + ["", "", ""])[:4]
        if _WILDCARDS.get(proto, (None,))[0] != ip:
            continue  # a concrete address (its dial line says it), or a relayed one
        wildcard = True
        out += [f"/{proto}/{a}/{rest}" for a in get_network_addrs(_WILDCARDS[proto][1])
                if f"/{proto}/{a}/{rest}" not in out]
    return out if wildcard else None


def other_machine_lines(others: list[str] | None) -> list[str]:
    """What to print (on stderr) under a dial line about :func:`other_machine_addrs`: nothing
    when the listener is no wildcard, else which address other machines use."""
    if others is None:
        return []
    if not others:
        return ["listening on every interface, but this machine has no address besides loopback: only "
                "peers on this machine can reach it, with the line above"]
    return ["listening on every interface: peers on this machine use the line above; a peer on another "
            "machine uses the one of these on its network:", *(f"  {addr}" for addr in others)]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything under it: causes, contexts, and the members of exception groups
    (py-libp2p wraps one dial's failure in four layers)."""
    stack, seen = [exc], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [x for x in (e.__cause__, e.__context__) if x is not None]
        stack += list(getattr(e, "exceptions", None) or getattr(e, "errors", None) or ())


def explain_dial_failure(addr: str, exc: BaseException) -> str:
    """Why dialing the full multiaddr ``addr`` failed with ``exc``, and the fix, in one line."""
    where, _, expected = addr.rpartition("/p2p/")
    for e in _causes(exc):
        found = _ACTUAL_ID.search(str(e)) if type(e).__name__ == "PeerIDMismatchesPubkey" else None
        if found:
            return (f"the peer at {where} has ID {found.group(1)}, not {expected}: copy its current first line "
                    "(`learnae peer start` prints it) as --bootstrap")
    for e in _causes(exc):
        if isinstance(e, ConnectionRefusedError):
            return f"cannot reach {where}: nothing listens there (connection refused: is the peer running?)"
        if isinstance(e, trio.TooSlowError):
            return f"cannot reach {where}: no answer (a wrong address, or a firewall between the machines)"
        if isinstance(e, OSError) and e.strerror:
            return f"cannot reach {where}: {e.strerror.lower()}"
    return f"cannot reach {where}: the connection failed while the peers met (is it a learnae peer?)"


class _QuietRedials(logging.Filter):
    """Drops discovery's own "bootstrap peer ... unreachable" lines for the watched addresses:
    the watcher says what is wrong once, in its words. ``LEARNAE_LOG=learnae.gossip=debug``
    keeps them all."""

    def __init__(self, addrs: Sequence[str]):
        super().__init__()
        self.addrs = set(addrs)

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("bootstrap peer %s unreachable") or not record.args:
            return True
        return record.args[0] not in self.addrs or logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


@contextmanager
def _quiet_redials(addrs: Sequence[str]) -> Iterator[_QuietRedials]:
    health = logging.getLogger("learnae.gossip.health")
    quiet = _QuietRedials(addrs)
    health.addFilter(quiet)
    try:
        yield quiet
    finally:
        health.removeFilter(quiet)


async def watch_bootstrap(host, addrs: Sequence[str], *, may_connect: Callable[[str], bool] | None = None,
                          grace_s: float = WATCH_GRACE_S, timeout_s: float = PROBE_TIMEOUT_S,
                          poll_s: float = 0.5) -> None:
    """Say once per bootstrap address why it is not reached; run until cancelled.

    An address still not connected ``grace_s`` after the start is dialled once more
    to learn why (nothing listens, no answer, another peer ID), and that is logged
    as one WARNING ending "retrying in the background"; discovery keeps redialing
    quietly. When it is reached later, one INFO line says so. A peer ID that
    ``may_connect`` refuses (an injected partition or topology) is not explained.
    """
    from learnae.gossip import connect, parse_peer_addr

    async def watch(addr: str) -> None:
        peer, t0 = parse_peer_addr(addr).peer_id, trio.current_time()
        if may_connect is not None and not may_connect(peer.to_base58()):
            quiet.addrs.discard(addr)  # refused on purpose: discovery's own redial lines tell it
            return
        with trio.move_on_after(grace_s):
            while peer not in host.get_connected_peers():
                await trio.sleep(poll_s)
            return  # reached: discovery keeps it connected
        if may_connect is not None and not may_connect(peer.to_base58()):
            quiet.addrs.discard(addr)  # refused on purpose: discovery's own redial lines tell it
            return
        try:
            await connect(host, addr, timeout_s=timeout_s)
            return
        except ServiceError as exc:
            if peer in host.get_connected_peers():  # discovery's own dial won meanwhile
                return
            log.warning("bootstrap %s: %s; retrying in the background", addr, explain_dial_failure(addr, exc))
        while peer not in host.get_connected_peers():
            await trio.sleep(poll_s)
        log.info("bootstrap peer %s reached after %.0f s", addr, trio.current_time() - t0)

    with _quiet_redials(addrs) as quiet:
        async with trio.open_nursery() as nursery:
            for addr in dict.fromkeys(addrs):
                nursery.start_soon(watch, addr)
            await trio.sleep_forever()
