"""What ``learnae peer status`` reports, read from a data dir (running or not).

Example:
    >>> info = read_status(Path("~/.learnae").expanduser())
    >>> info.running, info.step, info.accuracy
    (True, 420, 0.93)
    >>> sorted(info.to_json())[:3]
    ['accuracy', 'data_dir', 'last_update']
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from learnae.peer.checkpoint import load_checkpoint
from learnae.peer.lock import holder_pid
from learnae.peer.record import METRICS_FILE, last_record

__all__ = ["read_status", "PeerStatus", "METRICS_FILE"]


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A peer's data dir at a glance; ``--format json`` prints :meth:`to_json`."""

    data_dir: str
    running: bool  # a process holds the data dir's lock
    pid: int | None  # that process
    step: int  # training steps, from the checkpoint (else the newest metrics record)
    samples: int  # training samples seen, likewise
    ledger_seq: int | None  # the checkpoint's newest own ledger seq
    ledger_head: str | None  # the checkpoint's ledger head CID
    accuracy: float | None  # validation accuracy of the newest metrics record, 0-1
    loss: float | None  # training loss of the newest metrics record
    peers: int | None  # connected peers at the newest record
    merges: int | None  # merges done at the newest record
    last_update: float | None  # unix s of the newest record (None: no record yet)
    ledger_authors: int | None  # authors whose chains the ledger held at the newest record
    ledger_entries: int | None  # entries it held
    ledger_gaps: int | None  # missing entries held ones waited for (0: complete)
    rejected: dict[str, int] | None  # remote data rejected, by reason, at the newest record
    state: str  # "running", "left (<reason>)", "stopped without leaving (crashed or killed)", "never ran"
    test_accuracy: float | None  # accuracy on the held-out test split (all classes), 0-1
    last_update_age_s: float | None  # seconds since the newest record

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``learnae peer status --format json`` prints (keys in field order)."""
        return asdict(self)


def read_status(data_dir: Path) -> PeerStatus:
    """Summarise a peer's data dir: running or not, progress, latest metrics.

    Raises:
        UserError: ``data_dir`` does not exist.
    """
    from learnae.errors import UserError

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: no such data dir; pass the --data-dir a peer ran with")
    pid = holder_pid(data_dir)
    ckpt = load_checkpoint(data_dir)
    rec = last_record(data_dir)
    return PeerStatus(
        data_dir=str(data_dir),
        running=pid is not None,
        pid=pid,
        step=ckpt.step if ckpt else rec.step if rec else 0,
        samples=ckpt.samples if ckpt else rec.samples if rec else 0,
        ledger_seq=ckpt.ledger_seq if ckpt else None,
        ledger_head=ckpt.ledger_head if ckpt else None,
        accuracy=rec.val_accuracy if rec else None,
        loss=rec.loss if rec else None,
        peers=rec.peers if rec else None,
        merges=rec.merges if rec else None,
        last_update=rec.time if rec else None,
        ledger_authors=rec.ledger_authors if rec else None,
        ledger_entries=rec.ledger_entries if rec else None,
        ledger_gaps=rec.ledger_gaps if rec else None,
        rejected=dict(rec.rejected_by_reason) if rec else None,
        state=_state(data_dir, running=pid is not None),
        test_accuracy=rec.test_accuracy if rec else None,
        last_update_age_s=round(time.time() - rec.time, 1) if rec and rec.time else None,
    )


def _state(data_dir: Path, *, running: bool) -> str:
    """Running, left cleanly (the last own ledger entry is a leave), or stopped without leaving."""
    if running:
        return "running"
    from learnae.identity import KEY_FILE, Identity
    from learnae.ledger import Ledger

    if not (data_dir / KEY_FILE).exists() or not (data_dir / "ledger").is_dir():
        return "never ran"
    try:
        author = Identity.load(data_dir / KEY_FILE).peer_id
        with Ledger.open(data_dir, readonly=True) as led:
            own = led.entries(author=author)
    except Exception:  # noqa: BLE001 - a status line must not fail on a damaged data dir
        return "unknown (the ledger cannot be read: run `learnae ledger verify`)"
    if own and own[-1].kind == "leave":
        return f"left ({own[-1].body.get('reason', '?')})"
    return "stopped without leaving (crashed or killed)" if own else "never ran"
