"""Every peer's ledger holds every author's complete chain, however late it joined.

Real ``learnae peer start`` processes on 127.0.0.1. A peer that joins after its
bootstrap peer has published hundreds of entries gets that whole history by
ledger sync (not only what gossip brings from then on), and split views of an
equivocating author are merged into a fork proof on both sides.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from learnae.identity import Identity
from learnae.ledger import Ledger
from learnae.scenario.process import PeerProcess
from tests.peer.nodes import wait_until

pytestmark = pytest.mark.slow

FOREVER = ["--max-steps", "1000000", "--status-every-s", "1"]


def peer_id(p: PeerProcess) -> str:
    return Identity.load(p.data_dir / "identity.key").peer_id


def seqs(data_dir, author: str) -> list[int]:
    with Ledger.open(data_dir, readonly=True) as led:
        return [e.seq for e in led.entries(author=author)]


def own_head(p: PeerProcess) -> int:
    return max(seqs(p.data_dir, peer_id(p)), default=-1)


def history(data_dir, before_ms: float) -> set[tuple[str, str]]:
    """``(author, entry CID)`` of every entry published before ``before_ms`` (unix ms)."""
    with Ledger.open(data_dir, readonly=True) as led:
        return {(e.author, str(e.cid)) for e in led.entries(until_ms=int(before_ms))}


def credits(data_dir) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "learnae.cli.main", "ledger", "credits", "--data-dir",
                          str(data_dir), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {row["author"]: row for row in json.loads(out.stdout)}


def test_late_joiners_hold_the_whole_history_within_30_s_and_agree_on_credits(tmp_path):
    a = PeerProcess.start(tmp_path / "a", ["--shard", "0/3", "--catch-up-s", "0", *FOREVER])
    peers = [a]
    try:
        wait_until(lambda: own_head(a) >= 150, 120, "a's chain to grow past 150 entries")  # 20 s alone or more
        joined_at = own_head(a)
        for name, shard in (("b", "1/3"), ("c", "2/3")):
            peers.append(PeerProcess.start(tmp_path / name, ["--shard", shard, "--bootstrap", a.addr, *FOREVER]))
        t_join = time.monotonic()
        ids = {p.data_dir.name: peer_id(p) for p in peers}

        def complete(p, author, up_to) -> bool:
            got = seqs(p.data_dir, author)
            return got[: up_to + 1] == list(range(up_to + 1))

        for p in peers[1:]:  # a's whole history, from seq 0, not only what was gossiped since
            wait_until(lambda p=p: complete(p, ids["a"], joined_at), 30 - (time.monotonic() - t_join),
                       f"{p.data_dir.name} to hold a's chain up to seq {joined_at}")
        for p in peers[1:]:  # on a loaded machine TensorFlow may still be starting: the check needs every author
            wait_until(lambda p=p: own_head(p) >= 0, 120, f"{p.data_dir.name} to write its join entry")
        time.sleep(3)
        heads = {name: own_head(p) for name, p in zip(ids, peers)}
        time.sleep(5)  # what each author had published 5 s ago has reached everyone
        for p in peers:
            for name, author in ids.items():
                assert complete(p, author, heads[name]), (p.data_dir.name, name, heads[name])
        for p in peers:  # freeze the swarm while the ledgers are read
            p.signal(signal.SIGSTOP)
        settled_ms = (time.time() - 5) * 1000  # what was published 5 s ago has reached everyone
        histories = [history(p.data_dir, settled_ms) for p in peers]
        tables = [credits(p.data_dir) for p in peers]
    finally:
        for p in peers:
            p.signal(signal.SIGCONT)
            if p.alive:
                p.kill()
    for table in tables:  # every peer credits every author...
        assert set(table) == set(ids.values())
    assert histories[0] == histories[1] == histories[2]  # ...from the same history
    assert {a for a, _ in histories[0]} == set(ids.values())
