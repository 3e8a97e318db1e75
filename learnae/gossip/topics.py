"""Swarm ids and topic names: ``/learnae/1/<swarm>/entries`` (docs/architecture.md, "Wire formats").

``<swarm>`` is a short hash of the swarm name and the model fingerprint, so
peers training different models never share a topic even if they pick the
same swarm name.

Example:
    >>> sid = swarm_id("digits", "ab12" * 16)
    >>> topic(sid) == f"/learnae/1/{sid}/entries"
    True
"""

from __future__ import annotations

import hashlib
import re

from learnae.errors import ConfigError

__all__ = ["swarm_id", "topic", "swarm_of_topic", "PROTOCOL_VERSION"]

PROTOCOL_VERSION = 1
SWARM_ID_CHARS = 16  # 64 bits of sha256: plenty to keep unrelated swarms apart
_TOPIC_RE = re.compile(r"/learnae/1/([0-9a-f]{16})/entries")


def swarm_id(name: str, fingerprint: str) -> str:
    """Return the 16-hex-char swarm id of a swarm name and model fingerprint.

    Raises:
        ConfigError: ``name`` is empty or has whitespace/slashes (it ends up in logs and paths).
    """
    if not name or re.search(r"[\s/]", name):
        raise ConfigError(
            f"swarm name {name!r} must be non-empty without spaces or slashes, e.g. 'digits'",
            key="swarm",
        )
    digest = hashlib.sha256(f"learnae-swarm\x00{name}\x00{fingerprint}".encode()).hexdigest()
    return digest[:SWARM_ID_CHARS]


def topic(swarm: str) -> str:
    """The GossipSub topic that carries a swarm's ledger entries."""
    return f"/learnae/{PROTOCOL_VERSION}/{swarm}/entries"


def swarm_of_topic(name: str) -> str | None:
    """The swarm id in a learnae topic name, or None for any other topic."""
    m = _TOPIC_RE.fullmatch(name)
    return m[1] if m else None
