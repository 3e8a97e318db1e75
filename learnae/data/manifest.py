"""Shard manifests: which shards a published dataset has, and how to fetch one.

``learnae data publish`` holds out the dataset's test split (the one peers with
the same seed evaluate on, :func:`learnae.data.shards.hold_out_test`), cuts the
rest into N shards, puts each one and the test split in the store
(:mod:`learnae.data.shards` bytes) and then puts a manifest, a canonical DAG-CBOR
map whose CIDs are real IPLD links::

    {"format": "learnae-shards/1", "dataset": "digits", "partition": "classes:3",
     "seed": 0, "num_classes": 10, "sample_shape": [8, 8, 1],
     "shards": [{"cid": CID, "samples": 360, "classes": [0, 0, 120, ...]}, ...],
     "test": {"cid": CID, "samples": 359, "classes": [36, 36, ...]}}

``test`` is optional (manifests published before it existed have none); a peer
started on the manifest evaluates on it (:func:`fetch_test`).

A peer started with ``--dataset <manifest CID> --shard I/N`` fetches the manifest,
then shard ``I``, and checks the shard against the manifest (sample count, class
histogram, sample shape). The store is anything with ``async put(bytes) -> CID``
and ``async get(CID) -> bytes`` (``learnae.storage.Store``; verified against the CID).

Example:
    >>> manifest_cid, manifest = await publish_shards(store, ds, 4, partition="iid", seed=0)  # doctest: +SKIP
    >>> mine = await fetch_shard(store, manifest_cid, "2/4")                                  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from learnae.data.datasets import Dataset, DatasetError
from learnae.data.shards import (InvalidShardError, decode_shard, encode_shard, hold_out_test, parse_shard,
                                 select_shard)

__all__ = ["MANIFEST_FORMAT", "MAX_MANIFEST_BYTES", "ContentStore", "ShardInfo", "ShardManifest",
           "encode_manifest", "decode_manifest", "publish_shards", "publish_shard",
           "fetch_manifest", "fetch_shard", "fetch_test", "fetch_dataset", "shard_entry_body", "manifest_summary"]

MANIFEST_FORMAT = "learnae-shards/1"
MAX_MANIFEST_BYTES = 4 << 20
MAX_SHARDS = 65536
_KEYS = {"format", "dataset", "partition", "seed", "num_classes", "sample_shape", "shards"}
_OPTIONAL = {"test"}


class ContentStore(Protocol):
    """The part of ``learnae.storage.Store`` this module uses."""

    async def put(self, data: bytes) -> Any:
        """Store ``data``; return its CID."""

    async def get(self, cid: Any) -> bytes:
        """Return the verified bytes of ``cid``; raises ``FetchError`` when unavailable."""


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard of a manifest: its CID, sample count and samples per class."""

    cid: Any  # multiformats.CID
    samples: int
    classes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ShardManifest:
    """A published, partitioned dataset, and its held-out test split (None: not published)."""

    dataset: str
    partition: str
    seed: int
    num_classes: int
    sample_shape: tuple[int, ...]
    shards: tuple[ShardInfo, ...]
    test: ShardInfo | None = None


def encode_manifest(m: ShardManifest) -> bytes:
    """Canonical DAG-CBOR bytes of a manifest (same manifest, same bytes, same CID)."""
    import dag_cbor

    def info(s: ShardInfo) -> dict:
        return {"cid": s.cid, "samples": int(s.samples), "classes": [int(c) for c in s.classes]}

    raw = {
        "format": MANIFEST_FORMAT,
        "dataset": m.dataset,
        "partition": m.partition,
        "seed": int(m.seed),
        "num_classes": int(m.num_classes),
        "sample_shape": [int(d) for d in m.sample_shape],
        "shards": [info(s) for s in m.shards],
    }
    if m.test is not None:  # absent, not null: a manifest without one keeps its old bytes and CID
        raw["test"] = info(m.test)
    return dag_cbor.encode(raw)


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidShardError(f"manifest {what} must be an integer in [{lo}, {hi}], got {str(value)[:40]}",
                                reason="bad-schema")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > 1024:
        raise InvalidShardError(f"manifest {what} must be a string of at most 1024 characters", reason="bad-schema")
    return value


def decode_manifest(data: bytes) -> ShardManifest:
    """Parse and validate manifest bytes (from the network: trust nothing).

    Raises:
        InvalidShardError: and nothing else, whatever ``data`` holds: oversize, not
            canonical DAG-CBOR, wrong format, missing or extra keys, wrong types,
            histograms that do not add up to the sample count (``reason`` says which).
    """
    try:
        return _decode_manifest(data)
    except InvalidShardError:
        raise
    except Exception as exc:  # noqa: BLE001 - a check this decoder lacks must not crash the receiver
        # Never expected (the fuzz tests assert no input gets here): a decoder bug becomes a
        # counted rejection instead of a traceback.
        raise InvalidShardError(f"manifest does not decode ({type(exc).__name__}: {str(exc)[:80]})",
                                reason="malformed") from None


