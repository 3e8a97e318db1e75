"""Real peer processes on loopback: final accuracy, merges and time spent training.

Starts N ``learnae peer start`` processes (peer 0 is everyone's bootstrap, all
wait for the whole swarm before the first step), lets each train ``--steps``
local steps, and reports every peer's final test accuracy (held-out digits),
merges, bytes exchanged and the share of its wall time spent in training steps.

Run:
    .venv/bin/python -m bench.peer_swarm --peers 4 --partition classes:3 --steps 1000
    .venv/bin/python -m bench.peer_swarm --peers 4 --partition iid --steps 600 -- --merge-every 10

Arguments after ``--`` go to every ``learnae peer start`` unchanged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from learnae.scenario.process import start_swarm


def wait_all(peers: list, timeout_s: float = 3600) -> list[int]:
    """Every peer's exit code once all have exited; any still running on the way out is killed."""
    try:
        return [p.wait(timeout_s) for p in peers]
    finally:
        for p in peers:
            if p.alive:
                p.kill()


def run(n: int, partition: str, steps: int, extra: list[str], root: Path) -> dict:
    t0 = time.monotonic()
    peers = start_swarm(root, n, ["--partition", partition, "--max-steps", str(steps), "--catch-up-s", "0", *extra])
    started = time.monotonic() - t0
    codes = wait_all(peers)
    final = [p.metrics()[-1] for p in peers]
    accs = [r["test_accuracy"] for r in final]
    return {
        "peers": n, "partition": partition, "steps": steps, "extra": extra, "exit_codes": codes,
        "start_s": round(started, 1), "wall_s": round(time.monotonic() - t0, 1),
        "test_accuracy": [round(a, 4) for a in accs], "mean_accuracy": round(statistics.mean(accs), 4),
        "min_accuracy": round(min(accs), 4), "merges": [r["merges"] for r in final],
        "bytes_received": [r["bytes_received"] for r in final],
        "train_share": [round(r["train_share"], 3) for r in final], "data": str(root),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--partition", default="classes:3")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="keep data dirs here (default: a temp dir)")
    args = ap.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="peer-swarm-"))
    result = run(args.peers, args.partition, args.steps, extra, root)
    print(json.dumps(result))
    return 0 if all(c == 0 for c in result["exit_codes"]) else 1


if __name__ == "__main__":
    sys.exit(main())
