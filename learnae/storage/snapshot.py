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
``json`` under a size limit, accepts only the canonical header this module
writes, and checks every offset, shape, dtype and value, raising
:class:`~learnae.errors.InvalidSnapshotError` on anything wrong (never another
exception, whatever the bytes).

Because the header is canonical and every free field is bounded (the step has
at most 19 digits, an int8 scale is a float's ``repr``, ``learnae.metadata`` at
most :data:`MAX_METADATA_CHARS`), the tensor specs fix the size of every valid
snapshot up to a few kilobytes: :func:`snapshot_size_bound` is that bound, which
a peer passes to ``Store.get(..., max_bytes=)`` so a neighbour cannot make it
download more than a model's worth of bytes.

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
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from learnae.errors import InvalidSnapshotError
from learnae.storage.compress import dequantize_int8, from_float16, quantize_int8, to_float16

__all__ = ["ENCODINGS", "MAX_HEADER_BYTES", "MAX_METADATA_CHARS", "MAX_STEP", "Snapshot", "fingerprint",
           "encode_snapshot", "decode_snapshot", "snapshot_size_bound"]

ENCODINGS = ("float32", "float16", "int8")
MAX_HEADER_BYTES = 1024 * 1024  # ~10,000 tensors; a larger header is refused unread
MAX_METADATA_CHARS = 4096  # the free JSON object: room for metrics, not for padding a snapshot
MAX_STEP = 2**63 - 1  # what a ledger entry can carry
MAX_DIMS = 32  # numpy allows 64; no layer has more than a handful
_ST_DTYPE = {"float32": ("F32", "<f4"), "float16": ("F16", "<f2"), "int8": ("I8", "i1")}
_FORMAT = "learnae-snapshot/1"
_META_KEYS = frozenset({"format", "learnae.fingerprint", "learnae.encoding", "learnae.step", "learnae.names",
                        "learnae.dtypes", "learnae.metadata"})
_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_STEP_RE = re.compile(r"0|[1-9][0-9]{0,18}")
# The longest repr() of a finite float >= 0 ("2.2250738585072014e-308"): int8 scales are written with
# repr, and the decoder accepts nothing else, so this is the widest a scale can be in a valid header.
_WIDEST_SCALE = "9" * 23


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
            encoding, NaN/inf values, values out of float16 range, a step
            outside ``0..MAX_STEP`` or metadata over :data:`MAX_METADATA_CHARS`.
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
    meta_json = json.dumps(dict(metadata or {}), sort_keys=True, separators=(",", ":"))
    if len(meta_json) > MAX_METADATA_CHARS:
        raise ValueError(f"snapshot metadata is {len(meta_json)} characters of JSON, over {MAX_METADATA_CHARS}")
    step = int(step)
    if not 0 <= step <= MAX_STEP:
        raise ValueError(f"step {step} is outside 0..{MAX_STEP}")
    shapes = [tuple(a.shape) for a in arrays]
    meta = _metadata(names, shapes, [a.dtype.name for a in arrays], encoding, str(step),
                     [repr(s) for s in scales], meta_json)
    return _assemble(meta, names, shapes, st_dtype, [len(b) for b in blobs]) + b"".join(blobs)


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _metadata(names: Sequence[str], shapes: Sequence[tuple], dtypes: Sequence[str], encoding: str, step: str,
              scales: Sequence[str], meta_json: str) -> dict:
    """The ``__metadata__`` map, every value a string (as safetensors requires)."""
    meta = {
        "format": _FORMAT,
        "learnae.fingerprint": fingerprint(names, shapes, dtypes),
        "learnae.encoding": encoding,
        "learnae.step": step,
        "learnae.names": _compact(list(names)),
        "learnae.dtypes": _compact(list(dtypes)),
        "learnae.metadata": meta_json,
    }
    if encoding == "int8":
        meta["learnae.scales"] = _compact(list(scales))
    return meta


def _canonical_header(header: dict) -> bytes:
    """The only header bytes :func:`decode_snapshot` accepts for ``header``: sorted, compact, space-padded."""
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)


def _assemble(meta: dict, names: Sequence[str], shapes: Sequence[tuple], st_dtype: str,
              sizes: Sequence[int]) -> bytes:
    """Length prefix and header of a snapshot whose tensors have ``sizes`` bytes, in order."""
    header: dict = {"__metadata__": meta}
    offset = 0
    for name, shape, size in zip(names, shapes, sizes):
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = _canonical_header(header)
    return struct.pack("<Q", len(raw)) + raw


