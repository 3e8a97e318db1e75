"""``PeerNode``: the one composition root of a peer, and the swarm protocol it speaks.

Every face of a peer (``learnae peer start``'s training loop, the Keras
callback's network thread) opens exactly this stack, in this order, with
:func:`open_peer_node`:

1. the data-dir lock and the identity (``<data-dir>/identity.key``);
2. the Kubo check when ``storage = "kubo"`` (a one-line error, before a port opens);
3. the ledger (``<data-dir>/ledger``);
4. the libp2p host (with mDNS, and the circuit relay for peers behind NAT, when configured:
   :mod:`learnae.gossip.relay`) and, in simulations, the
   :class:`~learnae.peer.policy.PolicyEnforcer` of the injected faults;
5. the swarm's Kademlia DHT, which the block exchange asks for providers when
   an announcement's author does not deliver (:mod:`learnae.gossip.routing`);
6. the store, embedded or Kubo-backed (:mod:`learnae.storage`), serving the
   ledger's entries too.

:meth:`PeerNode.join` then enters a swarm (the gossip topic of the model's
fingerprint, discovery, a ``join`` entry) and the protocol operations are the
node's alone: :meth:`~PeerNode.catch_up`, :meth:`~PeerNode.publish`,
:meth:`~PeerNode.merge` (or its three steps :meth:`~PeerNode.choose`,
:meth:`~PeerNode.fetch`, :meth:`~PeerNode.combine`, for a loop that overlaps
fetching with training) and :meth:`~PeerNode.leave`. Background tasks (the
announcement consumer, ledger gap filling, the policy's enforcement, DHT
providing) live in the node's nursery.

Example:
    >>> async with open_peer_node(cfg) as node:               # doctest: +SKIP
    ...     print(node.addr)                                   # other peers --bootstrap from it
    ...     await node.join(model_specs)                       # [(name, shape, dtype), ...]
    ...     start = await node.catch_up()                      # the swarm's average, or None
    ...     await node.publish(weights, step=5, samples=160, metrics={"loss": 0.4})
    ...     merged = await node.merge(weights, step=5)         # Merged(weights, parents) or None
    ...     await node.leave("done")
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import numpy as np
import trio

from learnae.errors import LearnaeError, UserError
from learnae.fsutil import prepare_dir
from learnae.identity import Identity
from learnae.ledger.schema import Parent
from learnae.peer.blocks import LedgerBackedBlocks
from learnae.peer.config import PeerConfig
from learnae.peer.faults import poison
from learnae.peer.lock import DataDirLock
from learnae.peer.merging import Merged, Merger, accumulate_parents
from learnae.peer.metrics import PeerMetrics
from learnae.peer.policy import NO_FAULTS, NetworkPolicy, PolicyEnforcer, attack_mode
from learnae.peer.view import SnapshotRef, SwarmView

__all__ = ["PeerNode", "open_peer_node"]

log = logging.getLogger(__name__)

LEAVE_BUDGET_S = 3.5  # a leave entry gets this long to be written and queued (Ctrl-C to exit within 5 s)
BOOTSTRAP_CHECK_S = 10.0  # at join: how long to wait to learn a bootstrap peer's swarm
CATCH_UP_GRACE_S = 0.5  # at catch-up: after the first neighbour snapshot, wait this long for more
GAP_FILL_S = 5.0  # how often held entries' missing history is fetched, at the latest
JOIN_SYNC_S = 30.0  # at join: how long taking back its own chain from the first peers may take
KEEP_OWN_SNAPSHOTS = 2  # own snapshots kept pinned (neighbours may still be fetching the older)
GC_EVERY_PUBLISHES = 10  # drop merged neighbour snapshots from the block store this often


class PeerNode:
    """A running peer: identity, ledger, host, store, and (after :meth:`join`) a swarm.

    Made by :func:`open_peer_node`; not constructed directly.

    Attributes:
        cfg: the settings in effect.
        identity, ledger, host, store, routing, policy: the parts, for inspection.
        addr: the full multiaddr to give other peers (``/ip4/.../p2p/12D3KooW...``).
        peer_id: this peer's ID.
        swarm, fingerprint, names: set by :meth:`join`.
        view: who published which snapshot, how fresh (:class:`SwarmView`).
        merger: choice, fetch and averaging of neighbour snapshots (after :meth:`join`).
        metrics: the Prometheus metrics.
        merges: merges that changed the weights (a catch-up included).
        published: own snapshots announced.
        last_merge: ``(time.time(), parents)`` of the latest merge, or None.
    """

    def __init__(self, cfg: PeerConfig, identity: Identity, ledger, host, store, routing,
                 policy: NetworkPolicy):
        from learnae.gossip import dial_line

        self.cfg, self.identity, self.ledger = cfg, identity, ledger
        self.host, self.store, self.routing, self.policy = host, store, routing, policy
        self.mdns = None  # the host's mDNS findings, collected from the start (cfg.mdns)
        self.addr = dial_line(host)
        self.peer_id = identity.peer_id
        self.metrics = PeerMetrics()
        self.view = SwarmView(identity.peer_id, seed=cfg.seed)
        self.swarm: str | None = None
        self.fingerprint: str | None = None
        self.names: list[str] = []  # snapshot tensor names, layer order (set by join)
        self.gossip = self.discovery = self.replicator = None
        self.merger: Merger | None = None
        self.merges = 0
        self.published = 0
        self.last_merge: tuple[float, int] | None = None
        self.announce_latencies: deque[float] = deque(maxlen=200)
        self.gossiped = 0  # other authors' entries that gossip delivered here first (not sync or gap filling)
        self._parents: list[Parent] = []  # merged since the last published snapshot
        self._own_snapshots: list = []  # CIDs of own snapshots still pinned
        self._fork_warned: set[str] = set()
        self._sybils = None  # a SybilRelay, only while an injected attack asks for made-up identities
        self._gaps = trio.Event()  # set when an entry is held for want of its history
        self._history = trio.Event()  # set when the join's sync of the swarm's history has ended
        self._nursery: trio.Nursery | None = None
        self._leaving: trio.Event | None = None  # set by leave(): the swarm session ends
        self._left: trio.Event | None = None  # set once the session has ended
        self._leave_reason = "stopped"

    # -- swarm membership ------------------------------------------------------------------

    async def join(self, specs, *, framework: str = "keras", shard=None,
                   local_samples: int | None = None, own_seq_at_least: int | None = None) -> str:
        """Enter the swarm of this model: its gossip topic, discovery, a ``join`` entry.

        Args:
            specs: the model's tensors, ``[(name, shape, dtype), ...]`` in layer order;
                their fingerprint (:func:`learnae.storage.snapshot.fingerprint`) and
                ``cfg.swarm`` pick the topic.
            framework: recorded in the ``join`` entry.
            shard: this peer's data (a :class:`learnae.data.Dataset`) to announce in a
                ``shard`` entry (CID, sample count, class histogram) the first time;
                None announces nothing (a Keras script's data stays its own).
            local_samples: this peer's training-set size, for the ``weighted`` rule;
                None counts it as large as its median neighbour.
            own_seq_at_least: the seq of this peer's newest own entry as recorded
                elsewhere (a checkpoint). Before writing anything, the node syncs its
                ledger with the swarm, taking back own entries its own.log lost; if
                its chain still ends below this seq it refuses to go on rather than
                sign a second entry at a seq it already published.

        Returns:
            The swarm id.

        Raises:
            UserError: a bootstrap peer trains another model or swarm; this node
                already joined; or its own chain is behind ``own_seq_at_least``.
        """
        from learnae.gossip import swarm_id
        from learnae.storage.snapshot import fingerprint as fingerprint_of
        from learnae.storage.snapshot import snapshot_size_bound

        specs = [(str(n), tuple(int(d) for d in shape), str(t)) for n, shape, t in specs]
        fingerprint = fingerprint_of([s[0] for s in specs], [s[1] for s in specs], [s[2] for s in specs])
        if self.swarm is not None:
            raise UserError(f"this peer already joined swarm {self.swarm}; open another peer for another swarm")
        swarm = swarm_id(self.cfg.swarm, fingerprint)
        self.merger = Merger(self.cfg, self.view, self.ledger, self.store, self.store.bitswap, self.metrics,
                             fingerprint=fingerprint, local_samples=local_samples or 1, policy=self.policy,
                             on_fetched=lambda ref: self.routing.provide_soon(ref.model_cid),
                             max_snapshot_bytes=snapshot_size_bound(specs))
        self._median_samples = local_samples is None
        self.names = [s[0] for s in specs]
        self.swarm, self.fingerprint = swarm, fingerprint  # the session's first sync already notes entries
        try:
            await self._nursery.start(self._session, swarm, fingerprint, own_seq_at_least)
        except BaseException:
            self.swarm = self.fingerprint = None
            raise
        await self._announce(fingerprint, framework, shard)
        return swarm

    async def _session(self, swarm: str, fingerprint: str, own_seq_at_least: int | None,
                       task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Be a member of ``swarm`` until :meth:`leave`: gossip, discovery, ledger sync, consumers."""
        from learnae.gossip import parse_peer_addr
        from learnae.gossip.announce import PublishParams, open_gossip
        from learnae.gossip.discovery import DiscoveryParams, open_discovery
        from learnae.gossip.sync import serve_sync
        from learnae.peer.replication import Replicator

        cfg = self.cfg
        params = DiscoveryParams(bootstrap=tuple(cfg.bootstrap), mdns=cfg.mdns, dht=cfg.dht)
        self._leaving, self._left = trio.Event(), trio.Event()
        self.ledger.on_store = self._on_stored
        try:
            async with open_gossip(self.host, swarm, chain_check=self.chain_check, on_reject=self._count_rejected,
                                   publish=PublishParams(flush_timeout_s=1.5)) as gossip, \
                    open_discovery(self.host, swarm, params, dht=self.routing.dht, mdns=self.mdns) as discovery:
                self.gossip, self.discovery = gossip, discovery
                self.merger.connected_members = lambda: set(gossip.topic_peers())
                since_ms = int((time.time() - self.view.max_age_s) * 1000)
                for entry in self.ledger.entries(since_ms=since_ms):
                    if entry.swarm == swarm:
                        self.view.note_entry(entry)
                serve_sync(self.host, self.ledger, swarm,
                           on_twin=lambda cid: self._nursery.start_soon(self._fetch_twin, cid))
                self.replicator = Replicator(self.host, self.ledger, swarm, members=self._connected_ids,
                                             seed=cfg.seed)
                if cfg.bootstrap:
                    await self._check_bootstrap_swarm(gossip, swarm, fingerprint)
                # Before anything is written: any own entry this peer signed but lost (a
                # damaged own.log, a restored backup). Only its own chain: the swarm's
                # history (hundreds of entries a second on a late join) comes next, in
                # the background, so a late joiner trains as soon as it is up.
                bootstrap = [parse_peer_addr(a).peer_id.to_base58() for a in cfg.bootstrap]
                first = self.replicator.candidates(bootstrap)
                self.ledger.recovering = True
                try:
                    with trio.move_on_after(JOIN_SYNC_S):
                        await self.replicator.sync_now(first, only=[self.peer_id])
                finally:
                    self.ledger.recovering = False
                self._check_own_chain(own_seq_at_least)
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(self._sync_history, first)
                    tasks.start_soon(self._consume)
                    tasks.start_soon(self._fill_gaps)
                    tasks.start_soon(self.replicator.run)
                    task_status.started()
                    await self._leaving.wait()
                    with trio.move_on_after(LEAVE_BUDGET_S) as budget:
                        budget.shield = True
                        await self._append("leave", {"reason": self._leave_reason})
                    tasks.cancel_scope.cancel()
        finally:
            self.gossip = None
            self.ledger.on_store = None
            self._left.set()

    async def _sync_history(self, peers: list[str]) -> None:
        """The swarm's history from the first peers met, after the join entry (catch-up waits for it)."""
        try:
            await self.replicator.sync_now(peers)
        finally:
            self._history.set()

    def _connected_ids(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_connected_peers()]

    async def _fetch_twin(self, cid) -> None:
        """A sync client holds another entry where we hold one: fetch it, keep the fork proof."""
        with trio.move_on_after(self.cfg.fetch_timeout_s):
            try:
                data = await self.store.get_block(cid)
            except LearnaeError as exc:
                log.debug("could not fetch the twin entry %s: %s", cid, exc)
                return
            self.ledger.receive(data)

    def _check_own_chain(self, own_seq_at_least: int | None) -> None:
        """Refuse to sign on a chain that ends before what this peer already published."""
        have = self.ledger.next_seq - 1
        if own_seq_at_least is None or have >= own_seq_at_least:
            return
        raise UserError(
            f"{self.cfg.data_dir}: this peer's ledger ends at seq {have}, but its checkpoint says it published "
            f"up to seq {own_seq_at_least}; signing on would fork its own chain. Start it with --bootstrap of a "
            "peer of its swarm (it takes its entries back from there), or restore the data dir's ledger/ folder "
            "together with its checkpoint")

    async def _check_bootstrap_swarm(self, gossip, swarm: str, fingerprint: str) -> None:
        """Fail before the first entry when a bootstrap peer trains another model (or swarm name)."""
        from learnae.peer.swarmcheck import check_bootstrap_swarm

        found = await check_bootstrap_swarm(
            gossip.pubsub, gossip.topic, self.cfg.bootstrap, timeout_s=BOOTSTRAP_CHECK_S, poll_s=0.1,
            mismatch=lambda pid, theirs: (
                f"bootstrap peer {pid} trains in swarm {theirs}, this peer in {swarm}: its model fingerprint "
                f"or swarm name differs; use the swarm's model (e.g. its --model preset) and --swarm name "
                f"(this model's fingerprint is {fingerprint[:16]}...)"))
        if not found:
            log.info("no bootstrap peer told its swarm within %.0f s; joining anyway", BOOTSTRAP_CHECK_S)

    async def _announce(self, fingerprint: str, framework: str, shard) -> None:
        from learnae.data.shards import encode_shard
        from learnae.gossip import full_addrs
        from learnae.storage.unixfs import unixfs_cid

        await self._append("join", {"fingerprint": fingerprint, "framework": framework,
                                    "addrs": full_addrs(self.host)[:32]})
        if shard is None or any(True for _ in self.ledger.entries(author=self.peer_id, kind="shard")):
            return
        # The entry names the shard by its CID, but its samples are not put in the store: only
        # weights leave a peer. (A shard fetched from a published manifest is in the store
        # already, and served, because its owner published it on purpose.)
        data = await trio.to_thread.run_sync(encode_shard, shard)
        shard_cid = await trio.to_thread.run_sync(unixfs_cid, data)
        histogram = {str(label): n for label, n in enumerate(shard.class_histogram()) if n}
        await self._append("shard", {"shard": shard_cid, "samples": len(shard), "classes": histogram})

    async def leave(self, reason: str = "stopped") -> None:
        """Write a ``leave`` entry, flush it to the swarm and end the membership (idempotent)."""
        if self._leaving is None or self._leaving.is_set():
            if self._left is not None:
                await self._left.wait()
            return
        self._leave_reason = reason
        self._leaving.set()
        await self._left.wait()

    def members(self) -> set[str]:
        """Other peers verified to be in this swarm: subscribed to its topic, or authors of its entries."""
        topic = set(self.gossip.topic_peers()) if self.gossip is not None else set()
        return self.view.members() | topic

    def topic_peers(self) -> list[str]:
        """Connected peers subscribed to this swarm's topic."""
        return self.gossip.topic_peers() if self.gossip is not None else []

    def connected(self) -> int:
        """Open connections (any peer, any swarm)."""
        return len(self.host.get_connected_peers())

    async def wait_for_members(self, n: int) -> None:
        """Wait until at least ``n`` other members of this swarm are present (0: return at once).

        Only peers on this swarm's topic count (a connection of another swarm does
        not), and authors whose entries arrived through any neighbour, so a peer
        dialled into one bootstrap peer still sees the whole swarm gather.
        """
        waited = 0.0
        while len(present := self.members()) < n:
            if waited % 10 == 0:  # expected at a start; a minute of it is worth a warning
                (log.warning if waited == 60 else log.info)(
                    "waiting for %d swarm member(s) before training; %d present%s", n, len(present),
                    " (is --min-peers more than will come, or --bootstrap wrong?)" if waited == 60 else "")
            await trio.sleep(0.5)
            waited += 0.5

    # -- the protocol: catch up, merge, publish ------------------------------------------------

    async def catch_up(self, max_wait_s: float | None = None) -> list[np.ndarray] | None:
        """The average of the neighbours' latest snapshots, to start from (a first start).

        Waits up to ``max_wait_s`` (default ``cfg.catch_up_s``) for the swarm's history
        (the join's ledger sync, so each author's newest snapshot is known, not an old
        one its author has collected) and a first neighbour snapshot, then
        :data:`CATCH_UP_GRACE_S` for more. The snapshots used become
        parents of the next :meth:`publish`, so the ledger records where the model came from.

        Returns:
            The weights to start from, or None when no neighbour snapshot arrived.
        """
        from learnae.averaging import merge

        wait_s = self.cfg.catch_up_s if max_wait_s is None else max_wait_s
        with trio.move_on_after(wait_s):
            await self._history.wait()  # the view holds each author's newest snapshot, not an old one
            while not self.view.authors():
                await self.merger.wait_fresh()
            # Let a few more announce, briefly: the swarm trains on meanwhile, and every
            # step it gains is a step this peer starts behind.
            await trio.sleep(min(CATCH_UP_GRACE_S, wait_s / 4))
        k = max(2, self.cfg.merge_k)
        refs = self.view.choose(k, exclude=self.merger.excluded(), fresh_only=False,
                                prefer=set(self.topic_peers()), max_others=self.merger.max_strangers())
        contributions = await self.merger.fetch_all(refs, 0)
        if not contributions:
            log.info("catch-up: no neighbour snapshot arrived; starting from the model's own weights")
            return None
        first, rest = contributions[0], contributions[1:]
        weights = merge(first.weights, rest, rule="mean").weights if rest else first.weights
        used = {c.author for c in contributions}
        parents = []
        for ref in refs:
            if ref.author in used:
                self.view.mark_merged(ref)
                parents.append(Parent(ref.entry_cid, 1.0 / len(used)))
        self._record_merge(parents)
        log.info("caught up from %d peer snapshot(s)", len(contributions))
        return weights

    async def choose(self, step: int) -> list[SnapshotRef]:
        """Neighbour snapshots to merge at ``step``, after the bounded-staleness wait."""
        if self._median_samples:  # unknown data size: weigh as the median neighbour
            known = [n for a in self.view.authors() if (n := self.view.shard_samples(a)) is not None]
            self.merger.local_samples = int(statistics.median(known)) if known else 1
        return await self.merger.choose(step)

    async def fetch(self, refs: list[SnapshotRef], step: int) -> list:
        """Fetch and validate ``refs`` (failures counted and dropped); the contributions."""
        return await self.merger.fetch_mergeable(refs, step)

    async def combine(self, local: list[np.ndarray], refs: list[SnapshotRef], contributions: list,
                      step: int) -> Merged | None:
        """Average fetched contributions into ``local``; the parents go into the next snapshot."""
        merged = await self.merger.combine(local, refs, contributions, step)
        if merged is not None:
            self._record_merge(merged.parents)
        return merged

    async def merge(self, local: list[np.ndarray], step: int) -> Merged | None:
        """:meth:`choose`, :meth:`fetch` and :meth:`combine` in one call (None: nothing usable)."""
        refs = await self.choose(step)
        if not refs:
            return None
        return await self.combine(local, refs, await self.fetch(refs, step), step)

    def _record_merge(self, parents: list[Parent]) -> None:
        self._parents = accumulate_parents(self._parents, parents)
        self.merges += 1
        self.metrics.merges.inc()
        self.last_merge = (time.time(), len(parents))

    async def publish(self, weights: list[np.ndarray], *, step: int, samples: int,
                      metrics: dict[str, float]):
        """Store a snapshot of ``weights``, sign a ``snapshot`` entry, announce it; return its CID.

        The entry lists every snapshot merged since the previous publish as a parent.
        The parents are taken when the call starts, so a merge that completes while
        this publish is on its way goes into the next one.

        Raises:
            LearnaeError: the store failed (e.g. the Kubo daemon went away).
            ValueError: ``weights`` do not fit the model joined with.
        """
        parents, self._parents = self._parents, []
        try:
            cid = await self._store_snapshot(weights, step)
        except BaseException:
            self._parents = accumulate_parents(parents, self._parents)  # not lost: in the next one
            raise
        clean = {str(k)[:64]: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        body = {"model": cid, "step": int(step), "samples": int(samples), "metrics": clean, "parents": parents}
        prev, seq = self.ledger.head, self.ledger.next_seq
        await self._append("snapshot", body)
        if attack_mode(self.policy.attack) == "equivocate":
            await self._equivocate(seq, prev, body)
        if self.policy.attack is not None and self.policy.attack.sybils and self.gossip is not None:
            self._relay_sybils(body, self.policy.attack.sybils)
        self.published += 1
        self.metrics.snapshots.inc()
        self.routing.provide_soon(cid)
        self._own_snapshots.append(cid)
        while len(self._own_snapshots) > KEEP_OWN_SNAPSHOTS:
            old = self._own_snapshots.pop(0)
            if old != cid:
                await self.store.unpin(old)
        if self.published % GC_EVERY_PUBLISHES == 0:
            removed = await self.merger.collect_garbage()
            log.debug("gc removed %d block(s)", removed)
        return cid

    async def _store_snapshot(self, weights: list[np.ndarray], step: int):
        """Encode ``weights`` (poisoned first if the policy says this peer attacks) and put them."""
        from learnae.storage.snapshot import encode_snapshot

        attack = self.policy.attack
        mode = attack_mode(attack)
        if mode is not None and mode != "equivocate":
            honest = self.merger.last_fetched
            weights = await trio.to_thread.run_sync(lambda: poison(weights, attack, honest=honest))
        encoding, names = self.cfg.snapshot_encoding, self.names
        data = await trio.to_thread.run_sync(
            lambda: encode_snapshot(weights, names, encoding=encoding, step=step))
        return await self.store.put(data)

    async def _equivocate(self, seq: int, prev, body: dict) -> None:
        """An injected attack: sign a second, different entry with the seq just used, and announce it.

        Honest peers that receive both hold a fork proof and stop merging this peer.
        """
        from learnae.ledger.entry import sign_entry

        twin = sign_entry(self.identity, swarm=self.swarm, seq=seq, prev=prev, kind="snapshot",
                          body={**body, "samples": body["samples"] + 1})
        await self.gossip.publish(twin)
        log.warning("attack: equivocated at seq %d (%s)", seq, twin.cid)

    def _relay_sybils(self, body: dict, count: int) -> None:
        """An injected attack: made-up identities sign ``body`` too, relayed through our connections."""
        from learnae.peer.sybils import SybilRelay

        if self._sybils is None or len(self._sybils.sybils) != count:
            join = self.ledger.entries(author=self.peer_id, kind="join")[-1]
            self._sybils = SybilRelay(self.gossip.pubsub, self.gossip.router, self.gossip.topic, self.swarm,
                                      dict(join.body), count=count)
        self._sybils.relay(body)

    async def _append(self, kind: str, body: dict):
        entry = self.ledger.append(kind, body, swarm=self.swarm)
        if self.gossip is not None:
            await self.gossip.publish(entry)
        return entry

    # -- what arrives from the swarm ---------------------------------------------------------------

    def chain_check(self, entry) -> str | None:
        """Gossip validator hook: the policy's and the ledger's verdict on an incoming entry.

        Returns None to deliver and forward it (stored, or a fork proof everyone should
        see), ``IGNORE`` when it is no news or cannot be used yet (a duplicate; held
        until its history arrives: then the ledger stores it and the view learns it),
        else the reason to reject it.
        """
        from learnae.gossip.validate import IGNORE
        from learnae.ledger import Status

        if entry.author != self.peer_id and (lost := self.policy.drop(entry.author)) is not None:
            return lost  # an injected fault: the message never arrived (and is not forwarded)
        result = self.ledger.receive(entry)
        if result.status is Status.REJECTED:
            return result.reason or "rejected"  # counted by the validator's on_reject
        if result.status is Status.HELD:
            self._gaps.set()  # its history is missing: fetch it now
            return IGNORE
        if result.status is Status.DUPLICATE:
            return IGNORE
        if result.status is Status.FORK and entry.author not in self._fork_warned:
            self._fork_warned.add(entry.author)
            log.warning("fork: %s signed two entries with seq %d; its work is no longer merged",
                        entry.author, entry.seq)
        latency = max(0.0, time.time() - entry.ts / 1000)
        self.metrics.announce_latency.observe(latency)
        self.announce_latencies.append(latency)
        if entry.author != self.peer_id:
            self.gossiped += 1
        return None

    def _count_rejected(self, reason: str) -> None:
        self.metrics.rejected.labels(reason=reason).inc()

    def _on_stored(self, entry) -> None:
        """The ledger stored another author's entry (gossip, a released held one, gap filling,
        sync): the view learns it, as late as an injected latency says."""
        if entry.swarm != self.swarm or not self.policy.may_connect(entry.author):
            return
        delay = self.policy.delay_s(entry.author)
        if delay > 0 and self._nursery is not None:
            self._nursery.start_soon(self._note_later, entry, delay)
        else:
            self._note(entry)

    async def _consume(self) -> None:
        """Drain the inbox: what it delivers was stored and noted in :meth:`chain_check`."""
        async for _ in self.gossip.announcements():
            pass

    async def _note_later(self, entry, delay: float) -> None:
        await trio.sleep(delay)
        self._note(entry)

    def _note(self, entry) -> None:
        if self.view.note_entry(entry) is not None and self.merger is not None:
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

@asynccontextmanager
async def _open_store(cfg: PeerConfig, host, data_dir, ledger, routing) -> AsyncIterator:
    """The store ``cfg.storage`` names, on ``host``, serving the ledger's entries too (the one place
    a store is chosen)."""
    serve = partial(LedgerBackedBlocks, ledger=ledger)
    if cfg.storage == "kubo":  # files in the daemon; ledger entries stay on this host's own Bitswap
        from learnae.storage.kubo_node import open_kubo_node

        opener = partial(open_kubo_node, api=cfg.kubo_api)
    else:
        from learnae.storage.node import open_embedded_node

        opener = open_embedded_node
    async with opener(host, data_dir, fetch_timeout_s=cfg.fetch_timeout_s, serve=serve,
                      find_providers=routing.find_providers) as store:
        yield store


def _relay_params(cfg: PeerConfig):
    """What the host does about NAT: relay for others (``relay``), reserve slots on the bootstrap
    peers (``behind_nat``), or neither (None)."""
    if not cfg.relay and not cfg.behind_nat:
        return None
    from learnae.gossip.relay import RelayParams

    relays = tuple(a for a in cfg.bootstrap if "/p2p-circuit" not in a) if cfg.behind_nat else ()
    return RelayParams(serve=cfg.relay, reserve_on=relays)


@asynccontextmanager
async def open_peer_node(cfg: PeerConfig, *, policy: NetworkPolicy = NO_FAULTS) -> AsyncIterator[PeerNode]:
    """Open a peer's whole stack on its data dir (see the module docstring for the order).

    Leaving the block leaves the swarm (if joined) and closes everything.

    Args:
        cfg: the peer's settings.
        policy: injected faults (simulations); the default lets everything through.

    Raises:
        UserError: the data dir is in use, the key file is bad, or no Kubo daemon
            answers at ``kubo_api`` (storage = kubo).
        ConfigError: the listen address is not a TCP multiaddr.
        ServiceError: the listen address cannot be bound.
    """
    from learnae.gossip import open_host
    from learnae.gossip.discovery import watch_mdns
    from learnae.gossip.routing import ContentRouting, open_dht
    from learnae.ledger import Ledger

    data_dir = prepare_dir(cfg.data_dir, what="--data-dir")  # unwritable: one line naming it, exit 2
    if not any(data_dir.iterdir()) or (data_dir / "identity.key").exists():  # new, or a peer's: not any dir
        os.chmod(data_dir, 0o700)  # key, ledger, checkpoints, metrics: this user's business only
    with DataDirLock(data_dir):
        identity = Identity.load_or_create(data_dir)
        if cfg.storage == "kubo":
            from learnae.storage.kubo_node import check_kubo_api

            await check_kubo_api(cfg.kubo_api)  # UserError (exit 2) naming --kubo-api, before a port opens
        with Ledger.open(data_dir, identity) as ledger:
            async with open_host(identity, [cfg.listen], mdns=cfg.mdns, relay=_relay_params(cfg)) as host, \
                    AsyncExitStack() as stack:
                # zeroconf reports a peer once, maybe before the swarm is joined: collect from now on
                mdns = stack.enter_context(watch_mdns(host)) if cfg.mdns else None
                async with open_dht(host, enabled=cfg.dht) as dht:
                    routing = ContentRouting(dht, timeout_s=cfg.fetch_timeout_s)
                    async with _open_store(cfg, host, data_dir, ledger, routing) as store:
                        ledger.fetch_block = store.get_block
                        node = PeerNode(cfg, identity, ledger, host, store, routing, policy)
                        node.mdns = mdns
                        enforcer = PolicyEnforcer(host, policy, redial_timeout_s=cfg.fetch_timeout_s)
                        if policy is not NO_FAULTS:
                            enforcer.gate_dials()  # before discovery dials anyone
                        async with trio.open_nursery() as nursery:
                            node._nursery = nursery
                            nursery.start_soon(routing.run)
                            if policy is not NO_FAULTS:
                                nursery.start_soon(enforcer.run)
                            try:
                                yield node
                            finally:
                                with trio.CancelScope(shield=True):
                                    await node.leave(node._leave_reason)
                                nursery.cancel_scope.cancel()
