"""``learnae scenario run``: real peer processes, a timeline of faults, a report.

The runner starts every peer of the plan as a real ``learnae peer start``
process on 127.0.0.1 (own data dir under ``OUT/peers/<name>``, any free port,
``--faults OUT/peers/<name>/faults.json``), the first one as everybody's
bootstrap peer. t = 0 is the moment every peer started at t = 0 printed its
address. Then, every quarter second, it fires the events that are due:

* ``kill`` (SIGKILL), ``pause``/``resume`` (SIGSTOP/SIGCONT), ``leave`` (SIGINT:
  a graceful leave) act on the processes;
* ``restart`` and ``join`` start a process (same data dir for a restart, so it
  resumes from its checkpoint) bootstrapping from a live peer;
* ``partition``/``heal``, ``slow`` and ``attack`` rewrite the peers' faults files,
  which the peers re-read (see :mod:`learnae.peer.faults`); network latency, jitter
  and loss are in those files from the start.

Every peer evaluates its model on the held-out test split every ``sample_every``
seconds (its metrics.jsonl); the runner also reads the peers' checkpoints to
measure how far apart their models are (the consensus distance). The run ends at
``duration``, when every peer has stopped at ``max_steps``, or when the honest
peers' mean accuracy reaches ``stop_at_accuracy``; then every peer still running
leaves gracefully, every ledger is verified, and the report is written
(docs/scenario-report.md). Every process started is killed on any error and on
Ctrl-C.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from learnae.errors import UserError
from learnae.fsutil import atomic_write
from learnae.scenario.process import PeerProcess, PeerStartError, read_metrics
from learnae.scenario.schema import Plan, PlannedPeer, Scenario, peer_flags, plan as make_plan

__all__ = ["run_scenario", "Runner", "partition_summary", "evaluate_expectations"]

log = logging.getLogger(__name__)

TICK_S = 0.25
STOP_TIMEOUT_S = 20.0


@dataclass
class _Peer:
    """One planned peer and its process, across restarts."""

    plan: PlannedPeer
    data_dir: Path
    proc: PeerProcess | None = None
    peer_id: str | None = None
    addr: str | None = None
    state: str = "never-started"
    starts: int = 0
    ready: bool = False
    attack: dict | None = None
    slow: float = 1.0
    attacked: bool = False  # attacked at some point of the run
    returncode: int | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive


@dataclass
class _Sample:
    t: float
    distance: float
    max_distance: float
    peers: int


@dataclass
class Runner:
    """Drives one run of a plan; see the module docstring."""

    plan: Plan
    out: Path
    source: str | None = None
    progress: bool = True
    env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.plan.scenario
        self.s: Scenario = s
        self.peers = {p.name: _Peer(p, self.out / "peers" / p.name, attack=_attack(p.attack), slow=p.slow,
                                    attacked=p.attack is not None) for p in self.plan.peers}
        self.groups: list[list[str]] | None = None
        self.events: list[dict] = []
        self.consensus: list[_Sample] = []
        self.t0: float | None = None
        self.started_at: float | None = None
        self.end_reason = "duration"

    # -- process control ------------------------------------------------------------------

    def _args(self, p: _Peer, *, min_peers: int, bootstrap: list[str]) -> list[str]:
        args = [*peer_flags(self.plan, p.plan), "--swarm", _swarm_name(self.s), "--min-peers", str(min_peers),
                "--faults", str(p.data_dir / "faults.json")]
        for b in bootstrap:
            args += ["--bootstrap", b]
        return args

    def _launch(self, p: _Peer, *, min_peers: int, bootstrap: list[str]) -> None:
        p.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_faults(p)
        p.proc = PeerProcess.launch(p.data_dir, self._args(p, min_peers=min_peers, bootstrap=bootstrap),
                                    env=self.env)
        p.ready, p.addr, p.state = False, None, "starting"
        p.starts += 1

    def _poll_ready(self, p: _Peer) -> bool:
        if p.ready or p.proc is None:
            return p.ready
        addr = p.proc.poll_ready()
        if addr:
            p.addr, p.peer_id, p.ready, p.state = addr, addr.rsplit("/p2p/", 1)[1], True, "running"
            self._write_all_faults()  # its ID is known now: partitions and links can name it
        elif not p.proc.alive:
            p.state, p.returncode = "failed", p.proc.proc.returncode
            raise PeerStartError(f"{p.plan.name} did not start (exit {p.returncode}): {p.proc.log_tail(1500)}")
        return p.ready

    def _bootstrap_for(self, p: _Peer) -> list[str]:
        allowed = self._neighbours(p.plan.name)
        live = [q for q in self.peers.values() if q is not p and q.alive and q.ready and q.state == "running"
                and (allowed is None or q.plan.name in allowed) and not self._blocked(p.plan.name, q.plan.name)]
        return [q.addr for q in live[:2]]

    def start(self) -> None:
        """Start the peers planned for t = 0 and wait for all of them to print their address."""
        initial = [p for p in self.peers.values() if p.plan.start]
        first, rest = initial[0], initial[1:]
        wait = len(initial) - 1
        self._launch(first, min_peers=wait, bootstrap=[])
        self._wait_ready([first])
        for p in rest:
            self._launch(p, min_peers=wait, bootstrap=self._initial_bootstrap(p, first))
        self._wait_ready(rest)
        self.t0 = time.monotonic()
        self.started_at = time.time()

    def _initial_bootstrap(self, p: _Peer, first: _Peer) -> list[str]:
        allowed = self._neighbours(p.plan.name)
        return [first.addr] if allowed is None or first.plan.name in allowed else []

    def _wait_ready(self, peers: list[_Peer], timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(self._poll_ready(p) for p in peers):
            if time.monotonic() > deadline:
                slow = [p.plan.name for p in peers if not p.ready]
                raise PeerStartError(f"peers {', '.join(slow)} printed no address within {timeout_s:.0f} s")
            time.sleep(0.1)

    def now(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    # -- faults files ---------------------------------------------------------------------

    def _neighbours(self, name: str) -> set[str] | None:
        topo = self.s.network.topology
        if topo == "full":
            return None
        names = [p.plan.name for p in self.peers.values()]
        if topo == "ring":
            i = names.index(name)
            return {names[(i - 1) % len(names)], names[(i + 1) % len(names)]} - {name}
        out = set(topo.get(name, []))
        out |= {n for n, ns in topo.items() if name in ns}
        return out

    def _blocked(self, a: str, b: str) -> bool:
        if self.groups is None:
            return False
        ga = next((i for i, g in enumerate(self.groups) if a in g), None)
        gb = next((i for i, g in enumerate(self.groups) if b in g), None)
        return ga is not None and gb is not None and ga != gb

    def _write_faults(self, p: _Peer) -> None:
        net = self.s.network
        name = p.plan.name
        ids = {q.plan.name: q.peer_id for q in self.peers.values() if q.peer_id}
        neighbours = self._neighbours(name)
        links = {}
        for link in net.links:
            if name in link.between:
                other = link.between[1] if link.between[0] == name else link.between[0]
                if other in ids:
                    links[ids[other]] = {"latency_s": link.latency, "jitter_s": link.jitter, "loss": link.loss}
        plan = {
            "blocked": sorted(ids[n] for n in ids if n != name and self._blocked(name, n)),
            "neighbours": None if neighbours is None else sorted(ids[n] for n in neighbours if n in ids),
            "latency_s": net.latency, "jitter_s": net.jitter, "loss": net.loss,
            "links": links, "slow": p.slow, "attack": p.attack,
        }
        p.data_dir.mkdir(parents=True, exist_ok=True)
        path = p.data_dir / "faults.json"
        text = json.dumps(plan, indent=1).encode()
        if not path.exists() or path.read_bytes() != text:
            atomic_write(path, text)

    def _write_all_faults(self) -> None:
        for p in self.peers.values():
            if p.starts:
                self._write_faults(p)

    # -- the timeline -----------------------------------------------------------------------

    def fire(self, item: dict) -> dict:
        """Carry out one timeline item now; return the event record."""
        action = item["action"]
        record = {"t": round(self.now(), 3), **item, "ok": True, "detail": ""}
        problems = []
        names = item.get("peers") or []
        if action in _SIGNALS:  # kill, pause, resume, leave: signals to running processes
            signals, state = _SIGNALS[action]
            for n in names:
                p = self.peers[n]
                if not p.alive:
                    problems.append(f"{n} was not running")
                    continue
                for signum in signals:
                    p.proc.signal(signum)
                if signum == signal.SIGKILL:
                    p.proc.proc.wait()
                p.state = state
        elif action in ("restart", "join"):
            for n in names:
                p = self.peers[n]
                if p.alive:
                    problems.append(f"{n} is already running")
                    continue
                self._launch(p, min_peers=1, bootstrap=self._bootstrap_for(p))
        elif action == "partition":
            self.groups = [list(g) for g in item["groups"]]
            self._write_all_faults()
        elif action == "heal":
            self.groups = None
            self._write_all_faults()
        elif action == "slow":
            for n, factor in item["factors"].items():
                self.peers[n].slow = max(1.0, float(factor))
            self._write_all_faults()
        elif action == "attack":
            for n, mode in item["modes"].items():
                self.peers[n].attack = _attack_dict(mode)
                self.peers[n].attacked |= mode is not None
            self._write_all_faults()
        if problems:
            record["ok"], record["detail"] = False, "; ".join(problems)
        self.events.append(record)
        log.info("t=%.1fs %s %s", record["t"], action, record["detail"])
        return record

    # -- measurement --------------------------------------------------------------------------

    def live_records(self) -> dict[str, list[dict]]:
        """Every running peer's metrics records so far (its metrics.jsonl, read once)."""
        return {n: read_metrics(p.data_dir) for n, p in self.peers.items() if p.alive}

    def honest_accuracies(self, records: dict[str, list[dict]]) -> list[float]:
        """The latest test accuracy of each running honest peer that has one."""
        out = []
        for name, recs in records.items():
            if not self.peers[name].attacked:
                acc = next((r.get("test_accuracy") for r in reversed(recs) if r.get("test_accuracy") is not None), None)
                if acc is not None:
                    out.append(acc)
        return out

    def sample_consensus(self, *, alive_only: bool = True) -> _Sample | None:
        from learnae.peer.checkpoint import load_checkpoint

        models = []
        for p in self.peers.values():
            if (p.alive or not alive_only) and p.starts and p.state not in ("killed", "failed"):
                try:
                    ckpt = load_checkpoint(p.data_dir)
                except Exception:  # noqa: BLE001 - a checkpoint being replaced, or none yet
                    ckpt = None
                if ckpt is not None:
                    models.append(ckpt.weights)
        if len(models) < 2:
            return None
        dists = _consensus_distances(models)
        sample = _Sample(round(self.now(), 3), float(np.mean(dists)), float(np.max(dists)), len(models))
        self.consensus.append(sample)
        return sample

    # -- the whole run ------------------------------------------------------------------------

    def run(self) -> dict:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True, soft_wrap=True)
        s = self.s
        pending = list(self.plan.timeline)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a `kill` of the runner cleans up too
        try:
            console.print(f"[bold]{s.name}[/]: starting {sum(p.plan.start for p in self.peers.values())} peers "
                          f"(data dirs under {self.out / 'peers'})")
            self.start()
            next_sample = 0.0
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                          TimeElapsedColumn(), console=console, disable=not self.progress) as bar:
                task = bar.add_task(s.name, total=s.duration, info="")
                while True:
                    now = self.now()
                    while pending and pending[0]["at"] <= now:
                        rec = self.fire(pending.pop(0))
                        bar.console.print(f"t={rec['t']:.1f}s {rec['action']} "
                                          f"{' '.join(rec.get('peers') or [])}{' ' + rec['detail'] if rec['detail'] else ''}")
                    for p in self.peers.values():
                        if p.proc is not None and not p.ready and p.alive:
                            self._poll_ready(p)
                        if p.proc is not None and not p.alive and p.state in ("running", "starting", "paused"):
                            p.returncode = p.proc.proc.returncode
                            p.state = "finished" if p.returncode == 0 else "failed"
                            if p.state == "failed":
                                bar.console.print(f"[red]{p.plan.name} exited with {p.returncode}; "
                                                  f"its log: {p.data_dir / 'peer.log'}[/]")
                    if now >= next_sample:
                        next_sample = now + s.sample_every
                        self.sample_consensus()
                        records = self.live_records()
                        accs = self.honest_accuracies(records)
                        steps = [recs[-1]["step"] for recs in records.values() if recs]
                        info = (f"{sum(p.alive for p in self.peers.values())} alive, "
                                f"acc {statistics.mean(accs):.3f}" if accs else "waiting for the first evaluations")
                        if steps:
                            info += f", steps {min(steps)}-{max(steps)}"
                        bar.update(task, completed=min(now, s.duration), info=info)
                        if s.stop_at_accuracy is not None and accs and statistics.mean(accs) >= s.stop_at_accuracy:
                            self.end_reason = "stop_at_accuracy"
                            break
                    if now >= s.duration:
                        self.end_reason = "duration"
                        break
                    if not pending and not any(p.alive for p in self.peers.values()):
                        self.end_reason = "max_steps"
                        break
                    time.sleep(TICK_S)
                bar.update(task, completed=s.duration)  # the run is over, whatever ended it
            self.duration_s = self.now()
            self.stop_all()
        except KeyboardInterrupt:
            self.end_reason = "interrupted"
            self.duration_s = self.now() if self.t0 is not None else 0.0
            self.kill_all()
            raise
        except BaseException:
            self.kill_all()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return self.report()

    def stop_all(self) -> None:
        """Every running peer leaves gracefully (a paused one is resumed first)."""
        live = [p for p in self.peers.values() if p.alive]
        for p in live:
            p.proc.signal(signal.SIGCONT)
            p.proc.signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
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
        for p in self.peers.values():
            if p.proc is not None and p.proc.alive:
                p.proc.kill()

    # -- the report -------------------------------------------------------------------------------

    def report(self) -> dict:
        s = self.s
        final_consensus = self.sample_consensus(alive_only=False)
        names_by_id = {p.peer_id: n for n, p in self.peers.items() if p.peer_id}
        peers = {}
        for name, p in self.peers.items():
            recs = read_metrics(p.data_dir) if p.starts else []
            ledger = _verify_ledger(p.data_dir) if p.starts else {"valid": None, "entries": 0, "problems": [],
                                                                   "forks": []}
            last = recs[-1] if recs else {}
            peers[name] = {
                "peer_id": p.peer_id, "index": p.plan.index, "rule": p.plan.rule, "slow": p.plan.slow,
                "attack": p.plan.attack.model_dump() if p.plan.attack else None,
                "honest": not p.attacked, "state": p.state, "returncode": p.returncode, "starts": p.starts,
                "series": [_series_point(r, self.started_at) for r in recs],
                "final": {
                    "step": last.get("step"), "test_accuracy": last.get("test_accuracy"),
                    "merges": last.get("merges"), "snapshots": last.get("snapshots"),
                    "bytes_received": last.get("bytes_received"), "bytes_sent": last.get("bytes_sent"),
                    "announce_latency_s": last.get("announce_latency_s"), "rejected": last.get("rejected", 0),
                },
                "ledger": {k: ledger[k] for k in ("valid", "entries", "problems")},
                "forks_detected": sorted(names_by_id.get(a, a) for a in ledger["forks"]),
            }
        alive = [n for n, p in peers.items() if p["state"] in ("finished", "stopped")]
        honest_alive = [peers[n]["final"]["test_accuracy"] for n in alive
                        if peers[n]["honest"] and peers[n]["final"]["test_accuracy"] is not None]
        started = [v for v in peers.values() if v["starts"]]
        lat = [v["final"]["announce_latency_s"] for v in started if v["final"]["announce_latency_s"] is not None]
        final = {
            "mean_accuracy": statistics.mean(honest_alive) if honest_alive else None,
            "min_accuracy": min(honest_alive) if honest_alive else None,
            "max_accuracy": max(honest_alive) if honest_alive else None,
            "peers_alive": len(alive),
            "ledger_valid": all(v["ledger"]["valid"] for v in started),
            "forks": sorted({f for v in started for f in v["forks_detected"]}),
            "consensus_distance": final_consensus.distance if final_consensus else None,
            "max_consensus_distance": final_consensus.max_distance if final_consensus else None,
            "merges": sum(v["final"]["merges"] or 0 for v in started),
            "bytes_received": sum(v["final"]["bytes_received"] or 0 for v in started),
            "bytes_sent": sum(v["final"]["bytes_sent"] or 0 for v in started),
            "rejected": sum(v["final"]["rejected"] or 0 for v in started),
            "announce_latency_s": statistics.median(lat) if lat else None,
            "duration_s": round(self.duration_s, 3),
        }
        expectations = evaluate_expectations(s, final, peers)
        ledger_blocks = _write_union_car(self.out / "ledger.car", [p.data_dir for p in self.peers.values() if p.starts])
        report = {
            "format": 1, "name": s.name, "source": self.source, "scenario": s.model_dump(mode="json"),
            "seed": s.seed, "started_at": self.started_at, "duration_s": round(self.duration_s, 3),
            "end_reason": self.end_reason,
            "partition": partition_summary(self.plan),
            "timeline": self.plan.timeline, "events": self.events, "peers": peers,
            "consensus": [vars(c) for c in self.consensus], "final": final, "expectations": expectations,
            "ok": all(e["ok"] for e in expectations),
            "files": {"accuracy_plot": "accuracy.png", "summary": "report.md",
                      "ledger": "ledger.car" if ledger_blocks else None, "peers": "peers/"},
        }
        atomic_write(self.out / "report.json", json.dumps(report, indent=1, default=_json_default).encode())
        from learnae.scenario.report import plot_accuracy, write_markdown

        plot_accuracy(report, self.out / "accuracy.png")
        write_markdown(report, self.out / "report.md")
        return report


