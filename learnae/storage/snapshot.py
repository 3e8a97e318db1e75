"""The snapshot codec: model weights <-> safetensors bytes, Keras-independent.

A snapshot is a list of numpy arrays in layer order plus their names, stored
as a `safetensors <https://huggingface.co/docs/safetensors>`_ file (readable
by ``safetensors.numpy.load``) whose ``__metadata__`` carries:

* ``learnae.fingerprint``: :func:`fingerprint` of the model (names, shapes,
  dtypes), so peers never merge weights of different models;
* ``learnae.encoding``: ``float32``, ``float16`` or ``int8`` (per-tensor
  symmetric scale, :mod:`learnae.storage.compress`), with the scales in
  ``learnae.scales``;
* ``learnae.step``, the tensor order (``learnae.names``), the model dtypes and
  a free ``learnae.metadata`` JSON object.

The header is written here (sorted JSON, no whitespace, tensors in layer
order, padded to 8 bytes), not by the safetensors library, whose metadata
order is not guaranteed: identical weights must give identical bytes, hence
an identical CID. Decoding never unpickles anything; it parses the header with
``json`` under a size limit and checks every offset, shape, dtype and value,
raising :class:`~learnae.errors.InvalidSnapshotError` on anything wrong.

Example:
    >>> import numpy as np
    >>> w = [np.ones((2, 3), np.float32), np.zeros(3, np.float32)]
    >>> data = encode_snapshot(w, ["dense/kernel", "dense/bias"], encoding="float16", step=7)
    >>> snap = decode_snapshot(data, fingerprint=fingerprint(["dense/kernel", "dense/bias"],
    ...                                                      [(2, 3), (3,)], ["float32", "float32"]))
    >>> snap.step, snap.encoding, snap.arrays[0].dtype
    (7, 'float16', dtype('float32'))
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from learnae.errors import InvalidSnapshotError
from learnae.storage.compress import dequantize_int8, from_float16, quantize_int8, to_float16

__all__ = ["ENCODINGS", "MAX_HEADER_BYTES", "Snapshot", "fingerprint", "encode_snapshot", "decode_snapshot"]

ENCODINGS = ("float32", "float16", "int8")
MAX_HEADER_BYTES = 1024 * 1024  # ~10,000 tensors; a larger header is refused unread
_ST_DTYPE = {"float32": ("F32", "<f4"), "float16": ("F16", "<f2"), "int8": ("I8", "i1")}
_FORMAT = "learnae-snapshot/1"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded snapshot: float32 arrays in layer order and what describes them."""

    arrays: list[np.ndarray]
    names: tuple[str, ...]
    fingerprint: str
    encoding: str
    step: int
    metadata: dict = field(default_factory=dict)


def fingerprint(names: Sequence[str], shapes: Sequence[Sequence[int]], dtypes: Sequence[object]) -> str:
    """Hex sha256 identifying a model by its tensors' names, shapes and dtypes (in order).

    Example:
        >>> len(fingerprint(["w"], [(2, 2)], ["float32"]))
        64
    """
    if not len(names) == len(shapes) == len(dtypes):
        raise ValueError("names, shapes and dtypes must have the same length")
    spec = [[str(n), [int(d) for d in s], np.dtype(t).name] for n, s, t in zip(names, shapes, dtypes)]
    return hashlib.sha256(json.dumps(spec, separators=(",", ":")).encode()).hexdigest()


