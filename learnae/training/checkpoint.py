"""Save and restore a :class:`~learnae.training.adapter.KerasTrainer` atomically.

A checkpoint is one safetensors file (no pickle): ``weights/NNN`` tensors,
``optimizer/NNN`` tensors, and string metadata holding the trainer's progress
(step, samples, data position), a digest of the tensor specs (so a checkpoint of
another model is refused) and whatever the caller adds (the peer runtime stores
its ledger position there). It is written with :func:`learnae.fsutil.atomic_write`,
so after ``kill -9`` the file is the previous checkpoint or the new one.

Example:
    >>> save_checkpoint(trainer, data_dir / "checkpoint.safetensors", {"ledger_seq": "12"})  # doctest: +SKIP
    >>> load_checkpoint(trainer, data_dir / "checkpoint.safetensors")["ledger_seq"]           # doctest: +SKIP
    '12'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from learnae.errors import StoreError, UserError
from learnae.fsutil import atomic_write

__all__ = ["CheckpointMismatchError", "save_checkpoint", "load_checkpoint", "specs_digest"]

FORMAT = "learnae-checkpoint/1"
_RESERVED = ("format", "progress", "specs_sha256")


class CheckpointMismatchError(UserError):
    """The checkpoint on disk belongs to a different model than the one configured."""


def specs_digest(specs) -> str:
    """sha256 (hex) of the ``(name, shape, dtype)`` list, to recognise a model's checkpoints."""
    canon = json.dumps([[n, list(s), d] for n, s, d in specs], separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def save_checkpoint(trainer, path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write the trainer's weights, optimizer state and progress to ``path`` atomically.

    Args:
        trainer: a ``KerasTrainer``.
        path: target file (parents are created).
        metadata: extra string key/values stored alongside (not the reserved
            ``format``, ``progress``, ``specs_sha256``).
    """
    from safetensors.numpy import save

    extra = dict(metadata or {})
    for key in _RESERVED:
        if key in extra:
            raise ValueError(f"checkpoint metadata key {key!r} is reserved")
    with trainer._lock:  # one consistent view: no step may run in between
        weights = trainer.get_weights()
        opt = trainer.get_optimizer_state()
        progress = trainer.get_progress()
    tensors = {f"weights/{i:04d}": np.ascontiguousarray(a) for i, a in enumerate(weights)}
    tensors.update({f"optimizer/{i:04d}": np.ascontiguousarray(a).reshape(np.shape(a)) for i, a in enumerate(opt)})
    meta = {
        **{k: str(v) for k, v in extra.items()},
        "format": FORMAT,
        "progress": json.dumps(progress, sort_keys=True),
        "specs_sha256": specs_digest(trainer.tensor_specs()),
    }
    atomic_write(Path(path), save(tensors, metadata=meta))


def load_checkpoint(trainer, path: Path) -> dict[str, str]:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``trainer``.

    Returns:
        The caller's metadata (without the reserved keys).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        CheckpointMismatchError: the checkpoint is for a different model.
        StoreError: the file is damaged or not a learnae checkpoint.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
        progress = json.loads(meta["progress"])
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own types on garbage
        raise StoreError(f"checkpoint {path} is damaged ({exc}); delete it to start from the swarm") from exc
    if meta.get("specs_sha256") != specs_digest(trainer.tensor_specs()):
        raise CheckpointMismatchError(
            f"checkpoint {path} was written for a different model: use the same --model "
            "or a fresh --data-dir"
        )
    weights = [tensors[k] for k in sorted(k for k in tensors if k.startswith("weights/"))]
    opt = [tensors[k] for k in sorted(k for k in tensors if k.startswith("optimizer/"))]
    try:
        with trainer._lock:
            trainer.set_weights(weights)
            trainer.set_optimizer_state(opt)
            trainer.set_progress(progress)
    except (ValueError, KeyError) as exc:
        raise StoreError(f"checkpoint {path} is damaged ({exc}); delete it to start from the swarm") from exc
    return {k: v for k, v in meta.items() if k not in _RESERVED}
