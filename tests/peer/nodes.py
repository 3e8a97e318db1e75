"""Real peer nodes in the test process: config, a task per node, waiting for a condition.

Trio contexts nest per task, so each :class:`learnae.peer.node.PeerNode` opens in
a task of its own (:func:`node_task`) and closes when its ``stop`` event is set;
the test drives them from its own task.
"""

from __future__ import annotations

import trio

from learnae.peer.config import PeerConfig, load_config
from learnae.peer.node import open_peer_node

SPECS = [("000/dense/kernel", (16, 8), "float32"), ("001/dense/bias", (8,), "float32")]


def config(data_dir, *, bootstrap=(), **settings) -> PeerConfig:
    """A loopback peer's settings; ``settings`` override any PeerConfig key."""
    cli = {"data_dir": data_dir, "listen": "/ip4/127.0.0.1/tcp/0", "bootstrap": list(bootstrap),
           "merge_wait_s": 0, "catch_up_s": 0, "fetch_timeout_s": 10, **settings}
    cfg, _ = load_config(cli, env={})
    return cfg


async def node_task(cfg: PeerConfig, stop: trio.Event, policy=None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Open a node in a task of its own until ``stop`` is set; ``nursery.start`` returns the node.

    ``policy``: injected faults (a :class:`learnae.peer.policy.NetworkPolicy`), none by default.
    """
    async with (open_peer_node(cfg) if policy is None else open_peer_node(cfg, policy=policy)) as node:
        task_status.started(node)
        await stop.wait()


async def eventually(predicate, what: str, timeout_s: float = 30.0) -> None:
    """Wait until ``predicate()`` holds, or fail naming ``what``."""
    with trio.move_on_after(timeout_s):
        while not predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_until(predicate, timeout_s: float = 300.0, what: str = "condition", detail=None) -> None:
    """Poll ``predicate()`` (blocking, for tests driving peer processes) until true, or fail naming ``what``.

    ``detail``: a callable whose text (the peers' logs, say) the failure message ends with.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f"\n{detail()}" if detail else ""))
