"""Options and helpers shared by every command group."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from learnae.fsutil import prepare_dir
from learnae.peer.config import PeerConfig, config_fields, default_data_dir, flag_name

__all__ = ["data_dir_option", "format_option", "config_options", "resolve_data_dir", "data_dir_name",
           "prepare_data_dir", "reading_store", "settings_rows", "echo_settings", "emit_json"]


def data_dir_option(f):
    """``--data-dir DIR`` (default ``$LEARNAE_HOME`` or ``~/.learnae``)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Peer data directory [default: $LEARNAE_HOME or ~/.learnae].",
    )(f)


def format_option(f):
    """``--format text|json`` for listing commands."""
    return click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
        help="Output format.",
    )(f)


def config_options(f):
    """One option per :class:`~learnae.peer.config.PeerConfig` field (``--merge-every`` ...) and ``--config FILE``.

    Generated from the config class, so ``peer start``, ``config show``, the
    ``LEARNAE_*`` variables and ``config.toml`` keys never drift apart. A value
    is passed on as given (None when the flag is absent) and checked by
    :func:`~learnae.peer.config.load_config`.
    """
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


def settings_rows(cfg: PeerConfig, sources: dict[str, str]) -> list[dict]:
    """Every setting as ``{key, value, unit, source, help}``, in declaration order."""
    rows = []
    for f in config_fields():
        value = getattr(cfg, f.name)
        rows.append({"key": f.name, "value": str(value) if isinstance(value, Path) else value,
                     "unit": f.metadata["unit"], "source": sources[f.name], "help": f.metadata["help"]})
    return rows


def echo_settings(cfg: PeerConfig, sources: dict[str, str], fmt: str = "text") -> None:
    """Print the settings in effect: a table (key, value, unit, source) or JSON rows."""
    rows = settings_rows(cfg, sources)
    if fmt == "json":
        emit_json(rows)
        return
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        value = r["value"]
        shown = ",".join(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else value
        click.echo(f"{r['key']:<{width}}  {shown!s:<24} {r['unit']:<10} {r['source']}")


def resolve_data_dir(data_dir: Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def data_dir_name(data_dir: Path | None) -> str:
    """How the user chose the data dir, for messages: ``--data-dir``, ``LEARNAE_HOME`` or ``data dir``."""
    if data_dir is not None:
        return "--data-dir"
    return "LEARNAE_HOME" if os.environ.get("LEARNAE_HOME") else "data dir"


def prepare_data_dir(data_dir: Path | None) -> Path:
    """The data dir a writing command uses, created and checked writable.

    Raises:
        UserError: it cannot be created or written; one line naming ``--data-dir`` (or
            ``LEARNAE_HOME``) and the fix.
    """
    return prepare_dir(resolve_data_dir(data_dir), what=data_dir_name(data_dir))


@contextmanager
def reading_store(data_dir: Path | None) -> Iterator[Any]:
    """The data dir's store, for a command that reads it (``ipfs get``, ``data inspect`` ...).

    A ``--data-dir`` the user names is used (created if need be: fetched blocks stay
    there). The default one (``$LEARNAE_HOME`` or ``~/.learnae``) is never created
    by a read: when it does not exist, an embedded store in a temporary directory
    stands in (removed afterwards). There is nothing local to read then, and blocks
    fetched with ``--from`` still arrive.
    """
    from learnae.peer.config import load_config
    from learnae.storage.store import EmbeddedStore, open_store

    home = prepare_data_dir(data_dir) if data_dir is not None else resolve_data_dir(None)
    cfg, _ = load_config(cli={"data_dir": home})
    if cfg.storage != "embedded" or home.is_dir():
        yield open_store(cfg)
        return
    with tempfile.TemporaryDirectory(prefix="learnae-read-") as scratch:
        yield EmbeddedStore(Path(scratch) / "blocks")


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
