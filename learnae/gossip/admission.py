"""How much work one neighbour may hand this peer: a message budget per forwarder.

Every new message a peer accepts costs it two signature checks, a decode, a ledger write
and a delivery, about 3 ms of CPU in py-libp2p and learnae together, taken from training
(the interpreter lock). Identities are free and each one can sign a valid chain, so
validity bounds nothing: 1,000 valid ``join`` entries a second through one connection
took a training peer to 14 % of its step rate, and what did get in waited 10-30 s
(``bench/gossip_flood.py``). py-libp2p's own limit (2,000 messages/s per forwarder and
topic) applies when forwarding, after all that work.

So before any signature is checked, each forwarder (the neighbour a message came from,
not its author) draws on two token buckets:

* **messages**: ``msgs_per_s`` sustained, ``msgs_burst`` at once. An honest neighbour
  sends its own announcements (one per ``publish_every`` steps, paced at most 200/s)
  and the first copies of others' it relays; duplicates are dropped before this check
  and cost nothing here.
* **new origins**: a message whose author this peer has never admitted before needs a
  second token, ``new_origins_per_s`` sustained, ``new_origins_burst`` at once, so made-up
  identities enter through one connection at a few per second, however many there are.

A message over budget is dropped unvalidated and counted (``flood`` or ``new-origins``);
the forwarder loses score for it, at most ``penalties_per_s`` times a second, so a
flooder sinks below the thresholds within seconds and an honest neighbour that
overshoots once barely moves. What a drop costs the swarm is repaired by gossip (IHAVE /
IWANT) and ledger sync, which do not pass through here.

Example:
    >>> a = Admission(AdmissionParams(msgs_per_s=1, msgs_burst=2), clock=lambda: 0.0)
    >>> [a.admit("peer-A", b"author-1") for _ in range(3)]
    [None, None, 'flood']
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["Admission", "AdmissionParams"]


@dataclass(frozen=True)
class AdmissionParams:
    """Per-forwarder budgets; the defaults sit far above what an honest neighbour sends."""

    msgs_per_s: float = 100.0
    msgs_burst: float = 400.0  # a joiner is sent the last few seconds at once
    new_origins_per_s: float = 5.0
    new_origins_burst: float = 100.0  # a bootstrap peer introduces a whole swarm's authors
    penalties_per_s: float = 5.0  # score penalties for drops, per forwarder
    known_origins: int = 65_536  # authors remembered as admitted (oldest forgotten first)
    forwarders: int = 4_096  # forwarders whose budgets are remembered, across reconnects


class _Bucket:
    __slots__ = ("rate", "burst", "tokens", "t")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, now

    def ready(self, now: float) -> bool:
        """Refill for the time passed; whether a token is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        return self.tokens >= 1.0

    def take(self, now: float) -> bool:
        if self.ready(now):
            self.tokens -= 1.0
            return True
        return False


class _Forwarder:
    __slots__ = ("msgs", "origins", "penalties")

    def __init__(self, p: AdmissionParams, now: float):
        self.msgs = _Bucket(p.msgs_per_s, p.msgs_burst, now)
        self.origins = _Bucket(p.new_origins_per_s, p.new_origins_burst, now)
        self.penalties = _Bucket(p.penalties_per_s, p.penalties_per_s, now)


class Admission:
    """The budgets of recent forwarders (kept across reconnects: a reconnect refills nothing)."""

    def __init__(self, params: AdmissionParams | None = None, clock: Callable[[], float] = time.monotonic):
        self.params = params or AdmissionParams()
        self._clock = clock
        self._forwarders: OrderedDict[Hashable, _Forwarder] = OrderedDict()
        self._known: OrderedDict[bytes, None] = OrderedDict()

    def admit(self, forwarder: Hashable, origin: bytes) -> str | None:
        """None when the message may be validated, else why not (``flood``, ``new-origins``)."""
        now = self._clock()
        f = self._forwarders.get(forwarder)
        if f is None:
            f = self._forwarders[forwarder] = _Forwarder(self.params, now)
            if len(self._forwarders) > self.params.forwarders:
                self._forwarders.popitem(last=False)
        else:
            self._forwarders.move_to_end(forwarder)
        known = origin in self._known
        if not known and not f.origins.ready(now):
            return "new-origins"
        if not f.msgs.take(now):
            return "flood"
        if known:
            self._known.move_to_end(origin)
        else:
            f.origins.take(now)
            self._known[origin] = None
            if len(self._known) > self.params.known_origins:
                self._known.popitem(last=False)
        return None

    def penalise(self, forwarder: Hashable) -> bool:
        """Whether a drop from ``forwarder`` should cost it score now (rate-limited)."""
        f = self._forwarders.get(forwarder)
        return f is not None and f.penalties.take(self._clock())
