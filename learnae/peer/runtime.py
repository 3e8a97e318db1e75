"""The peer runtime: one process, one equal member of a swarm (DESIGN.md section 1).

``run_peer(cfg)`` opens, in order: the data-dir lock, the identity, the local
data and model (bad input fails here, before any networking), the ledger and
block store, the libp2p host (its dial line is the first line on stdout), then
Bitswap, GossipSub and discovery on that host, and runs :class:`Peer` until
``max_steps`` or a signal. Everything it needs to resume lives in the data dir.

The loop, per burst of local steps (in a worker thread, so the network stays
responsive)::

    train -> every merge_every: choose up to k fresh neighbour snapshots (waiting only
             for lagging neighbours) and fetch and validate them in the background;
             they are averaged into the model at the first burst's end after they arrived
          -> every publish_every: copy the weights; encode, put, append a signed snapshot
             entry and announce in the background
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
import signal
import statistics
import time
from collections import deque

import trio

from learnae.data.datasets import load_dataset, parse_dataset_spec
from learnae.errors import FetchError, LearnaeError, ServiceError, UserError
from learnae.identity import Identity
from learnae.peer.blocks import LedgerBackedBlocks
from learnae.peer.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from learnae.peer.config import PeerConfig
from learnae.peer.faults import Faults, poison
from learnae.peer.lock import DataDirLock
from learnae.peer.merging import Merged, Merger, accumulate_parents
from learnae.peer.metrics import PeerMetrics
from learnae.peer.reporting import StatusReporter
from learnae.peer.view import SnapshotRef, SwarmView
from learnae.peer.workload import Workload, cut_shard, prepare_workload
from learnae.threads import run_sized
from learnae.training.models import check_model_spec

__all__ = ["run_peer", "Peer"]

log = logging.getLogger(__name__)

FINISH_WAIT_S = 60.0  # at max_steps: how long to wait for the neighbours' final snapshots
FINISH_LINGER_S = 3.0  # then: how long to keep serving our own final snapshot before leaving
LEAVE_BUDGET_S = 3.5  # Ctrl-C to exit: checkpoint + leave entry + flush, within 5 s
GAP_FILL_S = 5.0  # how often held entries' missing history is fetched, at the latest
KEEP_OWN_SNAPSHOTS = 2  # own snapshots kept pinned (neighbours may still be fetching the older)


def run_peer(cfg: PeerConfig) -> None:
    """Run a peer until ``max_steps`` or SIGINT/SIGTERM (blocking)."""
    trio.run(_run, cfg)


async def _run(cfg: PeerConfig) -> None:
    data_dir = cfg.data_dir.expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    with DataDirLock(data_dir):
        # Cheap checks of the user's input first: a typo costs no TensorFlow import.
        from_network = parse_dataset_spec(cfg.dataset).kind == "cid"
        if not from_network:
            shard, test = cut_shard(cfg, load_dataset(cfg.dataset))
        check_model_spec(cfg.model)
        Faults(cfg.faults)  # a bad faults file is the user's error: say so before anything starts
        identity = Identity.load_or_create(data_dir)
        work = None if from_network else await trio.to_thread.run_sync(prepare_workload, cfg, shard, test)
        await _serve(cfg, data_dir, identity, work)


async def _serve(cfg: PeerConfig, data_dir, identity: Identity, work: Workload | None) -> None:
    """Run the peer on its host; ``work`` is None when the data must first be fetched by CID."""
    from learnae.gossip import dial_line, open_host, swarm_id
    from learnae.gossip.announce import PublishParams, open_gossip
    from learnae.gossip.discovery import DiscoveryParams, open_discovery
    from learnae.ledger import Ledger
    from learnae.storage.node import open_embedded_node

    open_node = open_embedded_node
    if cfg.storage == "kubo":  # files in the daemon; ledger entries stay on this host's own Bitswap
        from functools import partial

        from learnae.storage.kubo_node import check_kubo_api, open_kubo_node

        await check_kubo_api(cfg.kubo_api)  # UserError (exit 2) naming --kubo-api, before a port opens
        open_node = partial(open_kubo_node, api=cfg.kubo_api)
    with Ledger.open(data_dir, identity) as ledger:
        async with open_host(identity, [cfg.listen]) as host:
            print(dial_line(host), flush=True)
            disc_params = DiscoveryParams(bootstrap=tuple(cfg.bootstrap), mdns=cfg.mdns, dht=cfg.dht)
            async with open_node(host, data_dir, fetch_timeout_s=cfg.fetch_timeout_s,
                                 serve=lambda blocks: LedgerBackedBlocks(blocks, ledger)) as store:
                if work is None:
                    work = await _fetch_workload(cfg, host, store)
                swarm = swarm_id(cfg.swarm, work.fingerprint)
                resumed = _resume(cfg, work)
                ledger.fetch_block = store.get_block
                peer = Peer(cfg, identity, work, swarm, ledger, store, store.bitswap, resumed=resumed)
                peer.gate_dials(host)  # before discovery dials anyone
                async with open_gossip(host, swarm, chain_check=peer.chain_check,
                                       publish=PublishParams(flush_timeout_s=1.5)) as gossip, \
                        open_discovery(host, swarm, disc_params) as discovery:
                    peer.gossip, peer.discovery, peer.host = gossip, discovery, host
                    await peer.run()


async def _fetch_workload(cfg: PeerConfig, host, store) -> Workload:
    """``--dataset <CID>``: fetch this peer's shard from the bootstrap peers, then build the model."""
    from learnae.data.manifest import fetch_dataset
    from learnae.gossip import connect
    from learnae.storage.cid import parse_cid

    for addr in cfg.bootstrap:
        try:
            await connect(host, addr, timeout_s=cfg.fetch_timeout_s)
        except ServiceError as exc:
            log.warning("bootstrap peer %s unreachable while fetching the dataset: %s", addr, exc)
    limit_s = max(60.0, 6 * cfg.fetch_timeout_s)
    try:
        with trio.fail_after(limit_s):
            shard = await fetch_dataset(store, parse_cid(cfg.dataset), cfg.shard,
                                        partition=cfg.partition, seed=cfg.seed)
    except (trio.TooSlowError, KeyError, FetchError) as exc:
        raise FetchError(f"--dataset {cfg.dataset}: no peer delivered it within {limit_s:.0f} s; pass --bootstrap "
                         "of a peer that has it (e.g. one running `learnae ipfs serve`)") from exc
    log.info("fetched %d samples of dataset %s", len(shard), cfg.dataset)
    return await trio.to_thread.run_sync(prepare_workload, cfg, shard)


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
    return ckpt


