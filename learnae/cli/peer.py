"""`learnae peer`: run a training peer, and inspect one.

``learnae peer start`` takes one flag per :class:`~learnae.peer.config.PeerConfig`
field (``--merge-every``, ``--bootstrap`` ...), generated from the config class
so the flags, the ``LEARNAE_*`` variables and ``config.toml`` keys never drift
apart. Values are validated by :func:`~learnae.peer.config.load_config`, so a
bad flag gets the same one-line error as a bad config file.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import click

from learnae.cli import early_signals
from learnae.cli.common import (config_options, data_dir_name, echo_settings, emit_json, format_option,
                                prepare_data_dir, resolve_data_dir, settings_rows)
from learnae.errors import ConfigError, FetchError, UserError
from learnae.fsutil import prepare_dir
from learnae.peer.config import PeerConfig, load_config

__all__ = ["group", "config_options", "check_start"]

log = logging.getLogger("learnae.cli")


@click.group(name="peer")
@click.pass_context
def group(ctx: click.Context) -> None:
    """Run and inspect a training peer."""
    if ctx.invoked_subcommand != "start":  # `start` takes a deferred SIGINT once its runtime watches
        early_signals.resume()


def resolve(config_file: Path | None, flags: dict) -> PeerConfig:
    cfg, _ = load_config(flags, config_file=config_file)
    return cfg


_TCP_PORT = re.compile(r"/tcp/(\d+)")


def check_start(cfg: PeerConfig, sources: dict[str, str]) -> None:
    """What ``peer start`` can check in milliseconds, before TensorFlow loads (seconds).

    The data dir is created and must be writable (:func:`~learnae.fsutil.prepare_dir`);
    every TCP port of ``listen``, ``bootstrap`` and ``kubo_api`` is 0-65535; a
    ``faults`` file must exist (a missing one would silently inject nothing).

    Raises:
        UserError / ConfigError: one line naming the setting, where it came from, and the fix.
    """
    named = {"flag --data-dir": "--data-dir", "env LEARNAE_HOME": "LEARNAE_HOME"}.get(sources["data_dir"], "data dir")
    prepare_dir(cfg.data_dir, what=named)
    for key in ("listen", "bootstrap", "kubo_api"):
        value = getattr(cfg, key)
        for addr in value if isinstance(value, list) else [value]:
            for port in _TCP_PORT.findall(addr):
                if int(port) > 65535:
                    raise ConfigError(f"{key} = {addr!r} (from {sources[key]}) has TCP port {port}: a port is "
                                      "0-65535 (0 = any free port)", key=key, source=sources[key])
    if cfg.faults and not Path(cfg.faults).expanduser().is_file():
        raise ConfigError(f"faults = {cfg.faults!r} (from {sources['faults']}): no such file; give the JSON "
                          "faults file (`learnae scenario run` writes one per peer) or leave it empty",
                          key="faults", source=sources["faults"])


@group.command("start")
@config_options
@click.option("--print-config", is_flag=True,
              help="Print the settings this start would use (as `learnae config show`) and exit.")
def start(config_file: Path | None, print_config: bool, **flags) -> None:
    """Join a swarm and train with it until stopped (Ctrl-C leaves gracefully).

    The first line printed (once the peer has joined its swarm) is its full
    multiaddr (with /p2p/<peer-id>): give it to other peers as --bootstrap.
    Listening on every interface (--listen /ip4/0.0.0.0/tcp/PORT, the default),
    that line is for peers on this machine; the addresses peers on other machines
    dial follow on stderr. Defaults come from `learnae config show`; every flag can
    also be set as LEARNAE_<KEY> or in <data-dir>/config.toml.

    \b
    Example (two terminals):
      learnae peer start --data-dir a --listen /ip4/127.0.0.1/tcp/4010 --shard 0/2
      learnae peer start --data-dir b --listen /ip4/127.0.0.1/tcp/4011 --shard 1/2 \\
          --bootstrap /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...
    """
    if not print_config:  # before the config file inside it is read: a data dir in the way is named as such
        prepare_data_dir(flags["data_dir"])
    cfg, sources = load_config(flags, config_file=config_file)
    if print_config:
        echo_settings(cfg, sources)
        return
    check_start(cfg, sources)
    log.info("settings: %s", ", ".join(f"{r['key']}={r['value']} ({r['source']})"
                                       for r in settings_rows(cfg, sources) if r["source"] != "default"))

    from learnae.peer.runtime import run_peer

    run_peer(cfg, early_signal=early_signals.take)


@group.command("status")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Peer data directory [default: $LEARNAE_HOME or ~/.learnae].")
@format_option
def status(data_dir: Path | None, fmt: str) -> None:
    """Report a running or stopped peer's progress from its data dir."""
    from learnae.peer.status import read_status

    cfg = resolve(None, {"data_dir": data_dir})
    info = read_status(cfg.data_dir).to_json()
    if fmt == "json":
        emit_json(info)
        return
    if info.get("last_update") is not None:  # a person reads a time and an age, not an epoch
        info["last_update"] = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["last_update"]))
                               + f" ({info.pop('last_update_age_s'):.0f} s ago)")
    for key, value in info.items():
        if key == "test_accuracy":
            key = "test_accuracy"  # held-out split, all classes
            value = "-" if value is None else f"{value:.3f} (held-out test split, all classes)"
        elif key == "accuracy":
            key = "val_accuracy"
            value = "-" if value is None else f"{value:.3f} (this peer's own validation slice)"
        click.echo(f"{key:<17} {value}")


