"""Injected faults: network conditions, partitions, slowdowns and attacks, inside the peer.

This machine's kernel has no ``netem``, so the scenario runner injects faults
through the peer itself. ``--faults FILE`` names a JSON file (written by
``learnae scenario run``, never by a remote peer) that the peer re-reads
whenever it changes::

    {"blocked": ["12D3KooW..."],            # partition: no connection, no message, no merge
     "neighbours": null,                     # restricted topology: only these may stay connected
     "latency_s": 0.1, "jitter_s": 0.02, "loss": 0.05,        # every link
     "links": {"12D3KooW...": {"latency_s": 0.3, "jitter_s": 0, "loss": 0}},   # per neighbour
     "slow": 2.0,                            # compute slowdown factor
     "attack": {"mode": "sign-flip", "scale": 1.0, "sybils": 0}}   # or null; sybils optional

How each is applied, at the receiving peer (so a link's conditions hold in both
directions when both ends list them, as the runner does):

* ``loss``: an incoming announcement is dropped at the gossip validator with that
  probability (not forwarded either), as if it had been lost on the way; a snapshot
  fetch pays a retransmission timeout (0.2 s) with that probability.
* ``latency`` + ``jitter``: an announcement reaches the merge step that much later
  (uniform jitter); a snapshot fetch waits one round trip (twice that) first.
* ``blocked``: connections to those peers are closed as soon as they appear and
  their announcements are dropped, so nothing crosses the partition.
* ``neighbours``: connections to other peers are closed; announcements of
  non-neighbours are still relayed but never merged.
* ``slow``: after each burst of steps the peer idles ``(slow - 1)`` times as long.
* ``attack``: see :func:`poison`; ``equivocate`` signs, at every publish, a
  second different entry with the seq just used (handled by the runtime), so
  peers that were away at the first fork still see one. ``sybils: N`` also signs
  each poisoned snapshot with N identities of its own making, whose entries it
  relays through its own connections (:mod:`learnae.peer.sybils`).

The file is read with :meth:`FaultPlan.from_json` and written (by the runner)
with :func:`write_fault_plan`, its exact inverse::

    >>> plan = FaultPlan(blocked=frozenset({"12D3KooWB"}), attack=Attack("sign-flip"))
    >>> write_fault_plan(Path("peers/peer-0/faults.json"), plan)
    True
    >>> FaultPlan.from_json(plan.to_json()) == plan
    True
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from learnae.errors import UserError
from learnae.fsutil import atomic_write

__all__ = ["FaultPlan", "Conditions", "Attack", "Faults", "poison", "write_fault_plan", "ATTACK_MODES", "RTO_S"]

log = logging.getLogger(__name__)

# The attack vocabulary: scenario files (learnae.scenario.schema.ATTACKS) use this very tuple.
ATTACK_MODES = ("sign-flip", "noise", "a-little-is-enough", "scaled", "equivocate")
MAX_SYBILS = 1000  # identities one hostile peer may make up (a fault injector, not a load test)
DEFAULT_SCALE = {"sign-flip": 1.0, "noise": 1.0, "a-little-is-enough": 1.0, "scaled": 10.0, "equivocate": 1.0}
RTO_S = 0.2  # TCP's minimum retransmission timeout: what a lost segment costs a fetch


@dataclass(frozen=True, slots=True)
class Conditions:
    """Network conditions of a link, applied at the receiving peer."""

    latency_s: float = 0.0  # one-way delay
    jitter_s: float = 0.0  # uniform +- around latency_s
    loss: float = 0.0  # share of messages lost, [0, 1)

    def to_json(self) -> dict:
        return {"latency_s": self.latency_s, "jitter_s": self.jitter_s, "loss": self.loss}


@dataclass(frozen=True, slots=True)
class Attack:
    """What a hostile peer does to what it publishes; see :func:`poison`.

    In the faults file it is ``{"mode": MODE, "scale": number or null, "sybils": N}``
    (``sybils`` optional, 0 when absent).

    Example:
        >>> Attack("scaled").to_json()
        {'mode': 'scaled', 'scale': None}
        >>> Attack("scaled", -10.0, sybils=300).to_json()
        {'mode': 'scaled', 'scale': -10.0, 'sybils': 300}
    """

    mode: str  # one of ATTACK_MODES
    scale: float | None = None  # strength, unitless; None: the mode's default (DEFAULT_SCALE)
    sybils: int = 0  # made-up identities that sign the same poisoned snapshots, relayed by this peer

    def __post_init__(self) -> None:
        if self.mode not in ATTACK_MODES:
            raise ValueError(f"attack mode {self.mode!r}: expected one of {', '.join(ATTACK_MODES)}")
        if not 0 <= self.sybils <= MAX_SYBILS:
            raise ValueError(f"attack.sybils: expected 0 to {MAX_SYBILS}, not {self.sybils}")

    def to_json(self) -> dict:
        out: dict = {"mode": self.mode, "scale": self.scale}
        if self.sybils:
            out["sybils"] = self.sybils
        return out

    @classmethod
    def from_json(cls, data: object) -> Attack:
        """Parse ``{"mode": ..., "scale": ..., "sybils": ...}`` (``scale`` and ``sybils`` optional).

        Raises:
            ValueError: not an object, an unknown mode, a scale that is not a number, or
                ``sybils`` not a whole number from 0 to ``MAX_SYBILS``.
        """
        if not isinstance(data, dict) or data.get("mode") not in ATTACK_MODES:
            raise ValueError(f"attack: expected null or {{\"mode\": one of {', '.join(ATTACK_MODES)}}}")
        scale = data.get("scale")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
            raise ValueError("attack.scale: expected a number or null")
        sybils = data.get("sybils", 0)
        if isinstance(sybils, bool) or not isinstance(sybils, int):
            raise ValueError("attack.sybils: expected a whole number")
        return cls(data["mode"], None if scale is None else float(scale), sybils)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The parsed faults file."""

    blocked: frozenset[str] = frozenset()  # peer IDs cut off (a partition)
    neighbours: frozenset[str] | None = None  # the only peer IDs to stay connected to; None: anyone
    default: Conditions = Conditions()  # every link's conditions...
    links: dict[str, Conditions] = field(default_factory=dict)  # ...except these, by peer ID
    slow: float = 1.0  # compute slowdown factor, >= 1
    attack: Attack | None = None

    def to_json(self) -> dict:
        """The faults file's JSON object; :meth:`from_json` of it gives this plan back.

        Lists are sorted, so equal plans give identical files.
        """
        return {
            "blocked": sorted(self.blocked),
            "neighbours": None if self.neighbours is None else sorted(self.neighbours),
            **self.default.to_json(),
            "links": {k: self.links[k].to_json() for k in sorted(self.links)},
            "slow": self.slow,
            "attack": None if self.attack is None else self.attack.to_json(),
        }

    @classmethod
    def from_json(cls, data: object) -> FaultPlan:
        """Parse and check the file's content.

        Raises:
            ValueError: naming the bad key.
        """
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        known = {"blocked", "neighbours", "latency_s", "jitter_s", "loss", "links", "slow", "attack", "version"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}")

        def ids(key: str) -> frozenset[str]:
            v = data.get(key) or []
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"{key}: expected a list of peer IDs")
            return frozenset(v)

        def number(d: dict, key: str, default: float, where: str) -> float:
            v = d.get(key, default)
            try:
                if isinstance(v, bool):
                    raise TypeError(key)
                return float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {key} must be a number") from None

        def cond(d: object, where: str) -> Conditions:
            if not isinstance(d, dict):
                raise ValueError(f"{where}: expected an object with latency_s, jitter_s, loss")
            c = Conditions(number(d, "latency_s", 0, where), number(d, "jitter_s", 0, where),
                           number(d, "loss", 0, where))
            if c.latency_s < 0 or c.jitter_s < 0 or not 0 <= c.loss < 1:
                raise ValueError(f"{where}: latency_s, jitter_s must be >= 0 and loss in [0, 1)")
            return c

        links = data.get("links") or {}
        if not isinstance(links, dict):
            raise ValueError("links: expected an object {peer ID: conditions}")
        attack = data.get("attack")
        slow = number(data, "slow", 1.0, "top level")
        if slow < 1:
            raise ValueError("slow: expected a factor >= 1")
        return cls(
            blocked=ids("blocked"),
            neighbours=ids("neighbours") if data.get("neighbours") is not None else None,
            default=cond(data, "top level"),
            links={k: cond(v, f"links.{k}") for k, v in links.items()},
            slow=slow,
            attack=Attack.from_json(attack) if attack is not None else None,
        )

    def conditions(self, peer_id: str) -> Conditions:
        return self.links.get(peer_id, self.default)


