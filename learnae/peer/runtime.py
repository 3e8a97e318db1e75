"""``learnae peer start``: a training loop driving one :class:`~learnae.peer.node.PeerNode`.

``run_peer(cfg)`` first checks the user's input and builds the local data and
model (bad input fails here, before any networking), then opens the peer's
stack (:func:`~learnae.peer.node.open_peer_node`), joins the swarm of the model
(then its dial line is the first line on stdout) and runs :class:`TrainingLoop`
until ``max_steps`` or a signal. Everything it needs to resume lives in the data dir.

The loop, per burst of local steps (in a worker thread, so the network stays
responsive)::

    train -> every merge_every: choose up to k fresh neighbour snapshots (waiting only
             for lagging neighbours) and fetch and validate them in the background;
             they are averaged into the model at the first burst's end after they arrived
          -> every publish_every (and publish_interval_s since the last, when set): copy the
             weights; encode, put, append a signed snapshot entry and announce in the background
          -> every checkpoint_every: save weights, optimizer state, step atomically

Training stops only for what must see the model between two steps (a copy of the
weights, the average itself) and for the bounded-staleness wait; the network work
of merges and publishes overlaps the next steps.

Example:
    >>> cfg, _ = load_config({"data_dir": "/tmp/a", "listen": "/ip4/127.0.0.1/tcp/0"})
    >>> run_peer(cfg)   # blocks; Ctrl-C publishes a leave entry and exits
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import trio

from learnae.data.datasets import load_dataset, parse_dataset_spec
from learnae.errors import FetchError, ServiceError, UserError
from learnae.peer.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from learnae.peer.config import PeerConfig
from learnae.peer.faults import Faults
from learnae.peer.merging import Merged
from learnae.peer.node import LEAVE_BUDGET_S, PeerNode, open_peer_node
from learnae.peer.pacing import Pacer
from learnae.peer.policy import NO_FAULTS
from learnae.peer.reach import explain_dial_failure, other_machine_addrs, other_machine_lines, watch_bootstrap
from learnae.peer.reporting import StatusReporter
from learnae.peer.view import SnapshotRef
from learnae.peer.workload import Workload, cut_shard, prepare_workload
from learnae.threads import run_sized
from learnae.training.models import check_model_spec

__all__ = ["run_peer", "TrainingLoop", "print_dial_line"]

log = logging.getLogger(__name__)

FINISH_WAIT_S = 60.0  # at max_steps: how long to wait for the neighbours' final snapshots
FINISH_LINGER_S = 3.0  # then: how long to keep serving our own final snapshot before leaving


def run_peer(cfg: PeerConfig, early_signal: Callable[[], int | None] | None = None) -> None:
    """Run a peer until ``max_steps`` or SIGINT/SIGTERM (blocking).

    ``early_signal``, called once this peer watches for signals itself, returns one that
    came before (while the process was still loading), to be acted on as if it came now.
    """
    trio.run(_run, cfg, early_signal)


class Interrupts:
    """SIGINT/SIGTERM at any moment of a peer's life end it gracefully, never with a traceback.

    Work that a signal should stop runs inside :meth:`scope`: starting up (loading
    TensorFlow, opening the node, joining) stops at once, training stops at the next
    step and the peer leaves the swarm. Once leaving has begun, further signals are
    ignored: the leave entry and the last checkpoint are written within their budget.
    """

    def __init__(self) -> None:
        self.reason: str | None = None  # "interrupted" (SIGINT) or "terminated" (SIGTERM)
        self._scopes: list[trio.CancelScope] = []

    def scope(self) -> trio.CancelScope:
        """A cancel scope the next signal cancels (at once, if one came already)."""
        cs = trio.CancelScope()
        if self.reason is not None:
            cs.cancel()
        self._scopes.append(cs)
        return cs

    async def watch(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.arrived(signum)

    def arrived(self, signum: int) -> None:
        if self.reason is None:
            self.reason = "interrupted" if signum == signal.SIGINT else "terminated"
            log.warning("%s: leaving the swarm", signal.Signals(signum).name)
        for cs in self._scopes:
            cs.cancel()


async def _run(cfg: PeerConfig, early_signal: Callable[[], int | None] | None = None) -> None:
    interrupts = Interrupts()
    async with trio.open_nursery() as watcher:
        await watcher.start(interrupts.watch)  # from here on a signal never raises KeyboardInterrupt
        if early_signal is not None and (signum := early_signal()) is not None:
            interrupts.arrived(signum)
        try:
            await _serve(cfg, interrupts)
        finally:
            watcher.cancel_scope.cancel()


async def _serve(cfg: PeerConfig, interrupts: Interrupts) -> None:
    # Cheap checks of the user's input first: a typo costs no TensorFlow import.
    from_network = parse_dataset_spec(cfg.dataset).kind == "cid"
    if not from_network:
        shard, test = cut_shard(cfg, load_dataset(cfg.dataset))
    check_model_spec(cfg.model)
    policy = Faults(cfg.faults, seed=cfg.seed) if cfg.faults else NO_FAULTS  # a bad file is the user's error
    work = None
    with interrupts.scope():
        if not from_network:
            work = await trio.to_thread.run_sync(prepare_workload, cfg, shard, test, abandon_on_cancel=True)
    if interrupts.reason is not None:
        return  # stopped while loading: nothing was written, nothing to leave
    async with open_peer_node(cfg, policy=policy) as node, trio.open_nursery() as helpers:
        try:
            if cfg.bootstrap:
                helpers.start_soon(partial(watch_bootstrap, node.host, cfg.bootstrap, may_connect=policy.may_connect))
            with interrupts.scope():
                if work is None:
                    work = await _fetch_workload(cfg, node)
            if work is None:
                return
            resumed = _resume(cfg, work)
            await TrainingLoop(cfg, node, work, resumed=resumed, interrupts=interrupts,
                               on_joined=lambda: print_dial_line(node)).run()
        finally:
            helpers.cancel_scope.cancel()


def print_dial_line(node: PeerNode) -> None:
    """The peer's first line on stdout, once it is a member of its swarm: its full multiaddr.

    Printed after the join, so a peer that stops at it (a bootstrap peer of another
    swarm, a chain behind its checkpoint) prints no address nobody could use. On a
    wildcard listener (``0.0.0.0``) that line is for peers on this machine; the
    addresses other machines dial follow on stderr.
    """
    print(node.addr, flush=True)
    for line in other_machine_lines(other_machine_addrs(node.host)):
        print(line, file=sys.stderr, flush=True)


async def _fetch_workload(cfg: PeerConfig, node: PeerNode) -> Workload:
    """``--dataset <CID>``: fetch this peer's shard from the bootstrap peers, then build the model."""
    from learnae.data.manifest import fetch_dataset, fetch_test
    from learnae.gossip import connect
    from learnae.storage.cid import parse_cid

    for addr in cfg.bootstrap:
        try:
            await connect(node.host, addr, timeout_s=cfg.fetch_timeout_s)
        except ServiceError as exc:  # watch_bootstrap says it once, at WARNING
            log.debug("bootstrap %s while fetching the dataset: %s", addr, explain_dial_failure(addr, exc))
    limit_s = max(60.0, 6 * cfg.fetch_timeout_s)
    try:
        with trio.fail_after(limit_s):
            shard = await fetch_dataset(node.store, parse_cid(cfg.dataset), cfg.shard,
                                        partition=cfg.partition, seed=cfg.seed)
            test = await fetch_test(node.store, parse_cid(cfg.dataset))  # None: the manifest has no test split
    except (trio.TooSlowError, KeyError, FetchError) as exc:
        raise FetchError(f"--dataset {cfg.dataset}: no peer delivered it within {limit_s:.0f} s; pass --bootstrap "
                         "of a peer that has it (e.g. one running `learnae ipfs serve`)") from exc
    log.info("fetched %d samples of dataset %s", len(shard), cfg.dataset)
    return await trio.to_thread.run_sync(prepare_workload, cfg, shard, test)


