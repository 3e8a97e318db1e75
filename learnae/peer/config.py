"""``PeerConfig``: every setting of a peer, with a default and a unit.

Precedence, highest first:

1. a CLI flag (``--merge-every 8``),
2. an environment variable ``LEARNAE_<KEY>`` (``LEARNAE_MERGE_EVERY=8``),
3. the config file, ``<data-dir>/config.toml`` or ``--config FILE`` (``merge_every = 8``),
4. the default below.

The data directory itself comes from ``--data-dir``, else ``$LEARNAE_HOME``, else
``~/.learnae``; it cannot be set in the config file that lives inside it.

Example:
    >>> cfg, sources = load_config(cli={"merge_every": 4}, env={})
    >>> cfg.merge_every, sources["merge_every"]
    (4, 'flag --merge-every')

Unknown keys and bad values raise :class:`~learnae.errors.ConfigError` naming
the key, where the value came from and what is expected.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learnae.errors import ConfigError

__all__ = [
    "PeerConfig",
    "CONFIG_FILE",
    "ENV_PREFIX",
    "default_data_dir",
    "load_config",
    "config_fields",
    "flag_name",
    "env_name",
]

CONFIG_FILE = "config.toml"
ENV_PREFIX = "LEARNAE_"

# Averaging rules the peer can be configured with (learnae.averaging implements them).
RULES = (
    "mean", "weighted", "staleness", "consensus", "push-sum",
    "median", "trimmed-mean", "krum", "multi-krum", "centered-clip",
)


# -- validators: return an error text, or None when the value is fine -----------------

def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _fraction(v: float) -> str | None:
    return None if 0 < v <= 1 else "must be in (0, 1]"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a TCP port, 0-65535 (0 = off)"


def _choice(*options: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in options else f"must be one of: {', '.join(options)}"
    return check


def _multiaddr(v: str) -> str | None:
    ok = re.fullmatch(r"(/(ip4|ip6|dns|dns4|dns6)/[^/]+/tcp/(\d+))(/p2p/\w+)?", v)
    if not ok:
        return "must be a TCP multiaddr like /ip4/127.0.0.1/tcp/4010"
    if int(ok[3]) > 65535:
        return f"has TCP port {ok[3]}: a port is 0-65535 (0 = any free port)"
    return None


def _peer_addrs(vs: list[str]) -> str | None:
    for v in vs:
        relay, circuit, dest = v.partition("/p2p-circuit")  # a peer behind NAT, through its relay
        if circuit and re.fullmatch(r"/p2p/\w+", dest) and "/p2p/" in relay and not _multiaddr(relay):
            continue
        if _multiaddr(v) or "/p2p/" not in v:
            return (f"has {v!r}: each must be a full peer address like /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW..., "
                    "as printed on the first line of `learnae peer start`")
    return None


def _shard(v: str) -> str | None:
    if v == "":
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", v)
    if not m or int(m[2]) < 1:
        return "must be I/N with 0 <= I < N, e.g. 0/4 (empty = the whole dataset)"
    if int(m[1]) >= int(m[2]):
        return f"index {m[1]} is out of range for {m[2]} shards: use 0..{int(m[2]) - 1}"
    return None


def _partition(v: str) -> str | None:
    if v == "iid" or re.fullmatch(r"dirichlet:\d*\.?\d+", v) or re.fullmatch(r"classes:[1-9]\d*", v):
        return None
    return "must be iid, dirichlet:ALPHA (e.g. dirichlet:0.5) or classes:K (e.g. classes:2)"


def _opt(default: Any, unit: str, help: str, check: Callable | None = None) -> Any:
    return field(default=default, metadata={"unit": unit, "help": help, "check": check})


def _opt_list(unit: str, help: str, check: Callable | None = None) -> Any:
    return field(default_factory=list, metadata={"unit": unit, "help": help, "check": check})


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Everything a peer needs to run. Every field has a default and a unit."""

    # -- identity and swarm ---------------------------------------------------
    data_dir: Path = _opt(Path("~/.learnae"), "path", "where the key, blocks, ledger and checkpoints live")
    swarm: str = _opt("default", "name", "swarm name; with the model fingerprint it picks the gossip topic")
    # -- network --------------------------------------------------------------
    listen: str = _opt("/ip4/0.0.0.0/tcp/4010", "multiaddr", "address to listen on (tcp port 0 = any free port)", _multiaddr)
    bootstrap: list[str] = _opt_list("multiaddrs", "peers to dial at start (any peer can be one)", _peer_addrs)
    mdns: bool = _opt(False, "on/off", "find peers on the local network by multicast DNS (sends LAN multicast)")
    dht: bool = _opt(True, "on/off", "run the Kademlia DHT (server mode) among the swarm's peers")
    relay: bool = _opt(False, "on/off", "relay for peers behind NAT (circuit relay v2, resource-limited); for a peer others can dial")
    behind_nat: bool = _opt(False, "on/off", "this peer cannot be dialed from outside its network: reserve a slot on each bootstrap peer that relays (relay = true) and announce the relayed address")
    # -- model and data ---------------------------------------------------------
    model: str = _opt("digits-mlp", "spec", "preset name, module:function or a .keras file")
    dataset: str = _opt("digits", "spec", "digits, an .npz file with x/y, or a shard manifest CID")
    shard: str = _opt("", "I/N", "this peer's shard of the dataset (empty = all of it)", _shard)
    partition: str = _opt("iid", "scheme", "how the dataset is split into shards: iid, dirichlet:ALPHA, classes:K", _partition)
    seed: int = _opt(0, "integer", "seed for partitioning, initialisation and neighbour choice")
    # -- training ------------------------------------------------------------------
    batch_size: int = _opt(32, "samples", "samples per training step", _positive)
    learning_rate: float = _opt(0.05, "1", "optimizer learning rate", _positive)
    optimizer: str = _opt("sgd", "name", "sgd (with momentum) or adam", _choice("sgd", "adam"))
    momentum: float = _opt(0.9, "1", "SGD momentum", _non_negative)
    max_steps: int = _opt(0, "steps", "stop after this many local steps (0 = run until stopped)", _non_negative)
    # -- gossip, merge, publish --------------------------------------------------
    publish_every: int = _opt(5, "steps", "publish a snapshot every this many local steps", _positive)
    publish_interval_s: float = _opt(0.0, "seconds", "publish at most one snapshot every this many seconds, however fast the peer trains (0 = every publish_every steps)", _non_negative)
    merge_every: int = _opt(5, "steps", "merge neighbours' snapshots every this many local steps", _positive)
    merge_k: int = _opt(3, "peers", "merge up to this many neighbours' freshest snapshots", _positive)
    rule: str = _opt("mean", "name", "averaging rule", _choice(*RULES))
    weight_cap: float = _opt(0.5, "fraction", "largest share of a merge any one neighbour may have", _fraction)
    fetch_timeout_s: float = _opt(10.0, "seconds", "deadline for fetching one snapshot", _positive)
    merge_wait_s: float = _opt(2.0, "seconds", "at a merge, wait this long at most for a fresh neighbour snapshot (bounded staleness; 0 = never wait)", _non_negative)
    live_s: float = _opt(10.0, "seconds", "a neighbour silent this long is not waited for at merges (bounded staleness)", _positive)
    min_peers: int = _opt(0, "peers", "wait until this many other members of the swarm (peers on its topic, authors of its entries) are present before the first training step", _non_negative)
    catch_up_s: float = _opt(10.0, "seconds", "on a first start with peers to dial, wait this long at most for their snapshots and start from their average", _non_negative)
    snapshot_encoding: str = _opt("float32", "name", "snapshot tensor encoding", _choice("float32", "float16", "int8"))
    # -- bookkeeping -------------------------------------------------------------------
    checkpoint_every: int = _opt(50, "steps", "save a checkpoint every this many local steps", _positive)
    status_every_s: float = _opt(5.0, "seconds", "print a status line and a metrics record this often", _positive)
    metrics_port: int = _opt(0, "port", "serve Prometheus metrics on 127.0.0.1:PORT (0 = off)", _port)
    # -- storage -----------------------------------------------------------------------
    storage: str = _opt("embedded", "name", "block store: embedded (no daemon) or kubo", _choice("embedded", "kubo"))
    kubo_api: str = _opt("/ip4/127.0.0.1/tcp/5001", "multiaddr", "Kubo RPC API address when storage = kubo", _multiaddr)
    # -- simulation ----------------------------------------------------------------------
    faults: str = _opt("", "path", "JSON file of injected faults (latency, loss, partition, slowdown, attack), re-read when it changes; written by `learnae scenario run` (empty = none)")


