"""Small work runs on the event loop, large work in a worker thread."""

from __future__ import annotations

import threading

from learnae.threads import INLINE_BYTES, run_sized


async def test_small_work_runs_inline_and_large_work_in_a_worker_thread():
    loop_thread = threading.get_ident()
    small = await run_sized(threading.get_ident, INLINE_BYTES)
    large = await run_sized(threading.get_ident, INLINE_BYTES + 1)
    assert small == loop_thread
    assert large != loop_thread


async def test_arguments_and_exceptions_pass_through_both_ways():
    assert await run_sized(max, 10, 3, 7) == 7
    assert await run_sized(max, 10**9, 3, 7) == 7
    for nbytes in (0, 10**9):
        try:
            await run_sized(int, nbytes, "x")
        except ValueError:
            continue
        raise AssertionError("the exception did not reach the caller")
