"""Averaging quality on scikit-learn's bundled digits, with the in-process simulator.

Two experiments (numbers go to docs/BENCHMARKS.md "## Averaging" and docs/averaging.md):

* ``noniid``: 8 peers x 2 classes each (``classes:2``) against a centralized model
  trained in the same run with the same MLP and optimizer. Sweeps merge period, number
  of neighbours, momentum handling and rule.
* ``byzantine``: 8 peers of which 2 attack (sign-flip, noise, a-little-is-enough,
  scaled: the peer's attack names), IID and non-IID, every rule x attack, plus each
  rule's clean-run accuracy.

Usage (from the repo root)::

    .venv/bin/python -m bench.averaging_quality noniid --steps 3000 --seeds 0,1,2
    .venv/bin/python -m bench.averaging_quality byzantine --steps 1500 --seeds 0,1
    .venv/bin/python -m bench.averaging_quality plot --json results.json --plot out.png

Each prints a Markdown table and writes JSON (``--json``) and a plot (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, replace

import numpy as np

from bench.averaging_sim import ATTACKS as SIM_ATTACKS
from bench.averaging_sim import SimConfig, simulate, train_centralized
from learnae.averaging import RULES
from learnae.data.partition import partition

ATTACKS = tuple(a for a in SIM_ATTACKS if a != "none")  # column order of the tables and the plot
# The defaults recommended for PeerConfig (see docs/averaging.md): what this benchmark found best
# at a realistic merge period.
BEST = dict(rule="weighted", topology="random-k", k=4, merge_every=10, lr=0.05, momentum=0.9, momentum_on_merge="keep")


def load_split(seed: int = 0):
    """Digits scaled to [0, 1], stratified 70/30 train/test split (fixed seed)."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[: int(round(0.3 * np.sum(y == c)))] for c in range(10)]
    )
    train = np.setdiff1d(np.arange(len(y)), test)
    return x[train], y[train], x[np.sort(test)], y[np.sort(test)]


def _run(cfg: SimConfig, data, scheme: str, seeds: list[int]) -> dict:
    xtr, ytr, xte, yte = data
    runs = []
    for s in seeds:
        shards = partition(ytr, cfg.n_peers, scheme, seed=s)
        runs.append(simulate(replace(cfg, seed=s), xtr, ytr, shards, xte, yte))
    steps = [h[0] for h in runs[0].history]
    curve = np.mean([[h[1] for h in r.history] for r in runs], axis=0)
    return {
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("seed",)},
        "scheme": scheme,
        "mean_acc": float(np.mean([r.final_mean_acc for r in runs])),
        "mean_acc_std": float(np.std([r.final_mean_acc for r in runs])),
        "min_acc": float(np.mean([r.final_min_acc for r in runs])),
        "premerge_acc": float(np.mean([r.final_premerge_acc for r in runs])),
        "curve": list(zip(steps, curve.tolist())),
        "wall_s": float(sum(r.wall_s for r in runs)),
    }


def _centralized(data, steps: int, seeds: list[int], eval_every: int) -> dict:
    xtr, ytr, xte, yte = data
    curves = [train_centralized(xtr, ytr, xte, yte, steps=steps, seed=s, eval_every=eval_every) for s in seeds]
    curve = np.mean([[a for _, a in c] for c in curves], axis=0)
    return {"mean_acc": float(curve[-1]), "curve": list(zip([s for s, _ in curves[0]], curve.tolist()))}


