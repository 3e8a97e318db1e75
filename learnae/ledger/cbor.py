"""A strict, fast decoder for canonical DAG-CBOR, and fast CID helpers.

Encoding goes through the ``dag-cbor`` package (the reference canonical
encoder). Decoding does not: ``dag_cbor.decode`` costs ~1 ms per ledger entry
here (its input validation dominates), which alone would cap verification at
~1,000 entries/s. This module decodes the same data model (null, bool, int,
float64, text, bytes, list, map with text keys, CID links as tag 42) and
rejects everything that is not the *one* canonical encoding of its value, so
``decode(b)`` succeeding implies ``dag_cbor.encode(decode(b)) == b``
(tests/ledger check this differentially against the package).

Rules enforced (DAG-CBOR spec, "strictness"): shortest-form integer and length
arguments; no indefinite lengths; map keys are text, sorted by (length,
bytes), unique; floats are 64-bit and finite; the only tag is 42, holding a
byte string ``0x00 || binary CID``; no undefined, no simple values; no
trailing bytes. Nesting deeper than :data:`MAX_DEPTH` is refused.

Example:
    >>> import dag_cbor
    >>> decode(dag_cbor.encode({"a": [1, 2.5, None]}))
    {'a': [1, 2.5, None]}
"""

from __future__ import annotations

import hashlib
import math
import struct

from multiformats import CID, multibase, multicodec, multihash

__all__ = ["CborError", "decode", "decode_top_map", "cid_from_bytes", "cid_to_bytes", "dag_cbor_cid", "MAX_DEPTH"]

MAX_DEPTH = 32

_unpack_d = struct.Struct(">d").unpack_from
_unpack_h = struct.Struct(">H").unpack_from
_unpack_i = struct.Struct(">I").unpack_from
_unpack_q = struct.Struct(">Q").unpack_from


class CborError(ValueError):
    """Bytes that are not canonical DAG-CBOR; ``reason`` is "undecodable" or "non-canonical"."""

    def __init__(self, message: str, reason: str = "undecodable"):
        super().__init__(message)
        self.reason = reason


# -- CIDs ---------------------------------------------------------------------------------
# multiformats' public constructors validate every argument with typing_validation
# (~200 us per CID). For the CID shapes the ledger sees all the time we build equal
# instances directly, falling back to CID.decode otherwise.

_B32 = multibase.get("base32")
_SHA256 = multihash.get("sha2-256")
_FAST_PREFIXES = {}
for _name in ("dag-cbor", "raw", "dag-pb"):
    _codec = multicodec.get(_name)
    _FAST_PREFIXES[bytes((1, _codec.code, 0x12, 0x20))] = _codec  # all three codes are < 0x80
_DAG_CBOR_PREFIX = b"\x01\x71\x12\x20"
_DAG_CBOR = multicodec.get("dag-cbor")


def _make_fast(codec, digest: bytes) -> CID:
    # Equivalent to CID._new_instance minus its interning cache, whose key hashing costs
    # more than everything else here. Checked against CID.decode at import (below).
    cid = object.__new__(CID)
    cid._base, cid._version, cid._codec, cid._hashfun, cid._digest = _B32, 1, codec, _SHA256, digest
    return cid


def _self_test() -> bool:
    try:
        for prefix in _FAST_PREFIXES:
            raw = prefix + bytes(range(32))
            ref = CID.decode(raw).set(base="base32")
            fast = _make_fast(_FAST_PREFIXES[prefix], raw[2:])
            if fast != ref or bytes(fast) != raw or str(fast) != str(ref) or hash(fast) != hash(ref):
                return False
        return True
    except Exception:
        return False


_FAST = _self_test()  # a multiformats release with other internals falls back to the public API


def cid_from_bytes(raw: bytes) -> CID:
    """Parse a binary CID, fast for CIDv1 sha2-256 dag-cbor/raw/dag-pb.

    Raises:
        CborError: if ``raw`` is not a valid CID.
    """
    codec = _FAST_PREFIXES.get(raw[:4]) if _FAST else None
    if codec is not None:
        if len(raw) != 36:
            raise CborError("CID digest has the wrong length")
        return _make_fast(codec, raw[2:])
    try:
        cid = CID.decode(bytes(raw))
    except Exception as exc:  # multiformats raises assorted ValueError/KeyError subclasses
        raise CborError(f"invalid CID: {exc}") from None
    if bytes(cid) != raw:
        raise CborError("non-canonical CID bytes", "non-canonical")
    return cid


