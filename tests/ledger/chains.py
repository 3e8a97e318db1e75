"""Helpers for the ledger tests: deterministic identities and small valid chains."""

from __future__ import annotations

import hashlib

from multiformats import CID, multihash

from learnae.identity import Identity
from learnae.ledger.entry import Entry, sign_entry

SWARM = "testswarm"


def ident(n: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"peer-{n}".encode()).digest())


def raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


def make_chain(identity: Identity, n: int, *, ts0: int = 1_700_000_000_000, parents=()) -> list[Entry]:
    """A valid chain: join, shard, then snapshots (the first snapshot merges ``parents``)."""
    out: list[Entry] = []
    prev = None
    for seq in range(n):
        if seq == 0:
            kind, body = "join", {"fingerprint": "f" * 16, "framework": "keras", "addrs": ["/ip4/127.0.0.1/tcp/4001"]}
        elif seq == 1:
            kind, body = "shard", {"shard": raw_cid(f"shard-{identity.peer_id}".encode()), "samples": 100,
                                   "classes": {"0": 50, "1": 50}}
        else:
            kind = "snapshot"
            body = {"model": raw_cid(f"model-{identity.peer_id}-{seq}".encode()), "step": seq * 10,
                    "samples": 100 * seq, "metrics": {"loss": 1.0 / seq, "accuracy": 0.5},
                    "parents": [{"entry": p, "weight": 0.5} for p in parents] if seq == 2 else []}
        e = sign_entry(identity, swarm=SWARM, seq=seq, prev=prev, kind=kind, body=body, ts=ts0 + seq)
        out.append(e)
        prev = e.cid
    return out


