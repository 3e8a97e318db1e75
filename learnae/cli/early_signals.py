"""SIGINT that comes while a command is still starting up.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be: inside
an import (the CLI's imports and TensorFlow's take seconds on a loaded machine), inside
click's parsing, or before ``learnae peer start`` has its own signal handling in place. A
peer stopped at that moment exited with a traceback, or with ``aborted`` and code 130,
where a scenario runner or a script expects a clean exit.

So from the first line of the entry point SIGINT is *deferred*: remembered, not raised.
Every command but ``peer start`` resumes the ordinary behaviour as soon as click knows which
command runs (:func:`resume`: a SIGINT that came meanwhile is raised then). ``peer start``
keeps deferring until its runtime watches for signals itself, and then takes the one that
came meanwhile, if any (:func:`take`), as if it had come a moment later.

An inherited "ignore SIGINT" is overridden too: a shell without job control starts a
background job (``learnae peer start &`` in a script) with SIGINT ignored, and such a peer
would never leave on SIGINT.
"""

from __future__ import annotations

import signal

__all__ = ["defer", "resume", "take"]

_pending: list[int] = []


def _remember(signum, frame) -> None:
    _pending.append(signum)


def _install(handler) -> None:
    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (the CLI run in-process, e.g. by a test): leave it be
        pass


def defer() -> None:
    """From now on SIGINT is remembered, not raised, until :func:`resume` or :func:`take`."""
    _install(_remember)


def take() -> int | None:
    """Stop deferring: SIGINT is Python's default again (``signal.default_int_handler``, which
    trio recognises and handles safely); return the signal that came while deferred, or None."""
    if signal.getsignal(signal.SIGINT) is _remember:
        _install(signal.default_int_handler)
    signum = _pending[0] if _pending else None
    _pending.clear()
    return signum


def resume() -> None:
    """Stop deferring; a SIGINT that came meanwhile is raised now, as KeyboardInterrupt."""
    if take() is not None:
        raise KeyboardInterrupt
