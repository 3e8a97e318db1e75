"""Reaching and being reached, between real py-libp2p hosts on 127.0.0.1.

A bootstrap address that leads nowhere, or to another peer, is said once in
learnae's words (which peer is there, or that nothing listens) while discovery
keeps redialing quietly; a wildcard listener names the addresses other machines
dial.
"""

from __future__ import annotations

import logging
import socket
from functools import partial

import pytest
import trio

from learnae.errors import ServiceError
from learnae.gossip import connect, dial_line, open_host
from learnae.gossip.discovery import DiscoveryParams, open_discovery
from learnae.identity import Identity
from learnae.peer.reach import explain_dial_failure, other_machine_addrs, watch_bootstrap
from tests.gossip.helpers import wait_until

SWARM = "8cbb34e94bc00dcc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def said(caplog, *needles: str) -> list[str]:
    """Every record at INFO or above (learnae's or a library's) that mentions any of ``needles``."""
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.INFO and any(n in r.getMessage() for n in needles)]


async def test_a_wrong_peer_id_at_a_live_address_is_said_once_naming_the_peer_there(caplog):
    caplog.set_level(logging.INFO, logger="learnae")
    async with open_host(Identity.generate()) as me, open_host(Identity.generate()) as there:
        actual, wrong = there.get_id().to_base58(), Identity.generate().peer_id
        addr = dial_line(there).replace(actual, wrong)  # a stale line: the peer there has a new key
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(watch_bootstrap, me, [addr], grace_s=1.0))
            async with open_discovery(me, SWARM, DiscoveryParams(bootstrap=(addr,), dht=False)):
                await trio.sleep(9)  # discovery redials at 0.5, 1, 2 and 4 s
            nursery.cancel_scope.cancel()
        assert not me.get_connected_peers()
    (line,) = said(caplog, wrong, addr)
    where = addr.split("/p2p/")[0]
    assert line.startswith("WARNING learnae.peer.reach: ") and "retrying in the background" in line
    assert f"the peer at {where} has ID {actual}, not {wrong}: copy its current first line" in line


async def test_an_unreachable_bootstrap_is_said_once_and_redialed_until_it_answers(caplog):
    caplog.set_level(logging.INFO, logger="learnae")
    ident, port = Identity.generate(), free_port()
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{ident.peer_id}"
    async with open_host(Identity.generate()) as me, trio.open_nursery() as nursery:
        nursery.start_soon(partial(watch_bootstrap, me, [addr], grace_s=1.0))
        async with open_discovery(me, SWARM, DiscoveryParams(bootstrap=(addr,), dht=False)):
            await trio.sleep(5)
            (line,) = said(caplog, ident.peer_id, f"/tcp/{port}")
            assert line.startswith("WARNING learnae.peer.reach: ") and "retrying in the background" in line
            assert f"cannot reach /ip4/127.0.0.1/tcp/{port}: nothing listens there" in line
            async with open_host(ident, [f"/ip4/127.0.0.1/tcp/{port}"]):  # the peer starts after all
                assert await wait_until(lambda: ident.peer_id in [p.to_base58() for p in me.get_connected_peers()],
                                        30)
                assert await wait_until(lambda: len(said(caplog, "reached")) == 1, 5)
        nursery.cancel_scope.cancel()
    lines = said(caplog, ident.peer_id, f"/tcp/{port}")
    assert [line.split(":")[0] for line in lines if "WARNING" in line] == ["WARNING learnae.peer.reach"]


async def test_a_listener_that_never_answers_is_no_answer():
    async with open_host(Identity.generate()) as me:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        addr = f"/ip4/127.0.0.1/tcp/{listener.getsockname()[1]}/p2p/{Identity.generate().peer_id}"
        with pytest.raises(ServiceError) as failed:
            await connect(me, addr, timeout_s=1.0)
        listener.close()
    assert explain_dial_failure(addr, failed.value).startswith(f"cannot reach {addr.split('/p2p/')[0]}: no answer")


async def test_a_wildcard_listener_names_the_addresses_other_machines_dial():
    import ifaddr  # an independent view of this machine's interfaces

    lan = {ip.ip for a in ifaddr.get_adapters() for ip in a.ips
           if isinstance(ip.ip, str) and not ip.ip.startswith(("127.", "169.254."))}
    async with open_host(Identity.generate(), ["/ip4/127.0.0.1/tcp/0"]) as local:
        assert other_machine_addrs(local) is None  # its dial line is the address
    async with open_host(Identity.generate(), ["/ip4/0.0.0.0/tcp/0"]) as everywhere:
        port, peer_id = dial_line(everywhere).split("/tcp/")[1].split("/p2p/")
        others = other_machine_addrs(everywhere)
    assert {a.split("/")[2] for a in others} == lan
    assert all(a.startswith("/ip4/") and a.endswith(f"/tcp/{port}/p2p/{peer_id}") for a in others)
