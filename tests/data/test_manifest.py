"""Publishing shards with a manifest, and fetching one back, through a store."""

from __future__ import annotations

import dag_cbor
import numpy as np
import pytest

from learnae.data import DatasetError, InvalidShardError, decode_manifest, encode_manifest, load_dataset
from learnae.data.datasets import split_dataset
from learnae.data.manifest import (ShardInfo, fetch_shard, fetch_test, manifest_summary, publish_shards,
                                   shard_entry_body)
from learnae.data.shards import encode_shard, hold_out_test, select_shard
from learnae.testing.fake_store import MemoryStore


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


async def test_publish_then_fetch_gives_the_same_shard(digits):
    store = MemoryStore()
    manifest_cid, manifest = await publish_shards(store, digits, 4, partition="classes:3", seed=5)
    assert len(manifest.shards) == 4 and store.puts == 6  # 4 shards, the test split, the manifest
    assert sum(s.samples for s in manifest.shards) <= len(digits) - manifest.test.samples
    for s in manifest.shards:
        assert sum(s.classes) == s.samples and sum(c > 0 for c in s.classes) == 3
    got = await fetch_shard(store, manifest_cid, "2/4")
    want = select_shard(hold_out_test(digits, seed=5).train, "2/4", partition="classes:3", seed=5)
    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.y, want.y)
    # publishing again gives identical CIDs (deterministic bytes)
    again_cid, _ = await publish_shards(MemoryStore(), digits, 4, partition="classes:3", seed=5)
    assert again_cid == manifest_cid
    body = shard_entry_body(manifest.shards[2].cid, got, manifest_cid=manifest_cid, index=2)
    assert body["samples"] == len(got) and body["classes"] == got.class_histogram()
    dag_cbor.encode(body)  # a ledger entry body must be DAG-CBOR encodable


async def test_fetch_shard_with_a_wrong_index_is_a_user_error(digits):
    store = MemoryStore()
    cid, _ = await publish_shards(store, digits, 3, partition="iid", seed=0)
    for shard in ("3/3", "0/4", "x"):
        with pytest.raises(DatasetError):
            await fetch_shard(store, cid, shard)


async def test_a_shard_that_does_not_match_its_manifest_is_rejected(digits):
    store = MemoryStore()
    _, manifest = await publish_shards(store, digits, 2, partition="iid", seed=0)
    s0 = manifest.shards[0]
    lying = type(manifest)(manifest.dataset, manifest.partition, manifest.seed, manifest.num_classes,
                           manifest.sample_shape,
                           (ShardInfo(manifest.shards[1].cid, s0.samples, s0.classes), manifest.shards[1]))
    cid = await store.put(encode_manifest(lying))
    assert manifest.shards[1].classes != s0.classes  # 899 vs 898 samples: they differ
    with pytest.raises(InvalidShardError, match="does not match"):
        await fetch_shard(store, cid, "0/2")


def test_manifest_round_trip(digits):
    cid = MemoryStore.cid_of(encode_shard(digits.subset(np.arange(10))))
    from learnae.data.manifest import ShardManifest

    m = ShardManifest("digits", "iid", 0, 10, (8, 8, 1), (ShardInfo(cid, 10, tuple(digits.subset(np.arange(10)).class_histogram())),))
    data = encode_manifest(m)
    assert decode_manifest(data) == m and encode_manifest(decode_manifest(data)) == data


def _good() -> dict:
    cid = MemoryStore.cid_of(b"shard")
    return {"format": "learnae-shards/1", "dataset": "digits", "partition": "iid", "seed": 0,
            "num_classes": 3, "sample_shape": [2], "shards": [{"cid": cid, "samples": 3, "classes": [1, 1, 1]}]}


def _with(**changes) -> bytes:
    raw = _good()
    raw.update(changes)
    return dag_cbor.encode(raw)


def _shard_with(**changes) -> bytes:
    raw = _good()
    raw["shards"][0].update(changes)
    return dag_cbor.encode(raw)


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x01garbage",
    dag_cbor.encode([1, 2, 3]),
    _with(format="learnae-shards/2"),
    _with(extra=1),
    _with(num_classes="3"),
    _with(num_classes=0),
    _with(sample_shape=[]),
    _with(shards=[]),
    _with(seed=1.5),
    _shard_with(cid="bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"),
    _shard_with(samples=4),
    _shard_with(classes=[1, 2]),
    _shard_with(classes=[1, 1, -1], samples=1),
    _shard_with(samples=0, classes=[0, 0, 0]),
    b"\xa1" + dag_cbor.encode("format")[:-1],
], ids=lambda d: repr(d[:12]))
def test_malformed_manifests_are_rejected(data):
    assert decode_manifest(dag_cbor.encode(_good())).num_classes == 3
    with pytest.raises(InvalidShardError) as info:
        decode_manifest(data)
    assert info.value.reason in ("too-large", "undecodable", "bad-format", "bad-schema", "non-canonical",
                                 "bad-histogram")


