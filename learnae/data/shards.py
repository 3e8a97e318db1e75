"""Shards: pick this peer's part of a dataset, and move shards as bytes without pickle.

``select_shard(ds, "I/N", partition=..., seed=...)`` cuts the dataset with
:func:`learnae.data.partition.partition` (same arguments, same shards, on every
peer) and returns part ``I``.

``learnae data split`` and ``learnae data publish`` first hold out the test
split every peer of a swarm evaluates on (:func:`hold_out_test`: the ``test``
part of :func:`~learnae.data.datasets.split_dataset` with the same seed) and cut
the shards from the rest, so no shard holds a test sample. ``data split`` writes
``shard-I-of-N.npz`` files and ``test.npz`` beside them; each shard file names its
test file in its metadata, and a peer started on a shard file trains on all of it
and evaluates on that test file (:func:`prepare_peer_data`).

Shard bytes are a safetensors file with two tensors, ``x`` (float32) and ``y``
(int64), and one metadata key ``learnae`` holding canonical JSON
(``{"format": "learnae-shard/1", "name": ..., "num_classes": ...}``). A single
sorted key keeps the bytes, and so the CID, deterministic. Decoding bytes that
came from the network checks everything and raises
:class:`InvalidShardError` (a :class:`~learnae.errors.RemoteError` whose
``reason`` says what was wrong), and nothing else, whatever the bytes.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learnae.data.datasets import (Dataset, DatasetError, Splits, load_dataset, parse_dataset_spec, read_npz_meta,
                                   split_dataset)
from learnae.errors import RemoteError

__all__ = ["InvalidShardError", "parse_shard", "select_shard", "prepare_peer_data", "split_local_shard",
           "hold_out_test", "held_out_test", "write_shard_files", "ShardFiles",
           "encode_shard", "decode_shard",
           "SHARD_FORMAT", "SHARD_FILE_FORMAT", "TEST_FILE", "MAX_SHARD_BYTES"]

SHARD_FORMAT = "learnae-shard/1"
SHARD_FILE_FORMAT = "learnae-shard-file/1"  # the metadata of the .npz files `learnae data split` writes
TEST_FILE = "test.npz"
MAX_SHARD_BYTES = 1 << 31  # 2 GiB: far beyond a sensible shard, short of exhausting memory
_MAX_HEADER_BYTES = 1 << 20


class InvalidShardError(RemoteError):
    """Shard or manifest bytes are malformed or do not match what was announced.

    ``reason``: ``too-large``, ``truncated``, ``bad-header``, ``bad-format``,
    ``bad-tensors``, ``bad-labels``, ``not-finite`` (shards); ``undecodable``,
    ``non-canonical``, ``bad-schema``, ``bad-histogram`` (manifests);
    ``mismatch`` (a shard that differs from its manifest entry); ``malformed``
    (a decoder bug caught by its guard: never expected).
    """

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


def prepare_peer_data(spec: str, shard: str = "", *, partition: str = "iid", seed: int = 0,
                      dataset: Dataset | None = None) -> Splits:
    """Everything a peer trains and evaluates on, from a local dataset spec.

    The dataset is split into train / validation / test with ``seed`` (the same for
    every peer, so the test set is shared and held out); the peer's shard is cut
    from ``train`` only.

    A shard file written by ``learnae data split`` is already one peer's part with
    the test split held out: the peer trains on all of it (cut further only when
    ``shard`` is given) and its test set is the ``test.npz`` the file names
    (:func:`held_out_test`; empty when that file is missing). It is never split again.

    Args:
        dataset: ``spec`` already loaded (saves reading it twice).

    Returns:
        ``Splits(train=<this peer's shard>, validation=<shared>, test=<shared>)``.

    Raises:
        DatasetError / PartitionError: a bad spec, file, shard or scheme.

    Example:
        >>> parts = prepare_peer_data("digits", "0/4", partition="classes:3", seed=0)
        >>> len(set(parts.train.y.tolist())), len(parts.test)
        (3, 359)
    """
    ds = load_dataset(spec) if dataset is None else dataset
    test = held_out_test(spec, like=ds)
    if test is not None:
        return Splits(select_shard(ds, shard, partition=partition, seed=seed), _empty(ds), test)
    parts = split_dataset(ds, seed=seed)
    return Splits(select_shard(parts.train, shard, partition=partition, seed=seed), parts.validation, parts.test)


def _empty(ds: Dataset) -> Dataset:
    return ds.subset(np.zeros(0, np.int64))


def hold_out_test(ds: Dataset, *, seed: int) -> Splits:
    """``Splits(train=everything else, validation=empty, test=the held-out test split)``.

    The test split is exactly the ``test`` part of :func:`split_dataset` with ``seed``:
    the one every peer started on the whole dataset with that ``--seed`` evaluates on,
    so accuracies on it compare across both kinds of peer.
    """
    parts = split_dataset(ds, seed=seed, validation=0.0)
    return Splits(parts.train, parts.validation, parts.test)


def held_out_test(spec: str, *, like: Dataset | None = None) -> Dataset | None:
    """The test set of a shard file written by ``learnae data split``; None for any other spec.

    An empty dataset when the shard file's ``test.npz`` is not beside it (a shard
    copied alone): the peer then reports no test accuracy, rather than testing on
    a slice of its own classes.

    Args:
        like: the shard itself, to shape an empty test set.

    Raises:
        DatasetError: the test file exists but is not a valid dataset.
    """
    if not isinstance(spec, str) or parse_dataset_spec(spec).kind != "npz":
        return None
    path = Path(spec).expanduser()
    meta = read_npz_meta(path)
    name = meta.get("test")
    if meta.get("format") != SHARD_FILE_FORMAT or not isinstance(name, str) or not name:
        return None
    test_path = path.parent / Path(name).name  # beside the shard, whatever the metadata says
    if not test_path.is_file():
        return _empty(like if like is not None else load_dataset(spec))
    return load_dataset(str(test_path))


def split_local_shard(ds: Dataset, *, seed: int = 0, validation: float = 0.1) -> Splits:
    """Train / validation parts of a shard fetched from a manifest (no shared test set).

    For ``--dataset <manifest CID>`` the peer only has its own shard; it holds out
    ``validation`` of it (stratified) for its status line. ``test`` is empty.
    """
    parts = split_dataset(ds, seed=seed, validation=validation, test=0.0)
    return Splits(parts.train, parts.validation, parts.test)


@dataclass(frozen=True, slots=True, eq=False)
class ShardFiles:
    """What ``learnae data split`` wrote: the shard files in shard order, and the test file."""

    shards: tuple[tuple[Path, Dataset], ...]
    test: tuple[Path, Dataset]


def write_shard_files(ds: Dataset, n_shards: int, out_dir, *, partition: str = "iid",
                      seed: int = 0) -> ShardFiles:
    """``learnae data split``: hold out the test split, write ``shard-I-of-N.npz`` files and ``test.npz``.

    The test split is :func:`hold_out_test`'s (the one peers with the same ``seed``
    evaluate on); the shards partition the rest. Every file is written atomically
    and loads with ``--dataset PATH``; a shard file's metadata names ``test.npz``, so
    a peer on it evaluates on the held-out split (:func:`prepare_peer_data`).

    Raises:
        DatasetError / PartitionError: bad ``n_shards`` or scheme.
    """
    from learnae.data.datasets import save_npz
    from learnae.data.partition import partition as cut

    if type(n_shards) is not int or n_shards < 1:
        raise DatasetError(f"number of shards {n_shards!r} must be an integer >= 1")
    parts = hold_out_test(ds, seed=seed)
    meta = {"format": SHARD_FILE_FORMAT, "dataset": ds.name, "partition": partition, "seed": int(seed),
            "shards": n_shards, "test": TEST_FILE}
    out = Path(out_dir)
    test = parts.test.subset(np.arange(len(parts.test)), name=f"{ds.name}[test]")
    save_npz(test, out / TEST_FILE, meta={**meta, "role": "test", "test": None})
    shards = []
    for i, idx in enumerate(cut(parts.train.y, n_shards, partition, seed)):
        path = out / f"shard-{i}-of-{n_shards}.npz"
        part = parts.train.subset(idx, name=f"{ds.name}[{i}/{n_shards} {partition}]")
        save_npz(part, path, meta={**meta, "role": "shard", "index": i})
        shards.append((path, part))
    return ShardFiles(tuple(shards), (out / TEST_FILE, test))


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
        raise InvalidShardError("shard bytes are truncated (no safetensors header)", reason="truncated")
    (size,) = struct.unpack("<Q", data[:8])
    if size > _MAX_HEADER_BYTES or 8 + size > len(data):
        raise InvalidShardError(f"shard header length {size} is invalid for {len(data)} bytes", reason="truncated")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidShardError(f"shard header is not JSON: {str(exc)[:80]}", reason="bad-header") from None
    if not isinstance(header, dict):
        raise InvalidShardError("shard header is not a JSON object", reason="bad-header")
    return header


def decode_shard(data: bytes) -> Dataset:
    """Parse and validate shard bytes (from the network: trust nothing).

    Raises:
        InvalidShardError: and nothing else, whatever ``data`` holds: too large,
            not safetensors, wrong format or tensors, mismatched lengths, labels
            out of range, or non-finite samples (``reason`` says which).
    """
    try:
        return _decode_shard(data)
    except InvalidShardError:
        raise
    except Exception as exc:  # noqa: BLE001 - a check this decoder lacks must not crash the receiver
        # Never expected (the fuzz tests assert no input gets here): a decoder bug becomes a
        # counted rejection instead of a traceback in a peer.
        raise InvalidShardError(f"shard does not decode ({type(exc).__name__}: {str(exc)[:80]})",
                                reason="malformed") from None


def _decode_shard(data) -> Dataset:
    from safetensors.numpy import load

    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > MAX_SHARD_BYTES:
        raise InvalidShardError("shard bytes are missing or larger than the limit", reason="too-large")
    data = bytes(data)
    header = _read_header(data)
    try:
        meta = json.loads((header.get("__metadata__") or {}).get("learnae", "null"))
    except (AttributeError, TypeError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != SHARD_FORMAT:
        raise InvalidShardError(f"not a learnae shard (format is not {SHARD_FORMAT!r})", reason="bad-format")
    num_classes, name = meta.get("num_classes"), meta.get("name", "")
    if type(num_classes) is not int or not 1 <= num_classes <= 1_000_000 or not isinstance(name, str):
        raise InvalidShardError(f"shard metadata is malformed: {str(meta)[:200]}", reason="bad-format")
    if set(k for k in header if k != "__metadata__") != {"x", "y"}:
        raise InvalidShardError(f"shard must hold exactly tensors x and y, has {sorted(header)[:8]}",
                                reason="bad-tensors")
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error type on garbage
        raise InvalidShardError(f"shard tensors do not decode: {str(exc)[:120]}", reason="bad-tensors") from None
    x, y = tensors["x"], tensors["y"]
    if x.dtype != np.float32 or y.dtype != np.int64 or y.ndim != 1 or x.ndim < 2 or len(x) != len(y) or not len(y):
        raise InvalidShardError(f"shard tensors have wrong dtypes or shapes: x {x.dtype}{x.shape}, y {y.dtype}{y.shape}",
                                reason="bad-tensors")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise InvalidShardError(f"shard labels fall outside 0..{num_classes - 1}", reason="bad-labels")
    if not np.all(np.isfinite(x)):
        raise InvalidShardError("shard samples have NaN or infinite values", reason="not-finite")
    return Dataset(x, y, num_classes, name)
