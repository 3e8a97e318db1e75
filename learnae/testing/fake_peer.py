"""``FakeSwarm`` / ``FakePeer``: an in-process stand-in for learnae peers.

A :class:`FakePeer` implements :class:`learnae.keras.SwarmPeer` without any
networking: snapshots go into a shared :class:`FakeSwarm` dict, and ``merge``
takes the plain mean of the local weights and the latest snapshot of up to ``k``
other peers. It records every call, so tests can check what a training loop
published and when. It imports no Keras.

Example:
    >>> import numpy as np
    >>> swarm = FakeSwarm()
    >>> a, b = swarm.peer("a"), swarm.peer("b")
    >>> a.join([("000/w", (2,), "float32")]); b.join([("000/w", (2,), "float32")])
    >>> a.publish([np.ones(2, np.float32)], step=1, samples=32, metrics={})
    >>> b.merge([np.zeros(2, np.float32)], step=1)[0].tolist()
    [0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from learnae.errors import UserError

__all__ = ["FakeSwarm", "FakePeer", "PublishRecord"]


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """One ``publish`` call."""

    step: int
    samples: int
    metrics: dict[str, float]


class FakeSwarm:
    """The shared state of fake peers: joined tensor specs and latest snapshots."""

    def __init__(self) -> None:
        self.specs: list[tuple] | None = None
        self.latest: dict[str, list[np.ndarray]] = {}

    def peer(self, name: str, *, publish_every: int = 10, merge_every: int = 10, k: int = 2) -> FakePeer:
        """A new peer of this swarm."""
        return FakePeer(self, name, publish_every=publish_every, merge_every=merge_every, k=k)


@dataclass(eq=False)
class FakePeer:
    """A :class:`learnae.keras.SwarmPeer` over a :class:`FakeSwarm`."""

    swarm: FakeSwarm
    name: str
    publish_every: int = 10
    merge_every: int = 10
    k: int = 2
    published: list[PublishRecord] = field(default_factory=list)
    merge_steps: list[int] = field(default_factory=list)
    last_merged: list[np.ndarray] | None = None

    def join(self, specs: Sequence[tuple]) -> None:
        specs = [(str(n), tuple(s), str(d)) for n, s, d in specs]
        if self.swarm.specs is None:
            self.swarm.specs = specs
        elif specs != self.swarm.specs:
            raise UserError(f"peer {self.name}: the model does not match the swarm's model: use the same --model")

    def publish(self, weights: list[np.ndarray], *, step: int, samples: int, metrics: dict[str, float]) -> None:
        self.swarm.latest[self.name] = [np.array(w, np.float32, copy=True) for w in weights]
        self.published.append(PublishRecord(step, samples, dict(metrics)))

    def merge(self, weights: list[np.ndarray], *, step: int) -> list[np.ndarray] | None:
        others = [w for name, w in sorted(self.swarm.latest.items()) if name != self.name][: self.k]
        self.merge_steps.append(step)
        if not others:
            return None
        merged = [np.mean([local, *(o[i] for o in others)], axis=0).astype(np.float32)
                  for i, local in enumerate(weights)]
        self.last_merged = [m.copy() for m in merged]
        return merged
