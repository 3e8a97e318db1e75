"""The report of a finished run, assembled from what the peers wrote and what the runner measured.

Each peer's metrics records become its ``series`` and ``final`` values, its
ledger is verified, the swarm's ``final`` numbers are summed up, every
``expect`` item is checked against them, and every ledger's entries go into
one ``ledger.car`` (format: docs/scenario-report.md).

Final values are judged over a window, not on one noisy sample
(docs/scenarios.md, "Expectations"): a peer that trained to ``max_steps`` is
judged on its final model (its last sample, taken after the final consensus);
any other peer on the median of its test accuracy over the last
``final_window`` seconds of its samples. The consensus distance likewise: the
last sample when every peer stopped at ``max_steps``, else the median over the
run's last ``final_window`` seconds.

A report never passes while a peer the timeline leaves running did not end
alive (it failed: a non-zero exit, a signal): besides the file's ``expect``
items, every run checks ``peers_alive`` against the peers the timeline leaves
running (:func:`~learnae.scenario.lifecycle.expected_running`), and an
interrupted run is never ``ok``.

Example:
    >>> report = assemble_report(runner.plan, runner.fleet, out=Path("out"), source="s.yaml",
    ...                          started_at=t0, duration_s=92.5, end_reason="duration",
    ...                          events=runner.events, consensus=runner.consensus)
    >>> report.ok, [e.expect for e in report.expectations if not e.ok]
    (True, [])
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Sequence
from pathlib import Path

from learnae.peer.record import MetricsRecord, read_records
from learnae.scenario.fleet import Fleet, RunPeer
from learnae.scenario.lifecycle import expected_running
from learnae.scenario.measurement import partition_summary, verify_ledger, write_union_car
from learnae.scenario.report import (FORMAT, ConsensusSample, ExpectationResult, FinalSummary, LedgerCheck,
                                     PeerFinal, PeerReport, Report, ReportFiles, SeriesPoint)
from learnae.scenario.schema import Plan, Scenario
from learnae.scenario.timeline import FiredEvent

__all__ = ["assemble_report", "evaluate_expectations", "series_point", "peer_final", "final_summary",
           "judged_accuracy", "judged_consensus"]

_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
            "!=": operator.ne}
_ALIVE = ("finished", "stopped")  # states of peers running at the end


def series_point(rec: MetricsRecord, started_at: float | None) -> SeriesPoint:
    """A metrics record as a report sample, its time ``t`` in s since ``started_at`` (unix s)."""
    t = None if rec.time is None else round(rec.time - (started_at or rec.time), 3)
    return SeriesPoint(t=t, step=rec.step, test_accuracy=rec.test_accuracy, val_accuracy=rec.val_accuracy,
                       loss=rec.loss, merges=rec.merges, snapshots=rec.snapshots, bytes_received=rec.bytes_received,
                       bytes_sent=rec.bytes_sent, peers=rec.peers, event=rec.event)


def judged_accuracy(recs: Sequence[MetricsRecord], *, max_steps: int, window_s: float) -> float | None:
    """The test accuracy expectations judge a peer on (None when it has none).

    Its last sample when it trained to ``max_steps`` (the final model, after the final
    consensus: no training moves it any more); otherwise the median of its samples in
    the last ``window_s`` seconds before its last one, so one noisy sample decides nothing.
    """
    samples = [r for r in recs if r.test_accuracy is not None and r.time is not None]
    if not samples:
        return None
    last = samples[-1]
    if max_steps and last.step >= max_steps:
        return last.test_accuracy
    return statistics.median(r.test_accuracy for r in samples if r.time >= last.time - window_s)


def judged_consensus(samples: Sequence[ConsensusSample], final: ConsensusSample | None, *, end_reason: str,
                     window_s: float) -> tuple[float | None, float | None]:
    """``(mean, largest)`` consensus distance as expectations judge it.

    The final sample when the run ended with every peer at ``max_steps`` (their final
    models); otherwise the medians over the samples of the last ``window_s`` seconds
    (the final one included).
    """
    if final is not None and end_reason == "max_steps":
        return final.distance, final.max_distance
    every = [c for c in samples if c.distance is not None]
    if final is not None and final.distance is not None and final not in every:  # the runner keeps it as a sample
        every.append(final)
    if not every:
        return None, None
    end = max(c.t for c in every)
    recent = [c for c in every if c.t >= end - window_s]
    largest = [c.max_distance for c in recent if c.max_distance is not None]
    return statistics.median(c.distance for c in recent), (statistics.median(largest) if largest else None)


def peer_final(rec: MetricsRecord | None, judged: float | None = None) -> PeerFinal:
    """A peer's final values from its last record (all None without one); ``judged``: see :func:`judged_accuracy`."""
    if rec is None:
        return PeerFinal()
    return PeerFinal(step=rec.step, test_accuracy=rec.test_accuracy, merges=rec.merges, snapshots=rec.snapshots,
                     bytes_received=rec.bytes_received, bytes_sent=rec.bytes_sent,
                     announce_latency_s=rec.announce_latency_s, rejected=rec.rejected, judged_accuracy=judged)


