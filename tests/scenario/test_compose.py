"""compose.yaml, the Dockerfile, docker/entrypoint.sh and `learnae scenario compose`.

These check what can be checked without a Docker engine (test_compose_engine.py runs the
image and the swarm under a real one): the compose files parse and use only keys of the compose spec; every
peer's command line, with the environment its container gets, is accepted by the real
`learnae peer start` parser and config validation; the entrypoint (run with the same
/bin/sh the image has) publishes the bootstrap address, hands out distinct shards and judges
health; and the Dockerfile installs the package with the README's (the Makefile's) commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from learnae.cli.main import cli
from learnae.errors import ScenarioError
from learnae.identity import Identity
from learnae.peer.config import PeerConfig
from learnae.peer.lock import DataDirLock
from learnae.scenario.compose import HEALTHCHECK, compose_dict, compose_yaml, kubo_service, peer_command
from learnae.scenario.schema import parse_scenario, plan

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"

# Keys of the compose specification (compose-spec/compose-spec, schema/compose-spec.json) that a
# file may use at each level; a misspelt key would otherwise only fail under `docker compose`.
TOP_KEYS = {"name", "services", "volumes", "networks", "configs", "secrets", "include", "models", "version"}
SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent",
    "command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
    "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on",
    "deploy", "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
    "entrypoint", "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file", "labels",
    "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit",
    "models", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "platform", "ports", "post_start", "pre_stop", "privileged", "profiles", "provider", "pull_policy",
    "pull_refresh_after", "read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size",
    "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits",
    "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir",
}
HEALTHCHECK_KEYS = {"disable", "interval", "retries", "test", "timeout", "start_period", "start_interval"}
DEPENDS_KEYS = {"condition", "required", "restart"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
DEPLOY_KEYS = {"endpoint_mode", "labels", "mode", "placement", "replicas", "resources", "restart_policy",
               "rollback_config", "update_config"}
VOLUME_KEYS = {"driver", "driver_opts", "external", "labels", "name"}
NETWORK_KEYS = {"attachable", "driver", "driver_opts", "enable_ipv4", "enable_ipv6", "external", "internal",
                "ipam", "labels", "name"}

SCENARIO = """\
name: Compose Check
seed: 7
duration: 150s
dataset: digits
partition: classes:3
model: digits-mlp
peers:
  - peer-0
  - {name: peer-1, rule: median}
  - {name: peer-2, slow: 2}
  - {name: evil, attack: sign-flip}
train: {max_steps: 300, batch_size: 16, learning_rate: 0.02, optimizer: adam}
merge: {every: 4, publish_every: 3, k: 2, rule: trimmed-mean, weight_cap: 0.4, wait: 500ms, encoding: float16}
network: {latency: 100ms, loss: 0.05}
events:
  - {at: 30s, kill: [peer-2]}
  - {at: 45s, join: [late-1]}
expect:
  - mean_accuracy >= 0.8
"""


# -- helpers ------------------------------------------------------------------------------------

def _interpolate(value, env: dict[str, str] | None = None):
    """Resolve compose's ``${VAR:-default}`` (and ``${VAR}``) as `docker compose` would with ``env``."""
    env = env or {}

    def one(m: re.Match) -> str:
        name, default = m[1], m[3]
        if name in env:
            return env[name]
        assert default is not None, f"${{{name}}} has no default"
        return default

    if isinstance(value, str):
        return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(:-([^}]*))?\}", one, value)
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def _compose_file(env: dict[str, str] | None = None) -> dict:
    return _interpolate(yaml.safe_load((REPO / "compose.yaml").read_text()), env)


def _scenario_plan(text: str = SCENARIO):
    return plan(parse_scenario(yaml.safe_load(text), source="test.yaml"))


