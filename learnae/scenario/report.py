"""report.json, typed: what a scenario run measured (format 1, docs/scenario-report.md).

The runner assembles a :class:`Report` (:mod:`learnae.scenario.assembly`) and
writes it with :func:`write_report`; the plot (:mod:`~learnae.scenario.plot`),
report.md (:mod:`~learnae.scenario.markdown`) and ``learnae scenario compare``
(:mod:`~learnae.scenario.compare`) read it back with :func:`load_report`, so a
run can be re-plotted or compared long after its peers are gone. Every record
has ``to_json()`` (the exact format-1 object, same keys in the same order) and
``from_json()``, which is tolerant like the plot always was: a missing value
is None (or empty), so reports of older runs keep loading.

Imports stay light: no TensorFlow, no libp2p, no matplotlib.

Example:
    >>> report = load_report(Path("scenario-out/churn"))
    >>> report.ok, report.final.mean_accuracy, report.peers["peer-2"].starts
    (True, 0.93, 2)
    >>> Report.from_json(report.to_json()) == report
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union

from learnae.errors import UserError
from learnae.fsutil import atomic_write
from learnae.peer.faults import Attack
from learnae.scenario.timeline import FiredEvent, TimelineItem, item_from_json

__all__ = ["FORMAT", "Report", "PeerReport", "SeriesPoint", "PeerFinal", "LedgerCheck", "FinalSummary",
           "ExpectationResult", "ConsensusSample", "PartitionSummary", "ShardSummary", "ReportFiles",
           "load_report", "write_report", "format_value"]

FORMAT = 1
_REQUIRED = {"name": str, "peers": dict, "final": dict}

# what an expectation measured: a number, a bool (ledger_valid), {peer: [fork authors]}, or nothing
ExpectValue = Union[float, int, bool, dict, None]


# -- tolerant readers of JSON values --------------------------------------------------------

def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v if isinstance(v, int) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(x for x in _list(v) if isinstance(x, str))


def _dump(value: Any) -> Any:
    """A record field as JSON: records by their to_json, tuples as lists."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


class _Record:
    """``to_json``: every field under its own name, in field order."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f in fields(self)}


# -- the records ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SeriesPoint(_Record):
    """One metrics record of a peer, as the report keeps it."""

    t: float | None  # s since the swarm was up
    step: int | None = None
    test_accuracy: float | None = None  # 0-1
    val_accuracy: float | None = None  # 0-1
    loss: float | None = None  # training loss
    merges: int | None = None  # cumulative
    snapshots: int | None = None  # cumulative
    bytes_received: int | None = None  # cumulative
    bytes_sent: int | None = None  # cumulative
    peers: int | None = None  # connected
    event: str | None = None  # None, "catch-up", "merge-1", "merge-2"

    @classmethod
    def from_json(cls, obj: Any) -> SeriesPoint:
        d = _dict(obj)
        return cls(t=_num(d.get("t")), step=_int(d.get("step")), test_accuracy=_num(d.get("test_accuracy")),
                   val_accuracy=_num(d.get("val_accuracy")), loss=_num(d.get("loss")), merges=_int(d.get("merges")),
                   snapshots=_int(d.get("snapshots")), bytes_received=_int(d.get("bytes_received")),
                   bytes_sent=_int(d.get("bytes_sent")), peers=_int(d.get("peers")), event=_str(d.get("event")))


@dataclass(frozen=True, slots=True)
class PeerFinal(_Record):
    """A peer's last metrics record (all None when it never wrote one), and the accuracy it is judged on."""

    step: int | None = None
    test_accuracy: float | None = None  # 0-1, of the last sample
    merges: int | None = None
    snapshots: int | None = None
    bytes_received: int | None = None
    bytes_sent: int | None = None
    announce_latency_s: float | None = None
    rejected: int = 0  # announcements and snapshots rejected
    # 0-1: what expectations judge: its final model's (after max_steps), else the median over the final window
    judged_accuracy: float | None = None

    @classmethod
    def from_json(cls, obj: Any) -> PeerFinal:
        d = _dict(obj)
        return cls(step=_int(d.get("step")), test_accuracy=_num(d.get("test_accuracy")), merges=_int(d.get("merges")),
                   snapshots=_int(d.get("snapshots")), bytes_received=_int(d.get("bytes_received")),
                   bytes_sent=_int(d.get("bytes_sent")), announce_latency_s=_num(d.get("announce_latency_s")),
                   rejected=_int(d.get("rejected")) or 0, judged_accuracy=_num(d.get("judged_accuracy")))


