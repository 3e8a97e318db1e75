"""`learnae peer`: Run and inspect a training peer."""

from __future__ import annotations

import click

__all__ = ["group"]


@click.group(name="peer")
def group() -> None:
    """Run and inspect a training peer."""
