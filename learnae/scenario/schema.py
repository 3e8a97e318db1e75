"""Scenario files: the typed schema, loading, and the resolved plan a run follows.

A scenario is a YAML file (see ``scenarios/`` and docs/scenarios.md)::

    name: churn
    seed: 7
    duration: 150s
    dataset: digits
    partition: classes:3
    model: digits-mlp
    peers: 8                      # or a list of named peers with overrides
    train: {max_steps: 1500, batch_size: 32}
    merge: {every: 5, k: 3, rule: mean}
    network: {latency: 100ms, jitter: 20ms, loss: 0.05}
    events:
      - {at: 30s, kill: [peer-2, peer-3]}
      - {at: 45s, restart: [peer-2, peer-3]}
    expect:
      - mean_accuracy >= 0.9
      - ledger_valid: true

:func:`load_scenario` validates everything before anything starts: every error
names the YAML path of the bad key (``events[2].kill[0]``) and what is expected,
and raises :class:`~learnae.errors.ScenarioError` (exit code 2 on the CLI).
:func:`plan` resolves the file into a :class:`Plan`: every peer's name, shard
index and settings, and the timeline sorted by time, as typed items
(:mod:`learnae.scenario.timeline`). A plan depends only on the file, so two runs
of one scenario follow the same timeline on the same data partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from learnae.errors import ScenarioError
from learnae.peer import faults
from learnae.peer.config import RULES
from learnae.scenario.lifecycle import Problem, timeline_problems
from learnae.scenario.timeline import (AttackAction, HealAction, PartitionAction, PeerAction, SlowAction,
                                       TimelineItem)

__all__ = [
    "Scenario", "PeerSpec", "Network", "Link", "Event", "Attack", "Expectation", "Plan", "PlannedPeer",
    "ATTACKS", "ACTIONS", "METRICS", "load_scenario", "parse_scenario", "plan", "parse_duration", "peer_flags",
    "scenario_problems", "ScenarioProblems",
]

ATTACKS = faults.ATTACK_MODES  # one vocabulary: what the peer's faults file accepts
ACTIONS = ("kill", "restart", "pause", "resume", "partition", "heal", "join", "leave", "slow", "attack")
# What ``expect`` may compare; report.json's ``final`` object carries each of them.
METRICS = {
    "mean_accuracy": "mean final test accuracy of the honest peers alive at the end",
    "min_accuracy": "lowest final test accuracy among the honest peers alive at the end",
    "max_accuracy": "highest final test accuracy among the honest peers alive at the end",
    "peers_alive": "peers running at the end",
    "consensus_distance": "mean L2 distance of the final models to their average",
    "max_consensus_distance": "largest L2 distance of a final model to the average",
    "merges": "merges summed over all peers",
    "bytes_received": "snapshot bytes fetched, summed over all peers",
    "duration_s": "seconds from the swarm being up to the end of the run",
    "rejected": "announcements and snapshots rejected, summed over all peers",
}
FLAGS = {"ledger_valid": "every peer's ledger verifies", "forks_detected": "authors every honest peer holds a fork proof of"}
_OPS = ("<=", ">=", "==", "!=", "<", ">")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")


def parse_duration(value: Any) -> float:
    """``30``, ``30s``, ``2m``, ``500ms``, ``1m30s`` -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 2m or 500ms")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must be >= 0")
        return float(value)
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"expected a duration like 30s, 2m or 500ms, got {text!r}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


Seconds = Annotated[float, BeforeValidator(parse_duration)]


