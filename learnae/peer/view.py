"""The peer's view of the swarm: who published which snapshot, how fresh.

Fed by verified announcements (and, at start, by the ledger), it answers one
question for the merge step: which up to ``k`` neighbour snapshots to fetch now.
Choice is random among the authors with a snapshot this peer has not merged yet
(random neighbours mix models across the swarm fastest), skipping forked
authors, peers that left, and snapshots older than ``max_age_s``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from multiformats import CID

__all__ = ["SnapshotRef", "SwarmView"]


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """One announced snapshot: the entry and what it points to."""

    author: str
    seq: int
    entry_cid: CID
    model_cid: CID
    step: int
    samples: int
    ts_ms: int


class SwarmView:
    """Latest snapshot per author and which of them were merged already."""

    def __init__(self, own_id: str, *, seed: int = 0, max_age_s: float = 600.0):
        self.own_id = own_id
        self.max_age_s = max_age_s
        self._latest: dict[str, SnapshotRef] = {}
        self._merged: dict[str, CID] = {}  # author -> entry CID merged last
        self._gone: set[str] = set()
        self._members: set[str] = set()  # authors seen announcing anything
        self._seen_ms: dict[str, int] = {}  # author -> timestamp of its newest entry seen
        self._shard_samples: dict[str, int] = {}  # author -> samples in its data shard
        self._rng = random.Random(seed)

    def note_entry(self, entry) -> SnapshotRef | None:
        """Record a verified entry; return the snapshot it announces, if any."""
        if entry.author == self.own_id:
            return None
        self._members.add(entry.author)
        self._seen_ms[entry.author] = max(self._seen_ms.get(entry.author, 0), int(entry.ts))
        if entry.kind == "leave":
            self._gone.add(entry.author)
            return None
        self._gone.discard(entry.author)
        if entry.kind == "shard":
            self._shard_samples[entry.author] = int(entry.body["samples"])
        if entry.kind != "snapshot":
            return None
        ref = SnapshotRef(entry.author, entry.seq, entry.cid, entry.body["model"],
                          int(entry.body["step"]), int(entry.body["samples"]), int(entry.ts))
        old = self._latest.get(entry.author)
        if old is None or ref.seq > old.seq:
            self._latest[entry.author] = ref
        return ref

    def latest(self, author: str) -> SnapshotRef | None:
        """The newest known snapshot of ``author`` (also after it left)."""
        return self._latest.get(author)

    def shard_samples(self, author: str) -> int | None:
        """Samples in ``author``'s data shard (from its ``shard`` entry), if known."""
        return self._shard_samples.get(author)

    def last_seen_ms(self, author: str) -> int:
        """Timestamp (unix ms) of the newest entry of ``author`` seen, 0 if none."""
        return self._seen_ms.get(author, 0)

    def members(self) -> set[str]:
        """Peers known to be in the swarm: every author seen, minus those that left."""
        return self._members - self._gone

    def authors(self) -> list[str]:
        """Authors with a known snapshot (left peers excluded)."""
        return [a for a in self._latest if a not in self._gone]

    def choose(self, k: int, *, exclude=frozenset(), fresh_only: bool = True, prefer=None,
               max_others: int | None = None) -> list[SnapshotRef]:
        """Pick up to ``k`` snapshots of distinct authors to merge next.

        Args:
            k: how many at most.
            exclude: authors not to pick (e.g. forked ones).
            fresh_only: skip snapshots already merged from that author.
            prefer: authors to pick first (the directly connected peers); None: no preference.
            max_others: with ``prefer``, at most this many authors outside it. Identities cost
                nothing to make and one connection can relay entries of hundreds of them; a
                direct connection costs the author a host of its own, so strangers never fill
                a panel.
        """
        now_ms = time.time() * 1000
        pool = [
            ref for author, ref in self._latest.items()
            if author not in exclude and author not in self._gone
            and now_ms - ref.ts_ms <= self.max_age_s * 1000
            and not (fresh_only and self._merged.get(author) == ref.entry_cid)
        ]
        self._rng.shuffle(pool)
        if prefer is None:
            return pool[:k]
        first = [r for r in pool if r.author in prefer]
        others = [r for r in pool if r.author not in prefer][: k if max_others is None else max_others]
        return (first + others)[:k]

    def mark_merged(self, ref: SnapshotRef) -> None:
        self._merged[ref.author] = ref.entry_cid
