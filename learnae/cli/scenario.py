"""`learnae scenario`: Simulate swarms of peers from scenario YAML files."""

from __future__ import annotations

import click

__all__ = ["group"]


@click.group(name="scenario")
def group() -> None:
    """Simulate swarms of peers from scenario YAML files."""
