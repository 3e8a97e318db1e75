"""`learnae scenario from-ledger`: a run's timeline read back from real signed ledger entries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from learnae.cli.main import cli
from learnae.errors import UserError
from learnae.identity import Identity
from learnae.ledger.car import write_car
from learnae.ledger.entry import Entry, now_ms, sign_entry
from learnae.scenario.replay import read_entries, scenario_from_ledger, write_replay
from learnae.scenario.schema import load_scenario, parse_scenario, plan
from tests.ledger.chains import raw_cid

SWARM = "replayswarm"
T0 = now_ms() - 3_600_000  # an hour ago: well inside decode_entry's future-timestamp check


class Chain:
    """One peer's signed chain, written entry by entry at times in seconds after T0."""

    def __init__(self) -> None:
        self.identity = Identity.generate()
        self.entries: list[Entry] = []

    def add(self, kind: str, at_s: float, body: dict) -> Chain:
        prev = self.entries[-1].cid if self.entries else None
        self.entries.append(sign_entry(self.identity, swarm=SWARM, seq=len(self.entries), prev=prev, kind=kind,
                                       body=body, ts=T0 + int(at_s * 1000)))
        return self

    def join(self, at_s: float) -> Chain:
        self.add("join", at_s, {"fingerprint": "f" * 16, "framework": "keras", "addrs": ["/ip4/127.0.0.1/tcp/4001"]})
        if len(self.entries) == 1:
            self.add("shard", at_s + 0.2, {"shard": raw_cid(self.identity.peer_id.encode()), "samples": 100,
                                           "classes": {"0": 50, "1": 50}})
        return self

    def train(self, from_s: float, to_s: float, every_s: float = 2.0) -> Chain:
        t = from_s
        while t <= to_s + 1e-9:
            step = 5 * len(self.entries)
            self.add("snapshot", t, {"model": raw_cid(f"{self.identity.peer_id}-{step}".encode()), "step": step,
                                     "samples": 32 * step, "metrics": {"loss": 0.5, "accuracy": 0.8},
                                     "parents": []})
            t += every_s
        return self

    def leave(self, at_s: float, reason: str) -> Chain:
        return self.add("leave", at_s, {"reason": reason})

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id


@pytest.fixture(scope="module")
def churn() -> dict[str, Chain]:
    """Five peers: a crash and restart, a crash for good, a leave and rejoin, a late joiner.

    The initial four join in the 1.5 s before t = 0 and train from 1 s on, as
    peers do: nobody takes a step until the initial group is present.
    """
    return {
        "steady": Chain().join(-1.5).train(1, 90).leave(91, "done"),
        "crashed": Chain().join(-1).train(2, 30).join(45).train(46, 90).leave(91, "done"),
        "gone": Chain().join(-0.5).train(3, 20),
        "rejoined": Chain().join(0).train(4, 50).leave(50.5, "interrupted").join(60).train(61, 89)
                           .leave(91, "interrupted"),  # stopped at the end of the run: not an event
        "late": Chain().join(40).train(41, 90),  # killed at the end: not an event
    }


def write(path: Path, chains, *, corrupt: int | None = None) -> Path:
    """Write every entry to a CAR; ``corrupt``: flip one byte inside that block's signature."""
    entries = [e for c in chains for e in c.entries]
    blocks = []
    for i, e in enumerate(entries):
        data = bytearray(e.to_bytes())
        if i == corrupt:
            data[-10] ^= 0xFF
        blocks.append((e.cid, bytes(data)))
    with path.open("wb") as f:
        write_car(f, [c.entries[-1].cid for c in chains], blocks)
    return path


def events(data: dict) -> list[tuple[float, str, list[str]]]:
    return [(ev["at"], next(k for k in ev if k != "at"), next(v for k, v in ev.items() if k != "at"))
            for ev in data["events"]]


def test_peers_are_named_in_join_order_with_their_ids(churn):
    data = scenario_from_ledger([e for c in churn.values() for e in c.entries])
    order = ["steady", "crashed", "gone", "rejoined", "late"]
    assert data["peers"][:4] == ["peer-0", "peer-1", "peer-2", "peer-3"]
    for i, key in enumerate(order):
        assert f"peer-{i}={churn[key].peer_id}" in data["description"]
    assert data["dataset"] == "digits" and data["expect"] == [{"ledger_valid": True}]
    assert data["duration"] == 91 + 10  # last entry, rounded up, plus the margin


def test_timeline_matches_what_the_chains_record(churn):
    data = scenario_from_ledger([e for c in churn.values() for e in c.entries])
    got = events(data)
    expected = [(20, "kill", ["peer-2"]),      # crashed for good: at its last entry
                (30, "kill", ["peer-1"]),      # crash: its last entry before the next join
                (40, "join", ["peer-4"]),      # late joiner
                (45, "restart", ["peer-1"]),
                (50.5, "leave", ["peer-3"]),   # graceful leave ...
                (60, "join", ["peer-3"])]      # ... and rejoin
    assert [(a, p) for _, a, p in got] == [(a, p) for _, a, p in expected]
    for (at, _, _), (want, _, _) in zip(got, expected):
        assert abs(at - want) <= 1.0
    assert data["peers"][4] == {"name": "peer-4", "start": False}


