"""Time to accuracy: N peer processes against one centralized process, same machine, same run.

The centralized reference is one ``learnae peer start`` with the whole training
set (no ``--shard``), alone; the swarm is N peers on IID shards. Each process
evaluates itself on the held-out test split every ``--status-every-s``; the time
to a target is measured from the first training step (the first record with
``step > 0``), so TensorFlow's start-up is not counted for either side. The swarm
reaches the target when the mean of its peers' latest accuracies does.

Also reported: each swarm peer's share of wall time since its first step spent
inside training steps (``train_share``; the overhead is the rest) and where the
rest went (``time_s``: the peer's training-loop phases, summed over the swarm).

Run (settings after ``--`` go to both sides, e.g. a merge period):
    .venv/bin/python -m bench.peer_speed --peers 8 --target 0.95 --plot docs/img/peer-speed.png
    .venv/bin/python -m bench.peer_speed --peers 8 --target 0.95 -- --merge-every 20 --publish-every 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from learnae.scenario.process import PeerProcess, start_swarm

STATUS_S = "1"  # the swarm's status interval: 8 peers evaluating more often would slow them
# The reference reaches 0.95 within a second or two: it evaluates every 0.2 s so its time has a
# resolution finer than the result (each evaluation of the 360 test digits costs it ~1-2 %).
CENTRAL_STATUS_S = "0.2"


def _start_time(recs: list[dict]) -> float | None:
    return next((r["time"] for r in recs if r.get("step", 0) > 0), None)


def time_to_target(runs: list[list[dict]], target: float) -> float | None:
    """Seconds from the first step of any run until the mean latest accuracy reaches ``target``."""
    starts = [t for t in (_start_time(r) for r in runs) if t is not None]
    if not starts:
        return None
    t0 = min(starts)
    events = sorted((r["time"], i, r.get("test_accuracy")) for i, recs in enumerate(runs) for r in recs)
    latest: dict[int, float] = {}
    for t, i, acc in events:
        if acc is not None:
            latest[i] = acc
        if len(latest) == len(runs) and statistics.mean(latest.values()) >= target:
            return t - t0
    return None


def plot(central: list[dict], swarm: list[list[dict]], target: float, path: Path) -> None:
    """Test accuracy against seconds since the first step: the reference, each peer, the swarm mean."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t0 = min(t for t in (_start_time(r) for r in swarm) if t is not None)  # the swarm's first step
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for i, recs in enumerate(swarm):
        pts = [(r["time"] - t0, r["test_accuracy"]) for r in recs if r.get("step", 0) > 0 and r.get("test_accuracy")]
        ax.plot(*zip(*pts), color="tab:blue", alpha=0.25, lw=0.8, label="each swarm peer (from the swarm's first step)" if i == 0 else None)
    start = _start_time(central)
    pts = [(r["time"] - start, r["test_accuracy"]) for r in central if r.get("step", 0) > 0 and r.get("test_accuracy")]
    ax.plot(*zip(*pts), color="tab:red", lw=2, label="one centralized process (from its own first step)")
    ax.axhline(target, color="grey", ls="--", lw=0.8, label=f"target {target}")
    ax.set_xlabel("seconds since the first training step")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{len(swarm)} peer processes (IID) vs one process, same machine, same run")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def run_centralized(root: Path, steps: int, extra: list[str]) -> list[dict]:
    p = PeerProcess.start(root / "central", ["--max-steps", str(steps), "--status-every-s", CENTRAL_STATUS_S, *extra])
    p.wait(3600)
    return p.metrics()


def run_swarm(root: Path, n: int, steps: int, extra: list[str]) -> list[list[dict]]:
    peers = start_swarm(root, n, ["--partition", "iid", "--max-steps", str(steps), "--catch-up-s", "0",
                                  "--status-every-s", STATUS_S, *extra])
    for p in peers:
        p.wait(3600)
    return [p.metrics() for p in peers]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--steps", type=int, default=1500, help="local steps per process (a budget, not a goal)")
    ap.add_argument("--plot", type=Path, default=None, help="write accuracy over time to this PNG")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="peer-speed-"))
    central = run_centralized(root, args.steps, extra)
    swarm = run_swarm(root, args.peers, args.steps, extra)
    t_central = time_to_target([central], args.target)
    t_swarm = time_to_target(swarm, args.target)
    shares = [r[-1]["train_share"] for r in swarm]
    phases = {k: round(sum(r[-1]["time_s"][k] for r in swarm), 1) for k in swarm[0][-1]["time_s"]}
    result = {
        "peers": args.peers, "target": args.target, "steps": args.steps, "settings": extra,
        "centralized_s": t_central, "swarm_s": t_swarm,
        # Times have the resolution of the status records; a side that reached the target by
        # its first record counts as one interval, not zero.
        "ratio": (t_swarm / max(t_central, float(CENTRAL_STATUS_S)))
        if t_central is not None and t_swarm is not None else None,
        "centralized_final_accuracy": central[-1]["test_accuracy"],
        "swarm_final_accuracy": [round(r[-1]["test_accuracy"], 4) for r in swarm],
        "train_share": [round(s, 3) for s in shares],
        "overhead_mean": round(1 - statistics.mean(shares), 3),
        "swarm_time_s": phases,
        "fetch_latency_s": [round(r[-1]["fetch_latency_s"] or 0, 3) for r in swarm],
        "data": str(root),
    }
    print(json.dumps(result))
    if args.plot is not None:
        plot(central, swarm, args.target, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
