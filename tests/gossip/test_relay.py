"""Circuit relay v2 on loopback: a relay, a peer holding a slot on it, peers dialing that peer through it.

The same code on separate hosts behind a real NAT (namespaces, iptables) is
tests/peer/test_real_networks.py.
"""

from __future__ import annotations

import logging

import pytest
import trio

from learnae.errors import ConfigError
from learnae.gossip import connect, dial_line, full_addrs, open_host, parse_peer_addr
from learnae.gossip.host import DialError
from learnae.gossip.relay import RelayParams, relayed_peers
from learnae.identity import Identity
from learnae.peer.config import load_config

ECHO = "/learnae-test/echo/1"


async def echo(stream) -> None:
    await stream.write(await stream.read(1024))
    await stream.close()


async def test_a_peer_behind_nat_is_reached_through_the_relay_it_holds_a_slot_on(caplog):
    caplog.set_level(logging.INFO, logger="learnae.gossip.relay")
    async with open_host(Identity.generate(), relay=RelayParams(serve=True)) as relay:
        relay_addr = dial_line(relay)
        async with open_host(Identity.generate(), relay=RelayParams(reserve_on=(relay_addr,))) as natted:
            me = natted.get_id().to_base58()
            circuit = f"{relay_addr}/p2p-circuit/p2p/{me}"
            # the slot is taken before open_host returns; the relayed address is advertised after the direct one
            assert full_addrs(natted)[1:] == [circuit] and dial_line(natted) == full_addrs(natted)[0]
            assert f"other peers reach this one at {circuit}" in caplog.text
            natted.set_stream_handler(ECHO, echo)
            async with open_host(Identity.generate()) as dialer:
                info = await connect(dialer, circuit, timeout_s=5)
                assert info.peer_id.to_base58() == me
                assert relayed_peers(dialer) == {me: False}  # through the relay only
                stream = await dialer.new_stream(info.peer_id, [ECHO])
                await stream.write(b"over the relay")
                with trio.fail_after(5):
                    assert await stream.read(1024) == b"over the relay"


async def test_a_relay_refuses_a_peer_without_a_slot_and_a_non_relay_gives_none(caplog):
    caplog.set_level(logging.WARNING, logger="learnae.gossip.relay")
    async with open_host(Identity.generate(), relay=RelayParams(serve=True)) as relay, \
            open_host(Identity.generate()) as plain, open_host(Identity.generate()) as dialer:
        unknown = Identity.generate().peer_id
        with pytest.raises(DialError, match="refused .*NO_RESERVATION"):
            await connect(dialer, f"{dial_line(relay)}/p2p-circuit/p2p/{unknown}", timeout_s=5)
        # a peer behind NAT whose bootstrap peer does not relay: one warning, no relayed address
        async with open_host(Identity.generate(), relay=RelayParams(reserve_on=(dial_line(plain),))) as natted:
            assert not any("/p2p-circuit" in a for a in full_addrs(natted))
        assert "no relay slot on" in caplog.text and "--relay" in caplog.text


def test_a_relayed_address_is_a_valid_bootstrap_peer():
    relay, peer = Identity.generate().peer_id, Identity.generate().peer_id
    addr = f"/ip4/10.0.0.1/tcp/4010/p2p/{relay}/p2p-circuit/p2p/{peer}"
    assert parse_peer_addr(addr).peer_id.to_base58() == peer
    cfg, _ = load_config({"bootstrap": [addr], "relay": True, "behind_nat": True}, env={})
    assert cfg.bootstrap == [addr] and cfg.relay and cfg.behind_nat
    for bad in (f"/p2p-circuit/p2p/{peer}", f"/ip4/10.0.0.1/tcp/4010/p2p-circuit/p2p/{peer}", addr + "/tcp/1"):
        with pytest.raises(ConfigError):
            parse_peer_addr(bad)
        with pytest.raises(ConfigError):
            load_config({"bootstrap": [bad]}, env={})


async def test_a_peer_started_before_its_relay_takes_the_slot_once_the_relay_listens():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay_id = Identity.generate()
    relay_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{relay_id.peer_id}"
    got = {}

    async def natted_peer():
        async with open_host(Identity.generate(), relay=RelayParams(reserve_on=(relay_addr,))) as natted:
            got["addrs"] = full_addrs(natted)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(natted_peer)
        await trio.sleep(1.0)  # the first attempts find nobody listening
        async with open_host(relay_id, [f"/ip4/127.0.0.1/tcp/{port}"], relay=RelayParams(serve=True)):
            with trio.fail_after(8):
                while "addrs" not in got:
                    await trio.sleep(0.1)
    assert any(a.startswith(f"{relay_addr}/p2p-circuit/p2p/") for a in got["addrs"]), got
