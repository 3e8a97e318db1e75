"""What a scenario run measures from outside the peers: their records, models, ledgers and data.

* the peers' own metrics records (:func:`live_records`, :func:`honest_accuracies`),
  read as typed :class:`~learnae.peer.record.MetricsRecord` values;
* the consensus distance: how far the peers' checkpointed models are from
  their average (:func:`consensus_sample`);
* every ledger verified as a user would (:func:`verify_ledger`), and their
  union exported as one CAR file (:func:`write_union_car`);
* the data partition of the plan and its digest (:func:`partition_summary`).

Example:
    >>> sample = consensus_sample(fleet, t=12.5)
    >>> sample.distance, sample.peers
    (0.41, 3)
    >>> check, forks = verify_ledger(Path("out/peers/peer-0"))
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from learnae.errors import UserError
from learnae.fsutil import atomic_write
from learnae.peer.record import MetricsRecord, read_records
from learnae.scenario.fleet import Fleet
from learnae.scenario.report import ConsensusSample, LedgerCheck, PartitionSummary, ShardSummary
from learnae.scenario.schema import Plan

__all__ = ["live_records", "honest_accuracies", "consensus_sample", "consensus_distances", "verify_ledger",
           "write_union_car", "partition_summary", "VERIFY_TIMEOUT_S"]

log = logging.getLogger(__name__)

VERIFY_TIMEOUT_S = 300.0


def live_records(fleet: Fleet) -> dict[str, list[MetricsRecord]]:
    """Every running peer's metrics records so far (its metrics.jsonl, read once), by name."""
    return {n: read_records(p.data_dir) for n, p in fleet.peers.items() if p.alive}


def honest_accuracies(fleet: Fleet, records: dict[str, list[MetricsRecord]]) -> list[float]:
    """The latest test accuracy of each running honest peer that has one."""
    out = []
    for name, recs in records.items():
        if not fleet.peers[name].attacked:
            acc = next((r.test_accuracy for r in reversed(recs) if r.test_accuracy is not None), None)
            if acc is not None:
                out.append(acc)
    return out


def consensus_distances(models: list[list[np.ndarray]]) -> list[float]:
    """Each model's L2 distance to the models' average."""
    mean = [np.mean([m[i].astype(np.float64) for m in models], axis=0) for i in range(len(models[0]))]
    return [math.sqrt(sum(float(np.sum((w.astype(np.float64) - c) ** 2)) for w, c in zip(m, mean))) for m in models]


def consensus_sample(fleet: Fleet, t: float, *, alive_only: bool = True) -> ConsensusSample | None:
    """The consensus distance of the peers' latest checkpoints at ``t`` (s); None with fewer than 2.

    Args:
        alive_only: only running peers (at the end: every peer that was not killed and did not fail).
    """
    from learnae.peer.checkpoint import load_checkpoint

    models = []
    for p in fleet.peers.values():
        if (p.alive or not alive_only) and p.starts and p.state not in ("killed", "failed"):
            try:
                ckpt = load_checkpoint(p.data_dir)
            except Exception:  # noqa: BLE001 - a checkpoint being replaced, or none yet
                ckpt = None
            if ckpt is not None:
                models.append(ckpt.weights)
    if len(models) < 2:
        return None
    dists = consensus_distances(models)
    return ConsensusSample(round(t, 3), float(np.mean(dists)), float(np.max(dists)), len(models))


def verify_ledger(data_dir: Path) -> tuple[LedgerCheck, list[str]]:
    """``learnae ledger verify DIR --format json``, as a user would run it.

    Returns:
        The check, and the authors the ledger holds fork proofs of (peer IDs, sorted).
    """
    proc = subprocess.run([sys.executable, "-m", "learnae.cli.main", "ledger", "verify", str(data_dir),
                           "--format", "json"], capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        rep = json.loads(proc.stdout)
        if not isinstance(rep, dict):
            raise ValueError("not an object")
    except ValueError:
        return LedgerCheck(valid=False, entries=0, problems=(proc.stderr.strip()[-500:] or "no output",)), []
    check = LedgerCheck(valid=bool(rep.get("ok")) and proc.returncode == 0, entries=int(rep.get("entries") or 0),
                        problems=tuple(str(x) for x in rep.get("problems", [])[:20]))
    return check, sorted({f["author"] for f in rep.get("forks", [])})


def write_union_car(path: Path, data_dirs: list[Path]) -> int:
    """Every entry any peer holds, in one CAR file (roots: every author's heads); return the block count.

    Nothing is written when no peer holds an entry (then 0).
    """
    from learnae.ledger import Ledger
    from learnae.ledger.car import write_car

    blocks: dict = {}
    roots: dict = {}
    for d in data_dirs:
        try:
            with Ledger.open(d, readonly=True) as led:
                for cid, data in led.raw_entries():
                    blocks.setdefault(cid, data)
                for h in led.heads():
                    roots.setdefault(h, None)
        except UserError as exc:
            log.warning("ledger of %s not exported: %s", d, exc)
    if not blocks:
        return 0
    buf = io.BytesIO()
    n = write_car(buf, list(roots), blocks.items())
    atomic_write(path, buf.getvalue())
    return n


def partition_summary(p: Plan) -> PartitionSummary:
    """Every peer's shard (size, classes) and a digest of all of them: equal plans give equal digests."""
    from learnae.data.datasets import load_dataset, split_dataset
    from learnae.data.shards import select_shard

    s = p.scenario
    digest = hashlib.sha256()
    shards = {}
    try:
        train = split_dataset(load_dataset(s.dataset), seed=s.seed).train
    except UserError as exc:
        return PartitionSummary(scheme=s.partition, seed=s.seed, digest=None, error=str(exc))
    for peer in p.peers:
        shard = select_shard(train, f"{peer.index}/{p.shards}", partition=s.partition, seed=s.seed)
        digest.update(np.ascontiguousarray(shard.x).tobytes())
        digest.update(np.ascontiguousarray(shard.y).tobytes())
        shards[peer.name] = ShardSummary(index=peer.index, samples=len(shard),
                                         classes={str(c): int(n) for c, n in enumerate(shard.class_histogram()) if n})
    return PartitionSummary(scheme=s.partition, seed=s.seed, digest=digest.hexdigest(), shards=shards)
