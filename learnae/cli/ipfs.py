"""`learnae ipfs`: Content-addressed storage: add, get, pin and serve blocks."""

from __future__ import annotations

import click

__all__ = ["group"]


@click.group(name="ipfs")
def group() -> None:
    """Content-addressed storage: add, get, pin and serve blocks."""
