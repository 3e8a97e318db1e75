"""``GossipAveraging``: let your own ``model.fit(...)`` take part in a learnae swarm.

Add the callback and every ``publish_every`` batches your model's weights are
published to the swarm; every ``merge_every`` batches the freshest snapshots of up
to ``k`` neighbours are fetched, validated and averaged into your model, which
then trains on. Your training loop, data pipeline and model stay yours.

The callback talks to "the peer" through :class:`SwarmPeer`, a three-method
protocol. :func:`connect` starts the networked one,
:class:`learnae.peer.swarm_peer.NetworkPeer`: a real peer (data dir, signed
ledger, libp2p host, Bitswap, GossipSub) whose event loop runs in a background
thread while its methods block the training thread.
:class:`learnae.testing.fake_peer.FakePeer` is an in-process stand-in for unit tests.

Example (a CLI peer printed ``/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...``; the
model must be the swarm's, e.g. the ``digits-mlp`` preset, so the fingerprints match)::

    from learnae.keras import GossipAveraging, connect
    from learnae.training import load_model

    model = load_model("digits-mlp")
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with connect(data_dir="~/keras-peer", listen="/ip4/127.0.0.1/tcp/0",
                 bootstrap=["/ip4/127.0.0.1/tcp/4010/p2p/12D3KooW..."]) as peer:
        model.fit(x, y, batch_size=32, epochs=20,
                  callbacks=[GossipAveraging(peer, batch_size=32)])

Backends: weights are read and written through ``self.model`` as numpy
(:mod:`learnae.training.weights`, ``keras.ops.convert_to_numpy`` for other tensor
types), so TensorFlow, JAX and PyTorch backends all work (under JAX, reading
``self.model`` in a callback syncs the trainer's state, and Keras re-reads
variables a callback has assigned).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import keras
import numpy as np

from learnae.peer.pacing import Pacer
from learnae.training.optim import optimizer_slots
from learnae.training.weights import TensorSpec, read_weights, tensor_specs, write_weights

__all__ = ["SwarmPeer", "GossipAveraging", "connect"]

log = logging.getLogger(__name__)


@runtime_checkable
class SwarmPeer(Protocol):
    """What :class:`GossipAveraging` needs from a peer. All calls block the caller.

    Attributes:
        publish_every: default publish interval in training steps (batches).
        publish_interval_s: default least time between two publishes, in seconds (0: none).
        merge_every: default merge interval in training steps.
    """

    publish_every: int
    publish_interval_s: float
    merge_every: int

    def join(self, specs: Sequence[TensorSpec]) -> list[np.ndarray] | None:
        """Check the model's tensor specs against the swarm before training starts.

        Returns:
            Weights for the model to start from (e.g. the swarm's average when
            joining a swarm that trains already), or ``None`` to keep its own.

        Raises:
            learnae.errors.UserError: the model's fingerprint differs from the swarm's.
        """

    def publish(self, weights: list[np.ndarray], *, step: int, samples: int,
                metrics: dict[str, float]) -> None:
        """Publish a snapshot of ``weights`` taken after local step ``step``.

        ``samples`` is the cumulative number of samples trained on; ``metrics`` are
        the latest training loss/accuracy. Must not raise on network trouble (the
        peer logs and retries later).
        """

    def merge(self, weights: list[np.ndarray], *, step: int) -> list[np.ndarray] | None:
        """Fetch fresh neighbour snapshots and merge them with ``weights``.

        Returns:
            The merged weights, or ``None`` when no neighbour snapshot was usable
            (the model then just trains on).
        """


def _scalars(logs) -> dict[str, float]:
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            pass  # not a scalar metric
    return out


class GossipAveraging(keras.callbacks.Callback):
    """A Keras callback that publishes and merges weights with a learnae swarm.

    Args:
        peer: a :class:`SwarmPeer`.
        publish_every: publish after every this many batches (default: the peer's).
        publish_interval_s: and at most once every this many seconds, the final
            weights excepted (default: the peer's ``publish_interval_s``; 0: no limit).
        merge_every: merge after every this many batches (default: the peer's).
        batch_size: samples per batch, for the cumulative sample count that
            weighted merge rules use (Keras does not tell callbacks).
        momentum_policy: ``"keep"`` (default) leaves optimizer slots alone after a
            merge, ``"reset"`` zeroes them (see :mod:`learnae.training.adapter`).

    Attributes:
        step: batches trained so far, across ``fit`` calls.
        merges: merges that changed the weights.
    """

    def __init__(self, peer: SwarmPeer, *, publish_every: int | None = None,
                 merge_every: int | None = None, batch_size: int = 32,
                 momentum_policy: str = "keep", publish_interval_s: float | None = None):
        super().__init__()
        if momentum_policy not in ("keep", "reset"):
            raise ValueError(f"momentum_policy {momentum_policy!r} must be 'keep' or 'reset'")
        self.peer = peer
        self.publish_every = int(publish_every or peer.publish_every)
        self.merge_every = int(merge_every or peer.merge_every)
        if self.publish_every < 1 or self.merge_every < 1:
            raise ValueError("publish_every and merge_every must be >= 1")
        interval = peer.publish_interval_s if publish_interval_s is None else float(publish_interval_s)
        if not interval >= 0:
            raise ValueError(f"publish_interval_s {interval!r} must be >= 0")
        self._pace = Pacer(interval)
        self.batch_size = int(batch_size)
        self.momentum_policy = momentum_policy
        self.step = 0
        self.samples = 0
        self.merges = 0
        self._joined = False
        self._last_published = -1
        self._metrics: dict[str, float] = {}

    def on_train_begin(self, logs=None) -> None:
        if not self._joined:
            start = self.peer.join(tensor_specs(self.model))
            self._joined = True
            if start is not None:
                try:
                    write_weights(self.model, start)
                except ValueError as exc:
                    log.warning("starting weights rejected, keeping the model's own: %s", exc)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.step += 1
        self.samples += self.batch_size
        self._metrics = _scalars(logs)
        # Publish this peer's own progress first, then absorb the neighbours'.
        if self.step % self.publish_every == 0 and self._pace.due():
            self._publish()
        if self.step % self.merge_every == 0:
            self._merge()

    def on_train_end(self, logs=None) -> None:
        # Leave the swarm with this run's final weights.
        if self.step and self._last_published != self.step:
            self._publish()

    def _publish(self) -> None:
        self.peer.publish(read_weights(self.model), step=self.step, samples=self.samples,
                          metrics=dict(self._metrics))
        self._last_published = self.step
        self._pace.mark()

    def _merge(self) -> None:
        model = self.model
        merged = self.peer.merge(read_weights(model), step=self.step)
        if merged is None:
            return
        try:
            write_weights(model, merged)
        except ValueError as exc:
            log.warning("merge result rejected, keeping local weights: %s", exc)
            return
        self.merges += 1
        if self.momentum_policy == "reset" and getattr(model, "optimizer", None) is not None:
            for v in optimizer_slots(model.optimizer):
                v.assign(keras.ops.zeros_like(v))


def connect(*, data_dir=None, bootstrap: Sequence[str] = (), swarm: str | None = None,
            listen: str | None = None, samples: int | None = None, **settings):
    """Start a networked peer for :class:`GossipAveraging`; close it (or use ``with``) when done.

    Settings follow ``learnae peer start``'s precedence: the arguments here, then
    ``LEARNAE_*`` variables, then ``<data_dir>/config.toml``, then the defaults.

    Args:
        data_dir: this peer's data dir (key, ledger, blocks); not a running CLI peer's.
        bootstrap: full multiaddrs of swarm members (the first line ``learnae peer start`` prints).
        swarm: swarm name, as the swarm's ``--swarm`` (default ``"default"``).
        listen: e.g. ``"/ip4/127.0.0.1/tcp/0"``; the address to dial is ``peer.addr``.
        samples: the size of your training set (for the ``weighted`` averaging rule).
        **settings: any other peer setting, e.g. ``merge_every=5``, ``merge_k=3``.

    Returns:
        a started :class:`learnae.peer.swarm_peer.NetworkPeer`.

    Raises:
        UserError: a bad setting, or the data dir is in use.
        ServiceError: the listen address cannot be bound.

    Example:
        >>> with connect(data_dir="/tmp/k", listen="/ip4/127.0.0.1/tcp/0") as peer:  # doctest: +SKIP
        ...     model.fit(x, y, callbacks=[GossipAveraging(peer)])
    """
    from learnae.peer.swarm_peer import NetworkPeer

    return NetworkPeer.open(data_dir=data_dir, bootstrap=bootstrap, swarm=swarm, listen=listen,
                            samples=samples, **settings)