def _decode_manifest(data) -> ShardManifest:
    import dag_cbor
    from multiformats import CID

    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > MAX_MANIFEST_BYTES:
        raise InvalidShardError("manifest bytes are missing or larger than the limit", reason="too-large")
    data = bytes(data)
    try:
        raw = dag_cbor.decode(data)
    except Exception as exc:  # dag_cbor raises its own error types
        # the decoder's message spans lines and quotes bytes: keep the first line, briefly
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise InvalidShardError(f"manifest is not DAG-CBOR ({detail})", reason="undecodable") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise InvalidShardError(f"not a learnae shard manifest (format is not {MANIFEST_FORMAT!r})",
                                reason="bad-format")
    if not _KEYS <= set(raw) <= _KEYS | _OPTIONAL:
        raise InvalidShardError(f"manifest keys are {sorted(raw)[:12]}, expected {sorted(_KEYS)} and optionally "
                                f"{sorted(_OPTIONAL)}", reason="bad-schema")
    try:
        canonical = dag_cbor.encode(raw) == data
    except (RecursionError, ValueError, TypeError):  # nested deeper than the encoder goes
        canonical = False
    if not canonical:
        raise InvalidShardError("manifest is not canonical DAG-CBOR", reason="non-canonical")
    num_classes = _int(raw["num_classes"], "num_classes", 1, 1_000_000)
    shape = raw["sample_shape"]
    if not isinstance(shape, list) or not 1 <= len(shape) <= 8:
        raise InvalidShardError("manifest sample_shape must be a list of 1-8 dimensions", reason="bad-schema")
    sample_shape = tuple(_int(d, "sample_shape entry", 1, 1 << 24) for d in shape)
    shards_raw = raw["shards"]
    if not isinstance(shards_raw, list) or not 1 <= len(shards_raw) <= MAX_SHARDS:
        raise InvalidShardError(f"manifest shards must be a list of 1-{MAX_SHARDS} entries", reason="bad-schema")
    def info(s: Any, what: str) -> ShardInfo:
        if not isinstance(s, dict) or set(s) != {"cid", "samples", "classes"}:
            raise InvalidShardError(f"manifest {what} must have exactly cid, samples, classes", reason="bad-schema")
        if not isinstance(s["cid"], CID):
            raise InvalidShardError(f"manifest {what} cid is not an IPLD link", reason="bad-schema")
        samples = _int(s["samples"], f"{what} samples", 1, 1 << 40)
        hist = s["classes"]
        if not isinstance(hist, list) or len(hist) != num_classes:
            raise InvalidShardError(f"manifest {what} classes must list {num_classes} counts", reason="bad-histogram")
        counts = tuple(_int(c, f"{what} class count", 0, 1 << 40) for c in hist)
        if sum(counts) != samples:
            raise InvalidShardError(f"manifest {what} class counts add up to {sum(counts)}, not {samples}",
                                    reason="bad-histogram")
        return ShardInfo(s["cid"], samples, counts)

    shards = [info(s, f"shard {i}") for i, s in enumerate(shards_raw)]
    test = info(raw["test"], "test split") if "test" in raw else None
    return ShardManifest(
        dataset=_str(raw["dataset"], "dataset"),
        partition=_str(raw["partition"], "partition"),
        seed=_int(raw["seed"], "seed", -(1 << 63), (1 << 64) - 1),
        num_classes=num_classes,
        sample_shape=sample_shape,
        shards=tuple(shards),
        test=test,
    )


async def publish_shard(store: ContentStore, shard: Dataset):
    """Put one shard's bytes in the store; returns its CID."""
    return await store.put(encode_shard(shard))


async def publish_shards(store: ContentStore, ds: Dataset, n_shards: int, *, partition: str = "iid",
                         seed: int = 0):
    """Hold out the test split of ``ds``, partition the rest; put every shard, the test split and the manifest.

    The test split is :func:`~learnae.data.shards.hold_out_test`'s: the one peers with
    the same ``seed`` evaluate on. No shard holds a test sample.

    Returns:
        ``(manifest_cid, manifest)``.

    Raises:
        DatasetError / PartitionError: bad ``n_shards`` or partition scheme.
    """
    from learnae.data.partition import partition as cut

    if type(n_shards) is not int or not 1 <= n_shards <= MAX_SHARDS:
        raise DatasetError(f"number of shards {n_shards!r} must be an integer in 1..{MAX_SHARDS}")
    parts = hold_out_test(ds, seed=seed)
    infos = []
    for i, idx in enumerate(cut(parts.train.y, n_shards, partition, seed)):
        part = parts.train.subset(idx, name=f"{ds.name}[{i}/{n_shards} {partition}]")
        cid = await publish_shard(store, part)
        infos.append(ShardInfo(cid, len(part), tuple(part.class_histogram())))
    test = None
    if len(parts.test):
        held = parts.test.subset(np.arange(len(parts.test)), name=f"{ds.name}[test]")
        test = ShardInfo(await publish_shard(store, held), len(held), tuple(held.class_histogram()))
    manifest = ShardManifest(ds.name, partition, int(seed), ds.num_classes, tuple(ds.x.shape[1:]), tuple(infos),
                             test)
    return await store.put(encode_manifest(manifest)), manifest