@dataclass(frozen=True, slots=True)
class LedgerCheck(_Record):
    """A peer's own ledger, verified at the end of the run."""

    valid: bool | None = None  # None: the peer never started
    entries: int = 0
    problems: tuple[str, ...] = ()  # the first 20

    @classmethod
    def from_json(cls, obj: Any) -> LedgerCheck:
        d = _dict(obj)
        return cls(valid=_bool(d.get("valid")), entries=_int(d.get("entries")) or 0, problems=_strs(d.get("problems")))


@dataclass(frozen=True, slots=True)
class PeerReport(_Record):
    """One peer's results (``peers.<name>``)."""

    peer_id: str | None  # None: never started
    index: int | None  # shard index
    rule: str | None  # merge rule
    slow: float | None  # compute slowdown factor at the start
    attack: Attack | None  # what it started with
    honest: bool  # False when it attacked at any time
    state: str  # at the end: finished, running, stopped, killed, left, paused, failed, never-started
    returncode: int | None  # the process's exit code
    starts: int  # 1 + restarts
    series: tuple[SeriesPoint, ...] = ()
    final: PeerFinal = PeerFinal()
    ledger: LedgerCheck = LedgerCheck()
    forks_detected: tuple[str, ...] = ()  # names (or IDs) of authors it holds fork proofs of

    @classmethod
    def from_json(cls, obj: Any) -> PeerReport:
        d = _dict(obj)
        attack = d.get("attack")
        try:
            attack = Attack.from_json(attack) if attack is not None else None
        except ValueError:
            attack = None
        honest = _bool(d.get("honest"))
        return cls(peer_id=_str(d.get("peer_id")), index=_int(d.get("index")), rule=_str(d.get("rule")),
                   slow=_num(d.get("slow")), attack=attack, honest=True if honest is None else honest,
                   state=_str(d.get("state")) or "-", returncode=_int(d.get("returncode")),
                   starts=_int(d.get("starts")) or 0,
                   series=tuple(SeriesPoint.from_json(p) for p in _list(d.get("series"))),
                   final=PeerFinal.from_json(d.get("final")), ledger=LedgerCheck.from_json(d.get("ledger")),
                   forks_detected=_strs(d.get("forks_detected")))


@dataclass(frozen=True, slots=True)
class FinalSummary(_Record):
    """The swarm's final numbers (``final``); ``expect`` items compare them by name."""

    mean_accuracy: float | None = None  # of the judged accuracies of the honest peers alive at the end, 0-1
    min_accuracy: float | None = None
    max_accuracy: float | None = None
    peers_alive: int | None = None  # finished or stopped by the runner
    ledger_valid: bool | None = None  # every started peer's ledger verifies
    forks: tuple[str, ...] = ()  # names with a fork proof in any ledger
    consensus_distance: float | None = None  # mean L2 distance of the models to their average, judged as accuracy
    max_consensus_distance: float | None = None
    merges: int | None = None  # summed over all peers
    bytes_received: int | None = None  # summed
    bytes_sent: int | None = None  # summed
    rejected: int | None = None  # summed
    announce_latency_s: float | None = None  # median over peers
    duration_s: float | None = None
    window_s: float | None = None  # the final window the judged values are medians over (s)

    def metric(self, name: str) -> Any:
        """The value an expectation on ``name`` compares (None for an unknown name)."""
        return getattr(self, name, None) if name in _FINAL_NAMES else None

    @classmethod
    def from_json(cls, obj: Any) -> FinalSummary:
        d = _dict(obj)
        return cls(mean_accuracy=_num(d.get("mean_accuracy")), min_accuracy=_num(d.get("min_accuracy")),
                   max_accuracy=_num(d.get("max_accuracy")), peers_alive=_int(d.get("peers_alive")),
                   ledger_valid=_bool(d.get("ledger_valid")), forks=_strs(d.get("forks")),
                   consensus_distance=_num(d.get("consensus_distance")),
                   max_consensus_distance=_num(d.get("max_consensus_distance")), merges=_int(d.get("merges")),
                   bytes_received=_int(d.get("bytes_received")), bytes_sent=_int(d.get("bytes_sent")),
                   rejected=_int(d.get("rejected")), announce_latency_s=_num(d.get("announce_latency_s")),
                   duration_s=_num(d.get("duration_s")), window_s=_num(d.get("window_s")))


