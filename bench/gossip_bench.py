"""Gossip benchmarks: propagation to all of N peer processes, and sustained rate.

Runs learnae's gossip node (``python -m tests.gossip.node``, from the repo root) and, side by side in
the same run, a reference node built from py-libp2p 0.8.1's defaults
(``bench/gossip_ref_node.py``). Every peer is its own process on 127.0.0.1; each
joins by dialing two earlier peers (a connected, sparse graph), with no DHT.

Propagation: ``--messages`` announcements, each from a random peer, 0.25 s apart
(so queues are empty and latency is the network's). For each message, the time
until all N-1 other peers received it; p50/p95 over messages, and the delivery
ratio (deliveries / expected).

Rate: at N = ``--rate-n``, every peer publishes at R/N msg/s for ``--rate-s``
seconds, for each swarm-wide R in ``--rates``; reports the delivery ratio, and
the highest R delivered completely.

    .venv/bin/python -m bench.gossip_bench --n 8 16 32 --rates 10 20 40
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.gossip.procs import NodeProc  # noqa: E402

SWARM = "8cbb34e94bc00dcc"
STACKS = {"learnae": ("tests.gossip.node", ["--no-dht"]), "reference": ("bench.gossip_ref_node", [])}


def start(stack: str, n: int, seed: int) -> list[NodeProc]:
    module, extra = STACKS[stack]
    rng = random.Random(seed)
    nodes: list[NodeProc] = []
    for i in range(n):
        links = sorted({i - 1, rng.randrange(i)}) if i >= 2 else ([0] if i == 1 else [])
        args = [a for j in links for a in ("--bootstrap", nodes[j].addr)]
        nodes.append(NodeProc(SWARM, *extra, *args, module=module, start_timeout_s=120))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every peer sees the topic on all its connections
        if all(nd.request("stats", timeout_s=60)["topic_peers"] >= 1 for nd in nodes):
            break
        time.sleep(0.5)
    time.sleep(3.0)  # let meshes settle (a few heartbeats)
    return nodes


def stop(nodes: list[NodeProc]) -> None:
    for nd in nodes:
        nd.send(cmd="quit")
    for nd in nodes:
        try:
            nd.proc.wait(20)
        except Exception:
            nd.kill()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def collect(nodes: list[NodeProc], expected: dict[tuple[str, int], int], settle_s: float,
            idle_s: float = 10.0):
    """Wait up to ``settle_s`` for all deliveries (or until none arrived for ``idle_s``);
    return {(author, seq): [latency_s]}."""
    deadline = time.monotonic() + settle_s
    last_total, last_change = -1, time.monotonic()
    while True:
        lat: dict[tuple[str, int], list[float]] = {k: [] for k in expected}
        for nd in nodes:
            seen = set()
            for e in nd.received():
                key = (e["author"], e["seq"])
                if key in lat and key not in seen:
                    seen.add(key)
                    lat[key].append(e["recv_s"] - e["sent_s"])
        total = sum(len(v) for v in lat.values())
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        if (all(len(v) >= expected[k] for k, v in lat.items()) or time.monotonic() > deadline
                or time.monotonic() - last_change > idle_s):
            return lat
        time.sleep(0.5)


def propagation(stack: str, n: int, messages: int, seed: int) -> dict:
    nodes = start(stack, n, seed)
    try:
        rng = random.Random(seed + 1)
        seqs: dict[str, int] = {}
        expected = {}
        for _ in range(messages):
            nd = rng.choice(nodes)
            nd.request("publish", n=1, timeout_s=60)
            expected[(nd.peer_id, seqs.get(nd.peer_id, 0))] = n - 1
            seqs[nd.peer_id] = seqs.get(nd.peer_id, 0) + 1
            time.sleep(0.25)
        lat = collect(nodes, expected, settle_s=20)
        all_recv = [max(v) for k, v in lat.items() if len(v) == expected[k]]
        each = [x for v in lat.values() for x in v]
        got = sum(len(v) for v in lat.values())
        return {"stack": stack, "n": n, "messages": messages,
                "delivery": got / sum(expected.values()),
                "all_p50_ms": 1000 * pct(all_recv, 0.5), "all_p95_ms": 1000 * pct(all_recv, 0.95),
                "each_p50_ms": 1000 * pct(each, 0.5), "each_p95_ms": 1000 * pct(each, 0.95)}
    finally:
        stop(nodes)


def rate(stack: str, n: int, rates: list[float], seconds: float, seed: int) -> list[dict]:
    nodes = start(stack, n, seed)
    out = []
    try:
        seqs = {nd.peer_id: 0 for nd in nodes}
        for r in rates:
            per = max(1, int(round(r * seconds / n)))
            for nd in nodes:
                nd.send(cmd="publish", n=per, rate=r / n)
            t0 = time.time()
            expected = {}
            for nd in nodes:
                for s in range(seqs[nd.peer_id], seqs[nd.peer_id] + per):
                    expected[(nd.peer_id, s)] = n - 1
                seqs[nd.peer_id] += per
            lat = collect(nodes, expected, settle_s=seconds + 120)
            got = sum(len(v) for v in lat.values())
            each = [x for v in lat.values() for x in v]
            last = max((x for x in each), default=0.0)
            counted = {}
            for nd in nodes:  # learnae counts every message it had to drop or shed
                st = nd.request("stats", timeout_s=60)
                for k, v in (st.get("dropped") or {}).items():
                    counted[k] = counted.get(k, 0) + v
                if st.get("shed"):
                    counted["shed"] = counted.get("shed", 0) + st["shed"]
            out.append({"stack": stack, "n": n, "rate_msg_s": r, "seconds": seconds,
                        "sent": per * n, "delivery": got / sum(expected.values()),
                        "counted_drops": counted, "wall_s": time.time() - t0,
                        "each_p50_ms": 1000 * pct(each, 0.5), "each_p95_ms": 1000 * pct(each, 0.95),
                        "max_latency_s": last})
            print(json.dumps(out[-1]), flush=True)
            time.sleep(2)
    finally:
        stop(nodes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--messages", type=int, default=40)
    ap.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40])
    ap.add_argument("--rate-n", type=int, default=16)
    ap.add_argument("--rate-s", type=float, default=10.0)
    ap.add_argument("--stacks", nargs="+", default=["learnae", "reference"])
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--skip-propagation", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    results = []
    for n in [] if args.skip_propagation else args.n:
        for stack in args.stacks:
            results.append(propagation(stack, n, args.messages, args.seed))
            print(json.dumps(results[-1]), flush=True)
    if not args.skip_rate:
        for stack in args.stacks:
            results.extend(rate(stack, args.rate_n, args.rates, args.rate_s, args.seed))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
