"""Peers on separate hosts (network namespaces): mDNS, bootstrap, bandwidth caps, NAT with a relay.

Runs the swarms of tests/peer/test_real_networks.py (real ``learnae peer start``
processes, each in its own namespace on one bridge, digits, IID shards) and
prints one row per run: wall time (start-up included), test accuracy, median
snapshot fetch time, snapshot size and what was fetched. Needs root (and
iptables for the NAT run); everything it creates is removed at the end.

Run:
    .venv/bin/python -m bench.real_networks                       # every run below
    .venv/bin/python -m bench.real_networks --runs bootstrap,cap:10,cap:1 --steps 400
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the namespace testbed lives with the tests

from tests.netns import testbed  # noqa: E402
from tests.peer import test_real_networks as rn  # noqa: E402

RUNS = "bootstrap,mdns,cap:10,cap:3,cap:1,nat"


def summarize(name: str, peers, wall_s: float, bed, checks: list[str]) -> dict:
    final = [p.metrics()[-1] for p in peers]
    accs = [r["test_accuracy"] for r in final]
    fetch = [r["fetch_latency_s"] for r in final if r["fetch_latency_s"] is not None]
    try:
        rn.check_swarm(bed, peers)
        checks.append("ledgers complete, no loopback address")
    except AssertionError as exc:
        checks.append(f"CHECK FAILED: {str(exc)[:300]}")
    return {
        "run": name, "peers": len(peers), "wall_s": round(wall_s, 1),
        "test_accuracy": [round(a, 3) for a in accs], "mean_accuracy": round(statistics.mean(accs), 3),
        "median_fetch_s": round(statistics.median(fetch), 3) if fetch else None,
        "fetch_s_per_peer": [round(f, 3) for f in fetch],
        "snapshot_bytes": rn.snapshot_bytes(peers[0].data_dir),
        "merges": [r["merges"] for r in final], "mb_received": [round(r["bytes_received"] / 1e6, 1) for r in final],
        "max_peers": [max(r["peers"] for r in p.metrics()) for p in peers], "checks": checks,
    }


def run_one(name: str, steps: int, root: Path) -> dict:
    t0 = time.monotonic()
    if name == "nat":
        with testbed(3, natted=2) as bed:
            out = rn.run_nat_swarm(bed, root / name, steps)
            peers = [out["peers"][h.name] for h in bed.hosts]
            wall = time.monotonic() - t0
            ids = {n: rn.peer_id(p) for n, p in out["peers"].items()}
            events = {n: rn.relay_events(p) for n, p in out["peers"].items()}
            names = {v: k for k, v in ids.items()}
            checks = [f"dial in refused: {out['dial_in']}", f"dial out: {out['dial_out']}"]
            for n in ("p0", "p1", "p2"):
                merged = rn.merged_authors(out["peers"][n])
                checks.append(f"{n} merged n0 x{merged[ids['n0']]}, n1 x{merged[ids['n1']]}")
            for n, ev in events.items():
                for key in ("dialed_via_relay", "relayed_only", "upgraded"):
                    if ev[key]:
                        checks.append(f"{n} {key}: {[names.get(x, x[:12]) for x in ev[key]]}")
            return summarize(name, peers, wall, bed, checks)
    rate = float(name.split(":")[1]) if name.startswith("cap:") else None
    with testbed(4, rate_mbit=rate) as bed:
        peers = rn.run_swarm(bed, root / name.replace(":", "-"), mdns=name == "mdns", steps=steps, wait_s=1800)
        return summarize(name, peers, time.monotonic() - t0, bed, [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=RUNS, help=f"comma-separated, of: {RUNS} (cap:MBIT for any cap)")
    ap.add_argument("--steps", type=int, default=rn.STEPS)
    ap.add_argument("--out", type=Path, default=None, help="keep data dirs here (default: a temp dir)")
    args = ap.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="real-networks-"))
    rows = []
    for name in args.runs.split(","):
        try:
            row = run_one(name, args.steps, root)
        except Exception as exc:  # one failed run must not hide the others' numbers
            row = {"run": name, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| run | wall | mean test accuracy | median snapshot fetch | snapshot | MB fetched per peer |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['run']} | error: {r['error'][:80]} | | | | |")
            continue
        print(f"| {r['run']} | {r['wall_s']:.0f} s | {r['mean_accuracy']:.3f} | {r['median_fetch_s']} s "
              f"({min(r['fetch_s_per_peer'])}-{max(r['fetch_s_per_peer'])}) | {r['snapshot_bytes'] / 1000:.1f} kB | "
              f"{min(r['mb_received'])}-{max(r['mb_received'])} |")
    print(f"\ndata dirs: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