def _check_spec_keys(doc: dict) -> None:
    assert set(doc) <= TOP_KEYS | {k for k in doc if k.startswith("x-")}
    for name, svc in doc["services"].items():
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", name)
        assert set(svc) <= SERVICE_KEYS, f"{name}: {set(svc) - SERVICE_KEYS}"
        assert set(svc["healthcheck"]) <= HEALTHCHECK_KEYS
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
        for dep in (svc.get("depends_on") or {}).values():
            assert set(dep) <= DEPENDS_KEYS and dep["condition"] in CONDITIONS
        assert set(svc.get("deploy", {})) <= DEPLOY_KEYS
        assert "ports" not in svc, "nothing is published outside the private network"
    for vol in doc["volumes"].values():
        assert vol is None or set(vol) <= VOLUME_KEYS
    for net in doc["networks"].values():
        assert set(net) <= NETWORK_KEYS


def _named_volumes_only(doc: dict) -> None:
    for name, svc in doc["services"].items():
        for mount in svc["volumes"]:
            source = mount.split(":")[0]
            assert source in doc["volumes"], f"{name} mounts {source!r}, which is not a named volume"


def _learnae_services(doc: dict) -> dict:
    return {n: s for n, s in doc["services"].items() if s["command"][:3] == ["learnae", "peer", "start"]}


def _peer_config(command: list[str], env: dict[str, str], monkeypatch) -> PeerConfig:
    """Run ``command`` through the real `learnae` click group and config validation, stopping
    where the peer would start; ``env`` is the container's environment."""
    assert command[0] == "learnae"
    seen: list[PeerConfig] = []
    monkeypatch.setattr("learnae.peer.runtime.run_peer", lambda cfg, **_: seen.append(cfg))
    for name in list(os.environ):
        if name.startswith(("LEARNAE_", "SWARM_")):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(cli, command[1:], env={k: str(v) for k, v in env.items()})
    assert result.exit_code == 0, f"{shlex.join(command)}: {result.output} {result.exception!r}"
    (cfg,) = seen
    return cfg


def _stub_learnae(tmp_path: Path) -> dict[str, str]:
    """An environment whose `learnae` is the real CLI, except that `peer start` prints the
    config it would run with (as JSON) and then sleeps STUB_HOLD_S seconds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "learnae"
    stub.write_text(f"""#!{sys.executable}
import dataclasses, json, os, sys, time
import learnae.peer.runtime as runtime

def run_peer(cfg, early_signal=None):
    print(json.dumps(dataclasses.asdict(cfg), default=str), flush=True)
    time.sleep(float(os.environ.get("STUB_HOLD_S", "0")))

runtime.run_peer = run_peer
from learnae.cli.main import main
main()
""")
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEARNAE_", "SWARM_"))}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["TMPDIR"] = str(tmp_path)
    return env


def _entrypoint(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    # /bin/sh, as in the image (dash on Debian): the script must stay POSIX
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True,
                          timeout=60, **kw)


def _container_env(service: dict, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A service's environment with its volumes moved under tmp_path."""
    env = {k: str(v) for k, v in service["environment"].items()}
    for mount in service["volumes"]:
        source, target = mount.split(":")[:2]
        for key, value in env.items():
            if value == target:
                env[key] = str(tmp_path / source)
    return {**env, **extra}


# -- compose.yaml -------------------------------------------------------------------------------

def test_compose_yaml_runs_a_bootstrap_peer_replicas_and_an_opt_in_kubo():
    raw = yaml.safe_load((REPO / "compose.yaml").read_text())
    doc = _compose_file()
    _check_spec_keys(doc)
    _named_volumes_only(doc)
    services = doc["services"]
    assert list(services) == ["bootstrap", "peer", "kubo"]
    boot, peer, kubo = services["bootstrap"], services["peer"], services["kubo"]

    assert "profiles" not in boot and "profiles" not in peer
    assert kubo["profiles"] == ["kubo"], "Kubo is opt-in"
    # not on kubo: compose refuses a dependency on a service whose profile is off (the entrypoint waits)
    assert peer["depends_on"] == {"bootstrap": {"condition": "service_healthy"}}
    assert "depends_on" not in boot
    assert boot["build"] == "." and boot["image"] == peer["image"] == "learnae"
    assert peer["pull_policy"] == "never"

    # the replica count and the shard count the entrypoint derives come from one variable
    assert raw["services"]["peer"]["deploy"]["replicas"] == "${PEERS:-3}"
    assert raw["services"]["peer"]["environment"]["SWARM_REPLICAS"] == "${PEERS:-3}"
    assert _compose_file({"PEERS": "7"})["services"]["peer"]["environment"]["SWARM_REPLICAS"] == "7"
    assert peer["deploy"]["replicas"] == "3"

    # the bootstrap peer publishes its address; each replica claims a slot; all share `swarm`
    assert boot["environment"]["SWARM_BOOTSTRAP_HOST"] == "bootstrap"
    assert boot["environment"]["SWARM_SLOT"] == "0" and peer["environment"]["SWARM_SLOT"] == "auto"
    assert "bootstrap-data:/data" in boot["volumes"] and "peers:/data" in peer["volumes"]
    assert "swarm:/swarm" in boot["volumes"] and "swarm:/swarm" in peer["volumes"]

    for svc in (boot, peer):
        assert svc["healthcheck"] == HEALTHCHECK
        assert svc["networks"] == ["private"]
    assert doc["networks"] == {"private": {"internal": True}}