def snapshot_size_bound(specs: Sequence[Sequence], encoding: str | None = None) -> int:
    """The most bytes a valid snapshot of these tensors can have (length prefix and header included).

    Args:
        specs: ``[(name, shape, dtype), ...]`` in layer order, as given to
            ``PeerNode.join`` (their :func:`fingerprint` is the model's).
        encoding: one of :data:`ENCODINGS`, or None for any of them (the
            largest, since neighbours choose their own encoding).

    The header of a valid snapshot is canonical, so only its free fields vary:
    the step (at most 19 digits), the int8 scales (float reprs, at most 23
    characters) and ``learnae.metadata`` (at most :data:`MAX_METADATA_CHARS`
    characters of ASCII JSON, at most doubled by escaping). The bound takes the
    widest of each, so it exceeds the exact size by at most a few kilobytes.

    Example:
        >>> import numpy as np
        >>> specs = [("w", (2, 3), "float32")]
        >>> data = encode_snapshot([np.ones((2, 3), np.float32)], ["w"], step=5)
        >>> len(data) <= snapshot_size_bound(specs) < len(data) + 9000
        True
    """
    names = [str(s[0]) for s in specs]
    shapes = [tuple(int(d) for d in s[1]) for s in specs]
    dtypes = [np.dtype(s[2]).name for s in specs]
    best = 0
    for enc in ENCODINGS if encoding is None else (encoding,):
        if enc not in ENCODINGS:
            raise ValueError(f"unknown snapshot encoding {enc!r}; use one of {', '.join(ENCODINGS)}")
        st_dtype, np_dtype = _ST_DTYPE[enc]
        sizes = [math.prod(shape) * np.dtype(np_dtype).itemsize for shape in shapes]
        meta = _metadata(names, shapes, dtypes, enc, str(MAX_STEP), [_WIDEST_SCALE] * len(names), "")
        head = len(_assemble(meta, names, shapes, st_dtype, sizes))
        # "" stands for the metadata; each of its characters is at most 2 bytes once escaped,
        # and the padding to 8 bytes can grow by up to 7.
        best = max(best, head + 2 * MAX_METADATA_CHARS + 7 + sum(sizes))
    return best


def _bad(msg: str, reason: str = "invalid-snapshot") -> InvalidSnapshotError:
    return InvalidSnapshotError(f"snapshot rejected: {msg}", reason=reason)


def _json_list(meta: dict, key: str, n: int) -> list:
    """``meta[key]`` as a list of ``n`` items, written exactly as the encoder writes it."""
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):
        raise _bad(f"metadata {key} is not JSON", "bad-header") from None
    if not isinstance(value, list) or len(value) != n or not all(isinstance(v, str) for v in value):
        raise _bad(f"metadata {key} does not list {n} strings", "bad-header")
    if _compact(value) != meta[key]:
        raise _bad(f"metadata {key} is not in canonical form", "non-canonical")
    return value


def _uint_list(value, n_max: int) -> bool:
    """A JSON list of at most ``n_max`` non-negative integers (no bools, no floats) below 2**63."""
    return (isinstance(value, list) and len(value) <= n_max
            and all(type(v) is int and 0 <= v <= MAX_STEP for v in value))


def decode_snapshot(data: bytes, *, fingerprint: str | None = None) -> Snapshot:
    """Parse and validate snapshot bytes (from any peer: nothing is trusted).

    Args:
        data: safetensors bytes made by :func:`encode_snapshot`.
        fingerprint: the model fingerprint the weights must have (None: any).

    Raises:
        InvalidSnapshotError: and nothing else, whatever ``data`` holds: an
            oversize, malformed or non-canonical header, a wrong fingerprint,
            bad offsets, shapes or dtypes, or NaN/inf values (``reason`` says which).
    """
    try:
        return _decode(data, fingerprint)
    except InvalidSnapshotError:
        raise
    except Exception as exc:  # noqa: BLE001 - a check this decoder lacks must not crash the receiver
        # Never expected (the fuzz tests assert that no input gets here): it turns a decoder bug
        # into a rejection with its own reason, so it shows up in the counts instead of a traceback.
        raise _bad(f"undecodable ({type(exc).__name__}: {str(exc)[:80]})", "malformed") from None


