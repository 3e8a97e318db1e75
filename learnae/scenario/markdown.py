"""report.md: the human summary of a scenario run, written from its typed report.

In order: the verdict and a few summary lines, the plot, the expectations, the
peers, the events (and planned ones the run ended before), the data partition
and links to the other files (docs/scenario-report.md, "Reading report.md").

Example:
    >>> write_markdown(load_report(Path("scenario-out/churn")), Path("report.md"))
    PosixPath('report.md')
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from learnae.errors import UserError
from learnae.scenario.report import PartitionSummary, Report, ShardSummary, format_value
from learnae.scenario.timeline import event_label

__all__ = ["write_markdown"]

_fmt = format_value


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _mb(n: int | None) -> str:
    return _fmt(n / 1e6 if isinstance(n, (int, float)) and not isinstance(n, bool) else None, ".2f")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, dict):  # forks_detected: what each honest peer holds proofs of
        return "; ".join(f"{k}: {_value(x) if x else '-'}" for k, x in v.items()) or "-"
    return _fmt(v)


def _label_key(label: str) -> tuple:
    numeric = label.lstrip("-").isdigit()
    return (not numeric, int(label) if numeric else 0, label)


def _histogram(shards: dict[str, ShardSummary]) -> list[str]:
    labels = sorted({k for s in shards.values() for k in s.classes}, key=_label_key)
    if len(labels) <= 12:
        rows = [[n, _fmt(s.index), _fmt(s.samples), *[s.classes.get(k, 0) for k in labels]]
                for n, s in shards.items()]
        return _table(["peer", "shard", "samples", *[f"class {k}" for k in labels]], rows)
    rows = [[n, _fmt(s.index), _fmt(s.samples), " ".join(f"{k}:{c}" for k, c in s.classes.items())]
            for n, s in shards.items()]
    return _table(["peer", "shard", "samples", "classes (label:count)"], rows)


def _summary(report: Report, plot: str) -> list[str]:
    final = report.final
    when = (datetime.fromtimestamp(report.started_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            if report.started_at else "-")
    return [f"# Scenario `{report.name}`: {report.verdict}", "",
            f"- file: `{report.source or '-'}`, seed {_fmt(report.seed)}",
            f"- started {when}; ran {_fmt(report.duration_s, '.1f')} s, ended by {report.end_reason or '-'}",
            f"- honest mean accuracy {_fmt(final.mean_accuracy, '.3f')} (min {_fmt(final.min_accuracy, '.3f')}, "
            f"max {_fmt(final.max_accuracy, '.3f')}); {_fmt(final.peers_alive)} peers alive; "
            f"ledger valid: {_fmt(final.ledger_valid)}; forks: {', '.join(final.forks) or 'none'}",
            f"- consensus distance {_fmt(final.consensus_distance, '.3g')} (largest "
            f"{_fmt(final.max_consensus_distance, '.3g')}); {_fmt(final.merges)} merges; "
            f"{_mb(final.bytes_received)} MB received; {_fmt(final.rejected)} rejected", "",
            f"![accuracy over time]({plot})", "",
            f"[{plot}]({plot}): accuracy per peer, events, consensus distance.", ""]


def _peers(report: Report) -> list[str]:
    rows, problems = [], []
    for name, p in report.peers.items():
        f, led = p.final, p.ledger
        role = "honest" if p.honest else f"attacker ({p.attack.mode})" if p.attack else "attacker"
        rows.append([name, f"`{p.peer_id[:12]}...`" if p.peer_id else "-", role, p.state, _fmt(p.starts),
                     _fmt(f.judged_accuracy, ".3f"), _fmt(f.test_accuracy, ".3f"), _fmt(f.merges),
                     _mb(f.bytes_received), _mb(f.bytes_sent),
                     ", ".join(p.forks_detected) or "-", f"{_fmt(led.valid)} ({_fmt(led.entries)} entries)"])
        if led.problems:
            more = f" (and {len(led.problems) - 1} more)" if len(led.problems) > 1 else ""
            problems.append(f"- {name}: {led.problems[0]}{more}")
    out = ["## Peers", ""]
    out += _table(["peer", "peer ID", "role", "state", "starts", "judged accuracy", "last sample", "merges",
                   "MB in", "MB out", "forks detected", "ledger valid"], rows)
    return out + (["Ledger problems:", "", *problems, ""] if problems else [])


def _events(report: Report) -> list[str]:
    done = {(ev.item.at, ev.action) for ev in report.events}
    rows = [[_fmt(ev.t, ".1f"), _fmt(ev.item.at, "g"), event_label(ev.item),
             "ok" if ev.ok else "**FAIL**", ev.detail] for ev in report.events]
    rows += [["-", _fmt(item.at, "g"), event_label(item), "not reached", "the run ended first"]
             for item in report.timeline if (item.at, item.action) not in done]
    table = _table(["t (s)", "planned (s)", "event", "ok", "detail"], rows) if rows else ["(none)", ""]
    return ["## Events", "", *table]


def _partition(part: PartitionSummary) -> list[str]:
    out = ["## Data partition", "",
           f"Scheme `{part.scheme or '-'}`, seed {_fmt(part.seed)}, digest `{part.digest or '-'}` "
           "(the same digest means the same samples on the same peers).", ""]
    if part.error:
        out += [f"The partition could not be summarised: {part.error}", ""]
    if part.shards:
        out += _histogram(part.shards)
    return out


def write_markdown(report: Report, path: Path) -> Path:
    """Write report.md: verdict, expectations, per-peer results, events, data partition.

    Returns:
        ``path``.

    Raises:
        UserError: the file cannot be written.
    """
    plot = report.files.accuracy_plot
    out = _summary(report, plot)
    out += ["## Expectations", ""]
    if report.expectations:
        out += _table(["expect", "value", "ok"], [[f"`{e.expect}`", _value(e.value), "ok" if e.ok else "**FAIL**"]
                                                   for e in report.expectations])
    else:
        out += ["(none)", ""]
    out += _peers(report)
    out += _events(report)
    out += _partition(report.partition)
    out += ["## Files", ""]
    out += [f"- [{v}]({v})" for v in ("report.json", plot, report.files.ledger, report.files.peers) if v]
    path = Path(path)
    try:
        path.write_text("\n".join(out) + "\n")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the summary ({exc.strerror})") from None
    return path
