"""Injected faults (learnae.peer.faults): the file the scenario runner writes, and the attacks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from learnae.errors import UserError
from learnae.peer.faults import ATTACK_MODES, Attack, Conditions, FaultPlan, Faults, poison, write_fault_plan

A, B, C = "12D3KooWA", "12D3KooWB", "12D3KooWC"


def _write(path, plan: dict) -> None:
    path.write_text(json.dumps(plan))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a rewrite within one mtime tick


def test_no_file_means_no_faults():
    f = Faults(None)
    assert f.drop(A) is None and f.delay_s(A) == 0 and f.fetch_delay_s(A) == 0
    assert f.may_connect(A) and f.mergeable(A) and f.slow == 1 and f.attack is None


def test_a_partition_drops_and_disconnects_only_the_other_side(tmp_path):
    path = tmp_path / "faults.json"
    _write(path, {"blocked": [B]})
    f = Faults(path)
    assert f.drop(B) == "partitioned" and f.drop(A) is None
    assert not f.may_connect(B) and f.may_connect(A) and not f.mergeable(B)
    _write(path, {"blocked": []})  # heal
    assert f.reload() and f.drop(B) is None and f.may_connect(B)


def test_loss_drops_about_that_share_and_latency_delays(tmp_path):
    path = tmp_path / "faults.json"
    _write(path, {"latency_s": 0.1, "jitter_s": 0.02, "loss": 0.05, "links": {C: {"latency_s": 0.5}}})
    f = Faults(path, seed=1)
    lost = sum(f.drop(A) is not None for _ in range(20000))
    assert 0.04 < lost / 20000 < 0.06
    delays = [f.delay_s(A) for _ in range(1000)]
    assert 0.08 <= min(delays) and max(delays) <= 0.12 and abs(np.mean(delays) - 0.1) < 0.005
    assert f.delay_s(C) == pytest.approx(0.5) and f.drop(C) is None  # a link overrides the defaults
    assert 0.16 <= f.fetch_delay_s(A) <= 0.24 + 0.2  # a round trip, perhaps plus a retransmission


def test_a_topology_keeps_only_neighbours(tmp_path):
    path = tmp_path / "faults.json"
    _write(path, {"neighbours": [A]})
    f = Faults(path)
    assert f.may_connect(A) and not f.may_connect(B) and not f.mergeable(B)
    assert f.drop(B) is None  # non-neighbours' announcements are still relayed


def test_a_bad_file_at_start_is_the_users_error_later_it_is_ignored(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="--faults"):
        Faults(path)
    _write(path, {"loss": 0.5})
    f = Faults(path)
    path.write_text('{"loss": 7}')
    assert not f.reload() and f.plan.default.loss == 0.5  # the previous plan stays
    with pytest.raises(ValueError, match="unknown key"):
        FaultPlan.from_json({"lose": 0.1})
    with pytest.raises(ValueError, match="attack"):
        FaultPlan.from_json({"attack": {"mode": "explode"}})


def test_attacks_change_what_is_published():
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    flipped = poison(w, {"mode": "sign-flip"})
    assert all(np.allclose(f, -x) for f, x in zip(flipped, w)) and flipped[0].dtype == np.float32
    scaled = poison(w, {"mode": "scaled", "scale": 3})
    assert all(np.allclose(s, 3 * x) for s, x in zip(scaled, w))
    big = [rng.normal(size=(100, 50)).astype(np.float32)]
    noisy = poison(big, {"mode": "noise", "scale": 0.5}, rng=np.random.default_rng(1))
    assert 0.45 < float(np.std(noisy[0] - big[0])) < 0.55
    honest = [[x + 0.1 * rng.normal(size=x.shape).astype(np.float32) for x in w] for _ in range(4)]
    alie = poison(w, {"mode": "a-little-is-enough", "scale": 1.0}, honest=honest)
    stack = np.stack([h[0] for h in honest] + [w[0]])
    assert np.allclose(alie[0], stack.mean(0) - stack.std(0), atol=1e-5)
    assert poison(w, {"mode": "equivocate"}) is w  # the weights are honest; the chain is not


def test_a_plan_round_trips_through_its_file(tmp_path):
    plan = FaultPlan(blocked=frozenset({B, C}), neighbours=frozenset({A}), default=Conditions(0.1, 0.02, 0.05),
                     links={C: Conditions(latency_s=0.5)}, slow=2.5, attack=Attack("scaled", 3.0))
    assert FaultPlan.from_json(plan.to_json()) == plan
    assert FaultPlan.from_json(FaultPlan().to_json()) == FaultPlan()
    assert plan.to_json()["blocked"] == [B, C] and plan.to_json()["attack"] == {"mode": "scaled", "scale": 3.0}
    path = tmp_path / "faults.json"
    assert write_fault_plan(path, plan) and not write_fault_plan(path, plan)  # the same plan: not rewritten
    assert Faults(path).plan == plan
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_every_attack_of_the_scenario_schema_is_accepted_by_the_peer():
    from learnae.scenario.schema import ATTACKS, Attack as ScenarioAttack

    assert ATTACKS is ATTACK_MODES
    for mode in ATTACKS:
        plan = FaultPlan.from_json({"attack": {"mode": mode, "scale": None}})
        assert plan.attack == Attack(mode) == ScenarioAttack(mode=mode).to_fault()
    with pytest.raises(ValueError, match="attack"):
        Attack("explode")
    with pytest.raises(ValueError, match="scale"):
        FaultPlan.from_json({"attack": {"mode": "noise", "scale": "big"}})


def test_malformed_values_are_value_errors_the_peer_survives():
    for bad in ({"links": {A: 0.3}}, {"slow": None}, {"latency_s": [1]}, {"attack": "sign-flip"}):
        with pytest.raises(ValueError):
            FaultPlan.from_json(bad)


def test_poison_takes_the_typed_attack_or_its_json():
    w = [np.arange(6, dtype=np.float32).reshape(2, 3)]
    assert np.allclose(poison(w, Attack("scaled", 2.0))[0], poison(w, {"mode": "scaled", "scale": 2})[0])
    assert np.allclose(poison(w, Attack("scaled"))[0], 10 * w[0])  # the mode's default scale
