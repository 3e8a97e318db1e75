"""The peers' lives along a scenario's timeline: which events can happen, and who runs at the end.

A scenario's events act in time order (events at the same time in file order),
and each one is possible only in some states of the peers it names. A peer is
always in one of these states:

==========  ==================================================================
``waiting`` not started yet (``start: false``, or a new name a ``join`` adds)
``running`` its process runs
``paused``  SIGSTOP (``pause``); it still holds its connections
``killed``  ``kill -9`` (``kill``)
``left``    a graceful leave (``leave``)
==========  ==================================================================

=============  ===========================  ===========
action         possible when the peer is    then it is
=============  ===========================  ===========
``kill``       running or paused            killed
``leave``      running or paused            left
``pause``      running                      paused
``resume``     paused                       running
``restart``    killed or left               running
``join``       waiting or left (a rejoin)   running
=============  ===========================  ===========

A ``partition`` needs at least two groups and each peer in at most one; a
``heal`` needs a partition in force; a ``slow`` factor is at least 1.

:func:`timeline_problems` walks the timeline once and returns *every* event it
cannot carry out, each with its YAML path (``events[3].restart[0]``), so
``learnae scenario validate`` lists them all; :func:`expected_running` says which
peers the timeline leaves running, which the report holds the run to (an
implicit ``peers_alive`` expectation, :mod:`learnae.scenario.assembly`).

Example:
    >>> s = parse_scenario({"name": "t", "duration": "60s", "peers": 2,
    ...                     "events": [{"at": "5s", "kill": "peer-1"}]})
    >>> sorted(expected_running(s))
    ['peer-0']
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the schema imports this module to validate; at run time the types stay duck-typed
    from learnae.scenario.schema import Event, Scenario

__all__ = ["Problem", "timeline_problems", "expected_running", "STATES"]

Problem = tuple[tuple[Any, ...], str]  # (YAML path as keys and indexes, what is wrong and what to do)

STATES = ("waiting", "running", "paused", "killed", "left")

# action -> (states it needs, state after, what to write instead when the peer is not in one of them)
_TRANSITIONS = {
    "kill": (("running", "paused"), "killed"),
    "leave": (("running", "paused"), "left"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "restart": (("killed", "left"), "running"),
    "join": (("waiting", "left"), "running"),
}
_HINTS = {
    ("restart", "waiting"): "it has not started yet: start it with `join`",
    ("join", "killed"): "it was killed: start it again with `restart`",
    ("resume", "running"): "it is not paused",
    ("pause", "paused"): "it is paused already",
}


def _in_order(s: Scenario) -> Iterator[tuple[int, Event]]:
    """The events with their file index, sorted by time (ties: file order), as the plan fires them."""
    return iter(sorted(enumerate(s.events), key=lambda ie: (ie[1].at, ie[0])))


def _walk(s: Scenario, until: float | None = None) -> tuple[dict[str, str], list[Problem]]:
    state = {p.name: "running" if p.start else "waiting" for p in s.peers}
    since: dict[str, str] = {}  # peer -> "kill at 30s": how it got into its state, for messages
    problems: list[Problem] = []
    partitioned_at: float | None = None
    for i, ev in _in_order(s):
        if until is not None and ev.at > until:
            break
        action, value = ev.action, getattr(ev, ev.action)
        if action in _TRANSITIONS:
            needs, after = _TRANSITIONS[action]
            for j, name in enumerate(value):
                now = state.get(name, "waiting")  # a name only a join adds starts out waiting
                if now in needs:
                    state[name], since[name] = after, f"{action} at {ev.at:g}s"
                    continue
                how = f" ({since[name]})" if name in since else ""
                hint = _HINTS.get((action, now)) or f"`{action}` needs a peer that is {' or '.join(needs)}"
                problems.append((("events", i, action, j),
                                 f"{name} is {now} at {ev.at:g}s{how}: {hint}"))
        elif action == "partition":
            seen: dict[str, int] = {}
            if len(value) < 2:
                problems.append((("events", i, "partition"),
                                 "a partition needs at least two groups (peers in no group reach everyone)"))
            for g, group in enumerate(value):
                if not group:
                    problems.append((("events", i, "partition", g), "an empty group; list at least one peer"))
                for j, name in enumerate(group):
                    if name in seen:
                        problems.append((("events", i, "partition", g, j),
                                         f"{name} is already in group {seen[name]}; a peer can be in one group only"))
                    else:
                        seen[name] = g
            partitioned_at = ev.at
        elif action == "heal":
            if partitioned_at is None:
                problems.append((("events", i, "heal"), f"no partition is in force at {ev.at:g}s: nothing to heal"))
            partitioned_at = None
        elif action == "slow":
            for name, factor in value.items():
                if factor < 1:
                    problems.append((("events", i, "slow", name),
                                     f"factor {factor:g} is below 1; 2 means half speed, 1 restores full speed"))
    return state, problems


def timeline_problems(s: Scenario) -> list[Problem]:
    """Every event the timeline cannot carry out, in time order, with its YAML path."""
    return _walk(s)[1]


def expected_running(s: Scenario, *, until: float | None = None) -> frozenset[str]:
    """The peers the timeline leaves running (or paused: the runner resumes them to stop them) at its end.

    Args:
        until: only the events up to this time (s): a run that ended early never reached the later ones.
    """
    state, _ = _walk(s, until)
    return frozenset(n for n, st in state.items() if st in ("running", "paused"))
