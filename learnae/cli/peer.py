"""`learnae peer`: run a training peer, and inspect one.

``learnae peer start`` takes one flag per :class:`~learnae.peer.config.PeerConfig`
field (``--merge-every``, ``--bootstrap`` ...), generated from the config class
so the flags, the ``LEARNAE_*`` variables and ``config.toml`` keys never drift
apart. Values are validated by :func:`~learnae.peer.config.load_config`, so a
bad flag gets the same one-line error as a bad config file.
"""

from __future__ import annotations

from pathlib import Path

import click

from learnae.cli.common import emit_json, format_option
from learnae.peer.config import PeerConfig, config_fields, flag_name, load_config

__all__ = ["group", "config_options"]


@click.group(name="peer")
def group() -> None:
    """Run and inspect a training peer."""


def config_options(f):
    """Decorate a command with one option per PeerConfig field (and ``--config FILE``)."""
    for fld in reversed(config_fields()):
        help_text = f"{fld.metadata['help']} [{fld.metadata['unit']}]"
        kind = fld.type if isinstance(fld.type, str) else fld.type.__name__
        name = flag_name(fld.name)
        if kind == "bool":
            f = click.option(f"{name}/--no-{name[2:]}", fld.name, default=None, help=help_text)(f)
        elif kind == "list[str]":
            f = click.option(name, fld.name, multiple=True, metavar="VALUE", help=help_text + " (repeatable)")(f)
        else:
            f = click.option(name, fld.name, default=None, metavar=fld.metadata["unit"].upper().replace(" ", "_"),
                             help=help_text)(f)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help="Config file to read instead of <data-dir>/config.toml.")(f)


def resolve(config_file: Path | None, flags: dict) -> PeerConfig:
    cfg, _ = load_config(flags, config_file=config_file)
    return cfg


@group.command("start")
@config_options
def start(config_file: Path | None, **flags) -> None:
    """Join a swarm and train with it until stopped (Ctrl-C leaves gracefully).

    The first line printed is this peer's full multiaddr (with /p2p/<peer-id>):
    give it to other peers as --bootstrap. Defaults come from
    `learnae config show`; every flag can also be set as LEARNAE_<KEY> or in
    <data-dir>/config.toml.

    \b
    Example (two terminals):
      learnae peer start --data-dir a --listen /ip4/127.0.0.1/tcp/4010 --shard 0/2
      learnae peer start --data-dir b --listen /ip4/127.0.0.1/tcp/4011 --shard 1/2 \\
          --bootstrap /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...
    """
    from learnae.peer.runtime import run_peer

    run_peer(resolve(config_file, flags))


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
    for key, value in info.items():
        click.echo(f"{key:<14} {value}")


@group.command("eval")
@click.option("--model-cid", required=True, help="CID of the snapshot to evaluate.")
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
def eval_(model_cid, model_spec, dataset, split, seed, providers, data_dir, fmt) -> None:
    """Fetch any snapshot by CID and report its accuracy on a dataset.

    \b
    Example:
      learnae peer eval --model-cid bafybei... --from /ip4/127.0.0.1/tcp/4010/p2p/12D3KooW...
    """
    from dataclasses import asdict

    from learnae.peer.evaluate import evaluate_snapshot

    cfg = resolve(None, {"data_dir": data_dir})
    result = evaluate_snapshot(cfg.data_dir, model_cid, model=model_spec, dataset=dataset, split=split,
                               seed=seed, providers=tuple(providers))
    if fmt == "json":
        emit_json(asdict(result))
    else:
        click.echo(f"{result.model}  step {result.step}  accuracy {result.accuracy:.4f}  "
                   f"loss {result.loss:.4f}  on {result.samples} {result.split} samples")
