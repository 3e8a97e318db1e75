"""``make demo``: a real swarm on this machine, end to end, in a few minutes.

Starts three ``learnae peer start`` processes on 127.0.0.1 (each with its own
data dir, key, block store and ledger) that train the ``digits-mlp`` preset on
skewed shards of scikit-learn's bundled digits (4 classes per peer), find each
other through one bootstrap peer, exchange snapshots over Bitswap and announce
them over GossipSub. Then it verifies every ledger, prints the credits, and
plots accuracy over time per peer.

The scenario runner (``learnae scenario run``) will replace this with a
replayable YAML scenario; until then this is the end-to-end path that exists.

Run: ``python -m learnae.demo [--out DIR] [--peers N] [--steps S]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from learnae.scenario.process import read_metrics, start_swarm

console = Console(stderr=True, soft_wrap=True)  # never wrap a multiaddr someone may copy


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnae.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def _plot(out: Path, runs: dict[str, list[dict]], partition: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    t0 = min(r["time"] for recs in runs.values() for r in recs)
    for name, recs in runs.items():
        pts = [(r["time"] - t0, r["test_accuracy"]) for r in recs if r.get("test_accuracy") is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    ax.set_xlabel("seconds since the first peer started")
    ax.set_ylabel("test accuracy (held-out digits)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"learnae demo: {len(runs)} peers, digits split {partition}")
    path = out / "accuracy.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("demo-out"), help="where data dirs and the plot go")
    ap.add_argument("--peers", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--partition", default="classes:4",
                    help="how digits is split; classes:4 over 3 peers leaves no class unseen")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = out / stamp
    out.mkdir(parents=True, exist_ok=True)
    n, steps = args.peers, args.steps
    console.print(f"[bold]learnae demo[/]: {n} peers, {steps} steps each, data dirs under {out}")
    peers = start_swarm(out, n, ["--partition", args.partition, "--max-steps", str(steps), "--catch-up-s", "0",
                                 "--status-every-s", "2"], prefix="peer-")
    console.print(f"bootstrap peer: {peers[0].addr}")
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as bar:
            tasks = [bar.add_task(f"peer-{i}", total=steps) for i in range(n)]
            while any(p.alive for p in peers):
                for task, p in zip(tasks, peers):
                    recs = p.metrics()
                    if recs:
                        bar.update(task, completed=recs[-1]["step"])
                time.sleep(1)
            for task in tasks:
                bar.update(task, completed=steps)
    finally:
        for p in peers:
            if p.alive:
                p.stop()
    runs = {f"peer-{i}": read_metrics(p.data_dir) for i, p in enumerate(peers)}
    failed = [f"peer-{i}" for i, p in enumerate(peers) if p.proc.returncode != 0]
    if failed:
        console.print(f"[red]peers failed: {failed}; logs in {out}/*/peer.log[/]")
        return 1
    accs = [recs[-1]["test_accuracy"] for recs in runs.values()]
    for name, recs in runs.items():
        r = recs[-1]
        console.print(f"{name}: step {r['step']}, test accuracy {r['test_accuracy']:.3f}, merges {r['merges']}, "
                      f"snapshots {r['snapshots']}, bytes in/out {r['bytes_received']}/{r['bytes_sent']}")
    console.print(f"mean test accuracy {statistics.mean(accs):.3f} (digits split {args.partition} over {n} peers)")
    ok = True
    for i, p in enumerate(peers):
        proc = _cli("ledger", "verify", str(p.data_dir))
        ok &= proc.returncode == 0
        console.print(f"peer-{i} ledger verify: {'valid' if proc.returncode == 0 else 'INVALID'}")
    console.print(_cli("ledger", "credits", "--data-dir", str(peers[0].data_dir)).stdout.rstrip())
    plot = _plot(out, runs, args.partition)
    print(f"plot: {plot}")
    print(f"data dirs: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
