"""Logging set-up from one environment variable.

``LEARNAE_LOG`` holds a comma-separated list: a bare level sets the default,
``logger=level`` sets one subsystem. Example::

    LEARNAE_LOG=info,learnae.gossip=debug,libp2p=warning learnae peer start
"""

from __future__ import annotations

import logging
import os

from learnae.errors import ConfigError

__all__ = ["parse_log_spec", "configure_logging"]

_LEVELS = {"debug", "info", "warning", "error", "critical"}


def parse_log_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Parse a ``LEARNAE_LOG`` value into ``(default_level, {logger: level})``.

    Raises:
        ConfigError: on an unknown level name.
    """
    default = "warning"
    per_logger: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, level = part.rpartition("=")
        level = level.strip().lower()
        if level not in _LEVELS:
            raise ConfigError(
                f"LEARNAE_LOG: unknown level {level!r} in {part!r}; "
                f"use one of {', '.join(sorted(_LEVELS))}",
                key="LEARNAE_LOG",
            )
        if name:
            per_logger[name.strip()] = level
        else:
            default = level
    return default, per_logger


def configure_logging(spec: str | None = None, *, default: str = "warning") -> None:
    """Configure the root logger from ``spec`` (or ``$LEARNAE_LOG``).

    Logs go to stderr, so stdout stays clean for results (CIDs, JSON).
    """
    spec = os.environ.get("LEARNAE_LOG", "") if spec is None else spec
    level, per_logger = parse_log_spec(f"{default},{spec}")
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for name, lvl in per_logger.items():
        logging.getLogger(name).setLevel(lvl.upper())
