"""Shards: pick this peer's part of a dataset, and move shards as bytes without pickle.

``select_shard(ds, "I/N", partition=..., seed=...)`` cuts the dataset with
:func:`learnae.data.partition.partition` (same arguments, same shards, on every
peer) and returns part ``I``.

Shard bytes are a safetensors file with two tensors, ``x`` (float32) and ``y``
(int64), and one metadata key ``learnae`` holding canonical JSON
(``{"format": "learnae-shard/1", "name": ..., "num_classes": ...}``). A single
sorted key keeps the bytes, and so the CID, deterministic. Decoding bytes that
came from the network checks everything and raises
:class:`InvalidShardError` (a :class:`~learnae.errors.RemoteError`).

Example:
    >>> from learnae.data.datasets import load_dataset
    >>> mine = select_shard(load_dataset("digits"), "1/4", partition="classes:3", seed=0)
    >>> len(set(mine.y.tolist()))
    3
    >>> decode_shard(encode_shard(mine)).class_histogram() == mine.class_histogram()
    True
"""

from __future__ import annotations

import json
import re
import struct

import numpy as np

from learnae.data.datasets import Dataset, DatasetError, Splits, load_dataset, split_dataset
from learnae.errors import RemoteError

__all__ = ["InvalidShardError", "parse_shard", "select_shard", "prepare_peer_data", "split_local_shard",
           "write_shard_files",
           "encode_shard", "decode_shard",
           "SHARD_FORMAT", "MAX_SHARD_BYTES"]

SHARD_FORMAT = "learnae-shard/1"
MAX_SHARD_BYTES = 1 << 31  # 2 GiB: far beyond a sensible shard, short of exhausting memory
_MAX_HEADER_BYTES = 1 << 20


class InvalidShardError(RemoteError):
    """Shard or manifest bytes are malformed or do not match what was announced."""

    reason = "invalid-shard"


def parse_shard(shard: str) -> tuple[int, int] | None:
    """``"I/N"`` -> ``(I, N)``; ``""`` -> ``None`` (the whole dataset).

    Raises:
        DatasetError: not of the form I/N, or I outside ``0..N-1``.
    """
    s = (shard or "").strip()
    if not s:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", s)
    if not m or int(m[2]) < 1:
        raise DatasetError(f"shard {shard!r} is not I/N: use e.g. --shard 0/4 (0-based index I < N)")
    index, count = int(m[1]), int(m[2])
    if index >= count:
        raise DatasetError(f"shard {shard!r}: index {index} is out of range for {count} shards; use 0..{count - 1}")
    return index, count


def select_shard(ds: Dataset, shard: str, *, partition: str = "iid", seed: int = 0) -> Dataset:
    """This peer's shard ``I`` of ``N`` (``""`` returns the whole dataset).

    Args:
        ds: the dataset to cut (normally the ``train`` part of :func:`split_dataset`).
        shard: ``"I/N"``.
        partition: ``iid``, ``dirichlet:ALPHA`` or ``classes:K``.
        seed: every peer must use the same seed to get disjoint shards.

    Raises:
        DatasetError: bad shard string or index out of range.
        learnae.data.partition.PartitionError: bad partition scheme (a ``UserError``).
    """
    from learnae.data.partition import partition as cut

    parsed = parse_shard(shard)
    if parsed is None:
        return ds
    index, count = parsed
    parts = cut(ds.y, count, partition, seed)
    return ds.subset(parts[index], name=f"{ds.name}[{index}/{count} {partition}]")


def prepare_peer_data(spec: str, shard: str = "", *, partition: str = "iid", seed: int = 0) -> Splits:
    """Everything a peer trains and evaluates on, from a local dataset spec.

    The dataset is split into train / validation / test with ``seed`` (the same for
    every peer, so the test set is shared and held out); the peer's shard is cut
    from ``train`` only.

    Returns:
        ``Splits(train=<this peer's shard>, validation=<shared>, test=<shared>)``.

    Raises:
        DatasetError / PartitionError: a bad spec, file, shard or scheme.

    Example:
        >>> parts = prepare_peer_data("digits", "0/4", partition="classes:3", seed=0)
        >>> len(set(parts.train.y.tolist())), len(parts.test)
        (3, 359)
    """
    parts = split_dataset(load_dataset(spec), seed=seed)
    return Splits(select_shard(parts.train, shard, partition=partition, seed=seed), parts.validation, parts.test)


