"""What ``learnae peer status`` reports, read from a data dir (running or not).

Example:
    >>> info = read_status(Path("~/.learnae").expanduser())
    >>> info.running, info.step, info.accuracy
    (True, 420, 0.93)
    >>> sorted(info.to_json())[:3]
    ['accuracy', 'data_dir', 'last_update']
"""

from __future__ import annotations

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
    )
