"""``learnae scenario run``: real peer processes, a timeline of faults, a report.

The runner starts every peer of the plan as a real ``learnae peer start``
process (:mod:`learnae.scenario.fleet`), the first one as everybody's
bootstrap peer. t = 0 is the moment every peer started at t = 0 printed its
address. Then, every quarter second, it fires the timeline items that are due
(:mod:`learnae.scenario.timeline`):

* ``kill`` (SIGKILL), ``pause``/``resume`` (SIGSTOP/SIGCONT), ``leave`` (SIGINT:
  a graceful leave) act on the processes;
* ``restart`` and ``join`` start a process (same data dir for a restart, so it
  resumes from its checkpoint) bootstrapping from a live peer;
* ``partition``/``heal``, ``slow`` and ``attack`` rewrite the peers' faults files,
  which the peers re-read (see :mod:`learnae.peer.faults`); network latency, jitter
  and loss are in those files from the start.

Every peer evaluates its model on the held-out test split every ``sample_every``
seconds (its metrics.jsonl); the runner also reads the peers' checkpoints to
measure how far apart their models are (:mod:`learnae.scenario.measurement`).
The run ends at ``duration``; when every peer has exited at ``max_steps``; when
every running peer's own records say it reached ``max_steps`` and
:data:`FINISH_GRACE_S` passed for its final consensus and leave (a peer that
hangs while finishing does not hold the run to ``duration``); or when the
honest peers' mean accuracy reaches ``stop_at_accuracy``. Then every peer still
running leaves gracefully, every ledger is verified, and the report is
assembled (:mod:`learnae.scenario.assembly`) and written: report.json,
accuracy.png, report.md (docs/scenario-report.md).

Ctrl-C (SIGINT, SIGTERM or SIGHUP to the runner) ends the run the same way
with ``end_reason: interrupted``: the peers leave (SIGKILL after
:data:`INTERRUPT_STOP_S`, or at once on a second Ctrl-C), the partial report is
written, and :func:`run_scenario` raises ``KeyboardInterrupt`` (the CLI exits
130). Peers run in their own sessions, so a terminal's Ctrl-C reaches the
runner only and each peer is told to leave exactly once. Every process started
is killed on any other error.

Example:
    >>> report = run_scenario(load_scenario("scenarios/churn.yaml"), Path("runs/churn"))
    >>> report.ok, report.final.mean_accuracy
    (True, 0.93)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import statistics
import time
from pathlib import Path

from learnae.errors import UserError
from learnae.fsutil import prepare_dir
from learnae.scenario.assembly import assemble_report
from learnae.scenario.fleet import SIGNALS, Fleet, RunPeer
from learnae.scenario.markdown import write_markdown
from learnae.scenario.measurement import consensus_sample, honest_accuracies, live_records
from learnae.scenario.plot import plot_accuracy
from learnae.scenario.report import ConsensusSample, Report, write_report
from learnae.scenario.schema import Plan, Scenario, plan as make_plan
from learnae.scenario.timeline import (AttackAction, FiredEvent, HealAction, PartitionAction, PeerAction,
                                       SlowAction, TimelineItem)

__all__ = ["run_scenario", "Runner", "TICK_S", "FINISH_GRACE_S", "INTERRUPT_STOP_S"]

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often due timeline items are fired and exited peers noticed
# A peer at max_steps waits up to 60 s for its neighbours' final snapshots (FINISH_WAIT_S of
# learnae.peer.runtime), merges them, serves the result 3 s and leaves: give it that, and some.
FINISH_GRACE_S = 90.0
INTERRUPT_STOP_S = 10.0  # after Ctrl-C: how long the peers get to leave before SIGKILL


class Runner:
    """Drives one run of a plan; see the module docstring.

    Attributes:
        fleet: the peer processes and their faults files.
        events: every timeline item fired so far.
        consensus: every consensus-distance sample so far.
    """

    def __init__(self, plan: Plan, out: Path, *, source: str | None = None, progress: bool = True,
                 env: dict | None = None):
        self.plan, self.out, self.source, self.progress = plan, Path(out), source, progress
        self.fleet = Fleet(plan, self.out / "peers", env=env)
        self.events: list[FiredEvent] = []
        self.consensus: list[ConsensusSample] = []
        self.t0: float | None = None  # monotonic s at t = 0
        self.started_at: float | None = None  # unix s at t = 0
        self.duration_s = 0.0
        self.end_reason = "duration"
        self.finish_by: float | None = None  # t by which peers at max_steps must have exited

    @property
    def peers(self) -> dict[str, RunPeer]:
        return self.fleet.peers

    def now(self) -> float:
        """s since t = 0 (0 before it)."""
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def start(self) -> None:
        """Start the peers planned for t = 0, wait until all of them printed their address and train; t = 0."""
        self.fleet.start_initial()
        self.t0 = time.monotonic()
        self.started_at = time.time()

    def fire(self, item: TimelineItem) -> FiredEvent:
        """Carry out one timeline item now; return (and record) what happened.

        The event's time is taken before it is carried out: a resumed peer may write a
        record within a millisecond of SIGCONT, and a restart takes seconds."""
        fleet, t = self.fleet, round(self.now(), 3)
        problems: list[str] = []
        if isinstance(item, PeerAction):
            if item.action in SIGNALS:  # kill, pause, resume, leave: signals to running processes
                problems = fleet.signal(item.peers, item.action)
            else:  # restart, join
                problems = fleet.start_again(item.peers)
        elif isinstance(item, PartitionAction):
            fleet.partition([list(g) for g in item.groups])
        elif isinstance(item, HealAction):
            fleet.partition(None)
        elif isinstance(item, SlowAction):
            fleet.set_slow(item.factors)
        elif isinstance(item, AttackAction):
            fleet.set_attacks(item.modes)
        event = FiredEvent(t, item, ok=not problems, detail="; ".join(problems))
        self.events.append(event)
        log.info("t=%.1fs %s %s", event.t, item.action, event.detail)
        return event

    def sample_consensus(self, *, alive_only: bool = True) -> ConsensusSample | None:
        """Measure the consensus distance now and keep the sample."""
        sample = consensus_sample(self.fleet, self.now(), alive_only=alive_only)
        if sample is not None:
            self.consensus.append(sample)
        return sample

    def run(self) -> Report:
        """Start, drive the timeline to the end, stop every peer; assemble and write the report.

        On Ctrl-C (or SIGTERM, SIGHUP) the peers leave and the partial report is written
        all the same, with ``end_reason`` ``interrupted``; a second Ctrl-C while they leave
        kills them, a third while the report is written stops that too (then it raises).
        """
        from rich.console import Console

        console = Console(stderr=True, soft_wrap=True)
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            try:
                self._drive(console)
                self.duration_s = self.now()
                self.fleet.stop_all()
            except KeyboardInterrupt:
                self.end_reason = "interrupted"
                self.duration_s = self.now()
                console.print("interrupted: the peers leave, then the partial report is written "
                              "(Ctrl-C again to stop the peers at once)")
                try:
                    self.fleet.stop_all(INTERRUPT_STOP_S)
                except KeyboardInterrupt:
                    self.fleet.kill_all()
            return self.report()
        except BaseException:
            self.fleet.kill_all()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _drive(self, console) -> None:
        """Start the peers and fire the timeline until the run ends; set :attr:`end_reason`."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        s = self.plan.scenario
        pending = list(self.plan.timeline)
        console.print(f"[bold]{s.name}[/]: starting {sum(p.plan.start for p in self.peers.values())} peers "
                      f"(data dirs under {self.out / 'peers'})")
        self.start()
        next_sample = 0.0
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), console=console, disable=not self.progress) as bar:
            task = bar.add_task(s.name, total=s.duration, info="")
            while True:
                now = self.now()
                while pending and pending[0].at <= now:
                    ev = self.fire(pending.pop(0))
                    peers = " ".join(ev.item.peers) if isinstance(ev.item, PeerAction) else ""
                    bar.console.print(f"t={ev.t:.1f}s {ev.action} {peers}{' ' + ev.detail if ev.detail else ''}")
                for p in self.fleet.reap():
                    bar.console.print(f"[red]{p.name} exited with {p.returncode}; "
                                      f"its log: {p.data_dir / 'peer.log'}[/]")
                if now >= next_sample:
                    next_sample = now + s.sample_every
                    self.sample_consensus()
                    records = live_records(self.fleet)
                    accs = honest_accuracies(self.fleet, records)
                    steps = [recs[-1].step for recs in records.values() if recs]
                    info = (f"{sum(p.alive for p in self.peers.values())} alive, "
                            f"acc {statistics.mean(accs):.3f}" if accs else "waiting for the first evaluations")
                    if steps:
                        info += f", steps {min(steps)}-{max(steps)}"
                    bar.update(task, completed=min(now, s.duration), info=info)
                    if s.stop_at_accuracy is not None and accs and statistics.mean(accs) >= s.stop_at_accuracy:
                        self.end_reason = "stop_at_accuracy"
                        break
                    if not pending and self._all_at_max_steps(records):
                        if self.finish_by is None:
                            self.finish_by = now + FINISH_GRACE_S
                            bar.console.print(f"t={now:.1f}s every running peer reached max_steps "
                                              f"({s.train.max_steps}); waiting up to {FINISH_GRACE_S:.0f} s for "
                                              "their final consensus")
                        elif now >= self.finish_by:
                            self.end_reason = "max_steps"
                            break
                if now >= s.duration:
                    self.end_reason = "duration"
                    break
                if not pending and not any(p.alive for p in self.peers.values()):
                    self.end_reason = "max_steps"
                    break
                time.sleep(TICK_S)
            bar.update(task, completed=s.duration)  # the run is over, whatever ended it

    def _all_at_max_steps(self, records: dict) -> bool:
        """Whether every running peer's own newest record is at ``max_steps`` (never with max_steps 0)."""
        target = self.plan.scenario.train.max_steps
        running = [n for n, p in self.peers.items() if p.alive]
        return bool(target and running) and all(records.get(n) and records[n][-1].step >= target for n in running)

    def report(self) -> Report:
        """Assemble the report and write report.json, accuracy.png and report.md under ``out``."""
        final_consensus = self.sample_consensus(alive_only=False)
        report = assemble_report(self.plan, self.fleet, out=self.out, source=self.source,
                                 started_at=self.started_at, duration_s=self.duration_s,
                                 end_reason=self.end_reason, events=self.events, consensus=self.consensus,
                                 final_consensus=final_consensus)
        write_report(report, self.out / "report.json")
        plot_accuracy(report, self.out / report.files.accuracy_plot)
        write_markdown(report, self.out / report.files.summary)
        return report


