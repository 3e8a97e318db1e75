"""Checkpoints survive kill -9: the file is always the old or the new checkpoint."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from learnae.errors import StoreError
from learnae.peer.checkpoint import CHECKPOINT_FILE, Checkpoint, load_checkpoint, save_checkpoint


def test_round_trip_keeps_every_tensor_and_field(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
    optimizer = [np.array(7, dtype=np.int64), rng.normal(size=(8, 4)).astype(np.float32)]
    ckpt = Checkpoint(step=42, samples=1344, weights=weights, optimizer=optimizer,
                      ledger_seq=5, ledger_head="bafyreitest", extra={"swarm": "abc"})
    save_checkpoint(tmp_path, ckpt)
    got = load_checkpoint(tmp_path)
    assert (got.step, got.samples, got.ledger_seq, got.ledger_head, got.extra) == (42, 1344, 5, "bafyreitest", {"swarm": "abc"})
    for a, b in zip(got.weights + got.optimizer, weights + optimizer, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_no_checkpoint_yet(tmp_path):
    assert load_checkpoint(tmp_path) is None


def test_damaged_checkpoint_is_reported_not_loaded(tmp_path):
    save_checkpoint(tmp_path, Checkpoint(step=1, samples=1, weights=[np.zeros(3, np.float32)]))
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(StoreError, match="damaged checkpoint"):
        load_checkpoint(tmp_path)


_WRITER = """
import sys, numpy as np
from learnae.peer.checkpoint import Checkpoint, save_checkpoint
step = int(sys.argv[2])
w = np.full((256, 256), 0, np.float32)
print("ready", flush=True)
while True:
    step += 1
    w[:] = step
    save_checkpoint(sys.argv[1], Checkpoint(step=step, samples=step * 32, weights=[w]))
"""


def test_kill_9_mid_save_always_leaves_a_whole_checkpoint(tmp_path):
    rng = random.Random(1)
    last_step = 0
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(last_step)],
                                stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(tmp_path)
        if ckpt is None:
            continue
        # Every tensor value matches the step recorded with it: no torn mix of two saves.
        assert ckpt.samples == ckpt.step * 32
        assert np.all(ckpt.weights[0] == ckpt.step)
        assert ckpt.step >= last_step
        last_step = ckpt.step
    assert last_step > 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != CHECKPOINT_FILE]
    assert all(name.endswith(".tmp") for name in leftovers)