@group.command("eval")
@click.option("--model-cid", default=None, help="CID of the snapshot to evaluate.")
@click.option("--latest", default=None, metavar="self|any|PEER_ID",
              help="Evaluate the newest snapshot this data dir keeps: its own (self), anyone's (any), or a peer's.")
@click.option("--model", "model_spec", default="digits-mlp", show_default=True,
              help="The swarm's model spec (preset, module:function or .keras file).")
@click.option("--dataset", default="digits", show_default=True, help="digits or an .npz file with x/y.")
@click.option("--split", type=click.Choice(["test", "validation", "train", "all"]), default="test",
              show_default=True, help="Which part of the dataset (split with --seed, as peers do).")
@click.option("--seed", type=int, default=0, show_default=True, help="Split seed (the swarm's --seed).")
@click.option("--from", "providers", multiple=True, metavar="MULTIADDR",
              help="Peers to fetch the snapshot from when it is not local (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data dir whose store is searched and filled [default: $LEARNAE_HOME or ~/.learnae].")
@format_option
def eval_(model_cid, latest, model_spec, dataset, split, seed, providers, data_dir, fmt) -> None:
    """Fetch a snapshot by CID (or the newest one kept) and report its accuracy on a dataset.

    A peer keeps its own two newest snapshots and the neighbours' it merged lately,
    not every snapshot it ever announced: --latest names one that is kept.

    \b
    Examples:
      learnae peer eval --latest self --data-dir a
      learnae peer eval --model-cid bafybei... --from /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...
    """
    from dataclasses import asdict

    from learnae.peer.evaluate import evaluate_snapshot
    from learnae.peer.exchange import check_peer_addrs

    check_peer_addrs(providers)  # before TensorFlow loads: a typo costs milliseconds
    if (model_cid is None) == (latest is None):
        raise UserError("pass exactly one of --model-cid CID and --latest self|any|PEER_ID")
    if latest is not None:
        from learnae.peer.evaluate import kept_snapshot

        model_cid = kept_snapshot(resolve_data_dir(data_dir), latest)
    home = resolve_data_dir(data_dir)
    if not home.is_dir() and not providers:  # nothing local to find, and a read must not create a data dir
        raise FetchError(f"snapshot {model_cid} is not in {home} ({data_dir_name(data_dir)} does not exist); "
                         "pass --from PEER_MULTIADDR to fetch it, or the --data-dir of a peer that has it")
    prepare_data_dir(data_dir)  # fetched blocks are kept there
    cfg = resolve(None, {"data_dir": data_dir})
    result = evaluate_snapshot(cfg.data_dir, model_cid, model=model_spec, dataset=dataset, split=split,
                               seed=seed, providers=tuple(providers))
    if fmt == "json":
        emit_json(asdict(result))
    else:
        click.echo(f"{result.model}  step {result.step}  accuracy {result.accuracy:.4f}  "
                   f"loss {result.loss:.4f}  on {result.samples} {result.split} samples")
