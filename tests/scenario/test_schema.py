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
    ({"events": [{"at": "1s", "kill": ["peer-9"]}]}, "events[0].kill[0]", "unknown peer 'peer-9'"),
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
    ({"peers": "six"}, "peers", "a peer count of 1 to 64 (peers: 6) or a list of peers"),
    ({"merge": {"rule": "avg"}}, "merge.rule", "multi-krum"),
    ({"network": {"loss": 2}}, "network.loss", "less than 1"),
    ({"network": {"links": [{"between": ["peer-0", "x"], "latency": "1s"}]}}, "network.links[0].between[1]", "unknown peer 'x'"),
    ({"expect": ["mean_acc >= 0.9"]}, "expect[0]", "unknown metric 'mean_acc'"),
    ({"expect": ["mean_accuracy is high"]}, "expect[0]", "METRIC OP NUMBER"),
    ({"expect": [{"forks_detected": ["nobody"]}]}, "expect[0].forks_detected", "unknown peer 'nobody'"),
    ({"train": {"max_steps": -1}}, "train.max_steps", "greater than or equal to 0"),
    ({"colour": "blue"}, "colour", "unknown key"),
])
def test_a_broken_file_names_the_yaml_path_and_what_is_expected(changes, path, expected):
    msg = _error(**changes)
    assert msg.startswith(("f.yaml: ", "f.yaml: 2 problems: (1) ")), msg
    where = msg.replace("f.yaml:", "").find(f" {path}: ")
    assert where >= 0 and expected in msg.replace("f.yaml:", "")[where:], msg  # the path, then what is wrong there
    assert "Input should be a valid list" not in msg


TIMELINE_PROBLEMS = [  # each one impossible, at its YAML path; the file lists them out of time order
    ({"at": "9s", "restart": "peer-0"}, "events[0].restart[0]", "peer-0 is running at 9s"),
    ({"at": "2s", "heal": True}, "events[1].heal", "no partition is in force at 2s"),
    ({"at": "3s", "join": "peer-1"}, "events[2].join[0]", "peer-1 is running at 3s"),
    ({"at": "4s", "partition": [["peer-0", "peer-1"], ["peer-2", "peer-1"]]}, "events[3].partition[1][1]",
     "peer-1 is already in group 0"),
    ({"at": "5s", "kill": "peer-2"}, None, None),
    ({"at": "6s", "kill": "peer-2"}, "events[5].kill[0]", "peer-2 is killed at 6s (kill at 5s)"),
    ({"at": "7s", "resume": "peer-1"}, "events[6].resume[0]", "peer-1 is running at 7s: it is not paused"),
    ({"at": "8s", "restart": "late"}, "events[7].restart[0]", "late is waiting at 8s: it has not started yet: "
                                                              "start it with `join`"),
    ({"at": "10s", "join": "late"}, None, None),
    ({"at": "11s", "slow": {"peer-0": 0.5}}, "events[9].slow.peer-0", "factor 0.5 is below 1"),
    ({"at": "12s", "partition": [["peer-0"]]}, "events[10].partition", "a partition needs at least two groups"),
]


def test_validate_walks_the_timeline_as_a_state_machine_and_lists_every_problem():
    peers = ["peer-0", "peer-1", "peer-2", {"name": "late", "start": False}]
    with pytest.raises(ScenarioError) as info:
        parse_scenario({**BASE, "peers": peers, "events": [e for e, _, _ in TIMELINE_PROBLEMS]}, source="f.yaml")
    msg = str(info.value)
    expected = [(path, what) for _, path, what in TIMELINE_PROBLEMS if path]
    assert msg.startswith(f"f.yaml: {len(expected)} problems: (1) ") and "\n" not in msg, msg
    for path, what in expected:
        assert f" {path}: {what}" in msg, (path, msg)
    at = {path: float(e["at"].rstrip("s")) for e, path, _ in TIMELINE_PROBLEMS if path}
    assert [path for path, _ in info.value.problems] == sorted(at, key=at.get)  # in the order they happen


def test_possible_timelines_pass_and_say_who_runs_at_the_end():
    from learnae.scenario.lifecycle import expected_running

    events = [{"at": "1s", "partition": [["peer-0"], ["peer-1", "peer-2"]]}, {"at": "2s", "heal": True},
              {"at": "3s", "kill": "peer-1"}, {"at": "4s", "restart": "peer-1"}, {"at": "5s", "pause": "peer-0"},
              {"at": "6s", "leave": "peer-2"}, {"at": "7s", "join": "peer-2"},  # a rejoin after a leave
              {"at": "8s", "join": "newcomer"}, {"at": "9s", "kill": "newcomer"},
              {"at": "5s", "kill": "peer-1"}, {"at": "5s", "restart": "peer-1"}]  # same time: file order
    s = parse_scenario({**BASE, "events": events})
    assert expected_running(s) == {"peer-0", "peer-1", "peer-2"}  # peer-0 paused: resumed to be stopped
    for f in SHIPPED:
        s = load_scenario(f)
        assert expected_running(s) <= {p.name for p in plan(s).peers}


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
    assert proc.stderr.strip().count("\n") == 0 and "events[0].restart[0]: unknown peer 'peer-5'" in proc.stderr
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
