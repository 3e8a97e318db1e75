"""A trustworthy network citizen, with real ``learnae peer start`` processes on 127.0.0.1.

A busy port is refused, not shared; a peer of another swarm never counts as a
member; a peer that lost the tail of its own chain takes it back from the swarm
instead of signing a second entry at a seq it published; a dead neighbour never
stalls a robust swarm; and a robust rule with a single hostile neighbour keeps
the local model.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest

from learnae.identity import Identity
from learnae.ledger import Ledger
from learnae.scenario.process import PeerProcess, start_swarm
from tests.peer.nodes import wait_until

FOREVER = ["--max-steps", "1000000", "--status-every-s", "1"]


def peer_id(data_dir) -> str:
    return Identity.load(data_dir / "identity.key").peer_id


def listeners(port: int) -> int:
    """LISTEN sockets on ``port`` in this machine's socket table (IPv4 and IPv6)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                n += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnae.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout_s)


@pytest.mark.slow
def test_a_busy_port_is_refused_in_one_line_not_shared(tmp_path):
    port = free_port()
    first = PeerProcess.start(tmp_path / "first", ["--listen", f"/ip4/127.0.0.1/tcp/{port}", "--min-peers", "1",
                                                   *FOREVER])  # listening, not training
    try:
        for args in (["peer", "start", "--data-dir", str(tmp_path / "second"), "--listen",
                      f"/ip4/127.0.0.1/tcp/{port}", "--max-steps", "10"],
                     ["ipfs", "serve", "--data-dir", str(tmp_path / "serve"), "--listen",
                      f"/ip4/127.0.0.1/tcp/{port}"]):
            proc = cli(*args)
            assert proc.returncode == 2, proc.stderr[-2000:]
            lines = [line for line in proc.stderr.splitlines() if line.startswith("learnae: error:")]
            assert len(lines) == 1 and f"/tcp/{port}" in lines[0] and "--listen" in lines[0], proc.stderr[-2000:]
            assert "Traceback" not in proc.stderr and proc.stdout == ""  # no dial line of a peer that is not up
            assert listeners(port) == 1  # the first peer's socket, alone
        assert first.alive
    finally:
        first.kill()


@pytest.mark.slow
def test_a_peer_of_another_swarm_does_not_count_for_min_peers(tmp_path):
    waiting = PeerProcess.start(tmp_path / "w", ["--min-peers", "1", "--catch-up-s", "0", *FOREVER])
    try:
        other = cli("peer", "start", "--data-dir", str(tmp_path / "o"), "--listen", "/ip4/127.0.0.1/tcp/0",
                    "--model", "digits-cnn", "--bootstrap", waiting.addr, "--max-steps", "10", timeout_s=180)
        assert other.returncode == 2 and "trains in swarm" in other.stderr  # it touched the waiting peer, and left
        time.sleep(3)
        assert all(r["step"] == 0 for r in waiting.metrics() if "step" in r)  # still waiting, not training alone
        member = PeerProcess.start(tmp_path / "m", ["--bootstrap", waiting.addr, "--catch-up-s", "0", *FOREVER])
        try:
            wait_until(lambda: any(r.get("step", 0) > 0 for r in waiting.metrics()), 120, "training with a member")
        finally:
            member.kill()
    finally:
        waiting.kill()


@pytest.mark.slow
def test_a_peer_that_lost_its_chain_tail_or_was_restored_never_forks_itself(tmp_path):
    args = ["--catch-up-s", "0", "--checkpoint-every", "20", *FOREVER]
    witness = PeerProcess.start(tmp_path / "witness", args)
    me_dir = tmp_path / "me"
    me = PeerProcess.start(me_dir, ["--bootstrap", witness.addr, *args])
    peers = [witness, me]
    try:
        me_id = peer_id(me_dir)
        wait_until(lambda: len(chain(witness.data_dir, me_id)) > 30, 120, "the witness to hold my chain")
        me.kill()  # a snapshot of the data dir, as a backup would take it
        shutil.copytree(me_dir, tmp_path / "backup", ignore=shutil.ignore_patterns("peer.lock"))
        for restart in ("torn own.log", "restored backup"):
            me = PeerProcess.start(me_dir, ["--bootstrap", witness.addr, *args])
            peers.append(me)
            known = seq_count(witness.data_dir, me_id)
            wait_until(lambda: seq_count(witness.data_dir, me_id) > known + 20, 120, "my chain to grow again")
            me.kill()
            if restart == "torn own.log":  # lose the last record: the tail of own.log is cut on open
                own = me_dir / "ledger" / "own.log"
                own.write_bytes(own.read_bytes()[:-7])
            else:
                shutil.rmtree(me_dir)
                shutil.copytree(tmp_path / "backup", me_dir)
        me = PeerProcess.start(me_dir, ["--bootstrap", witness.addr, *args])
        peers.append(me)
        time.sleep(5)
    finally:
        for p in peers:
            if p.alive:
                p.signal(signal.SIGINT)
        for p in peers:
            if p.alive:
                p.wait(30)
    with Ledger.open(witness.data_dir, readonly=True) as led:
        assert led.fork_proofs() == []
        seqs = [e.seq for e in led.entries(author=me_id)]
    assert seqs == list(range(len(seqs)))  # one entry per seq, no gap
    with Ledger.open(me_dir, readonly=True) as led:
        assert led.fork_proofs() == [] and [e.seq for e in led.entries(author=me_id)][: len(seqs)] == seqs


