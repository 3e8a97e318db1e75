"""The report of a finished run, assembled from what the peers wrote and what the runner measured.

Each peer's metrics records become its ``series`` and ``final`` values, its
ledger is verified, the swarm's ``final`` numbers are summed up, every
``expect`` item is checked against them, and every ledger's entries go into
one ``ledger.car`` (format: docs/scenario-report.md).

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
from pathlib import Path

from learnae.peer.record import MetricsRecord, read_records
from learnae.scenario.fleet import Fleet, RunPeer
from learnae.scenario.measurement import partition_summary, verify_ledger, write_union_car
from learnae.scenario.report import (FORMAT, ConsensusSample, ExpectationResult, FinalSummary, LedgerCheck,
                                     PeerFinal, PeerReport, Report, ReportFiles, SeriesPoint)
from learnae.scenario.schema import Plan, Scenario
from learnae.scenario.timeline import FiredEvent

__all__ = ["assemble_report", "evaluate_expectations", "series_point", "peer_final", "final_summary"]

_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
            "!=": operator.ne}
_ALIVE = ("finished", "stopped")  # states of peers running at the end


def series_point(rec: MetricsRecord, started_at: float | None) -> SeriesPoint:
    """A metrics record as a report sample, its time ``t`` in s since ``started_at`` (unix s)."""
    t = None if rec.time is None else round(rec.time - (started_at or rec.time), 3)
    return SeriesPoint(t=t, step=rec.step, test_accuracy=rec.test_accuracy, val_accuracy=rec.val_accuracy,
                       loss=rec.loss, merges=rec.merges, snapshots=rec.snapshots, bytes_received=rec.bytes_received,
                       bytes_sent=rec.bytes_sent, peers=rec.peers, event=rec.event)


def peer_final(rec: MetricsRecord | None) -> PeerFinal:
    """A peer's final values from its last record (all None without one)."""
    if rec is None:
        return PeerFinal()
    return PeerFinal(step=rec.step, test_accuracy=rec.test_accuracy, merges=rec.merges, snapshots=rec.snapshots,
                     bytes_received=rec.bytes_received, bytes_sent=rec.bytes_sent,
                     announce_latency_s=rec.announce_latency_s, rejected=rec.rejected)


def _peer_report(p: RunPeer, names_by_id: dict[str, str], started_at: float | None) -> PeerReport:
    recs = read_records(p.data_dir) if p.starts else []
    check, forks = verify_ledger(p.data_dir) if p.starts else (LedgerCheck(), [])
    return PeerReport(
        peer_id=p.peer_id, index=p.plan.index, rule=p.plan.rule, slow=p.plan.slow,
        attack=p.plan.attack.to_fault() if p.plan.attack else None, honest=not p.attacked, state=p.state,
        returncode=p.returncode, starts=p.starts, series=tuple(series_point(r, started_at) for r in recs),
        final=peer_final(recs[-1] if recs else None), ledger=check,
        forks_detected=tuple(sorted(names_by_id.get(a, a) for a in forks)))


def final_summary(peers: dict[str, PeerReport], consensus: ConsensusSample | None, duration_s: float) -> FinalSummary:
    """The swarm's final numbers; accuracies over the honest peers alive at the end."""
    alive = [p for p in peers.values() if p.state in _ALIVE]
    accs = [p.final.test_accuracy for p in alive if p.honest and p.final.test_accuracy is not None]
    started = [p for p in peers.values() if p.starts]
    lat = [p.final.announce_latency_s for p in started if p.final.announce_latency_s is not None]
    return FinalSummary(
        mean_accuracy=statistics.mean(accs) if accs else None,
        min_accuracy=min(accs) if accs else None,
        max_accuracy=max(accs) if accs else None,
        peers_alive=len(alive),
        ledger_valid=all(p.ledger.valid for p in started),
        forks=tuple(sorted({f for p in started for f in p.forks_detected})),
        consensus_distance=consensus.distance if consensus else None,
        max_consensus_distance=consensus.max_distance if consensus else None,
        merges=sum(p.final.merges or 0 for p in started),
        bytes_received=sum(p.final.bytes_received or 0 for p in started),
        bytes_sent=sum(p.final.bytes_sent or 0 for p in started),
        rejected=sum(p.final.rejected or 0 for p in started),
        announce_latency_s=statistics.median(lat) if lat else None,
        duration_s=round(duration_s, 3),
    )


def evaluate_expectations(s: Scenario, final: FinalSummary, peers: dict[str, PeerReport]) -> list[ExpectationResult]:
    """Check every ``expect`` item of ``s`` against the run's final values.

    ``forks_detected: [names]`` holds when every honest started peer not named
    holds a fork proof of each named one; its value is what each of them holds.
    """
    out = []
    for e in s.expect:
        if e.metric == "forks_detected":
            honest = {n: set(p.forks_detected) for n, p in peers.items()
                      if p.honest and p.starts and n not in e.value}
            ok = bool(honest) and all(set(e.value) <= found for found in honest.values())
            out.append(ExpectationResult(e.text, ok, {n: sorted(f) for n, f in honest.items()}))
            continue
        value = final.metric(e.metric)
        ok = value is not None and _COMPARE[e.op](value, e.value)
        out.append(ExpectationResult(e.text, bool(ok), value))
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
    peers = {name: _peer_report(p, names_by_id, started_at) for name, p in fleet.peers.items()}
    final = final_summary(peers, final_consensus, duration_s)
    expectations = evaluate_expectations(s, final, peers)
    blocks = write_union_car(out / "ledger.car", [p.data_dir for p in fleet.peers.values() if p.starts])
    return Report(
        format=FORMAT, name=s.name, source=source, scenario=s.model_dump(mode="json"), seed=s.seed,
        started_at=started_at, duration_s=round(duration_s, 3), end_reason=end_reason,
        partition=partition_summary(plan), timeline=plan.timeline, events=tuple(events), peers=peers,
        consensus=tuple(consensus), final=final, expectations=tuple(expectations),
        ok=all(e.ok for e in expectations), files=ReportFiles(ledger="ledger.car" if blocks else None))
