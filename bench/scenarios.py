"""Run every shipped scenario (``make scenarios``) and summarise the results.

Each file in ``scenarios/`` runs through the real CLI (``learnae scenario run``)
into ``<out>/<name>``; quickstart runs twice with the same seed to show that
a scenario's timeline and data partition are reproducible. At the end it runs
``learnae scenario compare`` over all runs (table + ``compare.png``) and prints
a Markdown table for docs/BENCHMARKS.md.

Run: ``python -m bench.scenarios [--out DIR] [--only quickstart,churn]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnae.cli.main", *args], text=True, timeout=timeout,
                          stdout=subprocess.PIPE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("scenario-out") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    args = ap.parse_args(argv)
    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    order = ["quickstart", "non-iid", "churn", "partition", "byzantine", "lossy", "equivocation"]
    files.sort(key=lambda f: order.index(f.stem) if f.stem in order else len(order))
    if args.only:
        wanted = set(args.only.split(","))
        files = [f for f in files if f.stem in wanted]
    runs: list[tuple[str, Path, float, int]] = []
    for f in files:
        for repeat in ([1, 2] if f.stem == "quickstart" else [1]):
            out = args.out / (f.stem if repeat == 1 else f"{f.stem}-again")
            print(f"== {f.name} -> {out}", flush=True)
            t0 = time.monotonic()
            proc = _cli("scenario", "run", str(f), "--out", str(out), "--quiet")
            wall = time.monotonic() - t0
            print(proc.stdout, flush=True)
            runs.append((f.stem, out, wall, proc.returncode))
    done = [out for _, out, _, _ in runs if (out / "report.json").exists()]
    if done:
        print(_cli("scenario", "compare", *map(str, done), "--plot", str(args.out / "compare.png")).stdout)
    print("| scenario | result | wall time (incl. start-up) | honest mean / min accuracy | peers alive | ledgers | "
          "forks | merges | MB fetched | events |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, out, wall, rc in runs:
        try:
            r = json.loads((out / "report.json").read_text())
        except (OSError, ValueError):
            print(f"| {name} | no report (exit {rc}) | {wall:.0f} s | | | | | | | |")
            continue
        f = r["final"]
        acc = "n/a" if f["mean_accuracy"] is None else f"{f['mean_accuracy']:.3f} / {f['min_accuracy']:.3f}"
        failed = [e["expect"] for e in r["expectations"] if not e["ok"]]
        result = "PASS" if r["ok"] else "FAIL: " + "; ".join(failed)
        events = ", ".join(f"{e['action']}@{e['t']:.0f}s" for e in r["events"]) or "-"
        print(f"| {name} | {result} | {wall:.0f} s | {acc} | {f['peers_alive']} | "
              f"{'valid' if f['ledger_valid'] else 'INVALID'} | {', '.join(f['forks']) or '-'} | {f['merges']} | "
              f"{f['bytes_received'] / 1e6:.1f} | {events} |")
    if len(runs) > 1 and runs[1][0] == runs[0][0]:
        a, b = (json.loads((out / "report.json").read_text()) for _, out, _, _ in runs[:2])
        print(f"\nsame scenario twice ({runs[0][0]}): timelines identical: {a['timeline'] == b['timeline']}; "
              f"partition digests identical: {a['partition']['digest'] == b['partition']['digest']} "
              f"({a['partition']['digest'][:16]}...)")
    return 0 if all(rc == 0 for *_, rc in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
