"""What the runner tells each peer through its faults file, for every kind of injected fault.

No process starts here: the runner's plan is given peer IDs by hand and the
files it writes are read back as the peers would (learnae.peer.faults).
"""

from __future__ import annotations

import json

import pytest

from learnae.peer.faults import Attack, Conditions, FaultPlan, Faults
from learnae.scenario.runner import Runner
from learnae.scenario.schema import parse_scenario, plan
from learnae.scenario.timeline import AttackAction, HealAction, PartitionAction, PeerAction, SlowAction


def _runner(tmp_path, **extra) -> Runner:
    s = parse_scenario({"name": "t", "duration": "60s", "peers": 4, **extra})
    r = Runner(plan(s), tmp_path)
    for i, p in enumerate(r.peers.values()):
        p.peer_id, p.starts = f"12D3KooW{i}", 1
    r.fleet.write_all_faults()
    return r


def _faults(r: Runner, name: str) -> Faults:
    return Faults(r.peers[name].data_dir / "faults.json", seed=0)


def test_network_conditions_and_links(tmp_path):
    r = _runner(tmp_path, network={"latency": "100ms", "jitter": "10ms", "loss": 0.05,
                                   "links": [{"between": ["peer-0", "peer-1"], "latency": "1s"}]})
    f0, f2 = _faults(r, "peer-0"), _faults(r, "peer-2")
    assert f0.plan.default.latency_s == pytest.approx(0.1) and f0.plan.default.loss == pytest.approx(0.05)
    assert f0.plan.conditions("12D3KooW1").latency_s == pytest.approx(1.0)  # both ends of the link
    assert _faults(r, "peer-1").plan.conditions("12D3KooW0").latency_s == pytest.approx(1.0)
    assert f2.plan.conditions("12D3KooW1").latency_s == pytest.approx(0.1)  # not on that link


def test_partition_then_heal(tmp_path):
    r = _runner(tmp_path)
    r.fire(PartitionAction(1, (("peer-0", "peer-1"), ("peer-2",))))
    f0, f2, f3 = _faults(r, "peer-0"), _faults(r, "peer-2"), _faults(r, "peer-3")
    assert f0.plan.blocked == {"12D3KooW2"} and f2.plan.blocked == {"12D3KooW0", "12D3KooW1"}
    assert f3.plan.blocked == set()  # in no group: talks to everyone
    r.fire(HealAction(2))
    assert _faults(r, "peer-0").plan.blocked == set()
    assert [e.action for e in r.events] == ["partition", "heal"] and all(e.ok for e in r.events)


def test_ring_and_explicit_topologies(tmp_path):
    ring = _runner(tmp_path / "ring", network={"topology": "ring"})
    assert _faults(ring, "peer-0").plan.neighbours == {"12D3KooW1", "12D3KooW3"}
    explicit = _runner(tmp_path / "x", network={"topology": {"peer-0": ["peer-2"]}})
    assert _faults(explicit, "peer-2").plan.neighbours == {"12D3KooW0"}  # the relation is symmetric
    assert _faults(explicit, "peer-1").plan.neighbours == set()
    assert _faults(_runner(tmp_path / "full"), "peer-1").plan.neighbours is None


def test_slow_and_attack_events(tmp_path):
    r = _runner(tmp_path, peers=[{"name": "a"}, {"name": "b", "attack": "noise"}])
    assert _faults(r, "b").attack == Attack("noise") and _faults(r, "a").attack is None
    r.fire(SlowAction(1, {"a": 3}))
    r.fire(AttackAction(2, {"a": Attack("sign-flip", 2.0), "b": None}))
    assert _faults(r, "a").slow == 3 and _faults(r, "a").attack == Attack("sign-flip", 2.0)
    assert _faults(r, "b").attack is None
    assert r.peers["a"].attacked and r.peers["b"].attacked  # both attacked at some point: not honest


def test_events_on_peers_that_are_not_running_are_reported_not_fatal(tmp_path):
    r = _runner(tmp_path)
    rec = r.fire(PeerAction(1, "kill", ("peer-1",)))
    assert rec.ok is False and "not running" in rec.detail
    assert rec.to_json() == {"t": 0.0, "at": 1, "action": "kill", "peers": ["peer-1"], "ok": False,
                             "detail": "peer-1 was not running"}
    assert json.loads((r.peers["peer-1"].data_dir / "faults.json").read_text())["attack"] is None


def test_the_files_are_fault_plans_written_once(tmp_path):
    r = _runner(tmp_path, network={"loss": 0.1, "links": [{"between": ["peer-0", "peer-1"], "jitter": "5ms"}]})
    path = r.peers["peer-0"].data_dir / "faults.json"
    assert FaultPlan.from_json(json.loads(path.read_text())) == r.fleet.fault_plan(r.peers["peer-0"])
    assert r.fleet.fault_plan(r.peers["peer-0"]).links == {"12D3KooW1": Conditions(0.0, 0.005, 0.0)}
    before = path.stat().st_mtime_ns, path.stat().st_ino
    r.fleet.write_all_faults()  # nothing changed: the peers need not re-read anything
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
