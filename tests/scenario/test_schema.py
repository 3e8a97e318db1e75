"""Scenario files are checked before anything starts; errors name the YAML path and what is expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from learnae.errors import ScenarioError
from learnae.scenario.schema import load_scenario, parse_scenario, plan

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))

BASE = {"name": "t", "duration": "60s", "peers": 3}


def _error(**changes) -> str:
    data = {**BASE, **changes}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, source="f.yaml")
    return str(info.value)


def test_every_shipped_scenario_validates_and_states_expectations():
    names = {f.stem for f in SHIPPED}
    assert names >= {"quickstart", "non-iid", "churn", "partition", "byzantine", "lossy", "equivocation"}
    for f in SHIPPED:
        s = load_scenario(f)
        assert s.name == f.stem
        assert s.expect, f"{f.name} states no expectations"
        assert s.duration <= 300, f"{f.name} must run in under 5 minutes"


def test_shipped_scenarios_say_what_the_issue_asks():
    s = {f.stem: plan(load_scenario(f)) for f in SHIPPED}
    assert len(s["quickstart"].peers) == 4 and s["quickstart"].scenario.partition == "iid"
    assert len(s["non-iid"].peers) == 8 and s["non-iid"].scenario.partition == "classes:2"
    churn = s["churn"]
    assert len(churn.peers) == 8
    killed = {n for e in churn.timeline if e.action == "kill" for n in e.peers}
    restarted = {n for e in churn.timeline if e.action == "restart" for n in e.peers}
    assert len(killed) == 2 and killed == restarted
    assert any(e.action == "join" for e in churn.timeline)
    assert [e.action for e in s["partition"].timeline] == ["partition", "heal"]
    byz = s["byzantine"]
    assert len(byz.peers) == 8 and sum(p.attack is not None for p in byz.peers) == 2
    assert byz.scenario.merge.rule in ("median", "trimmed-mean", "krum", "multi-krum", "centered-clip")
    net = s["lossy"].scenario.network
    assert net.latency == pytest.approx(0.1) and net.loss == pytest.approx(0.05)
    eq = s["equivocation"]
    assert any(e.action == "attack" and any(m and m.mode == "equivocate" for m in e.modes.values())
               for e in eq.timeline)
    assert any(x.metric == "forks_detected" for x in eq.scenario.expect)


@pytest.mark.parametrize("changes, path, expected", [
    ({"events": [{"at": "1s", "kil": ["peer-1"]}]}, "events[0].kil", "unknown key"),
    ({"events": [{"at": "1s", "kill": ["peer-9"]}]}, "events[0].kill", "unknown peer 'peer-9'"),
    ({"events": [{"at": "90s", "heal": True}]}, "events[0].at", "after the end of the run"),
    ({"events": [{"at": "1s", "kill": ["peer-1"], "heal": True}]}, "events[0]", "exactly one of"),
    ({"events": [{"at": "soon", "heal": True}]}, "events[0].at", "duration like 30s"),
    ({"duration": "5x"}, "duration", "duration like 30s"),
    ({"partition": "classes"}, "partition", "classes:K"),
    ({"peers": [{"name": "a", "attack": "flip"}]}, "peers[0].attack.mode", "sign-flip"),
    ({"peers": [{"name": "a", "slow": 0.5}]}, "peers[0].slow", "greater than or equal to 1"),
    ({"peers": [{"name": "a"}, {"name": "a"}]}, "peers", "repeated: a"),
    ({"peers": [{"name": "a", "start": False}]}, "peers", "at least one peer must start"),
    ({"peers": 0}, "peers", "1 to 64"),
    ({"merge": {"rule": "avg"}}, "merge.rule", "multi-krum"),
    ({"network": {"loss": 2}}, "network.loss", "less than 1"),
    ({"network": {"links": [{"between": ["peer-0", "x"], "latency": "1s"}]}}, "network.links[0].between", "unknown peer 'x'"),
    ({"expect": ["mean_acc >= 0.9"]}, "expect[0]", "unknown metric 'mean_acc'"),
    ({"expect": ["mean_accuracy is high"]}, "expect[0]", "METRIC OP NUMBER"),
    ({"expect": [{"forks_detected": ["nobody"]}]}, "expect[0].forks_detected", "unknown peer 'nobody'"),
    ({"train": {"max_steps": -1}}, "train.max_steps", "greater than or equal to 0"),
    ({"colour": "blue"}, "colour", "unknown key"),
])
def test_a_broken_file_names_the_yaml_path_and_what_is_expected(changes, path, expected):
    msg = _error(**changes)
    assert msg.startswith(f"f.yaml: {path}: "), msg
    assert expected in msg, msg


def test_missing_keys_and_non_mappings():
    assert _error(name=None).startswith("f.yaml: name: ")
    with pytest.raises(ScenarioError, match="duration: required key is missing"):
        parse_scenario({"name": "x", "peers": 2}, source="f.yaml")
    with pytest.raises(ScenarioError, match="expected a YAML mapping"):
        parse_scenario(["not", "a", "mapping"], source="f.yaml")


def test_a_late_peer_needs_a_join_and_join_may_add_peers():
    with pytest.raises(ScenarioError, match=r"peers\[3\].start: peer-3 never starts"):
        parse_scenario({**BASE, "peers": ["a", "b", "c", {"name": "peer-3", "start": False}]}, source="f.yaml")
    p = plan(parse_scenario({**BASE, "events": [{"at": "5s", "join": "newcomer"}, {"at": "9s", "kill": "newcomer"}]}))
    assert [q.name for q in p.peers] == ["peer-0", "peer-1", "peer-2", "newcomer"]
    assert p.peer("newcomer").index == 3 and not p.peer("newcomer").start


def test_the_plan_depends_on_the_file_alone():
    text = (ROOT / "scenarios" / "churn.yaml").read_text()
    a, b = plan(parse_scenario(yaml.safe_load(text))), plan(parse_scenario(yaml.safe_load(text)))
    assert a.timeline == b.timeline and a.peers == b.peers
    assert [e.at for e in a.timeline] == sorted(e.at for e in a.timeline)


def test_the_partition_of_a_plan_is_reproducible():
    from learnae.scenario.measurement import partition_summary

    p = plan(load_scenario(ROOT / "scenarios" / "non-iid.yaml"))
    first, second = partition_summary(p), partition_summary(p)
    assert first.digest == second.digest and first.shards == second.shards
    assert all(len(s.classes) == 2 for s in first.shards.values())  # classes:2
    other = plan(parse_scenario({**yaml.safe_load((ROOT / "scenarios" / "non-iid.yaml").read_text()), "seed": 99}))
    assert partition_summary(other).digest != first.digest


def test_cli_validate_and_its_errors(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "learnae.cli.main", "scenario", *args],
                              capture_output=True, text=True, timeout=60)

    ok = cli("validate", str(ROOT / "scenarios" / "churn.yaml"))
    assert ok.returncode == 0 and "valid" in ok.stdout and "kill" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nduration: 30s\npeers: 2\nevents:\n  - {at: 5s, restart: [peer-5]}\n")
    proc = cli("validate", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "events[0].restart: unknown peer 'peer-5'" in proc.stderr
    assert "Traceback" not in proc.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\n  duration: [\n")
    proc = cli("validate", str(broken))
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and "line" in proc.stderr
    proc = cli("run", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "no such scenario file" in proc.stderr


def test_run_refuses_a_used_output_directory(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "something").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "learnae.cli.main", "scenario", "run",
                           str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not an empty directory" in proc.stderr