class Peer:
    """The running peer: training loop, merges, publishing, announcements."""

    def __init__(self, cfg: PeerConfig, identity: Identity, work: Workload, swarm: str, ledger, store,
                 bitswap, *, resumed: Checkpoint | None = None):
        self.cfg, self.identity, self.work, self.swarm = cfg, identity, work, swarm
        self.ledger, self.store, self.bitswap = ledger, store, bitswap
        self.gossip = self.discovery = self.host = None
        self.trainer = work.trainer
        self.resumed = resumed
        self.metrics = PeerMetrics()
        self.view = SwarmView(identity.peer_id, seed=cfg.seed)
        self.parents: list[dict] = []  # merged since the last published snapshot
        self.own_snapshots: list = []  # CIDs of own snapshots still pinned
        self.last = {"loss": float("nan"), "accuracy": float("nan")}
        self.merges = 0
        self.published = 0  # own snapshots announced
        self.last_merge = None  # (time, parents merged)
        self.faults = Faults(cfg.faults, seed=cfg.seed)
        self.announce_latencies: deque[float] = deque(maxlen=200)
        self._fork_warned: set[str] = set()
        self._gaps = trio.Event()  # set when an entry is held for want of its history
        self.merger = Merger(cfg, self.view, ledger, store, bitswap, self.metrics,
                             fingerprint=work.fingerprint, local_samples=len(work.source), faults=self.faults)
        self._work_scope: trio.CancelScope | None = None
        self._background: trio.Nursery | None = None  # the peer's nursery, for merges and publishes
        self._merge_pending = False  # a background fetch is running or its result awaits merging
        self._fetched: tuple | None = None  # (refs, contributions, anchor weights, step) to merge
        self._fetch_done = trio.Event()  # set when the background fetch has ended
        self._publishing: trio.Event | None = None  # set when the publish in flight is done
        self._cut_off: set = set()  # peers the faults disconnected or refused a dial to
        self.leave_reason = "stopped"
        self.reporter = StatusReporter(self)

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port)
        for entry in self.ledger.entries(since_ms=int((time.time() - self.view.max_age_s) * 1000)):
            self.view.note_entry(entry)
        await self._announce_start()
        async with trio.open_nursery() as nursery:
            self._background = nursery
            nursery.start_soon(self._consume)
            nursery.start_soon(self.reporter.run)
            nursery.start_soon(self._fill_gaps)
            if self.faults.path is not None:
                nursery.start_soon(self._apply_faults)
            if self.cfg.bootstrap:
                nursery.start_soon(self._check_bootstrap_swarm)
            with trio.CancelScope() as self._work_scope:
                nursery.start_soon(self._watch_signals)
                await self._work()
            with trio.move_on_after(LEAVE_BUDGET_S) as budget:
                budget.shield = True
                await self._leave()
            with trio.move_on_after(LEAVE_BUDGET_S) as final:
                final.shield = True
                await self.reporter.evaluate()  # the last record describes the final model
            self.reporter.write_record()
            nursery.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.leave_reason = "interrupted" if signum == signal.SIGINT else "terminated"
                log.warning("%s: leaving the swarm", signal.Signals(signum).name)
                if self._work_scope is not None:
                    self._work_scope.cancel()
                return

    async def _check_bootstrap_swarm(self) -> None:
        """Fail clearly when a bootstrap peer trains another model (or swarm name)."""
        from learnae.peer.swarmcheck import check_bootstrap_swarm

        await check_bootstrap_swarm(
            self.gossip.pubsub, self.gossip.topic, self.cfg.bootstrap, timeout_s=30.0, poll_s=0.5,
            mismatch=lambda pid, theirs: (
                f"bootstrap peer {pid} trains in swarm {theirs}, this peer in {self.swarm}: its model fingerprint "
                f"or swarm name differs; use the swarm's --model and --swarm (this model's fingerprint is "
                f"{self.work.fingerprint[:16]}...)"))

    async def _announce_start(self) -> None:
        from learnae.data.shards import encode_shard
        from learnae.gossip import full_addrs

        await self._append("join", {"fingerprint": self.work.fingerprint, "framework": "keras",
                                    "addrs": full_addrs(self.host)[:32]})
        if not any(True for _ in self.ledger.entries(author=self.identity.peer_id, kind="shard")):
            source = self.work.source  # the whole shard: a fetched one keeps the CID its manifest lists
            shard_cid = await self.store.put(await trio.to_thread.run_sync(encode_shard, source))
            histogram = {str(label): n for label, n in enumerate(source.class_histogram()) if n}
            await self._append("shard", {"shard": shard_cid, "samples": len(source), "classes": histogram})

    async def _leave(self) -> None:
        await self._publish_done()
        await self._checkpoint()
        await self._append("leave", {"reason": self.leave_reason})

    # -- the training loop -----------------------------------------------------------------

    async def _work(self) -> None:
        cfg = self.cfg
        timed = self.reporter.timed
        with timed("gather"):
            await self._wait_for_peers()
            if self.resumed is None and (cfg.bootstrap or cfg.mdns):
                await self._catch_up()
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
            if self.faults.slow > 1:  # an injected slowdown: a slower machine, as the scenario says
                await trio.sleep((self.faults.slow - 1) * spent)
            self.last = {"loss": float(result.loss), "accuracy": float(result.accuracy)}
            self.metrics.steps.inc(n)
            self.metrics.samples.inc(result.samples)
            self.metrics.loss.set(result.loss)
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
            if step % cfg.publish_every == 0 or last:
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
        target = self.cfg.max_steps
        with trio.move_on_after(FINISH_WAIT_S):
            while True:
                excluded = self.merger.excluded()
                pending = [a for a in self.view.authors()
                           if a not in excluded and self.view.latest(a).step < target]
                pending += [p for p in self.gossip.topic_peers()
                            if p not in excluded and self.view.latest(p) is None]
                if not pending:
                    break
                with trio.move_on_after(1.0):  # also re-check when nothing new arrives: a fork or a leave
                    await self.merger.wait_fresh()  # found meanwhile can end the wait as well
        excluded = self.merger.excluded()
        refs = [r for a in self.view.authors() if (r := self.view.latest(a)) is not None and a not in excluded]
        if refs:
            await self._merge_refs(refs)
            await self._publish_snapshot(wait=True)
            await trio.sleep(FINISH_LINGER_S)

    async def _wait_for_peers(self) -> None:
        """Hold the first step until ``min_peers`` other swarm members are present (0: do not wait).

        A member is a connected peer or an author whose announcements arrived
        (through any neighbour), so a peer dialled into one bootstrap peer still
        sees the whole swarm gather.
        """
        waited = 0.0
        while True:
            present = self.view.members() | {p.to_base58() for p in self.host.get_connected_peers()}
            if len(present) >= self.cfg.min_peers:
                return
            if waited % 10 == 0:
                log.warning("waiting for %d swarm member(s) before training; %d present",
                            self.cfg.min_peers, len(present))
            await trio.sleep(0.5)
            waited += 0.5

    async def _catch_up(self) -> None:
        """First start with peers around: begin from their average, not from random weights."""
        from learnae.averaging import merge

        with trio.move_on_after(self.cfg.catch_up_s):
            while not self.view.authors():
                await self.merger.wait_fresh()
            await trio.sleep(min(1.0, self.cfg.catch_up_s / 4))  # let a few more announce
        refs = self.view.choose(max(2, self.cfg.merge_k), exclude=self.merger.excluded(), fresh_only=False)
        contributions = await self.merger.fetch_all(refs, self.trainer.step)
        if not contributions:
            log.info("catch-up: no neighbour snapshot arrived; starting from fresh weights")
            return
        first, rest = contributions[0], contributions[1:]
        result = merge(first.weights, rest, rule="mean") if rest else None
        self.trainer.set_weights(result.weights if result else first.weights)
        self.trainer.on_weights_replaced()
        log.info("caught up from %d peer snapshot(s)", len(contributions))
        await self.reporter.mark("catch-up")

    # -- merging (the network half lives in merging.Merger) ----------------------------------

    async def _merge(self) -> None:
        """Choose neighbour snapshots (after a bounded wait) and fetch them in the background."""
        with self.reporter.timed("merge_wait"):
            refs = await self.merger.choose(self.trainer.step)
        if refs:
            self._merge_pending = True
            self._fetch_done = trio.Event()
            anchor = self.trainer.get_weights()
            self._background.start_soon(self._fetch_for_merge, refs, anchor, self.trainer.step)

    async def _fetch_for_merge(self, refs: list[SnapshotRef], anchor: list, step: int) -> None:
        try:
            contributions = await self.merger.fetch_mergeable(refs, step)
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
            merged = await self.merger.combine(anchor, refs, contributions, step)
        finally:
            self._merge_pending = False
        if merged is not None:
            current = self.trainer.get_weights()
            weights = await run_sized(
                lambda: [(c + (m - a)).astype(c.dtype, copy=False) for c, m, a in zip(current, merged.weights, anchor)],
                3 * sum(a.nbytes for a in anchor))
            merged = Merged(weights, merged.parents)
        await self._adopt(merged)

    async def _merge_refs(self, refs: list[SnapshotRef]) -> None:
        """Fetch and merge these neighbour snapshots now (training waits)."""
        await self._adopt(await self.merger.merge(self.trainer.get_weights(), refs, self.trainer.step))

    async def _adopt(self, merged) -> None:
        """Take a merge's weights; its parents go into the next snapshot."""
        if merged is None:
            return
        self.trainer.set_weights(merged.weights)
        self.trainer.on_weights_replaced()
        self.parents = accumulate_parents(self.parents, merged.parents)
        self.merges += 1
        self.metrics.merges.inc()
        self.last_merge = (time.time(), len(merged.parents))
        if self.merges <= 2:  # how a (re)joining peer starts out is worth a record of its own
            await self.reporter.mark(f"merge-{self.merges}")

    # -- publishing and the ledger -------------------------------------------------------------

    async def _append(self, kind: str, body: dict):
        entry = self.ledger.append(kind, body, swarm=self.swarm)
        if self.gossip is not None:
            await self.gossip.publish(entry)
        return entry

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
        step = self.trainer.step
        samples = self.trainer.samples
        parents, self.parents = self.parents, []
        done = self._publishing = trio.Event()

        async def publish() -> None:
            try:
                await self._publish(weights, step, samples, parents)
            finally:
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

    async def _publish(self, weights, step: int, samples: int, parents: list[dict]) -> None:
        from learnae.storage.snapshot import encode_snapshot

        attack = self.faults.attack
        if attack is not None and attack["mode"] != "equivocate":
            honest = self.merger.last_fetched
            weights = await trio.to_thread.run_sync(lambda: poison(weights, attack, honest=honest))
        data = await trio.to_thread.run_sync(
            lambda: encode_snapshot(weights, self.work.names, encoding=self.cfg.snapshot_encoding, step=step))
        cid = await self.store.put(data)
        metrics = {k: v for k, v in self.last.items() if v == v}  # drop NaN before the first step
        body = {"model": cid, "step": step, "samples": samples, "metrics": metrics, "parents": parents}
        prev, seq = self.ledger.head, self.ledger.next_seq
        await self._append("snapshot", body)
        if attack is not None and attack["mode"] == "equivocate":
            await self._equivocate(seq, prev, body)
        self.published += 1
        self.metrics.snapshots.inc()
        self.own_snapshots.append(cid)
        while len(self.own_snapshots) > KEEP_OWN_SNAPSHOTS:
            old = self.own_snapshots.pop(0)
            if old != cid:
                await self.store.unpin(old)

    async def _equivocate(self, seq: int, prev, body: dict) -> None:
        """An injected attack: sign a second, different entry with the seq just used, and announce it.

        Honest peers that receive both hold a fork proof and stop merging this peer.
        """
        from learnae.ledger.entry import sign_entry

        twin = sign_entry(self.identity, swarm=self.swarm, seq=seq, prev=prev, kind="snapshot",
                          body={**body, "samples": body["samples"] + 1})
        await self.gossip.publish(twin)
        log.warning("attack: equivocated at seq %d (%s)", seq, twin.cid)

    def gate_dials(self, host) -> None:
        """Refuse dials the faults forbid, from the first one on (every dial of the host,
        the DHT's and Bitswap's included, goes through the network's ``dial_peer``),
        so a partition is not a storm of connections opened by one side and closed by
        the other. Refused peers are remembered, to be redialed when healed."""
        if self.faults.path is None:
            return
        from libp2p.network.exceptions import SwarmException

        network = host.get_network()
        dial_peer = network.dial_peer

        async def gated_dial(peer_id, *args, **kwargs):
            if not self.faults.may_connect(peer_id.to_base58()):
                self._cut_off.add(peer_id)  # e.g. a bootstrap peer first dialed during a partition
                raise SwarmException(f"dial to {peer_id} refused: an injected partition or topology forbids it")
            return await dial_peer(peer_id, *args, **kwargs)

        network.dial_peer = gated_dial

    async def _apply_faults(self) -> None:
        """Re-read the faults file and close connections the plan forbids (partition, topology).

        A peer cut off or refused a dial (:meth:`gate_dials`) is redialed as soon as
        the plan allows it again, not when a bootstrap backoff grown during the
        partition ends.
        """
        async with trio.open_nursery() as redials:
            while True:
                self.faults.reload()
                for pid in [p for p in self._cut_off if self.faults.may_connect(p.to_base58())]:
                    self._cut_off.discard(pid)  # healed: redial now, as a restored link would allow
                    redials.start_soon(self._redial, pid)
                for pid in list(self.host.get_connected_peers()):
                    if not self.faults.may_connect(pid.to_base58()):
                        self._cut_off.add(pid)
                        try:
                            await self.host.disconnect(pid)
                        except Exception as exc:  # noqa: BLE001 - a connection closing under us is fine
                            log.debug("disconnect %s: %r", pid, exc)
                await trio.sleep(0.25)

    async def _redial(self, peer_id) -> None:
        """Connect to a peer by its known addresses (best effort)."""
        log.info("the faults allow %s again: redialing it", peer_id)
        with trio.move_on_after(self.cfg.fetch_timeout_s):
            try:
                await self.host.connect(self.host.get_peerstore().peer_info(peer_id))
            except Exception as exc:  # noqa: BLE001 - it may be gone meanwhile; discovery goes on
                log.info("redial of %s after a healed fault failed: %r", peer_id, exc)

    async def _checkpoint(self) -> None:
        ckpt = Checkpoint(
            step=self.trainer.step, samples=self.trainer.samples, weights=self.trainer.get_weights(),
            optimizer=self.trainer.get_optimizer_state(),
            ledger_seq=self.ledger.next_seq - 1,
            ledger_head=str(self.ledger.head) if self.ledger.head is not None else None,
            extra={"fingerprint": self.work.fingerprint, "swarm": self.swarm,
                   "progress": self.trainer.get_progress()},
        )
        await trio.to_thread.run_sync(save_checkpoint, self.cfg.data_dir.expanduser(), ckpt)
        # Neighbours' snapshots are dropped once merged: only pinned blocks (own
        # latest snapshots, the shard) survive; ledger entries live in the ledger.
        removed = await self.merger.collect_garbage()
        log.debug("checkpoint at step %d; gc removed %d block(s)", ckpt.step, removed)

    def chain_check(self, entry) -> str | None:
        """Gossip validator hook: the ledger's verdict on an incoming entry."""
        from learnae.ledger import Status

        if entry.author != self.identity.peer_id and (lost := self.faults.drop(entry.author)) is not None:
            return lost  # an injected fault: the message never arrived (and is not forwarded)
        result = self.ledger.receive(entry)
        if result.status is Status.HELD:
            self._gaps.set()  # its history is missing: fetch it now
        if result.status is Status.REJECTED:
            self.metrics.rejected.labels(reason=result.reason or "rejected").inc()
            return result.reason or "rejected"
        if result.status is Status.FORK and entry.author not in self._fork_warned:
            self._fork_warned.add(entry.author)
            log.warning("fork: %s signed two entries with seq %d; its work is no longer merged",
                        entry.author, entry.seq)
        return None

    async def _consume(self) -> None:
        async with trio.open_nursery() as late:
            async for ann in self.gossip.announcements():
                entry = ann.entry
                if not self.faults.mergeable(entry.author):
                    continue
                delay = self.faults.delay_s(entry.author)
                if delay > 0:  # an injected latency: the announcement arrives that much later
                    late.start_soon(self._note_later, entry, ann.received_s, delay)
                else:
                    self._note(entry, ann.received_s)

    async def _note_later(self, entry, received_s: float, delay: float) -> None:
        await trio.sleep(delay)
        self._note(entry, received_s + delay)

    def _note(self, entry, received_s: float) -> None:
        latency = max(0.0, received_s - entry.ts / 1000)
        self.metrics.announce_latency.observe(latency)
        self.announce_latencies.append(latency)
        if self.view.note_entry(entry) is not None:
            self.merger.notify_fresh()

    def announce_latency_s(self) -> float | None:
        """Median latency of the recent announcements (author's clock to our merge step)."""
        return statistics.median(self.announce_latencies) if self.announce_latencies else None

    async def _fill_gaps(self) -> None:
        """Fetch the missing history of authors whose recent entries arrived first."""
        while True:
            with trio.move_on_after(GAP_FILL_S):  # at once when an entry had to be held, else now and then
                await self._gaps.wait()
            self._gaps = trio.Event()
            await trio.sleep(0.2)  # entries arrive in bursts: fetch once for the whole burst
            try:
                await self.ledger.fill_gaps(timeout_s=self.cfg.fetch_timeout_s)
            except LearnaeError as exc:
                log.info("ledger gap filling: %s", exc)


