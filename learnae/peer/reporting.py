"""Progress a person and a program can read: a status line and metrics.jsonl.

Every ``status_every_s`` the peer evaluates its model on its local validation
slice (and on the swarm-wide test split it holds, for simulations), prints one
line to stderr and appends one JSON record to ``<data-dir>/metrics.jsonl``::

    {"time": 1795301063.7, "step": 420, "samples": 13440, "loss": 0.21, "accuracy": 0.94,
     "val_accuracy": 0.93, "test_accuracy": 0.91, "peers": 3, "merges": 40, ...}

``learnae peer status`` and the scenario runner read that file.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from contextlib import contextmanager

import trio
from rich.console import Console

from learnae.peer.status import METRICS_FILE

__all__ = ["PHASES", "StatusReporter"]

log = logging.getLogger(__name__)

PHASES = ("gather", "train", "merge_wait", "fetch_wait", "merge", "publish", "checkpoint")


class StatusReporter:
    """Evaluates, prints and records the peer's progress on an interval."""

    def __init__(self, peer):
        self.peer = peer
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.first_step: float | None = None  # monotonic time the first training step began
        # Wall time of the training loop by phase: "train" (inside training steps), "merge_wait"
        # (held for lagging or fresh neighbours: bounded staleness), "fetch_wait" (the next merge
        # is due and the background fetch has not finished), "merge" (averaging the fetched
        # snapshots in), "publish" (copying the weights; the rest runs in the background),
        # "checkpoint"; "gather" is the wait for the swarm and the catch-up before the first step.
        self.phase_s: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.latest: dict = {}

    @contextmanager
    def timed(self, phase: str):
        """Add the wall time of the ``with`` block to ``phase``."""
        t0 = time.monotonic()
        if phase == "train" and self.first_step is None:
            self.first_step = t0
        try:
            yield
        finally:
            self.phase_s[phase] += time.monotonic() - t0

    def train_share(self) -> float:
        """Share of the wall time since the first training step spent inside training steps."""
        if self.first_step is None:
            return 0.0
        return self.phase_s["train"] / max(1e-9, time.monotonic() - self.first_step)

    async def run(self) -> None:
        while True:
            await trio.sleep(self.peer.cfg.status_every_s)
            await self.evaluate()
            self.print_line()
            self.write_record()

    async def evaluate(self) -> None:
        work = self.peer.work
        trainer = work.trainer

        def both():
            val = trainer.evaluate(work.validation.x, work.validation.y) if len(work.validation) else (math.nan, math.nan)
            test = trainer.evaluate(work.test.x, work.test.y) if len(work.test) else (math.nan, math.nan)
            return val, test

        (val_loss, val_acc), (test_loss, test_acc) = await trio.to_thread.run_sync(both)
        self.peer.metrics.accuracy.set(val_acc)
        self.latest = {"val_loss": val_loss, "val_accuracy": val_acc,
                       "test_loss": test_loss, "test_accuracy": test_acc}

    def record(self) -> dict:
        p = self.peer
        bs = getattr(p.bitswap, "stats", {})
        peers = len(p.host.get_connected_peers()) if p.host is not None else 0
        p.metrics.peers.set(peers)
        return {
            "time": time.time(),
            "peer_id": p.identity.peer_id,
            "step": p.trainer.step,
            "samples": p.trainer.samples,
            "loss": p.last["loss"],
            "accuracy": p.last["accuracy"],
            **self.latest,
            "peers": peers,
            "known_authors": len(p.view.authors()),
            "merges": p.merges,
            "snapshots": p.published,
            "bytes_received": int(bs.get("bytes_received", 0)),
            "bytes_sent": int(bs.get("bytes_sent", 0)),
            "train_share": self.train_share(),
            "time_s": {k: round(v, 3) for k, v in self.phase_s.items()},
            "ledger_seq": p.ledger.next_seq - 1,
            "announce_latency_s": p.announce_latency_s(),
            "fetch_latency_s": statistics.median(p.merger.fetch_latencies) if p.merger.fetch_latencies else None,
            "rejected": _total(p.metrics.rejected),
            "forks": sorted({proof.author for proof in p.ledger.fork_proofs()}),
            "faults_dropped": p.faults.dropped,
        }

    async def mark(self, event: str) -> None:
        """Evaluate now and write a record tagged with ``event`` (e.g. ``"catch-up"``)."""
        await self.evaluate()
        self.write_record(event=event)

    def write_record(self, *, event: str | None = None) -> None:
        rec = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in self.record().items()}
        if event is not None:
            rec["event"] = event
        path = self.peer.cfg.data_dir.expanduser() / METRICS_FILE
        with open(path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")

    def print_line(self) -> None:
        p = self.peer
        r = self.latest
        merge = "never"
        if p.last_merge is not None:
            merge = f"{time.time() - p.last_merge[0]:.1f}s ago ({p.last_merge[1]} parents)"
        self.console.print(
            f"[bold]step {p.trainer.step}[/] loss {p.last['loss']:.3f} acc {p.last['accuracy']:.3f} "
            f"val {r.get('val_accuracy', math.nan):.3f} peers {len(p.host.get_connected_peers())} "
            f"merges {p.merges} last merge {merge}"
        )


def _total(counter) -> int:
    """A labelled Prometheus counter summed over its labels."""
    return int(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))
