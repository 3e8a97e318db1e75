"""Cost of one merge per rule, next to the raw numpy reference, on two model sizes.

The reference is what any merge must at least do: ``np.mean`` of the k+1 float32 arrays
(no validation, no weights). Ratios are what to compare; the machine is shared.

Usage::

    .venv/bin/python -m bench.averaging_speed --params 100000,1000000 --k 4 --repeat 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from learnae.averaging import RULES, Contribution, merge


def _model(rng: np.random.Generator, n_params: int) -> list[np.ndarray]:
    # four tensors like a small dense net: two weight matrices and their biases
    side = int(np.sqrt(n_params / 2))
    return [rng.normal(0, 0.1, (side, side)).astype(np.float32), np.zeros(side, np.float32),
            rng.normal(0, 0.1, (side, side)).astype(np.float32), np.zeros(side, np.float32)]


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description="merge() cost per rule vs a raw numpy mean")
    p.add_argument("--params", default="100000,1000000")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    print(f"| params | rule | merge ms (k={args.k}) | raw np.mean ms | ratio |")
    print("|---|---|---|---|---|")
    for n_params in (int(x) for x in args.params.split(",")):
        local = _model(rng, n_params)
        cs = [Contribution([t + rng.normal(0, 0.01, t.shape).astype(np.float32) for t in local], 100, author=str(i))
              for i in range(args.k)]
        for rule in RULES:
            ref = _best(lambda: [np.mean([local[t]] + [c.weights[t] for c in cs], axis=0) for t in range(4)],
                        args.repeat)
            t = _best(lambda: merge(local, cs, rule), args.repeat)
            print(f"| {sum(x.size for x in local):,} | {rule} | {t * 1e3:.1f} | {ref * 1e3:.1f} | {t / ref:.1f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
