"""Logging set-up from one environment variable.

``LEARNAE_LOG`` holds a comma-separated list: a bare level sets learnae's level
(default ``warning``), ``logger=level`` sets one subsystem, learnae's or a
library's. Example::

    LEARNAE_LOG=info,learnae.gossip=debug,libp2p=warning learnae peer start

Libraries (py-libp2p, zeroconf, TensorFlow's Python side...) are silent by
default (``critical``): their expected transient troubles (a peer that left, a
stream reset, a DHT query to a peer that went away) are learnae's to report, in
its own words, at the level they deserve. Name a library's logger to open it.
"""

from __future__ import annotations

import logging
import os

from learnae.errors import ConfigError

__all__ = ["parse_log_spec", "configure_logging", "adopt_library_loggers"]

LIBRARY_DEFAULT = "critical"  # libraries' loggers, unless LEARNAE_LOG names them
_library_levels: dict[str, str] = {}  # set by configure_logging: library logger -> level asked for

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
    """Configure logging from ``spec`` (or ``$LEARNAE_LOG``).

    Logs go to stderr, so stdout stays clean for results (CIDs, JSON). learnae's
    loggers log at ``default`` (or the spec's bare level); every other logger at
    :data:`LIBRARY_DEFAULT` unless the spec names it.
    """
    spec = os.environ.get("LEARNAE_LOG", "") if spec is None else spec
    level, per_logger = parse_log_spec(f"{default},{spec}")
    logging.basicConfig(
        level=LIBRARY_DEFAULT.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    logging.getLogger("learnae").setLevel(level.upper())
    _library_levels.clear()
    for name, lvl in per_logger.items():
        logging.getLogger(name).setLevel(lvl.upper())
        if name != "learnae" and not name.startswith("learnae."):
            _library_levels[name] = lvl
    adopt_library_loggers()


def adopt_library_loggers() -> None:
    """Route py-libp2p's loggers through ours, at the level configured.

    py-libp2p configures its ``libp2p`` logger when it is imported (no handler, no
    propagation: Python then prints its warnings bare on stderr), so this is called
    again once it has been imported (:mod:`learnae.gossip.host` does).
    """
    lib = logging.getLogger("libp2p")
    lib.handlers.clear()
    lib.propagate = True
    lib.setLevel(_library_levels.get("libp2p", LIBRARY_DEFAULT).upper())
