"""Paced announcements against every 5 steps: rate per peer, delivery, accuracy and CPU (issue #18).

Starts ``--peers`` real ``learnae peer start`` processes (IID digits shards, every
peer waits for the whole swarm, ``--steps`` local steps each) once per setting and
run, alternating the settings so the shared machine's drift hits all of them:

* ``--publish-interval-s 0``: the old default, a snapshot every ``publish_every`` (5) steps;
* ``--publish-interval-s S`` for each S in ``--intervals``.

Per run it reports, from every peer's own ledger and metrics.jsonl:

* **announcements per peer per second** (a peer's own snapshot entries between its
  first and its last) and the **shortest gap** between two of a peer's announcements,
  leaving out the two at ``max_steps`` (its last local model and the final consensus),
  which are always published: paced, no gap may be shorter than the interval (the
  ledger's millisecond timestamps);
* **delivery**: the share of the other peers' entries each peer holds at the end
  (ledger completeness), and the share gossip delivered first (``gossiped``: the
  rest came through ledger sync or gap filling);
* mean / min held-out **test accuracy** of the peers at the end;
* **CPU seconds** of the whole swarm (all peer processes, user + system) and wall time.

Run:
    .venv/bin/python -m bench.pacing
    .venv/bin/python -m bench.pacing --peers 16 --steps 600 --intervals 1,2 --runs 2
    .venv/bin/python -m bench.pacing --peers 4 --steps 200 --runs 1   # a quick look

Arguments after ``--`` go to every ``learnae peer start`` unchanged.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.peer_swarm import wait_all
from learnae.ledger import Ledger
from learnae.scenario.process import start_swarm


def _cpu_children_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _announcements(led: Ledger, author: str, steps: int) -> tuple[float, float | None, int]:
    """(announcements per second between the first and the last, shortest gap between two
    in s before ``steps``, count)."""
    own = led.entries(author=author, kind="snapshot")
    ts = sorted(e.ts for e in own)
    # at max_steps a peer publishes whatever the pacing: its last local model (so the others know it
    # is done) and the final consensus
    paced = sorted(e.ts for e in own if e.body.get("step", 0) < steps)
    gaps = [(b - a) / 1000 for a, b in zip(paced, paced[1:])]
    rate = (len(ts) - 1) / ((ts[-1] - ts[0]) / 1000) if len(ts) > 1 and ts[-1] > ts[0] else 0.0
    return rate, (min(gaps) if gaps else None), len(ts)


def run(root: Path, n: int, steps: int, interval: float, extra: list[str]) -> dict:
    cpu0, t0 = _cpu_children_s(), time.monotonic()
    peers = start_swarm(root, n, ["--partition", "iid", "--max-steps", str(steps), "--catch-up-s", "0",
                                  "--publish-interval-s", str(interval), *extra])
    codes = wait_all(peers)
    wall, cpu = time.monotonic() - t0, _cpu_children_s() - cpu0
    finals = [p.metrics()[-1] for p in peers]
    held_by = []  # per peer: author -> entries of that author its ledger holds
    rates, gaps, counts = [], [], []
    for p, r in zip(peers, finals):
        with Ledger.open(p.data_dir, readonly=True) as led:
            held_by.append(Counter(e.author for e in led.entries()))
            rate, gap, count = _announcements(led, r["peer_id"], steps)
        rates.append(rate), counts.append(count)
        if gap is not None:
            gaps.append(gap)
    chains = {r["peer_id"]: mine[r["peer_id"]] for r, mine in zip(finals, held_by)}  # each author's own count
    held, gossiped = [], []
    for r, mine in zip(finals, held_by):
        others = sum(length for a, length in chains.items() if a != r["peer_id"])
        held.append(sum(mine[a] for a in chains if a != r["peer_id"]) / max(others, 1))
        gossiped.append(r.get("gossiped", 0) / max(others, 1))
    accs = [r["test_accuracy"] for r in finals]
    return {
        "peers": n, "steps": steps, "interval_s": interval, "extra": extra, "exit_codes": codes,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "mean_accuracy": round(statistics.mean(accs), 4), "min_accuracy": round(min(accs), 4),
        "announcements_per_s": round(statistics.mean(rates), 2), "max_announcements_per_s": round(max(rates), 2),
        "snapshots": counts, "shortest_gap_s": round(min(gaps), 3) if gaps else None,
        "held_min": round(min(held), 4), "gossiped_mean": round(statistics.mean(gossiped), 4),
        "merges": [r["merges"] for r in finals], "data": str(root),
    }


def _row(r: dict) -> str:
    setting = "every 5 steps" if r["interval_s"] == 0 else f"paced {r['interval_s']:g} s"
    gap = "-" if r["shortest_gap_s"] is None else f"{r['shortest_gap_s']:.3f}"
    return (f"| {setting} | {r['mean_accuracy']:.3f} / {r['min_accuracy']:.3f} | {r['announcements_per_s']:.2f} "
            f"(max {r['max_announcements_per_s']:.2f}) | {gap} | {r['held_min']:.1%} | {r['gossiped_mean']:.1%} | "
            f"{statistics.mean(r['merges']):.0f} | {r['cpu_s']:.0f} | {r['wall_s']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(prog="python -m bench.pacing", description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--intervals", default="1", help="comma-separated paced intervals in s (0 runs anyway)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write every run's result here")
    args = ap.parse_args(argv)
    settings = [0.0, *(float(s) for s in args.intervals.split(",") if float(s) > 0)]
    print(f"{args.peers} peers, IID digits, {args.steps} steps each; extra peer args: {extra or 'none'}")
    print("| setting | test accuracy mean / min | announcements per peer per s (max) | shortest gap s | "
          "others' entries held (min over peers) | delivered by gossip (mean) | merges per peer | swarm CPU s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for _ in range(args.runs):
        for interval in settings:
            with tempfile.TemporaryDirectory(prefix="pacing-") as tmp:
                r = run(Path(tmp), args.peers, args.steps, interval, extra)
            results.append(r)
            print(_row(r), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    for interval in settings:
        mine = [r for r in results if r["interval_s"] == interval]
        print(f"{interval:g} s: mean accuracy {statistics.mean(r['mean_accuracy'] for r in mine):.4f} "
              f"over {len(mine)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
