"""The receiving side of a topic: a queue that never loses an announcement silently.

py-libp2p hands each message to a 32-slot channel with ``send_nowait`` and drops
it (one log line, no count) when the application reads slower than messages
arrive. :class:`Inbox` holds up to ``capacity`` announcements (10,000 by default:
about 10 minutes of a busy 16-peer swarm); only past that does it shed the oldest,
and then it counts every shed announcement and logs a WARNING with the reason.

Example:
    >>> async for ann in gossip.announcements():      # doctest: +SKIP
    ...     ledger.receive(ann.entry)
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from learnae.errors import InvalidEntryError
from learnae.ledger.entry import Entry, decode_entry

__all__ = ["Announcement", "Inbox"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Announcement:
    """A validated entry received on a topic.

    Attributes:
        entry: the decoded, signature-checked entry.
        origin: peer ID that published it (equals ``entry.author``).
        received_s: ``time.time()`` when this peer accepted it (seconds).
    """

    entry: Entry
    origin: str
    received_s: float


class Inbox:
    """Bounded FIFO of :class:`Announcement` with counted, logged shedding.

    Args:
        capacity: announcements held before the oldest is shed.
        decoded: returns the entry the validator already decoded for a message.
        own_id: this peer's ID; its own announcements are not delivered back.
    """

    def __init__(self, capacity: int, decoded: Callable[[rpc_pb2.Message], Entry | None],
                 own_id: ID | None = None):
        self.capacity = capacity
        self._decoded = decoded
        self._own = own_id.to_bytes() if own_id is not None else None
        self._queue: deque[Announcement] = deque()
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # dedupe by entry CID
        self._wakeup = trio.Event()
        self._closed = False
        self.delivered = 0
        self.shed = 0
        self.duplicates = 0
        self.unverified = 0  # delivered without a validation run and failing verification

    def __len__(self) -> int:
        return len(self._queue)

    def deliver(self, msg: rpc_pb2.Message) -> None:
        """Called (synchronously) by pubsub for every accepted message on the topic."""
        entry = self._decoded(msg)
        if msg.from_id == self._own:
            return
        if entry is None:
            # Not decoded by this message's validation run: verify here, never on trust of an
            # earlier stage (a re-used message id once skipped the validator altogether).
            try:
                entry = decode_entry(msg.data)
            except InvalidEntryError as exc:
                self.unverified += 1
                log.warning("dropped an announcement that fails verification at delivery: %s", exc)
                return
            if ID(msg.from_id) != ID.from_base58(entry.author):
                self.unverified += 1
                log.warning("dropped an announcement whose author %s is not its publisher", entry.author)
                return
        key = bytes(entry.cid)
        if key in self._seen:  # two copies validated concurrently by an async chain check
            self.duplicates += 1
            return
        self._seen[key] = None
        if len(self._seen) > 4 * self.capacity:
            self._seen.popitem(last=False)
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.shed += 1
            if self.shed == 1 or self.shed % 100 == 0:
                log.warning(
                    "shed %d announcement(s) so far: the inbox holds %d and the application "
                    "is not reading them (oldest are dropped first)", self.shed, self.capacity,
                )
        self._queue.append(Announcement(entry, entry.author, time.time()))
        self.delivered += 1
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def get_nowait(self) -> Announcement | None:
        return self._queue.popleft() if self._queue else None

    async def get(self) -> Announcement:
        """Wait for the next announcement.

        Raises:
            trio.EndOfChannel: the inbox was closed and is empty.
        """
        while not self._queue:
            if self._closed:
                raise trio.EndOfChannel
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        return self._queue.popleft()

    def __aiter__(self):
        return self

    async def __anext__(self) -> Announcement:
        try:
            return await self.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
