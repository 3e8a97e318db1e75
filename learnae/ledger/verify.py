"""Verify a set of stored entries from scratch: blocks, signatures, schema, chains.

Used by ``learnae ledger verify`` on a data dir or a CAR file, and by the
verify-throughput benchmark. Every entry is decoded with signature and
timestamp checks; each author's entries must form an unbroken hash chain from
``seq`` 0 (so no ``seq`` is skipped). Forks (two valid entries with one author
and ``seq``) are *not* errors of the ledger: they are proofs against their
author, reported in :attr:`VerifyReport.forks`. The second entry of a fork may
lack its ``prev`` (it was kept as a proof, not as part of a chain).

Example:
    >>> verify_blocks([]).ok
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from multiformats import CID

from learnae.errors import InvalidEntryError
from learnae.ledger.cbor import cid_from_bytes, cid_to_bytes, dag_cbor_cid
from learnae.ledger.entry import decode_entry

__all__ = ["Problem", "VerifyReport", "verify_blocks"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one stored entry is invalid."""

    index: int  # position in the input (file order)
    cid: str | None
    author: str | None
    seq: int | None
    reason: str
    message: str

    def __str__(self) -> str:
        who = f" (author {self.author}, seq {self.seq})" if self.author else ""
        return f"entry #{self.index} {self.cid or '?'}{who}: {self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of :func:`verify_blocks`; ``ok`` when there is no problem."""

    entries: int
    authors: int
    problems: list[Problem] = field(default_factory=list)
    forks: list[tuple[str, int, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    heads: dict[str, int] = field(default_factory=dict)  # author -> highest seq

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "authors": self.authors,
                "problems": [str(p) for p in self.problems],
                "forks": [{"author": a, "seq": s, "first": x, "second": y} for a, s, x, y in self.forks],
                "notes": self.notes, "heads": self.heads}


def verify_blocks(blocks: Iterable[tuple[CID | None, bytes]], *, now: int | None = None,
                  linear_authors: Iterable[str] = ()) -> VerifyReport:
    """Verify entry blocks given as ``(cid or None, bytes)``.

    Args:
        blocks: entries in any order; a given CID is checked against the bytes.
        now: unix ms for the future-timestamp check (default: the clock).
        linear_authors: authors whose chain must not fork (a peer's own chain).

    Returns:
        A report; its first problem is the first failing entry in input order.
    """
    problems: list[Problem] = []
    # Light records only (atomic values, no Entry objects with their dict bodies): holding
    # 100k decoded entries alive would make the cyclic GC rescan them over and over.
    rows: list[tuple[int, str, int, bytes | None, bytes]] = []  # (index, author, seq, prev, cid)
    by_cid: dict[bytes, tuple[str, int]] = {}
    for i, (cid, data) in enumerate(blocks):
        try:
            e = decode_entry(data, now=now)
        except InvalidEntryError as exc:
            problems.append(Problem(i, str(cid) if cid else None, None, None, exc.reason, str(exc)))
            continue
        key = cid_to_bytes(e.cid)
        if cid is not None and cid_to_bytes(cid) != key:
            problems.append(Problem(i, str(cid), e.author, e.seq, "cid-mismatch",
                                    f"block bytes hash to {e.cid}, not to the CID they are stored under"))
            continue
        if key in by_cid:
            continue  # the same block twice is harmless
        by_cid[key] = (e.author, e.seq)
        rows.append((i, e.author, e.seq, cid_to_bytes(e.prev) if e.prev is not None else None, key))
    at: dict[tuple[str, int], list[bytes]] = {}
    for _, author, seq, _, key in rows:
        at.setdefault((author, seq), []).append(key)
    forks = [(a, s, str(cid_from_bytes(ks[0])), str(cid_from_bytes(ks[1])))
             for (a, s), ks in at.items() if len(ks) > 1]
    forked_at = {(a, s) for a, s, _, _ in forks}
    linear = set(linear_authors)
    heads: dict[str, int] = {}
    for i, author, seq, prev, key in rows:
        if seq > heads.get(author, -1):
            heads[author] = seq
        if author in linear and (author, seq) in forked_at:
            problems.append(Problem(i, str(cid_from_bytes(key)), author, seq, "fork",
                                    "this chain must be linear but has two entries at this seq"))
            continue
        if prev is None:
            continue
        found = by_cid.get(prev)
        if found is None:
            if (author, seq) in forked_at:
                continue  # a fork proof's second entry, kept without its chain
            problems.append(Problem(i, str(cid_from_bytes(key)), author, seq, "missing-prev",
                                    f"prev {cid_from_bytes(prev)} is not in the ledger (seq {seq - 1} is missing)"))
        elif found != (author, seq - 1):
            problems.append(Problem(i, str(cid_from_bytes(key)), author, seq, "bad-chain",
                                    f"prev {cid_from_bytes(prev)} is {found[0]} seq {found[1]}, not seq {seq - 1}"))
    problems.sort(key=lambda p: p.index)
    return VerifyReport(len(rows), len(heads), problems, sorted(forks), [], heads)


def block_cid_ok(cid: CID, data: bytes) -> bool:
    """True if ``data`` hashes to ``cid`` (dag-cbor fast path, any multihash otherwise)."""
    if cid.codec.code == 0x71 and cid.hashfun.code == 0x12:
        return dag_cbor_cid(data).digest == cid.digest
    try:
        return cid.hashfun.digest(data) == cid.digest
    except Exception:  # an unsupported hash function: cannot vouch for the block
        return False