def encode_snapshot(arrays: Sequence[np.ndarray], names: Sequence[str], *, encoding: str = "float32",
                    step: int = 0, metadata: Mapping | None = None) -> bytes:
    """Serialize weights deterministically.

    Args:
        arrays: the model's tensors in layer order (finite numbers).
        names: one unique name per tensor (e.g. Keras weight paths).
        encoding: ``float32``, ``float16`` or ``int8``.
        step: the training step the weights belong to.
        metadata: extra JSON-serializable data (stored with sorted keys).

    Raises:
        ValueError: mismatched lengths, duplicate or reserved names, an unknown
            encoding, NaN/inf values, or values out of float16 range.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown snapshot encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    names = [str(n) for n in names]
    if len(arrays) != len(names):
        raise ValueError(f"{len(arrays)} arrays but {len(names)} names")
    if len(set(names)) != len(names) or "__metadata__" in names:
        raise ValueError("tensor names must be unique and not '__metadata__'")
    arrays = [np.asarray(a) for a in arrays]
    for name, a in zip(names, arrays):
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"tensor {name!r} holds NaN or inf; refusing to publish it")
    st_dtype, np_dtype = _ST_DTYPE[encoding]
    blobs, scales = [], []
    for a in arrays:
        if encoding == "float32":
            enc = a.astype(np.float32)
        elif encoding == "float16":
            enc = to_float16(a)
        else:
            enc, scale = quantize_int8(a)
            scales.append(float(scale))
        blobs.append(np.ascontiguousarray(enc, dtype=np_dtype).tobytes())
    meta = {
        "format": _FORMAT,
        "learnae.fingerprint": fingerprint(names, [a.shape for a in arrays], [a.dtype for a in arrays]),
        "learnae.encoding": encoding,
        "learnae.step": str(int(step)),
        "learnae.names": json.dumps(names, separators=(",", ":")),
        "learnae.dtypes": json.dumps([a.dtype.name for a in arrays], separators=(",", ":")),
        "learnae.metadata": json.dumps(dict(metadata or {}), sort_keys=True, separators=(",", ":")),
    }
    if encoding == "int8":
        meta["learnae.scales"] = json.dumps([repr(s) for s in scales], separators=(",", ":"))
    header: dict = {"__metadata__": meta}
    offset = 0
    for name, a, blob in zip(names, arrays, blobs):
        header[name] = {"dtype": st_dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def _bad(msg: str, reason: str = "invalid-snapshot") -> InvalidSnapshotError:
    return InvalidSnapshotError(f"snapshot rejected: {msg}", reason=reason)


def _json_list(meta: dict, key: str, n: int) -> list:
    try:
        value = json.loads(meta[key])
    except (KeyError, TypeError, ValueError):
        raise _bad(f"metadata {key} is missing or not JSON") from None
    if not isinstance(value, list) or len(value) != n:
        raise _bad(f"metadata {key} does not list {n} entries")
    return value


def decode_snapshot(data: bytes, *, fingerprint: str | None = None) -> Snapshot:  # noqa: C901 - one check per rule
    """Parse and validate snapshot bytes (from any peer: nothing is trusted).

    Args:
        data: safetensors bytes made by :func:`encode_snapshot`.
        fingerprint: the model fingerprint the weights must have (None: any).

    Raises:
        InvalidSnapshotError: oversize or malformed header, wrong fingerprint,
            bad offsets, shapes or dtypes, or NaN/inf values (``reason`` says which).
    """
    mv = memoryview(data)
    if len(mv) < 8:
        raise _bad("shorter than a safetensors header", "truncated")
    (hlen,) = struct.unpack("<Q", mv[:8])
    if hlen > MAX_HEADER_BYTES:
        raise _bad(f"header of {hlen} bytes is over the {MAX_HEADER_BYTES}-byte limit", "header-too-large")
    if 8 + hlen > len(mv):
        raise _bad("header runs past the end of the data", "truncated")
    try:
        header = json.loads(bytes(mv[8:8 + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _bad("header is not JSON", "bad-header") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise _bad("header has no __metadata__", "bad-header")
    meta = header.pop("__metadata__")
    if meta.get("format") != _FORMAT:
        raise _bad(f"format {meta.get('format')!r} is not {_FORMAT}", "bad-header")
    encoding = meta.get("learnae.encoding")
    if encoding not in ENCODINGS:
        raise _bad(f"unknown encoding {encoding!r}", "bad-header")
    names = _json_list(meta, "learnae.names", len(header))
    dtypes = _json_list(meta, "learnae.dtypes", len(header))
    if sorted(map(str, names)) != sorted(header):
        raise _bad("tensor names do not match the header", "bad-header")
    scales = _json_list(meta, "learnae.scales", len(names)) if encoding == "int8" else []
    try:
        step = int(meta.get("learnae.step", ""))
        extra = json.loads(meta.get("learnae.metadata", "{}"))
        scales = [float(s) for s in scales]
        for t in dtypes:
            np.dtype(t)
    except (TypeError, ValueError):
        raise _bad("step, metadata, scales or dtypes are malformed", "bad-header") from None
    if step < 0 or not isinstance(extra, dict) or any(not math.isfinite(s) or s < 0 for s in scales):
        raise _bad("negative step, non-object metadata or a bad int8 scale", "bad-header")

    st_dtype, np_dtype = _ST_DTYPE[encoding]
    body, offset, arrays, shapes = mv[8 + hlen:], 0, [], []
    for i, name in enumerate(names):
        info = header[name]
        try:
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
            if info["dtype"] != st_dtype or any(d < 0 for d in shape) or any(
                    not isinstance(d, int) for d in info["shape"]):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise _bad(f"tensor {name!r} has a bad dtype, shape or offsets", "bad-tensor") from None
        size = math.prod(shape) * np.dtype(np_dtype).itemsize
        if begin != offset or end - begin != size or end > len(body):
            raise _bad(f"tensor {name!r}: offsets do not match its shape or the data", "bad-tensor")
        raw = np.frombuffer(body[begin:end], dtype=np_dtype).reshape(shape)
        if encoding == "float32":
            arr = raw.astype(np.float32)
        elif encoding == "float16":
            arr = from_float16(raw)
        else:
            arr = dequantize_int8(raw, scales[i])
        if not np.all(np.isfinite(arr)):
            raise _bad(f"tensor {name!r} holds NaN or inf", "not-finite")
        arrays.append(arr)
        shapes.append(shape)
        offset = end
    if offset != len(body):
        raise _bad("trailing bytes after the last tensor", "bad-tensor")
    actual = globals()["fingerprint"](names, shapes, dtypes)
    if meta.get("learnae.fingerprint") != actual:
        raise _bad("stored fingerprint does not match the tensors", "bad-fingerprint")
    if fingerprint is not None and actual != fingerprint:
        raise _bad(f"model fingerprint {actual[:12]}... is not the expected {fingerprint[:12]}...",
                   "wrong-fingerprint")
    return Snapshot(arrays, tuple(map(str, names)), actual, encoding, step, extra)
