"""compose.yaml run for real: the image built, a PEERS=3 swarm in containers, a kill, a partition.

It runs only when asked: ``make docker-test`` (``LEARNAE_DOCKER_TEST=1``), since it takes 4 to
15 minutes, more than ``make test`` can give it on 2 cores. It needs a Docker engine and a compose
tool; where none is reachable, the session fixture starts one with ../shared/tools/docker-up
(root only: Debian's docker.io and docker-compose 1.29, and a stand-in for python:3.11-slim,
since nothing can be pulled on these machines); the test skips, with the reason, only when no
engine can be had that way. One test does everything, in order (3.5 to 4.5 minutes once the
image's layers are cached; its first build adds 4 to 7):

1. ``docker build`` of the repository on the slim base, which has no compiler;
2. ``PEERS=3`` compose swarm under a project name of its own: every container healthy, each peer
   connected to at least 2 others, mean held-out test accuracy >= 0.90, read from the containers;
3. ``docker kill`` of one replica, ``docker start``: it takes its slot back and resumes from its
   checkpoint (same data dir, same key, at least the step it had checkpointed);
4. ``docker network disconnect`` of another replica: no ledger entry crosses the cut either way
   while it trains alone; ``docker network connect``: its entries reach the others, theirs reach
   it, and it merges again;
5. ``docker compose down -v``: no container, network or volume of the project is left.

Whatever happens, the project's containers, networks and volumes are removed, and the teardown
fails if it had to remove anything ``down`` left. The image is kept (tag ``learnae-test``), so
the next run reuses its layers; the image it replaces is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED

pytestmark = pytest.mark.slow

DOCKER_UP = Path(os.environ.get("LEARNAE_DOCKER_UP", SHARED / "tools" / "docker-up"))
IMAGE = "learnae-test"  # compose.yaml's LEARNAE_IMAGE; kept between runs as the layer cache
BASE_IMAGE = "python:3.11-slim"  # the Dockerfile's; docker-up builds a stand-in where none can be pulled
PEERS = 3
TARGET_ACCURACY = 0.90
LABEL = "com.docker.compose.project"


# -- the engine ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Engine:
    compose: tuple[str, ...]  # ("docker-compose",) or ("docker", "compose")
    note: str  # how it was found, for the test's output


def _run(args, timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _compose_tool() -> tuple[str, ...] | None:
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    if shutil.which("docker") and _run(["docker", "compose", "version"], timeout=30).returncode == 0:
        return ("docker", "compose")
    return None


def _engine_up() -> bool:
    return bool(shutil.which("docker")) and _run(["docker", "info"], timeout=60).returncode == 0


def _base_image_present() -> bool:
    return _run(["docker", "image", "inspect", BASE_IMAGE], timeout=60).returncode == 0


def _find_engine() -> Engine | str:
    """A working engine and compose tool, or the one-line reason there is none."""
    if _engine_up() and (compose := _compose_tool()):
        if _base_image_present() or not DOCKER_UP.exists():  # else docker-up makes the base below
            return Engine(compose, "already running")
    if not DOCKER_UP.exists():
        return f"no Docker engine with a compose tool here, and no {DOCKER_UP} to start one"
    # --check first, without the lock: a docker-up that started dockerd leaves dockerd holding
    # its lock file, so a second full run waits for it (bounded below)
    check = _run([DOCKER_UP, "--check"], timeout=120)
    if check.returncode != 0:
        if os.geteuid() != 0:
            return f"no Docker engine, and {DOCKER_UP.name} needs root to start one ({_last_line(check.stdout)})"
        try:
            up = _run([DOCKER_UP], timeout=900)
        except subprocess.TimeoutExpired:
            return f"{DOCKER_UP} did not finish in 15 minutes (is another one holding its lock?)"
        if up.returncode != 0:
            return f"{DOCKER_UP} could not start an engine: {_last_line(up.stderr + up.stdout)}"
    if _engine_up() and (compose := _compose_tool()):
        return Engine(compose, _last_line(check.stdout if check.returncode == 0 else up.stdout + up.stderr))
    return f"{DOCKER_UP} ran, yet `docker info` or the compose tool does not work"


@pytest.fixture(scope="session")
def docker_engine() -> Engine:
    if os.environ.get("LEARNAE_DOCKER_TEST") != "1":
        pytest.skip("runs on request: make docker-test (LEARNAE_DOCKER_TEST=1), 4 to 15 minutes")
    found = _find_engine()
    if isinstance(found, str):
        pytest.skip(found)
    return found


# -- one compose project ------------------------------------------------------------------------

class Project:
    """compose.yaml under a project name of its own, and what Docker holds of it."""

    def __init__(self, engine: Engine, name: str, env: dict[str, str]):
        self.engine, self.name, self.env = engine, name, env

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run([*self.engine.compose, "-f", REPO / "compose.yaml", "--project-directory", REPO,
                     "-p", self.name, *args], timeout=timeout, env=self.env, check=True)

    def leftovers(self) -> dict[str, list[str]]:
        """The project's containers, networks and volumes that Docker still has."""
        by_label = f"label={LABEL}={self.name}"
        found = {
            "containers": _run(["docker", "ps", "-aq", "--filter", by_label]).stdout.split(),
            "networks": _run(["docker", "network", "ls", "-q", "--filter", by_label]).stdout.split(),
            "volumes": _run(["docker", "volume", "ls", "-q", "--filter", by_label]).stdout.split(),
        }
        # also by name, in case a compose tool ever labels differently
        found["containers"] += [c for c in _run(["docker", "ps", "-aq", "--filter", f"name=^{self.name}[_-]"]
                                                ).stdout.split() if c not in found["containers"]]
        for kind in ("network", "volume"):
            names = _run(["docker", kind, "ls", "--format", "{{.Name}}"]).stdout.split()
            found[f"{kind}s"] += [n for n in names if n.startswith(f"{self.name}_") and n not in found[f"{kind}s"]]
        return {k: v for k, v in found.items() if v}

    def remove_all(self) -> dict[str, list[str]]:
        """``down -v``, then force-remove whatever is left; returns what had to be forced."""
        try:
            self.compose("down", "-v", "--remove-orphans", "--timeout", "15", timeout=300)
        except (AssertionError, subprocess.TimeoutExpired):
            pass
        left = self.leftovers()
        for cid in left.get("containers", []):
            _run(["docker", "rm", "-f", "-v", cid])
        for net in left.get("networks", []):
            _run(["docker", "network", "rm", net])
        for vol in left.get("volumes", []):
            _run(["docker", "volume", "rm", "-f", vol])
        return left

    # -- containers -------------------------------------------------------------------------
    def containers(self) -> dict[str, dict]:
        """name -> `docker inspect` of each of the project's containers."""
        ids = _run(["docker", "ps", "-aq", "--filter", f"label={LABEL}={self.name}"], check=True).stdout.split()
        if not ids:
            return {}
        return {c["Name"].lstrip("/"): c for c in json.loads(_run(["docker", "inspect", *ids], check=True).stdout)}

    def exec(self, container: str, *args: str, timeout: float = 120) -> str:
        return _run(["docker", "exec", container, *args], timeout=timeout, check=True).stdout

    def status(self, container: str) -> dict:
        """`learnae peer status` of the container's peer, as JSON."""
        return json.loads(self.exec(container, "learnae-entrypoint", "status", "--format", "json"))

    def peer_id(self, container: str) -> str:
        out = self.exec(container, "sh", "-c", 'learnae key show --data-dir "$(learnae-entrypoint data-dir)"')
        (pid,) = re.findall(r"^peer_id\s+(\S+)", out, flags=re.M)
        return pid

    def heads(self, container: str) -> dict[str, int]:
        """author -> highest seq in the container's ledger (read-only, beside the running peer)."""
        code = ("import json, sys; from pathlib import Path; from learnae.ledger import Ledger\n"
                "with Ledger.open(Path(sys.argv[1]), readonly=True) as led:\n"
                "    print(json.dumps({a: s for a, (s, _) in led.chain_heads().items()}))")
        return json.loads(self.exec(container, "sh", "-c", 'python3 -c "$0" "$(learnae-entrypoint data-dir)"', code))