_FINAL_NAMES = frozenset(f.name for f in fields(FinalSummary))


@dataclass(frozen=True, slots=True)
class ExpectationResult(_Record):
    """One ``expect`` item checked."""

    expect: str  # its text, e.g. "mean_accuracy >= 0.9"
    ok: bool
    value: ExpectValue = None  # what was measured

    @classmethod
    def from_json(cls, obj: Any) -> ExpectationResult:
        d = _dict(obj)
        value = d.get("value")
        return cls(expect=str(d.get("expect", "")), ok=d.get("ok") is True,
                   value=value if isinstance(value, (int, float, bool, dict)) else None)


@dataclass(frozen=True, slots=True)
class ConsensusSample(_Record):
    """How far apart the peers' models were at ``t``."""

    t: float  # s since the swarm was up
    distance: float | None  # mean L2 distance of the models to their average
    max_distance: float | None  # the largest one
    peers: int  # models compared

    @classmethod
    def from_json(cls, obj: Any) -> ConsensusSample | None:
        d = _dict(obj)
        t = _num(d.get("t"))
        return None if t is None else cls(t, _num(d.get("distance")), _num(d.get("max_distance")),
                                          _int(d.get("peers")) or 0)


@dataclass(frozen=True, slots=True)
class ShardSummary(_Record):
    """One peer's training shard."""

    index: int | None
    samples: int | None
    classes: dict[str, int] = field(default_factory=dict)  # label -> samples

    @classmethod
    def from_json(cls, obj: Any) -> ShardSummary:
        d = _dict(obj)
        classes = {str(k): n for k, v in _dict(d.get("classes")).items() if (n := _int(v)) is not None}
        return cls(index=_int(d.get("index")), samples=_int(d.get("samples")), classes=classes)


@dataclass(frozen=True, slots=True)
class PartitionSummary:
    """The data partition: equal digests mean the same samples on the same peers."""

    scheme: str | None  # iid, dirichlet:ALPHA or classes:K
    seed: int | None
    digest: str | None  # SHA-256 hex over every shard in peer order; None with an error
    shards: dict[str, ShardSummary] = field(default_factory=dict)  # by peer name
    error: str | None = None  # why it could not be summarised (the key is left out when None)

    def to_json(self) -> dict[str, Any]:
        out = {"scheme": self.scheme, "seed": self.seed, "digest": self.digest, "shards": _dump(self.shards)}
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, obj: Any) -> PartitionSummary:
        d = _dict(obj)
        return cls(scheme=_str(d.get("scheme")), seed=_int(d.get("seed")), digest=_str(d.get("digest")),
                   shards={str(n): ShardSummary.from_json(s) for n, s in _dict(d.get("shards")).items()},
                   error=_str(d.get("error")))


@dataclass(frozen=True, slots=True)
class ReportFiles(_Record):
    """The run's other files, relative to its directory."""

    accuracy_plot: str = "accuracy.png"
    summary: str = "report.md"
    ledger: str | None = None  # "ledger.car"; None when no peer wrote an entry
    peers: str = "peers/"

    @classmethod
    def from_json(cls, obj: Any) -> ReportFiles:
        d = _dict(obj)
        return cls(accuracy_plot=_str(d.get("accuracy_plot")) or "accuracy.png",
                   summary=_str(d.get("summary")) or "report.md", ledger=_str(d.get("ledger")),
                   peers=_str(d.get("peers")) or "peers/")


