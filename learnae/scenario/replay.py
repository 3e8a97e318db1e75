"""A scenario rebuilt from a finished run's ledger: ``learnae scenario from-ledger``.

A ledger records when every peer joined, left and published, so the *timeline*
of a run can be read back from it and replayed. The ledger records nothing about
data, model or network, so those come from ``--like`` (another scenario) or the
defaults. The rules (docs/scenario-report.md says the same for users):

* Peers are named ``peer-0``, ``peer-1``, ... in order of first ``join``
  (an author with no ``join`` in the file: its first entry). Each name's peer
  ID is in the ``description`` line.
* The initial group is every peer whose first join comes no later than the
  swarm's first ``snapshot`` entry: peers hold their first step until the
  others are present (``--min-peers``), so nobody publishes before the group
  is up. Every later peer is a late joiner: ``start: false`` and a ``join``
  event at its first join.
* ``t = 0`` is the last first join of the initial group: when the swarm was up,
  the same origin report.json uses. (The runner starts one peer first and the
  rest once it is up, so the earliest join can be a whole start-up earlier.)
* A later ``join`` right after a ``leave`` entry: ``leave`` at the leave, ``join``
  at the join. A later ``join`` with no ``leave`` before it was a crash
  (``kill -9`` writes nothing): ``kill`` at the author's last entry before it,
  ``restart`` at the join.
* A chain's last entry: a ``leave`` with reason ``done`` (``max_steps``) or any
  last entry within :data:`END_WINDOW_S` of the end of the ledger is the run
  ending, not an event. Earlier, a last ``leave`` is a ``leave`` event and any
  other last entry a ``kill``.
* ``duration`` is the last entry's time, rounded up, plus :data:`DURATION_MARGIN_S`.

Times are when entries were signed, so a replayed ``kill`` falls at most one
publish interval early and a ``restart`` or ``join`` one peer start-up late.
Pauses, partitions, slowdowns and attacks leave no trace a replay could trust.

Every block is checked against its CID and every entry's signature is verified
(:func:`~learnae.ledger.entry.decode_entry`); bad ones are skipped and counted.

Example:
    >>> # write_replay(Path("out/ledger.car"), Path("replay.yaml"), like=Path("scenarios/churn.yaml"))
    >>> # '8 peers, 2 events (kill, restart) over 95 s'
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import yaml

from learnae.errors import InvalidEntryError, UserError
from learnae.ledger.car import CarFormatError, read_car
from learnae.ledger.entry import Entry, decode_entry
from learnae.ledger.verify import block_cid_ok
from learnae.scenario.schema import FLAGS, Scenario, load_scenario, parse_scenario

__all__ = ["END_WINDOW_S", "DURATION_MARGIN_S", "read_entries", "scenario_from_ledger",
           "write_replay"]

END_WINDOW_S = 10.0  # a chain ending this close to the ledger's end ended with the run
DURATION_MARGIN_S = 10.0
_ORDER = {"kill": 0, "leave": 1, "restart": 2, "join": 3}  # a kill and restart at one time: kill first
_DAG_CBOR = 0x71
# without --like: what the ledger cannot say takes the scenario defaults
_DEFAULTS = {"dataset": "digits", "partition": "iid", "model": "digits-mlp", "expect": [{"ledger_valid": True}]}


def read_entries(car: Path) -> tuple[list[Entry], int]:
    """Every valid, signature-checked entry of a CAR file, and how many blocks were skipped.

    Non-entry blocks (snapshot chunks an export may carry) are ignored, not
    counted. A block that fails its CID, decoding or signature check is skipped
    and counted; a malformed section ends the read there (the lengths after it
    cannot be trusted) and counts as one skipped block.

    Raises:
        UserError: the file is missing or unreadable, or is not a CARv1 file.
    """
    car = Path(car)
    try:
        data = car.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{car}: no such file; pass the ledger.car a scenario run wrote "
                        f"(or export one with `learnae ledger export`)") from None
    except OSError as exc:
        raise UserError(f"{car}: cannot read it ({exc.strerror})") from None
    _, sections = read_car(data, name=str(car))
    entries: dict[bytes, Entry] = {}
    skipped = 0
    try:
        for cid, block in sections:
            if cid.codec.code != _DAG_CBOR:
                continue
            if not block_cid_ok(cid, block):
                skipped += 1
                continue
            try:
                entry = decode_entry(block)  # verifies the signature
            except InvalidEntryError:
                skipped += 1
                continue
            entries[bytes(cid.digest)] = entry
    except CarFormatError:
        skipped += 1
    return list(entries.values()), skipped


def _chains(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    chains: dict[str, list[Entry]] = {}
    for e in entries:
        chains.setdefault(e.author, []).append(e)
    for chain in chains.values():
        chain.sort(key=lambda e: (e.ts, e.seq))
    return chains


def _arrival_ms(chain: list[Entry]) -> int:
    return next((e.ts for e in chain if e.kind == "join"), chain[0].ts)


def _in_join_order(chains: dict[str, list[Entry]]) -> list[str]:
    return sorted(chains, key=lambda a: (_arrival_ms(chains[a]), a))


def _timeline(chain: list[Entry], name: str, *, t0: int, end: int, late: bool) -> list[tuple[float, str, str]]:
    """(t seconds, action, peer name) for one author's chain, per the module's rules."""
    def t(ms: int) -> float:
        return max(0.0, round((ms - t0) / 1000, 1))

    out = []
    first_join = next((i for i, e in enumerate(chain) if e.kind == "join"), None)
    if late:
        out.append((t(_arrival_ms(chain)), "join", name))
    for i, e in enumerate(chain):
        if e.kind != "join" or i == first_join:
            continue
        before = chain[i - 1]
        if before.kind == "leave":
            out += [(t(before.ts), "leave", name), (t(e.ts), "join", name)]
        else:
            out += [(t(before.ts), "kill", name), (t(e.ts), "restart", name)]
    last = chain[-1]
    if last.ts < end - END_WINDOW_S * 1000 and not (last.kind == "leave" and last.body.get("reason") == "done"):
        out.append((t(last.ts), "leave" if last.kind == "leave" else "kill", name))
    return out


def _settings(like: Scenario, names: set[str]) -> tuple[dict, list[str]]:
    """What to copy from ``like``, minus the parts that name peers this replay does not have."""
    dumped = like.model_dump(mode="json")
    out = {k: dumped[k] for k in ("seed", "dataset", "partition", "model", "train", "merge", "network",
                                  "sample_every", "final_window")}
    dropped = []
    network = out["network"]
    links = [link for link in network["links"] if set(link["between"]) <= names]
    if len(links) < len(network["links"]):
        dropped.append(f"{len(network['links']) - len(links)} network link(s)")
    network["links"] = links
    topo = network["topology"]
    if isinstance(topo, dict) and not all({n, *m} <= names for n, m in topo.items()):
        network["topology"] = "full"
        dropped.append("the network topology")
    expect = []
    for e in like.expect:
        if e.metric == "forks_detected" and not set(e.value) <= names:
            dropped.append(f"expect `{e.text}`")
        elif e.metric in FLAGS:
            expect.append({e.metric: e.value})
        else:
            expect.append(e.text)
    out["expect"] = expect
    return out, dropped


def scenario_from_ledger(entries: Iterable[Entry], *, like: Scenario | None = None, source: str = "a ledger") -> dict:
    """The scenario (plain YAML data) whose timeline replays the run these entries record.

    Args:
        entries: verified ledger entries, any order (duplicates are fine).
        like: a scenario to copy dataset, partition, model, train, merge,
            network, expect, seed and sample_every from; without it the
            defaults (digits, iid, digits-mlp) and ``expect: [ledger_valid: true]``.
        source: named in the description, e.g. the CAR file's path.

    Returns:
        A dict that :func:`~learnae.scenario.schema.parse_scenario` accepts.

    Raises:
        UserError: there are no entries.

    Example:
        >>> # data = scenario_from_ledger(read_entries(Path("ledger.car"))[0])
        >>> # data["events"]  -> [{'at': 29.6, 'kill': ['peer-2']}, {'at': 41.0, 'restart': ['peer-2']}]
    """
    chains = _chains(entries)
    if not chains:
        raise UserError(f"{source}: no valid ledger entries to replay")
    authors = _in_join_order(chains)
    end = max(e.ts for chain in chains.values() for e in chain)
    names = {a: f"peer-{i}" for i, a in enumerate(authors)}
    first_snapshot = min((e.ts for chain in chains.values() for e in chain if e.kind == "snapshot"), default=end)
    # authors[0] is always initial: whoever published first had arrived by then
    late = {a for a in authors[1:] if _arrival_ms(chains[a]) > first_snapshot}
    t0 = max(_arrival_ms(chains[a]) for a in authors if a not in late)
    timeline = []
    for a in authors:
        timeline += _timeline(chains[a], names[a], t0=t0, end=end, late=a in late)
    timeline.sort(key=lambda x: (x[0], _ORDER[x[1]], int(x[2].split("-")[1])))
    events: list[dict] = []
    for at, action, name in timeline:  # one event per (time, action), listing its peers
        if events and events[-1]["at"] == at and action in events[-1]:
            events[-1][action].append(name)
        else:
            events.append({"at": at, action: [name]})
    duration = math.ceil((end - t0) / 1000) + DURATION_MARGIN_S
    settings, dropped = _settings(like, set(names.values())) if like is not None else (copy.deepcopy(_DEFAULTS), [])
    description = (f"Replayed from {source} by `learnae scenario from-ledger` (peers in order of first join): "
                   + "; ".join(f"{names[a]}={a}" for a in authors))
    if dropped:
        description += f". Not copied from {like.name} (they name peers this replay lacks): {', '.join(dropped)}"
    data: dict = {"name": f"replay-{like.name}"[:31] if like is not None else "replay", "description": description}
    data.update({k: settings[k] for k in ("seed",) if k in settings})
    data["duration"] = int(duration) if duration == int(duration) else duration
    data.update({k: settings[k] for k in ("dataset", "partition", "model")})
    data["peers"] = [names[a] if a not in late else {"name": names[a], "start": False} for a in authors]
    data.update({k: settings[k] for k in ("train", "merge", "network", "sample_every") if k in settings})
    data["events"] = events
    data["expect"] = settings["expect"]
    return data


def _summary(data: dict, skipped: int) -> str:
    counts = Counter(next(k for k in ev if k != "at") for ev in data["events"])
    kinds = ", ".join(a if n == 1 else f"{n} {a}" for a, n in counts.items())
    n = len(data["events"])
    text = f"{len(data['peers'])} peers, {n} event{'s' if n != 1 else ''}"
    text += f" ({kinds}) over {data['duration']:g} s" if n else f" over {data['duration']:g} s"
    if skipped:
        text += f"; skipped {skipped} bad block{'s' if skipped != 1 else ''}"
    return text


def write_replay(car: Path, output: Path, *, like: Path | None = None) -> str:
    """Read ``car``, write the replay scenario to ``output``; return a one-line summary.

    The YAML is validated with :func:`~learnae.scenario.schema.parse_scenario`
    before it is written, and starts with comments naming each peer's peer ID.

    Returns:
        e.g. ``"8 peers, 3 events (kill, restart, join) over 95 s; skipped 1 bad block"``.

    Raises:
        UserError: the CAR is missing, not a CAR, or holds no valid entry;
            ``like`` does not load (:class:`~learnae.errors.ScenarioError`);
            ``output`` cannot be written.

    Example:
        >>> # write_replay(Path("out/ledger.car"), Path("replay.yaml"), like=None)
    """
    car, output = Path(car), Path(output)
    base = load_scenario(like) if like is not None else None
    entries, skipped = read_entries(car)
    data = scenario_from_ledger(entries, like=base, source=str(car))
    parse_scenario(data, source=str(output))  # never write a file `scenario run` would refuse
    authors = _in_join_order(_chains(entries))
    header = [f"# Replayed from {car} by `learnae scenario from-ledger` ({_summary(data, skipped)}).",
              "# Timeline rules: docs/scenario-report.md. Peers, in order of first join:"]
    header += [f"#   peer-{i}: {a}" for i, a in enumerate(authors)]
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
    text = "\n".join(header) + "\n" + body
    try:
        output.write_text(text)
    except OSError as exc:
        raise UserError(f"{output}: cannot write the scenario ({exc.strerror})") from None
    return _summary(data, skipped)