def _wait(what: str, check, timeout: float, every: float = 5.0):
    """Call ``check()`` until it returns something truthy; fail with its last answer after ``timeout``."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            last = check()
            if last and not isinstance(last, str):
                return last
        except (AssertionError, subprocess.SubprocessError, json.JSONDecodeError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s; last: {last}")
        time.sleep(every)


@pytest.fixture
def compose_project(docker_engine):
    name = f"learnae-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPOSE_", "LEARNAE_")) and k not in ("PEERS", "PARTITION", "MAX_STEPS")}
    env.update(PEERS=str(PEERS), LEARNAE_IMAGE=IMAGE, MAX_STEPS="0", PARTITION="iid")
    project = Project(docker_engine, name, env)
    try:
        yield project
    finally:
        forced = project.remove_all()
        still = project.leftovers()
        assert not still, f"could not remove {still}"
        assert not forced, f"`down -v` left {forced} (removed by force)"


# -- the test -----------------------------------------------------------------------------------

def _build_image() -> tuple[float, str]:
    old = _run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE]).stdout.strip()
    t0 = time.monotonic()
    # --force-rm: a failed step leaves no container behind either
    _run(["docker", "build", "--force-rm", "-t", IMAGE, REPO], timeout=1800, check=True)
    took = time.monotonic() - t0
    new = _run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE], check=True).stdout.strip()
    if old and old != new:  # the image this build replaced; still used by a container: kept
        _run(["docker", "image", "rm", old])
    return took, new


def _health(containers: dict[str, dict]) -> dict[str, str]:
    return {n: (c["State"].get("Health") or {}).get("Status", c["State"]["Status"]) for n, c in containers.items()}


def _replicas(project: Project) -> list[str]:
    return sorted(n for n, c in project.containers().items() if c["Config"]["Labels"].get(
        "com.docker.compose.service") == "peer")


@pytest.mark.timeout(2700)
def test_compose_swarm_trains_survives_a_kill_and_a_partition_and_leaves_nothing(compose_project, capsys):
    project = compose_project

    def note(line: str) -> None:
        with capsys.disabled():
            print(f"  compose test: {line.replace(project.name + '_', '')}", flush=True)

    note(f"engine: {project.engine.note}; compose: {' '.join(project.engine.compose)}; project {project.name}")

    # 1. the image, on the slim base with no compiler
    took, image_id = _build_image()
    note(f"docker build: {took:.0f} s, image {image_id[:19]}, "
         f"{int(_run(['docker', 'image', 'inspect', '-f', '{{.Size}}', IMAGE]).stdout) / 1e9:.2f} GB")
    probe = _run(["docker", "run", "--rm", "--network", "none", "--label", f"{LABEL}={project.name}", IMAGE,
                  "sh", "-c", "learnae --version; command -v gcc cc || echo no-compiler; id -un"], check=True)
    assert probe.stdout.split()[-2:] == ["no-compiler", "learnae"], probe.stdout

    # 2. the swarm: healthy, meshed, accurate
    t0 = time.monotonic()
    project.compose("up", "-d", "--no-build", timeout=600)
    containers = project.containers()
    services = sorted(c["Config"]["Labels"]["com.docker.compose.service"] for c in containers.values())
    assert services == ["bootstrap"] + ["peer"] * PEERS, services
    networks = {net for c in containers.values() for net in c["NetworkSettings"]["Networks"]}
    assert networks == {f"{project.name}_private"}, "containers sit on the project's network only"
    assert _run(["docker", "network", "inspect", "-f", "{{.Internal}}", *networks]).stdout.strip() == "true"

    def trained():
        health = _health(project.containers())
        if set(health.values()) != {"healthy"}:
            return f"health {health}"
        status = {n: project.status(n) for n in health}
        peers = {n: s["peers"] for n, s in status.items()}
        acc = {n: s["test_accuracy"] for n, s in status.items()}
        if any(a is None for a in acc.values()) or any(p is None or p < 2 for p in peers.values()):
            return f"peers {peers}, test accuracy {acc}"
        mean = statistics.mean(acc.values())
        return (mean, peers, acc, {n: s["step"] for n, s in status.items()}) if mean >= TARGET_ACCURACY else \
            f"mean test accuracy {mean:.3f}, peers {peers}"

    mean, peers, acc, steps = _wait("every peer healthy, connected to 2+ others, mean test accuracy >= 0.90",
                                    trained, timeout=900)
    note(f"swarm trained in {time.monotonic() - t0:.0f} s: mean test accuracy {mean:.3f} "
         f"({', '.join(f'{a:.3f}' for a in acc.values())}), peers {sorted(peers.values())}, steps {steps}")

    # 3. kill -9 one replica and start it again: it resumes from its checkpoint
    victim, cut = _replicas(project)[:2]
    before = _wait(f"{victim} has a checkpoint", lambda: (s := project.status(victim))["ledger_seq"] is not None and s,
                   timeout=300)
    victim_id = project.peer_id(victim)
    _run(["docker", "kill", victim], check=True)
    assert project.containers()[victim]["State"]["Running"] is False
    since = _run(["date", "-u", "+%Y-%m-%dT%H:%M:%S"], check=True).stdout.strip()
    t0 = time.monotonic()
    _run(["docker", "start", victim], check=True)
    _wait(f"{victim} healthy again", lambda: _health(project.containers())[victim] == "healthy", timeout=400)
    logs = _run(["docker", "logs", "--since", since, victim], check=True)
    resumed = re.findall(r"resumed from the checkpoint of step (\d+) in (\S+)", logs.stdout + logs.stderr)
    assert resumed, f"{victim} did not resume from a checkpoint:\n{logs.stderr[-2000:]}"
    step, data_dir = int(resumed[0][0]), resumed[0][1]
    assert data_dir == before["data_dir"] and step >= before["step"], (resumed, before)
    assert project.peer_id(victim) == victim_id, "the restarted replica is the same peer"
    after = _wait(f"{victim} trains on past step {step}",
                  lambda: (s := project.status(victim))["step"] > step and (s["peers"] or 0) >= 2 and s, timeout=300)
    note(f"{victim}: killed at checkpoint step {before['step']}, resumed from step {step} "
         f"({data_dir}), healthy and at step {after['step']} {time.monotonic() - t0:.0f} s after its start")

    # 4. cut another replica off the network, and back
    (net,) = networks
    cut_id, ip = project.peer_id(cut), project.containers()[cut]["NetworkSettings"]["Networks"][net]["IPAddress"]
    others = [n for n in project.containers() if n != cut]
    _run(["docker", "network", "disconnect", net, cut], check=True)
    t0 = time.monotonic()
    time.sleep(15)  # what was in flight lands

    def views():
        inside = project.heads(cut)
        return inside, {n: project.heads(n).get(cut_id, -1) for n in others}, project.status(cut)["merges"]

    inside0, outside0, merges0 = views()
    time.sleep(25)
    inside1, outside1, merges1 = views()
    note(f"{cut} cut off: its own chain {inside0[cut_id]} -> {inside1[cut_id]}, as the others see it "
         f"{outside0} -> {outside1}, its merges {merges0} -> {merges1}")
    assert inside1[cut_id] > inside0[cut_id], "the cut-off peer keeps training and publishing"
    # (the others may still pass among themselves what one of them got before the cut)
    assert max(outside1.values()) == max(outside0.values()), "none of its entries crosses the cut"
    assert {a: s for a, s in inside1.items() if a != cut_id} == {a: s for a, s in inside0.items() if a != cut_id}, \
        "none of the others' entries crosses the cut"
    assert merges1 == merges0, "it merges nothing while cut off"
    assert max(outside1.values()) < inside1[cut_id]

    _run(["docker", "network", "connect", net, cut], check=True)
    partitioned = time.monotonic() - t0
    t0 = time.monotonic()
    ip_after = project.containers()[cut]["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert ip_after == ip, f"Docker gave {cut} a new address ({ip} -> {ip_after}): its listener is gone"
    head = inside1[cut_id]

    def healed():
        inside, outside, merges = views()
        behind = {n: s for n, s in outside.items() if s < head}
        stale = {a: s for a, s in inside.items() if a != cut_id and s <= inside1.get(a, -1)}
        if behind or stale or merges <= merges1:
            return f"others behind on its chain {behind}, its view not grown for {list(stale)}, merges {merges}"
        return outside, merges

    outside2, merges2 = _wait(f"{cut} back in the swarm", healed, timeout=300)
    _wait("every container healthy after the heal", lambda: set(_health(project.containers()).values()) == {"healthy"},
          timeout=300)
    note(f"{cut} healed {time.monotonic() - t0:.0f} s after `network connect` (cut for {partitioned:.0f} s): "
         f"the others hold its chain to {min(outside2.values())} >= {head}, its merges {merges1} -> {merges2}")

    # 5. down: nothing of the project is left
    t0 = time.monotonic()
    project.compose("down", "-v", "--timeout", "15", timeout=300)
    assert project.leftovers() == {}, "`docker compose down -v` leaves no container, network or volume"
    note(f"down -v in {time.monotonic() - t0:.0f} s; nothing of {project.name} left")
