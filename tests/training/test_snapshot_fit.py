"""The trainer's tensors travel through the storage snapshot codec unchanged."""

from __future__ import annotations

import numpy as np
import pytest

storage_snapshot = pytest.importorskip("learnae.storage.snapshot")


def test_trainer_weights_round_trip_through_a_snapshot(keras, digits):
    from learnae.training import KerasTrainer

    specs_fp = storage_snapshot.fingerprint
    a = KerasTrainer.from_spec("digits-cnn", digits.train.x, digits.train.y, seed=0)
    a.train_steps(10)
    specs = a.tensor_specs()
    names = [s.name for s in specs]
    fp = specs_fp(names, [s.shape for s in specs], [s.dtype for s in specs])
    data = storage_snapshot.encode_snapshot(a.get_weights(), names, step=a.step)
    snap = storage_snapshot.decode_snapshot(data, fingerprint=fp)
    b = KerasTrainer.from_spec("digits-cnn", digits.train.x, digits.train.y, seed=1)
    assert specs_fp(*zip(*b.tensor_specs())) == fp  # same model, same fingerprint
    b.set_weights(snap.arrays)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    other = KerasTrainer.from_spec("digits-mlp", digits.train.x[:64], digits.train.y[:64], seed=0)
    assert specs_fp(*zip(*other.tensor_specs())) != fp
