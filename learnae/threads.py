"""Run small work on the event loop and large work in a worker thread.

A trip through ``trio.to_thread.run_sync`` costs a thread wake-up and a GIL
hand-over each way: ~0.1 ms on an idle machine, but tens of milliseconds when
the cores are oversubscribed (8 peer processes, each with a training thread, on
2 cores), and a snapshot fetch made ~5 such trips. Hashing, copying or parsing
256 KiB takes ~0.2 ms, less than the trip, so work on at most
:data:`INLINE_BYTES` runs inline; anything larger still leaves the loop free.

Example:
    >>> data = await run_sized(decode, len(payload), payload)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

__all__ = ["INLINE_BYTES", "run_sized"]

INLINE_BYTES = 256 * 1024  # one UnixFS chunk

T = TypeVar("T")


async def run_sized(fn: Callable[..., T], nbytes: int, *args) -> T:
    """``fn(*args)`` inline when it handles at most :data:`INLINE_BYTES`, else in a worker thread."""
    if nbytes <= INLINE_BYTES:
        await trio.lowlevel.checkpoint()  # still a checkpoint, like the thread trip it replaces
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args)