def split_local_shard(ds: Dataset, *, seed: int = 0, validation: float = 0.1) -> Splits:
    """Train / validation parts of a shard fetched from a manifest (no shared test set).

    For ``--dataset <manifest CID>`` the peer only has its own shard; it holds out
    ``validation`` of it (stratified) for its status line. ``test`` is empty.
    """
    parts = split_dataset(ds, seed=seed, validation=validation, test=0.0)
    return Splits(parts.train, parts.validation, parts.test)


def write_shard_files(ds: Dataset, n_shards: int, out_dir, *, partition: str = "iid",
                      seed: int = 0) -> list[tuple[object, Dataset]]:
    """``learnae data split``: write ``shard-I-of-N.npz`` files (atomically) into ``out_dir``.

    Returns:
        ``[(path, shard), ...]`` in shard order; each file loads with ``--dataset PATH``.

    Raises:
        DatasetError / PartitionError: bad ``n_shards`` or scheme.
    """
    from pathlib import Path

    from learnae.data.datasets import save_npz
    from learnae.data.partition import partition as cut

    if type(n_shards) is not int or n_shards < 1:
        raise DatasetError(f"number of shards {n_shards!r} must be an integer >= 1")
    out = []
    for i, idx in enumerate(cut(ds.y, n_shards, partition, seed)):
        path = Path(out_dir) / f"shard-{i}-of-{n_shards}.npz"
        part = ds.subset(idx, name=f"{ds.name}[{i}/{n_shards} {partition}]")
        save_npz(part, path)
        out.append((path, part))
    return out


def encode_shard(ds: Dataset) -> bytes:
    """Serialise a dataset (shard) as deterministic safetensors bytes."""
    from safetensors.numpy import save

    meta = json.dumps({"format": SHARD_FORMAT, "name": ds.name, "num_classes": int(ds.num_classes)},
                      sort_keys=True, separators=(",", ":"))
    tensors = {"x": np.ascontiguousarray(ds.x, dtype=np.float32),
               "y": np.ascontiguousarray(ds.y, dtype=np.int64)}
    return save(tensors, metadata={"learnae": meta})


def _read_header(data: bytes) -> dict:
    if len(data) < 8:
        raise InvalidShardError("shard bytes are truncated (no safetensors header)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > _MAX_HEADER_BYTES or 8 + size > len(data):
        raise InvalidShardError(f"shard header length {size} is invalid for {len(data)} bytes")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidShardError(f"shard header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidShardError("shard header is not a JSON object")
    return header


def decode_shard(data: bytes) -> Dataset:
    """Parse and validate shard bytes (from the network: trust nothing).

    Raises:
        InvalidShardError: too large, not safetensors, wrong format or tensors,
            mismatched lengths, labels out of range, or non-finite samples.
    """
    from safetensors.numpy import load

    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > MAX_SHARD_BYTES:
        raise InvalidShardError("shard bytes are missing or larger than the limit")
    data = bytes(data)
    header = _read_header(data)
    try:
        meta = json.loads((header.get("__metadata__") or {}).get("learnae", "null"))
    except (AttributeError, TypeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != SHARD_FORMAT:
        raise InvalidShardError(f"not a learnae shard (format is not {SHARD_FORMAT!r})")
    num_classes, name = meta.get("num_classes"), meta.get("name", "")
    if type(num_classes) is not int or not 1 <= num_classes <= 1_000_000 or not isinstance(name, str):
        raise InvalidShardError(f"shard metadata is malformed: {meta!r}")
    if set(k for k in header if k != "__metadata__") != {"x", "y"}:
        raise InvalidShardError(f"shard must hold exactly tensors x and y, has {sorted(header)}")
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error type on garbage
        raise InvalidShardError(f"shard tensors do not decode: {exc}") from None
    x, y = tensors["x"], tensors["y"]
    if x.dtype != np.float32 or y.dtype != np.int64 or y.ndim != 1 or x.ndim < 2 or len(x) != len(y) or not len(y):
        raise InvalidShardError(f"shard tensors have wrong dtypes or shapes: x {x.dtype}{x.shape}, y {y.dtype}{y.shape}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise InvalidShardError(f"shard labels fall outside 0..{num_classes - 1}")
    if not np.all(np.isfinite(x)):
        raise InvalidShardError("shard samples have NaN or infinite values")
    return Dataset(x, y, num_classes, name)
