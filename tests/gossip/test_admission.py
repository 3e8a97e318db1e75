"""A neighbour's message budget (learnae.gossip.admission): unit rules with a fake clock,
then a flood of valid entries from made-up identities between real hosts."""

from __future__ import annotations

import trio
from libp2p.pubsub.pb import rpc_pb2

from learnae.gossip import connect, open_host
from learnae.gossip.admission import Admission, AdmissionParams
from learnae.gossip.announce import open_gossip
from learnae.identity import Identity
from learnae.peer.sybils import Sybil

from .helpers import SWARM, swarm, wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_forwarder_gets_its_burst_then_its_rate():
    clock = Clock()
    a = Admission(AdmissionParams(msgs_per_s=10, msgs_burst=50), clock=clock)
    verdicts = [a.admit("fwd", b"author") for _ in range(60)]
    assert verdicts.count(None) == 50 and set(verdicts[50:]) == {"flood"}
    clock.t = 1.0
    assert [a.admit("fwd", b"author") for _ in range(12)].count(None) == 10
    assert a.admit("other", b"author") is None  # budgets are per forwarder


def test_new_authors_cost_a_second_budget_and_known_ones_do_not():
    clock = Clock()
    a = Admission(AdmissionParams(new_origins_per_s=2, new_origins_burst=5), clock=clock)
    fresh = [a.admit("fwd", b"sybil-%d" % i) for i in range(20)]
    assert fresh.count(None) == 5 and set(fresh[5:]) == {"new-origins"}
    assert all(a.admit("fwd", b"sybil-%d" % i) is None for i in range(5))  # admitted once: known
    clock.t = 3.0
    assert [a.admit("fwd", b"late-%d" % i) for i in range(10)].count(None) == 5  # 2/s refilled, capped at 5


def test_penalties_are_rate_limited_and_memory_is_bounded():
    clock = Clock()
    a = Admission(AdmissionParams(penalties_per_s=3, known_origins=10, forwarders=4), clock=clock)
    a.admit("fwd", b"x")
    assert [a.penalise("fwd") for _ in range(10)].count(True) == 3
    for i in range(100):
        a.admit(f"fwd-{i}", b"author-%d" % i)
    assert len(a._forwarders) == 4 and len(a._known) == 10


async def test_a_flood_of_valid_entries_from_made_up_identities_is_cut_at_the_budget_and_honest_news_still_arrives():
    """600 valid join entries of fresh identities through one connection, at once: about the
    new-author burst (100) is validated, the rest is dropped unvalidated and counted, and an
    honest neighbour's announcement published meanwhile is delivered."""
    async with swarm(2) as (victim, honest):
        me = Identity.generate()
        async with open_host(me) as host, open_gossip(host, SWARM) as flooder:
            await connect(host, victim.addr)
            assert await wait_until(lambda: flooder.topic_peers())
            target = next(iter(flooder.pubsub.peer_topics[flooder.topic]))
            body = {"fingerprint": "0" * 16, "framework": "keras", "addrs": []}
            sybils = [Sybil() for _ in range(600)]
            msgs = [s.message(s.sign(SWARM, "join", body), flooder.topic, i + 1) for i, s in enumerate(sybils)]
            started = trio.current_time()
            for i in range(0, len(msgs), 100):
                flooder.router.send_rpc(target, rpc_pb2.RPC(publish=msgs[i:i + 100]))
            e = honest.entry()
            await honest.gossip.publish(e)
            assert await wait_until(lambda: e.cid in {a.entry.cid for a in victim.got}, timeout_s=20)
            assert await wait_until(lambda: sum(victim.gossip.stats()["rejected"].values()) +
                                    len(victim.got) - 1 >= 600, timeout_s=30)
            elapsed = trio.current_time() - started
        made_up = {s.identity.peer_id for s in sybils}
        taken = [a for a in victim.got if a.entry.author in made_up]
        budget = AdmissionParams()
        assert len(taken) <= budget.new_origins_burst + budget.new_origins_per_s * elapsed + 1
        assert victim.gossip.stats()["rejected"].get("new-origins", 0) >= 600 - len(taken)