def noniid(args) -> dict:
    data = load_split()
    seeds = [int(s) for s in args.seeds.split(",")]
    ev = max(args.steps // 20, 1)
    if args.eval_every:
        ev = args.eval_every
    central = _centralized(data, args.steps, seeds, ev)
    base = SimConfig(steps=args.steps, eval_every=ev, **BEST)
    grid = [
        ("mean, merge every 20, k=2", dict(rule="mean", merge_every=20, k=2)),
        ("mean, merge every 10, k=2 (old defaults)", dict(rule="mean", merge_every=10, k=2)),
        ("mean, merge every 10, k=4", dict(rule="mean")),
        ("weighted, merge every 20, k=2", dict(merge_every=20, k=2)),
        ("weighted, merge every 10, k=2", dict(k=2)),
        ("weighted, merge every 5, k=2", dict(merge_every=5, k=2)),
        ("weighted, merge every 10, k=4 (recommended)", dict()),
        ("weighted, merge every 10, k=4, max_lag=2 (stale)", dict(max_lag=2)),
        ("staleness (by samples), k=4, max_lag=2", dict(rule="staleness", max_lag=2, rule_params={"by_samples": True})),
        ("push-sum, merge every 10, k=4", dict(rule="push-sum")),
        ("consensus, merge every 10, k=4", dict(rule="consensus")),
        ("weighted, k=4, momentum reset on merge", dict(momentum_on_merge="reset")),
        ("weighted, k=4, momentum averaged on merge", dict(momentum_on_merge="average")),
        ("weighted, k=4, no momentum, lr 0.2", dict(momentum=0.0, lr=0.2)),
        ("weighted, k=4, momentum 0.9, lr 0.02", dict(lr=0.02)),
        ("weighted, ring (k=2)", dict(topology="ring", k=2)),
        ("weighted, complete (k=7)", dict(topology="complete")),
        ("weighted, merge every step, k=2", dict(merge_every=1, k=2)),
    ]
    if args.only:
        grid = [g for g in grid if any(o in g[0] for o in args.only.split(";"))]
    rows = []
    for name, kw in grid:
        r = _run(replace(base, **kw), data, "classes:2", seeds)
        r["name"] = name
        rows.append(r)
        print(f"{name:45s} {r['mean_acc']:.3f} ± {r['mean_acc_std']:.3f} (min peer {r['min_acc']:.3f}, "
              f"before merge {r['premerge_acc']:.3f}) "
              f"gap {central['mean_acc'] - r['mean_acc']:+.3f}  {r['wall_s']:.1f}s", flush=True)
    out = {"experiment": "noniid", "steps": args.steps, "seeds": seeds, "centralized": central, "rows": rows}
    print(f"\ncentralized (same MLP, SGD 0.05, momentum 0.9, {args.steps} steps): {central['mean_acc']:.3f}\n")
    print("| setting (8 peers x 2 classes) | mean peer acc after merge | min peer | gap to centralized "
          "| mean acc just before the merge |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['mean_acc']:.3f} ± {r['mean_acc_std']:.3f} | {r['min_acc']:.3f} | "
              f"{r['mean_acc'] - central['mean_acc']:+.3f} | {r.get('premerge_acc', float('nan')):.3f} |")
    if args.plot:
        _plot_noniid(out, args.plot)
    return out


def _plot_noniid(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    s, a = zip(*out["centralized"]["curve"])
    ax.plot(s, a, "k-", lw=2.5, label="centralized")
    ax.axhline(out["centralized"]["mean_acc"] - 0.03, color="k", ls=":", lw=1, label="centralized - 3 pts")
    keep = {"mean, merge every 20, k=2", "mean, merge every 10, k=2 (old defaults)", "weighted, merge every 10, k=2",
            "weighted, merge every 10, k=4 (recommended)", "weighted, k=4, momentum reset on merge",
            "weighted, merge every step, k=2"}
    for r in out["rows"]:
        if r["name"] in keep:
            s, a = zip(*r["curve"])
            ax.plot(s, a, label=r["name"])
    ax.set_xlabel("local SGD steps per peer")
    ax.set_ylabel("mean test accuracy of the 8 peers")
    ax.set_ylim(0.6, 1.0)
    ax.set_title("digits, 8 peers x 2 classes (classes:2), numpy MLP 64-64-10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def byzantine(args) -> dict:
    data = load_split()
    seeds = [int(s) for s in args.seeds.split(",")]
    rules = args.rules.split(",") if args.rules else list(RULES)
    ev = max(args.steps // 10, 1)
    base = SimConfig(steps=args.steps, eval_every=ev, **{**BEST, "topology": args.topology, "k": args.k},
                     weight_cap=args.weight_cap, rule_params=json.loads(args.rule_params))
    cells = []
    for scheme in ("iid", "classes:2"):
        for rule in rules:
            for attack in ("none",) + ATTACKS:
                cfg = replace(base, rule=rule, attack=attack, n_attackers=0 if attack == "none" else 2)
                t0 = time.perf_counter()
                r = _run(cfg, data, scheme, seeds)
                cells.append({"scheme": scheme, "rule": rule, "attack": attack, "mean_acc": r["mean_acc"],
                              "min_acc": r["min_acc"]})
                print(f"{scheme:9s} {rule:13s} {attack:18s} {r['mean_acc']:.3f} (min {r['min_acc']:.3f}) "
                      f"{time.perf_counter() - t0:.1f}s", flush=True)
    out = {"experiment": "byzantine", "steps": args.steps, "seeds": seeds, "base": asdict(base), "cells": cells}
    _print_byzantine(out, rules)
    return out


def _print_byzantine(out: dict, rules: list[str]) -> None:
    acc = {(c["scheme"], c["rule"], c["attack"]): c["mean_acc"] for c in out["cells"]}
    for scheme in ("iid", "classes:2"):
        clean = acc[(scheme, "mean", "none")] if (scheme, "mean", "none") in acc else float("nan")
        print(f"\n{scheme}: honest peers' mean accuracy, 2 of 8 peers attacking (clean mean rule: {clean:.3f})\n")
        print("| rule | clean (cost vs mean) | " + " | ".join(ATTACKS) + " | worst |")
        print("|---|---|" + "---|" * (len(ATTACKS) + 1))
        for rule in rules:
            c = acc[(scheme, rule, "none")]
            att = [acc[(scheme, rule, a)] for a in ATTACKS]
            print(f"| {rule} | {c:.3f} ({c - clean:+.3f}) | " + " | ".join(f"{a:.3f}" for a in att)
                  + f" | {min(att):.3f} |")


def _plot_byzantine(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = list(dict.fromkeys(c["rule"] for c in out["cells"]))
    cols = ("none",) + ATTACKS
    acc = {(c["scheme"], c["rule"], c["attack"]): c["mean_acc"] for c in out["cells"]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, scheme in zip(axes, ("iid", "classes:2")):
        grid = np.array([[acc[(scheme, r, a)] for a in cols] for r in rules])
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        for i in range(len(rules)):
            for j in range(len(cols)):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(cols)), ["clean"] + list(ATTACKS), rotation=30)
        ax.set_yticks(range(len(rules)), rules if ax is axes[0] else [""] * len(rules))
        ax.set_title(f"{scheme}: honest mean accuracy, 2 of 8 attack")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"plot: {path}")


def replot(args) -> dict:
    with open(args.json) as f:
        out = json.load(f)
    if out["experiment"] == "noniid":
        _plot_noniid(out, args.plot)
    else:
        _print_byzantine(out, list(dict.fromkeys(c["rule"] for c in out["cells"])))
        _plot_byzantine(out, args.plot)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("noniid")
    a.add_argument("--steps", type=int, default=3000)
    a.add_argument("--seeds", default="0,1,2")
    a.add_argument("--plot", default="docs/img/averaging_noniid.png")
    a.add_argument("--json", default="")
    a.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (default steps/20)")
    a.add_argument("--only", default="", help="run only settings whose name contains one of these ;-separated texts")
    b = sub.add_parser("byzantine")
    b.add_argument("--steps", type=int, default=2000)
    b.add_argument("--seeds", default="0,1")
    b.add_argument("--rules", default="")
    b.add_argument("--topology", default="complete")
    b.add_argument("--weight-cap", type=float, default=1.0)
    b.add_argument("--k", type=int, default=BEST["k"], help="neighbours per merge (random-k, ring)")
    b.add_argument("--rule-params", default="{}", help='JSON, e.g. {"f": 2} (applied to every rule in --rules)')
    b.add_argument("--json", default="")
    b.add_argument("--plot", default="docs/img/averaging_byzantine.png")
    c = sub.add_parser("plot", help="redraw the plot (and table) from a saved --json file")
    c.add_argument("--json", required=True)
    c.add_argument("--plot", required=True)
    args = p.parse_args()
    logging.getLogger("learnae.averaging").setLevel(logging.ERROR)  # exclusions are counted, not printed
    if args.cmd == "plot":
        replot(args)
        return
    out = noniid(args) if args.cmd == "noniid" else byzantine(args)
    if args.cmd == "byzantine" and args.plot:
        _plot_byzantine(out, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
