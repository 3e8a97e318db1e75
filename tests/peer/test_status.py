"""`learnae peer status` reads a data dir: running or not, progress, latest metrics."""

from __future__ import annotations

import json
import subprocess

import numpy as np

from learnae.peer.checkpoint import Checkpoint, save_checkpoint
from learnae.peer.lock import DataDirLock


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
