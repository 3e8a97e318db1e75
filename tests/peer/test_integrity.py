"""Ledger integrity and liveness against a peer that misbehaves: real nodes on 127.0.0.1.

Each test runs real :class:`learnae.peer.node.PeerNode` stacks in this process;
the misbehaving author is either a real node publishing entries it crafted
itself (its host is their origin, so they pass the signer check) or entries
handed to a victim's gossip validator hook, as GossipSub would deliver them.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
import trio
from multiformats import CID, multihash

from learnae.gossip import connect
from learnae.identity import Identity
from learnae.ledger.entry import sign_entry
from tests.peer.nodes import SPECS, config, eventually, node_task


def random_cid(codec: str = "dag-cbor") -> CID:
    digest = hashlib.sha256(str(time.time_ns()).encode()).digest()
    return CID("base32", 1, codec, multihash.wrap(digest, "sha2-256"))


def weights(value: float) -> list[np.ndarray]:
    return [np.full(s, value, np.float32) for _, s, _ in SPECS]


async def victim_honest_hostile(nursery, tmp_path, stop: trio.Event, attack):
    """Three joined nodes: a victim (``merge_k`` 3), an honest neighbour and one carrying ``attack``."""
    from learnae.peer.policy import NoFaults

    class Hostile(NoFaults):
        pass

    Hostile.attack = attack
    victim = await nursery.start(node_task, config(tmp_path / "v", merge_k=3), stop)
    honest = await nursery.start(node_task, config(tmp_path / "h", bootstrap=[victim.addr]), stop)
    hostile = await nursery.start(node_task, config(tmp_path / "x", bootstrap=[victim.addr]), stop, Hostile())
    for node in (victim, honest, hostile):
        await node.join(SPECS)
    return victim, honest, hostile


@pytest.mark.slow
async def test_an_entry_whose_history_never_comes_is_not_merged_and_asked_for_a_bounded_number_of_times(tmp_path):
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        victim = await nursery.start(node_task, config(tmp_path / "v"), stop)
        hostile = await nursery.start(node_task, config(tmp_path / "h", bootstrap=[victim.addr]), stop)
        await victim.join(SPECS)
        await hostile.join(SPECS)
        await eventually(lambda: hostile.peer_id in victim.members(), "the two to meet")
        dangling = random_cid()
        asked = []
        fetch = victim.ledger.fetch_block

        async def counting_fetch(cid):
            if cid == dangling:
                asked.append(time.monotonic())
            return await fetch(cid)

        victim.ledger.fetch_block = counting_fetch
        model = await hostile.store.put(b"a model nobody will merge")
        entry = sign_entry(hostile.identity, swarm=hostile.swarm, seq=hostile.ledger.next_seq + 3, prev=dangling,
                           kind="snapshot", body={"model": model, "step": 50, "samples": 1600, "metrics": {},
                                                  "parents": []})
        await hostile.gossip.publish(entry)
        await eventually(lambda: asked, "the victim to ask for the missing history")
        await trio.sleep(12)  # longer than the gap-filling interval: a retry would show here
        assert victim.view.latest(hostile.peer_id) is None  # never offered to a merge
        assert victim.ledger.entry(entry.cid) is None  # nor stored
        assert 1 <= len(asked) <= 2, asked  # re-requested only after a back-off
        stop.set()


async def test_split_view_equivocation_is_detected_by_both_peers(tmp_path):
    stop = trio.Event()
    liar = Identity.generate()
    async with trio.open_nursery() as nursery:
        one = await nursery.start(node_task, config(tmp_path / "one"), stop)
        two = await nursery.start(node_task, config(tmp_path / "two"), stop)
        await one.join(SPECS)
        await two.join(SPECS)
        join = sign_entry(liar, swarm=one.swarm, seq=0, prev=None, kind="join",
                          body={"fingerprint": one.fingerprint, "framework": "keras", "addrs": []})

        def snapshot(samples: int):
            return sign_entry(liar, swarm=one.swarm, seq=1, prev=join.cid, kind="snapshot",
                              body={"model": random_cid("raw"), "step": 5, "samples": samples, "metrics": {},
                                    "parents": []})

        # Each peer hears a different entry at seq 1 (as two gossip deliveries under one message id would).
        for node, twin in ((one, snapshot(160)), (two, snapshot(161))):
            assert node.chain_check(join) is None and node.chain_check(twin) is None
        assert not one.ledger.is_forked(liar.peer_id) and not two.ledger.is_forked(liar.peer_id)
        await connect(one.host, two.addr)  # they meet: ledger sync compares their heads
        with trio.fail_after(60):
            await eventually(lambda: one.ledger.is_forked(liar.peer_id) and two.ledger.is_forked(liar.peer_id),
                             "both peers to hold the fork proof", timeout_s=60)
        assert liar.peer_id in one.merger.excluded() and liar.peer_id in two.merger.excluded()
        stop.set()


async def test_a_snapshot_nobody_can_deliver_costs_one_fetch_per_back_off(tmp_path):
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        victim = await nursery.start(node_task, config(tmp_path / "v", fetch_timeout_s=2), stop)
        honest = await nursery.start(node_task, config(tmp_path / "w", bootstrap=[victim.addr]), stop)
        liar = await nursery.start(node_task, config(tmp_path / "l", bootstrap=[victim.addr]), stop)
        for node in (victim, honest, liar):
            await node.join(SPECS)
        missing = random_cid("raw")  # announced, never stored anywhere
        liar.ledger.append("snapshot", {"model": missing, "step": 5, "samples": 160, "metrics": {}, "parents": []},
                           swarm=liar.swarm)
        await liar.gossip.publish(liar.ledger.entry(liar.ledger.head))
        await eventually(lambda: victim.view.latest(liar.peer_id) is not None, "the liar's announcement")
        tried = []
        fetch = victim.merger._fetch_one

        async def counting(ref, step):
            tried.append(ref.author)
            return await fetch(ref, step)

        victim.merger._fetch_one = counting
        merged, t0 = 0, time.monotonic()
        for step in range(5, 200, 5):  # ~15 s of merges, each with a fresh honest snapshot
            await honest.publish(weights(step / 100), step=step, samples=32 * step, metrics={})
            await eventually(lambda s=step: (r := victim.view.latest(honest.peer_id)) is not None and r.step == s,
                             "the honest snapshot")
            merged += await victim.merge(weights(0.0), step) is not None
            if time.monotonic() - t0 > 15:
                break
        assert tried.count(liar.peer_id) == 1, tried  # one fetch, then a 30 s back-off
        assert merged >= 10  # the honest neighbour was merged all along
        stop.set()


async def test_identities_that_join_and_never_publish_hold_nobody_up(tmp_path):
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        victim = await nursery.start(node_task, config(tmp_path / "v", merge_wait_s=2), stop)
        await victim.join(SPECS)
        for i in range(5):  # fresh identities, each on a connection of its own, joining every half second
            newcomer = await nursery.start(node_task, config(tmp_path / f"n{i}", bootstrap=[victim.addr]), stop)
            await newcomer.join(SPECS)
            await trio.sleep(0.5)
        await eventually(lambda: len(victim.members()) >= 5, "the newcomers to be members")
        step = 100  # a peer that has been training for a while
        assert victim.merger.lagging(step) == []
        with trio.fail_after(1.0):  # nothing to wait for: no merge_wait_s
            assert await victim.choose(step) == []
        assert victim.merger.lagging(0)  # at its own start, the others are waited for (bounded)
        stop.set()


async def test_a_peers_training_data_cannot_be_fetched_and_its_data_dir_is_private(tmp_path):
    import stat

    from learnae.data import Dataset
    from learnae.errors import FetchError

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        owner = await nursery.start(node_task, config(tmp_path / "owner"), stop)
        other = await nursery.start(node_task, config(tmp_path / "other", bootstrap=[owner.addr]), stop)
        shard = Dataset(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32),
                        np.arange(64, dtype=np.int64) % 4, num_classes=4)
        await owner.join(SPECS, shard=shard)
        await other.join(SPECS)
        entry = owner.ledger.entries(author=owner.peer_id, kind="shard")[0]
        assert entry.body["samples"] == 64  # announced, with its CID...
        with trio.fail_after(30), pytest.raises(FetchError):  # ...but nobody can fetch the samples
            await other.store.get(entry.body["shard"], providers=[owner.addr])
        stop.set()
    data_dir = tmp_path / "owner"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    private = [data_dir / "identity.key", data_dir / "ledger" / "own.log", data_dir / "ledger" / "index.sqlite",
               data_dir / "peer.lock"]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


async def test_identities_made_up_behind_one_connection_never_fill_a_merge_panel(tmp_path):
    """One hostile node has 60 identities of its own making sign its snapshots too (attack
    ``sybils``): valid entries all, relayed through its one connection. A panel still takes
    the directly connected peers first and at most one stranger."""
    from learnae.peer.faults import Attack

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        attack = Attack("scaled", -10.0, sybils=60)
        victim, honest, hostile = await victim_honest_hostile(nursery, tmp_path, stop, attack)
        await eventually(lambda: len(victim.topic_peers()) == 2, "both neighbours on the topic")
        connected = {honest.peer_id, hostile.peer_id}
        for step in (5, 10, 15):
            await honest.publish(weights(1.0), step=step, samples=10, metrics={})
            await hostile.publish(weights(1.0), step=step, samples=10, metrics={})
        made_up = lambda: set(victim.view.authors()) - connected  # noqa: E731
        await eventually(lambda: len(made_up()) >= 50, "the made-up identities' snapshots")
        await eventually(lambda: connected <= set(victim.view.authors()), "the neighbours' snapshots")
        stored = {e.author for e in victim.ledger.entries(kind="snapshot")}  # verified, signed by their own keys
        assert len(stored - connected) >= 50

        panels = [{r.author for r in await victim.choose(20)} for _ in range(30)]
        assert all(connected <= p and len(p - connected) <= 1 for p in panels), panels
        assert any(p - connected for p in panels)  # a stranger does get the one seat left
        stop.set()

