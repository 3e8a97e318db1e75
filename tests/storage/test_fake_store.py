"""``MemoryStore`` beyond the shared contract (test_store_contract.py): what only an in-memory store
lets a test reach (tampering with stored blocks) and its counters."""

from __future__ import annotations

import dag_cbor
import pytest

from learnae.errors import FetchError, InvalidBlockError
from learnae.storage.cid import block_key, cid_of
from learnae.storage.store import Store
from learnae.storage.unixfs import CHUNK_BYTES, unixfs_cid
from learnae.testing.fake_store import MemoryStore
from tests.storage.conftest import content


def test_it_is_a_store_and_cid_of_is_the_put_cid():
    data = content("cid", CHUNK_BYTES + 1)
    assert isinstance(MemoryStore(), Store)
    assert MemoryStore.cid_of(data) == unixfs_cid(data) and MemoryStore.cid_of(b"x") == cid_of(b"x")


async def test_counters_count_put_and_get_only():
    store = MemoryStore()
    cid = await store.put(b"one")
    await store.put_block(*_entry())
    await store.get(cid)
    await store.get_block(cid)
    assert (store.puts, store.gets) == (1, 1)


async def test_tampered_blocks_are_never_returned():
    store = MemoryStore()
    data = content("tamper", 2 * CHUNK_BYTES)
    cid = await store.put(data)
    leaf = cid_of(data[CHUNK_BYTES:])
    store.blocks[block_key(leaf)] = b"\0" * CHUNK_BYTES
    with pytest.raises(InvalidBlockError):
        await store.get(cid)
    with pytest.raises(InvalidBlockError):
        await store.get_block(leaf)


async def test_pin_needs_the_whole_dag_and_gc_follows_dag_cbor_links():
    store = MemoryStore()
    with pytest.raises(FetchError):
        await store.pin(cid_of(b"nowhere"))
    assert await store.pins() == []
    file_cid = await store.put(content("linked", 3000), pin=False)
    entry = dag_cbor.encode({"kind": "snapshot", "model": file_cid})
    entry_cid = cid_of(entry, "dag-cbor")
    await store.put_block(entry_cid, entry)
    await store.pin(entry_cid)
    assert await store.gc() == 0  # the file is kept through the pinned entry's link
    assert await store.has(file_cid)
    await store.unpin(entry_cid)
    assert await store.gc() == 2 and not store.blocks


async def test_cidv0_and_cidv1_of_a_block_are_one_block():
    store = MemoryStore()
    await store.put_block(cid_of(b"", "dag-pb"), b"")  # an empty dag-pb node, as CIDv1
    assert await store.get_block(cid_of(b"", "dag-pb", version=0)) == b""
    assert len(store.blocks) == 1


def _entry() -> tuple:
    data = dag_cbor.encode({"kind": "join"})
    return cid_of(data, "dag-cbor"), data
