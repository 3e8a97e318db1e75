"""Credits, lineage and reverse lineage over a small swarm history built by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnae.ledger import Ledger
from learnae.ledger.credits import (
    MAX_BATCH_SAMPLES, MAX_SHARD_SAMPLES, MAX_STEPS_PER_SNAPSHOT, credited_samples, score,
)
from learnae.ledger.entry import sign_entry
from tests.ledger.chains import SWARM, ident, raw_cid


class Peer:
    """A helper that writes one author's chain."""

    def __init__(self, n: int):
        self.id = ident(n)
        self.entries = []

    def add(self, kind, body):
        prev = self.entries[-1].cid if self.entries else None
        e = sign_entry(self.id, swarm=SWARM, seq=len(self.entries), prev=prev, kind=kind, body=body,
                       ts=1_700_000_000_000 + len(self.entries))
        self.entries.append(e)
        return e

    def shard(self, name, samples):
        return self.add("shard", {"shard": raw_cid(name.encode()), "samples": samples, "classes": {"0": samples}})

    def snap(self, model, samples, parents=()):
        return self.add("snapshot", {"model": raw_cid(model.encode()), "step": samples // 10, "samples": samples,
                                     "metrics": {"loss": 1.0}, "parents": [{"entry": p.cid, "weight": w}
                                                                           for p, w in parents]})


@pytest.fixture
def history(tmp_path):
    a, b, c, d = Peer(1), Peer(2), Peer(3), Peer(4)
    a.shard("A-shard", 600)
    a1 = a.snap("A1", 600)
    b.shard("B-shard", 300)
    b1 = b.snap("B1", 300, [(a1, 0.5)])         # B merged A1
    c.shard("C-shard", 900)
    c1 = c.snap("C1", 900)
    a2 = a.snap("A2", 1200, [(b1, 0.25)])       # A merged B1 (which contains A1)
    a.snap("A3", 1800, [(a2, 1.0)])             # a self-merge earns nothing
    d.shard("D-shard", 100)
    d.snap("D1", 100, [(c1, 0.5), (a2, 0.5)])   # D merged C1 and A2
    led = Ledger.open(tmp_path, ident(9), swarm=SWARM)
    for p in (a, b, c, d):
        for e in p.entries:
            led.receive(e)
    yield led, (a, b, c, d)
    led.close()


def test_credits_follow_the_documented_formula(history):
    led, (a, b, c, d) = history
    credits = {x.author: x for x in led.credits()}
    ca = credits[a.id.peer_id]
    assert (ca.samples, ca.snapshots, ca.shards, ca.shard_samples) == (1800, 3, 1, 600)
    assert (ca.merged, ca.merged_by, ca.merged_weight) == (2, 2, 1.0)  # by B (0.5) and D (0.5)
    assert ca.score == pytest.approx(score(1800, 1.0, 3, 600, False))
    assert ca.score == pytest.approx(1.8 + 10.0 + 0.3 + 0.3)
    cb, cc, cd = credits[b.id.peer_id], credits[c.id.peer_id], credits[d.id.peer_id]
    assert (cb.merged, cb.merged_weight) == (1, 0.25)
    assert (cc.merged, cc.merged_weight) == (1, 0.5)
    assert (cd.merged, cd.merged_weight, cd.samples) == (0, 0.0, 100)
    assert [x.author for x in led.credits()][0] == a.id.peer_id  # best score first


def test_trace_reaches_every_author_and_shard_behind_a_model(history):
    led, (a, b, c, d) = history
    lin = led.trace(raw_cid(b"D1"))
    assert lin.entries == [d.entries[-1].cid]
    assert set(lin.authors) == {a.id.peer_id, b.id.peer_id, c.id.peer_id, d.id.peer_id}
    # A2 is A's seq 2, so A's lineage stops there: A3 (seq 3) is not part of D1
    assert lin.authors[a.id.peer_id].horizon_seq == 2
    assert lin.authors[a.id.peer_id].samples == 1200
    assert {str(s.shard) for s in lin.shards} == {str(raw_cid(n.encode())) for n in
                                                 ("A-shard", "B-shard", "C-shard", "D-shard")}
    # B1 only merged A1: no C, no D
    lin_b = led.trace(raw_cid(b"B1"))
    assert set(lin_b.authors) == {a.id.peer_id, b.id.peer_id}
    assert lin_b.authors[a.id.peer_id].horizon_seq == 1
    # a model nobody announced has no lineage
    assert led.trace(raw_cid(b"nope")).entries == []


def test_reverse_lineage_lists_who_merged_a_snapshot(history):
    led, (a, b, c, d) = history
    a2 = a.entries[2]
    merged = led.merged_by(a2.cid)
    assert sorted((author, w) for _, author, w in merged) == sorted(
        [(a.id.peer_id, 1.0), (d.id.peer_id, 0.5)])


# -- hostile claims: only what can be bounded is credited, and nothing overflows ------------------

I64 = 2**63 - 1