def cid_to_bytes(cid: CID) -> bytes:
    """The binary form of ``cid`` (``bytes(cid)``, without the varint round trips)."""
    if cid.version == 1:
        code = cid.codec.code
        if code < 0x80:
            return bytes((1, code)) + cid.digest
    return bytes(cid)


def dag_cbor_cid(data: bytes) -> CID:
    """The CIDv1 (dag-cbor, sha2-256, base32) of a block of DAG-CBOR bytes."""
    digest = hashlib.sha256(data).digest()
    if _FAST:
        return _make_fast(_DAG_CBOR, b"\x12\x20" + digest)
    return CID("base32", 1, "dag-cbor", ("sha2-256", digest))


# -- decoder ------------------------------------------------------------------------------

def _arg(data: bytes, pos: int, ai: int) -> tuple[int, int]:
    """Read the argument of a head whose additional info is ``ai``; return (value, new pos)."""
    if ai < 24:
        return ai, pos
    if ai == 24:
        if pos + 1 > len(data):
            raise CborError("truncated")
        v = data[pos]
        if v < 24:
            raise CborError("integer not in shortest form", "non-canonical")
        return v, pos + 1
    if ai == 25:
        if pos + 2 > len(data):
            raise CborError("truncated")
        v = _unpack_h(data, pos)[0]
        if v < 0x100:
            raise CborError("integer not in shortest form", "non-canonical")
        return v, pos + 2
    if ai == 26:
        if pos + 4 > len(data):
            raise CborError("truncated")
        v = _unpack_i(data, pos)[0]
        if v < 0x10000:
            raise CborError("integer not in shortest form", "non-canonical")
        return v, pos + 4
    if ai == 27:
        if pos + 8 > len(data):
            raise CborError("truncated")
        v = _unpack_q(data, pos)[0]
        if v < 0x100000000:
            raise CborError("integer not in shortest form", "non-canonical")
        return v, pos + 8
    if ai == 31:
        raise CborError("indefinite length", "non-canonical")
    raise CborError(f"reserved additional info {ai}")


