"""Poisoned snapshots under every merge rule: honest accuracy against a clean run of the same rule.

Issue #15: models scaled by -10 and by 1e30, published by one hostile peer and by several
(Sybils: separate identities, separate processes), under every rule: no honest peer dies,
and the honest peers' test accuracy stays within 5 points of a clean run of the same rule.
The last row is the cheap Sybil attack: one hostile peer whose 300 made-up identities sign
its -10x snapshots too, all relayed through its own connections (attack ``sybils: 300``,
:mod:`learnae.peer.sybils`).

Each row is real ``learnae scenario run`` swarms on 127.0.0.1 (digits, IID, the MLP, a fixed
step budget, so a loaded machine slows a run down rather than shortening its training):
``--honest`` honest peers, plus 1 or ``--sybils`` peers whose every published snapshot is
``scale * w`` (attack mode ``scaled``); the clean runs have the same peers, all honest, and
their accuracy is the mean over all of them. What stops them is the peer's distance bound (every
contribution is clipped to a radius around the local model) and, for robust rules, the rule.

Run:
    .venv/bin/python -m bench.poison                           # every rule: 6 runs per rule
    .venv/bin/python -m bench.poison --rules mean,median --steps 300
    .venv/bin/python -m bench.poison --rules mean --attacks made-up  # one row (and its clean run)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from learnae.averaging.merge import RULES

# (label, hostile peers (None: --sybils), scale, identities each hostile peer makes up)
ATTACKS = [("one x -10", 1, -10.0, 0), ("one x 1e30", 1, 1e30, 0), ("sybils x -10", None, -10.0, 0),
           ("sybils x 1e30", None, 1e30, 0), ("one x -10, 300 made-up identities", 1, -10.0, 300)]


def scenario(rule: str, honest: int, attackers: int, scale: float | None, steps: int, made_up: int = 0) -> dict:
    """``honest`` peers and ``attackers`` more: hostile with ``scale``, honest with None (the clean run)."""
    peers: list = [f"peer-{i}" for i in range(honest)]
    attack = {"mode": "scaled", "scale": scale, "sybils": made_up}
    peers += [f"sybil-{i}" if scale is None else {"name": f"sybil-{i}", "attack": attack} for i in range(attackers)]
    return {
        "name": f"poison-{rule}", "seed": 3, "duration": "600s", "dataset": "digits", "partition": "iid",
        "model": "digits-mlp", "peers": peers, "train": {"max_steps": steps},
        "merge": {"every": 5, "k": 4, "rule": rule},
        "expect": [{"ledger_valid": True}],
    }


def run(spec: dict, out: Path) -> dict:
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "learnae.cli.main", "scenario", "run", str(path), "--out", str(out),
                    "--quiet"], stdout=subprocess.DEVNULL, timeout=1800)
    report = json.loads((out / "report.json").read_text())
    accs = [p["final"]["judged_accuracy"] or 0.0 for p in report["peers"].values() if p["honest"]]
    return {"mean": sum(accs) / len(accs), "min": min(accs), "alive": report["final"]["peers_alive"],
            "peers": len(spec["peers"]), "wall": time.monotonic() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.poison", description=__doc__.split("\n")[0])
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--honest", type=int, default=4)
    ap.add_argument("--sybils", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--attacks", default="", help="only the attack rows whose label contains this text")
    args = ap.parse_args(argv)
    ok = True
    print("| rule | attack | honest mean / min test accuracy | vs clean (pts) | peers alive | wall |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="poison-") as tmp:
        for rule in args.rules.split(","):
            clean = {}  # by swarm size: the same peers, every one honest
            rows = [a for a in ATTACKS if args.attacks in a[0]]
            for n in sorted({n or args.sybils for _, n, _, _ in rows}):
                clean[n] = c = run(scenario(rule, args.honest, n, None, args.steps), Path(tmp) / f"{rule}-clean{n}")
                print(f"| {rule} | none ({args.honest + n} honest peers) | {c['mean']:.3f} / {c['min']:.3f} | | "
                      f"{c['alive']} / {c['peers']} | {c['wall']:.0f} s |", flush=True)
            for label, n, scale, made_up in rows:
                n = n or args.sybils
                r = run(scenario(rule, args.honest, n, scale, args.steps, made_up),
                        Path(tmp) / f"{rule}-{label.replace(' ', '').replace(',', '')}")
                drop = 100 * (clean[n]["mean"] - r["mean"])
                good = drop <= 5 and r["alive"] == r["peers"]
                ok &= good
                print(f"| {rule} | {label} | {r['mean']:.3f} / {r['min']:.3f} | {-drop:+.1f}{'' if good else ' FAIL'} | "
                      f"{r['alive']} / {r['peers']} | {r['wall']:.0f} s |", flush=True)
    print("\nPASS" if ok else "\nFAIL: a row above lost more than 5 points or a peer")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
