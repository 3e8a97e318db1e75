"""``FakeSwarm`` / ``FakePeer``: an in-process stand-in for learnae peers.

A :class:`FakePeer` implements :class:`learnae.keras.SwarmPeer` without any
networking: snapshots go into a shared :class:`FakeSwarm` dict, and ``merge``
takes the plain mean of the local weights and the latest snapshot of up to ``k``
other peers. It keeps the protocol a real peer keeps (the same contract suite,
``tests/peer/test_protocol_contract.py``, runs on it): a chain of entries per
peer (``join``, ``snapshot`` naming the snapshots merged since the previous one
as parents, ``leave``), and, with ``catch_up=True``, a late joiner starts from
the mean of the others' latest snapshots. It records every call, so tests can
check what a training loop published and when. It imports no Keras.

Example:
    >>> import numpy as np
    >>> swarm = FakeSwarm()
    >>> a, b = swarm.peer("a"), swarm.peer("b")
    >>> a.join([("000/w", (2,), "float32")]); b.join([("000/w", (2,), "float32")])
    >>> a.publish([np.ones(2, np.float32)], step=1, samples=32, metrics={})
    >>> b.merge([np.zeros(2, np.float32)], step=1)[0].tolist()
    [0.5, 0.5]
    >>> b.publish([np.zeros(2, np.float32)], step=1, samples=32, metrics={})
    >>> b.entries[-1].parents
    (('a', 1),)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from learnae.errors import UserError

__all__ = ["FakeSwarm", "FakePeer", "FakeEntry", "PublishRecord"]


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """One ``publish`` call."""

    step: int
    samples: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class FakeEntry:
    """One entry of a fake peer's chain (what a real peer signs into its ledger).

    Attributes:
        seq: 0-based position in the author's chain.
        kind: ``join``, ``snapshot`` or ``leave``.
        step, samples: for snapshots.
        parents: ``(author, seq)`` of each snapshot merged since the previous one.
        reason: for ``leave``.
    """

    seq: int
    kind: str
    step: int = 0
    samples: int = 0
    parents: tuple[tuple[str, int], ...] = ()
    reason: str = ""


class FakeSwarm:
    """The shared state of fake peers: joined tensor specs and latest snapshots."""

    def __init__(self) -> None:
        self.specs: list[tuple] | None = None
        self.latest: dict[str, list[np.ndarray]] = {}
        self.latest_seq: dict[str, int] = {}  # author -> seq of its latest snapshot entry

    def peer(self, name: str, *, publish_every: int = 10, merge_every: int = 10, k: int = 2,
             catch_up: bool = False) -> FakePeer:
        """A new peer of this swarm (``catch_up``: start from the others' mean at ``join``)."""
        return FakePeer(self, name, publish_every=publish_every, merge_every=merge_every, k=k, catch_up=catch_up)


@dataclass(eq=False)
class FakePeer:
    """A :class:`learnae.keras.SwarmPeer` over a :class:`FakeSwarm`."""

    swarm: FakeSwarm
    name: str
    publish_every: int = 10
    merge_every: int = 10
    k: int = 2
    catch_up: bool = False
    publish_interval_s: float = 0.0
    published: list[PublishRecord] = field(default_factory=list)
    merge_steps: list[int] = field(default_factory=list)
    last_merged: list[np.ndarray] | None = None
    entries: list[FakeEntry] = field(default_factory=list)
    merges: int = 0
    _pending: list[tuple[str, int]] = field(default_factory=list)

    @property
    def peer_id(self) -> str:
        return self.name

    def join(self, specs: Sequence[tuple]) -> list[np.ndarray] | None:
        specs = [(str(n), tuple(s), str(d)) for n, s, d in specs]
        if self.swarm.specs is None:
            self.swarm.specs = specs
        elif specs != self.swarm.specs:
            raise UserError(f"peer {self.name}: the model does not match the swarm's model (fingerprint differs): "
                            "use the same --model")
        if self.entries:
            return None
        self._append("join")
        others = self._others()
        if not (self.catch_up and others):
            return None
        self._pending = [(name, self.swarm.latest_seq[name]) for name, _ in others]
        self.merges += 1
        return [np.mean([o[i] for _, o in others], axis=0).astype(np.float32) for i in range(len(specs))]

    def publish(self, weights: list[np.ndarray], *, step: int, samples: int, metrics: dict[str, float]) -> None:
        self._need_join()
        self.swarm.latest[self.name] = [np.array(w, np.float32, copy=True) for w in weights]
        entry = self._append("snapshot", step=step, samples=samples, parents=tuple(dict.fromkeys(self._pending)))
        self.swarm.latest_seq[self.name] = entry.seq
        self._pending = []
        self.published.append(PublishRecord(step, samples, dict(metrics)))

    def merge(self, weights: list[np.ndarray], *, step: int) -> list[np.ndarray] | None:
        self._need_join()
        others = self._others()
        self.merge_steps.append(step)
        if not others:
            return None
        merged = [np.mean([local, *(o[i] for _, o in others)], axis=0).astype(np.float32)
                  for i, local in enumerate(weights)]
        self._pending += [(name, self.swarm.latest_seq[name]) for name, _ in others]
        self.merges += 1
        self.last_merged = [m.copy() for m in merged]
        return merged

    def leave(self, reason: str = "done") -> None:
        """Write a ``leave`` entry (once) and stop being merged by the others."""
        if self.entries and self.entries[-1].kind != "leave":
            self._append("leave", reason=reason)
        self.swarm.latest.pop(self.name, None)

    def __enter__(self) -> FakePeer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.leave("done" if exc_type is None else "error")

    def _others(self) -> list[tuple[str, list[np.ndarray]]]:
        return [(name, w) for name, w in sorted(self.swarm.latest.items()) if name != self.name][: self.k]

    def _need_join(self) -> None:
        if not self.entries:
            raise UserError(f"peer {self.name}: join() first (GossipAveraging joins at the start of fit)")

    def _append(self, kind: str, **fields) -> FakeEntry:
        entry = FakeEntry(len(self.entries), kind, **fields)
        self.entries.append(entry)
        return entry
