"""Interop with a real Kubo node (v0.22 via the kubo-peer test tool, tests/kubo_peer.py): both directions, same CIDs."""

from __future__ import annotations

import hashlib

import pytest
import trio

from learnae.storage.bitswap import Bitswap
from learnae.storage.store import EmbeddedStore
from learnae.storage.unixfs import read_file, unixfs_cid
from tests.kubo_peer import KuboUnavailable, open_kubo_peer
from tests.storage.conftest import full_addr, running_host

pytestmark = pytest.mark.kubo
MiB = 1024 * 1024


@pytest.fixture
async def kubo(tmp_path):
    try:
        async with open_kubo_peer(tmp_path / "kubo") as peer:
            yield peer
    except KuboUnavailable as exc:
        pytest.skip(f"kubo-peer unavailable: {exc}")


async def test_kubo_fetches_what_learnae_serves(kubo, tmp_path, big_content):
    store = EmbeddedStore(tmp_path / "blocks")
    # two different files (the 10 MiB one is not a prefix of the 50 MiB one)
    files = {10 * MiB: memoryview(big_content)[50 * MiB:60 * MiB], 50 * MiB: memoryview(big_content)[:50 * MiB]}
    cids = {size: await store.put(bytes(data)) for size, data in files.items()}
    async with running_host() as host, Bitswap(host, store.blocks).run() as bitswap:
        ans = await kubo.acall("connect", addr=full_addr(host), timeout=20)
        assert ans["ok"], ans
        for size, data in files.items():
            dest = tmp_path / f"kubo-got-{size}"
            ans = await kubo.acall("download", cid=str(cids[size]), dest=str(dest), timeout=90)
            assert ans["ok"], ans
            assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert bitswap.stats["blocks_sent"] >= 40 + 200


async def test_learnae_fetches_what_kubo_added(kubo, tmp_path, big_content):
    data = bytes(big_content[: 10 * MiB + 12345])
    src = tmp_path / "kubo-src.bin"
    src.write_bytes(data)
    added = await kubo.acall("add", path=str(src), timeout=60)
    assert added["ok"], added
    assert added["cid"] == str(unixfs_cid(data, cid_version=0))  # CIDv0, dag-pb leaves: same CID
    store = EmbeddedStore(tmp_path / "blocks")
    async with running_host() as host, Bitswap(host, store.blocks).run() as bitswap:
        stats = await bitswap.fetch(added["cid"], kubo.addrs, timeout_s=60)
        assert stats.providers == (kubo.peer_id,)
    got = await trio.to_thread.run_sync(lambda: b"".join(read_file(stats.root, store.blocks.get_block)))
    assert got == data


@pytest.mark.parametrize("size", [0, 262145, 45613057])
async def test_kubo_and_learnae_agree_on_cids(kubo, tmp_path, big_content, size):
    path = tmp_path / f"f{size}"
    path.write_bytes(big_content[:size])
    ans = await kubo.acall("hash", path=str(path), timeout=60)
    assert ans["ok"], ans
    assert ans["cid"] == str(unixfs_cid(big_content[:size], cid_version=0))


async def test_kubo_fetches_from_learnae_ipfs_serve(kubo, tmp_path, learnae_cli, big_content):
    """The storage-only node a user starts: Kubo dials its first line and fetches a file."""
    import subprocess

    data = bytes(big_content[3 * MiB:5 * MiB + 7])
    cid = str(await EmbeddedStore(tmp_path / "seed" / "blocks").put(data))  # what `ipfs add` does
    server = subprocess.Popen([*learnae_cli, "ipfs", "serve", "--data-dir", str(tmp_path / "seed")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = await trio.to_thread.run_sync(server.stdout.readline)
        ans = await kubo.acall("connect", addr=first.strip(), timeout=20)
        assert ans["ok"], ans
        dest = tmp_path / "from-serve.bin"
        ans = await kubo.acall("download", cid=cid, dest=str(dest), timeout=60)
        assert ans["ok"], ans
        assert dest.read_bytes() == data
    finally:
        server.terminate()
        await trio.to_thread.run_sync(server.wait)