class Faults:
    """The peer's live view of its faults file (no file: no faults)."""

    def __init__(self, path: str | Path | None, *, seed: int = 0):
        self.path = Path(path).expanduser() if path else None
        self.plan = FaultPlan()
        self.generation = 0  # bumped on every change
        self.dropped = 0  # announcements dropped by injected loss or a partition
        self._stamp: tuple | None = None
        self._rng = random.Random(seed)
        if self.path is not None:
            try:
                self.reload(strict=True)
            except ValueError as exc:
                raise UserError(f"--faults {self.path}: {exc}; fix the file or leave --faults empty") from None

    def reload(self, *, strict: bool = False) -> bool:
        """Re-read the file if it changed; True when the plan changed.

        A file that disappears means no faults; a malformed one keeps the previous
        plan (logged), except at start (``strict``), where it is the user's error.
        """
        if self.path is None:
            return False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if strict:
                raise ValueError("no such file") from None
            if self._stamp is None:
                self._stamp = ()
                return False
            self._stamp, self.plan = (), FaultPlan()
            self.generation += 1
            return True
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return False
        try:
            plan = FaultPlan.from_json(json.loads(self.path.read_text()))
        except (ValueError, OSError) as exc:
            if strict:
                raise ValueError(str(exc)) from None
            log.warning("faults file %s ignored: %s", self.path, exc)
            return False
        self._stamp = stamp
        if plan != self.plan:
            self.plan = plan
            self.generation += 1
            log.info("faults now: %s", plan)
            return True
        return False

    # -- what the runtime asks -------------------------------------------------------

    def drop(self, author: str) -> str | None:
        """Why an incoming announcement by ``author`` is lost, or None when it gets through."""
        if author in self.plan.blocked:
            self.dropped += 1
            return "partitioned"
        loss = self.plan.conditions(author).loss
        if loss and self._rng.random() < loss:
            self.dropped += 1
            return "injected-loss"
        return None

    def may_connect(self, peer_id: str) -> bool:
        neighbours = self.plan.neighbours
        return peer_id not in self.plan.blocked and (neighbours is None or peer_id in neighbours)

    def mergeable(self, author: str) -> bool:
        neighbours = self.plan.neighbours
        return author not in self.plan.blocked and (neighbours is None or author in neighbours)

    def delay_s(self, author: str) -> float:
        """One-way delay of a message from ``author``."""
        c = self.plan.conditions(author)
        if not c.latency_s and not c.jitter_s:
            return 0.0
        return max(0.0, c.latency_s + self._rng.uniform(-c.jitter_s, c.jitter_s))

    def fetch_delay_s(self, author: str) -> float:
        """Extra time a snapshot fetch from ``author`` takes: a round trip, plus an RTO if a segment is lost."""
        extra = self.delay_s(author) + self.delay_s(author)
        loss = self.plan.conditions(author).loss
        if loss and self._rng.random() < loss:
            extra += RTO_S
        return extra

    @property
    def slow(self) -> float:
        return self.plan.slow

    @property
    def attack(self) -> Attack | None:
        return self.plan.attack