async def fetch_manifest(store: ContentStore, manifest_cid) -> ShardManifest:
    """Get and validate a manifest. Raises ``InvalidShardError`` on bad bytes."""
    return decode_manifest(await store.get(manifest_cid))


async def fetch_shard(store: ContentStore, manifest_cid, shard: str) -> Dataset:
    """Get shard ``I`` of the manifest ``manifest_cid`` and check it against the manifest.

    Args:
        shard: ``"I/N"``; N must equal the manifest's shard count.

    Raises:
        DatasetError: ``shard`` is malformed, out of range or N differs from the manifest.
        InvalidShardError: the manifest or shard bytes are bad or do not match.
    """
    parsed = parse_shard(shard)
    manifest = await fetch_manifest(store, manifest_cid)
    n = len(manifest.shards)
    if parsed is None or parsed[1] != n:
        raise DatasetError(f"shard {shard!r} does not fit manifest {manifest_cid}: it has {n} shards, "
                           f"use --shard I/{n} with I in 0..{n - 1}")
    return await _fetch_part(store, manifest, manifest.shards[parsed[0]])


async def _fetch_part(store: ContentStore, manifest: ShardManifest, info: ShardInfo) -> Dataset:
    ds = decode_shard(await store.get(info.cid))
    if (len(ds) != info.samples or tuple(ds.class_histogram()) != info.classes
            or ds.num_classes != manifest.num_classes or tuple(ds.x.shape[1:]) != manifest.sample_shape):
        raise InvalidShardError(f"shard {info.cid} does not match its manifest entry (samples, classes or shape)")
    return ds


async def fetch_test(store: ContentStore, cid) -> Dataset | None:
    """The held-out test split of the manifest ``cid``, checked against it; None when ``cid`` is
    not a manifest (a single shard) or its manifest has no test split (published before there was one).

    Raises:
        InvalidShardError: the test split's bytes are bad or do not match the manifest.
    """
    try:
        manifest = decode_manifest(await store.get(cid))
    except InvalidShardError:
        return None
    if manifest.test is None:
        return None
    return await _fetch_part(store, manifest, manifest.test)


async def fetch_dataset(store: ContentStore, cid, shard: str = "", *, partition: str = "iid",
                        seed: int = 0) -> Dataset:
    """``--dataset <CID> [--shard I/N]``: a manifest CID or a single shard's CID.

    A manifest needs ``shard`` = ``I/N`` with N its shard count (see :func:`fetch_shard`).
    A single published shard is the whole dataset; with ``shard`` it is cut further
    like a local dataset (``partition``, ``seed``).

    Raises:
        DatasetError: a manifest without ``--shard``, or a bad shard string.
        InvalidShardError: the bytes are neither a valid manifest nor a valid shard.
    """
    data = await store.get(cid)
    try:
        manifest = decode_manifest(data)
    except InvalidShardError:
        manifest = None
    if manifest is None:
        return select_shard(decode_shard(data), shard, partition=partition, seed=seed)
    n = len(manifest.shards)
    if not shard:
        raise DatasetError(f"dataset {cid} is a manifest of {n} shards: pick one with --shard I/{n}")
    return await fetch_shard(store, cid, shard)


def shard_entry_body(shard_cid, ds: Dataset, *, manifest_cid=None, index: int | None = None) -> dict:
    """The body of a ledger ``shard`` entry (docs/architecture.md, "Wire formats") for this peer's data."""
    body = {"shard": shard_cid, "samples": len(ds), "classes": ds.class_histogram()}
    if manifest_cid is not None:
        body["manifest"] = manifest_cid
    if index is not None:
        body["index"] = int(index)
    return body


def manifest_summary(manifest: ShardManifest, cid=None) -> dict:
    """A JSON-ready view of a manifest (CIDs as base32 strings), e.g. for ``learnae data inspect``.

    Example:
        >>> json.dumps(manifest_summary(manifest, manifest_cid))   # doctest: +SKIP
    """
    def text(c) -> str:
        return str(c.set(base="base32")) if hasattr(c, "set") and c.version == 1 else str(c)

    test = manifest.test
    out = {
        "dataset": manifest.dataset,
        "partition": manifest.partition,
        "seed": manifest.seed,
        "num_classes": manifest.num_classes,
        "sample_shape": list(manifest.sample_shape),
        "samples": sum(s.samples for s in manifest.shards) + (test.samples if test else 0),
        "shards": [{"index": i, "cid": text(s.cid), "samples": s.samples, "classes": list(s.classes)}
                   for i, s in enumerate(manifest.shards)],
        "test": None if test is None else {"cid": text(test.cid), "samples": test.samples,
                                           "classes": list(test.classes)},
    }
    if cid is not None:
        out = {"manifest": text(cid), **out}
    return out
