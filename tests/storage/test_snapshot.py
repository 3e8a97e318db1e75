"""The snapshot codec: deterministic bytes, bounded error per encoding, hostile bytes rejected."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import load as st_load

from learnae.errors import InvalidSnapshotError
from learnae.storage.snapshot import decode_snapshot, encode_snapshot, fingerprint
from learnae.storage.unixfs import unixfs_cid

NAMES = ["conv/kernel", "conv/bias", "dense/kernel"]


def weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, 3, 1, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32),
            rng.normal(size=(16, 10)).astype(np.float32)]


def fp(ws) -> str:
    return fingerprint(NAMES, [w.shape for w in ws], [w.dtype for w in ws])


@pytest.mark.parametrize("encoding", ["float32", "float16", "int8"])
def test_roundtrip_and_determinism(encoding):
    ws = weights()
    data = encode_snapshot(ws, NAMES, encoding=encoding, step=42, metadata={"loss": 0.5, "a": [1]})
    again = encode_snapshot([w.copy() for w in ws], list(NAMES), encoding=encoding, step=42,
                            metadata={"a": [1], "loss": 0.5})
    assert data == again and unixfs_cid(data) == unixfs_cid(again)
    snap = decode_snapshot(data, fingerprint=fp(ws))
    assert snap.names == tuple(NAMES) and snap.step == 42 and snap.encoding == encoding
    assert snap.metadata == {"loss": 0.5, "a": [1]}
    for got, want in zip(snap.arrays, ws):
        assert got.dtype == np.float32 and got.shape == want.shape
        if encoding == "float32":
            assert np.array_equal(got, want)
        elif encoding == "float16":
            assert np.all(np.abs(got - want) <= 2**-11 * np.abs(want) + 2**-24)
        else:
            scale = np.abs(want).max() / 127
            assert np.all(np.abs(got - want) <= scale / 2 + 1e-6)
    assert set(st_load(data)) == set(NAMES)  # a standard safetensors file


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=5),
                  elements=st.floats(-1e4, 1e4, width=32)))
def test_float32_roundtrip_is_exact(a):
    snap = decode_snapshot(encode_snapshot([a], ["w"]))
    assert np.array_equal(snap.arrays[0], a)


def test_wrong_fingerprint_rejected():
    data = encode_snapshot(weights(), NAMES)
    other = fingerprint(NAMES, [(1,), (4,), (16, 10)], ["float32"] * 3)
    with pytest.raises(InvalidSnapshotError, match="fingerprint") as exc:
        decode_snapshot(data, fingerprint=other)
    assert exc.value.reason == "wrong-fingerprint"


def _tamper(data: bytes, edit) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


def test_nan_and_inf_rejected_on_both_sides():
    ws = weights()
    ws[1][2] = np.nan
    with pytest.raises(ValueError):
        encode_snapshot(ws, NAMES)
    good = encode_snapshot(weights(), NAMES)
    (n,) = struct.unpack("<Q", good[:8])
    body = bytearray(good)
    body[8 + n:8 + n + 4] = np.array([np.inf], np.float32).tobytes()
    with pytest.raises(InvalidSnapshotError) as exc:
        decode_snapshot(bytes(body))
    assert exc.value.reason == "not-finite"


@pytest.mark.parametrize("edit, reason", [
    (lambda h: h["conv/bias"].update(shape=[5]), "bad-tensor"),
    (lambda h: h["conv/bias"].update(dtype="F64"), "bad-tensor"),
    (lambda h: h["__metadata__"].update({"learnae.fingerprint": "0" * 64}), "bad-fingerprint"),
    (lambda h: h["__metadata__"].update({"learnae.encoding": "pickle"}), "bad-header"),
    (lambda h: h.pop("__metadata__"), "bad-header"),
    (lambda h: h["conv/bias"].update(data_offsets=[0, 16]), "bad-tensor"),
])
def test_tampered_headers_rejected(edit, reason):
    data = _tamper(encode_snapshot(weights(), NAMES), edit)
    with pytest.raises(InvalidSnapshotError) as exc:
        decode_snapshot(data)
    assert exc.value.reason == reason


@pytest.mark.parametrize("data, reason", [
    (b"", "truncated"),
    (struct.pack("<Q", 2**40) + b"{}", "header-too-large"),
    (struct.pack("<Q", 100) + b"{}", "truncated"),
    (struct.pack("<Q", 8) + b"not json", "bad-header"),
    (b"\x80\x04\x95" + b"\0" * 40, "header-too-large"),  # a pickle is not a snapshot
])
def test_garbage_rejected(data, reason):
    with pytest.raises(InvalidSnapshotError) as exc:
        decode_snapshot(data)
    assert exc.value.reason == reason


def test_trailing_bytes_rejected():
    with pytest.raises(InvalidSnapshotError):
        decode_snapshot(encode_snapshot(weights(), NAMES) + b"x")


def test_bad_encoding_and_names_refused_when_encoding():
    with pytest.raises(ValueError):
        encode_snapshot(weights(), NAMES, encoding="bf16")
    with pytest.raises(ValueError):
        encode_snapshot(weights(), ["a", "a", "b"])
