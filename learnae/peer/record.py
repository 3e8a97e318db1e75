"""``MetricsRecord``: one line of a peer's ``<data-dir>/metrics.jsonl``.

The peer appends a record every ``status_every_s`` (and one tagged with an
``event`` after catch-up and its first two merges); ``learnae peer status`` and
the scenario runner read them back. This module is the one place that knows
the line's keys, so the writer and the readers never drift apart::

    {"time": 1795301063.7, "peer_id": "12D3KooW...", "step": 420, "samples": 13440,
     "loss": 0.21, "accuracy": 0.94, "val_loss": 0.25, "val_accuracy": 0.93,
     "test_loss": 0.3, "test_accuracy": 0.91, "peers": 3, "known_authors": 4, "merges": 40,
     "snapshots": 84, "bytes_received": 5100000, "bytes_sent": 60000, "train_share": 0.71,
     "time_s": {"gather": 3.1, "train": 40.2, ...}, "ledger_seq": 90,
     "announce_latency_s": 0.04, "fetch_latency_s": 0.02, "rejected": 0, "forks": [],
     "faults_dropped": 0, "ledger_authors": 4, "ledger_entries": 812, "ledger_gaps": 0,
     "merges_skipped": 0, "gossiped": 700}

A value that was not measured (or is not finite) is ``null``. Reading is
tolerant: a torn last line (``kill -9`` mid-write) or a line that is not a
JSON object is skipped, a missing key (files of older peers) takes its
default and an unknown key is ignored.

Example:
    >>> append_record(data_dir, MetricsRecord(time=time.time(), step=10, samples=320, loss=0.4))
    >>> last_record(data_dir).step
    10
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "MetricsRecord", "read_records", "last_record", "append_record"]

METRICS_FILE = "metrics.jsonl"
TAIL_BYTES = 65536  # what last_record reads from the end of the file; a record is ~1 KB


@dataclass(frozen=True, slots=True)
class MetricsRecord:
    """One status record of a peer; every field is the JSON key of the same name."""

    time: float | None = None  # unix s when the record was written (None only in a damaged line)
    peer_id: str | None = None  # the writer's libp2p peer ID
    step: int = 0  # training steps taken (cumulative over restarts)
    samples: int = 0  # training samples seen
    loss: float | None = None  # training loss of the last burst of steps
    accuracy: float | None = None  # training accuracy of the last burst, 0-1
    val_loss: float | None = None  # on the peer's own validation slice
    val_accuracy: float | None = None  # 0-1
    test_loss: float | None = None  # on the swarm-wide test split (simulations)
    test_accuracy: float | None = None  # 0-1
    peers: int = 0  # connected peers
    known_authors: int = 0  # authors the peer holds ledger entries of
    merges: int = 0  # merges done
    snapshots: int = 0  # snapshots published
    bytes_received: int = 0  # Bitswap bytes fetched
    bytes_sent: int = 0  # Bitswap bytes served
    train_share: float | None = None  # share (0-1) of wall time since the first step spent training
    time_s: dict[str, float] = field(default_factory=dict)  # phase (reporting.PHASES) -> wall s
    ledger_seq: int | None = None  # seq of the peer's newest own ledger entry (-1: none yet)
    announce_latency_s: float | None = None  # median announcement delay
    fetch_latency_s: float | None = None  # median of the latest snapshot fetches
    rejected: int = 0  # announcements and snapshots rejected
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # reason -> count, e.g. bad-signature
    forks: tuple[str, ...] = ()  # authors the peer holds a fork proof of
    faults_dropped: int = 0  # announcements dropped by injected loss or a partition
    ledger_authors: int = 0  # authors whose chains the ledger holds (this peer included)
    ledger_entries: int = 0  # entries the ledger holds
    ledger_gaps: int = 0  # missing entries that held entries wait for (0: every chain held is complete)
    merges_skipped: int = 0  # merges a robust rule skipped for want of enough neighbours
    gossiped: int = 0  # other authors' entries that gossip delivered first (not ledger sync or gap filling)
    event: str | None = None  # None, "catch-up", "merge-1", "merge-2"

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object of one metrics.jsonl line (non-finite floats -> None).

        ``event`` is present only when set, as the peer has always written it.

        Example:
            >>> MetricsRecord(time=1.0, loss=math.nan).to_json()["loss"] is None
            True
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "event" and value is None:
                continue
            if f.name == "time_s":
                value = {k: _finite(v) for k, v in value.items()}
            elif f.name == "forks":
                value = list(value)
            elif f.name == "rejected_by_reason":
                value = dict(value)
            else:
                value = _finite(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, obj: dict) -> MetricsRecord:
        """Parse one line's object; never raises on a dict.

        A missing key takes the field's default; a value of the wrong type is
        treated as missing; unknown keys are ignored.

        Raises:
            ValueError: ``obj`` is not a dict (not a record at all).

        Example:
            >>> r = MetricsRecord.from_json({"step": 3, "loss": "bad", "new_key": 1})
            >>> r.step, r.loss, r.merges
            (3, None, 0)
        """
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        kw: dict[str, Any] = {}
        for name, parse in _PARSERS.items():
            if name in obj:
                value = parse(obj[name])
                if value is not None:
                    kw[name] = value
        return cls(**kw)


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _phases(v: Any) -> dict[str, float] | None:
    if not isinstance(v, dict):
        return None
    return {str(k): x for k, x in ((k, _float(x)) for k, x in v.items()) if x is not None}


def _counts(v: Any) -> dict[str, int] | None:
    if not isinstance(v, dict):
        return None
    return {str(k): x for k, x in ((k, _int(x)) for k, x in v.items()) if x is not None}


def _ids(v: Any) -> tuple[str, ...] | None:
    if not isinstance(v, list):
        return None
    return tuple(x for x in v if isinstance(x, str))


_KINDS = {"float | None": _float, "int": _int, "int | None": _int, "str | None": _str,
          "dict[str, float]": _phases, "dict[str, int]": _counts, "tuple[str, ...]": _ids}
_PARSERS = {f.name: _KINDS[f.type] for f in fields(MetricsRecord)}


def read_records(data_dir: Path) -> list[MetricsRecord]:
    """Every record of ``<data-dir>/metrics.jsonl``, oldest first (bad or torn lines skipped).

    Returns an empty list when the file does not exist (yet).

    Example:
        >>> [r.test_accuracy for r in read_records(Path("runs/churn/peers/peer-0"))][-1]
        0.93
    """
    try:
        lines = (Path(data_dir) / METRICS_FILE).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    return [r for r in map(_parse_line, lines) if r is not None]


def last_record(data_dir: Path) -> MetricsRecord | None:
    """The newest record of ``<data-dir>/metrics.jsonl``, reading only the file's tail.

    A torn last line (as after ``kill -9``) is skipped. None when there is no
    file or no valid record in its last :data:`TAIL_BYTES`.
    """
    try:
        with open(Path(data_dir) / METRICS_FILE, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        record = _parse_line(line)
        if record is not None:
            return record
    return None


def append_record(data_dir: Path, record: MetricsRecord) -> None:
    """Append ``record`` as one line to ``<data-dir>/metrics.jsonl`` (created if missing).

    The line is written with a single ``write``, so a reader sees at most one
    torn line, the last.
    """
    line = json.dumps(record.to_json(), allow_nan=False) + "\n"
    fd = os.open(Path(data_dir) / METRICS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line)


def _parse_line(line: bytes) -> MetricsRecord | None:
    try:
        return MetricsRecord.from_json(json.loads(line))
    except ValueError:  # not JSON (a torn line), or JSON but not an object
        return None