def config_fields() -> list[dataclasses.Field]:
    """The fields of :class:`PeerConfig` in declaration order."""
    return list(dataclasses.fields(PeerConfig))


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$LEARNAE_HOME`` if set, else ``~/.learnae``."""
    env = os.environ if env is None else env
    return Path(env.get("LEARNAE_HOME") or "~/.learnae").expanduser()


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _coerce(f: dataclasses.Field, raw: Any, source: str) -> Any:
    """Turn ``raw`` (a TOML value, env string or CLI value) into the field's type."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"{f.name} = {raw!r} (from {source}) is not {expected}", key=f.name, source=source
        )

    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
            return False
        raise bad("a boolean (true/false)")
    if kind == "int":
        if isinstance(raw, bool):
            raise bad("an integer")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise bad("an integer") from None
    if kind == "float":
        if isinstance(raw, bool):
            raise bad("a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise bad("a number") from None
    if kind == "list[str]":
        if isinstance(raw, str):
            return [p.strip() for p in raw.split(",") if p.strip()]
        if isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
            return list(raw)
        raise bad("a list of strings")
    if kind == "Path":
        if not isinstance(raw, (str, os.PathLike)):
            raise bad("a path")
        return Path(raw).expanduser()
    if not isinstance(raw, str):
        raise bad("a string")
    return raw


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the file or remove it", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}", source=str(path)) from None
    return data