@dataclass(frozen=True, slots=True)
class Report(_Record):
    """A whole report.json."""

    format: int
    name: str
    source: str | None  # the scenario file that was run
    scenario: dict[str, Any]  # the validated scenario as JSON (older runs: older schemas)
    seed: int | None
    started_at: float | None  # unix s of t = 0
    duration_s: float | None  # t at the end of the run
    end_reason: str | None  # duration, max_steps, stop_at_accuracy, interrupted
    partition: PartitionSummary
    timeline: tuple[TimelineItem, ...]  # planned
    events: tuple[FiredEvent, ...]  # as they happened
    peers: dict[str, PeerReport]
    consensus: tuple[ConsensusSample, ...]
    final: FinalSummary
    expectations: tuple[ExpectationResult, ...]
    ok: bool  # every expectation held and the run was not interrupted
    files: ReportFiles = ReportFiles()

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL``, or ``INTERRUPTED`` (Ctrl-C: the report is partial, never a pass)."""
        if self.end_reason == "interrupted":
            return "INTERRUPTED"
        return "PASS" if self.ok else "FAIL"

    @property
    def sample_every_s(self) -> float:
        """The scenario's ``sample_every`` (2 s when unreadable), at least 0.1 s."""
        value = _num(self.scenario.get("sample_every"))
        return max(value or 2.0, 0.1)

    @classmethod
    def from_json(cls, obj: Any) -> Report:
        """Parse a report.json object.

        Raises:
            ValueError: a timeline item or event is malformed.
        """
        d = _dict(obj)
        return cls(
            format=_int(d.get("format")) or 0, name=_str(d.get("name")) or "?", source=_str(d.get("source")),
            scenario=_dict(d.get("scenario")), seed=_int(d.get("seed")), started_at=_num(d.get("started_at")),
            duration_s=_num(d.get("duration_s")), end_reason=_str(d.get("end_reason")),
            partition=PartitionSummary.from_json(d.get("partition")),
            timeline=tuple(item_from_json(i) for i in _list(d.get("timeline"))),
            events=tuple(FiredEvent.from_json(e) for e in _list(d.get("events"))),
            peers={str(n): PeerReport.from_json(p) for n, p in _dict(d.get("peers")).items()},
            consensus=tuple(c for c in map(ConsensusSample.from_json, _list(d.get("consensus"))) if c is not None),
            final=FinalSummary.from_json(d.get("final")),
            expectations=tuple(ExpectationResult.from_json(e) for e in _list(d.get("expectations"))),
            ok=d.get("ok") is True, files=ReportFiles.from_json(d.get("files")))


# -- reading and writing ------------------------------------------------------------------------

def load_report(out: Path) -> Report:
    """Read ``OUT/report.json`` of a finished run.

    Raises:
        UserError: the directory or its report.json is missing, not JSON, or
            not a format-1 scenario report; the message names the directory
            and says how to get a report.

    Example:
        >>> load_report(Path("scenario-out/churn")).final.mean_accuracy
        0.93
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
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run the scenario to rewrite it") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path}: not a scenario report of format {FORMAT} (format: {got!r}); "
                        f"re-run the scenario with this learnae to rewrite it")
    missing = [k for k, kind in _REQUIRED.items() if not isinstance(data.get(k), kind)]
    if missing:
        raise UserError(f"{path}: the report lacks {', '.join(missing)}; re-run the scenario to rewrite it")
    try:
        return Report.from_json(data)
    except ValueError as exc:
        raise UserError(f"{path}: malformed report ({exc}); re-run the scenario to rewrite it") from None


def write_report(report: Report, path: Path) -> Path:
    """Write ``report`` as JSON to ``path`` (atomically); return ``path``."""
    atomic_write(Path(path), json.dumps(report.to_json(), indent=1, default=_json_default).encode())
    return Path(path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # a NumPy scalar
        return o.item()
    return str(o)


def format_value(value: Any, spec: str = "", none: str = "-") -> str:
    """A report value as the plot, report.md and ``compare`` print it: ``none`` for None, yes/no for bools.

    Example:
        >>> format_value(0.93125, ".3f"), format_value(None), format_value(True)
        ('0.931', '-', 'yes')
    """
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)
