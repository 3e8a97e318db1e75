"""An injected attack: many made-up identities behind one peer's connections.

Identities cost nothing: an Ed25519 key is 50 microseconds of work. A hostile peer
whose attack carries ``sybils: N`` (see :class:`learnae.peer.faults.Attack`) makes
up N of them at start and, every time it publishes a snapshot, has the next
``BATCH`` of them sign an entry of their own: first a ``join``, then ``snapshot``
entries naming the very (poisoned) model it just published. Each entry travels as
a GossipSub message whose origin is the made-up identity and whose signature is
that identity's, so it passes every check a receiver can make on it: the entry's
signature, author = origin, the chain. This peer sends the messages to each of its
topic peers itself, as a relay would, and serves the model's blocks (Bitswap asks
the connected peers when an author cannot be reached). Nothing of it needs a
second host, port or connection.

What receivers do about it is theirs to decide (:meth:`learnae.peer.view.SwarmView.choose`:
authors without a direct connection never fill a merge panel); this module only
makes the attack real for tests, benchmarks and scenarios.

Example:
    >>> relay = SybilRelay(pubsub, router, topic, swarm, join_body, count=300)   # doctest: +SKIP
    >>> relay.relay(snapshot_body)          # after each own snapshot entry
"""

from __future__ import annotations

import logging
import time

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from learnae.identity import Identity
from learnae.ledger.entry import Entry, sign_entry

__all__ = ["SybilRelay", "Sybil", "BATCH"]

log = logging.getLogger(__name__)

BATCH = 20  # made-up identities that sign at each own publish (all N take N / BATCH publishes)


class Sybil:
    """One made-up identity and the head of its chain."""

    def __init__(self) -> None:
        self.identity = Identity.generate()
        self.keypair = self.identity.to_libp2p_keypair()
        self.from_id = ID.from_base58(self.identity.peer_id).to_bytes()
        self.seq = 0
        self.prev = None

    def sign(self, swarm: str, kind: str, body: dict) -> Entry:
        entry = sign_entry(self.identity, swarm=swarm, seq=self.seq, prev=self.prev, kind=kind, body=body)
        self.seq, self.prev = self.seq + 1, entry.cid
        return entry

    def message(self, entry: Entry, topic: str, seqno: int) -> rpc_pb2.Message:
        """A GossipSub message as this identity itself would publish ``entry``: its origin, its signature.
        Message ids are (origin, seqno): never give one identity the same ``seqno`` twice."""
        msg = rpc_pb2.Message(data=entry.to_bytes(), topicIDs=[topic], from_id=self.from_id,
                              seqno=seqno.to_bytes(8, "big"))
        msg.signature = self.keypair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        msg.key = self.keypair.public_key.serialize()
        return msg


class SybilRelay:
    """``count`` made-up identities whose entries this peer relays to its topic peers.

    Args:
        pubsub: the peer's running py-libp2p ``Pubsub`` (for its topic peers).
        router: its GossipSub router (``send_rpc`` queues an RPC to one peer).
        topic: the swarm's topic.
        swarm: the swarm id the entries are signed for.
        join_body: the body of this peer's own ``join`` entry (the model fingerprint).
        count: how many identities to make up.
    """

    def __init__(self, pubsub, router, topic: str, swarm: str, join_body: dict, *, count: int):
        self.pubsub, self.router, self.topic, self.swarm = pubsub, router, topic, swarm
        self.join_body = {**join_body, "addrs": []}  # nowhere to dial: only this peer's connections reach them
        self.sybils = [Sybil() for _ in range(count)]
        self._next = 0
        self._seqno = time.time_ns()  # GossipSub message ids are (origin, seqno): never reuse one
        log.warning("attack: made up %d identities; their entries go out through this peer's connections", count)

    def relay(self, snapshot_body: dict) -> int:
        """Have the next :data:`BATCH` identities sign ``snapshot_body`` (joining first); return the messages sent."""
        messages = []
        for _ in range(min(BATCH, len(self.sybils))):
            sybil = self.sybils[self._next]
            self._next = (self._next + 1) % len(self.sybils)
            if sybil.seq == 0:
                messages.append(self._message(sybil, sybil.sign(self.swarm, "join", self.join_body)))
            messages.append(self._message(sybil, sybil.sign(self.swarm, "snapshot", {**snapshot_body, "parents": []})))
        peers = list(self.pubsub.peer_topics.get(self.topic, ()))
        for peer in peers:
            self.router.send_rpc(peer, rpc_pb2.RPC(publish=messages))
        return len(messages) * len(peers)

    def _message(self, sybil: Sybil, entry: Entry) -> rpc_pb2.Message:
        self._seqno += 1
        return sybil.message(entry, self.topic, self._seqno)
