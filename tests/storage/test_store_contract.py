"""One contract every Store implementation passes (embedded always; Kubo when LEARNAE_TEST_KUBO_API is set)."""

from __future__ import annotations

import os

import dag_cbor
import pytest

from learnae.errors import FetchError, InvalidBlockError
from learnae.storage.cid import MAX_BLOCK_BYTES, cid_of
from learnae.storage.store import EmbeddedStore
from learnae.storage.unixfs import CHUNK_BYTES, unixfs_cid
from tests.storage.conftest import content

# ipfshttpclient passes urllib3 an argument it deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")

KUBO_API = os.environ.get("LEARNAE_TEST_KUBO_API")


@pytest.fixture(params=["embedded", "kubo-rpc-fake", "kubo"])
async def store(request, tmp_path):
    fake = None
    if request.param == "embedded":
        s = EmbeddedStore(tmp_path / "blocks")
    elif request.param == "kubo-rpc-fake":  # KuboStore's requests, answered by learnae.testing's fake
        from learnae.storage.kubo import KuboStore
        from learnae.testing.kubo import FakeKuboRPC

        fake = FakeKuboRPC(tmp_path / "fake-kubo")
        s = KuboStore(fake.api, timeout_s=5)
    else:
        if not KUBO_API:
            pytest.skip("set LEARNAE_TEST_KUBO_API=/ip4/127.0.0.1/tcp/5001 to test the Kubo backend")
        from learnae.storage.kubo import KuboStore

        s = KuboStore(KUBO_API, timeout_s=5)
    yield s
    await s.aclose()
    if fake is not None:
        fake.close()


@pytest.mark.parametrize("size", [0, 1000, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 5])
async def test_put_get_roundtrip_with_ipfs_add_cid(store, size):
    data = content("contract", size)
    cid = await store.put(data)
    assert cid == unixfs_cid(data)
    assert await store.get(cid) == data
    assert await store.has(cid)


async def test_same_bytes_same_cid(store):
    data = content("same", 5000)
    assert await store.put(data) == await store.put(bytes(data))


async def test_get_unknown_cid_is_a_fetch_error(store):
    missing = cid_of(b"never stored " + os.urandom(8))
    assert not await store.has(missing)
    with pytest.raises(FetchError):
        await store.get(missing)


async def test_blocks_roundtrip_and_are_verified(store):
    entry = dag_cbor.encode({"v": 1, "kind": "join", "seq": 0})
    cid = cid_of(entry, "dag-cbor")
    await store.put_block(cid, entry)
    assert await store.get_block(cid) == entry
    with pytest.raises(InvalidBlockError):
        await store.put_block(cid_of(b"other", "dag-cbor"), entry)


async def test_block_over_2mib_rejected(store):
    big = b"\0" * (MAX_BLOCK_BYTES + 1)
    with pytest.raises(InvalidBlockError):
        await store.put_block(cid_of(big), big)


async def test_pin_unpin_gc(store):
    kept = content("kept", 2 * CHUNK_BYTES + 3)
    loose = content("loose", 2 * CHUNK_BYTES + 7)
    kept_cid = await store.put(kept)
    loose_cid = await store.put(loose, pin=False)
    assert kept_cid in await store.pins()
    assert loose_cid not in await store.pins()
    assert await store.gc() >= 3  # loose root and both leaves
    assert await store.get(kept_cid) == kept
    assert not await store.has(loose_cid)
    await store.unpin(kept_cid)
    assert kept_cid not in await store.pins()
    assert await store.gc() >= 3
    assert not await store.has(kept_cid)
    await store.unpin(kept_cid)  # unpinning twice is fine
