"""CID helpers: build, parse and check content identifiers.

CIDs are :class:`multiformats.CID` objects everywhere in learnae. CIDv1 values
are always shown in base32 (``bafy...``/``bafk...``) as Kubo prints them,
CIDv0 values in base58btc (``Qm...``).

Only sha2-256 multihashes are accepted for data (what Kubo and learnae
produce); anything else is rejected as an invalid block rather than trusted.

Example:
    >>> cid = cid_of(b"hello")
    >>> str(cid)
    'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
    >>> verify_block(cid, b"hello")
"""

from __future__ import annotations

import base64
import hashlib

from multiformats import CID, multibase, multicodec, multihash

from learnae.errors import InvalidBlockError, UserError

__all__ = [
    "CID",
    "MAX_BLOCK_BYTES",
    "RAW",
    "DAG_PB",
    "DAG_CBOR",
    "InvalidCidError",
    "cid_of",
    "make_cid",
    "normalize",
    "parse_cid",
    "block_key",
    "verify_block",
    "digest_of",
]

# Kubo and go-bitswap accept blocks up to 2 MiB; so do we, and nothing larger.
MAX_BLOCK_BYTES = 2 * 1024 * 1024

RAW = 0x55
DAG_PB = 0x70
DAG_CBOR = 0x71
_SHA2_256 = 0x12
_SHA2_256_PREFIX = b"\x12\x20"  # multihash code + digest length


class InvalidCidError(UserError):
    """A CID given by the user cannot be parsed."""


# multiformats validates every argument of CID() at run time (~0.3 ms a call here);
# blocks are made and received by the thousand, so the common cases are built from
# pre-validated parts through the library's own instance constructor.
_BASE32, _BASE58 = multibase.get("base32"), multibase.get("base58btc")
_SHA256_FN = multihash.get("sha2-256")
_CODECS = {code: multicodec.get(code=code) for code in (0x55, 0x70, 0x71)}
_FAST = hasattr(CID, "_new_instance")


def make_cid(codec: str | int, digest: bytes, *, version: int = 1) -> CID:
    """A CID from a codec and a raw sha2-256 digest (32 bytes)."""
    mh = _SHA2_256_PREFIX + bytes(digest)
    code = codec if isinstance(codec, int) else {"raw": RAW, "dag-pb": DAG_PB, "dag-cbor": DAG_CBOR}.get(codec)
    if version == 0:
        if _FAST and code == DAG_PB and len(mh) == 34:
            return CID._new_instance(CID, _BASE58, 0, _CODECS[DAG_PB], _SHA256_FN, mh)
        return CID("base58btc", 0, "dag-pb", mh)
    if _FAST and code in _CODECS and len(mh) == 34:
        return CID._new_instance(CID, _BASE32, 1, _CODECS[code], _SHA256_FN, mh)
    return CID("base32", 1, codec, mh)


def cid_of(data: bytes, codec: str | int = "raw", *, version: int = 1) -> CID:
    """The sha2-256 CID of ``data`` with ``codec`` (``raw``, ``dag-pb``, ``dag-cbor``)."""
    return make_cid(codec, hashlib.sha256(data).digest(), version=version)


def normalize(cid: CID) -> CID:
    """The same CID, displayed as Kubo displays it (base32 for v1)."""
    if cid.version == 1 and cid.base.name != "base32":
        return cid.set(base="base32")
    return cid


def parse_cid(value: str | bytes | CID) -> CID:
    """Parse a CID from its string or binary form.

    Raises:
        InvalidCidError: the value is not a CID (the message names it).
    """
    if isinstance(value, CID):
        return normalize(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) == 34 and raw[:2] == _SHA2_256_PREFIX:
            return make_cid(DAG_PB, raw[2:], version=0)
        if len(raw) == 36 and raw[0] == 1 and raw[1] in _CODECS and raw[2:4] == _SHA2_256_PREFIX:
            return make_cid(raw[1], raw[4:])
    try:
        return normalize(CID.decode(value))
    except Exception as exc:  # multiformats raises a zoo of ValueError/KeyError subclasses
        shown = value if isinstance(value, str) else bytes(value).hex()
        raise InvalidCidError(
            f"{shown!r} is not a CID; pass one like bafkrei... or Qm... ({exc})"
        ) from None


def block_key(cid: CID) -> str:
    """A file-name-safe, version-independent key for a block: base32 CIDv1."""
    raw = bytes(cid)
    if cid.version == 0:
        raw = b"\x01\x70" + raw
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def verify_block(cid: CID, data: bytes) -> None:
    """Check that ``data`` is the block ``cid`` names and is within the size limit.

    Raises:
        InvalidBlockError: unsupported hash, wrong digest, or over :data:`MAX_BLOCK_BYTES`.
    """
    if len(data) > MAX_BLOCK_BYTES:
        raise InvalidBlockError(
            f"block {cid} has {len(data)} bytes, over the {MAX_BLOCK_BYTES}-byte limit",
            reason="block-too-large",
        )
    mh = cid.digest
    if mh[:2] != _SHA2_256_PREFIX or len(mh) != 34:
        raise InvalidBlockError(
            f"block {cid} uses hash {cid.hashfun.name}; only sha2-256 is accepted",
            reason="unsupported-hash",
        )
    if hashlib.sha256(data).digest() != mh[2:]:
        raise InvalidBlockError(f"block data does not hash to {cid}", reason="hash-mismatch")


def digest_of(cid: CID) -> bytes:
    """The raw 32-byte sha2-256 digest inside ``cid``."""
    return bytes(cid.digest[2:]) if cid.digest[:2] == _SHA2_256_PREFIX else bytes(cid.raw_digest)

