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


def _checkpoint_bytes(meta_edit=None, **tensors) -> bytes:
    """What save_checkpoint writes for one weight and one optimizer tensor, with its metadata edited."""
    import json

    from safetensors.numpy import save

    meta = {"format": "learnae-checkpoint/1", "step": 3, "samples": 96, "n_weights": 1, "n_optimizer": 1,
            "ledger_seq": 2, "ledger_head": "bafyreihead", "extra": {}}
    if meta_edit is not None:
        meta_edit(meta)
    arrays = {"w/0000": np.ones(4, np.float32), "o/0000": np.zeros(4, np.float32), **tensors}
    return save(arrays, metadata={"learnae": json.dumps(meta)})


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["w/0000", "o/0000"])
def test_a_checkpoint_with_nan_or_inf_is_refused(tmp_path, name, value):
    bad = np.ones(4, np.float32)
    bad[2] = value
    (tmp_path / CHECKPOINT_FILE).write_bytes(_checkpoint_bytes(**{name: bad}))
    with pytest.raises(StoreError, match="NaN or infinite") as info:
        load_checkpoint(tmp_path)
    assert str(tmp_path / CHECKPOINT_FILE) in str(info.value) and "move it away" in str(info.value)


@pytest.mark.parametrize("edit", [
    lambda m: m.pop("step"),  # a KeyError after the checks before
    lambda m: m.pop("ledger_head") and m.pop("ledger_seq"),
    lambda m: m.update(step=float("inf")),  # an OverflowError before
    lambda m: m.update(step="3"),
    lambda m: m.update(samples=-1),
    lambda m: m.update(n_weights=10**12),
    lambda m: m.update(n_weights=True),
    lambda m: m.update(ledger_head=7),
    lambda m: m.update(ledger_seq=-2),
    lambda m: m.update(extra=[1, 2]),
    lambda m: m.update(extra=[[1, 2, 3]]),
    lambda m: m.update(format="learnae-checkpoint/9"),
])
def test_damaged_metadata_is_a_store_error(tmp_path, edit):
    (tmp_path / CHECKPOINT_FILE).write_bytes(_checkpoint_bytes(edit))
    with pytest.raises(StoreError, match="damaged checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("raw", [
    b"",
    b"\x05\0\0\0\0\0\0\0[1,2]",
    b"\x02\0\0\0\0\0\0\0[]",
    b"\x0e\0\0\0\0\0\0\0" + b'{"__metadata__"'[:14],
    len(b'{"__metadata__":[1]}').to_bytes(8, "little") + b'{"__metadata__":[1]}',
    (200_000).to_bytes(8, "little") + b"[" * 100_000 + b"]" * 100_000,
])
def test_garbage_is_a_store_error(tmp_path, raw):
    (tmp_path / CHECKPOINT_FILE).write_bytes(raw)
    with pytest.raises(StoreError, match="damaged checkpoint"):
        load_checkpoint(tmp_path)


def test_a_directory_in_place_of_the_checkpoint_is_a_store_error(tmp_path):
    (tmp_path / CHECKPOINT_FILE).mkdir()
    with pytest.raises(StoreError, match="cannot read the checkpoint"):
        load_checkpoint(tmp_path)
