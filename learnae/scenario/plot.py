"""accuracy.png and the plot of ``scenario compare``, drawn from typed reports.

matplotlib is imported only inside the functions that draw (Agg, never pyplot),
so importing this module stays light.

Example:
    >>> report = load_report(Path("scenario-out/churn"))
    >>> plot_accuracy(report, Path("accuracy.png"))
    PosixPath('accuracy.png')
    >>> honest_mean_series(report)[:2]
    [(0.0, 0.21), (2.0, 0.27)]
"""

from __future__ import annotations

import bisect
import re
import statistics
from pathlib import Path

from learnae.errors import UserError
from learnae.scenario.report import PeerReport, Report, format_value
from learnae.scenario.timeline import FiredEvent, event_label

__all__ = ["honest_mean_series", "plot_accuracy", "plot_compare"]

_ACCURACY_EXPECT = re.compile(r"\s*(mean|min|max)_accuracy\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*")
_DPI = 120


def _points(peer: PeerReport) -> list[tuple[float, float]]:
    return sorted((p.t, p.test_accuracy) for p in peer.series if p.t is not None and p.test_accuracy is not None)


def _segments(points: list[tuple[float, float]], gap_s: float) -> list[list[tuple[float, float]]]:
    """Split a series where no sample came for ``gap_s`` (the peer was killed, left or paused)."""
    out: list[list[tuple[float, float]]] = []
    for p in points:
        if out and p[0] - out[-1][-1][0] <= gap_s:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _gap_s(report: Report) -> float:
    return max(3 * report.sample_every_s, 5.0)


def honest_mean_series(report: Report) -> list[tuple[float, float]]:
    """The honest peers' mean test accuracy over time, as ``[(t, mean), ...]``.

    Peers sample at their own times, so the mean is taken on a grid of
    ``sample_every`` seconds over each honest peer's latest sample no older than
    two intervals: a peer that is down drops out of the mean instead of
    holding its last value.
    """
    step = report.sample_every_s
    series = [s for s in (_points(p) for p in report.peers.values() if p.honest) if s]
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


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global state
    return fig


def _mark_events(axes, events: tuple[FiredEvent, ...], *, label_ax=None, color: str = "0.35",
                 alpha: float = 0.8) -> None:
    """A vertical line per event on every axis; labels (one per instant) on ``label_ax``."""
    by_t: dict[float, list[FiredEvent]] = {}
    for ev in sorted(events, key=lambda e: e.t):
        key = next((k for k in by_t if abs(k - ev.t) < 0.5), ev.t)
        by_t.setdefault(key, []).append(ev)
    for t, evs in by_t.items():
        failed = any(not ev.ok for ev in evs)
        for ax in axes:
            ax.axvline(t, color="tab:red" if failed else color, ls=":", lw=1.0, alpha=alpha, zorder=1)
        if label_ax is not None:
            label_ax.text(t, 0.02, "; ".join(event_label(ev) for ev in evs), transform=label_ax.get_xaxis_transform(),
                          rotation=90, ha="right", va="bottom", fontsize=7, color="tab:red" if failed else "0.2",
                          bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 0.5})


def plot_accuracy(report: Report, path: Path) -> Path:
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
    peers = report.peers
    gap = _gap_s(report)
    colors = [f"C{i}" for i in range(10)]
    few = len(peers) <= 12
    honest_i = 0
    for name, peer in peers.items():
        honest = peer.honest
        color = colors[honest_i % len(colors)] if honest else "0.55"
        honest_i += honest
        label = name if honest else f"{name} (attacker)"
        for k, seg in enumerate(_segments(_points(peer), gap)):
            ax.plot([t for t, _ in seg], [a for _, a in seg], color=color, ls="-" if honest else "--",
                    lw=1.2, alpha=0.85, label=label if few and k == 0 else None, zorder=2)
    mean = honest_mean_series(report)
    if mean:
        ax.plot([t for t, _ in mean], [a for _, a in mean], color="black", lw=2.4, label="honest mean", zorder=3)
    for e in report.expectations:
        m = _ACCURACY_EXPECT.fullmatch(e.expect)
        if m:
            color = "tab:green" if e.ok else "tab:red"
            ax.axhline(float(m[3]), color=color, ls="--", lw=0.9, zorder=1)
            ax.text(1.0, float(m[3]), f" {e.expect.strip()}", transform=ax.get_yaxis_transform(), va="bottom",
                    ha="right", fontsize=7, color=color)
    _mark_events([ax, axc], report.events, label_ax=ax)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.25)
    if few:
        ax.legend(loc="upper left", fontsize=7, ncol=2 if len(peers) > 6 else 1, framealpha=0.8)
    else:
        n_att = sum(not p.honest for p in peers.values())
        handles = [Line2D([], [], color="C0", label=f"honest peers ({len(peers) - n_att})"),
                   Line2D([], [], color="black", lw=2.4, label="honest mean")]
        if n_att:
            handles.append(Line2D([], [], color="0.55", ls="--", label=f"attackers ({n_att})"))
        ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.8)
    verdict = report.verdict
    ax.set_title(f"{report.name}: {verdict} - honest mean accuracy {format_value(report.final.mean_accuracy, '.3f')}, "
                 f"{format_value(report.final.peers_alive)} peers alive at the end", fontsize=10)

    if report.consensus:
        ts = [c.t for c in report.consensus]
        axc.plot(ts, [c.distance for c in report.consensus], color="tab:purple", lw=1.4, label="mean")
        axc.plot(ts, [c.max_distance for c in report.consensus], color="tab:purple", lw=1.0, ls="--",
                 label="largest")
        axc.legend(loc="upper right", fontsize=7)
        axc.set_ylim(bottom=0)
    else:
        axc.text(0.5, 0.5, "no consensus samples", transform=axc.transAxes, ha="center", va="center",
                 fontsize=8, color="0.4")
    axc.set_ylabel("L2 distance\nto the mean", fontsize=8)
    axc.set_xlabel("t (s since the swarm was up)")
    axc.grid(alpha=0.25)
    end = report.duration_s or max([t for t, _ in mean] + [1.0])
    ax.set_xlim(0, float(end))
    return _save(fig, path)


def plot_compare(labels: list[str], reports: list[Report], path: Path) -> Path:
    """One line per run (its honest mean accuracy over t), each run's events faint in its colour.

    Raises:
        UserError: the file cannot be written.
    """
    fig = _figure(10, 5)
    ax = fig.subplots()
    for i, (label, r) in enumerate(zip(labels, reports)):
        color = f"C{i % 10}"
        mean = honest_mean_series(r)
        verdict = r.verdict
        ax.plot([t for t, _ in mean], [a for _, a in mean], color=color, lw=1.8,
                label=f"{label} ({verdict})" if r.name == label else f"{label}: {r.name} ({verdict})")
        _mark_events([ax], r.events, color=color, alpha=0.3)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel("t (s since the swarm was up)")
    ax.set_ylabel("honest mean test accuracy")
    ax.set_title("scenario runs compared (dotted lines: each run's events)", fontsize=10)
    ax.grid(alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
