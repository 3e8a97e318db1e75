"""What a person reads after a scenario run: accuracy.png, report.md, and ``scenario compare``.

Everything here reads the report dict a run writes as ``report.json``
(format 1, docs/scenario-report.md) and nothing else, so a report can be
re-plotted or compared long after its peers are gone. Imports stay light:
no TensorFlow, no libp2p, and matplotlib (Agg, no pyplot) only inside the
functions that draw.

Example:
    >>> # report = load_report(Path("scenario-out/churn"))
    >>> # plot_accuracy(report, Path("accuracy.png")); write_markdown(report, Path("report.md"))
    >>> # table, rows = compare_runs([Path("out/a"), Path("out/b")], Path("compare.png"))
"""

from __future__ import annotations

import bisect
import json
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path

from learnae.errors import UserError

__all__ = ["FORMAT", "load_report", "event_label", "honest_mean_series", "plot_accuracy", "write_markdown",
           "compare_runs"]

FORMAT = 1
_REQUIRED = {"name": str, "peers": dict, "final": dict}
_ACCURACY_EXPECT = re.compile(r"\s*(mean|min|max)_accuracy\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*")
_DPI = 120


def load_report(out: Path) -> dict:
    """Read ``OUT/report.json`` of a finished run.

    Raises:
        UserError: the directory or its report.json is missing, not JSON, or
            not a format-1 scenario report; the message names the directory
            and says how to get a report.
    """
    out = Path(out)
    fix = f"run `learnae scenario run FILE --out {out}` first"
    path = out / "report.json"
    if not out.is_dir():
        raise UserError(f"{out}: no such run directory; {fix}")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{out}: no report.json (the run did not finish, or this is not a run's --out "
                        f"directory); {fix}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        report = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run the scenario to rewrite it") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        got = report.get("format") if isinstance(report, dict) else type(report).__name__
        raise UserError(f"{path}: not a scenario report of format {FORMAT} (format: {got!r}); "
                        f"re-run the scenario with this learnae to rewrite it")
    missing = [k for k, kind in _REQUIRED.items() if not isinstance(report.get(k), kind)]
    if missing:
        raise UserError(f"{path}: the report lacks {', '.join(missing)}; re-run the scenario to rewrite it")
    return report


# -- shared helpers ----------------------------------------------------------------------------

