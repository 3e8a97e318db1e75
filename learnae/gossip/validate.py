"""The validator pipeline every announcement passes before it is delivered or forwarded.

py-libp2p runs topic validators inside ``push_msg``, after its own message
signature check and before the message is marked seen, handed to the
subscription and forwarded to the mesh. So a message this pipeline rejects
never leaves the peer that rejected it, and the forwarder's score drops
(:func:`learnae.gossip.router.score_params`).

Checks, in order (the first failing one names the reason counted):

==================  ===============================================================
reason              rejected when
==================  ===============================================================
oversize            the message data is over 64 KiB (``MAX_ENTRY_BYTES``)
undecodable, ...    :func:`learnae.ledger.entry.decode_entry` refuses it (its own
                    reasons: undecodable, non-canonical, bad-version, bad-schema,
                    bad-author, bad-signature, future-timestamp)
wrong-swarm         the entry's ``swarm`` is not this topic's swarm
signer-mismatch     the entry's author is not the libp2p peer that originally
                    published the message (its ``from`` field, which libp2p signs)
chain:<reason>      the chain check supplied by the peer runtime (which owns the
                    ledger) says the entry breaks its author's chain
validator-error     the chain check raised; counted and logged, never fatal
bad-rpc             (not a message) an RPC on the pubsub stream that cannot be parsed
                    or processed: the stream is reset, the peer never crashes
flood, new-origins  (before any of the above) the forwarder is over its message budget,
                    or over its budget of authors new to this peer
                    (:mod:`learnae.gossip.admission`): dropped unvalidated
==================  ===============================================================

Example:
    >>> v = EntryValidator(swarm="8cbb34e94bc00dcc", chain_check=None)
    >>> v.check(b"\\x00" * 70_000, "12D3KooW...")   # -> (None, "oversize")
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Union

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from learnae.errors import InvalidEntryError
from learnae.ledger.entry import MAX_ENTRY_BYTES, Entry, decode_entry

__all__ = ["EntryValidator", "ChainCheck", "IGNORE", "REJECT_REASONS", "message_origin"]

log = logging.getLogger(__name__)

# A chain check returns None when the entry joins its author's chain (stored: deliver and
# forward it), IGNORE when it is no news or cannot be used yet (a duplicate, or held waiting
# for its prev: neither delivered nor forwarded, and the forwarder is not penalised), else
# a short reason ("fork", "bad-chain") to reject it.
IGNORE = "ignore"
ChainCheck = Callable[[Entry], Union[str, None, Awaitable[Union[str, None]]]]

REJECT_REASONS = (
    "oversize", "undecodable", "non-canonical", "bad-version", "bad-schema", "bad-author",
    "bad-signature", "future-timestamp", "wrong-swarm", "signer-mismatch", "chain",
    "bad-pubsub-signature", "bad-rpc", "validator-error", "flood", "new-origins",
)
_CACHE = 4096  # decoded entries waiting for delivery, by libp2p message id
LOG_EVERY_S = 60.0  # a rejection reason is logged at WARNING at most this often


class EntryValidator:
    """Validates announcement bytes for one swarm; counts rejections by reason and sender.

    Args:
        swarm: the swarm id the topic belongs to.
        own_id: this peer's ID (its own entries skip the chain check).
        chain_check: optional callable (sync or async) from the peer runtime; see
            :data:`ChainCheck`.
    """

    def __init__(self, swarm: str, chain_check: ChainCheck | None = None, own_id: str = "",
                 on_reject: Callable[[str], None] | None = None):
        self.swarm = swarm
        self.on_reject = on_reject  # e.g. the peer's metrics, by reason
        self.own_id = own_id  # our own announcements skip the chain check (the ledger wrote them)
        self.chain_check = chain_check
        self.is_async = chain_check is not None and (
            inspect.iscoroutinefunction(chain_check)
            or inspect.iscoroutinefunction(getattr(chain_check, "__call__", None))
        )
        self.rejected: Counter[str] = Counter()
        self.rejected_by_peer: Counter[str] = Counter()
        self.accepted = 0
        self.ignored = 0
        self._logged: dict[str, float] = {}  # reason -> monotonic time it was last logged at WARNING
        self._decoded: OrderedDict[bytes, Entry] = OrderedDict()

    # -- the checks that need no ledger ------------------------------------------
    def check(self, data: bytes, origin: str) -> tuple[Entry | None, str | None]:
        """Return ``(entry, None)`` if ``data`` passes the stateless checks, else ``(None, reason)``."""
        if len(data) > MAX_ENTRY_BYTES:
            return None, "oversize"
        try:
            entry = decode_entry(data)
        except InvalidEntryError as exc:
            return None, exc.reason
        if entry.swarm != self.swarm:
            return None, "wrong-swarm"
        if entry.author != origin:
            return None, "signer-mismatch"
        return entry, None

    def reject(self, reason: str, forwarder: ID | str, origin: str, detail: str = "") -> None:
        """Count a rejection by reason and sender, and log it: at WARNING the first time a reason
        is seen in a minute (so a flood cannot flood the log too), else at DEBUG."""
        key = reason.split(":", 1)[0] if reason.startswith("chain") else reason
        self.rejected[key] += 1
        self.rejected_by_peer[str(forwarder)] += 1
        if self.on_reject is not None:
            self.on_reject(reason.split(":", 1)[1] if reason.startswith("chain:") else reason)
        now = time.monotonic()
        level = logging.DEBUG if now - self._logged.get(key, -math.inf) < LOG_EVERY_S else logging.WARNING
        if level == logging.WARNING:
            self._logged[key] = now
        log.log(level, "rejected an announcement (%s%s) from origin %s via %s (%d so far for this reason)",
                reason, f": {detail}" if detail else "", origin, forwarder, self.rejected[key])

    def _accept(self, msg: rpc_pb2.Message, entry: Entry) -> bool:
        self.accepted += 1
        self._decoded[msg.from_id + msg.seqno] = entry
        if len(self._decoded) > _CACHE:
            self._decoded.popitem(last=False)
        return True

    def take_decoded(self, msg: rpc_pb2.Message) -> Entry | None:
        """The entry the validator decoded for ``msg`` (once), so it is not decoded twice."""
        return self._decoded.pop(msg.from_id + msg.seqno, None)

    # -- py-libp2p topic validator entry points ----------------------------------
    def _stateless(self, forwarder: ID, msg: rpc_pb2.Message) -> Entry | None:
        origin = message_origin(msg)
        if origin is None:
            self.reject("undecodable", forwarder, "?", "bad from field")
            return None
        entry, reason = self.check(msg.data, origin)
        if reason is not None:
            self.reject(reason, forwarder, origin)
        return entry

    @staticmethod
    def _chain_reason(result: str | None) -> str | None:
        return None if result is None else f"chain:{result}"

    def validate_sync(self, forwarder: ID, msg: rpc_pb2.Message) -> bool | str:
        """Synchronous validator (used when the chain check is synchronous or absent).

        Returns True (deliver and forward), False (reject: the forwarder is penalised)
        or :data:`IGNORE`.
        """
        entry = self._stateless(forwarder, msg)
        if entry is None:
            return False
        if self.chain_check is None or entry.author == self.own_id:
            return self._accept(msg, entry)
        try:
            result = self.chain_check(entry)
        except Exception as exc:
            return self._chain_raised(forwarder, entry, exc)
        return self._chain_verdict(forwarder, msg, entry, result)

    async def validate_async(self, forwarder: ID, msg: rpc_pb2.Message) -> bool | str:
        """Asynchronous validator (used when the chain check is a coroutine function)."""
        entry = self._stateless(forwarder, msg)
        if entry is None:
            return False
        if entry.author == self.own_id:
            return self._accept(msg, entry)
        try:
            result = await self.chain_check(entry)
        except Exception as exc:
            return self._chain_raised(forwarder, entry, exc)
        return self._chain_verdict(forwarder, msg, entry, result)

    def _chain_raised(self, forwarder: ID, entry: Entry, exc: Exception) -> bool:
        self.reject("validator-error", forwarder, entry.author, repr(exc))
        log.warning("the chain check raised on entry %s: %r", entry.cid, exc)
        return False

    def _chain_verdict(self, forwarder: ID, msg: rpc_pb2.Message, entry: Entry, result: str | None):
        if result == IGNORE:
            self.ignored += 1
            return IGNORE
        reason = self._chain_reason(result)
        if reason is not None:
            self.reject(reason, forwarder, entry.author)
            return False
        return self._accept(msg, entry)


def message_origin(msg: rpc_pb2.Message) -> str | None:
    """The peer ID (base58) a message names as its origin, not yet verified; None if unreadable."""
    try:
        return ID(msg.from_id).to_base58()
    except Exception:  # noqa: BLE001 - any bytes a remote peer sent
        return None
