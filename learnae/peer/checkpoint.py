"""Atomic checkpoints: everything a peer needs to resume after ``kill -9``.

One file, ``<data-dir>/checkpoint.safetensors``, holds the model weights, the
optimizer state (both as named float tensors) and a small JSON record (step,
samples trained, the ledger position) in the safetensors metadata. It is
replaced with :func:`learnae.fsutil.atomic_write`, so after a crash the file is
either the previous checkpoint or the new one, never a mix. safetensors carries
no code: loading a checkpoint never unpickles anything.

Example:
    >>> ckpt = Checkpoint(step=120, samples=3840, weights=[w1, w2], optimizer=[m1, m2],
    ...                   ledger_seq=11, ledger_head="bafyrei...")
    >>> save_checkpoint(data_dir, ckpt)
    >>> load_checkpoint(data_dir).step
    120
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from learnae.errors import StoreError
from learnae.fsutil import atomic_write

__all__ = ["Checkpoint", "CHECKPOINT_FILE", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FILE = "checkpoint.safetensors"
_FORMAT = "learnae-checkpoint/1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A peer's resumable state.

    Attributes:
        step: local training steps taken so far.
        samples: samples trained on so far (cumulative, as in snapshot entries).
        weights: model weights in layer order.
        optimizer: optimizer state tensors in the optimizer's own order.
        ledger_seq: seq of the last entry this peer appended (-1 = none yet).
        ledger_head: CID (string) of that entry, or None.
        extra: small JSON-able values (e.g. the model fingerprint, the swarm).
    """

    step: int
    samples: int
    weights: list[np.ndarray]
    optimizer: list[np.ndarray] = field(default_factory=list)
    ledger_seq: int = -1
    ledger_head: str | None = None
    extra: dict = field(default_factory=dict)


def save_checkpoint(data_dir: Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically and durably; return the file's path."""
    tensors = {f"w/{i:04d}": np.asarray(a, order="C") for i, a in enumerate(ckpt.weights)}
    tensors.update({f"o/{i:04d}": np.asarray(a, order="C") for i, a in enumerate(ckpt.optimizer)})
    meta = {
        "format": _FORMAT,
        "step": ckpt.step,
        "samples": ckpt.samples,
        "n_weights": len(ckpt.weights),
        "n_optimizer": len(ckpt.optimizer),
        "ledger_seq": ckpt.ledger_seq,
        "ledger_head": ckpt.ledger_head,
        "extra": ckpt.extra,
    }
    path = Path(data_dir) / CHECKPOINT_FILE
    atomic_write(path, st_save(tensors, metadata={"learnae": json.dumps(meta, sort_keys=True)}))
    return path


def load_checkpoint(data_dir: Path) -> Checkpoint | None:
    """Read the checkpoint in ``data_dir``; ``None`` when there is none yet.

    Raises:
        StoreError: the file exists but is not a readable learnae checkpoint.
    """
    path = Path(data_dir) / CHECKPOINT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        tensors = st_load(raw)
        meta = json.loads(_metadata(raw)["learnae"])
        if meta.get("format") != _FORMAT:
            raise ValueError(f"unknown format {meta.get('format')!r}")
        weights = [tensors[f"w/{i:04d}"] for i in range(meta["n_weights"])]
        optimizer = [tensors[f"o/{i:04d}"] for i in range(meta["n_optimizer"])]
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise StoreError(
            f"{path}: damaged checkpoint ({exc}); move it away to start from the swarm's snapshots"
        ) from exc
    return Checkpoint(
        step=int(meta["step"]),
        samples=int(meta["samples"]),
        weights=weights,
        optimizer=optimizer,
        ledger_seq=int(meta["ledger_seq"]),
        ledger_head=meta["ledger_head"],
        extra=dict(meta.get("extra") or {}),
    )


def _metadata(raw: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (its JSON header)."""
    if len(raw) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise ValueError("header length past end of file")
    header = json.loads(raw[8 : 8 + n])
    return header.get("__metadata__") or {}
