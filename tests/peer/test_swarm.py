"""Real peer processes on loopback, started by the CLI, training digits together.

These are the product's main job, end to end: every peer is a `learnae peer
start` subprocess with its own data dir and port; they find each other through
one bootstrap peer, exchange snapshots over Bitswap, announce over GossipSub and
sign everything into their ledgers. Budgets are in training steps, never in time.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

from learnae.identity import Identity
from learnae.ledger import Ledger
from learnae.peer.checkpoint import load_checkpoint
from learnae.peer.reporting import PHASES
from learnae.scenario.process import PeerProcess, start_swarm
from tests.peer.nodes import wait_until

pytestmark = pytest.mark.slow

FOREVER = ["--max-steps", "1000000"]


def kill_all(peers):
    for p in peers:
        if p.alive:
            p.kill()


def verify_ledger(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnae.cli.main", "ledger", "verify", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


def peer_id(p: PeerProcess) -> str:
    return Identity.load(p.data_dir / "identity.key").peer_id


def chain(data_dir, author) -> list:
    with Ledger.open(data_dir, readonly=True) as led:
        return led.entries(author=author)


def test_four_peers_on_3_class_shards_reach_090_and_their_ledgers_verify(tmp_path):
    peers = start_swarm(tmp_path, 4, ["--partition", "classes:3", "--catch-up-s", "0", "--max-steps", "1200"])
    try:
        for p in peers:
            assert p.wait(1200) == 0, p.log_tail()
    finally:
        kill_all(peers)
    final = [p.metrics()[-1] for p in peers]
    assert [r["step"] for r in final] == [1200] * 4
    assert all(r["merges"] > 0 for r in final), final
    accs = [r["test_accuracy"] for r in final]
    assert statistics.mean(accs) >= 0.90, accs
    for r in final:  # where each peer's time went, as metrics.jsonl reports it
        assert set(r["time_s"]) == set(PHASES) and r["time_s"]["train"] > 0, r["time_s"]
        assert 0 < r["train_share"] <= 1 and r["fetch_latency_s"] > 0, r
    ids = {peer_id(p) for p in peers}
    for p in peers:
        proc = verify_ledger(p.data_dir)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with Ledger.open(p.data_dir, readonly=True) as led:  # every ledger holds every peer's chain
            assert {e.author for e in led.entries(kind="snapshot")} == ids


def test_kill_9_restart_late_joiner_and_graceful_leave(tmp_path):
    args = ["--catch-up-s", "15", "--checkpoint-every", "20", "--status-every-s", "2", *FOREVER]
    peers = start_swarm(tmp_path, 3, args)
    try:
        # 1. kill -9 a peer mid-training; it restarts from its checkpoint.
        victim = peers[2]
        wait_until(lambda: any(r["step"] >= 100 for r in victim.metrics()), what="victim at step 100")
        victim.kill()
        vid = peer_id(victim)
        before = chain(victim.data_dir, vid)
        ckpt = load_checkpoint(victim.data_dir)
        assert ckpt is not None and ckpt.step >= 20
        n_records = len(victim.metrics())
        peers[2] = victim = PeerProcess.start(victim.data_dir, victim.args)
        wait_until(lambda: any(r.get("merges", 0) > 0 and r["step"] >= ckpt.step + 20
                               for r in victim.metrics()[n_records:]), what="restarted victim merging")
        resumed = victim.metrics()[n_records:]
        assert min(r["step"] for r in resumed) >= ckpt.step  # resumed from the checkpoint, not from 0

        # 2. a peer that joins late starts from the swarm's models, not from random weights.
        late = PeerProcess.start(tmp_path / "late", ["--shard", "0/3", "--bootstrap", peers[0].addr, *args])
        peers.append(late)
        wait_until(lambda: any(r.get("event") == "merge-2" for r in late.metrics()), what="late joiner's 2nd merge")
        second = next(r for r in late.metrics() if r.get("event") == "merge-2")
        others = [[r for r in p.metrics() if r["time"] <= second["time"]][-1]["test_accuracy"] for p in peers[:3]]
        assert second["test_accuracy"] >= statistics.mean(others) - 0.02, (second, others)
        assert any(r.get("event") == "catch-up" for r in late.metrics())

        # 3. Ctrl-C: a leave entry, announced, and a clean exit (not the SIGKILL stop() escalates to).
        assert victim.stop(timeout_s=30) == 0
        wait_until(lambda: chain(peers[0].data_dir, vid)[-1].kind == "leave", 30, "leave to reach peer 0",
                   detail=lambda: f"peer 0:\n{peers[0].log_tail(6000)}\nvictim:\n{victim.log_tail(3000)}")
    finally:
        kill_all(peers)
    after = chain(victim.data_dir, vid)
    assert [e.cid for e in after[: len(before)]] == [e.cid for e in before]  # no rewrite
    assert [e.seq for e in after] == list(range(len(after)))  # no gap
    assert after[-1].kind == "leave"
    assert verify_ledger(victim.data_dir).returncode == 0


def test_a_peer_starts_from_a_published_shard_manifest(tmp_path):
    cli = [sys.executable, "-m", "learnae.cli.main"]
    seed_dir = tmp_path / "a"
    published = subprocess.run([*cli, "data", "publish", "digits", "--shards", "2", "--partition", "classes:5",
                                "--data-dir", str(seed_dir)], capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stderr
    manifest = published.stdout.strip()
    info = subprocess.run([*cli, "data", "inspect", manifest, "--data-dir", str(seed_dir), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    shard_cid = __import__("json").loads(info.stdout)["shards"][1]["cid"]

    a = PeerProcess.start(seed_dir, ["--shard", "0/2", "--partition", "classes:5", "--min-peers", "1", *FOREVER])
    try:
        b = PeerProcess.start(tmp_path / "b", ["--dataset", manifest, "--shard", "1/2", "--bootstrap", a.addr,
                                               "--max-steps", "30", "--catch-up-s", "0"])
        assert b.wait(300) == 0, b.log_tail()
    finally:
        a.kill()
    assert b.metrics()[-1]["step"] == 30
    with Ledger.open(b.data_dir, readonly=True) as led:
        shards = led.entries(author=peer_id(b), kind="shard")
    assert [str(e.body["shard"]) for e in shards] == [shard_cid]  # the very shard the manifest lists


def test_a_bootstrap_peer_refused_during_a_partition_is_redialed_when_it_heals(tmp_path):
    """Dials refused by a partition grow the bootstrap backoff; the heal does not wait for it."""
    import json

    args = ["--status-every-s", "0.5", *FOREVER]
    a = PeerProcess.start(tmp_path / "a", ["--min-peers", "1", *args])  # idle until b is let in
    faults = tmp_path / "b-faults.json"
    faults.write_text(json.dumps({"blocked": [peer_id(a)]}))
    peers = [a]
    try:
        b = PeerProcess.start(tmp_path / "b", ["--bootstrap", a.addr, "--faults", str(faults), *args],
                              env={"LEARNAE_LOG": "warning,learnae.peer=info,learnae.gossip.health=info"})
        peers.append(b)
        wait_until(lambda: "retrying in" in b.log_tail(), 60, "a refused bootstrap dial")
        time.sleep(4)  # a few more refusals: the next bootstrap retry is seconds away
        assert all(r.get("peers", 0) == 0 for r in b.metrics() if "step" in r)
        assert "connected to bootstrap peer" not in b.log_tail(10000)  # refused from the first dial on
        faults.write_text(json.dumps({"blocked": []}))  # heal
        wait_until(lambda: f"the policy allows {peer_id(a)} again" in b.log_tail(10000), 30, "the redial")
        wait_until(lambda: b.metrics() and b.metrics()[-1].get("peers", 0) >= 1, 60, "b connected to a")
    finally:
        kill_all(peers)
