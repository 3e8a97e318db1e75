"""Credits: what each author contributed, and one contribution score.

Counted per author from the index, using only *credited* entries: all of an
honest author's entries, and only the entries *before* the first forked
``seq`` of an author caught equivocating. Merges count only when another
author's credited snapshot lists the entry as a parent (self-merges earn nothing).

The score (the incentive LEARNAE and Hydra ask for), with ``k = 1,000 samples``::

    score = (samples / k                    # training work: cumulative samples trained
             + 10 * merged_weight           # influence: sum of parents[].weight others gave it
             + 0.1 * snapshots              # publishing: snapshots announced
             + 0.5 * shard_samples / k)     # data: samples in the shards it announced
            * (0.5 if forked else 1)        # equivocation halves what is left

Work and data are counted once (samples are cumulative, so the latest
snapshot's count is used, not a sum). Influence weighs most, since a snapshot
only helps the swarm when someone merges it, and a merge weight is bounded by
the merger's weight cap, so one peer can add at most ~1 per merge it makes.

Example:
    >>> CREDIT_WEIGHTS["merged_weight"]
    10.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Credit", "CREDIT_WEIGHTS", "FORK_FACTOR", "score", "compute_credits"]

CREDIT_WEIGHTS = {"samples": 1e-3, "merged_weight": 10.0, "snapshots": 0.1, "shard_samples": 0.5e-3}
FORK_FACTOR = 0.5


@dataclass(frozen=True, slots=True)
class Credit:
    """One author's credited contribution.

    Attributes:
        author: peer ID.
        samples: cumulative samples trained (highest ``samples`` among its snapshots).
        snapshots: snapshot entries published.
        merged: times another author's snapshot merged one of its snapshots.
        merged_by: distinct authors that merged its snapshots.
        merged_weight: sum of the weights those merges gave it.
        shards: shard entries announced.
        shard_samples: samples in those shards.
        forked: caught equivocating (two entries with one ``seq``).
        fork_seq: the first forked ``seq`` (entries from there on are not credited).
        score: the contribution score (module docstring).
    """

    author: str
    samples: int
    snapshots: int
    merged: int
    merged_by: int
    merged_weight: float
    shards: int
    shard_samples: int
    forked: bool
    fork_seq: int | None
    score: float

    def to_json(self) -> dict:
        return asdict(self)


def score(samples: int, merged_weight: float, snapshots: int, shard_samples: int, forked: bool) -> float:
    """The contribution score (see the module docstring)."""
    w = CREDIT_WEIGHTS
    s = (w["samples"] * samples + w["merged_weight"] * merged_weight + w["snapshots"] * snapshots
         + w["shard_samples"] * shard_samples)
    return s * (FORK_FACTOR if forked else 1.0)


# Fork cut-offs come from a tiny table (forked authors only); everything else is one scan.
_FORKS = "(SELECT author, MIN(seq) AS fseq FROM forks GROUP BY author)"

_OWN = f"""
SELECT e.author,
       COALESCE(MAX(CASE WHEN e.kind='snapshot' THEN e.samples END), 0),
       SUM(e.kind='snapshot'), SUM(e.kind='shard'),
       COALESCE(SUM(CASE WHEN e.kind='shard' THEN e.samples END), 0)
FROM entries e LEFT JOIN {_FORKS} f ON f.author = e.author
WHERE f.fseq IS NULL OR e.seq < f.fseq
GROUP BY e.author
"""

# Grouped twice (by merged author and merging author, then by merged author) so that
# COUNT(DISTINCT) needs no temporary B-tree: the inner GROUP BY follows parents_parent_author.
_MERGES = f"""
SELECT parent_author, SUM(n), COUNT(*), SUM(w) FROM (
    SELECT p.parent_author, p.child_author, COUNT(*) AS n, SUM(p.weight) AS w
    FROM parents p
    LEFT JOIN {_FORKS} fp ON fp.author = p.parent_author
    LEFT JOIN {_FORKS} fc ON fc.author = p.child_author
    WHERE p.parent_author IS NOT NULL AND p.child_author != p.parent_author
      AND (fp.fseq IS NULL OR p.parent_seq < fp.fseq) AND (fc.fseq IS NULL OR p.child_seq < fc.fseq)
    GROUP BY p.parent_author, p.child_author
) GROUP BY parent_author
"""


def compute_credits(db) -> list[Credit]:
    """Credits of every author in the index's connection ``db``, best score first."""
    merges = {a: (n, d, w) for a, n, d, w in db.execute(_MERGES)}
    forks = dict(db.execute("SELECT author, MIN(seq) FROM forks GROUP BY author"))
    out = []
    authors = set()
    for author, samples, snaps, shards, shard_samples in db.execute(_OWN):
        authors.add(author)
        n, d, w = merges.get(author, (0, 0, 0.0))
        forked = author in forks
        out.append(Credit(author, samples, snaps, shards=shards, shard_samples=shard_samples, merged=n,
                          merged_by=d, merged_weight=w, forked=forked, fork_seq=forks.get(author),
                          score=score(samples, w, snaps, shard_samples, forked)))
    for author, fseq in forks.items():  # forked at seq 0: nothing credited, still listed
        if author not in authors:
            out.append(Credit(author, 0, 0, 0, 0, 0.0, 0, 0, True, fseq, 0.0))
    out.sort(key=lambda c: (-c.score, c.author))
    return out