def write_fault_plan(path: Path, plan: FaultPlan) -> bool:
    """Write ``plan`` as the faults file ``path`` (atomically), unless the file already says it.

    A peer re-reads its file whenever it changes; skipping identical rewrites
    keeps it from re-reading for nothing.

    Returns:
        True when the file was written.

    Example:
        >>> write_fault_plan(Path("faults.json"), FaultPlan(slow=2.0))
        True
    """
    path = Path(path)
    data = json.dumps(plan.to_json(), indent=1).encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    atomic_write(path, data, mode=0o600)
    return True


def poison(weights: list[np.ndarray], attack: Attack | dict, *, honest: list[list[np.ndarray]] = (),
           rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """The snapshot a hostile peer publishes instead of ``weights``.

    * ``sign-flip``: ``-scale * w``.
    * ``noise``: ``w + N(0, scale^2)`` per element.
    * ``a-little-is-enough`` (Baruch et al., 2019): per element, the mean of the
      honest models it fetched last minus ``scale`` standard deviations: small enough
      to pass outlier filters, consistent enough to pull the average.
    * ``scaled``: ``scale * w`` (a model-replacement attempt).

    ``attack`` is an :class:`Attack` or its JSON object (``{"mode": ..., "scale": ...}``).
    """
    if not isinstance(attack, Attack):
        attack = Attack.from_json(attack)
    mode = attack.mode
    scale = float(attack.scale or DEFAULT_SCALE[mode])
    rng = rng or np.random.default_rng()
    if mode == "sign-flip":
        return [(-scale * w).astype(w.dtype) for w in weights]
    if mode == "noise":
        return [(w + rng.normal(0.0, scale, size=w.shape)).astype(w.dtype) for w in weights]
    if mode == "scaled":
        return [(scale * w).astype(w.dtype) for w in weights]
    if mode == "a-little-is-enough":
        models = [list(m) for m in honest] or [weights]
        out = []
        for i, w in enumerate(weights):
            stack = np.stack([m[i].astype(np.float64) for m in models] + [w.astype(np.float64)])
            out.append((stack.mean(axis=0) - scale * stack.std(axis=0)).astype(w.dtype))
        return out
    return weights  # equivocate: the weights are honest, the chain is not
