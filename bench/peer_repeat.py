"""Run one slow peer test many times, optionally beside busy loops: does it hold every time?

Issue #14 asks for 10 of 10 runs of "A trains 20 s alone, then B and C join" (ledger
completeness) and of the kill -9 / restart / late-joiner test while two busy loops
load this 2-core machine. This runs a test N times in fresh pytest processes,
with ``--load K`` extra processes spinning on the CPU meanwhile, and prints one
line per run and a summary.

    python -m bench.peer_repeat tests/peer/test_replication.py --runs 10
    python -m bench.peer_repeat "tests/peer/test_swarm.py::test_kill_9_restart_late_joiner_and_graceful_leave" \\
        --runs 10 --load 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time


def _spin() -> None:
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peer_repeat", description=__doc__.split("\n")[0])
    ap.add_argument("test", help="a pytest node id or file")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--load", type=int, default=0, help="busy loops to run meanwhile (one process each)")
    args = ap.parse_args(argv)
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    passed, times = 0, []
    try:
        for i in range(1, args.runs + 1):
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", args.test],
                                  capture_output=True, text=True)
            elapsed = time.monotonic() - t0
            times.append(elapsed)
            ok = proc.returncode == 0
            passed += ok
            last = (proc.stdout.strip().splitlines() or ["?"])[-1]
            print(f"run {i}: {'PASS' if ok else 'FAIL'} in {elapsed:.0f} s  ({last})", flush=True)
            if not ok:
                print(proc.stdout[-3000:], flush=True)
    finally:
        for p in spinners:
            p.terminate()
    print(f"{passed} of {args.runs} passed with {args.load} busy loop(s); "
          f"{min(times):.0f}-{max(times):.0f} s per run")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
