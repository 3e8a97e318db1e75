"""Neighbours whose models are far outliers, time after time, are left out of merges for a while.

Clipping (:class:`learnae.peer.merging.DistanceBound`) bounds what one contribution can
do to one merge, but a hostile peer publishes again every few steps: clipped every time,
it still pulls every merge it is in, and with a few of them in a panel of four they pull
together. So a contribution farther from the local model than ``FACTOR`` times the usual
distance (the smaller of the panel's median and the recent merges' median, see
:meth:`DistanceBound.typical`) is a strike against its author; an author with
``STRIKES`` strikes is not chosen for ``BAN_S`` seconds (doubling at each repeat, up to
``MAX_BAN_S``). ``CLEAN`` contributions in a row within the usual distance clear its
strikes, so an honest peer that was once far (it had just restarted from an old
checkpoint) is not held to it.

An honest neighbour of the same model, trained on the same kind of data, is within a
few usual distances; a model scaled by -10 is thousands of them away, and an
overflowing one (1e30) infinitely far.

Example:
    >>> bans = OutlierBans()
    >>> bans.note("12D3KooWA", outlier=True), bans.note("12D3KooWA", outlier=True)
    (False, True)
    >>> bans.banned()
    {'12D3KooWA'}
"""

from __future__ import annotations

import logging
import time

__all__ = ["OutlierBans"]

log = logging.getLogger(__name__)


class OutlierBans:
    """Strikes and bans by author (monotonic clock)."""

    FACTOR = 8.0  # an outlier is this many usual distances away (or more)
    STRIKES = 2  # strikes before a ban
    CLEAN = 5  # contributions in a row within the usual distance clear the strikes
    BAN_S = 60.0
    MAX_BAN_S = 600.0

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._strikes: dict[str, int] = {}
        self._clean: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self._bans: dict[str, int] = {}  # bans so far, by author (the next one is twice as long)

    def note(self, author: str, *, outlier: bool) -> bool:
        """Record one contribution of ``author``; True when it has just been banned."""
        if not outlier:
            self._clean[author] = self._clean.get(author, 0) + 1
            if self._clean[author] >= self.CLEAN:
                self._strikes.pop(author, None)
            return False
        self._clean[author] = 0
        self._strikes[author] = self._strikes.get(author, 0) + 1
        if self._strikes[author] < self.STRIKES:
            return False
        self._strikes[author] = 0
        n = self._bans[author] = self._bans.get(author, 0) + 1
        ban_s = min(self.MAX_BAN_S, self.BAN_S * 2 ** (n - 1))
        self._until[author] = self._clock() + ban_s
        log.warning("not merging %s for %.0f s: its models were far outliers (over %g times the usual "
                    "distance) %d times", author, ban_s, self.FACTOR, self.STRIKES)
        return True

    def banned(self) -> set[str]:
        """Authors not to choose now."""
        now = self._clock()
        return {a for a, until in self._until.items() if until > now}
