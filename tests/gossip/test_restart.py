"""A peer that restarts with the same key is heard again at once.

GossipSub identifies a message by (sender, seqno). py-libp2p seeds seqnos with
the time in seconds, so a peer that published faster than one message a second
and then restarted would reuse seqnos its neighbours still remember, and its
new announcements would be dropped as duplicates without a word.
"""

from __future__ import annotations

import trio

from learnae.gossip import connect, full_addrs, open_host
from learnae.gossip.announce import open_gossip
from learnae.identity import Identity
from learnae.ledger import sign_entry

SWARM = "0123456789abcdef"


def entry(ident, seq, prev):
    return sign_entry(ident, swarm=SWARM, seq=seq, prev=prev, kind="leave", body={"reason": f"r{seq}"})


async def test_announcements_after_a_restart_are_not_taken_for_duplicates():
    alice, bob = Identity.generate(), Identity.generate()
    async with open_host(bob) as host_b, open_gossip(host_b, SWARM) as gossip_b:
        inbox = gossip_b.announcements()
        prev, sent = None, []
        async with open_host(alice) as host_a, open_gossip(host_a, SWARM) as gossip_a:
            await connect(host_a, full_addrs(host_b)[0])
            await gossip_a.wait_for_topic_peers(1)
            await gossip_b.wait_for_topic_peers(1)
            for seq in range(30):  # far more than one message per second
                e = entry(alice, seq, prev)
                prev = e.cid
                sent.append(e.cid)
                await gossip_a.publish(e)
            with trio.fail_after(30):
                got = [(await inbox.get()).entry.cid for _ in sent]
        assert got == sent
        # Alice restarts (same key, new host) and announces her next entry.
        async with open_host(alice) as host_a, open_gossip(host_a, SWARM) as gossip_a:
            await connect(host_a, full_addrs(host_b)[0])
            await gossip_a.wait_for_topic_peers(1)
            await gossip_b.wait_for_topic_peers(1)
            after = entry(alice, 30, prev)
            await gossip_a.publish(after)
            with trio.fail_after(30):
                assert (await inbox.get()).entry.cid == after.cid
