"""`learnae ledger`: Read, verify and move the signed contribution ledger."""

from __future__ import annotations

import click

__all__ = ["group"]


@click.group(name="ledger")
def group() -> None:
    """Read, verify and move the signed contribution ledger."""
