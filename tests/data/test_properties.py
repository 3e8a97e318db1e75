"""Properties of shard bytes and manifests over generated data (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from learnae.data import Dataset, decode_manifest, decode_shard, encode_manifest, encode_shard
from learnae.data.manifest import ShardInfo, ShardManifest
from learnae.data.shards import select_shard
from learnae.testing.fake_store import MemoryStore


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 40))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    x = draw(arrays(np.float32, (n, *shape), elements=st.floats(-1e6, 1e6, width=32)))
    classes = draw(st.integers(1, 12))
    y = draw(arrays(np.int64, n, elements=st.integers(0, classes - 1)))
    return Dataset(x, y, classes, draw(st.text(max_size=20)))


@settings(max_examples=40, deadline=None)
@given(datasets())
def test_shard_bytes_round_trip_exactly(ds):
    back = decode_shard(encode_shard(ds))
    assert back.x.tobytes() == ds.x.tobytes() and back.x.shape == ds.x.shape
    assert back.y.tolist() == ds.y.tolist()
    assert back.num_classes == ds.num_classes and back.name == ds.name


@settings(max_examples=30, deadline=None)
@given(datasets(), st.integers(1, 5), st.integers(0, 2**32))
def test_iid_shards_partition_the_dataset(ds, n, seed):
    n = min(n, len(ds))
    shards = [select_shard(ds, f"{i}/{n}", partition="iid", seed=seed) for i in range(n)]
    assert sum(len(s) for s in shards) == len(ds)
    assert sorted(np.concatenate([s.y for s in shards]).tolist()) == sorted(ds.y.tolist())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1000), min_size=3, max_size=3).filter(lambda h: sum(h) > 0),
                min_size=1, max_size=6),
       st.text(max_size=30), st.integers(-(2**63), 2**64 - 1))
def test_manifest_round_trip(histograms, name, seed):
    shards = tuple(ShardInfo(MemoryStore.cid_of(bytes([i])), sum(h), tuple(h)) for i, h in enumerate(histograms))
    m = ShardManifest(name, "iid", seed, 3, (8, 8, 1), shards)
    assert decode_manifest(encode_manifest(m)) == m
