"""Pubsub interop with a real Kubo node (the kubo-peer test tool, tests/kubo_peer.py; Kubo v0.22, loopback only)."""

from __future__ import annotations

import base64

import pytest
import trio

from learnae.gossip import connect, open_host
from learnae.gossip.announce import open_gossip
from learnae.gossip.topics import topic
from learnae.identity import Identity
from learnae.ledger.entry import decode_entry, sign_entry
from tests.kubo_peer import KuboUnavailable, open_kubo_peer

from .helpers import SWARM, wait_until

pytestmark = [pytest.mark.kubo]
T = topic(SWARM)


async def _until(pred, timeout_s=20.0):
    with trio.fail_after(timeout_s):
        while not await pred():
            await trio.sleep(0.2)


async def test_kubo_receives_our_announcements_and_we_validate_what_it_publishes():
    me, someone = Identity.generate(), Identity.generate()
    try:
        kubo_cm = open_kubo_peer()
        kubo = await kubo_cm.__aenter__()
    except KuboUnavailable as exc:
        pytest.skip(str(exc))
    try:
        async with open_host(me) as host, open_gossip(host, SWARM) as gossip:
            assert (await kubo.acall("sub", topic=T))["ok"]
            await connect(host, kubo.addrs[0])

            async def met():  # both sides must know the other's subscription first
                peers = (await kubo.acall("topic_peers", topic=T)).get("peers", [])
                return me.peer_id in peers and kubo.peer_id in gossip.topic_peers()
            await _until(met)

            # learnae -> Kubo: the exact signed entry bytes, from our peer ID.
            entry = sign_entry(me, swarm=SWARM, seq=0, prev=None, kind="leave", body={"reason": "hi kubo"})
            await gossip.publish(entry)
            got = await kubo.acall("next", topic=T, timeout=15, skip_self=True)
            assert got["ok"] and got["got"], got
            assert got["from"] == me.peer_id
            assert decode_entry(base64.b64decode(got["data_b64"])) == entry

            # Kubo -> learnae: we receive it and run it through the validators. Kubo (an RSA
            # peer) cannot author a learnae entry, so both of these are rejected, by reason.
            garbage = base64.b64encode(b"not a learnae entry").decode()
            assert (await kubo.acall("pub", topic=T, data_b64=garbage))["ok"]
            forged = sign_entry(someone, swarm=SWARM, seq=0, prev=None, kind="leave", body={"reason": "x"})
            assert (await kubo.acall("pub", topic=T, data_b64=base64.b64encode(forged.to_bytes()).decode()))["ok"]
            assert await wait_until(lambda: sum(gossip.stats()["rejected"].values()) >= 2, 20)
            stats = gossip.stats()
            assert stats["rejected"] == {"undecodable": 1, "signer-mismatch": 1}
            assert stats["rejected_by_peer"] == {kubo.peer_id: 2}
            assert len(gossip.announcements()) == 0  # nothing reached the application
            assert gossip.score(kubo.peer_id) < 0
    finally:
        with trio.CancelScope(shield=True):
            await kubo_cm.__aexit__(None, None, None)
