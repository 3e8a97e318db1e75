"""report.json's typed records, accuracy.png, report.md and `learnae scenario compare`, from report dicts that
follow the format-1 contract."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from learnae.cli.main import cli
from learnae.errors import UserError
from learnae.peer.faults import Attack
from learnae.scenario.compare import compare_runs
from learnae.scenario.markdown import write_markdown
from learnae.scenario.plot import honest_mean_series, plot_accuracy
from learnae.scenario.report import Report, load_report
from learnae.scenario.timeline import (AttackAction, FiredEvent, HealAction, PartitionAction, PeerAction, SlowAction,
                                       event_label, item_from_json)

KILL = {"at": 30.0, "action": "kill", "peers": ["peer-2"]}
RESTART = {"at": 45.0, "action": "restart", "peers": ["peer-2"]}


def series(acc, *, start: float = 0.0, end: float = 90.0, every: float = 2.0) -> list[dict]:
    """Samples every ``every`` s from ``start`` to ``end``; ``acc(t)`` gives the test accuracy."""
    out, t, n = [], start, 0
    while t <= end:
        out.append({"t": round(t, 2), "step": 10 * n, "test_accuracy": acc(t), "val_accuracy": acc(t), "loss": 0.5,
                    "merges": n, "snapshots": n, "bytes_received": 50_000 * n, "bytes_sent": 40_000 * n,
                    "peers": 3, "event": None})
        t, n = t + every, n + 1
    return out


def peer(index: int, points: list[dict], *, state: str = "finished", honest: bool = True, forks=(),
         valid: bool = True) -> dict:
    last = points[-1] if points else {}
    return {
        "peer_id": f"12D3KooWPeer{index:02d}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" if points else None,
        "index": index, "rule": "mean", "slow": 1.0,
        "attack": None if honest else {"mode": "sign-flip", "scale": None},
        "honest": honest, "state": state, "returncode": 0, "starts": 1,
        "series": points,
        "final": {"step": last.get("step"), "test_accuracy": last.get("test_accuracy"), "merges": last.get("merges"),
                  "snapshots": last.get("snapshots"), "bytes_received": last.get("bytes_received"),
                  "bytes_sent": last.get("bytes_sent"), "announce_latency_s": 0.05, "rejected": 0,
                  "judged_accuracy": last.get("test_accuracy")},
        "ledger": {"valid": valid, "entries": 40, "problems": [] if valid else ["seq 7: bad-signature"]},
        "forks_detected": list(forks),
    }


def make_report(name: str = "churn", *, timeline=(KILL, RESTART), final_acc: float = 0.93, threshold: float = 0.9,
                digest: str = "ab" * 32, n_peers: int = 4, attacker: bool = True) -> dict:
    """A report as the runner writes it: peer-2 killed at 30 s and restarted at 45 s, one attacker."""
    peers = {}
    for i in range(n_peers):
        if i == 2:
            pts = series(lambda t: min(0.9, 0.2 + t / 60), end=29) + series(lambda t: 0.85, start=47)
        else:
            pts = series(lambda t, i=i: min(final_acc, 0.2 + t / 60 + i / 100))
        peers[f"peer-{i}"] = peer(i, pts)
    if attacker:
        peers[f"peer-{n_peers}"] = peer(n_peers, series(lambda t: 0.1), honest=False)
    events = [{"t": item["at"] + 0.02, **item, "ok": True, "detail": ""} for item in timeline]
    ok = final_acc >= threshold
    return {
        "format": 1, "name": name, "source": f"scenarios/{name}.yaml",
        "scenario": {"name": name, "sample_every": 2.0}, "seed": 7, "started_at": 1795301063.7,
        "duration_s": 92.5, "end_reason": "duration",
        "partition": {"scheme": "classes:3", "seed": 7, "digest": digest,
                      "shards": {f"peer-{i}": {"index": i, "samples": 323, "classes": {"0": 100, "3": 120, "7": 103}}
                                 for i in range(n_peers)}},
        "timeline": list(timeline), "events": events, "peers": peers,
        "consensus": [{"t": float(t), "distance": 2.0 / (1 + t / 10), "max_distance": 3.0 / (1 + t / 10), "peers": 4}
                      for t in range(10, 91, 10)],
        "final": {"mean_accuracy": final_acc, "min_accuracy": final_acc - 0.02, "max_accuracy": final_acc,
                  "peers_alive": n_peers, "ledger_valid": True, "forks": [], "consensus_distance": 0.4,
                  "max_consensus_distance": 0.7, "merges": 180, "bytes_received": 36_000_000,
                  "bytes_sent": 30_000_000, "rejected": 3, "announce_latency_s": 0.05, "duration_s": 92.5,
                  "window_s": 10.0},
        "expectations": [{"expect": f"mean_accuracy >= {threshold}", "ok": ok, "value": final_acc},
                         {"expect": "ledger_valid: true", "ok": True, "value": True}],
        "ok": ok,
        "files": {"accuracy_plot": "accuracy.png", "summary": "report.md", "ledger": "ledger.car", "peers": "peers/"},
    }


def run_dir(root: Path, name: str, report: dict) -> Path:
    out = root / name
    out.mkdir()
    (out / "report.json").write_text(json.dumps(report))
    return out


def typed(report: dict) -> Report:
    return Report.from_json(report)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def test_accuracy_plot_is_a_readable_png(tmp_path):
    path = plot_accuracy(typed(make_report()), tmp_path / "accuracy.png")
    width, height = png_size(path)
    assert width >= 1000 and height >= 600  # 10 x 6.5 inches at 120 dpi
    assert path.stat().st_size > 20_000  # lines, labels and two panels, not a blank canvas


def test_plot_copes_with_many_peers_no_consensus_and_a_peer_that_never_started(tmp_path):
    report = make_report(n_peers=20)
    report["consensus"] = []
    report["peers"]["peer-20"] = peer(20, [], state="never-started")
    report["events"].append({"t": 60.0, "at": 60.0, "action": "partition", "groups": [["peer-0"], ["peer-1"]],
                             "ok": False, "detail": "peer-1 was not running"})
    width, _ = png_size(plot_accuracy(typed(report), tmp_path / "sub" / "accuracy.png"))
    assert width >= 1000


def test_event_labels_are_short():
    assert event_label(item_from_json(KILL)) == "kill peer-2"
    assert event_label(PeerAction(1.0, "kill", ("a", "b", "c"))) == "kill 3 peers"
    assert event_label(HealAction(1.0)) == "heal"
    assert event_label(PartitionAction(1.0, (("peer-0", "peer-1"), ("peer-2",)))) == "partition peer-0+peer-1 | peer-2"
    assert event_label(AttackAction(1.0, {"peer-7": Attack("sign-flip")})) == "attack peer-7 sign-flip"
    assert event_label(AttackAction(1.0, {"peer-7": None})) == "attack peer-7 off"
    assert event_label(FiredEvent(1.2, SlowAction(1.0, {"peer-1": 2.0}), ok=False)) == "slow peer-1 x2 (failed)"


def test_the_report_round_trips_exactly():
    data = make_report()
    data["partition"]["error"] = "dataset not found"
    data["events"].append({"t": 60.0, "at": 60.0, "action": "attack", "ok": False, "detail": "x",
                           "modes": {"peer-1": {"mode": "noise", "scale": 0.5}, "peer-2": None}})
    data["timeline"].append({"at": 61.0, "action": "slow", "factors": {"peer-1": 3.0}})
    report = typed(data)
    assert report.to_json() == json.loads(json.dumps(data))
    assert report.peers["peer-4"].attack == Attack("sign-flip") and not report.peers["peer-4"].honest
    assert report.events[-1].item.modes["peer-1"] == Attack("noise", 0.5) and report.events[-1].ok is False
    assert report.final.metric("mean_accuracy") == 0.93 and report.final.metric("nonsense") is None


def test_a_report_of_an_older_run_missing_keys_still_loads(tmp_path):
    data = make_report()
    for key in ("consensus", "partition", "files", "source", "started_at"):
        del data[key]
    for p in data["peers"].values():
        del p["final"]["rejected"], p["ledger"], p["series"][0]["event"]
    del data["final"]["announce_latency_s"]
    report = load_report(run_dir(tmp_path, "old", data))
    assert report.consensus == () and report.partition.digest is None and report.files.accuracy_plot == "accuracy.png"
    assert report.peers["peer-0"].final.rejected == 0 and report.peers["peer-0"].ledger.valid is None
    assert report.final.announce_latency_s is None
    write_markdown(report, tmp_path / "report.md")
    assert png_size(plot_accuracy(report, tmp_path / "accuracy.png"))[0] >= 1000


def test_honest_mean_ignores_attackers_and_peers_that_are_down():
    report = make_report(attacker=False, n_peers=0)
    report["peers"] = {"a": peer(0, series(lambda t: 0.8)),
                       "b": peer(1, series(lambda t: 0.6, end=30), state="killed"),
                       "evil": peer(2, series(lambda t: 0.0), honest=False)}
    mean = dict(honest_mean_series(typed(report)))
    assert mean[20.0] == pytest.approx(0.7)
    assert mean[50.0] == pytest.approx(0.8)  # b has been down for 20 s: it no longer counts


def test_markdown_of_a_failed_run_names_what_failed(tmp_path):
    report = make_report(final_acc=0.8123, threshold=0.9)
    report["timeline"].append({"at": 120.0, "action": "heal"})  # planned after the run ended
    report["peers"]["peer-1"] = peer(1, series(lambda t: 0.8), valid=False, forks=["peer-4"])
    report["expectations"].append({"expect": "forks_detected: [peer-4]", "ok": False,
                                   "value": {"peer-0": [], "peer-1": ["peer-4"]}})
    text = write_markdown(typed(report), tmp_path / "report.md").read_text()
    assert text.startswith("# Scenario `churn`: FAIL")
    assert "| `mean_accuracy >= 0.9` | 0.8123 | **FAIL** |" in text
    assert "| `ledger_valid: true` | yes | ok |" in text
    assert "| `forks_detected: [peer-4]` | peer-0: -; peer-1: [peer-4] | **FAIL** |" in text
    assert "kill peer-2" in text and "restart peer-2" in text
    assert "| - | 120 | heal | not reached |" in text
    assert "- peer-1: seq 7: bad-signature" in text  # the ledger problem, spelled out
    assert "attacker (sign-flip)" in text and "| peer-4 |" in text.split("## Peers")[1]
    assert "ab" * 32 in text and "| class 0 | class 3 | class 7 |" in text and "| 100 | 120 | 103 |" in text
    assert "![accuracy over time](accuracy.png)" in text


def test_markdown_of_a_passing_run(tmp_path):
    text = write_markdown(typed(make_report()), tmp_path / "report.md").read_text()
    assert text.startswith("# Scenario `churn`: PASS") and "**FAIL**" not in text
    assert "36.00 MB received" in text


def test_compare_lists_runs_and_flags_different_timelines(tmp_path):
    a = run_dir(tmp_path, "mean", make_report("churn"))
    b = run_dir(tmp_path, "trimmed", make_report("churn", final_acc=0.95))
    c = run_dir(tmp_path, "nokill", make_report("calm", timeline=(), final_acc=0.8, digest="cd" * 32))
    table, rows = compare_runs([a, b, c], tmp_path / "compare.png")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["run", "name"]
    assert [line.split()[0] for line in lines[1:4]] == ["mean", "trimmed", "nokill"]
    assert "timelines DIFFER: A = mean, trimmed; B = nokill" in table
    assert "data partitions: DIFFER" in table
    assert [r.timeline for r in rows] == ["A", "A", "B"]
    assert rows[0].same_timeline_as == ("trimmed",) and rows[2].same_timeline_as == ()
    assert rows[1].mean_accuracy == 0.95 and rows[2].ok is False and rows[2].expectations_passed == 1
    assert rows[0].mb_received == 36.0 and rows[0].partition_digest.startswith("abab")
    assert rows[0].to_json()["same_timeline_as"] == ["trimmed"]
    assert "1/2 FAIL" in lines[3] and "2/2" in lines[1]
    assert png_size(tmp_path / "compare.png")[0] >= 1000


def test_compare_identical_timelines(tmp_path):
    a = run_dir(tmp_path, "seed7", make_report())
    b = run_dir(tmp_path, "again", make_report())
    table, _ = compare_runs([a, b], tmp_path / "c.png")
    assert "timelines: identical in every run" in table and "data partitions: identical in every run" in table


def test_compare_names_the_directory_without_a_report(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"empty: no report.json .*learnae scenario run FILE --out"):
        compare_runs([empty], tmp_path / "c.png")
    with pytest.raises(UserError, match="nowhere: no such run directory"):
        compare_runs([tmp_path / "nowhere"], tmp_path / "c.png")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "report.json").write_text('{"format": 1, "name": ')
    with pytest.raises(UserError, match="bad/report.json: not valid JSON"):
        compare_runs([bad], tmp_path / "c.png")
    (bad / "report.json").write_text('{"format": 2}')
    with pytest.raises(UserError, match="not a scenario report of format 1"):
        compare_runs([bad], tmp_path / "c.png")
    (bad / "report.json").write_text(json.dumps({**make_report(), "timeline": [{"at": 1, "action": "explode"}]}))
    with pytest.raises(UserError, match="bad/report.json: malformed report .*explode"):
        compare_runs([bad], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_cli_compare(tmp_path):
    a = run_dir(tmp_path, "a", make_report())
    b = run_dir(tmp_path, "b", make_report(timeline=(KILL,)))
    plot = tmp_path / "cmp.png"
    result = CliRunner().invoke(cli, ["scenario", "compare", str(a), str(b), "--plot", str(plot)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "timelines DIFFER" in result.output and f"plot: {plot}" in result.output and plot.exists()
    result = CliRunner().invoke(cli, ["scenario", "compare", str(a), str(b), "--plot", str(plot), "--format", "json"],
                                catch_exceptions=False)
    assert [r["run"] for r in json.loads(result.output)] == ["a", "b"]


def test_cli_compare_missing_directory_is_exit_2_in_one_line(learnae_cli, tmp_path):
    a = run_dir(tmp_path, "a", make_report())
    missing = tmp_path / "never-ran"
    proc = subprocess.run([*learnae_cli, "scenario", "compare", str(a), str(missing), "--plot",
                           str(tmp_path / "c.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("learnae: error:")
    assert str(missing) in proc.stderr and "learnae scenario run" in proc.stderr


def test_report_and_replay_import_light():
    code = ("import sys, learnae.scenario.report, learnae.scenario.plot, learnae.scenario.markdown, "
            "learnae.scenario.compare, learnae.scenario.replay; "
            "print([m for m in ('tensorflow', 'libp2p', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