def _item(data: bytes, pos: int, depth: int, size: int):
    """Decode one item at ``pos`` of ``data`` (``size == len(data)``); return (value, new pos)."""
    if pos >= size:
        raise CborError("truncated")
    head = data[pos]
    pos += 1
    major = head >> 5
    ai = head & 0x1F
    if major == 7:
        if head == 0xFB:
            if pos + 8 > size:
                raise CborError("truncated")
            v = _unpack_d(data, pos)[0]
            if not math.isfinite(v):
                raise CborError("NaN or infinite float")
            return v, pos + 8
        if head == 0xF6:
            return None, pos
        if head == 0xF5:
            return True, pos
        if head == 0xF4:
            return False, pos
        if head in (0xF9, 0xFA):
            raise CborError("float not 64-bit", "non-canonical")
        raise CborError(f"unsupported simple value 0x{head:02x}")
    if ai < 24:
        n = ai
    else:
        n, pos = _arg(data, pos, ai)
    if major == 0:
        return n, pos
    if major == 3:
        end = pos + n
        if end > size:
            raise CborError("truncated")
        try:
            return data[pos:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise CborError("text is not UTF-8") from None
    if major == 2:
        end = pos + n
        if end > size:
            raise CborError("truncated")
        return data[pos:end], end
    if major == 1:
        return -1 - n, pos
    if major == 6:
        if n != 42:
            raise CborError(f"unsupported tag {n}")
        if pos >= size or data[pos] >> 5 != 2:
            raise CborError("tag 42 does not hold a byte string")
        if data[pos] == 0x58 and pos + 2 <= size and data[pos + 1] >= 24:  # the usual 24-255 byte CID
            start = pos + 2
            pos = start + data[pos + 1]
            if pos > size:
                raise CborError("truncated")
            raw = data[start:pos]
        else:
            raw, pos = _item(data, pos, depth, size)
        if not raw or raw[0] != 0:
            raise CborError("CID link lacks the 0x00 multibase prefix")
        return cid_from_bytes(raw[1:]), pos
    if depth >= MAX_DEPTH:
        raise CborError("nested too deeply")
    if n > size - pos:  # every element takes at least one byte
        raise CborError("truncated")
    depth += 1
    if major == 5:
        return _map(data, pos, n, depth, size, None)
    if major == 4:
        out = []
        for _ in range(n):
            if pos >= size:
                raise CborError("truncated")
            h = data[pos]
            if h < 0x18:  # fast path: small unsigned int
                out.append(h)
                pos += 1
            else:
                v, pos = _item(data, pos, depth, size)
                out.append(v)
        return out, pos
    raise AssertionError("unreachable")  # pragma: no cover


_KEYS: dict[bytes, str] = {}  # encoded map key -> str; keys repeat in every entry


def _map(data: bytes, pos: int, n: int, depth: int, size: int, spans: dict | None):
    """Decode ``n`` key/value pairs at ``pos``; keys are text in canonical order.

    Keys and the most common values (small ints, short text) are decoded inline:
    a call per item is most of the cost of decoding an entry in Python.
    """
    d = {}
    last = b""
    for _ in range(n):
        kpos = pos
        if pos >= size:
            raise CborError("truncated")
        h = data[pos]
        if 0x60 <= h <= 0x77:
            pos += 1 + h - 0x60
            if pos > size:
                raise CborError("truncated")
            kraw = data[kpos:pos]
            k = _KEYS.get(kraw)
            if k is None:
                try:
                    k = kraw[1:].decode("utf-8")
                except UnicodeDecodeError:
                    raise CborError("text is not UTF-8") from None
                if len(_KEYS) < 4096:
                    _KEYS[kraw] = k
        elif h >> 5 == 3:
            k, pos = _item(data, pos, depth, size)
            kraw = data[kpos:pos]
        else:
            raise CborError("map key is not text")
        # canonical order: shorter encoded key first, then bytewise; no duplicates
        if len(kraw) < len(last) or (len(kraw) == len(last) and kraw <= last):
            raise CborError("map keys not in canonical order or duplicated", "non-canonical")
        last = kraw
        if pos >= size:
            raise CborError("truncated")
        h = data[pos]
        if h < 0x18:
            d[k] = h
            pos += 1
        elif 0x60 <= h <= 0x78:  # text up to 255 bytes
            if h == 0x78:
                if pos + 2 > size:
                    raise CborError("truncated")
                n = data[pos + 1]
                if n < 24:
                    raise CborError("integer not in shortest form", "non-canonical")
                start = pos + 2
            else:
                start, n = pos + 1, h - 0x60
            pos = start + n
            if pos > size:
                raise CborError("truncated")
            try:
                d[k] = data[start:pos].decode("utf-8")
            except UnicodeDecodeError:
                raise CborError("text is not UTF-8") from None
        elif h == 0xFB:
            if pos + 9 > size:
                raise CborError("truncated")
            v = _unpack_d(data, pos + 1)[0]
            if not math.isfinite(v):
                raise CborError("NaN or infinite float")
            d[k] = v
            pos += 9
        elif h == 0xD8 and data[pos + 1:pos + 3] == b"\x2a\x58" and pos + 3 < size and data[pos + 3] >= 24:
            start = pos + 4  # tag 42, byte string with a 1-byte length: a CID link
            pos = start + data[pos + 3]
            if pos > size:
                raise CborError("truncated")
            if data[start] != 0:
                raise CborError("CID link lacks the 0x00 multibase prefix")
            d[k] = cid_from_bytes(data[start + 1:pos])
        else:
            d[k], pos = _item(data, pos, depth, size)
        if spans is not None:
            spans[k] = (kpos, pos)
    return d, pos


def decode(data: bytes):
    """Decode one complete canonical DAG-CBOR item.

    Raises:
        CborError: with ``reason`` "undecodable" or "non-canonical".
    """
    value, pos = _item(data, 0, 0, len(data))
    if pos != len(data):
        raise CborError("trailing bytes after the item")
    return value


def decode_top_map(data: bytes) -> tuple[dict, dict[str, tuple[int, int]]]:
    """Decode a top-level map and also return each key's byte span ``(start, end)``.

    The span covers the encoded key and its value, so a caller can cut one entry
    out of the canonical bytes (how signing bytes are derived without re-encoding).

    Raises:
        CborError: as :func:`decode`, or if the item is not a map.
    """
    if not data:
        raise CborError("empty input")
    head = data[0]
    if head >> 5 != 5:
        raise CborError("top-level item is not a map")
    size = len(data)
    ai = head & 0x1F
    n, pos = (ai, 1) if ai < 24 else _arg(data, 1, ai)
    if n > size:
        raise CborError("truncated")
    spans: dict[str, tuple[int, int]] = {}
    out, pos = _map(data, pos, n, 1, size, spans)
    if pos != size:
        raise CborError("trailing bytes after the item")
    return out, spans
