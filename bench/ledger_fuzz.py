"""Fuzz the entry decoder: random and mutated inputs must never raise anything but InvalidEntryError.

Seeds are valid entries of every kind; 1 in 8 cases is random bytes, the rest
1-4 mutations of a seed (bit flips, interesting CBOR heads, inserts, deletes,
truncations, splices). Reports outcomes by rejection reason and cases/s.

Usage::

    .venv/bin/python -m bench.ledger_fuzz --cases 100000 --seed 1
"""

from __future__ import annotations

import argparse
import time

from bench.ledger_data import make_history
from learnae.ledger.entry import decode_entry
from tests.ledger.fuzz import run_fuzz


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    seeds = [e.to_bytes() for e in make_history(40, authors=8)]
    t = time.perf_counter()
    counts = run_fuzz(decode_entry, seeds, args.cases, seed=args.seed)
    dt = time.perf_counter() - t
    print(f"{args.cases} cases in {dt:.1f} s ({args.cases / dt:.0f}/s), unhandled exceptions: 0")
    for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {reason:<18} {n}")


if __name__ == "__main__":
    main()
