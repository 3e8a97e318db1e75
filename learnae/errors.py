"""Every error learnae raises, grouped by who is at fault.

The tree::

    LearnaeError
    ├── UserError (ValueError)            the user gave bad input: exit code 2, one line
    │   ├── ConfigError                   a config key, flag or env variable has a bad value
    │   ├── KeyFileError                  identity.key missing, unreadable, too open or malformed
    │   └── ScenarioError                 a scenario YAML file does not validate
    ├── RemoteError                       a remote peer sent bad data: log, count, drop, never crash
    │   ├── InvalidBlockError             a block does not match its CID, or is too large
    │   ├── InvalidEntryError             a ledger entry fails decoding, signature or chain checks
    │   └── InvalidSnapshotError          snapshot bytes are malformed, mismatched or not finite
    ├── ServiceError                      an external service or the network failed (has __cause__)
    │   ├── KuboError                     the Kubo RPC API is unreachable or answered an error
    │   └── FetchError                    no provider delivered a block before its deadline
    └── StoreError                        local persistent state is damaged (a corrupt block on disk)

The CLI maps :class:`UserError` to exit code 2 and any other :class:`LearnaeError`
to exit code 1, printing ``learnae: error: <message>`` on one line.

Packages may subclass these leaves, but should not add new roots: a caller
that wants "anything a remote peer got wrong" catches :class:`RemoteError`.
"""

from __future__ import annotations

__all__ = [
    "only_exception",
    "LearnaeError",
    "UserError",
    "ConfigError",
    "KeyFileError",
    "ScenarioError",
    "RemoteError",
    "InvalidBlockError",
    "InvalidEntryError",
    "InvalidSnapshotError",
    "ServiceError",
    "KuboError",
    "FetchError",
    "StoreError",
]


class LearnaeError(Exception):
    """Root of every error learnae raises on purpose."""


class UserError(LearnaeError, ValueError):
    """The user gave bad input. The message names the input and the fix."""


class ConfigError(UserError):
    """A config value (file key, flag or ``LEARNAE_*`` variable) is invalid.

    Attributes:
        key: the config key at fault, e.g. ``"merge_every"``.
        source: where the bad value came from, e.g. ``"env LEARNAE_MERGE_EVERY"``.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        super().__init__(message)
        self.key = key
        self.source = source


class KeyFileError(UserError):
    """The identity key file is missing, unreadable, readable by others, or malformed."""


class ScenarioError(UserError):
    """A scenario file does not validate; the message names the YAML path of the bad key."""


class RemoteError(LearnaeError):
    """A remote peer sent data that fails validation.

    Never fatal to a peer: the receiver logs it, counts it by :attr:`reason`,
    drops the data and may lower the sender's score.
    """

    reason: str = "invalid"

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidBlockError(RemoteError):
    """A block's bytes do not hash to its CID, or it exceeds the block size limit."""

    reason = "invalid-block"


class InvalidEntryError(RemoteError):
    """A ledger entry is undecodable, has a bad schema or signature, or breaks its chain."""

    reason = "invalid-entry"


class InvalidSnapshotError(RemoteError):
    """Snapshot bytes are malformed, have the wrong fingerprint or shapes, or are not finite."""

    reason = "invalid-snapshot"


class ServiceError(LearnaeError):
    """An external service or the network failed; the original error is ``__cause__``."""


class KuboError(ServiceError):
    """The Kubo daemon's RPC API is unreachable or returned an error."""


class FetchError(ServiceError):
    """No provider delivered the requested content before the deadline."""


class StoreError(LearnaeError):
    """Local persistent state is damaged (e.g. a block file on disk fails its CID check)."""


def only_exception(exc: BaseException) -> BaseException | None:
    """The one exception inside (nested) exception groups, ``exc`` itself if it is no group,
    or None when the groups hold several (trio nurseries wrap what their tasks raised)."""
    leaves, stack = [], [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        else:
            leaves.append(e)
    return leaves[0] if len(leaves) == 1 else None
