"""dag-pb and UnixFS ``Data`` protobufs, encoded and decoded by hand.

The two messages are tiny (a handful of fields), so a 100-line codec beats a
protobuf dependency, and it lets us match Kubo's bytes exactly: links before
data, every link carrying its ``Hash``, an empty ``Name`` and its ``Tsize``;
``blocksizes`` unpacked (proto2). Decoding is strict and bounded: anything
malformed raises :class:`~learnae.errors.InvalidBlockError`, never another
exception, because these bytes come from the network.

Example:
    >>> from learnae.storage.cid import cid_of
    >>> leaf = cid_of(b"x")
    >>> node = encode_node([Link(leaf, 1)], encode_unixfs(FILE, filesize=1, blocksizes=[1]))
    >>> decode_node(node).links[0].cid == leaf
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from multiformats import CID

from learnae.errors import InvalidBlockError
from learnae.storage.cid import parse_cid

__all__ = [
    "RAW_TYPE", "DIRECTORY", "FILE", "METADATA", "SYMLINK", "HAMT",
    "Link", "Node", "UnixFSData",
    "encode_node", "decode_node", "encode_unixfs", "decode_unixfs",
    "varint", "read_varint",
]

# UnixFS Data.DataType
RAW_TYPE, DIRECTORY, FILE, METADATA, SYMLINK, HAMT = 0, 1, 2, 3, 4, 5


def varint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats use it."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; return (value, next position)."""
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end or shift > 63:
            raise InvalidBlockError("truncated or overlong varint", reason="bad-protobuf")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes | memoryview):
    """Yield (field number, wire type, value) of a protobuf message; value is int or memoryview."""
    mv = memoryview(buf)
    pos, end = 0, len(mv)
    while pos < end:
        key, pos = read_varint(mv, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = read_varint(mv, pos)
            yield num, wt, val
        elif wt == 2:
            n, pos = read_varint(mv, pos)
            if pos + n > end:
                raise InvalidBlockError("length-delimited field runs past the end", reason="bad-protobuf")
            yield num, wt, mv[pos:pos + n]
            pos += n
        elif wt == 1 and pos + 8 <= end:
            yield num, wt, int.from_bytes(mv[pos:pos + 8], "little")
            pos += 8
        elif wt == 5 and pos + 4 <= end:
            yield num, wt, int.from_bytes(mv[pos:pos + 4], "little")
            pos += 4
        else:
            raise InvalidBlockError(f"unsupported protobuf wire type {wt}", reason="bad-protobuf")


def _bytes_field(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def _int_field(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


@dataclass(frozen=True, slots=True)
class Link:
    """A dag-pb link: child CID and the total serialized size of its sub-DAG."""

    cid: CID
    tsize_bytes: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded dag-pb node."""

    links: tuple[Link, ...]
    data: bytes | None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """The UnixFS ``Data`` message inside a dag-pb node (file-related fields)."""

    type: int
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default=())


def encode_node(links: list[Link], data: bytes | None) -> bytes:
    """Serialize a dag-pb PBNode the way Kubo does (links first, then data)."""
    parts = []
    for link in links:
        body = (_bytes_field(1, bytes(link.cid)) + _bytes_field(2, link.name.encode("utf-8"))
                + _int_field(3, link.tsize_bytes))
        parts.append(_bytes_field(2, body))
    if data is not None:
        parts.append(_bytes_field(1, data))
    return b"".join(parts)


def decode_node(block: bytes) -> Node:
    """Parse a dag-pb PBNode.

    Raises:
        InvalidBlockError: malformed protobuf or link CID.
    """
    links: list[Link] = []
    data: bytes | None = None
    for num, wt, val in _fields(block):
        if num == 2 and wt == 2:
            h, name, tsize = None, "", 0
            for lnum, lwt, lval in _fields(val):
                if lnum == 1 and lwt == 2:
                    h = bytes(lval)
                elif lnum == 2 and lwt == 2:
                    name = bytes(lval).decode("utf-8", "replace")
                elif lnum == 3 and lwt == 0:
                    tsize = lval
            if h is None:
                raise InvalidBlockError("dag-pb link without a hash", reason="bad-dag-pb")
            try:
                cid = parse_cid(h)
            except Exception:
                raise InvalidBlockError("dag-pb link hash is not a CID", reason="bad-dag-pb") from None
            links.append(Link(cid, tsize, name))
        elif num == 1 and wt == 2:
            data = bytes(val)
        else:
            raise InvalidBlockError(f"unexpected dag-pb field {num}", reason="bad-dag-pb")
    return Node(tuple(links), data)


def encode_unixfs(type_: int, *, data: bytes = b"", filesize: int | None = None,
                  blocksizes: list[int] | tuple[int, ...] = ()) -> bytes:
    """Serialize a UnixFS Data message; empty ``data`` is omitted, as Go does."""
    out = _int_field(1, type_)
    if data:
        out += _bytes_field(2, data)
    if filesize is not None:
        out += _int_field(3, filesize)
    for size in blocksizes:
        out += _int_field(4, size)
    return out


def decode_unixfs(raw: bytes) -> UnixFSData:
    """Parse a UnixFS Data message (only the file fields matter to us).

    Raises:
        InvalidBlockError: malformed protobuf or a missing type.
    """
    type_, data, filesize, sizes = None, b"", None, []
    for num, wt, val in _fields(raw):
        if num == 1 and wt == 0:
            type_ = val
        elif num == 2 and wt == 2:
            data = bytes(val)
        elif num == 3 and wt == 0:
            filesize = val
        elif num == 4 and wt == 0:
            sizes.append(val)
        elif num == 4 and wt == 2:  # packed encoding, accepted on read
            pos, mv = 0, val
            while pos < len(mv):
                v, pos = read_varint(mv, pos)
                sizes.append(v)
    if type_ is None:
        raise InvalidBlockError("UnixFS data without a type", reason="bad-unixfs")
    return UnixFSData(type_, data, filesize, tuple(sizes))
