"""Ledger entries: the signed, content-addressed records every peer appends to its chain.

An entry is a DAG-CBOR map (docs/architecture.md, "Wire formats")::

    {v: 1, swarm, author, seq, prev: CID|null, ts: unix ms, kind, body, sig}

``sig`` is the author's Ed25519 signature over the canonical DAG-CBOR of the
same map without ``sig`` (:meth:`Entry.signing_bytes`); ``author`` is the
libp2p peer ID of that key. The entry's CID is the CIDv1 (dag-cbor, sha2-256)
of its full canonical bytes. Links (``prev``, ``parents[].entry``,
``body.model``, ``body.shard``) are real IPLD links, so IPFS tools can walk them.

Example:
    >>> from learnae.identity import Identity
    >>> me = Identity.generate()
    >>> e = sign_entry(me, swarm="s1", seq=0, prev=None, kind="leave", body={"reason": "done"})
    >>> decode_entry(e.to_bytes()) == e
    True

:func:`decode_entry` is the one door for bytes from anywhere (gossip, disk, CAR
files): every rejection is an :class:`~learnae.errors.InvalidEntryError` whose
``reason`` is one of :data:`REASONS`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import dag_cbor
from multiformats import CID

from learnae.errors import InvalidEntryError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from learnae.identity import Identity, public_key_from_peer_id
from learnae.ledger.cbor import CborError, dag_cbor_cid, decode_top_map
from learnae.ledger.schema import FIELDS, KINDS, VERSION, check_body, is_entry_cid, normalize_body

__all__ = [
    "MAX_ENTRY_BYTES",
    "MAX_FUTURE_MS",
    "KINDS",
    "VERSION",
    "REASONS",
    "Entry",
    "sign_entry",
    "decode_entry",
    "now_ms",
]

MAX_ENTRY_BYTES = 65536
MAX_FUTURE_MS = 10 * 60 * 1000  # clock skew we tolerate before calling a timestamp absurd
MAX_SWARM_CHARS = 128
REASONS = (
    "oversize", "undecodable", "non-canonical", "bad-version", "bad-schema",
    "bad-author", "bad-signature", "future-timestamp",
)
_SIG_KEY = b"\x63sig\x58\x40"  # text "sig", then the head of a 64-byte byte string


def now_ms() -> int:
    """The current wall-clock time in unix milliseconds."""
    return time.time_ns() // 1_000_000


@functools.lru_cache(maxsize=4096)
def _author_key(peer_id: str) -> Ed25519PublicKey | None:
    """The verifying key behind a peer ID, or None if it is not an Ed25519 peer ID.

    Same check as :func:`learnae.identity.verify_signature`, with the base58 parse
    and key load cached per author (they cost as much as a third of a verify).
    """
    try:
        return Ed25519PublicKey.from_public_bytes(public_key_from_peer_id(peer_id))
    except ValueError:
        return None


def _verify(peer_id: str, data: bytes, sig: bytes) -> bool:
    key = _author_key(peer_id)
    if key is None:
        return False
    try:
        key.verify(sig, data)
    except InvalidSignature:
        return False
    return True


def _reject(reason: str, message: str) -> InvalidEntryError:
    return InvalidEntryError(f"{reason}: {message}", reason=reason)


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    """One signed ledger entry (a value; equal entries have equal bytes and CID).

    Attributes:
        v: schema version (1).
        swarm: swarm id the entry belongs to.
        author: libp2p peer ID of the signing key.
        seq: 0-based position in the author's chain.
        prev: CID of the author's previous entry, None for ``seq == 0``.
        ts: creation time in unix milliseconds (the author's clock).
        kind: one of :data:`KINDS`.
        body: the kind-specific map (see :mod:`learnae.ledger.schema`); treat as read-only.
        sig: 64-byte Ed25519 signature over :meth:`signing_bytes`.
    """

    v: int
    swarm: str
    author: str
    seq: int
    prev: CID | None
    ts: int
    kind: str
    body: dict
    sig: bytes
    _bytes: bytes | None = field(default=None, repr=False, compare=False, kw_only=True)
    _cid: CID | None = field(default=None, repr=False, compare=False, kw_only=True)
    _verified: bool = field(default=False, repr=False, compare=False, kw_only=True)

    @property
    def verified(self) -> bool:
        """True if this object was signed here or decoded with ``verify=True``."""
        return self._verified

    def _signing_dict(self) -> dict:
        return {"v": self.v, "swarm": self.swarm, "author": self.author, "seq": self.seq,
                "prev": self.prev, "ts": self.ts, "kind": self.kind, "body": self.body}

    def signing_bytes(self) -> bytes:
        """Canonical DAG-CBOR of the entry without ``sig``: what the author signs."""
        data = self.to_bytes()
        start, end = decode_top_map(data)[1]["sig"]
        return b"\xa8" + data[1:start] + data[end:]

    def to_bytes(self) -> bytes:
        """Canonical DAG-CBOR of the whole entry (the block whose hash is :attr:`cid`)."""
        if self._bytes is None:
            d = self._signing_dict()
            d["sig"] = self.sig
            object.__setattr__(self, "_bytes", dag_cbor.encode(d))
        return self._bytes

    @property
    def cid(self) -> CID:
        """CIDv1 (dag-cbor, sha2-256) of :meth:`to_bytes`."""
        if self._cid is None:
            object.__setattr__(self, "_cid", dag_cbor_cid(self.to_bytes()))
        return self._cid

    def __eq__(self, other) -> bool:
        return isinstance(other, Entry) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def to_json(self) -> dict:
        """A JSON-friendly view (CIDs as strings, sig as hex) for `learnae ledger show`."""
        def conv(x):
            if isinstance(x, CID):
                return str(x)
            if isinstance(x, bytes):
                return x.hex()
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, list):
                return [conv(v) for v in x]
            return x
        d = conv(self._signing_dict())
        d["sig"] = self.sig.hex()
        d["cid"] = str(self.cid)
        return d


def sign_entry(identity: Identity, *, swarm: str, seq: int, prev: CID | None, kind: str, body: dict,
               ts: int | None = None) -> Entry:
    """Build and sign an entry by ``identity`` (its peer ID becomes ``author``).

    Args:
        identity: the author's key.
        swarm: swarm id.
        seq: position in the author's chain (0 for the first entry).
        prev: CID of the author's entry ``seq - 1``; None iff ``seq == 0``.
        kind: one of :data:`KINDS`.
        body: kind-specific fields (ints in float fields are converted).
        ts: unix ms; defaults to now.

    Raises:
        InvalidEntryError: (reason "bad-schema" or "oversize") if the result would not decode.

    Example:
        >>> e = sign_entry(Identity.generate(), swarm="s", seq=0, prev=None, kind="leave",
        ...                body={"reason": "bye"})
        >>> e.seq, e.kind
        (0, 'leave')
    """
    body = normalize_body(kind, body)
    ts = now_ms() if ts is None else ts
    entry = Entry(VERSION, swarm, identity.peer_id, seq, prev, ts, kind, body, b"\0" * 64)
    _check_fields(entry)
    try:
        signing = dag_cbor.encode(entry._signing_dict())
    except Exception as exc:  # dag_cbor rejects values outside the IPLD data model
        raise _reject("bad-schema", f"body is not encodable as DAG-CBOR: {exc}") from None
    sig = identity.sign(signing)
    _, spans = decode_top_map(signing)
    cut = spans["seq"][1]  # "sig" is the key right after "seq" in canonical order
    data = b"\xa9" + signing[1:cut] + _SIG_KEY + sig + signing[cut:]
    if len(data) > MAX_ENTRY_BYTES:
        raise _reject("oversize", f"entry has {len(data)} bytes, the limit is {MAX_ENTRY_BYTES}")
    return Entry(VERSION, swarm, entry.author, seq, prev, ts, kind, body, sig, _bytes=data, _verified=True)


def _check_fields(e: Entry) -> None:
    """Raise InvalidEntryError if any top-level field or the body breaks the schema."""
    if type(e.v) is not int or e.v != VERSION:
        raise _reject("bad-version", f"unknown entry version {e.v!r}; this peer reads {VERSION}")
    if type(e.swarm) is not str or not 0 < len(e.swarm) <= MAX_SWARM_CHARS:
        raise _reject("bad-schema", "swarm is not a text of 1-128 characters")
    if type(e.author) is not str:
        raise _reject("bad-author", "author is not text")
    if _author_key(e.author) is None:
        raise _reject("bad-author", f"author {e.author[:60]!r} is not an Ed25519 peer ID") from None
    if type(e.seq) is not int or not 0 <= e.seq < 2**63:
        raise _reject("bad-schema", "seq is not a non-negative integer")
    if e.prev is None:
        if e.seq != 0:
            raise _reject("bad-schema", f"seq {e.seq} has no prev link")
    elif not is_entry_cid(e.prev) or e.seq == 0:
        raise _reject("bad-schema", "prev must be null at seq 0 and a dag-cbor CID after")
    if type(e.ts) is not int or not 0 <= e.ts < 2**63:
        raise _reject("bad-schema", "ts is not a non-negative integer (unix ms)")
    if type(e.kind) is not str or e.kind not in KINDS:
        raise _reject("bad-schema", f"unknown kind {str(e.kind)[:40]!r}; expected one of {', '.join(KINDS)}")
    problem = check_body(e.kind, e.body)
    if problem is not None:
        raise _reject("bad-schema", problem)
    if type(e.sig) is not bytes or len(e.sig) != 64:
        raise _reject("bad-schema", "sig is not 64 bytes")


def decode_entry(data: bytes, *, verify: bool = True, now: int | None = None,
                 max_future_ms: int = MAX_FUTURE_MS) -> Entry:
    """Parse and check entry bytes from anywhere (gossip, disk, a CAR file).

    Args:
        data: the entry's canonical DAG-CBOR bytes.
        verify: also check the signature and that ``ts`` is at most
            ``max_future_ms`` after ``now`` (unix ms, default: the clock). Off
            only for bytes this peer verified before (its own disk).

    Returns:
        The entry, with its bytes kept (``to_bytes()`` is ``data``).

    Raises:
        InvalidEntryError: ``reason`` is one of :data:`REASONS`.

    Example:
        >>> decode_entry(b"\\xa0").__class__  # doctest: +SKIP
        InvalidEntryError: bad-version ...
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _reject("undecodable", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_ENTRY_BYTES:
        raise _reject("oversize", f"entry has {len(data)} bytes, the limit is {MAX_ENTRY_BYTES}")
    try:
        d, spans = decode_top_map(data)
    except CborError as exc:
        raise _reject(exc.reason, str(exc)) from None
    except RecursionError:  # belt and braces: depth is bounded by cbor.MAX_DEPTH
        raise _reject("undecodable", "nested too deeply") from None
    if "v" in d and (type(d["v"]) is not int or d["v"] != VERSION):
        raise _reject("bad-version", f"unknown entry version {d['v']!r}; this peer reads {VERSION}")
    if d.keys() != FIELDS:
        raise _reject("bad-schema", f"fields missing {sorted(FIELDS - d.keys())}, "
                                    f"extra {sorted(d.keys() - FIELDS)[:5]}")
    entry = Entry(d["v"], d["swarm"], d["author"], d["seq"], d["prev"], d["ts"], d["kind"], d["body"],
                  d["sig"], _bytes=data)
    _check_fields(entry)
    if verify:
        limit = (now_ms() if now is None else now) + max_future_ms
        if entry.ts > limit:
            raise _reject("future-timestamp", f"ts {entry.ts} is more than {max_future_ms} ms ahead")
        start, end = spans["sig"]
        if not _verify(entry.author, b"\xa8" + data[1:start] + data[end:], entry.sig):
            raise _reject("bad-signature", f"signature does not match author {entry.author}")
        object.__setattr__(entry, "_verified", True)
    return entry
