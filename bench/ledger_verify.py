"""Verify throughput of ledger entries, side by side with raw Ed25519 verification.

Both run in this one process (one core), on the same entries, interleaved over
``--repeats`` rounds; the best round of each is reported, with the ratio.

* ``entries``: :func:`learnae.ledger.verify_blocks` on ``(cid, bytes)`` blocks: strict
  DAG-CBOR decode, schema, CID check, future-timestamp, Ed25519 signature, chain continuity.
* ``raw ed25519``: ``cryptography``'s ``Ed25519PublicKey.verify`` on the same signing
  bytes and signatures (keys loaded beforehand): the ceiling.

Both wall-clock and process CPU time are reported: on a shared machine the CPU
time (what one core actually spent) is the steadier of the two.

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
    del history  # keep only bytes alive, as a verifier reading a CAR file does
    best = {"entries": [float("inf")] * 2, "raw": [float("inf")] * 2}  # [wall, cpu] seconds

    def timed(name, fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best[name][0] = min(best[name][0], time.perf_counter() - w)
        best[name][1] = min(best[name][1], time.process_time() - c)
        return out

    def raw_verify():
        for key, msg, sig in raw:
            key.verify(sig, msg)

    for _ in range(args.repeats):
        timed("raw", raw_verify)
        report = timed("entries", lambda: verify_blocks(blocks))
        assert report.ok and report.entries == len(blocks), report.problems[:3]
    n = len(blocks)
    print(f"entries verified: {n} ({sum(len(b) for _, b in blocks) / n:.0f} B mean), best of {args.repeats}")
    print(f"{'':18}{'wall':>10}{'cpu':>10}   (per second)")
    for label, name in (("verify_blocks", "entries"), ("raw Ed25519", "raw")):
        print(f"{label:<18}{n / best[name][0]:10.0f}{n / best[name][1]:10.0f}")
    print(f"{'ratio':<18}{best['raw'][0] / best['entries'][0]:10.2f}{best['raw'][1] / best['entries'][1]:10.2f}"
          "   (verify_blocks / raw Ed25519)")


if __name__ == "__main__":
    main()
