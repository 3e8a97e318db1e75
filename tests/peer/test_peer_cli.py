"""`learnae peer start` refuses bad input with one line and exit code 2, before any networking."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from learnae.peer.checkpoint import Checkpoint, save_checkpoint
from learnae.peer.lock import DataDirLock

START = [sys.executable, "-m", "learnae.cli.main", "peer", "start", "--listen", "/ip4/127.0.0.1/tcp/0",
         "--max-steps", "1"]


def start(data_dir, *args, timeout=180):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([*START, "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("learnae: error: ")]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("args, needles", [
    (["--dataset", "missing/data.npz"], ["missing/data.npz", "does not exist"]),
    (["--shard", "4/4"], ["--shard", "out of range", "0..3"]),
    (["--model", "digits-transformer"], ["digits-transformer", "digits-mlp"]),
    (["--partition", "dirichlet:"], ["partition", "dirichlet:ALPHA"]),
    (["--bootstrap", "/ip4/127.0.0.1/tcp/4010"], ["bootstrap", "/p2p/"]),
    (["--merge-every", "0"], ["merge_every", "--merge-every", "> 0"]),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needles):
    proc = start(tmp_path / "peer", *args)
    assert proc.returncode == 2
    line = error_line(proc)
    for needle in needles:
        assert needle in line
    assert proc.stdout == ""  # nothing was started: no dial line


def test_npz_without_labels_names_the_file(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((10, 64), np.float32))
    proc = start(tmp_path / "peer", "--dataset", str(path))
    assert proc.returncode == 2 and str(path) in error_line(proc)


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(tmp_path):
    data_dir = tmp_path / "peer"
    save_checkpoint(data_dir, Checkpoint(step=5, samples=160, weights=[np.zeros(3, np.float32)],
                                         extra={"fingerprint": "0" * 64}))
    proc = start(data_dir)
    assert proc.returncode == 2
    line = error_line(proc)
    assert "another model" in line and "--data-dir" in line


@pytest.mark.slow
def test_data_dir_in_use_is_refused(tmp_path):
    data_dir = tmp_path / "peer"
    with DataDirLock(data_dir):
        proc = start(data_dir)
    assert proc.returncode == 2
    assert "in use by another peer" in error_line(proc)
