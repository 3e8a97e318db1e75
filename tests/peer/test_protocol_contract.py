"""The peer protocol, one contract for every face of a peer.

A peer joins, publishes snapshots, merges its neighbours' (recording them as
parents), catches up when it joins late, and leaves; every face must do it the
same way, because they all run :class:`learnae.peer.node.PeerNode` (or, for the
fake, imitate it). Each face runs the same two-member swarm once: a first member
trains and publishes, a second joins late, both train and merge, both leave. The
tests below then read each member's own chain (its ledger, or the fake's log).

Faces: ``fake`` (:class:`learnae.testing.fake_peer.FakePeer`), ``keras``
(:class:`learnae.peer.swarm_peer.NetworkPeer` under ``model.fit``, two real peers
in this process), ``cli`` (two ``learnae peer start`` processes on 127.0.0.1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from learnae.identity import Identity
from learnae.ledger import Ledger


@dataclass(frozen=True, slots=True)
class Link:
    """A parent as the member's own store resolves it (None: not in its ledger)."""

    author: str | None
    kind: str | None


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of a member's own chain."""

    kind: str
    step: int
    samples: int
    parents: tuple[Link, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Swarm:
    """The outcome of one run: each member's ID and chain."""

    first: str
    late: str
    chains: dict[str, list[Step]]


def ledger_chain(data_dir, author: str) -> list[Step]:
    with Ledger.open(data_dir, readonly=True) as led:
        out = []
        for e in led.entries(author=author):
            links = []
            for p in e.body.get("parents", []) if e.kind == "snapshot" else []:
                parent = led.entry(p["entry"])
                links.append(Link(parent.author, parent.kind) if parent is not None else Link(None, None))
            out.append(Step(e.kind, e.body.get("step", 0), e.body.get("samples", 0), tuple(links),
                            e.body.get("reason", "")))
        return out


# -- the faces --------------------------------------------------------------------------------

def run_fake(tmp_path) -> Swarm:
    import numpy as np

    from learnae.testing.fake_peer import FakeSwarm

    swarm = FakeSwarm()
    specs = [("000/w", (4,), "float32")]
    rng = np.random.default_rng(0)

    def train(peer, weights, steps, start):
        for step in range(start + 1, start + steps + 1):
            weights = [w + rng.normal(0, 0.1, w.shape).astype(np.float32) for w in weights]
            if step % peer.publish_every == 0:
                peer.publish(weights, step=step, samples=32 * step, metrics={})
            if step % peer.merge_every == 0 and (merged := peer.merge(weights, step=step)) is not None:
                weights = merged
        return weights

    a = swarm.peer("a", publish_every=5, merge_every=5, catch_up=True)
    b = swarm.peer("b", publish_every=5, merge_every=5, catch_up=True)
    with a, b:
        wa = [np.zeros(4, np.float32)]
        assert a.join(specs) is None  # alone: nothing to catch up from
        wa = train(a, wa, 20, 0)
        wb = b.join(specs)
        wb = train(b, wb, 20, 0)
        wa = train(a, wa, 20, 20)
        train(b, wb, 20, 20)

    def chain(peer) -> list[Step]:
        def link(author, seq):
            return Link(author, swarm_peers[author].entries[seq].kind)
        return [Step(e.kind, e.step, e.samples, tuple(link(*p) for p in e.parents), e.reason) for e in peer.entries]

    swarm_peers = {"a": a, "b": b}
    return Swarm("a", "b", {"a": chain(a), "b": chain(b)})


def run_keras(tmp_path) -> Swarm:
    import keras

    from learnae.data import load_dataset, split_dataset
    from learnae.keras import GossipAveraging, connect
    from learnae.training import load_model

    d = split_dataset(load_dataset("digits"), seed=0)
    x, y = d.train.x[:320], d.train.y[:320]

    def model():
        m = load_model("digits-mlp", seed=0)
        m.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
        return m

    opts = dict(listen="/ip4/127.0.0.1/tcp/0", merge_wait_s=0, catch_up_s=10, publish_every=5, merge_every=5)
    with connect(data_dir=tmp_path / "a", **opts) as a:
        ma, ca = model(), GossipAveraging(a)
        ma.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[ca])  # a trains and publishes alone
        with connect(data_dir=tmp_path / "b", bootstrap=[a.addr], **opts) as b:
            mb, cb = model(), GossipAveraging(b)
            mb.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[cb])  # b catches up from a, merges
            time.sleep(1)  # b's announcements reach a
            ma.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[ca])  # a merges b
    return Swarm(a.peer_id, b.peer_id, {a.peer_id: ledger_chain(tmp_path / "a", a.peer_id),
                                        b.peer_id: ledger_chain(tmp_path / "b", b.peer_id)})


