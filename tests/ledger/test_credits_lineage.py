"""Credits, lineage and reverse lineage over a small swarm history built by hand."""

from __future__ import annotations

import pytest

from learnae.ledger import Ledger
from learnae.ledger.credits import score
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