def _partition_ok(v: str) -> str:
    if v == "iid" or re.fullmatch(r"dirichlet:\d*\.?\d+", v) or re.fullmatch(r"classes:[1-9]\d*", v):
        return v
    raise ValueError("expected iid, dirichlet:ALPHA (e.g. dirichlet:0.5) or classes:K (e.g. classes:2)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attack(_Strict):
    """What a hostile peer does to the snapshots it publishes.

    ``sign-flip`` publishes ``-scale * w``; ``noise`` adds Gaussian noise of std
    ``scale``; ``a-little-is-enough`` publishes the mean minus ``scale`` standard
    deviations of the honest snapshots it fetched; ``scaled`` publishes
    ``scale * w``; ``equivocate`` signs two different entries with one seq.
    ``sybils: N`` has N identities the peer makes up sign the same poisoned
    snapshots, their entries relayed through this one peer's connections.
    """

    mode: Literal[ATTACKS]
    scale: float | None = Field(default=None, description="strength; per mode default: 1, 1, 1, 10, unused")
    sybils: int = Field(default=0, ge=0, le=faults.MAX_SYBILS,
                        description="identities the peer makes up to sign its poisoned snapshots too, "
                                    "relayed through its own connections")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"mode": v} if isinstance(v, str) else v

    def to_fault(self) -> faults.Attack:
        """The attack as the peer's faults file carries it."""
        return faults.Attack(self.mode, self.scale, self.sybils)


class PeerSpec(_Strict):
    """One named peer and what sets it apart from the others."""

    name: str
    rule: str | None = None
    slow: float = Field(default=1.0, ge=1.0, description="compute slowdown factor (2 = half speed)")
    attack: Attack | None = None
    start: bool = Field(default=True, description="false: not started until a `join` event names it")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("expected a short lowercase name: letters, digits, - and _ (e.g. peer-3)")
        return v

    @field_validator("rule")
    @classmethod
    def _rule(cls, v: str | None) -> str | None:
        if v is not None and v not in RULES:
            raise ValueError(f"expected one of: {', '.join(RULES)}")
        return v