def run_scenario(scenario: Scenario, out: Path | None, *, source: str | None = None, progress: bool = True,
                 env: dict | None = None) -> dict:
    """Run ``scenario`` and write its report under ``out``; return the report dict.

    Raises:
        UserError: ``out`` exists and is not empty (a run never reuses data dirs).
    """
    if out is None:
        out = Path("scenario-out") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: not an empty directory; a run starts fresh peers, so pick a new directory")
    out.mkdir(parents=True, exist_ok=True)
    # a peer that fails leaves its traceback in its peer.log
    env = {"LEARNAE_LOG": os.environ.get("LEARNAE_LOG", "warning,learnae.cli=debug"), **(env or {})}
    runner = Runner(make_plan(scenario), out.resolve(), source=source, progress=progress, env=env)
    report = runner.run()
    _print_summary(report, out)
    return report


# -- helpers ----------------------------------------------------------------------------------

def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _attack(a) -> dict | None:
    return None if a is None else {"mode": a.mode, "scale": a.scale}


def _attack_dict(mode: dict | None) -> dict | None:
    return None if mode is None else {"mode": mode["mode"], "scale": mode.get("scale")}


def _swarm_name(s: Scenario) -> str:
    """One swarm name per scenario: two runs side by side never mix."""
    return f"scenario-{s.name}"