def test_compose_yaml_commands_are_accepted_by_peer_start(monkeypatch):
    doc = _compose_file()
    boot, peer = doc["services"]["bootstrap"], doc["services"]["peer"]
    peer_id = Identity.generate().peer_id
    # what docker/entrypoint.sh adds to each container's environment
    first = _peer_config(boot["command"], {**boot["environment"], "LEARNAE_SHARD": "0/4"}, monkeypatch)
    assert (first.shard, first.bootstrap, first.data_dir) == ("0/4", [], Path("/data"))
    other = _peer_config(peer["command"], {**peer["environment"], "LEARNAE_SHARD": "2/4",
                                           "LEARNAE_HOME": "/data/peer-2",
                                           "LEARNAE_BOOTSTRAP": f"/ip4/172.18.0.2/tcp/4010/p2p/{peer_id}"},
                         monkeypatch)
    assert (other.shard, other.data_dir) == ("2/4", Path("/data/peer-2"))
    assert other.bootstrap == [f"/ip4/172.18.0.2/tcp/4010/p2p/{peer_id}"]
    for cfg in (first, other):
        assert cfg.mdns is False, "mDNS would send multicast beyond the swarm"
        assert cfg.listen == "/ip4/0.0.0.0/tcp/4010"
        assert (cfg.partition, cfg.max_steps, cfg.min_peers, cfg.storage) == ("iid", 0, 1, "embedded")

    # the documented knobs are accepted too
    tuned = _compose_file({"PEERS": "7", "PARTITION": "classes:4", "MAX_STEPS": "500", "LEARNAE_STORAGE": "kubo"})
    svc = tuned["services"]["peer"]
    cfg = _peer_config(svc["command"], {**svc["environment"], "LEARNAE_SHARD": "7/8"}, monkeypatch)
    assert (cfg.partition, cfg.max_steps, cfg.storage, cfg.kubo_api) == ("classes:4", 500, "kubo",
                                                                          "/dns4/kubo/tcp/5001")


def test_compose_yaml_kubo_is_the_generated_kubo_and_stays_private():
    kubo = _compose_file()["services"]["kubo"]
    generated = yaml.safe_load(yaml.safe_dump(compose_dict(_scenario_plan(), kubo=True)["services"]["kubo"]))
    assert {k: v for k, v in kubo.items() if k != "profiles"} == generated
    script = kubo["command"][0]
    assert "ipfs bootstrap rm --all" in script, "no public bootstrap peers"
    assert "Discovery.MDNS.Enabled false" in script
    assert script.rstrip().endswith("exec ipfs daemon --migrate=true")