def _decode(data, expected_fp: str | None) -> Snapshot:  # noqa: C901 - one check per rule
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _bad(f"expected bytes, got {type(data).__name__}", "truncated")
    mv = memoryview(data).cast("B")
    if len(mv) < 8:
        raise _bad("shorter than a safetensors header", "truncated")
    (hlen,) = struct.unpack("<Q", mv[:8])
    if hlen > MAX_HEADER_BYTES:
        raise _bad(f"header of {hlen} bytes is over the {MAX_HEADER_BYTES}-byte limit", "header-too-large")
    if 8 + hlen > len(mv):
        raise _bad("header runs past the end of the data", "truncated")
    raw_header = bytes(mv[8:8 + hlen])
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("header is not JSON", "bad-header") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise _bad("header has no __metadata__", "bad-header")
    try:
        canonical = _canonical_header(header) == raw_header
    except (ValueError, TypeError, RecursionError):
        canonical = False
    if not canonical:
        # one snapshot, one encoding: the size bound and the CID both rely on it
        raise _bad("header is not in canonical form (sorted keys, no whitespace, space padding)", "non-canonical")
    meta = header.pop("__metadata__")
    if meta.get("format") != _FORMAT:
        raise _bad(f"format {str(meta.get('format'))[:40]!r} is not {_FORMAT}", "bad-header")
    encoding = meta.get("learnae.encoding")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise _bad(f"unknown encoding {str(encoding)[:40]!r}", "bad-header")
    keys = _META_KEYS | {"learnae.scales"} if encoding == "int8" else _META_KEYS
    if meta.keys() != keys or not all(isinstance(v, str) for v in meta.values()):
        raise _bad(f"metadata must hold exactly the strings {sorted(keys)}", "bad-header")
    names = _json_list(meta, "learnae.names", len(header))
    dtypes = _json_list(meta, "learnae.dtypes", len(header))
    if sorted(names) != sorted(header):
        raise _bad("tensor names do not match the header", "bad-header")
    for t in dtypes:
        try:
            ok = np.dtype(t).name == t
        except Exception:  # noqa: BLE001 - numpy raises TypeError, ValueError or worse on odd strings
            ok = False
        if not ok:
            raise _bad(f"model dtype {t[:40]!r} is not a numpy dtype name", "bad-header")
    scales: list[float] = []
    if encoding == "int8":
        for text in _json_list(meta, "learnae.scales", len(names)):
            try:
                scale = float(text)
            except ValueError:
                raise _bad("an int8 scale is not a number", "bad-header") from None
            if not math.isfinite(scale) or scale < 0 or repr(scale) != text:
                raise _bad(f"int8 scale {text[:40]!r} is not a finite float >= 0 in repr form", "bad-header")
            scales.append(scale)
    step_text = meta["learnae.step"]
    if not _STEP_RE.fullmatch(step_text) or int(step_text) > MAX_STEP:
        raise _bad(f"step {step_text[:40]!r} is not an integer in 0..{MAX_STEP}", "bad-header")
    step = int(step_text)
    meta_json = meta["learnae.metadata"]
    if len(meta_json) > MAX_METADATA_CHARS:
        raise _bad(f"metadata has {len(meta_json)} characters, over {MAX_METADATA_CHARS}", "bad-header")
    try:
        extra = json.loads(meta_json)
        canonical = isinstance(extra, dict) and json.dumps(extra, sort_keys=True, separators=(",", ":")) == meta_json
    except (ValueError, TypeError, RecursionError):
        raise _bad("learnae.metadata is not a JSON object", "bad-header") from None
    if not canonical:
        raise _bad("learnae.metadata is not a JSON object in canonical form", "bad-header")

    st_dtype, np_dtype = _ST_DTYPE[encoding]
    itemsize = np.dtype(np_dtype).itemsize
    body, offset, arrays, shapes = mv[8 + hlen:], 0, [], []
    for i, name in enumerate(names):
        info = header[name]
        if (not isinstance(info, dict) or info.keys() != _TENSOR_KEYS or info["dtype"] != st_dtype
                or not _uint_list(info["shape"], MAX_DIMS) or not _uint_list(info["data_offsets"], 2)
                or len(info["data_offsets"]) != 2):
            raise _bad(f"tensor {name[:60]!r} has a bad dtype, shape or offsets", "bad-tensor")
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        if begin != offset or end - begin != math.prod(shape) * itemsize or end > len(body):
            raise _bad(f"tensor {name[:60]!r}: offsets do not match its shape or the data", "bad-tensor")
        raw = np.frombuffer(body[begin:end], dtype=np_dtype).reshape(shape)
        if encoding == "float32":
            arr = raw.astype(np.float32)
        elif encoding == "float16":
            arr = from_float16(raw)
        else:
            arr = dequantize_int8(raw, scales[i])
        if not np.all(np.isfinite(arr)):
            raise _bad(f"tensor {name[:60]!r} holds NaN or inf", "not-finite")
        arrays.append(arr)
        shapes.append(shape)
        offset = end
    if offset != len(body):
        raise _bad("trailing bytes after the last tensor", "bad-tensor")
    actual = fingerprint(names, shapes, dtypes)
    if meta["learnae.fingerprint"] != actual:
        raise _bad("stored fingerprint does not match the tensors", "bad-fingerprint")
    if expected_fp is not None and actual != expected_fp:
        raise _bad(f"model fingerprint {actual[:12]}... is not the expected {str(expected_fp)[:12]}...",
                   "wrong-fingerprint")
    return Snapshot(arrays, tuple(names), actual, encoding, step, extra)