def chain(data_dir, author) -> list:
    with Ledger.open(data_dir, readonly=True) as led:
        return led.entries(author=author)


def seq_count(data_dir, author) -> int:
    return len(chain(data_dir, author))


@pytest.mark.slow
def test_a_dead_neighbour_never_stalls_a_robust_swarm(tmp_path):
    """After a kill -9 the survivors keep training and merging, and try each dead snapshot twice at most.

    How fast they go on, against before the kill (>= 70 %), is measured, for median and
    multi-krum side by side, by ``python -m bench.dead_neighbour`` (docs/BENCHMARKS.md).
    """
    args = ["--rule", "median", "--merge-k", "3", "--catch-up-s", "0", "--fetch-timeout-s", "10",
            "--partition", "iid", *FOREVER]
    env = {"LEARNAE_LOG": "warning,learnae.peer.merging=info"}
    peers = start_swarm(tmp_path, 4, args, env=env)  # started together, training once all are up

    def latest(p) -> dict:
        return max((r for r in p.metrics() if "step" in r), key=lambda r: r["step"], default={"step": 0})

    try:
        wait_until(lambda: all(latest(p).get("merges", 0) > 3 for p in peers), 240, "every peer to merge")
        victim = peers.pop()
        dead = peer_id(victim.data_dir)
        victim.kill()
        at_kill = [latest(p) for p in peers]
        wait_until(lambda: all(latest(p).get("merges", 0) >= then["merges"] + 5 and latest(p)["step"] >= then["step"] + 100
                               for p, then in zip(peers, at_kill)), 240,
                   "the survivors to go on training and merging")
    finally:
        for p in peers:
            p.kill()
    for p in peers:
        tries = Counter(re.findall(rf"snapshot (\S+) of {dead} rejected", p.log_tail(10 ** 7)))
        assert max(tries.values(), default=0) <= 2, (p.data_dir.name, tries)  # each snapshot: twice at most


@pytest.mark.slow
def test_median_with_one_hostile_neighbour_keeps_the_local_model(tmp_path):
    attack = tmp_path / "attack.json"
    attack.write_text(json.dumps({"attack": {"mode": "sign-flip", "scale": 4.0}}))
    args = ["--rule", "median", "--catch-up-s", "0", "--partition", "iid", *FOREVER]
    (tmp_path / "cut.json").write_text("{}")  # no fault yet
    honest = PeerProcess.start(tmp_path / "honest", ["--shard", "0/3", "--faults", str(tmp_path / "cut.json"),
                                                     "--min-peers", "2", *args])  # no step before both are up
    other = PeerProcess.launch(tmp_path / "other", ["--shard", "1/3", "--bootstrap", honest.addr, *args])
    flipper = PeerProcess.launch(tmp_path / "flipper", ["--shard", "2/3", "--bootstrap", honest.addr,
                                                        "--faults", str(attack), *args])
    try:
        for p in (other, flipper):
            p.wait_ready()
        wait_until(lambda: any((r.get("test_accuracy") or 0) > 0.85 for r in honest.metrics()), 240,
                   "the honest peer to learn")
        before = max(r["test_accuracy"] for r in honest.metrics() if r.get("test_accuracy") is not None)
        t_cut = time.time()  # the honest peer's only reachable neighbour is the sign-flipper now
        (tmp_path / "cut.json").write_text(json.dumps({"blocked": [peer_id(other.data_dir)]}))
        time.sleep(30)
    finally:
        for p in (honest, other, flipper):
            p.kill()
    during = [r["test_accuracy"] for r in honest.metrics() if r.get("test_accuracy") is not None and r["time"] > t_cut]
    assert during and min(during) >= before - 0.05, (before, during)
