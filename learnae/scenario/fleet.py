"""The peers of a scenario run: their processes, and the faults each one is told.

A :class:`Fleet` holds one :class:`RunPeer` per planned peer, across restarts.
It starts every peer as a real ``learnae peer start`` process on 127.0.0.1
(own data dir under ``OUT/peers/<name>``, any free port, ``--faults
<data-dir>/faults.json``), signals, stops and kills them, and keeps each
peer's faults file saying what the scenario injects right now: network
latency, jitter and loss (per link too), the topology, the current partition,
slowdowns and attacks. The files are :class:`~learnae.peer.faults.FaultPlan`
values written with :func:`~learnae.peer.faults.write_fault_plan`; the peers
re-read them when they change.

Example:
    >>> fleet = Fleet(plan, Path("out/peers"), env={})
    >>> fleet.start_initial()            # every t=0 peer, then waits until they train
    >>> fleet.partition([["peer-0"], ["peer-1", "peer-2"]])
    >>> fleet.stop_all()
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from learnae.identity import Identity
from learnae.peer.faults import Attack, Conditions, FaultPlan, write_fault_plan
from learnae.scenario.process import PeerProcess, PeerStartError
from learnae.scenario.schema import Plan, PlannedPeer, peer_flags

__all__ = ["RunPeer", "Fleet", "SIGNALS", "STOP_TIMEOUT_S", "READY_TIMEOUT_S"]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0  # a graceful leave of every peer, before SIGKILL
READY_TIMEOUT_S = 180.0  # TensorFlow import and model build of many peers on a loaded machine
TRAINING_TIMEOUT_S = 60.0  # then the initial peers gather and take their first steps

# action -> (signals sent in order, the peer's state after); a leaving peer is woken first if paused
SIGNALS = {
    "kill": ((signal.SIGKILL,), "killed"),
    "pause": ((signal.SIGSTOP,), "paused"),
    "resume": ((signal.SIGCONT,), "running"),
    "leave": ((signal.SIGCONT, signal.SIGINT), "left"),
}


@dataclass
class RunPeer:
    """One planned peer and its process, across restarts (mutable: the run changes it)."""

    plan: PlannedPeer
    data_dir: Path
    proc: PeerProcess | None = None
    peer_id: str | None = None
    addr: str | None = None  # its dial multiaddr, once printed
    state: str = "never-started"  # see docs/scenario-report.md, peers.<name>.state
    starts: int = 0
    ready: bool = False
    attack: Attack | None = None  # its attack right now
    slow: float = 1.0  # its compute slowdown factor right now
    attacked: bool = False  # attacked at some point of the run: not honest
    returncode: int | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    @property
    def faults_path(self) -> Path:
        return self.data_dir / "faults.json"


class Fleet:
    """Every peer process of one run; see the module docstring."""

    def __init__(self, plan: Plan, root: Path, *, env: dict | None = None):
        self.plan = plan
        self.env = dict(env or {})
        self.peers: dict[str, RunPeer] = {}
        for p in plan.peers:
            attack = p.attack.to_fault() if p.attack else None
            self.peers[p.name] = RunPeer(p, Path(root) / p.name, attack=attack, slow=p.slow,
                                         attacked=attack is not None)
        self.groups: list[list[str]] | None = None  # the current partition

    # -- starting ---------------------------------------------------------------------------

    def _args(self, p: RunPeer, *, min_peers: int, bootstrap: list[str], catch_up: bool = True) -> list[str]:
        args = [*peer_flags(self.plan, p.plan), "--swarm", swarm_name(self.plan), "--min-peers", str(min_peers),
                "--faults", str(p.faults_path)]
        if not catch_up:
            args += ["--catch-up-s", "0"]
        for b in bootstrap:
            args += ["--bootstrap", b]
        return args

    def launch(self, p: RunPeer, *, min_peers: int, bootstrap: list[str], catch_up: bool = True) -> None:
        """Start ``p``'s process (its key and faults file first) without waiting for its address.

        Its key is made here, so every faults file can name it before it dials anyone (a
        peer prints its address only once it has joined, and a neighbour whose topology
        cannot name it yet would refuse its connections meanwhile).
        """
        p.data_dir.mkdir(parents=True, exist_ok=True)
        if p.peer_id is None:
            p.peer_id = Identity.load_or_create(p.data_dir).peer_id
            self.write_all_faults()
        self.write_faults(p)
        p.proc = PeerProcess.launch(p.data_dir, self._args(p, min_peers=min_peers, bootstrap=bootstrap,
                                                            catch_up=catch_up), env=self.env)
        p.ready, p.addr, p.state = False, None, "starting"
        p.starts += 1

    def poll_ready(self, p: RunPeer) -> bool:
        """Whether ``p`` printed its address (never blocks).

        Raises:
            PeerStartError: its process exited first.
        """
        if p.ready or p.proc is None:
            return p.ready
        addr = p.proc.poll_ready()
        if addr:
            p.addr, p.peer_id, p.ready, p.state = addr, addr.rsplit("/p2p/", 1)[1], True, "running"
            self.write_all_faults()  # its ID is known now: partitions and links can name it
        elif not p.proc.alive:
            p.state, p.returncode = "failed", p.proc.proc.returncode
            raise PeerStartError(f"{p.name} did not start (exit {p.returncode}): {p.proc.log_tail(1500)}")
        return p.ready

    def wait_ready(self, peers: list[RunPeer], timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until every one of ``peers`` printed its address.

        Raises:
            PeerStartError: one exited, or they took longer than ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while not all(self.poll_ready(p) for p in peers):
            if time.monotonic() > deadline:
                slow = [p.name for p in peers if not p.ready]
                raise PeerStartError(f"peers {', '.join(slow)} printed no address within {timeout_s:.0f} s")
            time.sleep(0.1)

    def start_initial(self) -> None:
        """Start the peers planned for t = 0 (the first one is everyone's bootstrap); wait until
        all of them train, so that t = 0 is when the swarm is up whatever the machine's load.

        They start together from the same seed, so none waits for another's snapshot to
        catch up from (``--catch-up-s 0``): a partition a few seconds in would otherwise
        hold a peer at its start until the heal.
        """
        initial = [p for p in self.peers.values() if p.plan.start]
        first, rest = initial[0], initial[1:]
        wait = len(initial) - 1
        self.launch(first, min_peers=wait, bootstrap=[])
        self.wait_ready([first])
        for p in rest:
            allowed = self.neighbours(p.name)
            bootstrap = [first.addr] if allowed is None or first.name in allowed else []
            self.launch(p, min_peers=wait, bootstrap=bootstrap, catch_up=False)
        self.wait_ready(rest)
        self.wait_training(initial)

    def wait_training(self, peers: list[RunPeer], timeout_s: float = TRAINING_TIMEOUT_S) -> None:
        """Wait (bounded: a topology that keeps a peer from gathering must not hang the run)
        until each of ``peers`` that is still alive recorded a training step."""
        deadline = time.monotonic() + timeout_s
        waiting = list(peers)
        while waiting:
            waiting = [p for p in waiting if p.proc is not None and p.proc.alive
                       and not any(r.step > 0 for r in p.proc.records())]
            if waiting and time.monotonic() > deadline:
                log.warning("peers %s took no training step within %.0f s; the timeline starts anyway",
                            ", ".join(p.name for p in waiting), timeout_s)
                return
            time.sleep(0.2)

    def _bootstrap_for(self, p: RunPeer) -> list[str]:
        allowed = self.neighbours(p.name)
        live = [q for q in self.peers.values() if q is not p and q.alive and q.ready and q.state == "running"
                and (allowed is None or q.name in allowed) and not self.blocked(p.name, q.name)]
        return [q.addr for q in live[:2]]

    # -- what the timeline does -------------------------------------------------------------

    def signal(self, names: tuple[str, ...], action: str) -> list[str]:
        """Carry out a kill, pause, resume or leave; return the problems (peers not running)."""
        signals, state = SIGNALS[action]
        problems = []
        for n in names:
            p = self.peers[n]
            if not p.alive:
                problems.append(f"{n} was not running")
                continue
            for signum in signals:
                p.proc.signal(signum)
            if signal.SIGKILL in signals:
                p.proc.proc.wait()
            p.state = state
        return problems

    def start_again(self, names: tuple[str, ...]) -> list[str]:
        """Restart or join peers (a restart keeps its data dir, so it resumes from its checkpoint),
        bootstrapping from live peers they may reach; return the problems (peers already running)."""
        problems = []
        for n in names:
            p = self.peers[n]
            if p.alive:
                problems.append(f"{n} is already running")
                continue
            self.launch(p, min_peers=1, bootstrap=self._bootstrap_for(p))
        return problems

    def partition(self, groups: list[list[str]] | None) -> None:
        """Cut the peers into ``groups`` (None heals); peers in no group reach everyone."""
        self.groups = None if groups is None else [list(g) for g in groups]
        self.write_all_faults()

    def set_slow(self, factors: dict[str, float]) -> None:
        for n, factor in factors.items():
            self.peers[n].slow = max(1.0, float(factor))
        self.write_all_faults()

    def set_attacks(self, modes: dict[str, Attack | None]) -> None:
        for n, attack in modes.items():
            self.peers[n].attack = attack
            self.peers[n].attacked |= attack is not None
        self.write_all_faults()

    def reap(self) -> list[RunPeer]:
        """Note peers whose process exited on its own; return those that failed (non-zero exit)."""
        failed = []
        for p in self.peers.values():
            if p.proc is not None and not p.ready and p.alive:
                self.poll_ready(p)
            if p.proc is not None and not p.alive and p.state in ("running", "starting", "paused"):
                p.returncode = p.proc.proc.returncode
                p.state = "finished" if p.returncode == 0 else "failed"
                if p.state == "failed":
                    failed.append(p)
        return failed

    # -- stopping ---------------------------------------------------------------------------

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Every running peer leaves gracefully (a paused one is resumed first); SIGKILL after ``timeout_s``."""
        live = [p for p in self.peers.values() if p.alive]
        for p in live:
            p.proc.signal(signal.SIGCONT)
            p.proc.signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for p in live:
            try:
                p.proc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.proc.kill()
            p.returncode = p.proc.proc.returncode
            if p.state in ("running", "paused", "starting"):
                p.state = "stopped" if p.returncode == 0 else "failed"
        for p in self.peers.values():
            if p.proc is not None and p.state == "left":
                p.returncode = p.proc.proc.wait()

    def kill_all(self) -> None:
        """SIGKILL every process still running (on errors and Ctrl-C)."""
        for p in self.peers.values():
            if p.proc is not None and p.proc.alive:
                p.proc.kill()

    # -- faults files -----------------------------------------------------------------------

    def neighbours(self, name: str) -> set[str] | None:
        """The peers ``name`` may connect to under the topology (None: everyone)."""
        topo = self.plan.scenario.network.topology
        if topo == "full":
            return None
        names = list(self.peers)
        if topo == "ring":
            i = names.index(name)
            return {names[(i - 1) % len(names)], names[(i + 1) % len(names)]} - {name}
        return set(topo.get(name, [])) | {n for n, ns in topo.items() if name in ns}

    def blocked(self, a: str, b: str) -> bool:
        """Whether the current partition puts ``a`` and ``b`` in different groups."""
        if self.groups is None:
            return False
        ga = next((i for i, g in enumerate(self.groups) if a in g), None)
        gb = next((i for i, g in enumerate(self.groups) if b in g), None)
        return ga is not None and gb is not None and ga != gb

    def fault_plan(self, p: RunPeer) -> FaultPlan:
        """What ``p`` must be told now; peers whose ID is not known yet cannot be named."""
        net = self.plan.scenario.network
        ids = {q.name: q.peer_id for q in self.peers.values() if q.peer_id}
        links = {}
        for link in net.links:
            if p.name in link.between:
                other = link.between[1] if link.between[0] == p.name else link.between[0]
                if other in ids:
                    links[ids[other]] = Conditions(link.latency, link.jitter, link.loss)
        neighbours = self.neighbours(p.name)
        return FaultPlan(
            blocked=frozenset(ids[n] for n in ids if n != p.name and self.blocked(p.name, n)),
            neighbours=None if neighbours is None else frozenset(ids[n] for n in neighbours if n in ids),
            default=Conditions(net.latency, net.jitter, net.loss),
            links=links, slow=p.slow, attack=p.attack,
        )

    def write_faults(self, p: RunPeer) -> None:
        p.data_dir.mkdir(parents=True, exist_ok=True)
        write_fault_plan(p.faults_path, self.fault_plan(p))

    def write_all_faults(self) -> None:
        """Rewrite the faults file of every peer started so far (unchanged files are left alone)."""
        for p in self.peers.values():
            if p.starts:
                self.write_faults(p)


def swarm_name(plan: Plan) -> str:
    """One swarm name per scenario: two runs side by side never mix."""
    return f"scenario-{plan.scenario.name}"
