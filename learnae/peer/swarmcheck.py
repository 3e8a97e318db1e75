"""Is a bootstrap peer in our swarm? Peers of different models never share a topic,
so without this check a peer given the wrong model would train alone next to its swarm."""

from __future__ import annotations

from collections.abc import Callable

import trio

from learnae.errors import UserError

__all__ = ["check_bootstrap_swarm"]


async def check_bootstrap_swarm(pubsub, topic: str, bootstrap: list[str], *, timeout_s: float, poll_s: float,
                                mismatch: Callable[[str, str], str]) -> bool:
    """Watch the bootstrap peers' topic subscriptions for up to ``timeout_s``.

    Returns:
        True once a bootstrap peer is seen on ``topic``; False if none told its topics in time.

    Raises:
        UserError: ``mismatch(peer_id, their_swarm)``, when a bootstrap peer is subscribed
            to other swarms' topics only.
    """
    from learnae.gossip import parse_peer_addr
    from learnae.gossip.topics import swarm_of_topic

    wanted = {parse_peer_addr(a).peer_id for a in bootstrap}
    with trio.move_on_after(timeout_s):
        while True:
            for pid in wanted:
                theirs = {t for t, members in pubsub.peer_topics.items() if pid in members and swarm_of_topic(t)}
                if theirs and topic not in theirs:
                    raise UserError(mismatch(pid, swarm_of_topic(sorted(theirs)[0])))
                if theirs:
                    return True
            await trio.sleep(poll_s)
    return False
