"""Credits and lineage over a large ledger (default 100,000 entries), with index build times.

The ledger is built in a fresh data dir from a synthetic swarm history
(bench/ledger_data.py: 100 authors, every snapshot merging 2 snapshots of the
round before), then ``credits()`` and ``trace()`` of the newest model are timed
(best of ``--repeats``). Reference in the same run: one ``SELECT COUNT(*)`` scan
of the entries table, the floor of any query that looks at every entry.

Usage::

    .venv/bin/python -m bench.ledger_queries --entries 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from bench.ledger_data import cached_history
from learnae.ledger import Ledger


def best(fn, repeats: int) -> tuple[float, object]:
    out, t_best = None, float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true", help="also time an index rebuild from the logs")
    ap.add_argument("--cache-dir", default="/tmp")
    args = ap.parse_args()
    t = time.perf_counter()
    history = cached_history(args.entries)
    print(f"history: {len(history)} entries ({time.perf_counter() - t:.1f} s to sign or load)")
    from learnae.ledger.index import SCHEMA_VERSION

    # the built ledger is kept between runs (building 100k entries is the slow part)
    home = Path(args.cache_dir) / f"learnae-bench-ledgerdir-{len(history)}-v{SCHEMA_VERSION}"
    if not (home / "ledger" / "index.sqlite").exists():
        shutil.rmtree(home, ignore_errors=True)
        led = Ledger.open(home)
        t = time.perf_counter()
        with led.index:
            for e in history:
                res = led.receive(e)
                assert res.status.value == "accepted", res
        print(f"receive (already verified, one transaction): {len(history) / (time.perf_counter() - t):.0f} entries/s")
        led.close()
    t = time.perf_counter()
    led = Ledger.open(home)
    print(f"open (index current): {time.perf_counter() - t:.2f} s")
    if args.rebuild:
        led.close()
        (home / "ledger" / "index.sqlite").unlink()
        t = time.perf_counter()
        led = Ledger.open(home)
        print(f"index rebuild from the logs: {time.perf_counter() - t:.2f} s")
    t_scan, _ = best(lambda: led.index.db.execute("SELECT COUNT(*), SUM(samples) FROM entries").fetchone(),
                     args.repeats)
    t_credits, credits = best(led.credits, args.repeats)
    newest = max((e for e in history if e.kind == "snapshot"), key=lambda e: e.ts)
    t_trace, lineage = best(lambda: led.trace(newest.body["model"]), args.repeats)
    print(f"entries: {len(led)}, authors credited: {len(credits)}")
    print(f"full-table scan (reference): {t_scan * 1000:8.1f} ms")
    print(f"credits():                   {t_credits * 1000:8.1f} ms  ({t_credits / t_scan:.1f}x the scan)")
    print(f"trace(newest model):         {t_trace * 1000:8.1f} ms  ({t_trace / t_scan:.1f}x the scan): "
          f"{len(lineage.authors)} authors, {len(lineage.shards)} shards, {lineage.merges} merges")
    led.close()


if __name__ == "__main__":
    main()
