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
from learnae.storage.snapshot import (
    ENCODINGS, MAX_METADATA_CHARS, MAX_STEP, decode_snapshot, encode_snapshot, fingerprint, snapshot_size_bound,
)
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


def _tamper(data: bytes, edit, *, canonical: bool = True) -> bytes:
    """``data`` with its header edited and written back (canonically, as the encoder would, by default)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    if canonical:
        raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
    else:
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


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _set_meta(key, value):
    return lambda h: h["__metadata__"].update({key: value})


def test_a_header_in_another_json_layout_is_rejected():
    """One snapshot, one encoding: the same header with whitespace or unsorted keys is refused."""
    data = _tamper(encode_snapshot(weights(), NAMES), lambda h: None, canonical=False)
    with pytest.raises(InvalidSnapshotError) as exc:
        decode_snapshot(data)
    assert exc.value.reason == "non-canonical"


@pytest.mark.parametrize("edit", [
    # names that are not strings but print like the header's keys: a KeyError before
    _set_meta("learnae.names", json.dumps([0, 1, 2])),
    lambda h: h.update({"0": h.pop("conv/kernel"), "1": h.pop("conv/bias"), "2": h.pop("dense/kernel")})
    or h["__metadata__"].update({"learnae.names": "[0,1,2]"}),
    # non-finite and huge numbers where integers belong: OverflowError before
    lambda h: h["conv/bias"].update(data_offsets=[0, float("inf")]),
    lambda h: h["conv/bias"].update(shape=[float("inf")]),
    lambda h: h["conv/bias"].update(shape=[2**70]),
    lambda h: h["conv/bias"].update(shape=[True] * 4),
    lambda h: h["conv/bias"].update(shape=[1] * 40),
    _set_meta("learnae.step", "Infinity"),
    _set_meta("learnae.step", "9" * 5000),
    _set_meta("learnae.step", "007"),
    _set_meta("learnae.step", str(MAX_STEP + 1)),
    _set_meta("learnae.step", 7),
    # JSON inside the metadata: deep, wrong type, non-canonical, too long
    _set_meta("learnae.metadata", "[" * 5000 + "]" * 5000),
    _set_meta("learnae.metadata", "[]"),
    _set_meta("learnae.metadata", '{"b": 1, "a": 2}'),
    _set_meta("learnae.metadata", json.dumps({"x": "y" * MAX_METADATA_CHARS})),
    _set_meta("learnae.names", "[" * 5000 + "]" * 5000),
    _set_meta("learnae.dtypes", _compact(["float32", {"a": 1}, "float32"])),
    _set_meta("learnae.dtypes", _compact(["float32", "V9999999999", "float32"])),
    _set_meta("learnae.dtypes", _compact(["float32", "f4", "float32"])),
    _set_meta("learnae.scales", "[]"),  # only int8 snapshots have scales
    _set_meta("learnae.padding", "x" * 100_000),  # no room for extra keys
    lambda h: h["conv/bias"].update(extra=1),
    lambda h: h.update({"conv/bias": [1, 2]}),
    lambda h: h.update({"__metadata__": {"format": "learnae-snapshot/1"}}),
])
def test_hostile_header_fields_are_rejected_not_crashes(edit):
    data = _tamper(encode_snapshot(weights(), NAMES), edit)
    with pytest.raises(InvalidSnapshotError) as exc:
        decode_snapshot(data)
    assert exc.value.reason not in ("malformed", "non-canonical")  # a real check said no


@pytest.mark.parametrize("text", ['["0.1",', '["nan","1.0","1.0"]', '["1e-1","1.0","1.0"]', '["-0.5","1.0","1.0"]'])
def test_int8_scales_must_be_finite_reprs(text):
    data = _tamper(encode_snapshot(weights(), NAMES, encoding="int8"), _set_meta("learnae.scales", text))
    with pytest.raises(InvalidSnapshotError) as exc:
        decode_snapshot(data)
    assert exc.value.reason == "bad-header"


def test_a_deeply_nested_header_is_rejected():
    raw = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InvalidSnapshotError) as exc:
        decode_snapshot(struct.pack("<Q", len(raw)) + raw)
    assert exc.value.reason == "bad-header"


def test_snapshots_are_bytes():
    with pytest.raises(InvalidSnapshotError):
        decode_snapshot("not bytes")  # type: ignore[arg-type]


def test_encoder_refuses_what_the_decoder_would():
    with pytest.raises(ValueError, match="metadata"):
        encode_snapshot(weights(), NAMES, metadata={"x": "y" * MAX_METADATA_CHARS})
    with pytest.raises(ValueError, match="step"):
        encode_snapshot(weights(), NAMES, step=-1)
    with pytest.raises(ValueError, match="step"):
        encode_snapshot(weights(), NAMES, step=MAX_STEP + 1)


names_st = st.lists(st.text(min_size=1, max_size=12).filter(lambda n: n != "__metadata__"), min_size=1, max_size=5,
                    unique=True)


@settings(max_examples=40, deadline=None)
@given(names=names_st, data=st.data(), encoding=st.sampled_from(ENCODINGS),
       step=st.integers(0, MAX_STEP), meta=st.dictionaries(st.text(max_size=8), st.text(max_size=30), max_size=4))
def test_size_bound_holds_for_every_valid_snapshot_of_the_specs(names, data, encoding, step, meta):
    shapes = [data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)) for _ in names]
    arrays = [np.full(shape, 0.5, np.float32) for shape in shapes]
    specs = [(n, s, "float32") for n, s in zip(names, shapes)]
    encoded = encode_snapshot(arrays, names, encoding=encoding, step=step, metadata=meta)
    bound = snapshot_size_bound(specs, encoding)
    assert len(encoded) <= bound <= snapshot_size_bound(specs)
    assert bound - len(encoded) <= 2 * MAX_METADATA_CHARS + 23 * len(names) + 32  # a bound, not a guess


def test_size_bound_is_near_the_size_and_float32_is_the_largest():
    ws = weights()
    specs = [(n, w.shape, "float32") for n, w in zip(NAMES, ws)]
    for encoding in ENCODINGS:
        # the widest valid snapshot: the largest step, and metadata of quotes (escaped twice)
        size = len(encode_snapshot(ws, NAMES, encoding=encoding, step=MAX_STEP,
                                   metadata={"k": '"' * ((MAX_METADATA_CHARS - 8) // 2)}))
        assert size <= snapshot_size_bound(specs, encoding) <= size + 100
    assert snapshot_size_bound(specs) == snapshot_size_bound(specs, "float32")
    big = [("w", (1000, 1000), "float32")]
    assert 4_000_000 < snapshot_size_bound(big) < 4_000_000 + 10_000
    assert 1_000_000 < snapshot_size_bound(big, "int8") < 1_000_000 + 10_000
    with pytest.raises(ValueError):
        snapshot_size_bound(specs, "bf16")