def test_a_staggered_start_is_one_initial_group_and_t0_is_when_it_was_up():
    """The runner starts peer-0, waits for its address, then starts the rest (a TensorFlow start-up later)."""
    first = Chain().join(0).train(43, 100)
    rest = [Chain().join(40).train(43, 100), Chain().join(41).train(43, 100),
            Chain().join(42).train(43, 70).join(80).train(81, 100)]
    data = scenario_from_ledger([e for c in [first, *rest] for e in c.entries])
    assert data["peers"] == ["peer-0", "peer-1", "peer-2", "peer-3"]  # nobody is a late joiner
    (kill_at, kill, who), (restart_at, restart, _) = events(data)
    assert (kill, restart, who) == ("kill", "restart", ["peer-3"])
    assert abs(kill_at - 28) <= 1 and abs(restart_at - 38) <= 1  # t = 0 at the last initial join (42 s)
    assert data["duration"] == 57 + 10  # the last snapshot, at 99 s


def test_kill_and_restart_at_the_same_moment_stay_in_order():
    c = Chain().join(0).train(1, 10)
    c.join(10).train(11, 30)  # the kill -9 came right after the snapshot at 10 s
    other = Chain().join(0.5).train(1, 30)
    data = scenario_from_ledger(c.entries + other.entries)
    assert [(a, p) for _, a, p in events(data)] == [("kill", ["peer-0"]), ("restart", ["peer-0"])]
    p = plan(parse_scenario(data))
    assert [x.action for x in p.timeline] == ["kill", "restart"]


def test_replay_file_validates_and_plans_the_same_timeline(churn, tmp_path):
    car = write(tmp_path / "ledger.car", churn.values())
    out = tmp_path / "replay.yaml"
    summary = write_replay(car, out, like=None)
    assert summary == "5 peers, 6 events (2 kill, 2 join, restart, leave) over 101 s"
    text = out.read_text()
    assert text.startswith("# Replayed from") and f"peer-1: {churn['crashed'].peer_id}" in text
    p = plan(load_scenario(out))
    assert [x.action for x in p.timeline] == ["kill", "kill", "join", "restart", "leave", "join"]
    assert [q.name for q in p.peers if not q.start] == ["peer-4"]


def test_like_supplies_the_settings_the_ledger_lacks(churn, tmp_path):
    like = tmp_path / "like.yaml"
    like.write_text(yaml.safe_dump({
        "name": "churn", "seed": 7, "duration": "150s", "dataset": "digits", "partition": "classes:3",
        "peers": 8, "merge": {"every": 10, "k": 2}, "network": {"latency": "50ms", "links": [
            {"between": ["peer-0", "peer-7"], "loss": 0.5}]},
        "expect": ["mean_accuracy >= 0.85", {"ledger_valid": True}, {"forks_detected": ["peer-7"]}],
    }))
    car = write(tmp_path / "ledger.car", churn.values())
    write_replay(car, tmp_path / "replay.yaml", like=like)
    s = load_scenario(tmp_path / "replay.yaml")
    assert (s.name, s.seed, s.partition, s.merge.every, s.merge.k) == ("replay-churn", 7, "classes:3", 10, 2)
    assert s.network.latency == pytest.approx(0.05) and s.network.links == []  # peer-7 is not in this replay
    assert [e.text for e in s.expect] == ["mean_accuracy >= 0.85", "ledger_valid: true"]
    assert "forks_detected" in s.description and len(s.peers) == 5


def test_a_corrupted_block_is_skipped_and_counted(churn, tmp_path):
    chains = list(churn.values())
    car = write(tmp_path / "ledger.car", chains, corrupt=5)  # a snapshot in the middle of the first chain
    entries, skipped = read_entries(car)
    assert skipped == 1 and len(entries) == sum(len(c.entries) for c in chains) - 1
    summary = write_replay(car, tmp_path / "replay.yaml", like=None)
    assert summary.endswith("; skipped 1 bad block")
    assert [a for _, a, _ in events(yaml.safe_load((tmp_path / "replay.yaml").read_text()))] == \
        ["kill", "kill", "join", "restart", "leave", "join"]


def test_a_forged_signature_is_skipped(churn, tmp_path):
    """A block that hashes to its CID but whose signature is wrong (re-hashed after the edit)."""
    from learnae.ledger.cbor import dag_cbor_cid

    good = churn["steady"].entries
    data = bytearray(good[3].to_bytes())
    data[-10] ^= 0xFF
    path = tmp_path / "forged.car"
    with path.open("wb") as f:
        write_car(f, [good[-1].cid], [(e.cid, e.to_bytes()) for e in good[:3]] + [(dag_cbor_cid(bytes(data)),
                                                                                  bytes(data))])
    entries, skipped = read_entries(path)
    assert skipped == 1 and len(entries) == 3


def test_not_a_car_file_is_a_user_error(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a CAR file\n")
    with pytest.raises(UserError, match="notes.txt.*not a CARv1 file"):
        write_replay(bogus, tmp_path / "replay.yaml", like=None)
    with pytest.raises(UserError, match="missing.car: no such file"):
        write_replay(tmp_path / "missing.car", tmp_path / "replay.yaml", like=None)
    assert not (tmp_path / "replay.yaml").exists()


def test_cli_from_ledger(churn, tmp_path):
    car = write(tmp_path / "ledger.car", churn.values())
    out = tmp_path / "replay.yaml"
    result = CliRunner().invoke(cli, ["scenario", "from-ledger", str(car), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out}: 5 peers, 6 events") and out.exists()
    validated = CliRunner().invoke(cli, ["scenario", "validate", str(out)], catch_exceptions=False)
    assert validated.exit_code == 0 and "restart" in validated.output


def test_cli_from_ledger_bad_file_is_exit_2_in_one_line(learnae_cli, tmp_path):
    bogus = tmp_path / "bogus.car"
    bogus.write_bytes(b"\xff\xff\xff")
    proc = subprocess.run([*learnae_cli, "scenario", "from-ledger", str(bogus), "-o", str(tmp_path / "r.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("learnae: error:") and "bogus.car" in proc.stderr
