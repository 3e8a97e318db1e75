"""GossipSub as learnae runs it: tuned parameters, and no silent loss anywhere.

py-libp2p 0.8.1 loses messages without a word in four places (measured; docs/gossip.md);
this module closes each one:

* **Spam protection** drops more than 10 msg/s per topic and forwarder. We keep
  it, with a limit far above what our paced publishers send, and every drop
  is counted (``dropped["rate-limit"]``) and logged at WARNING.
* **Outbound queues** of 32 RPCs per peer overflow and drop. We give each peer
  a deeper queue (:attr:`GossipParams.outbound_queue_rpcs`), publishers wait
  for it to drain (see :mod:`learnae.gossip.announce`), and a drop that still
  happens is counted (``dropped["outbound-queue-full"]``) with a WARNING.
* **Subscriptions** hand messages to a 32-slot channel with ``send_nowait``.
  :class:`LearnaePubsub` delivers into an :class:`~learnae.gossip.inbox.Inbox`
  instead, which never drops without counting and warning.
* **Heartbeat** defaults to 120 s in the constructor; we use 1 s, and turn off the
  "adaptive" mode that can stretch it to 30-60 s.

Own messages are flood-published to every subscribed peer (go-libp2p's default):
one hop to everyone, and nothing lost in the second after a connect while the
mesh is still empty. Relays forward along the mesh only.

Mesh parameters: D=3, D_low=2, D_high=6, half the GossipSub paper's (and
go-libp2p's) 6/4/12. Own messages already reach every connected subscriber in one
hop, so in the small, densely connected swarms learnae runs (4-16 peers) each mesh
copy a peer receives is a duplicate it still has to decrypt and parse, ~2 ms of CPU
in py-libp2p: with 8 training peers on 2 cores, 6/4/12 made a swarm reach its target
accuracy in 33 s, 3/2/6 in 23 s (docs/BENCHMARKS.md, Peer). A relayed message
reaches 64 peers in about log_3(64) ~ 4 hops. The gossip window (3 heartbeats of
IHAVE) repairs any missed hop within seconds: including, unlike py-libp2p's own
gossip, for peers in PRUNE backoff and peers grafted just after a message passed
(:meth:`LearnaeGossipSub.gossip_heartbeat`), which a mesh this small needs.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field

import trio
from libp2p.exceptions import ValidationError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.pubsub.validators import signature_validator

from learnae.gossip.admission import Admission, AdmissionParams
from learnae.gossip.validate import IGNORE

__all__ = ["GossipParams", "LearnaeGossipSub", "LearnaePubsub", "make_router", "score_params"]

log = logging.getLogger(__name__)

# meshsub 1.2/1.1/1.0: what Kubo v0.22 (go-libp2p-pubsub) and py-libp2p both speak.
PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID)
IDONTWANT_MIN_BYTES = 1024  # go-libp2p's IDontWantMessageThreshold


@dataclass(frozen=True, slots=True)
class GossipParams:
    """GossipSub settings; the defaults suit swarms of 4 to 64 peers, densely connected."""

    degree: int = 3  # D: target mesh peers per topic
    degree_low: int = 2  # D_low: graft below this
    degree_high: int = 6  # D_high: prune above this
    heartbeat_s: int = 1  # mesh maintenance + IHAVE gossip (go-libp2p uses 1 s)
    gossip_window: int = 3  # heartbeats of history advertised in IHAVE
    gossip_history: int = 5  # heartbeats of messages kept for IWANT
    seen_ttl_s: int = 120  # duplicate suppression window
    # py-libp2p's spam guard, per forwarding peer and topic. Publishers are paced
    # far below this (announce.max_rate_per_s); a relay forwards every author's
    # messages, so the limit must cover the whole swarm's rate.
    max_msgs_per_peer_per_s: float = 2000.0
    # What one neighbour may make this peer validate, checked before any signature
    # (learnae.gossip.admission): far below the above, far above an honest neighbour.
    admission: AdmissionParams = field(default_factory=AdmissionParams)
    outbound_queue_rpcs: int = 1024  # per peer (py-libp2p default: 32)
    # Send our own messages to every subscribed peer, not only the mesh (go-libp2p's
    # default floodPublish): one hop to everyone, and no loss while the mesh forms.
    flood_publish: bool = True
    # Scoring: each invalid message costs the forwarder this much score; the
    # counter decays by this factor per heartbeat (0.99/s: half-life ~70 s).
    invalid_penalty: float = 10.0
    invalid_decay: float = 0.99
    publish_threshold: float = -500.0  # messages from peers below this are ignored
    gossip_threshold: float = -100.0  # no IHAVE/IWANT exchange below this
    graylist_threshold: float = -1000.0


def score_params(p: GossipParams) -> ScoreParams:
    """Scoring where only invalid messages move the score (down), so rejected
    senders end up below zero and, persistently bad ones, below the thresholds."""
    cap = math.ceil(-p.graylist_threshold / p.invalid_penalty) + 1
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=p.invalid_penalty, cap=cap, decay=p.invalid_decay),
        publish_threshold=p.publish_threshold,
        gossip_threshold=p.gossip_threshold,
        graylist_threshold=p.graylist_threshold,
    )


class LearnaeGossipSub(GossipSub):
    """GossipSub that counts and reports every message it drops."""

    def __init__(self, params: GossipParams):
        super().__init__(
            protocols=list(PROTOCOLS),
            degree=params.degree,
            degree_low=params.degree_low,
            degree_high=params.degree_high,
            heartbeat_interval=params.heartbeat_s,
            heartbeat_initial_delay=0.1,
            gossip_window=params.gossip_window,
            gossip_history=params.gossip_history,
            score_params=score_params(params),
            adaptive_gossip_enabled=False,  # it can stretch the heartbeat to 30-60 s
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=params.max_msgs_per_peer_per_s,
            # Needs >= 3 distinct IPs in the mesh: meaningless on one host or a small LAN,
            # and it grafts past D_high. Scoring guards the mesh instead.
            eclipse_protection_enabled=False,
        )
        self.dropped: Counter[str] = Counter()
        self.flood_publish = params.flood_publish
        self._record_sent: set[ID] = set()
        self._newly_meshed: dict[str, set[ID]] = {}  # topic -> grafted since the last heartbeat

    def _get_peers_to_send(self, topic_ids, msg_forwarder: ID, origin: ID, msg_id: bytes | None = None):
        peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        if self.flood_publish and self.pubsub is not None and origin == self.pubsub.my_id \
                and msg_forwarder == origin:
            for t in topic_ids:
                for p in self.pubsub.peer_topics.get(t, ()):
                    if p != origin and p in self.peer_protocol and self.scorer.allow_publish(p, [t]):
                        peers.add(p)
        return peers

    def _notify_mesh_peer_added(self, peer_id: ID, topic: str) -> None:
        # Every path that adds a peer to a mesh (join, GRAFT either way, heartbeat,
        # replacement, opportunistic grafting) passes through here.
        super()._notify_mesh_peer_added(peer_id, topic)
        self._newly_meshed.setdefault(topic, set()).add(peer_id)

    def gossip_heartbeat(self):
        """IHAVE for the gossip window, to more peers than py-libp2p picks.

        py-libp2p gossips to D_lazy peers outside the mesh that are not in PRUNE
        backoff. Two kinds of peer then miss a message for good:

        * one grafted between a message's forwarding and the next heartbeat: the
          mesh copy went out before it was a member, and members get no IHAVE
          (a 5-peer star with D_low = 2 lost announcements this way in 4 of 40 runs);
        * one in backoff: neither mesh copies nor IHAVE reach it for the whole
          backoff (60 s). The spec and go-libp2p gossip to it like to any other.

        Both get IHAVE here too; an IHAVE for messages a peer has is ignored by it.
        """
        peers_to_gossip = super().gossip_heartbeat()
        newly, self._newly_meshed = self._newly_meshed, {}
        if self.pubsub is None:
            return peers_to_gossip
        for topic, mesh in self.mesh.items():
            mids = self.mcache.window(topic)
            if not mids:
                continue
            in_topic = self.pubsub.peer_topics.get(topic, ())
            backed_off = {p for p in in_topic if p not in mesh and self._check_back_off(p, topic)}
            for peer in (newly.get(topic, set()) & mesh) | backed_off:
                if peer in in_topic and self._is_gossipsub_peer(peer) and peer not in self.direct_peers \
                        and (self.scorer is None or self.scorer.allow_gossip(peer, [topic])):
                    peers_to_gossip[peer][topic] = list(mids)
        return peers_to_gossip

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        # Read (synchronously) by _emit_idontwant_for_message during this call.
        self._publishing_bytes = len(pubsub_msg.data)
        await super().publish(msg_forwarder, pubsub_msg)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids) -> None:
        # IDONTWANT saves bandwidth on large messages only; for a few hundred bytes
        # it doubles the RPCs per message. go-libp2p sends it above 1 KiB, as here.
        if getattr(self, "_publishing_bytes", 0) >= IDONTWANT_MIN_BYTES:
            await super()._emit_idontwant_for_message(msg_id, topic_ids)

    def send_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, priority: bool = False) -> None:
        # py-libp2p attaches our signed peer record to every RPC, and the receiver
        # verifies its signature every time. Once per connection is enough.
        if rpc.HasField("senderRecord"):
            if peer_id in self._record_sent:
                slim = rpc_pb2.RPC()
                slim.CopyFrom(rpc)
                slim.ClearField("senderRecord")
                rpc = slim
            else:
                self._record_sent.add(peer_id)
        super().send_rpc(peer_id, rpc, priority)

    async def send_recent_messages(self, peer_id: ID, topic: str) -> None:
        """The gossip window for a topic to a peer that just subscribed, in one RPC.

        py-libp2p writes each cached message as its own RPC, bypassing the
        outbound queue and attaching our signed peer record to every one: a
        subscriber then costs ~140 stream writes at 46 announcements/s, and fresh
        identities subscribe for free. One RPC, split by the queue to the size
        limit, carries the same messages.
        """
        if self.pubsub is None or peer_id not in self.pubsub.peers:
            return
        if self.scorer is not None and not self.scorer.allow_publish(peer_id, [topic]):
            return
        msgs = [m for m in map(self.mcache.get, self.mcache.window(topic)) if m is not None]
        if msgs:
            self.send_rpc(peer_id, rpc_pb2.RPC(publish=msgs))

    def remove_peer(self, peer_id: ID) -> None:
        self._record_sent.discard(peer_id)
        for peers in self._newly_meshed.values():
            peers.discard(peer_id)
        super().remove_peer(peer_id)

    def _check_spam_protection(self, peer_id: ID, msg: rpc_pb2.Message) -> bool:
        ok = super()._check_spam_protection(peer_id, msg)
        if not ok:
            self.dropped["rate-limit"] += 1
            log.warning(
                "dropped a message forwarded by %s: more than %g msg/s on one topic "
                "(raise GossipParams.max_msgs_per_peer_per_s if this swarm is that busy)",
                peer_id, self.max_messages_per_topic_per_second,
            )
        return ok

    def _handle_dropped_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, reason: str) -> None:
        if rpc.publish:
            key = "outbound-queue-full" if reason == "queue_full" else f"outbound-{reason}"
            self.dropped[key] += len(rpc.publish)
            log.warning(
                "dropped %d message(s) to %s: %s (the peer reads slower than we send)",
                len(rpc.publish), peer_id, reason,
            )
        super()._handle_dropped_rpc(peer_id, rpc, reason)


class LearnaePubsub(Pubsub):
    """Pubsub with a deeper outbound queue, counted signature failures, an
    inbox per topic instead of a lossy channel, and a shutdown that stops
    accepting traffic before its services stop."""

    def __init__(self, host, router: LearnaeGossipSub, params: GossipParams):
        super().__init__(host, router, strict_signing=True, seen_ttl=params.seen_ttl_s,
                         cache_size=1024)
        self.params = params
        self.inboxes: dict = {}  # topic -> Inbox
        self.closing = False
        self.rejected_unsigned = 0
        self.on_bad_pubsub_signature = None  # callback(forwarder: ID)
        self.bad_rpcs = 0  # pubsub streams reset because an RPC on them could not be read
        self.on_bad_rpc = None  # callback(peer: ID, detail: str)
        self.admission = Admission(params.admission)
        self.on_over_budget = None  # callback(forwarder: ID, msg, reason: str)
        # Message IDs are (from, seqno). py-libp2p seeds the seqno counter with the
        # time in *seconds* and adds one per message, so a peer that published more
        # than one message a second and restarts reuses seqnos its neighbours still
        # remember: its new announcements are dropped as duplicates, silently.
        # go-libp2p seeds with nanoseconds; so do we.
        self.counter = time.time_ns()
        self.writing = 0  # RPCs taken off a peer queue whose write has not returned yet
        self._write_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # stream -> trio.Lock

    async def write_msg(self, stream, rpc_msg: rpc_pb2.RPC) -> bool:
        # One RPC at a time per stream. py-libp2p writes to a peer's stream from its send
        # loop and, concurrently, from the replay of recent messages to a new peer; yamux
        # locks each frame, not each message, so two RPCs larger than the send window
        # interleaved and the receiver could not parse the stream (seen: a peer joining a
        # busy swarm crashed with a protobuf DecodeError before _drop_bad_stream existed).
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        self.writing += 1
        try:
            async with lock:
                return await super().write_msg(stream, rpc_msg)
        finally:
            self.writing -= 1

    def drained(self) -> bool:
        """Every RPC queued for a peer has been written to its stream (not only handed to
        the router): what a shutdown waits for before it closes the connections."""
        return self.writing == 0 and not any(len(q) for q in list(self.peer_queues.values()))

    async def _handle_new_peer(self, peer_id: ID) -> None:
        # py-libp2p retries a failed pubsub stream with new_stream(), which *dials* a
        # peer that has meanwhile disconnected (e.g. one shutting down). A pubsub
        # stream is only ever opened on an existing connection.
        if self.closing or not self.host.get_network().connections.get(peer_id):
            return
        await super()._handle_new_peer(peer_id)
        queue = self.peer_queues.get(peer_id)
        if queue is not None:
            queue._queue.max_size = self.params.outbound_queue_rpcs

    async def continuously_read_stream(self, stream) -> None:
        try:
            await super().continuously_read_stream(stream)
        except RuntimeError as exc:  # "Nursery is closed to new arrivals" while stopping
            if not self.closing and self.manager.is_running:
                raise
            log.debug("read loop ended during shutdown: %s", exc)
        except Exception as exc:  # noqa: BLE001 - bytes from a remote peer py-libp2p cannot parse
            # py-libp2p lets a protobuf DecodeError (or any error processing an RPC) out of
            # the read loop, and from there it takes the whole host down: one peer writing
            # garbage on its pubsub stream would crash us. Its stream is reset instead.
            await self._drop_bad_stream(stream, exc)

    async def _drop_bad_stream(self, stream, exc: Exception) -> None:
        peer_id = stream.muxed_conn.peer_id
        self.bad_rpcs += 1
        if self.on_bad_rpc is not None:
            self.on_bad_rpc(peer_id, f"{type(exc).__name__}: {exc}")
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001 - already gone
            pass
        if not self.closing:
            self._handle_dead_peer(peer_id)

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Run every topic validator on every message: no cached verdicts.

        py-libp2p caches a validator's verdict per message id (from, seqno) for
        300 s, longer than the seen-messages TTL: a message id validated once and
        re-used later with other data was delivered without running the validator
        (signature, author and chain checks skipped). A validator may also answer
        :data:`~learnae.gossip.validate.IGNORE`: the message is neither delivered
        nor forwarded, and its forwarder is not penalised.

        Raises:
            ValidationError: a validator rejected the message (or timed out).
            _Ignored: a validator ignored it.
        """
        for tv in self.get_msg_validators(msg):
            if tv.is_async:
                with trio.move_on_after(self.validation_timeout) as scope:
                    verdict = await tv.validator(msg_forwarder, msg)
                if scope.cancelled_caught:
                    raise ValidationError(f"validation timed out after {self.validation_timeout} s")
            else:
                verdict = tv.validator(msg_forwarder, msg)
            if verdict == IGNORE:
                raise _Ignored
            if not verdict:
                raise ValidationError("a topic validator rejected the message")

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await self._push_msg(msg_forwarder, msg)
        except _Ignored:
            self._mark_msg_seen(msg)  # no news: do not validate its copies again

    async def _push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if self.closing:
            return
        if msg_forwarder == self.my_id or self._is_msg_seen(msg):
            await super().push_msg(msg_forwarder, msg)
            return
        # The forwarder's budget first, before any signature is checked (learnae.gossip.admission).
        over = self.admission.admit(msg_forwarder, msg.from_id)
        if over is not None:
            if self.on_over_budget is not None:
                self.on_over_budget(msg_forwarder, msg, over)
            if self.admission.penalise(msg_forwarder):
                self._penalise(msg_forwarder, msg)
            return
        # Count the messages the libp2p-level signature check would drop silently.
        if not _pubsub_sig_ok(msg):
            self.rejected_unsigned += 1
            if self.on_bad_pubsub_signature is not None:
                self.on_bad_pubsub_signature(msg_forwarder, msg)
            self._penalise(msg_forwarder, msg)
            return
        await super().push_msg(msg_forwarder, msg)

    def _penalise(self, forwarder: ID, msg: rpc_pb2.Message) -> None:
        """One invalid message against ``forwarder`` in GossipSub's score, in each of its topics."""
        scorer = getattr(self.router, "scorer", None)
        if scorer is not None:
            for t in msg.topicIDs:
                scorer.on_invalid_message(forwarder, t)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        for t in publish_message.topicIDs:
            inbox = self.inboxes.get(t)
            if inbox is not None:
                inbox.deliver(publish_message)
        if any(t not in self.inboxes for t in publish_message.topicIDs):
            super().notify_subscriptions(publish_message)


class _Ignored(Exception):
    """A validator ignored a message (see :meth:`LearnaePubsub.validate_msg`)."""


def _pubsub_sig_ok(msg: rpc_pb2.Message) -> bool:
    try:
        return signature_validator(msg)
    except Exception:  # a malformed key in the message
        return False


def make_router(host, params: GossipParams | None = None) -> tuple[LearnaePubsub, LearnaeGossipSub]:
    """Build (not start) the Pubsub + GossipSub pair for ``host``."""
    params = params or GossipParams()
    gossipsub = LearnaeGossipSub(params)
    pubsub = LearnaePubsub(host, gossipsub, params)
    return pubsub, gossipsub
