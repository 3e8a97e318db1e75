"""MNIST-1D swarm, simulated in one process: N KerasTrainers on a scenario's IID shards, merging in lock-step.

A quick, cheap stand-in for ``learnae scenario run scenarios/mnist1d.yaml`` (8 TensorFlow
processes) when choosing its settings: the peers' data are cut exactly as
``learnae peer start --dataset mnist1d --shard I/N --partition iid --seed 0`` cuts them
(``split_dataset``, ``select_shard``, then the peer's local validation hold-out), each
peer is a :class:`learnae.training.KerasTrainer`, and every ``--merge-every`` steps each
peer replaces its weights by the plain mean of its own and ``--merge-k`` random
neighbours' (the ``mean`` rule, no staleness, no network). Real peers merge
asynchronously with slightly stale snapshots, so this is an optimistic estimate.

Run (the numbers in docs/BENCHMARKS.md, section MNIST-1D):
    .venv/bin/python -m bench.mnist1d_swarm_sim --batch-size 32 --steps 2000
    .venv/bin/python -m bench.mnist1d_swarm_sim --batch-size 100 --steps 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist1d-cnn")
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1500, help="local steps per peer")
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--learning-rate", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--merge-every", type=int, default=5)
    ap.add_argument("--merge-k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-every", type=int, default=250, help="steps between test evaluations")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    # one core: the machine is shared, and these models barely gain from a second
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.get_logger().setLevel("ERROR")  # 8 models' predict functions trip TF's retracing warning
    from learnae.data import load_dataset, select_shard, split_dataset, split_local_shard
    from learnae.peer.workload import VALIDATION_SHARE
    from learnae.training import KerasTrainer

    parts = split_dataset(load_dataset("mnist1d"), seed=args.seed)
    trainers = []
    for i in range(args.peers):
        shard = select_shard(parts.train, f"{i}/{args.peers}", partition="iid", seed=args.seed)
        local = split_local_shard(shard, seed=args.seed, validation=VALIDATION_SHARE).train
        trainers.append(KerasTrainer.from_spec(args.model, local.x, local.y, seed=args.seed,
                                               optimizer=args.optimizer, learning_rate=args.learning_rate,
                                               batch_size=args.batch_size))
    rng = np.random.default_rng(args.seed)
    print(f"{args.peers} x {args.model}, {args.optimizer} {args.learning_rate}, batch {args.batch_size}, "
          f"merge every {args.merge_every} with {args.merge_k} neighbours (mean); test = the paper's 1,000")
    print("step  mean_acc  min_acc  wall_s")
    started = time.perf_counter()
    for step in range(args.merge_every, args.steps + 1, args.merge_every):
        for t in trainers:
            t.train_steps(args.merge_every)
        snapshots = [t.get_weights() for t in trainers]
        for i, t in enumerate(trainers):
            others = rng.choice([j for j in range(args.peers) if j != i], args.merge_k, replace=False)
            group = [snapshots[i]] + [snapshots[j] for j in others]
            t.set_weights([np.mean(tensors, axis=0) for tensors in zip(*group)])
            t.on_weights_replaced()
        if step % args.report_every == 0 or step + args.merge_every > args.steps:
            accs = [t.evaluate(parts.test.x, parts.test.y)[1] for t in trainers]
            print(f"{step:>5}  {np.mean(accs):.3f}     {min(accs):.3f}    {time.perf_counter() - started:.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
