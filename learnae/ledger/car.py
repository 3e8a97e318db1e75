"""CARv1 files: a small reader and writer (https://ipld.io/specs/transport/car/carv1/).

Layout: ``varint(len(header)) || header`` where the header is the DAG-CBOR map
``{roots: [CID...], version: 1}``, then sections ``varint(len(cid) + len(block))
|| cid bytes || block``. This is the layout ``ipfs dag import`` and go-car read.

Example:
    >>> import io
    >>> from learnae.ledger.cbor import dag_cbor_cid
    >>> buf = io.BytesIO()
    >>> block = b"\\xa0"  # the empty DAG-CBOR map
    >>> write_car(buf, [dag_cbor_cid(block)], [(dag_cbor_cid(block), block)])
    1
    >>> roots, blocks = read_car(buf.getvalue())
    >>> list(blocks)[0][1]
    b'\\xa0'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import dag_cbor
from multiformats import CID

from learnae.errors import UserError
from learnae.ledger.cbor import CborError, cid_from_bytes, cid_to_bytes, decode

__all__ = ["CarFormatError", "write_car", "read_car", "encode_varint", "decode_varint", "MAX_SECTION_BYTES"]

MAX_SECTION_BYTES = 8 << 20  # larger than any block a peer makes (chunks are 256 KiB)


class CarFormatError(UserError):
    """A file given as a CAR is not a well-formed CARv1 file."""


def encode_varint(n: int) -> bytes:
    """Unsigned LEB128, as multiformats' unsigned-varint."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned varint at ``pos``; return (value, new pos). Raises ValueError."""
    value = shift = 0
    for i in range(pos, min(pos + 9, len(data))):
        b = data[i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if b == 0 and i > pos:
                raise ValueError("varint not minimal")
            return value, i + 1
        shift += 7
    raise ValueError("truncated or overlong varint")


def _cid_length(data: bytes, pos: int) -> int:
    """Length in bytes of the binary CID starting at ``pos``."""
    if data[pos:pos + 2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        return 34
    p = pos
    version, p = decode_varint(data, p)
    if version != 1:
        raise ValueError(f"unsupported CID version {version}")
    _, p = decode_varint(data, p)  # codec
    _, p = decode_varint(data, p)  # hash function
    size, p = decode_varint(data, p)
    return p + size - pos


def write_car(out: BinaryIO, roots: list[CID], blocks: Iterable[tuple[CID, bytes]]) -> int:
    """Write a CARv1 stream to ``out``; return the number of blocks written."""
    header = dag_cbor.encode({"roots": list(roots), "version": 1})
    out.write(encode_varint(len(header)) + header)
    n = 0
    for cid, data in blocks:
        raw = cid_to_bytes(cid)
        out.write(encode_varint(len(raw) + len(data)) + raw)
        out.write(data)
        n += 1
    return n


def read_car(data: bytes, *, name: str = "CAR file") -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse CARv1 bytes into ``(roots, iterator of (cid, block))``.

    Blocks are *not* checked against their CIDs here (see
    :func:`learnae.ledger.verify.block_cid_ok`): a caller that reports
    rather than stops at a bad block needs to see it.

    Raises:
        CarFormatError: the header or a section is malformed (the iterator
            raises it when it reaches a bad section).
    """
    try:
        hlen, pos = decode_varint(data, 0)
        if pos + hlen > len(data):
            raise ValueError("header runs past the end of the file")
        header = decode(data[pos:pos + hlen])
    except (ValueError, CborError) as exc:
        raise CarFormatError(f"{name}: not a CARv1 file ({exc}); export one with `learnae ledger export`") from None
    if not isinstance(header, dict) or header.get("version") != 1 or not isinstance(header.get("roots"), list) \
            or not all(isinstance(r, CID) for r in header["roots"]):
        raise CarFormatError(f"{name}: the CAR header is not {{roots: [CID...], version: 1}}")
    pos += hlen

    def sections(pos: int) -> Iterator[tuple[CID, bytes]]:
        while pos < len(data):
            try:
                length, start = decode_varint(data, pos)
                end = start + length
                if length > MAX_SECTION_BYTES or end > len(data):
                    raise ValueError("section runs past the end of the file")
                clen = _cid_length(data, start)
                if clen > length:
                    raise ValueError("CID longer than its section")
                cid = cid_from_bytes(data[start:start + clen])
            except (ValueError, CborError, IndexError) as exc:
                raise CarFormatError(f"{name}: malformed section at byte {pos} ({exc})") from None
            yield cid, data[start + clen:end]
            pos = end

    return header["roots"], sections(pos)
