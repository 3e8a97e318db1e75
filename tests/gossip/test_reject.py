"""Bad announcements are rejected by the first honest peer and never forwarded."""

from __future__ import annotations

import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2

from learnae.gossip.topics import topic
from learnae.identity import Identity
from learnae.ledger.entry import sign_entry

from .helpers import SWARM, swarm, wait_until


def _chain_check(entry):
    return "fork" if entry.body.get("reason") == "fork-me" else None


async def _async_chain_check(entry):
    await trio.sleep(0.001)  # e.g. the ledger looks the author's chain up
    return _chain_check(entry)


@pytest.mark.parametrize("chain_check", [_chain_check, _async_chain_check], ids=["sync", "async"])
async def test_invalid_announcements_are_rejected_and_not_forwarded(chain_check):
    # M(0) -- B(1) -- C(2): everything C receives from M went through B's validators.
    async with swarm(3, links=[(0, 1), (2, 1)], chain_check=chain_check) as (m, b, c):
        t = topic(SWARM)
        m.gossip.pubsub.remove_topic_validator(t)  # M is malicious: it skips validation
        first = m.entry()
        await m.gossip.publish(first)
        assert await wait_until(lambda: len(c.got) == 1)

        other = Identity.generate()
        good = m.entry().to_bytes()
        tampered = good.replace(b"\x66reason\x62n1", b"\x66reason\x62n9")  # the body alone, not a key's bytes
        assert tampered != good
        bad = {
            "oversize": b"\xa9" + b"\x00" * 70_000,
            "undecodable": b"\xff\x00garbage",
            "bad-signature": tampered,
            "wrong-swarm": sign_entry(m.ident, swarm="0123456789abcdef", seq=5, prev=first.cid,
                                      kind="leave", body={"reason": "x"}).to_bytes(),
            "signer-mismatch": sign_entry(other, swarm=SWARM, seq=0, prev=None, kind="leave",
                                          body={"reason": "forged"}).to_bytes(),
            "chain": sign_entry(m.ident, swarm=SWARM, seq=7, prev=first.cid, kind="leave",
                                body={"reason": "fork-me"}).to_bytes(),
        }
        for data in bad.values():
            await m.gossip.publish(data)
        # A message whose libp2p signature does not match its content (tampered in flight).
        msg = rpc_pb2.Message(data=good, topicIDs=[t], from_id=m.host.get_id().to_bytes(),
                              seqno=b"\x00" * 7 + b"\x09", signature=b"\x01" * 64)
        m.gossip.router.send_rpc(b.host.get_id(), rpc_pb2.RPC(publish=[msg]))

        sentinel = sign_entry(m.ident, swarm=SWARM, seq=1, prev=first.cid, kind="leave",
                              body={"reason": "sentinel"})
        await m.gossip.publish(sentinel)
        assert await wait_until(lambda: len(c.got) >= 2)
        assert await wait_until(lambda: sum(b.gossip.stats()["rejected"].values()) >= len(bad) + 1)

        assert [a.entry.cid for a in c.got] == [first.cid, sentinel.cid]
        assert [a.entry.cid for a in b.got] == [first.cid, sentinel.cid]
        rejected = b.gossip.stats()["rejected"]
        for reason in bad:
            assert rejected.get(reason) == 1, (reason, rejected)
        assert rejected.get("bad-pubsub-signature") == 1
        assert b.gossip.stats()["rejected_by_peer"] == {m.ident.peer_id: len(bad) + 1}
        assert c.gossip.stats()["rejected"] == {}  # C never even saw them
        assert b.gossip.score(m.ident.peer_id) < 0 <= b.gossip.score(c.ident.peer_id)


@pytest.mark.parametrize("garbage", [b"\xff" * 40, b"\x0a\x05\x08", b"\x12\x80\x80\x80\x80\x10"],
                         ids=["not-protobuf", "truncated", "huge-field"])
async def test_an_rpc_that_cannot_be_read_resets_the_stream_and_never_crashes_the_peer(garbage):
    """py-libp2p lets a protobuf DecodeError out of its pubsub read loop, which took the whole
    host down: seen when a peer crashed on start with a traceback."""
    from libp2p.peer.id import ID
    from libp2p.utils import encode_varint_prefixed

    from learnae.gossip.router import PROTOCOLS

    async with swarm(3, links=[(0, 1), (2, 1)]) as (m, b, c):
        stream = await m.host.new_stream(ID.from_base58(b.ident.peer_id), [PROTOCOLS[0]])
        await stream.write(encode_varint_prefixed(garbage))
        assert await wait_until(lambda: b.gossip.stats()["rejected"].get("bad-rpc") == 1)
        # B is alive and still delivers what its other neighbour publishes
        await c.gossip.publish(c.entry())
        assert await wait_until(lambda: len(b.got) == 1)
        assert b.gossip.stats()["rejected_by_peer"] == {m.ident.peer_id: 1}


async def test_rpcs_written_to_one_stream_at_once_arrive_whole():
    """py-libp2p writes to a peer's stream from two tasks (its send loop, and the replay of
    recent messages to a new peer); RPCs larger than yamux's 256 KiB window interleaved."""
    from libp2p.peer.id import ID

    async with swarm(2, links=[(1, 0)]) as (a, b):
        stream = a.gossip.pubsub.peers[ID.from_base58(b.ident.peer_id)]
        t = topic(SWARM)
        rpcs = [rpc_pb2.RPC(publish=[rpc_pb2.Message(data=bytes([i]) * 200_000, topicIDs=[t],
                                                     from_id=a.host.get_id().to_bytes(), seqno=bytes(8))])
                for i in range(3)]
        async with trio.open_nursery() as nursery:
            for rpc in rpcs:
                nursery.start_soon(a.gossip.pubsub.write_msg, stream, rpc)
        # each arrives whole and is judged on its own (unsigned): none is unreadable
        assert await wait_until(lambda: sum(b.gossip.stats()["rejected"].values()) >= 3)
        assert "bad-rpc" not in b.gossip.stats()["rejected"], b.gossip.stats()["rejected"]
