"""Peers with ``--storage kubo``: snapshots in a Kubo daemon, ledger entries on their own hosts.

No Kubo daemon with an RPC API runs on this machine (``kubo-peer`` embeds Kubo
without one), so the daemon here is :class:`learnae.testing.fake_kubo.FakeKuboRPC`:
a real HTTP server speaking Kubo's ``/api/v0`` shapes over a real block store,
run in the test process. Two real ``learnae peer start`` processes share it,
as two peers share one Kubo service in compose. It checks learnae's side (what
goes to the daemon, what stays local, deadlines, errors), not Kubo's.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import dag_cbor
import pytest
import trio

from learnae.errors import FetchError, KuboError
from learnae.gossip import connect, full_addrs, open_host
from learnae.identity import Identity
from learnae.ledger import Ledger, Status
from learnae.peer.blocks import LedgerBackedBlocks
from learnae.storage.kubo_node import KuboFetcher, open_kubo_node
from learnae.scenario.process import start_swarm
from learnae.storage.blockstore import BlockStore
from learnae.storage.cid import cid_of
from learnae.storage.kubo import KuboStore
from learnae.storage.unixfs import CHUNK_BYTES
from learnae.testing.fake_kubo import FakeKuboRPC

# ipfshttpclient passes urllib3 an argument it deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")


def _dead_api() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"/ip4/127.0.0.1/tcp/{s.getsockname()[1]}"  # closed again: nothing listens there


# -- real peer processes --------------------------------------------------------------------


@pytest.mark.slow
def test_two_peers_sharing_one_kubo_merge_through_it(tmp_path):
    with FakeKuboRPC(tmp_path / "kubo") as kubo:
        args = ["--storage", "kubo", "--kubo-api", kubo.api, "--max-steps", "100", "--catch-up-s", "0"]
        peers = start_swarm(tmp_path, 2, args)
        try:
            for p in peers:
                assert p.wait(600) == 0, p.log_tail()
        finally:
            for p in peers:
                if p.alive:
                    p.kill()
        pinned = set(kubo.blocks.pins())
        for p in peers:
            assert p.metrics()[-1]["merges"] > 0, p.metrics()[-1]
            author = Identity.load(p.data_dir / "identity.key").peer_id
            with Ledger.open(p.data_dir, readonly=True) as led:
                snapshots = [e.body["model"] for e in led.entries(author=author, kind="snapshot")]
                shard = led.entries(author=author, kind="shard")[0].body["shard"]
                assert {e.author for e in led.entries(kind="snapshot")} == {
                    Identity.load(q.data_dir / "identity.key").peer_id for q in peers}
            local = BlockStore(p.data_dir / "blocks")
            assert snapshots and all(kubo.blocks.has(c) and not local.has(c) for c in snapshots)
            assert snapshots[-1] in pinned and snapshots[0] not in pinned  # old own snapshots unpinned
            assert not kubo.blocks.has(shard) and not local.has(shard)  # training data never leaves a peer


@pytest.mark.slow
def test_an_unreachable_kubo_api_is_one_line_and_exit_code_2(tmp_path):
    api = _dead_api()
    proc = subprocess.run(
        [sys.executable, "-m", "learnae.cli.main", "peer", "start", "--data-dir", str(tmp_path / "a"),
         "--listen", "/ip4/127.0.0.1/tcp/0", "--storage", "kubo", "--kubo-api", api, "--max-steps", "5"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout == ""  # no dial line: it stopped before opening a port
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("learnae: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert f"--kubo-api {api}" in errors[0] and "ipfs daemon" in errors[0] and "--storage embedded" in errors[0]


# -- the node on real hosts, the daemon faked ------------------------------------------------


async def test_files_go_to_kubo_ledger_entries_stay_local_and_gc_leaves_kubo_alone(tmp_path):
    with FakeKuboRPC(tmp_path / "kubo") as kubo, Ledger.open(tmp_path / "a", Identity.generate()) as led:
        async with open_host(Identity.generate()) as host, \
                open_kubo_node(host, tmp_path / "a", api=kubo.api, fetch_timeout_s=5,
                               serve=lambda b: LedgerBackedBlocks(b, led)) as node:
            data = bytes(range(256)) * (3 * CHUNK_BYTES // 256 + 7)  # a 4-block file
            cid = await node.put(data)
            loose = await node.put(b"merged neighbour snapshot", pin=False)
            entry = dag_cbor.encode({"kind": "join", "seq": 0})
            entry_cid = cid_of(entry, "dag-cbor")
            await node.put_block(entry_cid, entry)
            await node.pin(entry_cid)

            assert kubo.blocks.has(cid) and kubo.blocks.is_pinned(cid)
            assert not node.local.blocks.has(cid)
            assert node.local.blocks.has(entry_cid) and not kubo.blocks.has(entry_cid)
            assert {cid, entry_cid} <= set(await node.pins())

            await node.bitswap.fetch(cid, ["ignored"], timeout_s=5)
            assert await node.get(cid) == data
            assert await node.get(cid) == data  # not stashed any more: read from Kubo again
            assert await node.get_block(entry_cid) == entry
            stats = node.bitswap.stats
            assert stats["kubo_fetches"] == 2 and stats["bytes_received"] == 2 * len(data)

            await node.unpin(cid)
            assert not kubo.blocks.is_pinned(cid)
            await node.unpin(entry_cid)
            assert await node.gc() == 1  # the local entry; Kubo's repo is not collected
            assert kubo.blocks.has(cid) and kubo.blocks.has(loose)


async def test_ledger_gap_filling_still_runs_over_the_peers_own_bitswap(tmp_path):
    alice, bob = Identity.generate(), Identity.generate()
    with FakeKuboRPC(tmp_path / "kubo") as kubo, \
            Ledger.open(tmp_path / "a", alice) as led_a, Ledger.open(tmp_path / "b", bob) as led_b:
        entries = [led_a.append("leave", {"reason": f"r{i}"}, swarm="s1") for i in range(4)]
        async with open_host(alice) as host_a, open_host(bob) as host_b, \
                open_kubo_node(host_a, tmp_path / "a", api=kubo.api, fetch_timeout_s=10,
                               serve=lambda b: LedgerBackedBlocks(b, led_a)), \
                open_kubo_node(host_b, tmp_path / "b", api=kubo.api, fetch_timeout_s=10,
                               serve=lambda b: LedgerBackedBlocks(b, led_b)) as node_b:
            led_b.fetch_block = node_b.get_block
            await connect(host_b, full_addrs(host_a)[0])
            assert led_b.receive(entries[-1]).status is Status.HELD
            with trio.fail_after(30):
                await led_b.fill_gaps(timeout_s=10)
            got = led_b.entries(author=alice.peer_id)
            assert node_b.bitswap.stats["blocks_received"] >= 3  # over the own Bitswap, not Kubo
    assert [e.cid for e in got] == [e.cid for e in entries]
    assert not any(kubo.blocks.has(e.cid) for e in entries)


# -- fetch deadlines and failures ------------------------------------------------------------


async def test_a_hung_daemon_costs_one_fetch_deadline_and_is_counted():
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        api = f"/ip4/127.0.0.1/tcp/{silent.getsockname()[1]}"
        fetcher = KuboFetcher(KuboStore(api, timeout_s=30), SimpleNamespace(stats={}))
        t0 = time.monotonic()
        with pytest.raises(FetchError, match="within 1"):
            await fetcher.fetch(cid_of(b"anything"), timeout_s=1)
        assert time.monotonic() - t0 < 5  # the deadline, not the 30 s RPC timeout
    assert fetcher.stats["kubo_fetch_timeouts"] == 1


async def test_a_missing_block_or_a_dead_daemon_is_a_counted_fetch_error(tmp_path):
    with FakeKuboRPC(tmp_path / "kubo") as kubo:
        fetcher = KuboFetcher(KuboStore(kubo.api, timeout_s=5), SimpleNamespace(stats={}))
        with pytest.raises(FetchError):
            await fetcher.fetch(cid_of(b"nobody has this"), timeout_s=5)
    dead = KuboFetcher(KuboStore(_dead_api(), timeout_s=5), SimpleNamespace(stats={}))
    with pytest.raises(KuboError, match="unreachable"):
        await dead.fetch(cid_of(b"anything"), timeout_s=5)
    assert fetcher.stats["kubo_fetch_errors"] == 1 and dead.stats["kubo_fetch_errors"] == 1