def _series_point(r: dict, started_at: float | None) -> dict:
    keys = ("step", "test_accuracy", "val_accuracy", "loss", "merges", "snapshots", "bytes_received",
            "bytes_sent", "peers")
    point = {"t": round(r["time"] - (started_at or r["time"]), 3), **{k: r.get(k) for k in keys}}
    point["event"] = r.get("event")
    return point


def _consensus_distances(models: list[list[np.ndarray]]) -> list[float]:
    """Each model's L2 distance to the models' average."""
    mean = [np.mean([m[i].astype(np.float64) for m in models], axis=0) for i in range(len(models[0]))]
    return [math.sqrt(sum(float(np.sum((w.astype(np.float64) - c) ** 2)) for w, c in zip(m, mean))) for m in models]


def _verify_ledger(data_dir: Path) -> dict:
    """``learnae ledger verify DIR --format json``, as a user would run it."""
    proc = subprocess.run([sys.executable, "-m", "learnae.cli.main", "ledger", "verify", str(data_dir),
                           "--format", "json"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        rep = json.loads(proc.stdout)
    except ValueError:
        return {"valid": False, "entries": 0, "problems": [proc.stderr.strip()[-500:] or "no output"], "forks": []}
    return {"valid": bool(rep.get("ok")) and proc.returncode == 0, "entries": rep.get("entries", 0),
            "problems": rep.get("problems", [])[:20], "forks": sorted({f["author"] for f in rep.get("forks", [])})}


def _write_union_car(path: Path, data_dirs: list[Path]) -> int:
    """Every entry any peer holds, in one CAR file (roots: every author's heads)."""
    import io

    from learnae.ledger import Ledger
    from learnae.ledger.car import write_car

    blocks: dict = {}
    roots: dict = {}
    for d in data_dirs:
        try:
            with Ledger.open(d, readonly=True) as led:
                for cid, data in led.raw_entries():
                    blocks.setdefault(cid, data)
                for h in led.heads():
                    roots.setdefault(h, None)
        except UserError as exc:
            log.warning("ledger of %s not exported: %s", d, exc)
    if not blocks:
        return 0
    buf = io.BytesIO()
    n = write_car(buf, list(roots), blocks.items())
    atomic_write(path, buf.getvalue())
    return n


def partition_summary(p: Plan) -> dict:
    """Every peer's shard (size, classes) and a digest of all of them: equal plans give equal digests."""
    from learnae.data.datasets import load_dataset, split_dataset
    from learnae.data.shards import select_shard

    s = p.scenario
    digest = hashlib.sha256()
    shards = {}
    try:
        train = split_dataset(load_dataset(s.dataset), seed=s.seed).train
    except UserError as exc:
        return {"scheme": s.partition, "seed": s.seed, "digest": None, "shards": {}, "error": str(exc)}
    for peer in p.peers:
        shard = select_shard(train, f"{peer.index}/{p.shards}", partition=s.partition, seed=s.seed)
        digest.update(np.ascontiguousarray(shard.x).tobytes())
        digest.update(np.ascontiguousarray(shard.y).tobytes())
        shards[peer.name] = {"index": peer.index, "samples": len(shard),
                             "classes": {str(c): int(n) for c, n in enumerate(shard.class_histogram()) if n}}
    return {"scheme": s.partition, "seed": s.seed, "digest": digest.hexdigest(), "shards": shards}


# action -> (signals sent in order, the peer's state after); a leaving peer is woken first if paused
_SIGNALS = {
    "kill": ((signal.SIGKILL,), "killed"),
    "pause": ((signal.SIGSTOP,), "paused"),
    "resume": ((signal.SIGCONT,), "running"),
    "leave": ((signal.SIGCONT, signal.SIGINT), "left"),
}

_COMPARE = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
            "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def evaluate_expectations(s: Scenario, final: dict, peers: dict) -> list[dict]:
    """Check every ``expect`` item against the run's ``final`` values."""
    out = []
    for e in s.expect:
        if e.metric == "forks_detected":
            honest = {n: set(v["forks_detected"]) for n, v in peers.items()
                      if v["honest"] and v["starts"] and n not in e.value}
            ok = bool(honest) and all(set(e.value) <= found for found in honest.values())
            out.append({"expect": e.text, "ok": ok, "value": {n: sorted(f) for n, f in honest.items()}})
            continue
        value = final.get(e.metric)
        ok = value is not None and _COMPARE[e.op](value, e.value)
        out.append({"expect": e.text, "ok": bool(ok), "value": value})
    return out


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _print_summary(report: dict, out: Path) -> None:
    f = report["final"]
    acc = "n/a" if f["mean_accuracy"] is None else f"{f['mean_accuracy']:.3f} (min {f['min_accuracy']:.3f})"
    print(f"{report['name']}: {'PASS' if report['ok'] else 'FAIL'} after {report['duration_s']:.0f} s "
          f"({report['end_reason']}); mean accuracy {acc}; {f['peers_alive']} peers alive; "
          f"ledgers {'valid' if f['ledger_valid'] else 'INVALID'}; forks {f['forks'] or 'none'}")
    for e in report["expectations"]:
        print(f"  [{'ok' if e['ok'] else 'FAIL'}] {e['expect']}  (value: {json.dumps(e['value'], default=str)})")
    print(f"report: {out / 'report.json'}")
    print(f"plot:   {out / 'accuracy.png'}")
    print(f"ledger: {out / 'ledger.car'}")

