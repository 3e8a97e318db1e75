"""Lineage: which authors and data shards produced a model.

A snapshot by author A at ``seq`` k is the product of A's training up to k:
every shard A announced at a ``seq <= k``, and every snapshot A merged at a
``seq <= k`` (the ``parents`` of its snapshots so far), whose own lineage is
computed the same way. :func:`trace` computes that closure as one "horizon"
per author (the highest ``seq`` of that author the model depends on), so each
merge edge is read at most once: linear in the size of the ledger.

Example:
    >>> # ledger.trace(model_cid).authors  -> {"12D3KooW...": AuthorLineage(...), ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from multiformats import CID

from learnae.ledger.cbor import cid_from_bytes, cid_to_bytes
from learnae.ledger.credits import MAX_MERGE_WEIGHT, MAX_SHARD_SAMPLES, credited_samples

__all__ = ["AuthorLineage", "ShardRef", "Lineage", "trace"]


@dataclass(frozen=True, slots=True)
class ShardRef:
    """A data shard in a model's lineage (``samples``: its claim, at most ``MAX_SHARD_SAMPLES``)."""

    shard: CID
    author: str
    samples: int


@dataclass(frozen=True, slots=True)
class AuthorLineage:
    """How far into one author's chain a model reaches.

    Attributes:
        author: peer ID.
        horizon_seq: highest ``seq`` of the author the model depends on.
        snapshots: the author's snapshots at or below the horizon.
        samples: samples the author had trained at the horizon, as far as credits
            count them (:func:`~learnae.ledger.credits.credited_samples`: claims are bounded).
        merged_weight: sum of merge weights with which its snapshots entered the lineage
            (each at most ``MAX_MERGE_WEIGHT``, as in credits).
        forked: the author is caught equivocating (its part of the lineage is suspect).
    """

    author: str
    horizon_seq: int
    snapshots: int
    samples: int
    merged_weight: float
    forked: bool


@dataclass(frozen=True, slots=True)
class Lineage:
    """The result of :func:`trace`.

    Attributes:
        model: the model CID traced.
        entries: CIDs of the snapshot entries that published ``model``.
        authors: per author, the part of its chain the model depends on.
        shards: the data shards behind the model.
        merges: merge edges in the lineage.
    """

    model: CID
    entries: list[CID]
    authors: dict[str, AuthorLineage] = field(default_factory=dict)
    shards: list[ShardRef] = field(default_factory=list)
    merges: int = 0

    def to_json(self) -> dict:
        return {
            "model": str(self.model),
            "entries": [str(c) for c in self.entries],
            "authors": [
                {"author": a.author, "horizon_seq": a.horizon_seq, "snapshots": a.snapshots,
                 "samples": a.samples, "merged_weight": a.merged_weight, "forked": a.forked}
                for a in sorted(self.authors.values(), key=lambda x: x.author)
            ],
            "shards": [{"shard": str(s.shard), "author": s.author, "samples": s.samples} for s in self.shards],
            "merges": self.merges,
        }


def trace(db, model: CID) -> Lineage:
    """Walk back from ``model`` through merges to the authors and shards that produced it.

    Args:
        db: the index's sqlite3 connection.
        model: the model (weights) CID a snapshot entry announced.

    Returns:
        The lineage; ``entries`` is empty when no stored snapshot announced ``model``.
    """
    roots = db.execute("SELECT cid, author, seq FROM entries WHERE model=? AND kind='snapshot'",
                       (cid_to_bytes(model),)).fetchall()
    horizon: dict[str, int] = {}
    done: dict[str, int] = {}  # author -> seq up to which merge edges were already read
    weight: dict[str, float] = {}
    merges = 0
    pending = set()
    for _, author, seq in roots:
        if seq > horizon.get(author, -1):
            horizon[author] = seq
            pending.add(author)
    while pending:
        author = pending.pop()
        lo, hi = done.get(author, -1), horizon[author]
        done[author] = hi
        # aggregated in SQLite: one row per merged author, not one per merge edge
        rows = db.execute(
            "SELECT parent_author, MAX(parent_seq), SUM(MIN(weight, ?)), COUNT(*) FROM parents "
            "WHERE child_author=? AND child_seq>? AND child_seq<=? AND parent_author IS NOT NULL "
            "GROUP BY parent_author", (MAX_MERGE_WEIGHT, author, lo, hi)).fetchall()
        for parent_author, parent_seq, w, n in rows:
            merges += n
            weight[parent_author] = weight.get(parent_author, 0.0) + w
            if parent_seq > horizon.get(parent_author, -1):
                horizon[parent_author] = parent_seq
                if parent_seq > done.get(parent_author, -1):
                    pending.add(parent_author)
    forks = dict(db.execute("SELECT author, MIN(seq) FROM forks GROUP BY author"))
    authors, shards = {}, []
    for author, hi in sorted(horizon.items()):
        claims = sorted(db.execute(  # the author's claims up to the horizon; bounded as credits bound them
            "SELECT seq, kind, step, samples FROM entries WHERE author=? AND kind IN ('shard', 'snapshot') "
            "AND seq<=?", (author, hi)).fetchall())
        samples, _ = credited_samples((kind, step, n) for _, kind, step, n in claims)
        snaps = sum(1 for c in claims if c[1] == "snapshot")
        authors[author] = AuthorLineage(author, hi, snaps, samples, weight.get(author, 0.0), author in forks)
        for shard, n in db.execute(
                "SELECT shard, samples FROM entries WHERE author=? AND kind='shard' AND seq<=? ORDER BY seq",
                (author, hi)):
            shards.append(ShardRef(cid_from_bytes(shard), author, min(n, MAX_SHARD_SAMPLES)))
    return Lineage(model, [cid_from_bytes(r[0]) for r in roots], authors, shards, merges)
