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

__all__ = ["Checkpoint", "CHECKPOINT_FILE", "save_checkpoint", "load_checkpoint", "decode_checkpoint"]

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
    atomic_write(path, st_save(tensors, metadata={"learnae": json.dumps(meta, sort_keys=True)}), mode=0o600)
    return path


def load_checkpoint(data_dir: Path) -> Checkpoint | None:
    """Read the checkpoint in ``data_dir``; ``None`` when there is none yet.

    Raises:
        StoreError: the file exists but cannot be read, is not a learnae
            checkpoint, or holds NaN or infinite values (see :func:`decode_checkpoint`).
    """
    path = Path(data_dir) / CHECKPOINT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory in its place, no permission, an I/O error
        raise StoreError(f"{path}: cannot read the checkpoint ({exc.strerror or exc}); "
                         "fix it or move it away to start from the swarm's snapshots") from exc
    return decode_checkpoint(raw, source=str(path))


class _Damaged(ValueError):
    """Internal: what is wrong with checkpoint bytes (becomes a StoreError)."""


def decode_checkpoint(raw: bytes, *, source: str = CHECKPOINT_FILE) -> Checkpoint:
    """Parse checkpoint bytes (what :func:`save_checkpoint` wrote), checking every field.

    A checkpoint whose weights or optimizer state hold NaN or infinity is
    refused: resuming from it would only make the peer fail again, at every restart.

    Args:
        raw: the file's bytes.
        source: what to name in the error (the file's path).

    Raises:
        StoreError: and nothing else, whatever ``raw`` holds; the message names
            ``source`` and the fix (move the file away).
    """
    try:
        return _decode_checkpoint(raw)
    except _Damaged as exc:
        detail = str(exc)
    except Exception as exc:  # noqa: BLE001 - safetensors' and numpy's own errors on garbage
        detail = f"{type(exc).__name__}: {str(exc)[:120]}"
    raise StoreError(f"{source}: damaged checkpoint ({detail}); move it away to start from the swarm's snapshots")


def _count(meta: dict, key: str, lo: int) -> int:
    value = meta.get(key)
    if type(value) is not int or value < lo:  # bool is no count, and int("3") no checkpoint of ours
        raise _Damaged(f"{key} is {str(value)[:40]}, not an integer >= {lo}")
    return value


def _decode_checkpoint(raw) -> Checkpoint:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise _Damaged(f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    try:
        meta = json.loads(_metadata(raw)["learnae"])
    except (KeyError, TypeError, ValueError, RecursionError, AttributeError):
        raise _Damaged("no learnae metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _Damaged(f"not a {_FORMAT} file")
    try:
        tensors = st_load(raw)
    except SafetensorError as exc:
        raise _Damaged(f"tensors do not load: {str(exc)[:120]}") from None
    n_weights, n_optimizer = _count(meta, "n_weights", 0), _count(meta, "n_optimizer", 0)
    if n_weights + n_optimizer > len(tensors):
        raise _Damaged(f"it lists {n_weights} + {n_optimizer} tensors but holds {len(tensors)}")
    try:
        weights = [tensors[f"w/{i:04d}"] for i in range(n_weights)]
        optimizer = [tensors[f"o/{i:04d}"] for i in range(n_optimizer)]
    except KeyError as exc:
        raise _Damaged(f"tensor {exc.args[0]} is missing") from None
    for what, arrays in (("weight", weights), ("optimizer tensor", optimizer)):
        for i, a in enumerate(arrays):
            if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                raise _Damaged(f"{what} {i} holds NaN or infinite values")
    head = meta.get("ledger_head")
    if head is not None and not isinstance(head, str):
        raise _Damaged("ledger_head is not a CID string")
    extra = meta.get("extra") or {}
    if not isinstance(extra, dict):
        raise _Damaged("extra is not an object")
    return Checkpoint(
        step=_count(meta, "step", 0),
        samples=_count(meta, "samples", 0),
        weights=weights,
        optimizer=optimizer,
        ledger_seq=_count(meta, "ledger_seq", -1),
        ledger_head=head,
        extra=dict(extra),
    )


def _metadata(raw: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (its JSON header)."""
    if len(raw) < 8:
        raise _Damaged("file too short")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise _Damaged("header length past end of file")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (ValueError, RecursionError):
        raise _Damaged("header is not JSON") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}
