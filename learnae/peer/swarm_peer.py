"""``NetworkPeer``: a :class:`~learnae.peer.node.PeerNode` behind a user's own ``model.fit``.

:class:`learnae.keras.GossipAveraging` calls ``join``, ``publish`` and ``merge``
from the training thread (the :class:`~learnae.keras.SwarmPeer` protocol). This
adapter runs the peer's trio event loop in a background thread of its own and
hands each call to the same :class:`~learnae.peer.node.PeerNode` that
``learnae peer start`` runs, blocking the training thread until it returns. So
a Keras script is an equal member of the swarm: the same data dir, signed
ledger, host, store (embedded or Kubo), gossip, discovery, merge rules and
injected faults (``faults``) as a CLI peer.

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
import threading
from collections.abc import Sequence

import numpy as np
import trio

from learnae.errors import LearnaeError, ServiceError, UserError, only_exception
from learnae.peer.config import PeerConfig, load_config
from learnae.peer.node import PeerNode, open_peer_node

__all__ = ["NetworkPeer"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # opening the ledger, the host and the store
CLOSE_TIMEOUT_S = 30.0  # leave entry + gossip flush + host shutdown, each bounded inside


class NetworkPeer:
    """A :class:`learnae.keras.SwarmPeer` that takes part in a real swarm.

    Starting it opens the peer's node (data dir, ledger, host, store), so
    :attr:`addr` can be handed to other peers at once; :meth:`join` enters the
    swarm of the model's fingerprint. Use it as a context manager, or call
    :meth:`close` (it writes a ``leave`` entry and always stops the thread).

    Args:
        cfg: the peer's settings (:func:`~learnae.peer.config.load_config`). The
            model, data and optimizer settings are the script's business.
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
        UserError: the data dir is in use by another peer, or no Kubo answers (storage = kubo).
        ServiceError: the listen address cannot be bound, or the peer did not start in time.
    """

    def __init__(self, cfg: PeerConfig, *, samples: int | None = None):
        from learnae.peer.faults import Faults
        from learnae.peer.policy import NO_FAULTS

        self.cfg = cfg
        self.publish_every = cfg.publish_every
        self.publish_interval_s = cfg.publish_interval_s
        self.merge_every = cfg.merge_every
        self.samples = samples
        self.addr = ""
        self.peer_id = ""
        self.swarm: str | None = None
        self.leave_reason = "done"
        self._policy = Faults(cfg.faults, seed=cfg.seed) if cfg.faults else NO_FAULTS
        self._node: PeerNode | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._closing: trio.Event | None = None
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

    # -- what the node counts ------------------------------------------------------------------

    @property
    def merges(self) -> int:
        return self._node.merges if self._node is not None else 0

    @property
    def published(self) -> int:
        return self._node.published if self._node is not None else 0

    @property
    def metrics(self):
        return self._node.metrics if self._node is not None else None

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
        from learnae.storage.snapshot import fingerprint

        specs = [(str(n), tuple(int(d) for d in s), str(t)) for n, s, t in specs]
        if self.swarm is not None:
            fp = fingerprint([s[0] for s in specs], [s[1] for s in specs], [s[2] for s in specs])
            if fp != self._node.fingerprint:
                raise UserError(f"this peer joined swarm {self.swarm} with a model of fingerprint "
                                f"{self._node.fingerprint[:16]}..., not {fp[:16]}...; "
                                "open another peer for another model")
            return None
        return self._call(self._join, specs)

    def publish(self, weights: list[np.ndarray], *, step: int, samples: int,
                metrics: dict[str, float]) -> None:
        """Put a snapshot in the store, sign a ``snapshot`` entry, announce it.

        The entry lists the snapshots merged since the last one as its parents.
        Network and store trouble is logged, never raised.

        Raises:
            UserError: called before :meth:`join`.
        """
        self._need_join("publish")
        self._call(self._publish, list(weights), int(step), int(samples), dict(metrics))

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
        async with open_peer_node(self.cfg, policy=self._policy) as node:
            self._node, self.peer_id, self.addr = node, node.peer_id, node.addr
            if self.cfg.metrics_port:
                node.metrics.serve(self.cfg.metrics_port)
            self._closing = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._closing.wait()
            await node.leave(self.leave_reason)

    async def _join(self, specs: list[tuple]) -> list[np.ndarray] | None:
        node, cfg = self._node, self.cfg
        swarm = await node.join(specs, framework="keras", local_samples=self.samples)
        self.swarm = swarm
        first_start = not any(e.swarm == swarm for e in node.ledger.entries(author=node.peer_id, kind="snapshot"))
        if not (first_start and cfg.catch_up_s > 0 and (cfg.bootstrap or cfg.mdns)):
            return None
        start = await node.catch_up()
        if start is not None:
            # Announce the model we start from: as an author at step 0 this peer
            # counts for the others' bounded staleness from its first step on.
            await self._publish(start, 0, 0, {})
        return start

    async def _publish(self, weights: list[np.ndarray], step: int, samples: int, metrics: dict) -> None:
        node = self._node
        try:
            await node.publish(weights, step=step, samples=samples, metrics=metrics)
        except (LearnaeError, ValueError) as exc:
            log.warning("could not publish the snapshot of step %d: %s", step, exc)
            return
        node.metrics.steps.inc(max(0, step - self._last_step))
        node.metrics.samples.inc(max(0, samples - self._last_samples))
        self._last_step, self._last_samples = step, samples
        if "loss" in metrics:
            node.metrics.loss.set(metrics["loss"])

    _last_step = _last_samples = 0

    async def _merge(self, local: list[np.ndarray], step: int) -> list[np.ndarray] | None:
        try:
            merged = await self._node.merge(local, step)
        except LearnaeError as exc:
            log.warning("merge at step %d failed; training on: %s", step, exc)
            return None
        return None if merged is None else merged.weights
