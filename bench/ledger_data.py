"""Synthetic swarm histories for the ledger benchmarks (real signed entries, no shortcuts).

``authors`` peers each write a chain: join, shard, then snapshots, round by round;
every snapshot merges ``merges`` snapshots other authors published the round before,
so lineage and credits have real work to do.

Usage::

    .venv/bin/python -m bench.ledger_data --entries 100000 --out /tmp/ledger100k.car
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time

from multiformats import CID, multihash

from learnae.identity import Identity
from learnae.ledger.entry import Entry, sign_entry

SWARM = "benchswarm"


def _raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


def make_history(n_entries: int, *, authors: int = 100, merges: int = 2, seed: int = 0) -> list[Entry]:
    """About ``n_entries`` signed entries by ``authors`` authors (rounds of one entry each)."""
    rng = random.Random(seed)
    ids = [Identity.from_seed(hashlib.sha256(b"bench-%d" % i).digest()) for i in range(authors)]
    pids = [i.peer_id for i in ids]  # a property that base58-encodes every time: compute once
    chains: list[list[Entry]] = [[] for _ in ids]
    out: list[Entry] = []
    last_round: list[Entry] = []
    ts = 1_700_000_000_000
    rounds = max(3, n_entries // authors)
    for r in range(rounds):
        this_round = []
        for i, ident in enumerate(ids):
            seq = len(chains[i])
            prev = chains[i][-1].cid if chains[i] else None
            if seq == 0:
                kind, body = "join", {"fingerprint": "ab" * 8, "framework": "keras", "addrs": ["/ip4/127.0.0.1/tcp/4001"]}
            elif seq == 1:
                kind, body = "shard", {"shard": _raw_cid(b"shard-%d" % i), "samples": 200, "classes": {"0": 100, "1": 100}}
            else:
                kind = "snapshot"
                others = [e for e in last_round if e.author != pids[i]]
                parents = rng.sample(others, min(merges, len(others)))
                body = {"model": _raw_cid(b"model-%d-%d" % (i, seq)), "step": seq * 10, "samples": seq * 320,
                        "metrics": {"loss": 1.0 / seq, "accuracy": min(0.99, 0.1 + seq / 1000)},
                        "parents": [{"entry": p.cid, "weight": 0.25} for p in parents]}
            ts += 1
            e = sign_entry(ident, swarm=SWARM, seq=seq, prev=prev, kind=kind, body=body, ts=ts)
            chains[i].append(e)
            out.append(e)
            if kind == "snapshot":
                this_round.append(e)
            if len(out) >= n_entries:
                return out
        last_round = this_round
    return out


def cached_history(n_entries: int, *, authors: int = 100, merges: int = 2, seed: int = 0,
                   cache_dir: str = "/tmp") -> list[Entry]:
    """:func:`make_history`, kept as a CAR file in ``cache_dir`` between runs (signing is the slow part)."""
    from pathlib import Path

    from learnae.fsutil import atomic_write
    from learnae.ledger.car import read_car, write_car
    from learnae.ledger.entry import decode_entry

    path = Path(cache_dir) / f"learnae-bench-ledger-{n_entries}-{authors}-{merges}-{seed}.car"
    if path.exists():
        _, blocks = read_car(path.read_bytes())
        return [decode_entry(data, verify=False) for _, data in blocks]
    history = make_history(n_entries, authors=authors, merges=merges, seed=seed)
    import io

    buf = io.BytesIO()
    write_car(buf, [], ((e.cid, e.to_bytes()) for e in history))
    atomic_write(path, buf.getvalue(), durable=False)
    return history


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10000)
    args = ap.parse_args()
    t = time.perf_counter()
    h = make_history(args.entries)
    print(f"{len(h)} entries signed in {time.perf_counter() - t:.1f} s")