def _fmt(value, spec: str = "", none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 2 else f"{len(names)} peers"


def event_label(event: dict) -> str:
    """A short label for a timeline item or event: ``kill peer-2``, ``partition 2 groups``, ``heal``.

    Example:
        >>> event_label({"at": 30.0, "action": "kill", "peers": ["peer-2"], "ok": False})
        'kill peer-2 (failed)'
    """
    action = event.get("action", "?")
    if action == "partition":
        groups = event.get("groups") or []
        inner = " | ".join("+".join(g) for g in groups)
        label = f"partition {inner}" if len(inner) <= 30 else f"partition {len(groups)} groups"
    elif action == "slow":
        factors = event.get("factors") or {}
        label = f"slow {', '.join(f'{n} x{f:g}' for n, f in factors.items())}" if len(factors) <= 2 \
            else f"slow {len(factors)} peers"
    elif action == "attack":
        modes = event.get("modes") or {}
        parts = [f"{n} {(m or {}).get('mode', 'off')}" for n, m in modes.items()]
        label = f"attack {', '.join(parts)}" if len(parts) <= 2 else f"attack {len(parts)} peers"
    elif event.get("peers"):
        label = f"{action} {_names(list(event['peers']))}"
    else:
        label = action
    return label + (" (failed)" if event.get("ok") is False else "")


def _t(event: dict) -> float:
    return float(event["t"] if event.get("t") is not None else event.get("at", 0.0))


def _sample_every(report: dict) -> float:
    try:
        return max(float((report.get("scenario") or {}).get("sample_every") or 2.0), 0.1)
    except (TypeError, ValueError):
        return 2.0


def _points(peer: dict) -> list[tuple[float, float]]:
    pts = [(float(p["t"]), float(p["test_accuracy"])) for p in peer.get("series") or []
           if p.get("t") is not None and p.get("test_accuracy") is not None]
    return sorted(pts)


def _segments(points: list[tuple[float, float]], gap_s: float) -> list[list[tuple[float, float]]]:
    """Split a series where no sample came for ``gap_s`` (the peer was killed, left or paused)."""
    out: list[list[tuple[float, float]]] = []
    for p in points:
        if out and p[0] - out[-1][-1][0] <= gap_s:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _gap_s(report: dict) -> float:
    return max(3 * _sample_every(report), 5.0)


def honest_mean_series(report: dict) -> list[tuple[float, float]]:
    """The honest peers' mean test accuracy over time, as ``[(t, mean), ...]``.

    Peers sample at their own times, so the mean is taken on a grid of
    ``sample_every`` seconds over each honest peer's latest sample no older than
    two intervals: a peer that is down drops out of the mean instead of
    holding its last value.
    """
    step = _sample_every(report)
    series = [_points(p) for p in (report.get("peers") or {}).values() if p.get("honest", True)]
    series = [s for s in series if s]
    if not series:
        return []
    end = max(s[-1][0] for s in series)
    times = [[t for t, _ in s] for s in series]
    out = []
    n = 0
    while n * step <= end + step:
        g = n * step
        values = []
        for ts, s in zip(times, series):
            i = bisect.bisect_right(ts, g) - 1
            if i >= 0 and g - ts[i] <= 2 * step:
                values.append(s[i][1])
        if values:
            out.append((round(g, 3), statistics.fmean(values)))
        n += 1
    return out


def _save(fig, path: Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=_DPI)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the plot ({exc.strerror})") from None
    return path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global state
    return fig


def _mark_events(axes, events: list[dict], *, label_ax=None, color: str = "0.35", alpha: float = 0.8) -> None:
    """A vertical line per event on every axis; labels (one per instant) on ``label_ax``."""
    by_t: dict[float, list[dict]] = {}
    for ev in sorted(events, key=_t):
        key = next((k for k in by_t if abs(k - _t(ev)) < 0.5), _t(ev))
        by_t.setdefault(key, []).append(ev)
    for t, evs in by_t.items():
        failed = any(ev.get("ok") is False for ev in evs)
        for ax in axes:
            ax.axvline(t, color="tab:red" if failed else color, ls=":", lw=1.0, alpha=alpha, zorder=1)
        if label_ax is not None:
            label_ax.text(t, 0.02, "; ".join(event_label(ev) for ev in evs), transform=label_ax.get_xaxis_transform(),
                          rotation=90, ha="right", va="bottom", fontsize=7, color="tab:red" if failed else "0.2",
                          bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 0.5})


# -- accuracy.png ------------------------------------------------------------------------------

