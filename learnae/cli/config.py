"""`learnae config`: show the effective peer configuration."""

from __future__ import annotations

from pathlib import Path

import click

from learnae.cli.common import config_options, echo_settings, format_option
from learnae.peer.config import load_config

__all__ = ["group"]


@click.group(name="config")
def group() -> None:
    """Inspect the peer configuration (flags > LEARNAE_* env > config.toml > defaults)."""


@group.command("show")
@config_options
@format_option
def show(config_file: Path | None, fmt: str, **flags) -> None:
    """Print every setting in effect, its unit and where its value came from.

    Takes every flag `learnae peer start` takes, so the settings a start would
    use, and which of them a flag sets, can be checked before starting.

    \b
    Example:
      learnae config show --data-dir a --merge-every 8     # merge_every ... flag --merge-every
    """
    cfg, sources = load_config(flags, config_file=config_file)
    echo_settings(cfg, sources, fmt)
