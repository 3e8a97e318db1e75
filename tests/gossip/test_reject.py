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