def plot_accuracy(report: dict, path: Path) -> Path:
    """Draw accuracy over time per peer, the events, and the consensus distance; write a PNG.

    Honest peers are solid coloured lines, attackers grey dashed ones; the
    thick black line is the honest mean (:func:`honest_mean_series`). A line
    ends where its peer stopped sampling (killed, left, paused) and starts again
    when it is back. Each event is a dotted vertical line with a label (red if
    it failed); accuracy expectations are horizontal dashed lines (green if met).
    The lower panel is the consensus distance (mean and largest L2 distance of
    the models to their average).

    Returns:
        ``path``.

    Raises:
        UserError: the file cannot be written.
    """
    from matplotlib.lines import Line2D

    fig = _figure(10, 6.5)
    ax, axc = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    peers = report.get("peers") or {}
    gap = _gap_s(report)
    colors = [f"C{i}" for i in range(10)]
    few = len(peers) <= 12
    honest_i = 0
    for name, peer in peers.items():
        honest = peer.get("honest", True)
        color = colors[honest_i % len(colors)] if honest else "0.55"
        honest_i += honest
        label = name if honest else f"{name} (attacker)"
        for k, seg in enumerate(_segments(_points(peer), gap)):
            ax.plot([t for t, _ in seg], [a for _, a in seg], color=color, ls="-" if honest else "--",
                    lw=1.2, alpha=0.85, label=label if few and k == 0 else None, zorder=2)
    mean = honest_mean_series(report)
    if mean:
        ax.plot([t for t, _ in mean], [a for _, a in mean], color="black", lw=2.4, label="honest mean", zorder=3)
    for e in report.get("expectations") or []:
        m = _ACCURACY_EXPECT.fullmatch(str(e.get("expect", "")))
        if m:
            ok = e.get("ok")
            ax.axhline(float(m[3]), color="tab:green" if ok else "tab:red", ls="--", lw=0.9, zorder=1)
            ax.text(1.0, float(m[3]), f" {e['expect'].strip()}", transform=ax.get_yaxis_transform(), va="bottom",
                    ha="right", fontsize=7, color="tab:green" if ok else "tab:red")
    events = report.get("events") or []
    _mark_events([ax, axc], events, label_ax=ax)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.25)
    if few:
        ax.legend(loc="upper left", fontsize=7, ncol=2 if len(peers) > 6 else 1, framealpha=0.8)
    else:
        n_att = sum(not p.get("honest", True) for p in peers.values())
        handles = [Line2D([], [], color="C0", label=f"honest peers ({len(peers) - n_att})"),
                   Line2D([], [], color="black", lw=2.4, label="honest mean")]
        if n_att:
            handles.append(Line2D([], [], color="0.55", ls="--", label=f"attackers ({n_att})"))
        ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.8)
    verdict = "PASS" if report.get("ok") else "FAIL"
    acc = (report.get("final") or {}).get("mean_accuracy")
    ax.set_title(f"{report.get('name', '?')}: {verdict} - honest mean accuracy {_fmt(acc, '.3f')}, "
                 f"{_fmt((report.get('final') or {}).get('peers_alive'))} peers alive at the end", fontsize=10)

    consensus = [c for c in report.get("consensus") or [] if c.get("t") is not None]
    if consensus:
        ts = [c["t"] for c in consensus]
        axc.plot(ts, [c.get("distance") for c in consensus], color="tab:purple", lw=1.4, label="mean")
        axc.plot(ts, [c.get("max_distance") for c in consensus], color="tab:purple", lw=1.0, ls="--",
                 label="largest")
        axc.legend(loc="upper right", fontsize=7)
        axc.set_ylim(bottom=0)
    else:
        axc.text(0.5, 0.5, "no consensus samples", transform=axc.transAxes, ha="center", va="center",
                 fontsize=8, color="0.4")
    axc.set_ylabel("L2 distance\nto the mean", fontsize=8)
    axc.set_xlabel("t (s since the swarm was up)")
    axc.grid(alpha=0.25)
    end = report.get("duration_s") or max([t for t, _ in mean] + [1.0])
    ax.set_xlim(0, float(end))
    return _save(fig, path)


# -- report.md ---------------------------------------------------------------------------------

def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _mb(n) -> str:
    return _fmt(n / 1e6 if isinstance(n, (int, float)) and not isinstance(n, bool) else None, ".2f")


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, dict):  # forks_detected: what each honest peer holds proofs of
        return "; ".join(f"{k}: {_value(x) if x else '-'}" for k, x in v.items()) or "-"
    return _fmt(v)


def _histogram(shards: dict) -> list[str]:
    labels = sorted({k for s in shards.values() for k in (s.get("classes") or {})},
                    key=lambda k: (not k.lstrip("-").isdigit(), int(k) if k.lstrip("-").isdigit() else 0, k))
    if len(labels) <= 12:
        rows = [[n, _fmt(s.get("index")), _fmt(s.get("samples")), *[(s.get("classes") or {}).get(k, 0) for k in labels]]
                for n, s in shards.items()]
        return _table(["peer", "shard", "samples", *[f"class {k}" for k in labels]], rows)
    rows = [[n, _fmt(s.get("index")), _fmt(s.get("samples")),
             " ".join(f"{k}:{c}" for k, c in (s.get("classes") or {}).items())] for n, s in shards.items()]
    return _table(["peer", "shard", "samples", "classes (label:count)"], rows)


