"""A bounded waiting room for entries whose ``prev`` has not arrived yet.

Gossip delivers entries out of order; an entry can only join the ledger once
its predecessor did. Held entries are keyed by the ``prev`` they wait for; when
the room is full the oldest held entry is evicted (it can come again, or its
chain can be fetched later), so a peer flooding unconnected entries costs at
most ``max_entries`` slots.

Example:
    >>> room = HoldingArea(max_entries=2)
    >>> len(room)
    0
"""

from __future__ import annotations

from collections import OrderedDict

from multiformats import CID

from learnae.ledger.cbor import cid_from_bytes, cid_to_bytes
from learnae.ledger.entry import Entry

__all__ = ["HoldingArea"]


class HoldingArea:
    """Entries waiting for their ``prev``, oldest evicted first.

    Args:
        max_entries: capacity; adding beyond it evicts the oldest entry.
    """

    def __init__(self, max_entries: int = 1024):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._order: OrderedDict[bytes, bytes] = OrderedDict()  # entry cid -> prev cid, oldest first
        self._by_prev: dict[bytes, dict[bytes, Entry]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, cid: bytes) -> bool:
        return cid in self._order

    def add(self, entry: Entry, cid: bytes) -> list[Entry]:
        """Hold ``entry`` (binary CID ``cid``); return the entries evicted to make room."""
        if cid in self._order:
            return []
        prev = cid_to_bytes(entry.prev)
        self._order[cid] = prev
        self._by_prev.setdefault(prev, {})[cid] = entry
        evicted = []
        while len(self._order) > self.max_entries:
            old, old_prev = self._order.popitem(last=False)
            waiting = self._by_prev[old_prev]
            evicted.append(waiting.pop(old))
            if not waiting:
                del self._by_prev[old_prev]
            self.evicted += 1
        return evicted

    def twin(self, entry: Entry, cid: bytes) -> tuple[bytes, Entry] | None:
        """A held entry by the same author at the same seq with another CID (an equivocation)."""
        for waiting in self._by_prev.values():
            for other_cid, other in waiting.items():
                if other.author == entry.author and other.seq == entry.seq and other_cid != cid:
                    return other_cid, other
        return None

    def remove(self, cid: bytes) -> None:
        """Stop holding the entry with binary CID ``cid`` (if held)."""
        prev = self._order.pop(cid, None)
        if prev is not None:
            waiting = self._by_prev[prev]
            waiting.pop(cid, None)
            if not waiting:
                del self._by_prev[prev]

    def pop_children(self, prev: bytes) -> list[Entry]:
        """Remove and return the entries waiting for ``prev`` (binary CID)."""
        waiting = self._by_prev.pop(prev, {})
        for cid in waiting:
            del self._order[cid]
        return list(waiting.values())

    def missing(self) -> list[CID]:
        """The ``prev`` CIDs held entries wait for that nobody holds, oldest first.

        A held entry whose predecessor is held too is not missing anything yet: only
        the earliest gap of each run of held entries is worth fetching.
        """
        seen, out = set(), []
        for prev in self._order.values():
            if prev not in seen and prev not in self._order:
                seen.add(prev)
                out.append(cid_from_bytes(prev))
        return out
