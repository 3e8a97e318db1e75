"""A dead neighbour in a robust swarm: each survivor's training rate before and after the kill.

Six real ``learnae peer start`` processes on 127.0.0.1 (digits, IID shards, ``--merge-k 5``)
merge with a robust rule; once every peer has merged and 30 s more have passed (the start,
TensorFlow warming up and the first merges, is not what is measured), it measures 20 s, kill -9s one
peer and measures 60 s more. The survivors' training rate (their steps per second summed,
from their metrics records) after the kill is compared with before: issue #14 asks for at
least 70 % (median and multi-krum must not wait for, or keep refetching, the dead peer's
snapshots). The sum, not each peer's own rate: peers that started first are ahead and wait
at their merges for the ones behind (bounded staleness, by design), so one peer's rate swings
with the phase of the swarm (2 to 23 steps/s in one run), while the sum is what the swarm
trains.
It also counts how often each survivor tried each of the dead peer's snapshots (twice at most).

Rates are CPU-bound: on a 2-core machine run it with nothing else busy, and compare the rules
side by side in the same run rather than with numbers measured at another time.

Run:
    .venv/bin/python -m bench.dead_neighbour                     # median, then multi-krum
    .venv/bin/python -m bench.dead_neighbour --rules median --before-s 20 --after-s 60
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the peer-process helpers live with the tests

from learnae.scenario.process import PeerProcess  # noqa: E402
from tests.peer.nodes import wait_until  # noqa: E402
from tests.peer.test_citizen import FOREVER, peer_id  # noqa: E402

PEERS = 6


def rate(records: list[dict], t0: float, t1: float) -> float:
    """Steps per second between ``t0`` and ``t1`` (unix s), from metrics records."""
    inside = [r for r in records if "step" in r and t0 <= r["time"] <= t1]
    if len(inside) < 2:
        return 0.0
    return (inside[-1]["step"] - inside[0]["step"]) / (inside[-1]["time"] - inside[0]["time"])


def run(rule: str, before_s: float, after_s: float, settle_s: float = 30.0, keep: bool = False) -> list[dict]:
    """One swarm with ``rule``: a row per survivor (rate before, after, retries of the dead peer's snapshots)."""
    where = (contextlib.nullcontext(tempfile.mkdtemp(prefix=f"dead-neighbour-{rule}-")) if keep
             else tempfile.TemporaryDirectory(prefix="dead-neighbour-"))
    with where as tmp:
        root = Path(tmp)
        args = ["--rule", rule, "--merge-k", "5", "--catch-up-s", "0", "--fetch-timeout-s", "10",
                "--partition", "iid", *FOREVER]
        env = {"LEARNAE_LOG": "warning,learnae.peer.merging=info"}
        first = PeerProcess.start(root / "p0", ["--shard", f"0/{PEERS}", *args], env=env)
        peers = [first] + [PeerProcess.start(root / f"p{i}", ["--shard", f"{i}/{PEERS}", "--bootstrap", first.addr,
                                                              *args], env=env)
                           for i in range(1, PEERS)]
        try:
            wait_until(lambda: all(any(r.get("merges", 0) > 3 for r in p.metrics()) for p in peers), 300,
                       "every peer to merge")
            time.sleep(settle_s + before_s)  # past the start (TensorFlow warming up, the first merges)
            t_kill = time.time()
            victim = peers.pop()
            dead = peer_id(victim.data_dir)
            victim.kill()
            time.sleep(after_s)
            t_end = time.time()
        finally:
            for p in peers:
                p.kill()
        rows = []
        for p in peers:
            records = p.metrics()
            before, after = rate(records, t_kill - before_s, t_kill), rate(records, t_kill, t_end)
            tries = Counter(re.findall(rf"snapshot (\S+) of {dead} rejected", p.log_tail(10 ** 7)))
            rows.append({"peer": p.data_dir.name, "before": before, "after": after,
                         "ratio": after / before if before else 0.0, "max_tries": max(tries.values(), default=0)})
        return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dead_neighbour", description=__doc__.split("\n")[0])
    ap.add_argument("--rules", default="median,multi-krum", help="comma-separated merge rules")
    ap.add_argument("--before-s", type=float, default=20.0)
    ap.add_argument("--after-s", type=float, default=60.0)
    ap.add_argument("--settle-s", type=float, default=30.0, help="wait this long after every peer merged first")
    ap.add_argument("--keep", action="store_true", help="keep the peers' data dirs (and logs) under /tmp")
    args = ap.parse_args(argv)
    ok = True
    print("| rule | peer | steps/s before | steps/s after | after / before | most tries of one dead snapshot |")
    print("|---|---|---|---|---|---|")
    summary = []
    for rule in args.rules.split(","):
        rows = run(rule, args.before_s, args.after_s, args.settle_s, args.keep)
        for r in rows:
            print(f"| {rule} | {r['peer']} | {r['before']:.2f} | {r['after']:.2f} | {r['ratio']:.0%} | "
                  f"{r['max_tries']} |", flush=True)
        before, after = sum(r["before"] for r in rows), sum(r["after"] for r in rows)
        ratio = after / before if before else 0.0
        print(f"| {rule} | **all survivors** | {before:.2f} | {after:.2f} | **{ratio:.0%}** | "
              f"{max(r['max_tries'] for r in rows)} |", flush=True)
        passed = ratio >= 0.7 and max(r["max_tries"] for r in rows) <= 2
        ok &= passed
        summary.append(f"{rule}: the survivors' steps/s after/before {ratio:.0%} (per peer: median "
                       f"{statistics.median(r['ratio'] for r in rows):.0%}), "
                       f"{'PASS' if passed else 'FAIL'} (>= 70 %, <= 2 tries of one dead snapshot)")
    print("\n" + "\n".join(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