def write_markdown(report: dict, path: Path) -> Path:
    """Write report.md: verdict, expectations, per-peer results, events, data partition.

    Returns:
        ``path``.

    Raises:
        UserError: the file cannot be written.
    """
    final = report.get("final") or {}
    verdict = "PASS" if report.get("ok") else "FAIL"
    started = report.get("started_at")
    when = datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if started else "-"
    out = [f"# Scenario `{report.get('name', '?')}`: {verdict}", ""]
    out += [f"- file: `{report.get('source') or '-'}`, seed {_fmt(report.get('seed'))}",
            f"- started {when}; ran {_fmt(report.get('duration_s'), '.1f')} s, "
            f"ended by {report.get('end_reason') or '-'}",
            f"- honest mean accuracy {_fmt(final.get('mean_accuracy'), '.3f')} (min "
            f"{_fmt(final.get('min_accuracy'), '.3f')}, max {_fmt(final.get('max_accuracy'), '.3f')}); "
            f"{_fmt(final.get('peers_alive'))} peers alive; ledger valid: {_fmt(final.get('ledger_valid'))}; "
            f"forks: {', '.join(final.get('forks') or []) or 'none'}",
            f"- consensus distance {_fmt(final.get('consensus_distance'), '.3g')} (largest "
            f"{_fmt(final.get('max_consensus_distance'), '.3g')}); {_fmt(final.get('merges'))} merges; "
            f"{_mb(final.get('bytes_received'))} MB received; {_fmt(final.get('rejected'))} rejected", ""]
    plot = (report.get("files") or {}).get("accuracy_plot") or "accuracy.png"
    out += [f"![accuracy over time]({plot})", "", f"[{plot}]({plot}): accuracy per peer, events, consensus distance.",
            ""]

    out += ["## Expectations", ""]
    exps = report.get("expectations") or []
    if exps:
        out += _table(["expect", "value", "ok"],
                      [[f"`{e.get('expect')}`", _value(e.get("value")), "ok" if e.get("ok") else "**FAIL**"]
                       for e in exps])
    else:
        out += ["(none)", ""]

    out += ["## Peers", ""]
    rows, problems = [], []
    for name, p in (report.get("peers") or {}).items():
        f, led = p.get("final") or {}, p.get("ledger") or {}
        attack = (p.get("attack") or {}).get("mode")
        role = "honest" if p.get("honest", True) else f"attacker ({attack})" if attack else "attacker"
        pid = p.get("peer_id")
        rows.append([name, f"`{pid[:12]}...`" if pid else "-", role, p.get("state", "-"), _fmt(p.get("starts")),
                     _fmt(f.get("test_accuracy"), ".3f"), _fmt(f.get("merges")), _mb(f.get("bytes_received")),
                     _mb(f.get("bytes_sent")), ", ".join(p.get("forks_detected") or []) or "-",
                     f"{_fmt(led.get('valid'))} ({_fmt(led.get('entries'))} entries)"])
        if led.get("problems"):
            problems.append(f"- {name}: {led['problems'][0]}"
                            + (f" (and {len(led['problems']) - 1} more)" if len(led["problems"]) > 1 else ""))
    out += _table(["peer", "peer ID", "role", "state", "starts", "final accuracy", "merges", "MB in", "MB out",
                   "forks detected", "ledger valid"], rows)
    if problems:
        out += ["Ledger problems:", "", *problems, ""]

    out += ["## Events", ""]
    events = report.get("events") or []
    done = {(ev.get("at"), ev.get("action")) for ev in events}
    rows = [[_fmt(ev.get("t"), ".1f"), _fmt(ev.get("at"), "g"), event_label({**ev, "ok": True}),
             "ok" if ev.get("ok", True) else "**FAIL**", ev.get("detail") or ""] for ev in events]
    rows += [["-", _fmt(item.get("at"), "g"), event_label(item), "not reached", "the run ended first"]
             for item in report.get("timeline") or [] if (item.get("at"), item.get("action")) not in done]
    out += _table(["t (s)", "planned (s)", "event", "ok", "detail"], rows) if rows else ["(none)", ""]

    part = report.get("partition") or {}
    out += ["## Data partition", "",
            f"Scheme `{part.get('scheme', '-')}`, seed {_fmt(part.get('seed'))}, digest `{part.get('digest', '-')}` "
            "(the same digest means the same samples on the same peers).", ""]
    if part.get("error"):
        out += [f"The partition could not be summarised: {part['error']}", ""]
    if part.get("shards"):
        out += _histogram(part["shards"])

    files = report.get("files") or {}
    out += ["## Files", ""]
    out += [f"- [{v}]({v})" for v in ("report.json", plot, files.get("ledger"), files.get("peers")) if v]
    path = Path(path)
    try:
        path.write_text("\n".join(out) + "\n")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the summary ({exc.strerror})") from None
    return path


# -- compare -----------------------------------------------------------------------------------

def _groups(keys: list[str]) -> list[str]:
    """A letter per distinct key, in order of first appearance: [x, y, x] -> [A, B, A]."""
    letters: dict[str, str] = {}
    for k in keys:
        letters.setdefault(k, chr(ord("A") + len(letters) % 26))
    return [letters[k] for k in keys]


