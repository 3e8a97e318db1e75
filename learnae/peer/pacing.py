"""Pacing in time: at most one snapshot announcement per interval, and the local step rate.

A peer that publishes every ``publish_every`` steps announces as often as it
trains fast: on digits a lone peer makes ~46 announcements a second, each a
ledger entry on every peer, a gossip message through every mesh and a fetch for
every neighbour that merges it. With ``publish_interval_s`` a peer publishes at
a ``publish_every`` boundary only once that much time has passed since its last
publish, so gossip load and ledger growth per peer stay flat however fast it
trains (the final snapshot at ``max_steps`` is always published).

Its neighbours then see its announced step trail its training by up to one
interval's worth of steps. :class:`StepRate` measures how many steps that is (a
peer's own training rate, its waits left out), so bounded staleness
(:meth:`learnae.peer.merging.Merger.lagging`) does not take a paced neighbour
for a slow one, nor make two paced peers wait for each other.

Example:
    >>> pace = Pacer(1.0)
    >>> pace.due()
    True
    >>> pace.mark(); pace.due()
    False
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Pacer", "StepRate"]


class Pacer:
    """At most one event per ``interval_s`` seconds (a monotonic clock); 0 paces nothing."""

    def __init__(self, interval_s: float, *, clock: Callable[[], float] = time.monotonic):
        self.interval_s = float(interval_s)
        self._clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        """Whether an event may happen now."""
        return self.interval_s <= 0 or self._last is None or self._clock() - self._last >= self.interval_s

    def mark(self) -> None:
        """An event happened now."""
        self._last = self._clock()



class StepRate:
    """This peer's training steps per second, smoothed over the last several seconds.

    Fed with the step count at moments of the training loop (its merges); the clock
    given should leave out time spent waiting for neighbours, or a peer that waits
    would measure itself slow, allow its neighbours less and wait more. The first
    measured interval sets the rate outright; a step count that goes back (a
    rollback) restarts the measurement.
    """

    SMOOTHING_S = 5.0  # the rate follows changes over about this many seconds

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._at: tuple[float, int] | None = None
        self._measured = False
        self.per_s = 0.0

    def note(self, step: int) -> None:
        now = self._clock()
        if self._at is not None:
            t, s = self._at
            dt = now - t
            if step < s:
                self.per_s, self._measured = 0.0, False
            elif dt > 0:
                weight = 1 - math.exp(-dt / self.SMOOTHING_S) if self._measured else 1.0
                self.per_s += weight * ((step - s) / dt - self.per_s)
                self._measured = True
        self._at = (now, step)

    def steps_in(self, seconds: float) -> int:
        """Steps this peer makes in ``seconds`` at its current rate (rounded up)."""
        return math.ceil(self.per_s * seconds) if seconds > 0 else 0
