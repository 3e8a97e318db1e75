"""A run's timeline, typed: what the plan says happens when, and what did happen.

A scenario file's ``events`` are resolved by :func:`learnae.scenario.schema.plan`
into timeline items, one frozen dataclass per kind of action:

* :class:`PeerAction`: ``kill``, ``restart``, ``pause``, ``resume``, ``join``, ``leave`` of some peers;
* :class:`PartitionAction`: split the peers into groups that cannot reach each other;
* :class:`HealAction`: end the partition;
* :class:`SlowAction`: set peers' compute slowdown factors;
* :class:`AttackAction`: start (or, with None, stop) peers' attacks.

The runner carries each one out and records a :class:`FiredEvent`. Both are
written to report.json (``timeline`` and ``events``, docs/scenario-report.md)
with ``to_json`` and read back with :func:`item_from_json` /
:meth:`FiredEvent.from_json`::

    {"at": 30.0, "action": "kill", "peers": ["peer-2"]}
    {"t": 30.02, "at": 30.0, "action": "kill", "peers": ["peer-2"], "ok": true, "detail": ""}

Example:
    >>> item = PeerAction(30.0, "kill", ("peer-2",))
    >>> item_from_json(item.to_json()) == item
    True
    >>> event_label(FiredEvent(30.02, item, ok=False, detail="peer-2 was not running"))
    'kill peer-2 (failed)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Union

from learnae.peer.faults import Attack

__all__ = ["PEER_ACTIONS", "PeerAction", "PartitionAction", "HealAction", "SlowAction", "AttackAction",
           "TimelineItem", "FiredEvent", "item_from_json", "event_label"]

PEER_ACTIONS = ("kill", "restart", "pause", "resume", "join", "leave")


@dataclass(frozen=True, slots=True)
class PeerAction:
    """Signal, start or stop some peers' processes."""

    at: float  # s since the swarm was up
    action: str  # one of PEER_ACTIONS
    peers: tuple[str, ...]  # peer names

    def __post_init__(self) -> None:
        if self.action not in PEER_ACTIONS:
            raise ValueError(f"action {self.action!r}: expected one of {', '.join(PEER_ACTIONS)}")

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "action": self.action, "peers": list(self.peers)}


@dataclass(frozen=True, slots=True)
class PartitionAction:
    """Peers in different groups can no longer reach each other; peers in no group reach everyone."""

    at: float  # s since the swarm was up
    groups: tuple[tuple[str, ...], ...]  # peer names per group
    action: ClassVar[str] = "partition"

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "action": self.action, "groups": [list(g) for g in self.groups]}


@dataclass(frozen=True, slots=True)
class HealAction:
    """The partition ends."""

    at: float  # s since the swarm was up
    action: ClassVar[str] = "heal"

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "action": self.action}


@dataclass(frozen=True, slots=True)
class SlowAction:
    """Peers train ``factor`` times slower (1 restores full speed)."""

    at: float  # s since the swarm was up
    factors: dict[str, float]  # peer name -> slowdown factor, >= 1
    action: ClassVar[str] = "slow"

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "action": self.action, "factors": dict(self.factors)}


@dataclass(frozen=True, slots=True)
class AttackAction:
    """Peers start publishing poisoned snapshots (an :class:`Attack`), or stop (None)."""

    at: float  # s since the swarm was up
    modes: dict[str, Attack | None]  # peer name -> its attack from now on
    action: ClassVar[str] = "attack"

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "action": self.action,
                "modes": {n: None if a is None else a.to_json() for n, a in self.modes.items()}}


TimelineItem = Union[PeerAction, PartitionAction, HealAction, SlowAction, AttackAction]


def item_from_json(obj: object) -> TimelineItem:
    """Parse a timeline item (or the item part of an event) as report.json holds it.

    Raises:
        ValueError: not an item: naming what is wrong.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"a timeline item must be an object, not {type(obj).__name__}")
    action, at = obj.get("action"), obj.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise ValueError(f"timeline item {action!r}: `at` must be a number of seconds")
    at = float(at)
    if action in PEER_ACTIONS:
        return PeerAction(at, action, tuple(_names(obj.get("peers"), action)))
    if action == "partition":
        groups = obj.get("groups")
        if not isinstance(groups, list):
            raise ValueError("partition: `groups` must be a list of lists of peer names")
        return PartitionAction(at, tuple(tuple(_names(g, action)) for g in groups))
    if action == "heal":
        return HealAction(at)
    if action == "slow":
        factors = obj.get("factors")
        if not isinstance(factors, dict) or not all(isinstance(f, (int, float)) for f in factors.values()):
            raise ValueError("slow: `factors` must map peer names to numbers")
        return SlowAction(at, {str(n): float(f) for n, f in factors.items()})
    if action == "attack":
        modes = obj.get("modes")
        if not isinstance(modes, dict):
            raise ValueError("attack: `modes` must map peer names to {mode, scale} or null")
        return AttackAction(at, {str(n): None if m is None else Attack.from_json(m) for n, m in modes.items()})
    raise ValueError(f"unknown timeline action {action!r}")


def _names(value: object, action: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ValueError(f"{action}: expected a list of peer names")
    return value


@dataclass(frozen=True, slots=True)
class FiredEvent:
    """A timeline item as the runner carried it out."""

    t: float  # s since the swarm was up, when it fired (before it was carried out)
    item: TimelineItem
    ok: bool = True  # False: it could not be done (e.g. killing a peer that was not running)
    detail: str = ""  # why not, or empty

    @property
    def action(self) -> str:
        return self.item.action

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, **self.item.to_json(), "ok": self.ok, "detail": self.detail}

    @classmethod
    def from_json(cls, obj: object) -> FiredEvent:
        """Parse one of report.json's ``events``.

        Raises:
            ValueError: not an event.
        """
        item = item_from_json(obj)
        t = obj.get("t")
        t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else item.at
        detail = obj.get("detail")
        return cls(t, item, ok=obj.get("ok") is not False, detail=detail if isinstance(detail, str) else "")


def _peer_names(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names) if len(names) <= 2 else f"{len(names)} peers"


def event_label(event: TimelineItem | FiredEvent) -> str:
    """A short label for a timeline item or event: ``kill peer-2``, ``partition 2 groups``, ``heal``.

    A failed event's label ends in ``(failed)``.

    Example:
        >>> event_label(PartitionAction(5.0, (("peer-0", "peer-1"), ("peer-2",))))
        'partition peer-0+peer-1 | peer-2'
    """
    item = event.item if isinstance(event, FiredEvent) else event
    if isinstance(item, PartitionAction):
        inner = " | ".join("+".join(g) for g in item.groups)
        label = f"partition {inner}" if len(inner) <= 30 else f"partition {len(item.groups)} groups"
    elif isinstance(item, SlowAction):
        factors = item.factors
        label = f"slow {', '.join(f'{n} x{f:g}' for n, f in factors.items())}" if len(factors) <= 2 \
            else f"slow {len(factors)} peers"
    elif isinstance(item, AttackAction):
        parts = [f"{n} {m.mode if m else 'off'}" for n, m in item.modes.items()]
        label = f"attack {', '.join(parts)}" if len(parts) <= 2 else f"attack {len(parts)} peers"
    elif isinstance(item, PeerAction) and item.peers:
        label = f"{item.action} {_peer_names(item.peers)}"
    else:
        label = item.action
    return label + (" (failed)" if isinstance(event, FiredEvent) and not event.ok else "")
