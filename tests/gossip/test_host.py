"""The host factory, addresses, topics and the stateless validator checks."""

from __future__ import annotations

import pytest

from learnae.errors import ConfigError
from learnae.gossip import connect, dial_line, full_addrs, open_host, parse_peer_addr, swarm_id, topic
from learnae.gossip.host import DialError
from learnae.gossip.topics import swarm_of_topic
from learnae.gossip.validate import EntryValidator
from learnae.identity import Identity
from learnae.ledger.entry import sign_entry

SW = swarm_id("digits", "ab" * 32)


async def test_host_uses_the_peer_key_and_prints_a_dialable_address():
    a, b = Identity.generate(), Identity.generate()
    async with open_host(a) as ha, open_host(b) as hb:
        assert ha.get_id().to_base58() == a.peer_id
        addrs = full_addrs(ha)
        assert addrs and all(x.endswith("/p2p/" + a.peer_id) for x in addrs)
        assert dial_line(ha).startswith("/ip4/127.0.0.1/tcp/")
        await connect(hb, dial_line(ha))
        assert a.peer_id in [p.to_base58() for p in hb.get_connected_peers()]
        # Only Noise is offered: a plaintext or TLS dialer would not get through.
        secure = hb.get_network().upgrader.security_multistream.transports
        assert [str(p) for p in secure] == ["/noise"]


async def test_wildcard_listener_prints_a_loopback_line():
    async with open_host(Identity.generate(), ["/ip4/0.0.0.0/tcp/0"]) as h:
        assert dial_line(h).startswith("/ip4/127.0.0.1/tcp/")


async def test_bad_addresses_name_the_input():
    with pytest.raises(ConfigError, match="not a multiaddr"):
        async with open_host(Identity.generate(), ["127.0.0.1:4010"]):
            pass
    with pytest.raises(ConfigError, match="/p2p/<peer-id>"):
        parse_peer_addr("/ip4/127.0.0.1/tcp/4010")
    async with open_host(Identity.generate()) as h:
        ghost = Identity.generate().peer_id
        with pytest.raises(DialError, match="127.0.0.1/tcp/1/"):
            await connect(h, f"/ip4/127.0.0.1/tcp/1/p2p/{ghost}", timeout_s=3)


def test_swarm_id_and_topic():
    assert swarm_id("digits", "f1") == swarm_id("digits", "f1")
    assert swarm_id("digits", "f1") != swarm_id("digits", "f2") != swarm_id("other", "f1")
    assert topic(SW) == f"/learnae/1/{SW}/entries" and swarm_of_topic(topic(SW)) == SW
    assert swarm_of_topic("/ipfs/other") is None
    with pytest.raises(ConfigError, match="swarm name"):
        swarm_id("has space", "f1")


def test_validator_reasons():
    me, other = Identity.generate(), Identity.generate()
    v = EntryValidator(SW)
    good = sign_entry(me, swarm=SW, seq=0, prev=None, kind="leave", body={"reason": "ok"})
    assert v.check(good.to_bytes(), me.peer_id) == (good, None)
    assert v.check(b"\x00" * 65537, me.peer_id)[1] == "oversize"
    assert v.check(b"\xff\xfe", me.peer_id)[1] == "undecodable"
    # the body's CBOR "reason": "ok" alone (a bare b"ok" may also be in the random peer ID or signature)
    tampered = good.to_bytes().replace(b"\x66reason\x62ok", b"\x66reason\x62OK")
    assert tampered != good.to_bytes()
    assert v.check(tampered, me.peer_id)[1] == "bad-signature"
    assert v.check(good.to_bytes(), other.peer_id)[1] == "signer-mismatch"
    wrong = sign_entry(me, swarm="0" * 16, seq=0, prev=None, kind="leave", body={"reason": "ok"})
    assert v.check(wrong.to_bytes(), me.peer_id)[1] == "wrong-swarm"


async def test_a_host_stopping_its_listeners_never_lists_a_closed_socket():
    """GossipSub's heartbeat signs the host's addresses into control messages while the host
    shuts down; a listener still listed while its socket closed raised EBADF and took it down."""
    import trio
    from libp2p.peer.peerstore import env_to_send_in_RPC

    from learnae.gossip.host import stop_listening

    errors = []

    async def sign_forever(host) -> None:  # as a heartbeat would, at every checkpoint
        while True:
            try:
                env_to_send_in_RPC(host)
            except OSError as exc:
                errors.append(exc)
            await trio.sleep(0)

    async with open_host(Identity.generate()) as host:
        assert host.get_addrs()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sign_forever, host)
            await trio.sleep(0.05)
            await stop_listening(host)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert errors == [] and host.get_addrs() == []