def _resume(cfg: PeerConfig, work: Workload) -> Checkpoint | None:
    ckpt = load_checkpoint(cfg.data_dir.expanduser())
    if ckpt is None:
        return None
    if ckpt.extra.get("fingerprint") != work.fingerprint:
        raise UserError(
            f"{cfg.data_dir}: its checkpoint is for another model (fingerprint "
            f"{str(ckpt.extra.get('fingerprint'))[:12]}..., --model {cfg.model} has {work.fingerprint[:12]}...); "
            "use the same --model or another --data-dir"
        )
    work.trainer.set_weights(ckpt.weights)
    work.trainer.set_optimizer_state(ckpt.optimizer)
    work.trainer.set_progress(ckpt.extra.get("progress") or {"step": ckpt.step, "samples": ckpt.samples})
    log.info("resumed from checkpoint at step %d", ckpt.step)
    print(f"resumed from the checkpoint of step {ckpt.step} in {cfg.data_dir}", file=sys.stderr, flush=True)
    return ckpt


class TrainingLoop:
    """Bursts of local steps, overlapped merges and publishes, checkpoints, status.

    Args:
        cfg: the peer's settings.
        node: the open peer node (not joined yet).
        work: the model and data to train.
        resumed: the checkpoint this run resumed from, if any (no catch-up then).
        interrupts: the signals that stop it (a new set by default).
        on_joined: called once the node has joined its swarm (``peer start`` prints its dial line).
    """

    def __init__(self, cfg: PeerConfig, node: PeerNode, work: Workload, *, resumed: Checkpoint | None = None,
                 interrupts: Interrupts | None = None, on_joined: Callable[[], None] | None = None):
        self.cfg, self.node, self.work = cfg, node, work
        self.on_joined = on_joined
        self.interrupts = interrupts or Interrupts()
        self.trainer = work.trainer
        self.resumed = resumed
        self.last = {"loss": float("nan"), "accuracy": float("nan")}
        self._background: trio.Nursery | None = None  # for merges and publishes
        self._merge_pending = False  # a background fetch is running or its result awaits merging
        self._fetched: tuple | None = None  # (refs, contributions, anchor weights, step) to merge
        self._fetch_done = trio.Event()  # set when the background fetch has ended
        self._publishing: trio.Event | None = None  # set when the publish in flight is done
        self._good: tuple | None = None  # (weights, optimizer state, parents) before the latest merge
        self._pace = Pacer(cfg.publish_interval_s)  # at most one snapshot per interval (0: every publish_every)
        self.leave_reason = "stopped"
        self.reporter = StatusReporter(self)

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        node = self.node
        if self.cfg.metrics_port:
            node.metrics.serve(self.cfg.metrics_port)
        with self.interrupts.scope():
            await node.join(self.trainer.tensor_specs(), framework="keras", shard=self.work.source,
                            local_samples=len(self.work.source),
                            own_seq_at_least=self.resumed.ledger_seq if self.resumed is not None else None)
        if node.swarm is None:
            return  # interrupted while joining: open_peer_node leaves on the way out
        if self.on_joined is not None:
            self.on_joined()
        async with trio.open_nursery() as nursery:
            self._background = nursery
            nursery.start_soon(self.reporter.run)
            with self.interrupts.scope():
                await self._work()
            self.leave_reason = self.interrupts.reason or self.leave_reason
            with trio.move_on_after(LEAVE_BUDGET_S) as budget:
                budget.shield = True
                await self._publish_done()
                await self._checkpoint()
                await node.leave(self.leave_reason)
            with trio.move_on_after(LEAVE_BUDGET_S) as final:
                final.shield = True
                await self.reporter.evaluate()  # the last record describes the final model
            self.reporter.write_record()
            self.reporter.print_summary(self.leave_reason)
            nursery.cancel_scope.cancel()

    # -- the training loop -----------------------------------------------------------------

    async def _work(self) -> None:
        cfg, node = self.cfg, self.node
        timed = self.reporter.timed
        with timed("gather"):
            await node.wait_for_members(cfg.min_peers)
            if self.resumed is None and (cfg.bootstrap or cfg.mdns) and cfg.catch_up_s > 0:
                start = await node.catch_up()
                if start is not None:
                    self.trainer.set_weights(start)
                    self.trainer.on_weights_replaced()
                    await self.reporter.mark("catch-up")
        while not cfg.max_steps or self.trainer.step < cfg.max_steps:
            step = self.trainer.step
            boundaries = [cfg.publish_every, cfg.merge_every, cfg.checkpoint_every]
            n = min(b - step % b for b in boundaries)
            if cfg.max_steps:
                n = min(n, cfg.max_steps - step)
            t0 = time.perf_counter()
            with timed("train"):
                result = await trio.to_thread.run_sync(self.trainer.train_steps, n)
            spent = time.perf_counter() - t0
            if node.policy.slow > 1:  # an injected slowdown: a slower machine, as the scenario says
                await trio.sleep((node.policy.slow - 1) * spent)
            if not math.isfinite(result.loss):  # diverged: never let NaN reach a merge, a snapshot, a checkpoint
                await self._roll_back(result.loss)
                continue
            self.last = {"loss": float(result.loss), "accuracy": float(result.accuracy)}
            node.metrics.steps.inc(n)
            node.metrics.samples.inc(result.samples)
            node.metrics.loss.set(result.loss)
            step = self.trainer.step
            if step % cfg.merge_every == 0 and self._merge_pending and self._fetched is None:
                with timed("fetch_wait"):  # at most merge_every steps between merges: wait for the fetch
                    await self._fetch_done.wait()
            if self._fetched is not None:
                with timed("merge"):
                    await self._merge_fetched()
            if step % cfg.merge_every == 0 and not self._merge_pending:
                await self._merge()
            last = bool(cfg.max_steps and step >= cfg.max_steps)
            if (step % cfg.publish_every == 0 and self._pace.due()) or last:
                with timed("publish"):
                    await self._publish_snapshot(wait=last)
            if step % cfg.checkpoint_every == 0:
                with timed("checkpoint"):
                    await self._checkpoint()
        await self._finish()
        self.leave_reason = "done"

    async def _finish(self) -> None:
        """At ``max_steps``: end in consensus with the swarm, not on a last burst of local steps.

        Waits (bounded) until every live neighbour has announced a snapshot at
        ``max_steps`` or left, merges all their final snapshots at once, publishes
        the result, and keeps serving it briefly so later finishers can fetch it.
        A connected swarm member none of whose snapshots has arrived yet is waited
        for too: a short run can end before its first announcement does.
        """
        node, target = self.node, self.cfg.max_steps
        view, merger = node.view, node.merger
        with trio.move_on_after(FINISH_WAIT_S):
            while True:
                excluded = merger.excluded()
                pending = [a for a in view.authors() if a not in excluded and view.latest(a).step < target]
                pending += [p for p in node.topic_peers() if p not in excluded and view.latest(p) is None]
                if not pending:
                    break
                with trio.move_on_after(1.0):  # also re-check when nothing new arrives: a fork or a leave
                    await merger.wait_fresh()  # found meanwhile can end the wait as well
        authors = view.authors()  # every final snapshot, strangers' capped as at every merge
        refs = view.choose(len(authors), exclude=merger.excluded(), fresh_only=False,
                           prefer=merger.connected_members(), max_others=merger.max_strangers())
        if refs:
            step = self.trainer.step
            await self._adopt(await node.combine(self.trainer.get_weights(), refs, await node.fetch(refs, step), step))
            await self._publish_snapshot(wait=True)
            await trio.sleep(FINISH_LINGER_S)

    # -- merging: choose now, fetch in the background, average at the next stop --------------

    async def _merge(self) -> None:
        """Choose neighbour snapshots (after a bounded wait) and fetch them in the background."""
        with self.reporter.timed("merge_wait"):
            refs = await self.node.choose(self.trainer.step)
        if refs:
            self._merge_pending = True
            self._fetch_done = trio.Event()
            anchor = self.trainer.get_weights()
            self._background.start_soon(self._fetch_for_merge, refs, anchor, self.trainer.step)

    async def _fetch_for_merge(self, refs: list[SnapshotRef], anchor: list, step: int) -> None:
        try:
            contributions = await self.node.fetch(refs, step)
            if contributions:
                self._fetched = (refs, contributions, anchor, step)  # merged at the loop's next stop
            else:
                self._merge_pending = False
        finally:
            self._fetch_done.set()

    async def _merge_fetched(self) -> None:
        """Merge a background fetch's snapshots, keeping the local steps taken while it ran.

        The rule averages the model as it was when the fetch began (the anchor) with
        the neighbours' snapshots, so their age relative to it is what bounded
        staleness allowed; the local progress since is added back:
        ``new = current + (merge(anchor, neighbours) - anchor)`` (as in overlap local
        SGD). With no steps in between this is the plain merge.
        """
        refs, contributions, anchor, step = self._fetched
        self._fetched = None
        try:
            merged = await self.node.combine(anchor, refs, contributions, step)
        finally:
            self._merge_pending = False
        if merged is not None:
            current = self.trainer.get_weights()
            weights = await run_sized(
                lambda: [(c + (m - a)).astype(c.dtype, copy=False) for c, m, a in zip(current, merged.weights, anchor)],
                3 * sum(a.nbytes for a in anchor))
            merged = Merged(weights, merged.parents)
        await self._adopt(merged)

    async def _adopt(self, merged: Merged | None) -> None:
        """Take a merge's weights (the node has recorded its parents).

        The weights and optimizer state before the merge are kept, with the merge's
        parents, until the next merge: if training diverges meanwhile, the peer rolls
        back to them and distrusts the neighbours it merged (:meth:`_roll_back`).
        """
        if merged is None:
            return
        self._good = (self.trainer.get_weights(), self.trainer.get_optimizer_state(),
                      [p.entry for p in merged.parents])
        self.trainer.set_weights(merged.weights)
        self.trainer.on_weights_replaced()
        if self.node.merges <= 2:  # how a (re)joining peer starts out is worth a record of its own
            await self.reporter.mark(f"merge-{self.node.merges}")

    async def _roll_back(self, loss: float) -> None:
        """Training produced a non-finite loss: go back to the last good model.

        The last good model is the one before the latest merge (a poisoned neighbour
        is the usual cause), whose authors are not merged again for a while; with no
        merge to blame, the last checkpoint. The steps since are lost, the peer lives.
        """
        node = self.node
        node.metrics.rejected.labels(reason="diverged").inc()
        self._merge_pending, self._fetched = False, None
        if self._good is not None:
            weights, optimizer, parents = self._good
            self._good = None
            authors = {e.author for cid in parents if (e := node.ledger.entry(cid)) is not None}
            for author in authors:
                node.merger.distrust(author, "diverged")
            log.warning("training diverged (loss %s) after merging %s; rolled back to the model before that merge",
                        loss, ", ".join(sorted(authors)) or "nobody")
        else:
            ckpt = await trio.to_thread.run_sync(load_checkpoint, self.cfg.data_dir.expanduser())
            if ckpt is None:
                raise ServiceError(f"training diverged (loss {loss}) with no earlier model to return to; "
                                   f"lower --learning-rate (now {self.cfg.learning_rate})")
            weights, optimizer = ckpt.weights, ckpt.optimizer
            log.warning("training diverged (loss %s); rolled back to the checkpoint of step %d", loss, ckpt.step)
        self.trainer.set_weights(weights)
        self.trainer.set_optimizer_state(optimizer)

    # -- publishing and checkpoints -------------------------------------------------------------

    async def _publish_snapshot(self, *, wait: bool = False) -> None:
        """Publish the current weights: copied now, announced in the background.

        With a publish still in flight, a background publish is skipped (the merged
        parents carry over to the next one); ``wait`` publishes after it and returns
        once the snapshot is announced.
        """
        if self._publishing is not None:
            if not wait:
                return
            await self._publish_done()
        weights = self.trainer.get_weights()
        step, samples = self.trainer.step, self.trainer.samples
        metrics = {k: v for k, v in self.last.items() if v == v}  # drop NaN before the first step
        done = self._publishing = trio.Event()

        async def publish() -> None:
            try:
                await self.node.publish(weights, step=step, samples=samples, metrics=metrics)
            except ValueError as exc:  # e.g. non-finite weights: never published, the peer trains on
                log.warning("snapshot of step %d not published: %s", step, exc)
            finally:
                self._pace.mark()  # after signing: the next entry's timestamp is an interval later
                self._publishing = None
                done.set()

        if wait:
            await publish()
        else:
            self._background.start_soon(publish)

    async def _publish_done(self) -> None:
        """Wait for the publish in flight, if any."""
        if self._publishing is not None:
            await self._publishing.wait()

    async def _checkpoint(self) -> None:
        ledger = self.node.ledger
        weights = self.trainer.get_weights()
        if not all(np.all(np.isfinite(w)) for w in weights if w.dtype.kind == "f"):
            log.warning("checkpoint of step %d skipped: the weights are not finite", self.trainer.step)
            return  # a NaN checkpoint would make every restart die too
        ckpt = Checkpoint(
            step=self.trainer.step, samples=self.trainer.samples, weights=weights,
            optimizer=self.trainer.get_optimizer_state(),
            ledger_seq=ledger.next_seq - 1,
            ledger_head=str(ledger.head) if ledger.head is not None else None,
            extra={"fingerprint": self.work.fingerprint, "swarm": self.node.swarm,
                   "progress": self.trainer.get_progress()},
        )
        await trio.to_thread.run_sync(save_checkpoint, self.cfg.data_dir.expanduser(), ckpt)
        log.debug("checkpoint at step %d", ckpt.step)