def test_entrypoint_publishes_the_bootstrap_address_and_replicas_claim_distinct_slots(tmp_path):
    doc = _compose_file()
    env = _stub_learnae(tmp_path)
    boot_env = {**env, **_container_env(doc["services"]["bootstrap"], tmp_path)}
    peer_env = {**env, **_container_env(doc["services"]["peer"], tmp_path)}

    boot = _entrypoint(doc["services"]["bootstrap"]["command"], boot_env)
    assert boot.returncode == 0, boot.stderr
    boot_cfg = json.loads(boot.stdout.splitlines()[0])
    peer_id = Identity.load(tmp_path / "bootstrap-data" / "identity.key").peer_id
    assert (tmp_path / "swarm" / "bootstrap.addr").read_text() == f"/dns4/bootstrap/tcp/4010/p2p/{peer_id}\n"
    assert (boot_cfg["shard"], boot_cfg["bootstrap"], boot_cfg["mdns"]) == ("0/4", [], False)
    assert boot_cfg["data_dir"] == str(tmp_path / "bootstrap-data")

    # replica 1 keeps running (and holds its slot) while replica 2 starts
    first = subprocess.Popen(["/bin/sh", str(ENTRYPOINT), *doc["services"]["peer"]["command"]],
                             env={**peer_env, "STUB_HOLD_S": "60"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        one = json.loads(first.stdout.readline())
        two = json.loads(_entrypoint(doc["services"]["peer"]["command"], peer_env).stdout)
    finally:
        first.kill()
        first.wait()
    assert (one["shard"], one["data_dir"]) == ("1/4", str(tmp_path / "peers" / "peer-1"))
    assert (two["shard"], two["data_dir"]) == ("2/4", str(tmp_path / "peers" / "peer-2"))
    # "bootstrap" does not resolve outside compose's network: the name is kept, which libp2p dials too
    assert one["bootstrap"] == two["bootstrap"] == [f"/dns4/bootstrap/tcp/4010/p2p/{peer_id}"]
    # replica 1 is gone: its slot, data dir included, is free again
    three = json.loads(_entrypoint(doc["services"]["peer"]["command"], peer_env).stdout)
    assert three["shard"] == "1/4"


def test_entrypoint_resolves_the_bootstrap_host_and_refuses_a_replica_without_a_slot(tmp_path):
    env = {**_stub_learnae(tmp_path), "LEARNAE_HOME": str(tmp_path / "boot"), "SWARM_DIR": str(tmp_path / "swarm")}
    boot = _entrypoint(["learnae", "peer", "start", "--help"], {**env, "SWARM_BOOTSTRAP_HOST": "localhost"})
    assert boot.returncode == 0, boot.stderr
    peer_id = Identity.load(tmp_path / "boot" / "identity.key").peer_id

    replica = {**env, "LEARNAE_HOME": str(tmp_path / "peers"), "SWARM_REPLICAS": "1", "SWARM_SLOT": "auto"}
    holder = subprocess.Popen(["/bin/sh", str(ENTRYPOINT), "learnae", "peer", "start"],
                              env={**replica, "STUB_HOLD_S": "60"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        cfg = json.loads(holder.stdout.readline())
        extra = _entrypoint(["learnae", "peer", "start"], replica)
    finally:
        holder.kill()
        holder.wait()
    assert cfg["bootstrap"] == [f"/ip4/127.0.0.1/tcp/4010/p2p/{peer_id}"]
    assert cfg["shard"] == "1/2"
    assert extra.returncode == 2 and extra.stdout == ""
    assert "no free peer slot" in extra.stderr and "PEERS=N docker compose up" in extra.stderr

    # a peer with no bootstrap peer to find says so instead of waiting forever
    lonely = _entrypoint(["learnae", "peer", "start"], {**env, "SWARM_DIR": str(tmp_path / "empty"),
                                                         "SWARM_WAIT_S": "1"})
    assert lonely.returncode == 2 and "no bootstrap address" in lonely.stderr
    # anything but `learnae peer start` runs as is
    plain = _entrypoint(["learnae", "key", "show", "--data-dir", str(tmp_path / "boot")], env)
    assert plain.returncode == 0 and peer_id in plain.stdout


def test_entrypoint_waits_for_the_kubo_api_when_it_is_the_store(tmp_path):
    peer_id = Identity.generate().peer_id
    env = {**_stub_learnae(tmp_path), "LEARNAE_HOME": str(tmp_path / "data"), "LEARNAE_STORAGE": "kubo",
           "LEARNAE_BOOTSTRAP": f"/ip4/127.0.0.1/tcp/4010/p2p/{peer_id}", "SWARM_WAIT_S": "1"}
    with socket.socket() as api:
        api.bind(("127.0.0.1", 0))
        api.listen()
        env["LEARNAE_KUBO_API"] = f"/dns4/localhost/tcp/{api.getsockname()[1]}"
        up = _entrypoint(["learnae", "peer", "start"], env)
    assert up.returncode == 0, up.stderr
    cfg = json.loads(up.stdout)
    assert (cfg["storage"], cfg["kubo_api"]) == ("kubo", env["LEARNAE_KUBO_API"])
    down = _entrypoint(["learnae", "peer", "start"], env)  # the port is closed now
    assert down.returncode == 2 and down.stdout == ""
    assert "no Kubo RPC API answers" in down.stderr and "--profile kubo" in down.stderr


def test_entrypoint_health_needs_a_running_listening_peer_with_fresh_metrics(tmp_path):
    env = _stub_learnae(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env.update(LEARNAE_HOME=str(data), LEARNAE_LISTEN=f"/ip4/127.0.0.1/tcp/{port}")

        stopped = _entrypoint(["health"], env)
        assert stopped.returncode == 1 and "no peer is running" in stopped.stderr
        with DataDirLock(data):
            fresh = {"time": time.time(), "step": 40, "val_accuracy": 0.9, "peers": 3, "merges": 7}
            (data / "metrics.jsonl").write_text(json.dumps(fresh) + "\n")
            healthy = _entrypoint(["health"], env)
            assert healthy.returncode == 0, healthy.stderr
            assert "step 40" in healthy.stdout and "peers 3" in healthy.stdout
            (data / "metrics.jsonl").write_text(json.dumps({**fresh, "time": time.time() - 600}) + "\n")
            stale = _entrypoint(["health"], env)
            assert stale.returncode == 1 and "s old" in stale.stderr
            (data / "metrics.jsonl").unlink()  # before the first record: running and listening is enough
            assert _entrypoint(["health"], env).returncode == 0
            deaf = _entrypoint(["health"], {**env, "LEARNAE_LISTEN": "/ip4/127.0.0.1/tcp/1"})
            assert deaf.returncode == 1 and "does not accept connections" in deaf.stderr


def test_entrypoint_listens_on_the_container_address_and_health_follows_it(tmp_path):
    env = _stub_learnae(tmp_path)
    # the container's name resolves to its address on the network (and, here, a loopback alias)
    getent = tmp_path / "bin" / "getent"
    getent.write_text('#!/bin/sh\nif [ "$1" = ahostsv4 ] && [ "$2" = "$(hostname)" ]; then\n'
                      '  printf "127.0.1.1 STREAM x\\n10.9.8.7 STREAM x\\n10.9.8.7 DGRAM\\n"\nelse\n'
                      '  exec /usr/bin/getent "$@"\nfi\n')
    getent.chmod(0o755)
    data = tmp_path / "data"
    env.update(LEARNAE_HOME=str(data), LEARNAE_LISTEN="/ip4/0.0.0.0/tcp/4010",
               LEARNAE_BOOTSTRAP=f"/ip4/10.9.8.2/tcp/4010/p2p/{Identity.generate().peer_id}")
    state = tmp_path / "learnae-data-dir"

    def start(**extra) -> dict:
        done = _entrypoint(["learnae", "peer", "start"], {**env, **extra})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # 0.0.0.0 is no address another container can dial: the peer listens (and so announces) its own
    assert start()["listen"] == "/ip4/10.9.8.7/tcp/4010"
    assert state.read_text().splitlines() == [str(data), "/ip4/10.9.8.7/tcp/4010"]
    assert start(SWARM_LISTEN_WILDCARD="1")["listen"] == "/ip4/0.0.0.0/tcp/4010"
    assert start(LEARNAE_LISTEN="/ip4/127.0.0.1/tcp/4555")["listen"] == "/ip4/127.0.0.1/tcp/4555"

    # health, status and data-dir follow what the peer was started with, not the container's env
    data.mkdir(exist_ok=True)
    with socket.socket() as listener, DataDirLock(data):
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        state.write_text(f"{data}\n/ip4/127.0.0.1/tcp/{listener.getsockname()[1]}\n")
        other = {**env, "LEARNAE_HOME": str(tmp_path / "elsewhere"), "LEARNAE_LISTEN": "/ip4/10.9.8.7/tcp/1"}
        assert _entrypoint(["data-dir"], other).stdout.strip() == str(data)
        status = _entrypoint(["status", "--format", "json"], other)
        assert status.returncode == 0 and json.loads(status.stdout)["data_dir"] == str(data)
        # a record of a run before this start (a restarted container) is not held against it
        old = {"time": time.time() - 600, "step": 40, "val_accuracy": 0.9, "peers": 3, "merges": 7}
        (data / "metrics.jsonl").write_text(json.dumps(old) + "\n")
        healthy = _entrypoint(["health"], other)
        assert healthy.returncode == 0, healthy.stderr
        os.utime(state, (time.time() - 900, time.time() - 900))  # the same record, written by this run
        stale = _entrypoint(["health"], other)
        assert stale.returncode == 1 and "s old" in stale.stderr


# -- the Dockerfile -----------------------------------------------------------------------------

def _dockerfile() -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments kept as their own lines."""
    out, current = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            out.append(line.strip())
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            out.append(current.strip())
            current = ""
    return out


def _makefile_install_steps() -> list[str]:
    """The recipe `make test` (README.md's first command) installs learnae with."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(STAMP):"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return [step for step in recipe if not step.startswith("touch ")]


def _stages(lines: list[str]) -> list[list[str]]:
    """The Dockerfile's build stages, each from its FROM line on."""
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return [lines[a:b] for a, b in zip(starts, [*starts[1:], len(lines)])]


def test_dockerfile_installs_with_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "creates .venv if missing, installs learnae" in readme
    steps = _makefile_install_steps()
    *builders, lines = _stages(_dockerfile())
    runs = [(lines[i - 1], line[len("RUN "):]) for i, line in enumerate(lines) if line.startswith("RUN ")]
    named = [(comment[len("# Makefile: "):], cmd) for comment, cmd in runs if comment.startswith("# Makefile: ")]
    assert [make for make, _ in named] == steps, "every install step of the Makefile, in order, and nothing else"
    # The only differences: the venv's place, no `test -x` guard (a fresh image has no venv), and
    # the package itself instead of an editable install with the test extras.
    for make, docker in named:
        expected = re.sub(r"^test -x \S+ \|\| ", "", make)
        expected = (expected.replace("$(BIN)", "/opt/venv/bin").replace("$(VENV)", "/opt/venv")
                    .replace("$(PYTHON)", "python").replace("-e '.[test]'", "."))
        assert docker == expected
    assert any(docker.endswith("pip install --quiet .") for _, docker in named)
    # Besides those, one layer installs the dependencies alone (cached until setup.cfg changes) with
    # the same command, on a stand-in of the package that it removes again.
    install = named[-1][1]
    (deps,) = [cmd for comment, cmd in runs if comment.startswith("# Makefile (dependencies): ")]
    assert f"&& {install} && " in deps and "pip uninstall --quiet -y learnae" in deps
    assert [cmd for _, cmd in runs if "pip" in cmd or "venv" in cmd] == [*(d for _, d in named[:-1]), deps, install], \
        "no install step the README does not have"
    # The compiler lives in the build stage only: the final image takes the wheels it built (what
    # has no wheel on the registry: libp2p's fastecdsa) and installs no system package.
    (wheels,) = builders
    assert wheels[0] == "FROM python:3.11-slim AS wheels"
    assert any("apt-get install" in line and "gcc" in line and "libgmp-dev" in line for line in wheels)
    assert "COPY --from=wheels /wheels /wheels" in lines and "ARG PIP_FIND_LINKS=/wheels" in lines
    assert not any("apt-get" in line for line in lines)


def test_dockerfile_runs_the_entrypoint_as_a_user_with_a_healthcheck():
    lines = [line for line in _stages(_dockerfile())[-1] if line and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert "TF_CPP_MIN_LOG_LEVEL=2" in env and "LEARNAE_HOME=/data" in env and "PATH=/opt/venv/bin:" in env
    user = [line for line in lines if line.startswith("USER ")]
    assert user == ["USER learnae"], "the peer does not run as root"
    assert "COPY docker/entrypoint.sh /usr/local/bin/learnae-entrypoint" in lines
    assert lines[-2:] == ['ENTRYPOINT ["learnae-entrypoint"]', 'CMD ["learnae", "peer", "start"]']
    (check,) = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert check.endswith("CMD " + json.dumps(HEALTHCHECK["test"][1:]))
    for option in ("interval", "timeout", "retries"):
        assert f"--{option}={HEALTHCHECK[option]}" in check
    assert f"--start-period={HEALTHCHECK['start_period']}" in check
    # the build context keeps what the COPY lines need
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert source.split("/")[0] not in ignored, f"{source} is in .dockerignore"
    assert {".venv", ".git"} <= ignored
    assert os.access(ENTRYPOINT, os.X_OK)


# -- learnae scenario compose -------------------------------------------------------------------

def test_generated_file_runs_each_planned_peer_on_its_own_shard_and_volume():
    p = _scenario_plan()
    text = compose_yaml(p)
    doc = yaml.safe_load(text)
    _check_spec_keys(doc)
    _named_volumes_only(doc)
    services = doc["services"]
    assert list(services) == ["peer-0", "peer-1", "peer-2", "evil", "late-1"], "the bootstrap peer first"
    shards = [svc["command"][svc["command"].index("--shard") + 1] for svc in services.values()]
    assert shards == [f"{i}/5" for i in range(5)]
    assert services["peer-0"]["environment"]["SWARM_BOOTSTRAP_HOST"] == "peer-0"
    for name, svc in services.items():
        assert f"{name}-data:/data" in svc["volumes"] and "swarm:/swarm" in svc["volumes"]
        assert svc["healthcheck"] == HEALTHCHECK
        assert (svc["image"], svc["pull_policy"]) == ("learnae", "never")
        if name != "peer-0":
            assert svc["depends_on"] == {"peer-0": {"condition": "service_healthy"}}
            assert "SWARM_BOOTSTRAP_HOST" not in svc["environment"]
    assert services["late-1"]["profiles"] == ["join"], "a peer that joins later is started by hand"
    assert all("profiles" not in s for n, s in services.items() if n != "late-1")
    assert doc["networks"] == {"private": {"internal": True}}
    assert "name" not in doc  # Compose 1.29 refuses a top-level name: the header gives the -p to pass

    header = text.split("\n\n")[0]
    assert all(line.startswith("#") for line in header.splitlines())
    for said in ("2 events: join, kill", "network conditions", "slowdowns of peer-2", "evil (sign-flip)",
                 "run as honest peers", "duration 150s",
                 "docker compose -p learnae-compose-check -f FILE up -d`", "-p learnae-compose-check -f FILE up -d late-1"):
        assert said in header


def test_generated_commands_are_accepted_by_peer_start_with_the_scenario_settings(monkeypatch):
    p = _scenario_plan()
    doc = yaml.safe_load(compose_yaml(p))
    peer_id = Identity.generate().peer_id
    for planned in p.peers:
        svc = doc["services"][planned.name]
        assert svc["command"] == peer_command(p, planned)
        env = dict(svc["environment"])
        if "SWARM_BOOTSTRAP_HOST" not in env:  # what the entrypoint adds
            env["LEARNAE_BOOTSTRAP"] = f"/ip4/172.18.0.2/tcp/4010/p2p/{peer_id}"
        cfg = _peer_config(svc["command"], env, monkeypatch)
        assert cfg.shard == f"{planned.index}/5"
        assert cfg.rule == ("median" if planned.name == "peer-1" else "trimmed-mean")
        assert (cfg.dataset, cfg.partition, cfg.model, cfg.seed) == ("digits", "classes:3", "digits-mlp", 7)
        assert (cfg.max_steps, cfg.batch_size, cfg.learning_rate, cfg.optimizer) == (300, 16, 0.02, "adam")
        assert (cfg.merge_every, cfg.publish_every, cfg.merge_k) == (4, 3, 2)
        assert (cfg.weight_cap, cfg.merge_wait_s, cfg.snapshot_encoding) == (0.4, 0.5, "float16")
        assert cfg.min_peers == (3 if planned.start else 0), "the four starters wait for each other"
        assert (cfg.mdns, cfg.storage, cfg.data_dir) == (False, "embedded", Path("/data"))


def test_generated_kubo_file_adds_the_node_and_points_every_peer_at_it(monkeypatch):
    p = _scenario_plan("name: tiny\nduration: 60s\npeers: 2\n")
    text = compose_yaml(p, kubo=True)
    doc = yaml.safe_load(text)
    _check_spec_keys(doc)
    _named_volumes_only(doc)
    assert list(doc["services"]) == ["peer-0", "peer-1", "kubo"]
    assert "kubo-data" in doc["volumes"] and "profiles" not in doc["services"]["kubo"]
    assert "--kubo: the peers keep snapshots and shards in the `kubo` service" in text
    for name in ("peer-0", "peer-1"):
        svc = doc["services"][name]
        assert svc["depends_on"]["kubo"] == {"condition": "service_healthy"}
        env = dict(svc["environment"], LEARNAE_BOOTSTRAP=f"/dns4/peer-0/tcp/4010/p2p/{Identity.generate().peer_id}")
        cfg = _peer_config(svc["command"], env, monkeypatch)
        assert (cfg.storage, cfg.kubo_api) == ("kubo", "/dns4/kubo/tcp/5001")
    plain = yaml.safe_load(compose_yaml(p))
    assert "kubo" not in plain["services"] and "kubo-data" not in plain["volumes"]
    assert "--storage" not in plain["services"]["peer-1"]["command"]
    clash = _scenario_plan("name: clash\nduration: 60s\npeers: [peer-0, kubo]\n")
    with pytest.raises(ScenarioError, match="named kubo"):
        compose_yaml(clash, kubo=True)
    assert "kubo" in yaml.safe_load(compose_yaml(clash))["services"]
    # one peer alone waits for nobody
    solo = _scenario_plan("name: solo\nduration: 60s\npeers: 1\n")
    assert "--min-peers" not in peer_command(solo, solo.peers[0])


def test_scenario_compose_command_writes_the_file(tmp_path):
    scenario = tmp_path / "churn.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "compose.generated.yaml"
    result = CliRunner().invoke(cli, ["scenario", "compose", str(scenario), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.read_text() == compose_yaml(_scenario_plan())
    with_kubo = CliRunner().invoke(cli, ["scenario", "compose", str(scenario), "--kubo"], catch_exceptions=False)
    assert with_kubo.exit_code == 0 and "kubo" in yaml.safe_load(with_kubo.output)["services"]


def test_scenario_compose_as_a_user_runs_it(tmp_path, learnae_cli):
    scenario = tmp_path / "small.yaml"
    scenario.write_text("name: small\nduration: 60s\npeers: 3\npartition: classes:4\n")
    done = subprocess.run([*learnae_cli, "scenario", "compose", str(scenario)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(yaml.safe_load(done.stdout)["services"]) == ["peer-0", "peer-1", "peer-2"]
    scenario.write_text("name: small\nduration: 60s\npeers: 3\nmerge: {rule: average}\n")
    bad = subprocess.run([*learnae_cli, "scenario", "compose", str(scenario)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "merge.rule" in bad.stderr and bad.stdout == ""


def test_compose_module_imports_neither_tensorflow_nor_libp2p():
    code = ("import sys, learnae.scenario.compose; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'libp2p', 'trio') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_docs_say_how_to_run_it_and_what_was_tested():
    text = (REPO / "docs" / "docker.md").read_text()
    for said in ("docker build -t learnae .", "docker compose up", "PEERS=", "--profile kubo",
                 "learnae scenario compose", "learnae peer status", "not tested"):
        assert said in text
    assert "(docs/docker.md)" in (REPO / "README.md").read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose (Compose 1.29) here")
@pytest.mark.parametrize("which", ["compose.yaml", "generated", "generated with kubo"])
def test_compose_1_29_accepts_the_files(tmp_path, which):
    """``docker-compose config`` parses and checks a file without an engine: it refused `name:` once."""
    if which == "compose.yaml":
        path = REPO / "compose.yaml"
    else:
        path = tmp_path / "generated.yaml"
        path.write_text(compose_yaml(_scenario_plan(), kubo=which.endswith("kubo")))
    done = subprocess.run(["docker-compose", "-f", str(path), "--project-directory", str(REPO), "config", "-q"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PEERS": "3"})
    assert done.returncode == 0, done.stderr