def hostile_ledger(tmp_path, claims):
    """A ledger where honest peer H trains normally and each of ``claims`` is one hostile author's entries.

    ``claims``: lists of ("shard", samples) / ("snapshot", step, samples) / ("merge", parent_peer_index, weight).
    """
    honest = Peer(1)
    honest.shard("H-shard", 600)
    h1 = honest.snap("H1", 600)
    peers = [honest]
    for i, entries in enumerate(claims):
        p = Peer(10 + i)
        for kind, *args in entries:
            if kind == "shard":
                p.shard(f"{i}-shard-{len(p.entries)}", args[0])
            elif kind == "snapshot":
                p.add("snapshot", {"model": raw_cid(f"{i}-{len(p.entries)}".encode()), "step": args[0],
                                   "samples": args[1], "metrics": {"loss": 1.0}, "parents": []})
            else:
                p.add("snapshot", {"model": raw_cid(f"{i}-m-{len(p.entries)}".encode()), "step": 1, "samples": 1,
                                   "metrics": {}, "parents": [{"entry": h1.cid, "weight": args[0]}]})
        peers.append(p)
    led = Ledger.open(tmp_path, ident(9), swarm=SWARM)
    for p in peers:
        for e in p.entries:
            assert led.receive(e).status.value == "accepted"
    return led, peers


def test_samples_are_capped_by_steps_batch_and_shard(tmp_path):
    led, (h, liar, stepper, shardless) = hostile_ledger(tmp_path, [
        [("shard", 600), ("snapshot", 10, I64)],            # 2**63 - 1 samples after 10 steps of a 600-sample shard
        [("snapshot", I64, I64)],                           # lies about its step too
        [("snapshot", 100, I64), ("snapshot", 90, I64), ("snapshot", 150, I64)],  # no shard; steps go back
    ])
    with led:
        c = {x.author: x for x in led.credits()}
        assert c[liar.id.peer_id].samples == 10 * 600  # at most one whole shard per step
        assert c[stepper.id.peer_id].samples == MAX_STEPS_PER_SNAPSHOT * MAX_BATCH_SAMPLES
        assert c[shardless.id.peer_id].samples == 150 * MAX_BATCH_SAMPLES  # step 90 adds nothing
        assert c[h.id.peer_id].samples == 600  # honest claims are credited in full
        assert all(math.isfinite(x.score) and x.score < 1e6 for x in c.values())


def test_huge_shard_claims_do_not_overflow_and_are_capped(tmp_path):
    led, (h, two, other) = hostile_ledger(tmp_path, [
        [("shard", I64), ("shard", I64), ("snapshot", 5, 4000)],  # two 2**63 - 1 claims: SUM overflowed
        [("shard", I64)],
    ])
    with led:
        c = {x.author: x for x in led.credits()}  # sqlite3.OperationalError: integer overflow, before
        assert (c[two.id.peer_id].shards, c[two.id.peer_id].shard_samples) == (2, 4000)  # what it trained on
        assert c[other.id.peer_id].shard_samples == 0 and c[other.id.peer_id].samples == 0
        lin = led.trace(raw_cid(b"0-2"))
        assert lin.authors[two.id.peer_id].samples == 4000
        assert [s.samples for s in lin.shards] == [MAX_SHARD_SAMPLES] * 2


def test_merge_weights_are_capped_per_edge(tmp_path):
    led, (h, m1, m2) = hostile_ledger(tmp_path, [[("merge", 1e308)], [("merge", 1e308), ("merge", 0.25)]])
    with led:
        c = {x.author: x for x in led.credits()}[h.id.peer_id]
        assert (c.merged, c.merged_by, c.merged_weight) == (3, 2, 2.25)
        assert led.trace(raw_cid(b"0-m-0")).authors[h.id.peer_id].merged_weight == 1.0
        assert led.trace(raw_cid(b"1-m-1")).authors[h.id.peer_id].merged_weight == 1.25  # both merges of m2


def test_the_credits_command_never_crashes_on_hostile_claims(tmp_path):
    from click.testing import CliRunner

    from learnae.cli.main import cli

    led, _ = hostile_ledger(tmp_path, [[("shard", I64), ("shard", I64), ("snapshot", I64, I64), ("merge", 1e308)],
                                       [("shard", I64), ("snapshot", I64, I64)]])
    led.close()
    for fmt in ("json", "text"):
        result = CliRunner().invoke(cli, ["ledger", "credits", "--data-dir", str(tmp_path), "--format", fmt])
        assert result.exit_code == 0, result.output


claims = st.lists(st.one_of(
    st.tuples(st.just("shard"), st.none(), st.integers(0, I64)),
    st.tuples(st.just("snapshot"), st.integers(0, I64), st.integers(0, I64)),
), max_size=12)


@settings(max_examples=200, deadline=None)
@given(rows=claims)
def test_credited_samples_are_bounded_by_every_rule(rows):
    samples, shard_samples = credited_samples(rows)
    snaps = [r for r in rows if r[0] == "snapshot"]
    assert 0 <= samples <= max([r[2] for r in snaps], default=0)  # never more than claimed
    assert samples <= MAX_STEPS_PER_SNAPSHOT * MAX_BATCH_SAMPLES * len(snaps)
    assert samples <= max([r[1] for r in snaps], default=0) * MAX_BATCH_SAMPLES  # steps x batch
    assert 0 <= shard_samples <= min(samples, MAX_SHARD_SAMPLES)


@settings(max_examples=100, deadline=None)
@given(shard=st.integers(1, 10_000), steps=st.lists(st.integers(1, 50), min_size=1, max_size=10))
def test_an_honest_author_is_credited_in_full(shard, steps):
    """Batches within the shard and the cap, a snapshot every few steps: every claimed sample counts."""
    batch = min(shard, MAX_BATCH_SAMPLES, 32)
    rows, step, samples = [("shard", None, shard)], 0, 0
    for n in steps:
        step, samples = step + n, samples + n * batch
        rows.append(("snapshot", step, samples))
    assert credited_samples(rows) == (samples, min(shard, samples))
