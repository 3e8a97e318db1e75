"""``learnae scenario compare``: finished runs side by side, and whether they are comparable.

Each run is read from its ``--out`` directory's report.json
(:func:`~learnae.scenario.report.load_report`). Runs whose planned timelines
are identical get the same letter, and the partition digests say whether the
runs trained on the same data, so a comparison of (say) merge rules is known
to be fair (docs/scenario-report.md, "Comparing runs").

Example:
    >>> table, rows = compare_runs([Path("out/mean"), Path("out/trimmed")], Path("compare.png"))
    >>> rows[0].timeline, rows[1].same_timeline_as
    ('A', ('mean',))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnae.scenario.plot import plot_compare
from learnae.scenario.report import Report, format_value, load_report

__all__ = ["ComparedRun", "compare_runs"]

_fmt = format_value


@dataclass(frozen=True, slots=True)
class ComparedRun:
    """One row of the comparison; ``--format json`` prints :meth:`to_json`."""

    run: str  # the directory's name (its path when names repeat)
    dir: str
    name: str  # the scenario's name
    peers: int
    mean_accuracy: float | None  # honest peers alive at the end, 0-1
    min_accuracy: float | None
    peers_alive: int | None
    ledger_valid: bool | None
    forks: tuple[str, ...]
    merges: int | None
    mb_received: float | None  # 10^6 bytes
    duration_s: float | None
    expectations_passed: int
    expectations: int
    ok: bool
    partition_digest: str | None
    timeline: str  # a letter; equal letters: identical planned timelines
    same_timeline_as: tuple[str, ...]  # the other runs with that letter

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "dir": self.dir, "name": self.name, "peers": self.peers,
                "mean_accuracy": self.mean_accuracy, "min_accuracy": self.min_accuracy,
                "peers_alive": self.peers_alive, "ledger_valid": self.ledger_valid, "forks": list(self.forks),
                "merges": self.merges, "mb_received": self.mb_received, "duration_s": self.duration_s,
                "expectations_passed": self.expectations_passed, "expectations": self.expectations, "ok": self.ok,
                "partition_digest": self.partition_digest, "timeline": self.timeline,
                "same_timeline_as": list(self.same_timeline_as)}


def _groups(keys: list[str]) -> list[str]:
    """A letter per distinct key, in order of first appearance: [x, y, x] -> [A, B, A]."""
    letters: dict[str, str] = {}
    for k in keys:
        letters.setdefault(k, chr(ord("A") + len(letters) % 26))
    return [letters[k] for k in keys]


def _timeline_key(report: Report) -> str:
    return json.dumps([item.to_json() for item in report.timeline], sort_keys=True)


def _row(label: str, out: Path, r: Report, letter: str, labels: list[str], letters: list[str]) -> ComparedRun:
    f = r.final
    return ComparedRun(
        run=label, dir=str(out), name=r.name, peers=len(r.peers), mean_accuracy=f.mean_accuracy,
        min_accuracy=f.min_accuracy, peers_alive=f.peers_alive, ledger_valid=f.ledger_valid, forks=f.forks,
        merges=f.merges, mb_received=None if f.bytes_received is None else round(f.bytes_received / 1e6, 3),
        duration_s=f.duration_s if f.duration_s is not None else r.duration_s,
        expectations_passed=sum(e.ok for e in r.expectations), expectations=len(r.expectations), ok=r.ok,
        partition_digest=r.partition.digest, timeline=letter,
        same_timeline_as=tuple(o for o, t in zip(labels, letters) if t == letter and o != label))


def _table(rows: list[ComparedRun]) -> list[str]:
    header = ["run", "name", "peers", "mean acc", "min acc", "alive", "ledger", "forks", "merges", "MB recv",
              "duration", "expect", "data", "timeline"]
    cells = [[row.run, row.name or "-", str(row.peers), _fmt(row.mean_accuracy, ".3f"),
              _fmt(row.min_accuracy, ".3f"), _fmt(row.peers_alive),
              "valid" if row.ledger_valid else "INVALID" if row.ledger_valid is False else "-",
              str(len(row.forks)), _fmt(row.merges), _fmt(row.mb_received, ".1f"),
              f"{_fmt(row.duration_s, '.0f')} s", f"{row.expectations_passed}/{row.expectations}"
              + ("" if row.ok else " FAIL"), (row.partition_digest or "-")[:10], row.timeline]
             for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    left = {0, 1, 6, 12, 13}
    return ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cell, widths))).rstrip()
            for cell in [header, *cells]]


def compare_runs(outs: list[Path], plot_path: Path) -> tuple[str, list[ComparedRun]]:
    """Compare finished runs side by side; write one plot of their honest mean accuracy.

    Args:
        outs: the runs' ``--out`` directories.
        plot_path: where to write the combined PNG (each run one line, each
            run's events faint vertical lines in its colour).

    Returns:
        ``(table, rows)``: a text table (one row per run; the ``timeline``
        and ``data`` columns give runs with identical planned timelines or
        partitions the same letter) and its rows (``to_json()`` for ``--format json``).

    Raises:
        UserError: a directory has no readable format-1 report.json.

    Example:
        >>> table, rows = compare_runs([Path("out/mean"), Path("out/trimmed")], Path("compare.png"))
    """
    reports = [load_report(o) for o in outs]
    labels = [Path(o).name or str(o) for o in outs]
    if len(set(labels)) < len(labels):
        labels = [str(o) for o in outs]
    letters = _groups([_timeline_key(r) for r in reports])
    digests = [r.partition.digest or "" for r in reports]
    rows = [_row(label, Path(out), r, letter, labels, letters)
            for label, out, r, letter in zip(labels, outs, reports, letters)]
    lines = _table(rows)
    if len(rows) > 1:
        if len(set(letters)) == 1:
            lines.append("timelines: identical in every run")
        else:
            groups: dict[str, list[str]] = {}
            for label, t in zip(labels, letters):
                groups.setdefault(t, []).append(label)
            lines.append("timelines DIFFER: " + "; ".join(f"{t} = {', '.join(ls)}" for t, ls in groups.items()))
        lines.append("data partitions: " + ("identical in every run" if len(set(digests)) == 1 and digests[0]
                                            else "DIFFER (see the data column)"))
    plot_compare(labels, reports, plot_path)
    return "\n".join(lines), rows
