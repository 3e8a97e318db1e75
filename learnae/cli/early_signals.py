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
_deferring = False


def _handler(signum, frame) -> None:
    if _deferring:
        _pending.append(signum)
    else:
        raise KeyboardInterrupt


def defer() -> None:
    """From now on SIGINT is remembered, not raised, until :func:`resume` or :func:`take`."""
    global _deferring
    _deferring = True
    signal.signal(signal.SIGINT, _handler)


def resume() -> None:
    """SIGINT raises KeyboardInterrupt again; one that came while deferred is raised now."""
    global _deferring
    _deferring = False
    if _pending:
        _pending.clear()
        raise KeyboardInterrupt


def take() -> int | None:
    """Stop deferring (the caller handles SIGINT itself from now on) and return the signal
    that came while deferred, or None."""
    global _deferring
    _deferring = False
    signum = _pending[0] if _pending else None
    _pending.clear()
    return signum
