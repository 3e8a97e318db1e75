"""`learnae scenario`: multi-peer simulations from scenario YAML files (not built yet)."""

from __future__ import annotations

import click

__all__ = ["group"]


@click.group(name="scenario")
def group() -> None:
    """Simulate swarms of peers from scenario YAML files (not built yet).

    Until the runner exists, `make demo` and `python -m bench.peer_swarm` start
    real multi-peer swarms on loopback.
    """
