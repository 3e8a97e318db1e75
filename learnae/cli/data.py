"""`learnae data`: Split, publish and inspect dataset shards."""

from __future__ import annotations

import click

__all__ = ["group"]


@click.group(name="data")
def group() -> None:
    """Split, publish and inspect dataset shards."""
