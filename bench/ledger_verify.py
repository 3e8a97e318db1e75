"""Verify throughput of ledger entries, side by side with raw Ed25519 verification.

Both run in this one process (one core), on the same entries, interleaved over
``--repeats`` rounds; the best round of each is reported, with the ratio.

* ``entries``: :func:`learnae.ledger.verify_blocks` on ``(cid, bytes)`` blocks: strict
  DAG-CBOR decode, schema, CID check, future-timestamp, Ed25519 signature, chain continuity.
* ``raw ed25519``: ``cryptography``'s ``Ed25519PublicKey.verify`` on the same signing
  bytes and signatures (keys loaded beforehand): the ceiling.

Usage::

    .venv/bin/python -m bench.ledger_verify --entries 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.ledger_data import cached_history
from learnae.identity import public_key_from_peer_id
from learnae.ledger import verify_blocks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    history = cached_history(args.entries, authors=100)
    blocks = [(e.cid, e.to_bytes()) for e in history]
    keys = {a: Ed25519PublicKey.from_public_bytes(public_key_from_peer_id(a)) for a in {e.author for e in history}}
    raw = [(keys[e.author], e.signing_bytes(), e.sig) for e in history]
    best_entries = best_raw = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        for key, msg, sig in raw:
            key.verify(sig, msg)
        best_raw = min(best_raw, time.perf_counter() - t)
        t = time.perf_counter()
        report = verify_blocks(blocks)
        best_entries = min(best_entries, time.perf_counter() - t)
        assert report.ok and report.entries == len(blocks), report.problems[:3]
    n = len(blocks)
    print(f"entries verified: {n} ({sum(len(b) for _, b in blocks) / n:.0f} B mean)")
    print(f"verify_blocks:    {n / best_entries:8.0f} entries/s")
    print(f"raw Ed25519:      {n / best_raw:8.0f} verifies/s")
    print(f"ratio:            {best_raw / best_entries:.2f} of raw Ed25519")


if __name__ == "__main__":
    main()