def _peer_report(p: RunPeer, names_by_id: dict[str, str], started_at: float | None, s: Scenario) -> PeerReport:
    recs = read_records(p.data_dir) if p.starts else []
    judged = judged_accuracy(recs, max_steps=s.train.max_steps, window_s=s.final_window)
    check, forks = verify_ledger(p.data_dir) if p.starts else (LedgerCheck(), [])
    return PeerReport(
        peer_id=p.peer_id, index=p.plan.index, rule=p.plan.rule, slow=p.plan.slow,
        attack=p.plan.attack.to_fault() if p.plan.attack else None, honest=not p.attacked, state=p.state,
        returncode=p.returncode, starts=p.starts, series=tuple(series_point(r, started_at) for r in recs),
        final=peer_final(recs[-1] if recs else None, judged), ledger=check,
        forks_detected=tuple(sorted(names_by_id.get(a, a) for a in forks)))


def final_summary(peers: dict[str, PeerReport], consensus: tuple[float | None, float | None], duration_s: float,
                  window_s: float | None = None) -> FinalSummary:
    """The swarm's final numbers; accuracies are the judged ones of the honest peers alive at the end.

    Args:
        consensus: the judged ``(mean, largest)`` consensus distance (:func:`judged_consensus`).
    """
    alive = [p for p in peers.values() if p.state in _ALIVE]
    accs = [p.final.judged_accuracy for p in alive if p.honest and p.final.judged_accuracy is not None]
    started = [p for p in peers.values() if p.starts]
    lat = [p.final.announce_latency_s for p in started if p.final.announce_latency_s is not None]
    return FinalSummary(
        mean_accuracy=statistics.mean(accs) if accs else None,
        min_accuracy=min(accs) if accs else None,
        max_accuracy=max(accs) if accs else None,
        peers_alive=len(alive),
        ledger_valid=all(p.ledger.valid for p in started),
        forks=tuple(sorted({f for p in started for f in p.forks_detected})),
        consensus_distance=consensus[0],
        max_consensus_distance=consensus[1],
        merges=sum(p.final.merges or 0 for p in started),
        bytes_received=sum(p.final.bytes_received or 0 for p in started),
        bytes_sent=sum(p.final.bytes_sent or 0 for p in started),
        rejected=sum(p.final.rejected or 0 for p in started),
        announce_latency_s=statistics.median(lat) if lat else None,
        duration_s=round(duration_s, 3),
        window_s=window_s,
    )


def evaluate_expectations(s: Scenario, final: FinalSummary, peers: dict[str, PeerReport], *,
                          until: float | None = None) -> list[ExpectationResult]:
    """Check every ``expect`` item of ``s`` against the run's final values, then the implicit one.

    ``forks_detected: [names]`` holds when every honest started peer not named
    holds a fork proof of each named one; its value is what each of them holds.

    The implicit ``peers_alive == N (implicit: ...)`` holds when every peer the
    timeline leaves running ended alive (finished, or stopped by the runner): a
    peer that failed (a non-zero exit, a signal) can never go unnoticed. It is
    left out when the file already expects ``peers_alive == N`` with that N.

    Args:
        until: when the run ended (s): events planned later never happened.
    """
    out = []
    expected = expected_running(s, until=until)
    explicit = any(e.metric == "peers_alive" and e.op == "==" and e.value == len(expected) for e in s.expect)
    for e in s.expect:
        if e.metric == "forks_detected":
            honest = {n: set(p.forks_detected) for n, p in peers.items()
                      if p.honest and p.starts and n not in e.value}
            ok = bool(honest) and all(set(e.value) <= found for found in honest.values())
            out.append(ExpectationResult(e.text, ok, {n: sorted(f) for n, f in honest.items()}))
            continue
        value = final.metric(e.metric)
        ok = value is not None and _COMPARE[e.op](value, e.value)
        if explicit and e.metric == "peers_alive" and e.op == "==":
            ok = ok and all(peers[n].state in _ALIVE for n in expected if n in peers)
        out.append(ExpectationResult(e.text, bool(ok), value))
    if not explicit:
        down = sorted(n for n in expected if n in peers and peers[n].state not in _ALIVE)
        why = f"{', '.join(down)} did not end alive" if down else "the peers the timeline leaves running"
        out.append(ExpectationResult(f"peers_alive == {len(expected)} (implicit: {why})", not down,
                                     final.peers_alive))
    return out


def assemble_report(plan: Plan, fleet: Fleet, *, out: Path, source: str | None, started_at: float | None,
                    duration_s: float, end_reason: str, events: list[FiredEvent],
                    consensus: list[ConsensusSample], final_consensus: ConsensusSample | None = None) -> Report:
    """The run's :class:`Report`; also writes ``out/ledger.car`` (the union of every peer's ledger).

    Args:
        final_consensus: the consensus sample taken at the end (``final.consensus_distance``).
    """
    s = plan.scenario
    names_by_id = {p.peer_id: n for n, p in fleet.peers.items() if p.peer_id}
    peers = {name: _peer_report(p, names_by_id, started_at, s) for name, p in fleet.peers.items()}
    judged = judged_consensus(consensus, final_consensus, end_reason=end_reason, window_s=s.final_window)
    final = final_summary(peers, judged, duration_s, s.final_window)
    expectations = evaluate_expectations(s, final, peers, until=duration_s)
    blocks = write_union_car(out / "ledger.car", [p.data_dir for p in fleet.peers.values() if p.starts])
    return Report(
        format=FORMAT, name=s.name, source=source, scenario=s.model_dump(mode="json"), seed=s.seed,
        started_at=started_at, duration_s=round(duration_s, 3), end_reason=end_reason,
        partition=partition_summary(plan), timeline=plan.timeline, events=tuple(events), peers=peers,
        consensus=tuple(consensus), final=final, expectations=tuple(expectations),
        ok=all(e.ok for e in expectations) and end_reason != "interrupted", files=ReportFiles(ledger="ledger.car" if blocks else None))