def run_cli(tmp_path) -> Swarm:
    from learnae.peer.record import last_record
    from learnae.scenario.process import PeerProcess

    common = ["--partition", "classes:5", "--status-every-s", "0.5", "--merge-wait-s", "0.5"]
    # The first member runs 10x slowed (an injected fault), so it is still training when the
    # late one has loaded TensorFlow and joins, however fast this machine is.
    slow = tmp_path / "slow.json"
    slow.write_text('{"slow": 10}')
    a = PeerProcess.start(tmp_path / "a", ["--shard", "0/2", "--max-steps", "400", "--catch-up-s", "0",
                                           "--faults", str(slow), *common])
    b = None
    try:
        deadline = time.monotonic() + 120
        while ((r := last_record(a.data_dir)) is None or not r.snapshots) and time.monotonic() < deadline:
            assert a.alive, a.log_tail()
            time.sleep(0.2)
        b = PeerProcess.start(tmp_path / "b", ["--shard", "1/2", "--max-steps", "200", "--bootstrap", a.addr,
                                               *common])
        assert b.wait(300) == 0, b.log_tail()
        assert a.wait(300) == 0, a.log_tail()
    finally:
        for p in (a, b):
            if p is not None and p.alive:
                p.kill()
    ids = {name: Identity.load(tmp_path / name / "identity.key").peer_id for name in ("a", "b")}
    return Swarm(ids["a"], ids["b"], {ids[n]: ledger_chain(tmp_path / n, ids[n]) for n in ("a", "b")})


FACES = {
    "fake": run_fake,
    "keras": pytest.param(run_keras, marks=pytest.mark.slow),
    "cli": pytest.param(run_cli, marks=pytest.mark.slow),
}


@pytest.fixture(scope="module", params=list(FACES.values()), ids=list(FACES))
def swarm(request, tmp_path_factory) -> Swarm:
    return request.param(tmp_path_factory.mktemp(request.param.__name__))


# -- the contract ----------------------------------------------------------------------------------

def test_a_chain_is_join_then_shards_and_snapshots_then_a_done_leave(swarm):
    for chain in swarm.chains.values():
        assert chain[0].kind == "join"
        assert chain[-1].kind == "leave" and chain[-1].reason == "done"
        assert {s.kind for s in chain[1:-1]} <= {"shard", "snapshot"}
        assert sum(s.kind == "snapshot" for s in chain) >= 2


def test_steps_and_samples_never_go_back(swarm):
    for chain in swarm.chains.values():
        snaps = [s for s in chain if s.kind == "snapshot"]
        assert [s.step for s in snaps] == sorted(s.step for s in snaps)
        assert [s.samples for s in snaps] == sorted(s.samples for s in snaps)


def test_the_late_joiner_starts_from_the_swarm_and_says_so(swarm):
    first_snapshot = next(s for s in swarm.chains[swarm.late] if s.kind == "snapshot")
    assert first_snapshot.parents, "the late joiner's first snapshot names no parent: lineage lost"
    assert all(p == Link(swarm.first, "snapshot") for p in first_snapshot.parents), first_snapshot.parents


def test_merges_are_recorded_as_parents_both_ways(swarm):
    for me, other in ((swarm.first, swarm.late), (swarm.late, swarm.first)):
        merged = [p for s in swarm.chains[me] if s.kind == "snapshot" for p in s.parents]
        assert Link(other, "snapshot") in merged, f"{me} records no merge of {other}'s snapshots"


def test_every_parent_is_a_snapshot_of_another_member_in_the_own_ledger(swarm):
    for me, chain in swarm.chains.items():
        for s in chain:
            for p in s.parents:
                assert p.kind == "snapshot" and p.author in swarm.chains and p.author != me, p