def compare_runs(outs: list[Path], plot_path: Path) -> tuple[str, list[dict]]:
    """Compare finished runs side by side; write one plot of their honest mean accuracy.

    Args:
        outs: the runs' ``--out`` directories.
        plot_path: where to write the combined PNG (each run one line, each
            run's events faint vertical lines in its colour).

    Returns:
        ``(table, rows)``: a text table (one row per run; the ``timeline``
        and ``data`` columns give runs with identical planned timelines or
        partitions the same letter) and its rows as dicts for ``--format json``.

    Raises:
        UserError: a directory has no readable format-1 report.json.

    Example:
        >>> # table, rows = compare_runs([Path("out/mean"), Path("out/trimmed")], Path("compare.png"))
    """
    reports = [load_report(o) for o in outs]
    labels = [Path(o).name or str(o) for o in outs]
    if len(set(labels)) < len(labels):
        labels = [str(o) for o in outs]
    timelines = _groups([json.dumps(r.get("timeline") or [], sort_keys=True) for r in reports])
    digests = [(r.get("partition") or {}).get("digest") or "" for r in reports]
    rows = []
    for label, out, r, tl in zip(labels, outs, reports, timelines):
        f = r.get("final") or {}
        exps = r.get("expectations") or []
        rows.append({
            "run": label, "dir": str(out), "name": r.get("name"), "peers": len(r.get("peers") or {}),
            "mean_accuracy": f.get("mean_accuracy"), "min_accuracy": f.get("min_accuracy"),
            "peers_alive": f.get("peers_alive"), "ledger_valid": f.get("ledger_valid"),
            "forks": list(f.get("forks") or []), "merges": f.get("merges"),
            "mb_received": round(f["bytes_received"] / 1e6, 3) if isinstance(f.get("bytes_received"), (int, float))
            else None,
            "duration_s": f.get("duration_s", r.get("duration_s")),
            "expectations_passed": sum(bool(e.get("ok")) for e in exps), "expectations": len(exps),
            "ok": bool(r.get("ok")), "partition_digest": (r.get("partition") or {}).get("digest"),
            "timeline": tl, "same_timeline_as": [o for o, t in zip(labels, timelines) if t == tl and o != label],
        })
    header = ["run", "name", "peers", "mean acc", "min acc", "alive", "ledger", "forks", "merges", "MB recv",
              "duration", "expect", "data", "timeline"]
    cells = [[row["run"], row["name"] or "-", str(row["peers"]), _fmt(row["mean_accuracy"], ".3f"),
              _fmt(row["min_accuracy"], ".3f"), _fmt(row["peers_alive"]),
              "valid" if row["ledger_valid"] else "INVALID" if row["ledger_valid"] is False else "-",
              str(len(row["forks"])), _fmt(row["merges"]), _fmt(row["mb_received"], ".1f"),
              f"{_fmt(row['duration_s'], '.0f')} s", f"{row['expectations_passed']}/{row['expectations']}"
              + ("" if row["ok"] else " FAIL"), (row["partition_digest"] or "-")[:10], row["timeline"]]
             for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    left = {0, 1, 6, 12, 13}
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cell, widths))).rstrip()
             for cell in [header, *cells]]
    if len(rows) > 1:
        if len(set(timelines)) == 1:
            lines.append("timelines: identical in every run")
        else:
            groups = {}
            for label, t in zip(labels, timelines):
                groups.setdefault(t, []).append(label)
            lines.append("timelines DIFFER: " + "; ".join(f"{t} = {', '.join(ls)}" for t, ls in groups.items()))
        lines.append("data partitions: " + ("identical in every run" if len(set(digests)) == 1 and digests[0]
                                            else "DIFFER (see the data column)"))
    _plot_compare(labels, reports, plot_path)
    return "\n".join(lines), rows


def _plot_compare(labels: list[str], reports: list[dict], path: Path) -> Path:
    fig = _figure(10, 5)
    ax = fig.subplots()
    for i, (label, r) in enumerate(zip(labels, reports)):
        color = f"C{i % 10}"
        mean = honest_mean_series(r)
        verdict = "PASS" if r.get("ok") else "FAIL"
        name = r.get("name")
        ax.plot([t for t, _ in mean], [a for _, a in mean], color=color, lw=1.8,
                label=f"{label} ({verdict})" if name == label else f"{label}: {name} ({verdict})")
        _mark_events([ax], r.get("events") or [], color=color, alpha=0.3)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel("t (s since the swarm was up)")
    ax.set_ylabel("honest mean test accuracy")
    ax.set_title("scenario runs compared (dotted lines: each run's events)", fontsize=10)
    ax.grid(alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