def _nested(depth: int):
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("data", [
    _with(dataset=_nested(300)),  # decodes, but deeper than the encoder of the canonical check goes
    b"\x81" * 5000 + b"\x00",  # deeper than the decoder goes
    _with(seed=2**64 - 1, num_classes=2**64 - 1),
    _shard_with(samples=2**64 - 1, classes=[2**64 - 1, 0, 0]),
    _with(sample_shape=[2**40]),
    _with(partition="x" * 2000),
    _with(shards=[{"cid": MemoryStore.cid_of(b"s"), "samples": 1, "classes": [1, 0, 0]}] * 3 + [None]),
    "not bytes",
], ids=lambda d: repr(d[:12]))
def test_hostile_manifests_are_rejected_not_crashes(data):
    with pytest.raises(InvalidShardError) as info:
        decode_manifest(data)
    assert info.value.reason != "malformed"  # a check said no, not the decoder's guard


def test_non_canonical_manifest_is_rejected():
    raw = _good()
    # the same map, but with its keys in reverse (non-canonical) order
    items = sorted(raw.items(), key=lambda kv: (len(kv[0]), kv[0]), reverse=True)
    data = bytes([0xA0 + len(items)]) + b"".join(dag_cbor.encode(k) + dag_cbor.encode(v) for k, v in items)
    with pytest.raises(InvalidShardError):
        decode_manifest(data)


async def test_manifest_summary_is_json_ready(digits):
    import json

    store = MemoryStore()
    cid, manifest = await publish_shards(store, digits, 3, partition="dirichlet:1.0", seed=2)
    summary = json.loads(json.dumps(manifest_summary(manifest, cid)))
    assert summary["manifest"] == str(cid) and summary["samples"] == len(digits)
    assert [s["cid"] for s in summary["shards"]] == [str(s.cid) for s in manifest.shards]
    assert summary["shards"][1]["classes"] == list(manifest.shards[1].classes)


async def test_fetch_dataset_takes_a_manifest_or_a_single_shard(digits):
    from learnae.data.manifest import fetch_dataset, publish_shard

    store = MemoryStore()
    manifest_cid, manifest = await publish_shards(store, digits, 2, partition="iid", seed=0)
    via_manifest = await fetch_dataset(store, manifest_cid, "1/2")
    assert len(via_manifest) == manifest.shards[1].samples
    with pytest.raises(DatasetError, match="--shard I/2"):
        await fetch_dataset(store, manifest_cid)
    single = await publish_shard(store, digits.subset(np.arange(100)))
    assert len(await fetch_dataset(store, single)) == 100
    half = await fetch_dataset(store, single, "0/2", partition="iid", seed=0)
    assert len(half) == 50
    junk = await store.put(b"neither a manifest nor a shard")
    with pytest.raises(InvalidShardError):
        await fetch_dataset(store, junk)


async def test_the_manifest_carries_the_peers_test_split_and_no_shard_holds_it(digits):
    store = MemoryStore()
    cid, manifest = await publish_shards(store, digits, 3, partition="iid", seed=2)
    test = await fetch_test(store, cid)
    peers_test = split_dataset(digits, seed=2).test  # what a peer on `digits --seed 2` evaluates on
    np.testing.assert_array_equal(test.x, peers_test.x)
    assert manifest.test.samples == len(test) == 359 and decode_manifest(encode_manifest(manifest)) == manifest
    held = {row.tobytes() for row in test.x}
    for i in range(3):
        shard = await fetch_shard(store, cid, f"{i}/3")
        assert not any(row.tobytes() in held for row in shard.x)
    assert manifest_summary(manifest, cid)["test"]["samples"] == 359
    # a manifest without a test split (published before there was one) still decodes: no test then
    old = type(manifest)(*[getattr(manifest, f) for f in ("dataset", "partition", "seed", "num_classes",
                                                           "sample_shape", "shards")])
    old_cid = await store.put(encode_manifest(old))
    assert decode_manifest(encode_manifest(old)).test is None and await fetch_test(store, old_cid) is None