def run_scenario(scenario: Scenario, out: Path | None, *, source: str | None = None, progress: bool = True,
                 env: dict | None = None) -> Report:
    """Run ``scenario`` and write its report under ``out``; return the report.

    Args:
        out: a new or empty directory [default: ``scenario-out/<name>-<time>``].
        source: the scenario file, named in the report.
        progress: show a progress bar on stderr.
        env: extra environment variables of every peer process.

    Raises:
        UserError: ``out`` exists and is not empty (a run never reuses data dirs), or cannot be written.
        PeerStartError: a peer did not start (every process started is killed).
        KeyboardInterrupt: Ctrl-C, SIGTERM or SIGHUP; the partial report was written first
            (``end_reason`` ``interrupted``), unless a third Ctrl-C stopped that too.

    Example:
        >>> run_scenario(load_scenario("scenarios/quickstart.yaml"), Path("runs/q"), progress=False).ok
        True
    """
    if out is None:
        out = Path("scenario-out") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: not an empty directory; a run starts fresh peers, so pick a new directory")
    prepare_dir(out, what="--out")
    # a peer that fails leaves its traceback in its peer.log
    env = {"LEARNAE_LOG": os.environ.get("LEARNAE_LOG", "warning,learnae.cli=debug"), **(env or {})}
    runner = Runner(make_plan(scenario), out.resolve(), source=source, progress=progress, env=env)
    report = runner.run()
    _print_summary(report, out)
    if report.end_reason == "interrupted":
        raise KeyboardInterrupt
    return report


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_summary(report: Report, out: Path) -> None:
    f = report.final
    acc = "n/a" if f.mean_accuracy is None else f"{f.mean_accuracy:.3f} (min {f.min_accuracy:.3f})"
    print(f"{report.name}: {report.verdict} after {report.duration_s:.0f} s "
          f"({report.end_reason}); mean accuracy {acc}; {f.peers_alive} peers alive; "
          f"ledgers {'valid' if f.ledger_valid else 'INVALID'}; forks {', '.join(f.forks) or 'none'}")
    for e in report.expectations:
        print(f"  [{'ok' if e.ok else 'FAIL'}] {e.expect}  (value: {json.dumps(e.value, default=str)})")
    print(f"report: {out / 'report.json'}")
    print(f"plot:   {out / report.files.accuracy_plot}")
    print(f"ledger: {out / 'ledger.car'}")
