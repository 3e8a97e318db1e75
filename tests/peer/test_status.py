"""metrics.jsonl as typed records (learnae.peer.record), and `learnae peer status`, which reads them
with the checkpoint: running or not, progress, latest metrics."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time

import numpy as np

from learnae.identity import KEY_FILE, Identity
from learnae.ledger import Ledger
from learnae.peer.checkpoint import Checkpoint, save_checkpoint
from learnae.peer.lock import DataDirLock
from learnae.peer.record import METRICS_FILE, MetricsRecord, append_record, last_record, read_records
from learnae.peer.status import read_status

# a line as the peer writes it (learnae.peer.reporting)
LINE = {"time": 1795301063.7, "peer_id": "12D3KooWA", "step": 420, "samples": 13440, "loss": 0.21,
        "accuracy": 0.94, "val_loss": 0.25, "val_accuracy": 0.93, "test_loss": 0.3, "test_accuracy": 0.91,
        "peers": 3, "known_authors": 4, "merges": 40, "snapshots": 84, "bytes_received": 5_100_000,
        "bytes_sent": 60_000, "train_share": 0.71,
        "time_s": {"gather": 3.1, "train": 40.2, "merge_wait": 0.5, "fetch_wait": 0.0, "merge": 1.2,
                   "publish": 0.3, "checkpoint": 0.4},
        "ledger_seq": 90, "announce_latency_s": 0.04, "fetch_latency_s": None, "rejected": 1,
        "forks": ["12D3KooWB"], "faults_dropped": 2, "ledger_authors": 4, "ledger_entries": 812,
        "ledger_gaps": 0, "merges_skipped": 0, "gossiped": 700, "rejected_by_reason": {"bad-signature": 1}}


def status(learnae_cli, data_dir):
    proc = subprocess.run([*learnae_cli, "peer", "status", "--data-dir", str(data_dir), "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    return proc


def test_status_of_a_stopped_and_a_running_peer(learnae_cli, learnae_home, tmp_path):
    data_dir = tmp_path / "peer"
    save_checkpoint(data_dir, Checkpoint(step=120, samples=3840, weights=[np.zeros(2, np.float32)],
                                         ledger_seq=24, ledger_head="bafyreihead"))
    with open(data_dir / "metrics.jsonl", "w") as fh:
        fh.write(json.dumps({"time": 1.0, "step": 100, "val_accuracy": 0.5, "peers": 1, "merges": 3}) + "\n")
        fh.write(json.dumps({"time": 2.0, "step": 120, "val_accuracy": 0.91, "loss": 0.3, "peers": 2,
                             "merges": 7}) + "\n")
        fh.write('{"time": 3.0, "step": 1')  # a torn last line, as after kill -9
    info = json.loads(status(learnae_cli, data_dir).stdout)
    assert info["running"] is False and info["pid"] is None
    assert (info["step"], info["samples"], info["ledger_seq"]) == (120, 3840, 24)
    assert (info["accuracy"], info["peers"], info["merges"]) == (0.91, 2, 7)

    with DataDirLock(data_dir):
        info = json.loads(status(learnae_cli, data_dir).stdout)
    assert info["running"] is True and isinstance(info["pid"], int)


def test_status_of_a_missing_data_dir_is_exit_2(learnae_cli, learnae_home, tmp_path):
    proc = status(learnae_cli, tmp_path / "nope")
    assert proc.returncode == 2
    assert proc.stderr.startswith("learnae: error: ") and "--data-dir" in proc.stderr



def test_state_tells_a_leave_from_a_crash_and_text_shows_accuracies_and_an_age(learnae_cli, learnae_home, tmp_path):
    data_dir, me = tmp_path / "peer", Identity.generate()
    me.save(data_dir / KEY_FILE)
    assert read_status(data_dir).state == "never ran"
    with Ledger.open(data_dir, me, swarm="s") as led:
        led.append("join", {"fingerprint": "ff", "framework": "keras", "addrs": []})
    assert read_status(data_dir).state == "stopped without leaving (crashed or killed)"  # kill -9, a crash
    with Ledger.open(data_dir, me, swarm="s") as led:
        led.append("leave", {"reason": "interrupted"})
    assert read_status(data_dir).state == "left (interrupted)"  # Ctrl-C
    with DataDirLock(data_dir):
        assert read_status(data_dir).state == "running"

    append_record(data_dir, MetricsRecord(time=time.time() - 42, step=120, val_accuracy=1.0, test_accuracy=0.913))
    proc = subprocess.run([*learnae_cli, "peer", "status", "--data-dir", str(data_dir)], capture_output=True,
                          text=True, timeout=60)
    rows = {line.split()[0]: line.split(None, 1)[1] for line in proc.stdout.splitlines()}
    assert rows["state"] == "left (interrupted)"
    assert rows["test_accuracy"] == "0.913 (held-out test split, all classes)"
    assert rows["val_accuracy"] == "1.000 (this peer's own validation slice)"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(4[2-9] s ago\)", rows["last_update"]), rows

def test_a_record_round_trips_with_the_keys_the_peer_writes():
    rec = MetricsRecord.from_json(LINE)
    assert rec.to_json() == LINE  # same keys, same values: files and docs stay valid
    assert MetricsRecord.from_json(rec.to_json()) == rec
    assert rec.forks == ("12D3KooWB",) and rec.time_s["train"] == 40.2 and rec.fetch_latency_s is None
    tagged = MetricsRecord.from_json({**LINE, "event": "merge-1"})
    assert tagged.event == "merge-1" and tagged.to_json()["event"] == "merge-1" and "event" not in rec.to_json()


def test_nan_and_infinity_are_written_as_null(tmp_path):
    rec = MetricsRecord(time=1.0, step=1, loss=math.nan, val_accuracy=math.inf, time_s={"train": math.nan})
    append_record(tmp_path, rec)
    line = (tmp_path / METRICS_FILE).read_text()
    assert "NaN" not in line and "Infinity" not in line
    back = json.loads(line)
    assert back["loss"] is None and back["val_accuracy"] is None and back["time_s"] == {"train": None}
    assert last_record(tmp_path).loss is None and last_record(tmp_path).time_s == {}


def test_torn_and_invalid_lines_are_skipped(tmp_path):
    for step in (1, 2):
        append_record(tmp_path, MetricsRecord(time=float(step), step=step))
    with open(tmp_path / METRICS_FILE, "a") as fh:
        fh.write("[1, 2]\n")  # JSON, but not a record
        fh.write('{"time": 3.0, "step": 3')  # torn, as after kill -9
    assert [r.step for r in read_records(tmp_path)] == [1, 2]
    assert last_record(tmp_path).step == 2
    assert read_records(tmp_path / "nowhere") == [] and last_record(tmp_path / "nowhere") is None


def test_an_old_file_missing_keys_and_bad_values_still_reads(tmp_path):
    (tmp_path / METRICS_FILE).write_text(json.dumps({"time": 5, "step": 10, "val_accuracy": 0.5, "unknown": 1}) + "\n"
                                         + json.dumps({"step": "ten", "merges": 2.0, "forks": "x", "loss": True}))
    old, bad = read_records(tmp_path)
    assert (old.time, old.step, old.val_accuracy, old.merges, old.announce_latency_s) == (5.0, 10, 0.5, 0, None)
    assert (bad.time, bad.step, bad.merges, bad.forks, bad.loss) == (None, 0, 2, (), None)
    assert read_status(tmp_path).to_json()["accuracy"] is None  # the newest record has none
