"""``NetworkPeer``: a real learnae peer behind a user's own ``model.fit`` (a :class:`~learnae.keras.SwarmPeer`).

:class:`learnae.keras.GossipAveraging` calls ``join``, ``publish`` and ``merge``
from the training thread; each call blocks it while a trio event loop, running
in a background thread of its own, does the networking. That loop owns what
``learnae peer start`` owns (the data-dir lock, the identity, the ledger, the
libp2p host, the embedded IPFS node) and, from ``join`` on, the gossip topic of
the swarm ``swarm_id(cfg.swarm, fingerprint)`` and discovery. So a Keras script
is an equal member of the swarm: its snapshots are signed into its ledger,
announced, fetched over Bitswap and merged by the CLI peers, and it merges
theirs with the same :class:`~learnae.peer.merging.Merger` (bounded staleness,
validation, averaging rule and cap from :class:`~learnae.peer.config.PeerConfig`).

Unlike the CLI peer it announces no ``shard`` entry (your data stays yours, not
even its CID is published) and keeps no checkpoint (your script saves its model).

Example::

    from learnae.keras import GossipAveraging
    from learnae.peer.swarm_peer import NetworkPeer

    with NetworkPeer.open(data_dir="~/keras-peer", listen="/ip4/127.0.0.1/tcp/0",
                          bootstrap=["/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW..."]) as peer:
        print(peer.addr)              # other peers can --bootstrap from this
        model.fit(x, y, batch_size=32, epochs=20, callbacks=[GossipAveraging(peer)])
    # leaving the block publishes a leave entry and stops the network thread
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Sequence

import numpy as np
import trio

from learnae.errors import LearnaeError, ServiceError, UserError, only_exception
from learnae.identity import Identity
from learnae.peer.blocks import LedgerBackedBlocks
from learnae.peer.config import PeerConfig, load_config
from learnae.peer.lock import DataDirLock
from learnae.peer.merging import Merger
from learnae.peer.metrics import PeerMetrics
from learnae.peer.view import SwarmView

__all__ = ["NetworkPeer"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # opening the ledger, the host and the store
CLOSE_TIMEOUT_S = 30.0  # leave entry + gossip flush + host shutdown, each bounded below
LEAVE_BUDGET_S = 3.5  # as the CLI peer: the leave entry gets this long to be written and queued
BOOTSTRAP_CHECK_S = 10.0  # at join: how long to wait to learn a bootstrap peer's swarm
CATCH_UP_GRACE_S = 0.25  # at join: after the first neighbour snapshot, wait this long for more
KEEP_OWN_SNAPSHOTS = 2  # own snapshots kept pinned (neighbours may still be fetching the older)
GC_EVERY_PUBLISHES = 10  # drop merged neighbour snapshots from the block store this often


class NetworkPeer:
    """A :class:`learnae.keras.SwarmPeer` that takes part in a real swarm.

    Starting it opens the data dir, the ledger, the host and the block store (so
    :attr:`addr` can be handed to other peers at once); :meth:`join` subscribes to
    the swarm of the model's fingerprint. Use it as a context manager, or call
    :meth:`close` (it writes a ``leave`` entry and always stops the thread).

    Args:
        cfg: the peer's settings (:func:`~learnae.peer.config.load_config`). Used:
            data_dir, swarm, listen, bootstrap, mdns, dht, seed, publish_every,
            merge_every, merge_k, rule, weight_cap, fetch_timeout_s, merge_wait_s,
            catch_up_s, snapshot_encoding, storage, metrics_port. The model, data and
            optimizer settings are the script's business.
        samples: how many samples your training set has, for the ``weighted`` rule;
            unknown (None) counts this peer as large as its median neighbour.

    Attributes:
        addr: this peer's full multiaddr (``/ip4/.../p2p/12D3KooW...``), for ``--bootstrap``.
        peer_id: this peer's ID.
        swarm: the swarm id after :meth:`join`, else None.
        merges: merges that returned weights (the catch-up at ``join`` included).
        published: snapshots announced.
        metrics: the peer's :class:`~learnae.peer.metrics.PeerMetrics`.

    Raises:
        UserError: the data dir is in use by another peer, or ``storage`` is not embedded.
        ServiceError: the listen address cannot be bound, or the peer did not start in time.
    """

    def __init__(self, cfg: PeerConfig, *, samples: int | None = None):
        self.cfg = cfg
        self.publish_every = cfg.publish_every
        self.merge_every = cfg.merge_every
        self.samples = samples
        self.metrics = PeerMetrics()
        self.addr = ""
        self.peer_id = ""
        self.swarm: str | None = None
        self.fingerprint: str | None = None
        self.merges = 0
        self.published = 0
        self.leave_reason = "done"
        self._names: list[str] = []
        self._parents: list[dict] = []  # merged since the last published snapshot
        self._own_snapshots: list = []
        self._last_step = self._last_samples = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._failure: BaseException | None = None
        self._closed = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="learnae-peer", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.close()
            raise ServiceError(f"the peer in {cfg.data_dir} did not start within {START_TIMEOUT_S:.0f} s")
        if self._failure is not None:
            self._thread.join(CLOSE_TIMEOUT_S)
            raise (only_exception(self._failure) or self._failure) from None

    @classmethod
    def open(cls, *, data_dir=None, bootstrap: Sequence[str] = (), swarm: str | None = None,
             listen: str | None = None, samples: int | None = None, config_file=None,
             **settings) -> NetworkPeer:
        """Start a peer from keyword settings, with the CLI's precedence.

        Arguments given here win over ``LEARNAE_*`` variables, which win over the
        config file (``<data_dir>/config.toml`` or ``config_file``) and the defaults.

        Args:
            data_dir: the peer's data dir (default ``$LEARNAE_HOME`` or ``~/.learnae``);
                not the one of a running CLI peer.
            bootstrap: full multiaddrs of peers to dial (a CLI peer's first line).
            swarm: swarm name (default ``"default"``).
            listen: e.g. ``"/ip4/127.0.0.1/tcp/0"`` (any free port).
            samples: see the class.
            **settings: any other :class:`PeerConfig` key, e.g. ``merge_every=5``.

        Raises:
            ConfigError: an unknown key or a bad value (named in the message).

        Example:
            >>> peer = NetworkPeer.open(data_dir="/tmp/k", listen="/ip4/127.0.0.1/tcp/0")  # doctest: +SKIP
        """
        cli = {"data_dir": data_dir, "bootstrap": list(bootstrap) or None, "swarm": swarm,
               "listen": listen, **settings}
        cfg, _ = load_config(cli, config_file=config_file)
        return cls(cfg, samples=samples)

    # -- the SwarmPeer protocol (called from the training thread) --------------------------

    def join(self, specs: Sequence[tuple]) -> list[np.ndarray] | None:
        """Join the swarm of this model: its fingerprint picks the gossip topic.

        Writes a ``join`` entry. On a first start with peers to dial it waits up to
        ``catch_up_s`` for neighbour snapshots and returns their average, for the
        model to start from (a random model averaged into a trained swarm sets
        everyone back), and publishes that average as its snapshot of step 0.

        Returns:
            Weights to start from, or None.

        Raises:
            UserError: a bootstrap peer trains another model (or swarm), or this peer
                already joined with another model.
        """
        from learnae.gossip import swarm_id
        from learnae.storage.snapshot import fingerprint

        specs = [(str(n), tuple(int(d) for d in s), str(t)) for n, s, t in specs]
        fp = fingerprint([s[0] for s in specs], [s[1] for s in specs], [s[2] for s in specs])
        if self.fingerprint is not None:
            if fp != self.fingerprint:
                raise UserError(f"this peer joined swarm {self.swarm} with a model of fingerprint "
                                f"{self.fingerprint[:16]}..., not {fp[:16]}...; open another peer for another model")
            return None
        swarm = swarm_id(self.cfg.swarm, fp)
        self._names = [s[0] for s in specs]
        start = self._call(self._join, swarm, fp)
        self.swarm, self.fingerprint = swarm, fp
        return start

    def publish(self, weights: list[np.ndarray], *, step: int, samples: int,
                metrics: dict[str, float]) -> None:
        """Put a snapshot in the block store, sign a ``snapshot`` entry, announce it.

        The entry lists the snapshots merged since the last one as its parents.
        Network trouble is logged, never raised.

        Raises:
            UserError: called before :meth:`join`.
        """
        from learnae.storage.snapshot import encode_snapshot

        self._need_join("publish")
        try:  # encoded here, in the training thread that waits anyway
            data = encode_snapshot(weights, self._names, encoding=self.cfg.snapshot_encoding, step=step)
        except ValueError as exc:
            log.warning("not publishing the weights of step %d: %s", step, exc)
            return
        clean = {str(k)[:64]: float(v) for k, v in metrics.items() if math.isfinite(v)}
        self._call(self._publish, data, int(step), int(samples), clean)

    def merge(self, weights: list[np.ndarray], *, step: int) -> list[np.ndarray] | None:
        """Fetch up to ``merge_k`` fresh neighbour snapshots and average them with ``weights``.

        Waits up to ``merge_wait_s`` for a lagging neighbour (bounded staleness).

        Returns:
            The merged weights, or None when no neighbour snapshot was usable.

        Raises:
            UserError: called before :meth:`join`.
        """
        self._need_join("merge")
        local = [np.asarray(w, np.float32) for w in weights]
        return self._call(self._merge, local, int(step))

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self, reason: str | None = None) -> None:
        """Write a ``leave`` entry (if joined) and stop the network thread; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        if reason is not None:
            self.leave_reason = reason
        if self._token is not None:
            try:
                trio.from_thread.run_sync(self._closing.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass  # the loop has already stopped
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("the peer's network thread did not stop within %.0f s", CLOSE_TIMEOUT_S)

    @property
    def running(self) -> bool:
        """True while the network thread runs (from start until :meth:`close` returns)."""
        return self._thread.is_alive()

    def __enter__(self) -> NetworkPeer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        reason = "done" if exc_type is None else (
            "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "error")
        self.close(reason)

    def _need_join(self, what: str) -> None:
        if self.swarm is None:
            raise UserError(f"{what}() before join(): GossipAveraging joins at the start of fit")

    def _call(self, afn, *args):
        """Run ``afn(*args)`` in the peer's event loop and wait for its result."""
        if self._closed:
            raise UserError("this peer is closed; open a new one")
        try:
            return trio.from_thread.run(afn, *args, trio_token=self._token)
        except trio.RunFinishedError as exc:
            raise ServiceError(f"the peer's network loop has stopped: {self._failure!r}") from (
                self._failure or exc)
        except BaseExceptionGroup as group:  # trio nurseries wrap what a task raised
            raise (only_exception(group) or group) from None

    # -- the event loop (the peer's own thread) ---------------------------------------------------

    def _thread_main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self._failure = exc
            if self._ready.is_set():
                log.error("the peer's network loop failed: %r", exc, exc_info=exc)
        finally:
            self._ready.set()

    async def _run(self) -> None:
        from learnae.gossip import dial_line, open_host
        from learnae.ledger import Ledger
        from learnae.storage.node import open_embedded_node

        cfg = self.cfg
        if cfg.storage != "embedded":
            raise UserError(f"storage = {cfg.storage!r}: a Keras peer runs the embedded store only; "
                            "set storage = \"embedded\"")
        data_dir = cfg.data_dir.expanduser()
        data_dir.mkdir(parents=True, exist_ok=True)
        with DataDirLock(data_dir):
            identity = Identity.load_or_create(data_dir)
            with Ledger.open(data_dir, identity) as ledger:
                async with open_host(identity, [cfg.listen], mdns=cfg.mdns) as host:
                    async with open_embedded_node(host, data_dir, fetch_timeout_s=cfg.fetch_timeout_s,
                                                  serve=lambda blocks: LedgerBackedBlocks(blocks, ledger)) as store:
                        ledger.fetch_block = store.get_block
                        self._ledger, self._host, self._store = ledger, host, store
                        self.peer_id, self.addr = identity.peer_id, dial_line(host)
                        self.view = SwarmView(identity.peer_id, seed=cfg.seed)
                        if cfg.metrics_port:
                            self.metrics.serve(cfg.metrics_port)
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            self._closing = trio.Event()
                            self._token = trio.lowlevel.current_trio_token()
                            self._ready.set()
                            await self._closing.wait()
                            # a joined swarm session writes its leave entry, then ends by itself

    async def _join(self, swarm: str, fp: str) -> list[np.ndarray] | None:
        return await self._nursery.start(self._session, swarm, fp)

    async def _session(self, swarm: str, fp: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Be a member of ``swarm`` until :meth:`close`: gossip, discovery, merges."""
        from learnae.gossip import full_addrs
        from learnae.gossip.announce import PublishParams, open_gossip
        from learnae.gossip.discovery import DiscoveryParams, open_discovery
        from learnae.storage.snapshot import encode_snapshot

        cfg = self.cfg
        self.merger = Merger(cfg, self.view, self._ledger, self._store, self._store.bitswap, self.metrics,
                             fingerprint=fp, local_samples=self.samples or 1)
        disc_params = DiscoveryParams(bootstrap=tuple(cfg.bootstrap), mdns=cfg.mdns, dht=cfg.dht)
        async with open_gossip(self._host, swarm, chain_check=self._chain_check,
                               publish=PublishParams(flush_timeout_s=1.5)) as gossip, \
                open_discovery(self._host, swarm, disc_params):
            self._gossip, self._swarm = gossip, swarm
            for entry in self._ledger.entries(since_ms=int((time.time() - self.view.max_age_s) * 1000)):
                if entry.swarm == swarm:
                    self.view.note_entry(entry)
            if cfg.bootstrap:
                await self._check_bootstrap_swarm(fp)  # before any entry lands in the wrong swarm
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._consume)
                nursery.start_soon(self._fill_gaps)
                first_start = not any(e.swarm == swarm for e in
                                      self._ledger.entries(author=self.peer_id, kind="snapshot"))
                await self._append("join", {"fingerprint": fp, "framework": "keras",
                                            "addrs": full_addrs(self._host)[:32]})
                start = None
                if first_start and cfg.catch_up_s > 0 and (cfg.bootstrap or cfg.mdns):
                    start = await self._catch_up()
                if start is not None:
                    # Announce the model we start from: as an author at step 0 this peer
                    # counts for the others' bounded staleness from its first step on.
                    data = await trio.to_thread.run_sync(
                        lambda: encode_snapshot(start, self._names, encoding=cfg.snapshot_encoding, step=0))
                    await self._publish(data, 0, 0, {})
                task_status.started(start)
                await self._closing.wait()
                with trio.move_on_after(LEAVE_BUDGET_S) as budget:
                    budget.shield = True
                    await self._append("leave", {"reason": self.leave_reason})
                nursery.cancel_scope.cancel()

    async def _check_bootstrap_swarm(self, fp: str) -> None:
        """Fail at join when a bootstrap peer trains another model (or swarm name)."""
        from learnae.peer.swarmcheck import check_bootstrap_swarm

        found = await check_bootstrap_swarm(
            self._gossip.pubsub, self._gossip.topic, self.cfg.bootstrap, timeout_s=BOOTSTRAP_CHECK_S, poll_s=0.1,
            mismatch=lambda pid, theirs: (
                f"bootstrap peer {pid} trains in swarm {theirs}, this model in {self._swarm}: its model fingerprint "
                f"or swarm name differs; build the swarm's model (same layers, names and shapes, e.g. its --model "
                f"preset) and use its swarm name (this model's fingerprint is {fp[:16]}...)"))
        if not found:
            log.info("no bootstrap peer told its swarm within %.0f s; joining anyway", BOOTSTRAP_CHECK_S)

    async def _catch_up(self) -> list[np.ndarray] | None:
        """The average of the neighbours' latest snapshots (waits up to ``catch_up_s`` for one)."""
        from learnae.averaging import merge

        with trio.move_on_after(self.cfg.catch_up_s):
            while not self.view.authors():
                await self.merger.wait_fresh()
            # Let a few more announce, briefly: the swarm trains on meanwhile, and every
            # step it gains is a step this peer starts behind.
            await trio.sleep(min(CATCH_UP_GRACE_S, self.cfg.catch_up_s / 4))
        refs = self.view.choose(max(2, self.cfg.merge_k), exclude=self.merger.excluded(), fresh_only=False)
        contributions = await self.merger.fetch_all(refs, 0)
        if not contributions:
            log.info("catch-up: no neighbour snapshot arrived; the model starts from its own weights")
            return None
        first, rest = contributions[0], contributions[1:]
        weights = merge(first.weights, rest, rule="mean").weights if rest else first.weights
        used = {c.author for c in contributions}
        for ref in refs:
            if ref.author in used:
                self.view.mark_merged(ref)
                self._parents.append({"entry": ref.entry_cid, "weight": 1.0 / len(used)})
        self.merges += 1
        self.metrics.merges.inc()
        log.info("caught up from %d peer snapshot(s)", len(contributions))
        return weights

    # -- publish and merge (in the loop, on behalf of the training thread) ----------------------

    async def _append(self, kind: str, body: dict):
        entry = self._ledger.append(kind, body, swarm=self._swarm)
        await self._gossip.publish(entry)
        return entry

    async def _publish(self, data: bytes, step: int, samples: int, metrics: dict[str, float]) -> None:
        try:
            cid = await self._store.put(data)
            await self._append("snapshot", {"model": cid, "step": step, "samples": samples,
                                            "metrics": metrics, "parents": self._parents})
        except LearnaeError as exc:
            log.warning("could not publish the snapshot of step %d: %s", step, exc)
            return
        self._parents = []
        self.published += 1
        self.metrics.snapshots.inc()
        self.metrics.steps.inc(max(0, step - self._last_step))
        self.metrics.samples.inc(max(0, samples - self._last_samples))
        self._last_step, self._last_samples = step, samples
        if "loss" in metrics:
            self.metrics.loss.set(metrics["loss"])
        self._own_snapshots.append(cid)
        while len(self._own_snapshots) > KEEP_OWN_SNAPSHOTS:
            old = self._own_snapshots.pop(0)
            if old != cid:
                await self._store.unpin(old)
        if self.published % GC_EVERY_PUBLISHES == 0:
            removed = await self._store.gc()
            log.debug("gc removed %d block(s)", removed)

    async def _merge(self, local: list[np.ndarray], step: int) -> list[np.ndarray] | None:
        if self.samples is None:  # unknown data size: weigh as the median neighbour
            known = [n for a in self.view.authors() if (n := self.view.shard_samples(a)) is not None]
            self.merger.local_samples = int(statistics.median(known)) if known else 1
        if self._behind(step):
            return None
        try:
            refs = await self.merger.choose(step)
            merged = await self.merger.merge(local, refs, step) if refs else None
        except LearnaeError as exc:
            log.warning("merge at step %d failed; training on: %s", step, exc)
            return None
        if merged is None:
            return None
        self._parents.extend(merged.parents)
        self.merges += 1
        self.metrics.merges.inc()
        return merged.weights

    def _behind(self, step: int) -> bool:
        """Nothing fresh to merge, and every neighbour is past ``step``: do not wait for one.

        The Merger waits up to ``merge_wait_s`` for a fresh snapshot, which keeps
        peers in step; a peer behind them all would wait at every merge while the
        others wait for it to catch up, and both crawl. A Keras peer often starts
        behind (it joins a swarm that trains already), so it skips that wait.
        """
        excluded = self.merger.excluded()
        if self.view.choose(self.cfg.merge_k, exclude=excluded):
            return False
        latest = [self.view.latest(a) for a in self.view.authors() if a not in excluded]
        return bool(latest) and all(r.step > step for r in latest)

    # -- the swarm's announcements -----------------------------------------------------------------

    def _chain_check(self, entry) -> str | None:
        """Gossip validator hook: the ledger's verdict on an incoming entry."""
        from learnae.ledger import Status

        result = self._ledger.receive(entry)
        if result.status is Status.REJECTED:
            self.metrics.rejected.labels(reason=result.reason or "rejected").inc()
            return result.reason or "rejected"
        if result.status is Status.FORK:
            log.warning("fork: %s signed two entries with seq %d; its work is no longer merged",
                        entry.author, entry.seq)
        return None

    async def _consume(self) -> None:
        async for ann in self._gossip.announcements():
            self.metrics.announce_latency.observe(max(0.0, ann.received_s - ann.entry.ts / 1000))
            if self.view.note_entry(ann.entry) is not None:
                self.merger.notify_fresh()

    async def _fill_gaps(self) -> None:
        """Fetch the missing history of authors whose recent entries arrived first."""
        while True:
            await trio.sleep(5)
            try:
                await self._ledger.fill_gaps(timeout_s=self.cfg.fetch_timeout_s)
            except LearnaeError as exc:
                log.info("ledger gap filling: %s", exc)
