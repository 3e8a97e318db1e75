"""`learnae config`: show the effective peer configuration."""

from __future__ import annotations

from pathlib import Path

import click

from learnae.cli.common import data_dir_option, emit_json, format_option
from learnae.peer.config import config_fields, load_config

__all__ = ["group"]


@click.group(name="config")
def group() -> None:
    """Inspect the peer configuration (flags > LEARNAE_* env > config.toml > defaults)."""


@group.command("show")
@data_dir_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file to read instead of <data-dir>/config.toml.")
@format_option
def show(data_dir: Path | None, config_file: Path | None, fmt: str) -> None:
    """Print every setting in effect, its unit and where its value came from."""
    cfg, sources = load_config({"data_dir": data_dir}, config_file=config_file)
    rows = []
    for f in config_fields():
        value = getattr(cfg, f.name)
        rows.append({
            "key": f.name,
            "value": str(value) if isinstance(value, Path) else value,
            "unit": f.metadata["unit"],
            "source": sources[f.name],
            "help": f.metadata["help"],
        })
    if fmt == "json":
        emit_json(rows)
        return
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        value = r["value"]
        shown = ",".join(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else value
        click.echo(f"{r['key']:<{width}}  {shown!s:<24} {r['unit']:<10} {r['source']}")
