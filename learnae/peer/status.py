"""What ``learnae peer status`` reports, read from a data dir (running or not)."""

from __future__ import annotations

import json
from pathlib import Path

from learnae.peer.checkpoint import load_checkpoint
from learnae.peer.lock import holder_pid

__all__ = ["read_status", "METRICS_FILE", "last_metrics"]

METRICS_FILE = "metrics.jsonl"


def last_metrics(data_dir: Path) -> dict | None:
    """The newest record of ``<data-dir>/metrics.jsonl`` (a torn last line is skipped)."""
    path = Path(data_dir) / METRICS_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 65536))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def read_status(data_dir: Path) -> dict:
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
    metrics = last_metrics(data_dir) or {}
    return {
        "data_dir": str(data_dir),
        "running": pid is not None,
        "pid": pid,
        "step": ckpt.step if ckpt else metrics.get("step", 0),
        "samples": ckpt.samples if ckpt else metrics.get("samples", 0),
        "ledger_seq": ckpt.ledger_seq if ckpt else None,
        "ledger_head": ckpt.ledger_head if ckpt else None,
        "accuracy": metrics.get("val_accuracy"),
        "loss": metrics.get("loss"),
        "peers": metrics.get("peers"),
        "merges": metrics.get("merges"),
        "last_update": metrics.get("time"),
    }
