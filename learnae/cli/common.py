"""Options and helpers shared by every command group."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from learnae.peer.config import default_data_dir

__all__ = ["data_dir_option", "format_option", "resolve_data_dir", "emit_json"]


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


def resolve_data_dir(data_dir: Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
