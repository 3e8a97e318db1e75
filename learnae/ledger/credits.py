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

Every number an entry carries is the author's own claim, so only what can be
bounded is counted (docs/ledger.md, "Credits"):

* ``samples``: walking the author's snapshots in ``seq`` order, each may add at
  most ``Δstep × min(MAX_BATCH_SAMPLES, shard)`` over the previous credited
  count, where ``Δstep`` is its step's increase over the highest step before it,
  at most :data:`MAX_STEPS_PER_SNAPSHOT`, and ``shard`` the largest shard the
  author announced before it (a step trains on at most one batch, and a batch
  is at most the whole shard: so the samples never exceed the shard times the
  epochs its steps allow);
* ``shard_samples``: the author's largest shard claim, at most
  :data:`MAX_SHARD_SAMPLES` (what a valid shard can hold) and at most its
  credited ``samples`` (data counts once it has been trained on);
* ``merged_weight``: each merge edge at most :data:`MAX_MERGE_WEIGHT`.

The arithmetic is Python's (SQLite's ``SUM`` of 64-bit integers overflows on two
claims of 2**63 - 1 and raised in ``learnae ledger credits``), so no stored
ledger can make credits fail.

Example:
    >>> CREDIT_WEIGHTS["merged_weight"]
    10.0
    >>> credited_samples([("shard", None, 600), ("snapshot", 10, 2**63 - 1)])  # 10 steps of at most 600
    (6000, 600)
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable
from dataclasses import asdict, dataclass

__all__ = ["Credit", "CREDIT_WEIGHTS", "FORK_FACTOR", "MAX_BATCH_SAMPLES", "MAX_STEPS_PER_SNAPSHOT",
           "MAX_SHARD_SAMPLES", "MAX_MERGE_WEIGHT", "score", "credited_samples", "compute_credits"]

CREDIT_WEIGHTS = {"samples": 1e-3, "merged_weight": 10.0, "snapshots": 0.1, "shard_samples": 0.5e-3}
FORK_FACTOR = 0.5
# Samples one training step is credited with at most (a batch); a larger batch size trains
# fine but earns no more than this per step.
MAX_BATCH_SAMPLES = 4096
# Steps one snapshot is credited with at most over the author's previous one (publish_every is
# 5 by default): a claimed step is as free to inflate as a claimed sample count.
MAX_STEPS_PER_SNAPSHOT = 10_000
# A shard is at most 2 GiB (learnae.data.shards.MAX_SHARD_BYTES); its smallest sample is one
# float32 feature and one int64 label, 12 bytes: no valid shard holds more samples than this.
MAX_SHARD_SAMPLES = (1 << 31) // 12
# A merge weight is a share of one merge (the merger's weight cap bounds it further).
MAX_MERGE_WEIGHT = 1.0


@dataclass(frozen=True, slots=True)
class Credit:
    """One author's credited contribution.

    Attributes:
        author: peer ID.
        samples: cumulative samples trained, as far as the bounds credit them
            (module docstring).
        snapshots: snapshot entries published.
        merged: times another author's snapshot merged one of its snapshots.
        merged_by: distinct authors that merged its snapshots.
        merged_weight: sum of the weights those merges gave it (each at most
            :data:`MAX_MERGE_WEIGHT`).
        shards: shard entries announced.
        shard_samples: samples of its largest shard, as far as credited.
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


def credited_samples(rows: Iterable[tuple[str, int | None, int | None]]) -> tuple[int, int]:
    """``(samples, shard_samples)`` credited to one author.

    Args:
        rows: ``(kind, step, samples)`` of the author's credited ``shard`` and
            ``snapshot`` entries, in ``seq`` order (other kinds are skipped).

    The bounds are the module docstring's; the result never exceeds what the
    claims say, and is a Python int (no overflow, whatever the claims).
    """
    return _credit((None, None, kind, step, samples) for kind, step, samples in rows)


def _credit(rows: Iterable[tuple]) -> tuple[int, int]:
    """:func:`credited_samples` of ``(author, seq, kind, step, samples)`` rows, as the index query gives them.

    Written for speed (it runs once per entry of the ledger): a snapshot whose step is
    not above the highest so far adds nothing, since its allowance is zero.
    """
    credited = top = 0
    shard: int | None = None
    for _, _, kind, step, samples in rows:
        if kind == "snapshot":
            if step is not None and step > top:
                gained = min(step - top, MAX_STEPS_PER_SNAPSHOT)
                top = step
                if samples is not None and samples > credited:
                    per_step = MAX_BATCH_SAMPLES if shard is None or shard > MAX_BATCH_SAMPLES else shard
                    credited = min(samples, credited + gained * per_step)
        elif kind == "shard":
            claim = min(max(0, samples or 0), MAX_SHARD_SAMPLES)
            shard = claim if shard is None or claim > shard else shard
    return credited, (0 if shard is None else min(shard, credited))


# Fork cut-offs come from a tiny table (forked authors only); everything else is one scan.
_FORKS = "(SELECT author, MIN(seq) AS fseq FROM forks GROUP BY author)"

# Only the claims, not sums of them: the bounds and the arithmetic are in Python. "+e.kind" keeps
# SQLite off the kind index (a table lookup per row, 4x slower) and on the covering entries_author_claims.
_CLAIMS = f"""
SELECT e.author, e.seq, e.kind, e.step, e.samples
FROM entries e LEFT JOIN {_FORKS} f ON f.author = e.author
WHERE +e.kind IN ('shard', 'snapshot') AND (f.fseq IS NULL OR e.seq < f.fseq)
ORDER BY e.author
"""

_AUTHOR, _SEQ = operator.itemgetter(0), operator.itemgetter(1)

_AUTHORS = f"""
SELECT DISTINCT e.author
FROM entries e LEFT JOIN {_FORKS} f ON f.author = e.author
WHERE f.fseq IS NULL OR e.seq < f.fseq
"""

# Grouped twice (by merged author and merging author, then by merged author) so that
# COUNT(DISTINCT) needs no temporary B-tree: the inner GROUP BY follows parents_parent_author.
# Weights are REAL (a SUM cannot overflow) and each edge is capped, so a merger cannot hand
# out more than MAX_MERGE_WEIGHT per parent per snapshot.
_MERGES = f"""
SELECT parent_author, SUM(n), COUNT(*), SUM(w) FROM (
    SELECT p.parent_author, p.child_author, COUNT(*) AS n, SUM(MIN(p.weight, {MAX_MERGE_WEIGHT!r})) AS w
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
    claims = {author: sorted(rows, key=_SEQ)  # seq order: the index gives one run per kind
              for author, rows in itertools.groupby(db.execute(_CLAIMS), key=_AUTHOR)}
    out = []
    authors = {a for (a,) in db.execute(_AUTHORS)}
    for author in authors:
        rows = claims.get(author, [])
        samples, shard_samples = _credit(rows)
        shards = sum(1 for r in rows if r[2] == "shard")
        snaps = len(rows) - shards
        n, d, w = merges.get(author, (0, 0, 0.0))
        forked = author in forks
        out.append(Credit(author, samples, snaps, shards=shards, shard_samples=shard_samples, merged=n,
                          merged_by=d, merged_weight=float(w), forked=forked, fork_seq=forks.get(author),
                          score=score(samples, w, snaps, shard_samples, forked)))
    for author, fseq in forks.items():  # forked at seq 0: nothing credited, still listed
        if author not in authors:
            out.append(Credit(author, 0, 0, 0, 0, 0.0, 0, 0, True, fseq, 0.0))
    out.sort(key=lambda c: (-c.score, c.author))
    return out
