"""Announcements between real py-libp2p hosts on 127.0.0.1 (one process)."""

from __future__ import annotations

import trio

from learnae.gossip import connect, dial_line, open_host
from learnae.gossip.announce import open_gossip
from learnae.identity import Identity

from .helpers import SWARM, swarm, wait_until


async def test_every_peer_receives_every_announcement():
    async with swarm(5) as peers:
        sent = {}
        for p in peers[1:3]:
            for _ in range(3):
                e = p.entry()
                await p.gossip.publish(e)
                sent[e.cid] = p.ident.peer_id
        for i, p in enumerate(peers):
            expect = {c for c, author in sent.items() if author != p.ident.peer_id}
            assert await wait_until(lambda: {a.entry.cid for a in p.got} >= expect), f"peer {i}"
            assert all(a.origin == a.entry.author for a in p.got)
            assert {a.entry.cid for a in p.got} == expect  # nothing extra, no own echo
            assert len(p.got) == len(expect)  # no duplicates


async def test_burst_of_200_from_one_peer_arrives_complete():
    async with swarm(3, links=[(1, 0), (2, 1)]) as peers:  # a line: 0 - 1 - 2
        entries = [peers[0].entry() for _ in range(200)]
        for e in entries:
            await peers[0].gossip.publish(e)  # waits when the queue is full; never drops
        want = {e.cid for e in entries}
        for p in peers[1:]:
            assert await wait_until(lambda: len(p.got) >= 200, timeout_s=60), len(p.got)
            assert {a.entry.cid for a in p.got} == want
            stats = p.gossip.stats()
            assert stats["shed"] == 0 and stats["dropped"] == {} and stats["rejected"] == {}


async def test_late_joiner_gets_the_next_announcements():
    async with swarm(3) as peers:
        await peers[1].gossip.publish(peers[1].entry())
        assert await wait_until(lambda: len(peers[2].got) == 1)
        ident = Identity.generate()
        async with open_host(ident) as host, open_gossip(host, SWARM) as late:
            await connect(host, peers[0].addr)
            await late.wait_for_topic_peers(1)
            await trio.sleep(0.3)  # the mesh forms on subscription (no heartbeat needed)
            nxt = peers[1].entry()
            await peers[1].gossip.publish(nxt)
            got = []
            with trio.fail_after(15):
                while nxt.cid not in {a.entry.cid for a in got}:
                    got.append(await late.announcements().get())
            # py-libp2p may also replay its recent-message cache to a new peer: fine, as
            # long as what arrives is valid and the new announcement is there.
            assert all(a.origin == peers[1].ident.peer_id for a in got)


async def test_publish_after_shutdown_fails_loudly():
    ident = Identity.generate()
    async with open_host(ident) as host:
        assert dial_line(host).endswith("/p2p/" + ident.peer_id)
        async with open_gossip(host, SWARM) as g:
            pass
        import pytest
        from learnae.errors import ServiceError
        from learnae.ledger.entry import sign_entry
        with pytest.raises(ServiceError, match="shut down"):
            await g.publish(sign_entry(ident, swarm=SWARM, seq=0, prev=None, kind="leave",
                                       body={"reason": "x"}))


async def test_a_consumer_that_falls_behind_is_told_not_silently_dropped(caplog):
    from learnae.gossip.announce import PublishParams

    async with swarm(2, collect=False, publish=PublishParams(inbox_capacity=5)) as (a, b):
        for _ in range(12):
            await a.gossip.publish(a.entry())
        assert await wait_until(lambda: b.gossip.stats()["accepted"] == 12)
        stats = b.gossip.stats()
        assert stats["shed"] == 7 and stats["inbox"] == 5  # counted...
        assert any("shed" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)  # ...and said
        kept = [b.gossip.announcements().get_nowait().entry.seq for _ in range(5)]
        assert len(set(kept)) == 5 and min(kept) >= 5  # the newest are kept (oldest shed first)
