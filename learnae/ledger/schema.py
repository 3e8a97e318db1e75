"""The versioned schema of ledger entries: top-level fields and one body per kind.

Version 1 (see docs/ledger.md for the table a user reads):

* ``join``: ``fingerprint`` (text, the model fingerprint), ``framework`` (text),
  ``addrs`` (list of text multiaddrs, at most 32).
* ``shard``: ``shard`` (CID of the data shard), ``samples`` (int >= 0),
  ``classes`` (map label text -> count int >= 0, the class histogram).
* ``snapshot``: ``model`` (CID of the weights), ``step`` (int >= 0), ``samples``
  (int >= 0, cumulative samples trained by the author), ``metrics`` (map text ->
  finite float, e.g. ``loss``, ``accuracy``), ``parents`` (list of ``{entry: CID
  of a dag-cbor entry, weight: finite float >= 0}``, unique entries, at most 256).
* ``leave``: ``reason`` (text).

Every body has exactly these keys: a missing or extra key is a schema error,
so two honest implementations can never disagree on what an entry says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multiformats import CID

__all__ = ["VERSION", "KINDS", "FIELDS", "BODY_SCHEMAS", "Parent", "check_body", "normalize_body"]

VERSION = 1
KINDS = ("join", "shard", "snapshot", "leave")
FIELDS = frozenset({"v", "swarm", "author", "seq", "prev", "ts", "kind", "body", "sig"})

MAX_TEXT = 1024
MAX_ADDRS = 32
MAX_PARENTS = 256
MAX_MAP = 1024
_INT_MAX = 2**63 - 1


def _int(v) -> bool:
    return type(v) is int and 0 <= v <= _INT_MAX


def _text(v) -> bool:
    return type(v) is str and 0 < len(v) <= MAX_TEXT


def _any_text(v) -> bool:
    return type(v) is str and len(v) <= MAX_TEXT


def _float(v) -> bool:
    return type(v) is float and math.isfinite(v)


def _cid(v) -> bool:
    return isinstance(v, CID)


def is_entry_cid(v) -> bool:
    """True for a CIDv1 dag-cbor sha2-256 link (what ``prev`` and ``parents[].entry`` hold)."""
    return isinstance(v, CID) and v.version == 1 and v.codec.code == 0x71 and v.hashfun.code == 0x12


def _addrs(v) -> bool:
    return type(v) is list and len(v) <= MAX_ADDRS and all(_text(a) for a in v)


def _histogram(v) -> bool:
    return type(v) is dict and len(v) <= MAX_MAP and all(_text(k) and _int(c) for k, c in v.items())


def _metrics(v) -> bool:
    return type(v) is dict and len(v) <= MAX_MAP and all(_text(k) and _float(x) for k, x in v.items())


def _parents(v) -> bool:
    if type(v) is not list or len(v) > MAX_PARENTS:
        return False
    seen = set()
    for p in v:
        if type(p) is not dict or p.keys() != {"entry", "weight"}:
            return False
        if not is_entry_cid(p["entry"]) or not _float(p["weight"]) or p["weight"] < 0:
            return False
        seen.add(p["entry"].digest)  # same codec and hash for all (checked above); CID hashing is slow
    return len(seen) == len(v)


@dataclass(frozen=True, slots=True)
class Parent:
    """One snapshot a new snapshot merged: the ``parents`` items of a snapshot body.

    Attributes:
        entry: CID of the merged snapshot's ledger entry.
        weight: its share of the merge (summed over merges since the last snapshot).
    """

    entry: CID
    weight: float

    def to_body(self) -> dict:
        """The ``{"entry": CID, "weight": float}`` map a snapshot body holds."""
        return {"entry": self.entry, "weight": float(self.weight)}

    @staticmethod
    def to_bodies(parents: Iterable[Parent]) -> list[dict]:
        return [p.to_body() for p in parents]


BODY_SCHEMAS: dict[str, dict[str, Callable[[object], bool]]] = {
    "join": {"fingerprint": _text, "framework": _text, "addrs": _addrs},
    "shard": {"shard": _cid, "samples": _int, "classes": _histogram},
    "snapshot": {"model": _cid, "step": _int, "samples": _int, "metrics": _metrics, "parents": _parents},
    "leave": {"reason": _any_text},
}


def check_body(kind: str, body) -> str | None:
    """Return what is wrong with ``body`` for ``kind``, or None when it fits the schema."""
    schema = BODY_SCHEMAS.get(kind)
    if schema is None:
        return f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
    if type(body) is not dict:
        return "body is not a map"
    if body.keys() != schema.keys():
        missing = sorted(schema.keys() - body.keys())
        extra = sorted(body.keys() - schema.keys())
        return f"{kind} body: missing {missing}, extra {extra}"
    for key, ok in schema.items():
        if not ok(body[key]):
            return f"{kind} body: field {key!r} has a wrong type or value"
    return None


def normalize_body(kind: str, body: dict) -> dict:
    """Coerce friendly Python values into the schema's exact types before signing.

    Ints become floats in ``metrics`` and ``parents[].weight``; :class:`Parent` values
    become maps; tuples become lists.
    Anything else is left for :func:`check_body` to judge.
    """
    body = dict(body)
    if kind == "snapshot":
        if isinstance(body.get("metrics"), dict):
            body["metrics"] = {k: float(v) if type(v) is int else v for k, v in body["metrics"].items()}
        if isinstance(body.get("parents"), (list, tuple)):
            body["parents"] = [
                p.to_body() if isinstance(p, Parent)
                else {**p, "weight": float(p["weight"])} if isinstance(p, dict) and type(p.get("weight")) is int else p
                for p in body["parents"]
            ]
    elif kind == "join" and isinstance(body.get("addrs"), tuple):
        body["addrs"] = list(body["addrs"])
    return body