class Train(_Strict):
    max_steps: int = Field(default=0, ge=0, description="each peer stops after this many steps (0: at duration)")
    batch_size: int = Field(default=32, gt=0)
    learning_rate: float = Field(default=0.05, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    checkpoint_every: int = Field(default=25, gt=0)


class Merge(_Strict):
    every: int = Field(default=5, gt=0, description="merge every this many local steps")
    publish_every: int = Field(default=5, gt=0)
    publish_interval: Seconds = Field(default=0.0, ge=0, description="at most one snapshot per peer this often (0: every publish_every steps)")
    k: int = Field(default=3, gt=0)
    rule: str = "mean"
    weight_cap: float = Field(default=0.5, gt=0, le=1)
    wait: Seconds = Field(default=2.0, ge=0, description="bounded-staleness wait at a merge")
    encoding: Literal["float32", "float16", "int8"] = "float32"

    @field_validator("rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        if v not in RULES:
            raise ValueError(f"expected one of: {', '.join(RULES)}")
        return v


class Conditions(_Strict):
    """Added delay and loss, injected by learnae inside each receiving peer."""

    latency: Seconds = Field(default=0.0, ge=0)
    jitter: Seconds = Field(default=0.0, ge=0)
    loss: float = Field(default=0.0, ge=0, lt=1, description="share of messages lost, 0-1")


class Link(Conditions):
    between: tuple[str, str]


class Network(Conditions):
    links: list[Link] = Field(default_factory=list)
    topology: Literal["full", "ring"] | dict[str, list[str]] = "full"


class Event(_Strict):
    """One timeline entry: ``at`` plus exactly one action."""

    at: Seconds
    kill: list[str] | None = None
    restart: list[str] | None = None
    pause: list[str] | None = None
    resume: list[str] | None = None
    partition: list[list[str]] | None = None
    heal: bool | None = None
    join: list[str] | None = None
    leave: list[str] | None = None
    slow: dict[str, float] | None = Field(default=None, description="{peer: factor}; 1 restores full speed")
    attack: dict[str, Attack | None] | None = Field(default=None, description="{peer: mode}; null stops it")

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = dict(v)
            for key in ("kill", "restart", "pause", "resume", "join", "leave"):
                if isinstance(v.get(key), str):
                    v[key] = [v[key]]
        return v

    @model_validator(mode="after")
    def _one_action(self) -> Event:
        given = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            raise ValueError(f"each event needs `at` and exactly one of: {', '.join(ACTIONS)} "
                             f"(got {', '.join(given) or 'none'})")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    def names(self) -> list[str]:
        """Every peer name the event refers to."""
        value = getattr(self, self.action)
        if self.action == "partition":
            return [n for group in value for n in group]
        if isinstance(value, dict):
            return list(value)
        return list(value) if isinstance(value, list) else []


class Expectation(_Strict):
    """``metric OP number`` (a string in YAML) or ``{ledger_valid: bool}`` / ``{forks_detected: [names]}``."""

    metric: str
    op: str
    value: Any
    text: str

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*([a-z_]+)\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*", v)
            if not m:
                raise ValueError(f"expected `METRIC OP NUMBER`, e.g. `mean_accuracy >= 0.9`; got {v!r}")
            if m[1] not in METRICS:
                raise ValueError(f"unknown metric {m[1]!r}; expected one of: {', '.join(METRICS)}")
            return {"metric": m[1], "op": m[2], "value": float(m[3]), "text": v.strip()}
        if isinstance(v, dict) and len(v) == 1 and "metric" not in v:
            (key, value), = v.items()
            if key == "ledger_valid" and isinstance(value, bool):
                return {"metric": key, "op": "==", "value": value, "text": f"ledger_valid: {str(value).lower()}"}
            if key == "forks_detected" and isinstance(value, list) and all(isinstance(x, str) for x in value):
                return {"metric": key, "op": "==", "value": value, "text": f"forks_detected: [{', '.join(value)}]"}
            raise ValueError("expected `ledger_valid: true|false` or `forks_detected: [peer names]`")
        if isinstance(v, dict) and "metric" in v:
            return v
        raise ValueError("expected `METRIC OP NUMBER` (e.g. `mean_accuracy >= 0.9`), "
                         "`ledger_valid: true` or `forks_detected: [peer-7]`")


class Scenario(_Strict):
    """A whole scenario file."""

    name: str
    description: str = ""
    seed: int = 0
    duration: Seconds = Field(gt=0, description="longest run, from the swarm being up; peers stop at max_steps first")
    stop_at_accuracy: float | None = Field(default=None, gt=0, le=1,
                                           description="end early once the honest peers' mean accuracy reaches this")
    dataset: str = "digits"
    partition: str = "iid"
    model: str = "digits-mlp"
    peers: list[PeerSpec]
    train: Train = Field(default_factory=Train)
    merge: Merge = Field(default_factory=Merge)
    network: Network = Field(default_factory=Network)
    events: list[Event] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    sample_every: Seconds = Field(default=2.0, gt=0, description="how often peers evaluate on the test split")
    final_window: Seconds = Field(default=10.0, gt=0,
                                  description="expectations judge the median of each peer's samples over this "
                                              "last stretch of its run, not its last sample alone")

    @field_validator("partition")
    @classmethod
    def _partition(cls, v: str) -> str:
        return _partition_ok(v)

    @field_validator("peers", mode="before")
    @classmethod
    def _count(cls, v: Any) -> Any:
        allowed = "a peer count of 1 to 64 (peers: 6) or a list of peers (peers: [peer-0, {name: eve, slow: 2}])"
        if isinstance(v, int) and not isinstance(v, bool):
            if not 1 <= v <= 64:
                raise ValueError(f"expected a peer count of 1 to 64, got {v}")
            return [{"name": f"peer-{i}"} for i in range(v)]
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
        raise ValueError(f"expected {allowed}, got {v!r}")


def _references(s: Scenario) -> list[Problem]:
    """Every cross-field problem: repeated or unknown names, events after the end, peers that never start."""
    out: list[Problem] = []
    names = [p.name for p in s.peers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        out.append((("peers",), f"peer names must be unique; repeated: {', '.join(dupes)}"))
    if not any(p.start for p in s.peers):
        out.append((("peers",), "at least one peer must start at t=0 (start: true)"))
    known = set(names)
    joined = {n for ev in s.events if ev.action == "join" for n in ev.join}
    everyone = ", ".join(names + sorted(joined - known))
    for i, ev in enumerate(s.events):
        value = getattr(ev, ev.action)
        if ev.action == "partition":
            where = [((g, j), n) for g, group in enumerate(value) for j, n in enumerate(group)]
        elif isinstance(value, dict):
            where = [((n,), n) for n in value]
        elif isinstance(value, list):
            where = [((j,), n) for j, n in enumerate(value)]
        else:
            where = []
        for sub, n in where:
            if ev.action == "join":
                if not _NAME.fullmatch(n):
                    out.append((("events", i, "join", *sub), f"{n!r} is not a valid peer name (e.g. peer-8)"))
            elif n not in known | joined:
                out.append((("events", i, ev.action, *sub), f"unknown peer {n!r}; peers are: {everyone}"))
        if ev.at > s.duration:
            out.append((("events", i, "at"), f"{ev.at:g}s is after the end of the run (duration {s.duration:g}s)"))
    for i, p in enumerate(s.peers):
        if not p.start and p.name not in joined:
            out.append((("peers", i, "start"), f"{p.name} never starts: add a `join: [{p.name}]` event"))
    for i, link in enumerate(s.network.links):
        for j, n in enumerate(link.between):
            if n not in known | joined:
                out.append((("network", "links", i, "between", j), f"unknown peer {n!r}"))
    if isinstance(s.network.topology, dict):
        for n, neighbours in s.network.topology.items():
            for m in [n, *neighbours]:
                if m not in known | joined:
                    out.append((("network", "topology", n), f"unknown peer {m!r}"))
    for i, e in enumerate(s.expect):
        if e.metric == "forks_detected":
            for n in e.value:
                if n not in known | joined:
                    out.append((("expect", i, "forks_detected"), f"unknown peer {n!r}"))
    return out


def scenario_problems(s: Scenario) -> list[Problem]:
    """Every problem of a scenario that fits the schema: references first, then the timeline's
    impossible events (:mod:`learnae.scenario.lifecycle`), one per YAML path."""
    problems = _references(s)
    seen = {loc for loc, _ in problems}
    problems += [(loc, msg) for loc, msg in timeline_problems(s) if loc not in seen]
    return problems


class _PathError(ValueError):
    """A cross-field error that knows which YAML path it is about."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc = loc


# -- loading ---------------------------------------------------------------------------------

def _yaml_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[", "tagged")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict) -> str:
    msg = err.get("msg", "invalid")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if err.get("type") == "extra_forbidden":
        msg = "unknown key (check its spelling; docs/scenarios.md lists every key)"
    elif err.get("type") == "missing":
        msg = "required key is missing"
    return msg


def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds the union member's name (e.g. "Attack", "str", "list[...]") to the location
    return tuple(p for p in loc if isinstance(p, int) or not (p[:1].isupper() or "[" in p or p in ("str", "bool", "int", "float", "dict")))


class ScenarioProblems(ScenarioError):
    """A scenario file with one or more problems; :attr:`problems` holds each as ``(yaml.path, what)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        if len(problems) == 1:
            message = f"{source}: {problems[0][0]}: {problems[0][1]}"
        else:
            listed = " ".join(f"({n}) {where}: {what}" for n, (where, what) in enumerate(problems, 1))
            message = f"{source}: {len(problems)} problems: {listed}"
        super().__init__(message)
        self.problems = problems


def parse_scenario(data: Any, *, source: str = "scenario") -> Scenario:
    """Validate already-loaded YAML data.

    Every problem is reported, not only the first: all the schema's (types,
    ranges, unknown keys); once the file fits the schema, all cross-field ones
    (unknown peers, events after the end) and every event the timeline cannot
    carry out (:mod:`learnae.scenario.lifecycle`).

    Raises:
        ScenarioProblems: ``<source>: <yaml.path>: <what is wrong and expected>``, or with
            several, ``<source>: N problems: (1) <yaml.path>: <what> (2) ...`` (one line).
    """
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a YAML mapping with name, duration, peers, ... at the top level")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, _PathError):
                where, what = _yaml_path(ctx_error.loc), str(ctx_error)
            else:
                where, what = _yaml_path(_clean_loc(err["loc"])), _describe(err)
            problems.setdefault(where, what)  # a union reports each member's failure at one path: keep the first
        raise ScenarioProblems(source, list(problems.items())) from None
    found = scenario_problems(scenario)
    if found:
        raise ScenarioProblems(source, [(_yaml_path(loc), what) for loc, what in found])
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario YAML file.

    Raises:
        ScenarioError: the file is missing, is not YAML, or breaks the schema.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file (shipped ones are in scenarios/)") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(f"{path}: {where}not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    return parse_scenario(data, source=str(path))


# -- the resolved plan ------------------------------------------------------------------------

class PlannedPeer(BaseModel):
    """A peer as the run will start it."""

    model_config = ConfigDict(frozen=True)

    name: str
    index: int  # shard index
    start: bool  # started at t=0
    rule: str
    slow: float
    attack: Attack | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run of a scenario does, resolved from the file alone."""

    scenario: Scenario
    peers: tuple[PlannedPeer, ...]  # declared peers, then joiners in timeline order
    timeline: tuple[TimelineItem, ...]  # sorted by time (``at``, s)

    @property
    def shards(self) -> int:
        return len(self.peers)

    def peer(self, name: str) -> PlannedPeer:
        return next(p for p in self.peers if p.name == name)


def plan(s: Scenario) -> Plan:
    """Resolve peers (declared, then joined in timeline order) and sort the timeline by time."""
    peers = [PlannedPeer(name=p.name, index=i, start=p.start, rule=p.rule or s.merge.rule, slow=p.slow,
                         attack=p.attack) for i, p in enumerate(s.peers)]
    known = {p.name for p in peers}
    events = sorted(enumerate(s.events), key=lambda ie: (ie[1].at, ie[0]))  # stable for equal times
    for _, ev in events:
        if ev.action == "join":
            for n in ev.join:
                if n not in known:
                    known.add(n)
                    peers.append(PlannedPeer(name=n, index=len(peers), start=False, rule=s.merge.rule, slow=1.0,
                                             attack=None))
    return Plan(scenario=s, peers=tuple(peers), timeline=tuple(_item(ev) for _, ev in events))


def _item(ev: Event) -> TimelineItem:
    """A validated event as a typed timeline item."""
    value = getattr(ev, ev.action)
    if ev.action == "partition":
        return PartitionAction(ev.at, tuple(tuple(g) for g in value))
    if ev.action == "heal":
        return HealAction(ev.at)
    if ev.action == "slow":
        return SlowAction(ev.at, {n: float(f) for n, f in value.items()})
    if ev.action == "attack":
        return AttackAction(ev.at, {n: a.to_fault() if a else None for n, a in value.items()})
    return PeerAction(ev.at, ev.action, tuple(value))


def peer_flags(p: Plan, peer: PlannedPeer) -> list[str]:
    """The ``learnae peer start`` flags that make ``peer`` train as the scenario says
    (data, shard, model, training and merge settings), for the runner and for compose."""
    s, t, m = p.scenario, p.scenario.train, p.scenario.merge
    return [
        "--dataset", s.dataset, "--partition", s.partition, "--shard", f"{peer.index}/{p.shards}",
        "--model", s.model, "--seed", str(s.seed),
        "--max-steps", str(t.max_steps), "--batch-size", str(t.batch_size), "--learning-rate", str(t.learning_rate),
        "--optimizer", t.optimizer, "--momentum", str(t.momentum), "--checkpoint-every", str(t.checkpoint_every),
        "--merge-every", str(m.every), "--publish-every", str(m.publish_every),
        "--publish-interval-s", str(m.publish_interval), "--merge-k", str(m.k),
        "--rule", peer.rule, "--weight-cap", str(m.weight_cap), "--merge-wait-s", str(m.wait),
        "--snapshot-encoding", m.encoding, "--status-every-s", str(s.sample_every),
    ]
