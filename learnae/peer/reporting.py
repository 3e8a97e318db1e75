"""Progress a person and a program can read: a status line and metrics.jsonl.

Every ``status_every_s`` the peer evaluates its model on its local validation
slice (and on the swarm-wide test split it holds, for simulations), prints one
line to stderr and appends one JSON record to ``<data-dir>/metrics.jsonl``::

    {"time": 1795301063.7, "step": 420, "samples": 13440, "loss": 0.21, "accuracy": 0.94,
     "val_accuracy": 0.93, "test_accuracy": 0.91, "peers": 3, "merges": 40, ...}

``learnae peer status`` and the scenario runner read that file.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from contextlib import contextmanager

import trio
from rich.console import Console

from learnae.peer.record import MetricsRecord, append_record

__all__ = ["PHASES", "StatusReporter"]

log = logging.getLogger(__name__)

PHASES = ("gather", "train", "merge_wait", "fetch_wait", "merge", "publish", "checkpoint")


class StatusReporter:
    """Evaluates, prints and records the peer's progress on an interval."""

    def __init__(self, loop):
        self.loop = loop  # a learnae.peer.runtime.TrainingLoop
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
            await trio.sleep(self.loop.cfg.status_every_s)
            await self.evaluate()
            self.print_line()
            self.write_record()

    async def evaluate(self) -> None:
        work = self.loop.work
        trainer = work.trainer

        def both():
            val = trainer.evaluate(work.validation.x, work.validation.y) if len(work.validation) else (math.nan, math.nan)
            test = trainer.evaluate(work.test.x, work.test.y) if len(work.test) else (math.nan, math.nan)
            return val, test

        (val_loss, val_acc), (test_loss, test_acc) = await trio.to_thread.run_sync(both)
        self.loop.node.metrics.accuracy.set(val_acc)
        self.latest = {"val_loss": val_loss, "val_accuracy": val_acc,
                       "test_loss": test_loss, "test_accuracy": test_acc}

    def record(self, *, event: str | None = None) -> MetricsRecord:
        """The peer's state now, as one metrics.jsonl record."""
        loop, p = self.loop, self.loop.node
        bs = getattr(p.store.bitswap, "stats", {})
        peers = p.connected()
        p.metrics.peers.set(peers)
        latencies = p.merger.fetch_latencies if p.merger is not None else ()
        return MetricsRecord(
            time=time.time(),
            peer_id=p.peer_id,
            step=loop.trainer.step,
            samples=loop.trainer.samples,
            loss=loop.last["loss"],
            accuracy=loop.last["accuracy"],
            **self.latest,
            peers=peers,
            known_authors=len(p.view.authors()),
            merges=p.merges,
            snapshots=p.published,
            bytes_received=int(bs.get("bytes_received", 0)),
            bytes_sent=int(bs.get("bytes_sent", 0)),
            train_share=self.train_share(),
            time_s={k: round(v, 3) for k, v in self.phase_s.items()},
            ledger_seq=p.ledger.next_seq - 1,
            announce_latency_s=p.announce_latency_s(),
            fetch_latency_s=statistics.median(latencies) if latencies else None,
            rejected=_total(p.metrics.rejected),
            rejected_by_reason=_by_label(p.metrics.rejected, "reason"),
            forks=tuple(sorted({proof.author for proof in p.ledger.fork_proofs()})),
            faults_dropped=getattr(p.policy, "dropped", 0),
            ledger_authors=len(p.ledger.chain_heads()),
            ledger_entries=len(p.ledger),
            ledger_gaps=p.ledger.gaps(),
            merges_skipped=p.merger.skipped if p.merger is not None else 0,
            gossiped=p.gossiped,
            event=event,
        )

    async def mark(self, event: str) -> None:
        """Evaluate now and write a record tagged with ``event`` (e.g. ``"catch-up"``)."""
        await self.evaluate()
        self.write_record(event=event)

    def write_record(self, *, event: str | None = None) -> None:
        append_record(self.loop.cfg.data_dir.expanduser(), self.record(event=event))

    def print_line(self) -> None:
        loop, p = self.loop, self.loop.node
        r = self.latest
        merge = "never"
        if p.last_merge is not None:
            merge = f"{time.time() - p.last_merge[0]:.1f}s ago ({p.last_merge[1]} parents)"
        if loop.trainer.step == 0:  # nothing trained yet: say what the peer waits for, not "loss nan"
            self.console.print(f"[bold]step 0[/] waiting to start (members {len(p.members())}, "
                               f"peers {p.connected()}, min-peers {loop.cfg.min_peers})")
            return
        test = r.get("test_accuracy", math.nan)
        held_out = f"test {test:.3f} (held-out, all classes)" if test == test else \
            f"val {r.get('val_accuracy', math.nan):.3f} (own data)"
        self.console.print(
            f"[bold]step {loop.trainer.step}[/] loss {loop.last['loss']:.3f} {held_out} peers {p.connected()} "
            f"merges {p.merges} last merge {merge}"
        )

    def print_summary(self, reason: str) -> None:
        """The last line a peer prints: what it did, how good its model is, where its data is."""
        loop, p = self.loop, self.loop.node
        test = self.latest.get("test_accuracy", math.nan)
        accuracy = f"held-out test accuracy {test:.3f}" if test == test else \
            f"validation accuracy {self.latest.get('val_accuracy', math.nan):.3f} (own data)"
        self.console.print(f"[bold]stopped ({reason})[/]: {loop.trainer.step} steps, {p.merges} merges, "
                           f"{p.published} snapshots, {accuracy}; data dir {loop.cfg.data_dir}")


def _total(counter) -> int:
    """A labelled Prometheus counter summed over its labels."""
    return int(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))


def _by_label(counter, label: str) -> dict[str, int]:
    """A labelled Prometheus counter as ``{label value: count}``."""
    return {s.labels[label]: int(s.value) for m in counter.collect() for s in m.samples
            if s.name.endswith("_total") and s.value}
