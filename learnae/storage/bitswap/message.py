"""Bitswap 1.2.0 messages (``bitswap.proto``), encoded and decoded by hand.

::

    Message { Wantlist wantlist = 1; repeated bytes blocks = 2;        // 1.0.0
              repeated Block payload = 3;                              // 1.1.0+
              repeated BlockPresence blockPresences = 4; int32 pendingBytes = 5; }
    Wantlist { repeated Entry entries = 1; bool full = 2; }
    Entry { bytes block = 1; int32 priority = 2; bool cancel = 3;
            WantType wantType = 4 (Block = 0, Have = 1); bool sendDontHave = 5; }
    Block { bytes prefix = 1; bytes data = 2; }   // prefix: CID version, codec, mh type, mh length
    BlockPresence { bytes cid = 1; BlockPresenceType type = 2 (Have = 0, DontHave = 1); }

Decoding is strict and never raises anything but
:class:`~learnae.errors.InvalidBlockError` (the bytes come from the network).
Received blocks are returned with the CID computed from their own bytes, so a
block can only ever match the want it really answers.

Example:
    >>> from learnae.storage.cid import cid_of
    >>> c = cid_of(b"hi")
    >>> msg = decode_message(encode_message(blocks=[(c, b"hi")]))
    >>> msg.blocks[0][0] == c
    True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from multiformats import CID

from learnae.errors import InvalidBlockError
from learnae.storage.cid import DAG_PB, make_cid, parse_cid
from learnae.storage.dagpb import _bytes_field, _fields, _int_field, read_varint, varint

__all__ = ["WANT_BLOCK", "WANT_HAVE", "HAVE", "DONT_HAVE", "WantEntry", "Message",
           "encode_message", "decode_message", "cid_prefix", "block_cid"]

WANT_BLOCK, WANT_HAVE = 0, 1
HAVE, DONT_HAVE = 0, 1
_SHA2_256 = 0x12


@dataclass(frozen=True, slots=True)
class WantEntry:
    cid: CID
    want_type: int = WANT_BLOCK
    cancel: bool = False
    send_dont_have: bool = False
    priority: int = 1


@dataclass(slots=True)
class Message:
    wants: list[WantEntry] = field(default_factory=list)
    full: bool = False
    blocks: list[tuple[CID, bytes]] = field(default_factory=list)
    presences: list[tuple[CID, int]] = field(default_factory=list)
    rejected: int = 0  # blocks dropped: unsupported hash or bad prefix
    # with decode_message(verify=False): (prefix, data) pairs, not yet hashed
    raw_blocks: list[tuple[bytes, memoryview]] = field(default_factory=list)


def cid_prefix(cid: CID) -> bytes:
    """The CID prefix a 1.1.0+ payload block carries."""
    return varint(cid.version) + varint(cid.codec.code) + varint(cid.hashfun.code) + varint(len(cid.raw_digest))


def encode_message(*, wants=(), full: bool = False, blocks=(), presences=(), v100: bool = False,
                   length_prefix: bool = False) -> bytes:
    """Serialize a message. ``blocks`` are (cid, data); ``presences`` (cid, HAVE|DONT_HAVE).

    With ``v100`` blocks go in the 1.0.0 ``blocks`` field and presences are dropped.
    With ``length_prefix`` the varint frame length comes first (ready for the wire).
    Block data is copied once, by the final join.
    """
    parts: list[bytes] = []
    if wants or full:
        wl = b"".join(
            _bytes_field(1, _bytes_field(1, bytes(w.cid)) + _int_field(2, w.priority)
                         + (_int_field(3, 1) if w.cancel else b"")
                         + (_int_field(4, w.want_type) if w.want_type else b"")
                         + (_int_field(5, 1) if w.send_dont_have else b""))
            for w in wants)
        if full:
            wl += _int_field(2, 1)
        parts.append(_bytes_field(1, wl))
    for cid, data in blocks:
        if v100:
            parts += [varint(2 << 3 | 2) + varint(len(data)), data]
        else:
            head = _bytes_field(1, cid_prefix(cid)) + varint(2 << 3 | 2) + varint(len(data))
            parts += [varint(3 << 3 | 2) + varint(len(head) + len(data)) + head, data]
    if not v100:
        for cid, kind in presences:
            parts.append(_bytes_field(4, _bytes_field(1, bytes(cid)) + (_int_field(2, kind) if kind else b"")))
    if length_prefix:
        parts.insert(0, varint(sum(len(p) for p in parts)))
    return b"".join(parts)


_V0_PREFIX = b"\x00\x70\x12\x20"


def block_cid(prefix: bytes, data: bytes | memoryview) -> CID | None:
    """The CID of a received block, computed from its bytes (None: unsupported prefix)."""
    version, pos = read_varint(prefix, 0)
    codec, pos = read_varint(prefix, pos)
    mh_type, pos = read_varint(prefix, pos)
    mh_len, pos = read_varint(prefix, pos)
    if mh_type != _SHA2_256 or mh_len != 32 or version not in (0, 1):
        return None
    if version == 0 and codec != DAG_PB:
        return None
    try:
        return make_cid(codec, hashlib.sha256(data).digest(), version=version)
    except Exception:  # unknown codec code
        return None


def decode_message(buf: bytes | memoryview, *, verify: bool = True) -> Message:
    """Parse one message (without its length prefix).

    With ``verify`` every block is hashed into ``blocks`` as (cid, bytes); without
    it blocks stay in ``raw_blocks`` as (prefix, memoryview) for :func:`block_cid`
    (so the caller can hash them off the event loop).

    Raises:
        InvalidBlockError: malformed protobuf or CIDs.
    """
    msg = Message()
    try:
        for num, wt, val in _fields(buf):
            if num == 1 and wt == 2:
                for enum, ewt, eval_ in _fields(val):
                    if enum == 1 and ewt == 2:
                        msg.wants.append(_entry(eval_))
                    elif enum == 2 and ewt == 0:
                        msg.full = bool(eval_)
            elif num == 2 and wt == 2:  # 1.0.0 block: CIDv0 of its bytes
                msg.raw_blocks.append((_V0_PREFIX, val))
            elif num == 3 and wt == 2:
                prefix, data = b"", memoryview(b"")
                for bnum, bwt, bval in _fields(val):
                    if bnum == 1 and bwt == 2:
                        prefix = bytes(bval)
                    elif bnum == 2 and bwt == 2:
                        data = bval
                msg.raw_blocks.append((prefix, data))
            elif num == 4 and wt == 2:
                cid_b, kind = b"", HAVE
                for pnum, pwt, pval in _fields(val):
                    if pnum == 1 and pwt == 2:
                        cid_b = bytes(pval)
                    elif pnum == 2 and pwt == 0:
                        kind = pval
                msg.presences.append((parse_cid(cid_b), kind))
        if verify:
            for prefix, data in msg.raw_blocks:
                cid = block_cid(prefix, data)
                if cid is None:
                    msg.rejected += 1
                else:
                    msg.blocks.append((cid, bytes(data)))
            msg.raw_blocks = []
    except InvalidBlockError:
        raise
    except Exception as exc:  # bad CID bytes and the like
        raise InvalidBlockError(f"malformed bitswap message: {exc}", reason="bad-bitswap-message") from None
    return msg


def _entry(buf) -> WantEntry:
    cid, prio, cancel, wtype, sdh = None, 1, False, WANT_BLOCK, False
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 2:
            cid = parse_cid(bytes(val))
        elif num == 2 and wt == 0:
            prio = val
        elif num == 3 and wt == 0:
            cancel = bool(val)
        elif num == 4 and wt == 0:
            wtype = val
        elif num == 5 and wt == 0:
            sdh = bool(val)
    if cid is None:
        raise InvalidBlockError("want entry without a CID", reason="bad-bitswap-message")
    return WantEntry(cid, wtype, cancel, sdh, prio)
