"""Publishing paced in time (``publish_interval_s``): what a peer announces, and whom it waits for.

A paced peer announces at most one snapshot per interval however fast it trains
(its last one always), through the CLI loop and the Keras callback alike; and a
neighbour whose announced step trails by up to two intervals of this peer's
steps is not taken for a laggard (bounded staleness would otherwise make every
merge wait), the time spent waiting not counted as training time. The Keras
callback's pacing is tested with the callback (tests/training/test_keras_callback.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import trio

from learnae.gossip import connect
from learnae.identity import Identity
from learnae.ledger import Ledger
from learnae.peer.pacing import Pacer, StepRate
from learnae.scenario.process import start_swarm
from tests.peer.nodes import SPECS, config, eventually, node_task


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pacer_allows_one_event_per_interval_and_zero_paces_nothing():
    clock = Clock()
    pace = Pacer(1.5, clock=clock)
    assert pace.due()
    pace.mark()
    clock.now += 1.4
    assert not pace.due()
    clock.now += 0.1
    assert pace.due()
    off = Pacer(0, clock=clock)
    off.mark()
    assert off.due()


def weights(value: float) -> list[np.ndarray]:
    return [np.full(s, value, np.float32) for _, s, _ in SPECS]


def test_the_step_rate_follows_the_training_and_restarts_after_a_rollback():
    clock = Clock()
    rate = StepRate(clock=clock)
    rate.note(0)
    assert rate.per_s == 0 and rate.steps_in(1.0) == 0  # one point is no rate yet
    for step in range(50, 501, 50):  # 100 steps/s
        clock.now += 0.5
        rate.note(step)
    assert abs(rate.per_s - 100) < 1e-6 and rate.steps_in(1.0) == 100
    for step in range(510, 611, 10):  # slowed to 20 steps/s for 5 s: most of the way there
        clock.now += 0.5
        rate.note(step)
    assert 20 < rate.per_s < 50
    rate.note(0)  # a rollback to an earlier checkpoint
    assert rate.per_s == 0 and rate.steps_in(0) == 0


async def test_a_neighbour_two_paced_intervals_behind_is_no_laggard_and_waiting_does_not_count_as_slow(tmp_path):
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        me = await nursery.start(node_task, config(tmp_path / "me", publish_interval_s=1.0, merge_every=5,
                                                   merge_wait_s=2.0), stop)
        other = await nursery.start(node_task, config(tmp_path / "other"), stop)
        await me.join(SPECS)
        await other.join(SPECS)
        await connect(other.host, me.addr)
        await eventually(lambda: me.peer_id in other.topic_peers(), "the two to share the swarm's topic")
        await other.publish(weights(1.0), step=100, samples=32 * 100, metrics={})
        await eventually(lambda: (r := me.view.latest(other.peer_id)) is not None and r.step == 100, "the snapshot")
        assert me.merger.lagging(300) == [other.peer_id]  # no rate of its own measured yet: 200 behind lags

        # The allowance: two intervals of this peer's own steps (50 a second, on a test clock).
        real = me.merger.rate
        clock = Clock()
        me.merger.rate = StepRate(clock=clock)
        for step in range(0, 201, 10):
            me.merger.rate.note(step)
            clock.now += 0.2
        assert me.merger.lagging(205) == []  # 105 behind: within two seconds of steps, plus two merges
        assert me.merger.lagging(220) == [other.peer_id]  # 120 behind: lagging

        # The bounded-staleness wait (other lags: nothing fresh comes) is left out of the rate's clock.
        me.merger.rate = real
        before = real._clock()
        started = trio.current_time()
        await me.choose(1000)
        waited = trio.current_time() - started
        assert waited >= 1.9  # merge_wait_s, waited out
        assert real._clock() - before < waited / 2  # the rate's clock moved by the rest only
        stop.set()


@pytest.mark.slow
def test_paced_cli_peers_announce_at_most_once_per_interval_and_still_learn_together(tmp_path):
    interval = 1.0
    peers = start_swarm(tmp_path, 2, ["--publish-interval-s", str(interval), "--max-steps", "300",
                                      "--catch-up-s", "0", "--status-every-s", "1"])
    try:
        for p in peers:
            assert p.wait(300) == 0, p.log_tail()
    finally:
        for p in peers:
            if p.alive:
                p.kill()
    for p in peers:
        me = Identity.load(p.data_dir / "identity.key").peer_id
        with Ledger.open(p.data_dir, readonly=True) as led:
            own = [e for e in led.entries(author=me) if e.kind == "snapshot"]
            theirs = [e for e in led.entries() if e.author != me and e.kind == "snapshot"]
        steps = [e.body["step"] for e in own]
        assert steps[-1] == 300 and theirs  # its final weights, and the neighbour's snapshots arrived
        paced = own[:-2]  # the last two (at max_steps, and the final consensus) come when they come
        gaps = [(b.ts - a.ts) / 1000 for a, b in zip(paced, paced[1:])]
        assert gaps and min(gaps) >= interval - 0.002, gaps  # entry timestamps are in milliseconds
        assert len(own) < 300 // 5 / 2, steps  # far fewer than one per publish_every steps
        final = [r for r in p.metrics() if r.get("test_accuracy") is not None][-1]
        assert final["merges"] > 0 and final["test_accuracy"] >= 0.85, final
        # the neighbour's announcements came by gossip, not by ledger sync (its last two may land after
        # this record)
        assert final["gossiped"] >= len(theirs) - 2, (final["gossiped"], len(theirs))
