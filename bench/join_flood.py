"""Fresh identities joining every 3 s: does a training peer slow down? (issue #14: by at most 10 %)

Joining costs an attacker nothing: any number of new keys can each open a connection,
subscribe to the swarm's topic and sign a join entry. A real ``learnae peer start``
process trains alone; this process then runs ``--joiners`` fresh identities (real
py-libp2p hosts), one every ``--every-s`` seconds, each dialing the peer, joining its
topic, publishing a signed join entry and staying connected. The peer's step rate
(from its metrics records) during the flood is compared with its rate over an equal
window just before it and just after it.

On a 2-core machine the flooders' own CPU would otherwise be counted against the peer,
so the peer is pinned to core 0 and this process (the flooders) to core 1: what is
measured is the peer's own cost of handling the joins. Run with nothing else busy.

A peer training alone runs ~230 digits steps/s and, announcing every 5 steps, publishes ~46
entries/s, each sent to every subscriber: every joiner then also costs it ~46 sends/s.
``--publish-every 50`` takes most of that fan-out out of the measurement.

Run:
    .venv/bin/python -m bench.join_flood
    .venv/bin/python -m bench.join_flood --publish-every 50
    .venv/bin/python -m bench.join_flood --publish-interval-s 1
    .venv/bin/python -m bench.join_flood --joiners 20 --every-s 3 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the peer-process helpers live with the tests

from bench.dead_neighbour import rate  # noqa: E402
from learnae.gossip import connect, open_host  # noqa: E402
from learnae.gossip.announce import open_gossip  # noqa: E402
from learnae.identity import Identity  # noqa: E402
from learnae.ledger import Ledger  # noqa: E402
from learnae.ledger.entry import sign_entry  # noqa: E402
from learnae.scenario.process import PeerProcess  # noqa: E402
from tests.peer.nodes import wait_until  # noqa: E402
from tests.peer.test_citizen import FOREVER  # noqa: E402


async def flood(addr: str, swarm: str, fingerprint: str, joiners: int, every_s: float) -> list[str]:
    """``joiners`` fresh identities, ``every_s`` apart, each on its own connection, each publishing a join."""
    joined = []
    async with AsyncExitStack() as stack:
        for _ in range(joiners):
            started = trio.current_time()
            me = Identity.generate()
            host = await stack.enter_async_context(open_host(me))
            gossip = await stack.enter_async_context(open_gossip(host, swarm))
            await connect(host, addr)
            with trio.move_on_after(every_s - 0.5):  # into the peer's mesh, then announce
                while not gossip.topic_peers():
                    await trio.sleep(0.1)
            await gossip.publish(sign_entry(me, swarm=swarm, seq=0, prev=None, kind="join",
                                            body={"fingerprint": fingerprint, "framework": "keras", "addrs": []}))
            joined.append(me.peer_id)
            await trio.sleep(max(0.0, every_s - (trio.current_time() - started)))
        await trio.sleep(2)  # the last entry delivered before the connections close
    return joined


@contextlib.contextmanager
def pinned_peer(root: Path, peer_args: list[str] = ()):
    """A training ``learnae peer start`` on core 0, this process on core 1 (for the flooders), once
    it has taken 100 steps: yields the process and its own join entry; kills it on exit."""
    os.sched_setaffinity(0, {0})  # the peer inherits core 0 ...
    peer = PeerProcess.start(root, [*FOREVER, *peer_args])
    os.sched_setaffinity(0, {1})  # ... and the flooders get core 1
    try:
        wait_until(lambda: any(r.get("step", 0) >= 100 for r in peer.metrics()), 300, "training")
        with Ledger.open(peer.data_dir, readonly=True) as led:
            yield peer, led.entries(kind="join")[0]
    finally:
        peer.kill()
        os.sched_setaffinity(0, {0, 1})


def one_round(root: Path, joiners: int, every_s: float, peer_args: list[str] = ()) -> dict:
    with pinned_peer(root, peer_args) as (peer, own):
        window = joiners * every_s
        t0 = time.time()
        time.sleep(window)
        t1 = time.time()
        joined = trio.run(flood, peer.addr, own.swarm, own.body["fingerprint"], joiners, every_s)
        t2 = time.time()
        time.sleep(window)
        t3 = time.time()
        records = peer.metrics()
    with Ledger.open(peer.data_dir, readonly=True) as led:
        taken = set(joined) & {e.author for e in led.entries(kind="join")}
    before, during, after = rate(records, t0, t1), rate(records, t1, t2), rate(records, t2, t3)
    return {"before": before, "during": during, "after": after, "taken": len(taken), "joiners": len(joined),
            "ratio": during / statistics.mean([before, after]) if before and after else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.join_flood", description=__doc__.split("\n")[0])
    ap.add_argument("--joiners", type=int, default=10)
    ap.add_argument("--every-s", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--publish-every", type=int, default=0,
                    help="the peer's --publish-every (0: its default, 5 steps)")
    ap.add_argument("--publish-interval-s", type=float, default=None,
                    help="the peer's --publish-interval-s (default: its default)")
    args = ap.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 cores to keep the flooders off the peer's core", file=sys.stderr)
        return 2
    print("| round | steps/s before | during the joins | after | during / mean(before, after) | joins taken in |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for i in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="join-flood-") as tmp:
            peer_args = ["--publish-every", str(args.publish_every)] if args.publish_every else []
            if args.publish_interval_s is not None:
                peer_args += ["--publish-interval-s", str(args.publish_interval_s)]
            r = one_round(Path(tmp) / "p", args.joiners, args.every_s, peer_args)
        ratios.append(r["ratio"])
        print(f"| {i} | {r['before']:.2f} | {r['during']:.2f} | {r['after']:.2f} | {r['ratio']:.0%} | "
              f"{r['taken']} / {r['joiners']} |", flush=True)
    verdict = "PASS" if statistics.median(ratios) >= 0.9 else "FAIL"
    print(f"\nmedian during / around: {statistics.median(ratios):.0%} ({verdict}: at least 90 %)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