def load_config(
    cli: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> tuple[PeerConfig, dict[str, str]]:
    """Resolve the effective config and where each value came from.

    Args:
        cli: values given as CLI flags, by field name; ``None`` values are ignored
            (a flag the user did not pass).
        env: environment (defaults to ``os.environ``).
        config_file: explicit ``--config FILE``; it must exist. Without it,
            ``<data-dir>/config.toml`` is read if present.

    Returns:
        ``(config, sources)``, where ``sources[key]`` is ``"default"``,
        ``"file <path>"``, ``"env LEARNAE_X"`` or ``"flag --x"``.

    Raises:
        ConfigError: an unknown key in the file, or a value of the wrong type or range.
    """
    env = os.environ if env is None else env
    cli = {k: v for k, v in (cli or {}).items() if v is not None and v != ()}
    fields = {f.name: f for f in config_fields()}
    for key in cli:
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r}", key=key)

    if "data_dir" in cli:
        data_dir, dd_source = Path(cli["data_dir"]).expanduser(), f"flag {flag_name('data_dir')}"
    elif env.get("LEARNAE_HOME"):
        data_dir, dd_source = default_data_dir(env), "env LEARNAE_HOME"
    else:
        data_dir, dd_source = default_data_dir(env), "default"

    if config_file is not None:
        config_file = Path(config_file).expanduser()
        if not config_file.is_file():
            raise ConfigError(f"--config {config_file}: no such file; check the path", source=str(config_file))
    path = config_file or data_dir / CONFIG_FILE
    file_values = _read_config_file(path)

    values: dict[str, Any] = {"data_dir": data_dir}
    sources: dict[str, str] = {"data_dir": dd_source}
    for key, raw in file_values.items():
        if key == "data_dir":
            raise ConfigError(
                f"{path}: data_dir cannot be set in the config file; use --data-dir or LEARNAE_HOME",
                key=key, source=str(path),
            )
        if key not in fields:
            raise ConfigError(
                f"{path}: unknown key {key!r}; see `learnae config show` for the valid keys",
                key=key, source=str(path),
            )
        values[key] = _coerce(fields[key], raw, f"file {path}")
        sources[key] = f"file {path}"
    for key, f in fields.items():
        if key != "data_dir" and env_name(key) in env:
            source = f"env {env_name(key)}"
            values[key] = _coerce(f, env[env_name(key)], source)
            sources[key] = source
    for key, raw in cli.items():
        if key == "data_dir":
            continue
        source = f"flag {flag_name(key)}"
        values[key] = _coerce(fields[key], raw, source)
        sources[key] = source

    for key, f in fields.items():
        sources.setdefault(key, "default")
        check = f.metadata.get("check")
        if check and key in values and (err := check(values[key])):
            raise ConfigError(
                f"{key} = {values[key]!r} (from {sources[key]}) {err}", key=key, source=sources[key]
            )
    return PeerConfig(**values), sources
