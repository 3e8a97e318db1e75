"""``NetworkPolicy``: the few points where a simulation may bend what a peer sees and does.

A real peer runs with :data:`NO_FAULTS`, which lets everything through. The
scenario runner instead hands each peer a faults file
(:class:`learnae.peer.faults.Faults` implements this protocol), because this
machine's kernel cannot inject latency or loss (no ``netem``). The peer core
(:mod:`learnae.peer.node`) asks the policy at exactly these hook points:

==========================  ================================================================
hook                        where
==========================  ================================================================
``may_connect(peer)``       every dial (the host's dial gate), every open connection (closed
                            when the answer turns to no), and every merge choice
``drop(author)``            the gossip validator: the announcement is lost on the way
``delay_s(author)``         an accepted announcement reaches the merge step that much later
``fetch_delay_s(author)``   a snapshot fetch from ``author`` starts that much later
``slow``                    the training loop idles ``(slow - 1)`` times each burst's time
``attack``                  what a hostile peer publishes (:func:`learnae.peer.faults.poison`)
``reload()``                polled four times a second: the plan may change during a run
==========================  ================================================================

Example:
    >>> NO_FAULTS.may_connect("12D3KooW..."), NO_FAULTS.drop("12D3KooW..."), NO_FAULTS.slow
    (True, None, 1.0)
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

import trio

__all__ = ["NetworkPolicy", "NoFaults", "NO_FAULTS", "PolicyEnforcer", "attack_mode"]

log = logging.getLogger(__name__)


@runtime_checkable
class NetworkPolicy(Protocol):
    """What a peer asks before it dials, accepts, merges, trains and publishes.

    Attributes:
        slow: compute slowdown factor (1.0 = none).
        attack: the attack this peer carries out (``mode`` and ``scale``), or None.
    """

    slow: float
    attack: Any

    def may_connect(self, peer_id: str) -> bool:
        """Whether this peer may be connected to, and merged from, ``peer_id``."""

    def drop(self, author: str) -> str | None:
        """Why an announcement by ``author`` is lost on the way, or None when it arrives."""

    def delay_s(self, author: str) -> float:
        """Extra one-way delay of an announcement by ``author``, in seconds."""

    def fetch_delay_s(self, author: str) -> float:
        """Extra time before a snapshot fetch from ``author`` starts, in seconds."""

    def reload(self) -> bool:
        """Re-read the plan if it changed; True when it did. Never raises."""


class NoFaults:
    """The policy of a real peer: nothing is dropped, delayed, slowed or forged."""

    slow = 1.0
    attack = None
    path = None

    def may_connect(self, peer_id: str) -> bool:
        return True

    def drop(self, author: str) -> str | None:
        return None

    def delay_s(self, author: str) -> float:
        return 0.0

    def fetch_delay_s(self, author: str) -> float:
        return 0.0

    def reload(self) -> bool:
        return False


NO_FAULTS = NoFaults()


def attack_mode(attack: Any) -> str | None:
    """The mode of a policy's attack (a :class:`learnae.peer.faults.Attack`), or None."""
    return None if attack is None else attack.mode


class PolicyEnforcer:
    """Makes a host obey a policy's :meth:`~NetworkPolicy.may_connect`.

    :meth:`gate_dials` refuses forbidden dials from the first one on (every dial of
    the host, the DHT's and Bitswap's included, goes through the network's
    ``dial_peer``), so a partition is not a storm of connections opened by one side
    and closed by the other. :meth:`run` re-reads the policy, closes the connections
    it forbids, and redials a peer it cut off as soon as the policy allows it again,
    not when a bootstrap backoff grown during the partition ends.

    Args:
        host: the peer's running host.
        policy: the policy to enforce.
        redial_timeout_s: deadline of one redial.
        poll_s: how often the policy is re-read.
    """

    def __init__(self, host, policy: NetworkPolicy, *, redial_timeout_s: float = 10.0, poll_s: float = 0.25):
        self.host, self.policy = host, policy
        self.redial_timeout_s, self.poll_s = redial_timeout_s, poll_s
        self.cut_off: set = set()  # peer IDs disconnected or refused a dial, to redial when healed

    def gate_dials(self) -> None:
        """Wrap the host's ``dial_peer`` so forbidden peers are refused (and remembered)."""
        from libp2p.network.exceptions import SwarmException

        network = self.host.get_network()
        dial_peer = network.dial_peer

        async def gated_dial(peer_id, *args, **kwargs):
            if not self.policy.may_connect(peer_id.to_base58()):
                self.cut_off.add(peer_id)  # e.g. a bootstrap peer first dialed during a partition
                raise SwarmException(f"dial to {peer_id} refused: an injected partition or topology forbids it")
            return await dial_peer(peer_id, *args, **kwargs)

        network.dial_peer = gated_dial

    async def run(self) -> None:
        """Enforce the policy until cancelled."""
        async with trio.open_nursery() as redials:
            while True:
                self.policy.reload()
                for pid in [p for p in self.cut_off if self.policy.may_connect(p.to_base58())]:
                    self.cut_off.discard(pid)  # healed: redial now, as a restored link would allow
                    redials.start_soon(self._redial, pid)
                for pid in list(self.host.get_connected_peers()):
                    if not self.policy.may_connect(pid.to_base58()):
                        self.cut_off.add(pid)
                        try:
                            await self.host.disconnect(pid)
                        except Exception as exc:  # noqa: BLE001 - a connection closing under us is fine
                            log.debug("disconnect %s: %r", pid, exc)
                await trio.sleep(self.poll_s)

    async def _redial(self, peer_id) -> None:
        """Connect to a peer by its known addresses (best effort)."""
        log.info("the policy allows %s again: redialing it", peer_id)
        with trio.move_on_after(self.redial_timeout_s):
            try:
                await self.host.connect(self.host.get_peerstore().peer_info(peer_id))
            except Exception as exc:  # noqa: BLE001 - it may be gone meanwhile; discovery goes on
                log.info("redial of %s after a healed fault failed: %r", peer_id, exc)
