"""A neighbour cannot make a peer download, or hold in memory, more than a model's worth of bytes.

The attacker is a real second Bitswap peer on 127.0.0.1 serving hand-made DAGs
(see ``repeated_leaf_dag``): one of 277 KB that claims exactly 1 GiB, and a "DAG
bomb" of 280 KB whose single leaf is linked 174 x 174 times (a 7.9 GB file).
The victim fetches them as a peer fetches a neighbour's snapshot, bounded by
``snapshot_size_bound`` of its model. Resident memory is read from
/proc/self/statm every few milliseconds while it does.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import trio

from learnae.errors import InvalidBlockError
from learnae.storage.bitswap import Bitswap
from learnae.storage.snapshot import decode_snapshot, encode_snapshot, fingerprint, snapshot_size_bound
from learnae.storage.store import EmbeddedStore
from learnae.storage.unixfs import CHUNK_BYTES
from tests.storage.conftest import content, full_addr, repeated_leaf_dag, rss_bytes, running_host

# a small MLP: 101,770 float32 weights, a 400 KB snapshot
SPECS = [("000/hidden/kernel", (784, 128), "float32"), ("001/hidden/bias", (128,), "float32"),
         ("002/out/kernel", (128, 10), "float32"), ("003/out/bias", (10,), "float32")]
BOUND = snapshot_size_bound(SPECS)
MAX_RSS_GROWTH = 50 << 20

DAGS = {"claims-1-GiB": 4096, "bomb-7.9-GB": 174 * 174}


class PeakRss:
    """The highest RSS seen while the block runs (sampled every 5 ms in a trio task)."""

    async def __aenter__(self):
        self.base = self.peak = rss_bytes()
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        nursery.start_soon(self._sample)
        self._cancel = nursery.cancel_scope
        return self

    async def _sample(self):
        while True:
            self.peak = max(self.peak, rss_bytes())
            await trio.sleep(0.005)

    async def __aexit__(self, *exc):
        self.peak = max(self.peak, rss_bytes())
        self._cancel.cancel()
        return await self._nursery_cm.__aexit__(*exc)

    @property
    def growth(self) -> int:
        return self.peak - self.base


async def serve(tmp_path, blocks: dict) -> EmbeddedStore:
    attacker = EmbeddedStore(tmp_path / "attacker")
    for cid, block in blocks.items():
        attacker.blocks.put_block(cid, block)
    return attacker


@pytest.mark.parametrize("name", list(DAGS))
async def test_a_hostile_dag_is_refused_without_memory_growth_and_nothing_is_kept(tmp_path, name):
    root, blocks = repeated_leaf_dag(content(name, CHUNK_BYTES), DAGS[name])
    assert sum(map(len, blocks.values())) < 300_000 and len(blocks) <= 4
    attacker = await serve(tmp_path, blocks)
    victim = EmbeddedStore(tmp_path / "victim")
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, attacker.blocks).run(), Bitswap(hb, victim.blocks).run() as bsb:
            victim.fetcher = bsb.fetch
            async with PeakRss() as rss:
                # what the peer does with a neighbour's snapshot: fetch it from its author, then get it
                with trio.fail_after(30), pytest.raises(InvalidBlockError) as exc:
                    await bsb.fetch(root, [full_addr(ha)], timeout_s=20, eager=False, max_bytes=BOUND)
                assert exc.value.reason == "too-large"
                with trio.fail_after(30), pytest.raises(InvalidBlockError) as exc:
                    await victim.get(root, providers=[full_addr(ha)], max_bytes=BOUND)
                assert exc.value.reason == "too-large"
                if DAGS[name] * CHUNK_BYTES > victim.max_get_bytes:  # no bound given: the 1 GiB default cap
                    with trio.fail_after(30), pytest.raises(InvalidBlockError):
                        await victim.get(root, providers=[full_addr(ha)])
            assert bsb.stats["rejected:too-large"] >= 2
            # the root is all that crossed the wire, each time; never a leaf
            gets = 3 if DAGS[name] * CHUNK_BYTES > victim.max_get_bytes else 2
            assert bsb.stats["blocks_received"] == gets and bsb.stats["bytes_received"] == gets * len(blocks[root])
    assert rss.growth < MAX_RSS_GROWTH, f"RSS grew by {rss.growth / 2**20:.1f} MiB"
    assert list(victim.blocks.cids()) == []  # nothing of the refused DAG is kept


async def test_a_dag_that_lies_below_its_root_is_refused_at_the_first_lie(tmp_path):
    """The root claims a file within the bound; its child node claims 7.9 GB of leaves."""
    from learnae.storage.cid import cid_of
    from learnae.storage.dagpb import FILE, Link, encode_node, encode_unixfs

    bomb_root, blocks = repeated_leaf_dag(content("deep", CHUNK_BYTES), 174 * 174)
    small = 100_000
    node = encode_node([Link(bomb_root, small)], encode_unixfs(FILE, filesize=small, blocksizes=[small]))
    root = cid_of(node, "dag-pb")
    blocks[root] = node
    attacker = await serve(tmp_path, blocks)
    victim = EmbeddedStore(tmp_path / "victim")
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, attacker.blocks).run(), Bitswap(hb, victim.blocks).run() as bsb:
            with trio.fail_after(30), pytest.raises(InvalidBlockError) as exc:
                await bsb.fetch(root, [full_addr(ha)], timeout_s=20, eager=False, max_bytes=BOUND)
            assert exc.value.reason == "bad-unixfs"
            assert bsb.stats["blocks_received"] == 2 and bsb.stats["rejected:bad-unixfs"] == 1
    assert list(victim.blocks.cids()) == []


async def test_an_honest_snapshot_fits_its_bound_and_is_fetched(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=shape).astype(np.float32) for _, shape, _ in SPECS]
    names = [n for n, _, _ in SPECS]
    data = encode_snapshot(weights, names, step=2**40, metadata={"loss": 0.1})
    author = EmbeddedStore(tmp_path / "author")
    cid = await author.put(data)
    victim = EmbeddedStore(tmp_path / "victim")
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, author.blocks).run(), Bitswap(hb, victim.blocks).run() as bsb:
            victim.fetcher = bsb.fetch
            stats = await bsb.fetch(cid, [full_addr(ha)], timeout_s=20, eager=False, max_bytes=BOUND)
            assert stats.bytes >= len(data)
            got = await victim.get(cid, max_bytes=BOUND)
    snap = decode_snapshot(got, fingerprint=fingerprint(names, [s for _, s, _ in SPECS], ["float32"] * 4))
    assert all(np.array_equal(a, b) for a, b in zip(snap.arrays, weights))


async def test_a_get_is_cancelled_by_the_callers_deadline_within_one_step(tmp_path):
    """The file is read in 4 MiB steps in worker threads: a deadline ends the read between two steps."""
    store = EmbeddedStore(tmp_path / "blocks")
    data = content("cancel", 48 << 20)
    cid = await store.put(data)
    t = time.monotonic()
    assert await store.get(cid) == data
    whole = time.monotonic() - t
    t = time.monotonic()
    with trio.move_on_after(0.005) as scope:
        await store.get(cid)
    assert scope.cancelled_caught
    assert time.monotonic() - t < max(0.2, whole / 3), (time.monotonic() - t, whole)
