"""The network half of a merge: pick neighbour snapshots, fetch, validate, average.

:class:`Merger` knows nothing about who trains: the peer runtime asks it for a
merged model every ``merge_every`` steps, and anything else holding a model
(e.g. a Keras callback) can do the same. Given the local weights and the local
step, it

1. picks up to ``merge_k`` neighbours with a snapshot not merged yet (random
   among them, skipping forked authors; with a robust rule, any neighbour's latest
   snapshot, so the rule always judges a full panel), waiting up to ``merge_wait_s`` while a
   live neighbour lags more than two merge intervals behind (bounded staleness,
   as in stale-synchronous parallel SGD: on skewed shards, merging old models
   makes the peers' models drift apart; with ``publish_interval_s``, two intervals
   of this peer's own steps more, since a paced neighbour announces its step late);
2. fetches those snapshots over Bitswap with a deadline and decodes them against
   the model fingerprint (bad data is counted by reason, logged and dropped);
3. averages them into the local weights with the configured rule and cap.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trio

from learnae.errors import LearnaeError, RemoteError
from learnae.ledger.schema import Parent
from learnae.peer.config import PeerConfig
from learnae.peer.metrics import PeerMetrics
from learnae.peer.pacing import StepRate
from learnae.peer.policy import NO_FAULTS, NetworkPolicy
from learnae.peer.view import SnapshotRef, SwarmView
from learnae.threads import run_sized

__all__ = ["Merger", "Merged", "LIVE_S", "accumulate_parents"]

log = logging.getLogger(__name__)

LIVE_S = 10.0  # default of cfg.live_s: a neighbour that announced within this long is waited for
STARTUP_MERGES = 4  # merge intervals at the start in which snapshot-less connected members are waited for
RETRY_S = 30.0  # a snapshot that could not be fetched is not chosen again for this long (doubling)
MAX_RETRY_S = 300.0
# Rules that filter out bad contributions need a full panel at every merge: they judge each model
# against the others, and their tolerance grows with the count (multi-krum: f = (n - 3) // 2).
ROBUST_RULES = frozenset({"median", "trimmed-mean", "krum", "multi-krum", "centered-clip"})


@dataclass(frozen=True, slots=True)
class Merged:
    """A merge's outcome: the new weights and the parents to record in the next snapshot."""

    weights: list[np.ndarray]
    parents: list[Parent]


class Merger:
    """Chooses, fetches and merges neighbour snapshots for one local model."""

    def __init__(self, cfg: PeerConfig, view: SwarmView, ledger, store, bitswap, metrics: PeerMetrics,
                 *, fingerprint: str, local_samples: int, policy: NetworkPolicy = NO_FAULTS,
                 on_fetched: Callable[[SnapshotRef], None] | None = None, max_snapshot_bytes: int | None = None):
        self.cfg, self.view, self.ledger = cfg, view, ledger
        self.store, self.bitswap, self.metrics = store, bitswap, metrics
        self.fingerprint = fingerprint
        self.local_samples = local_samples
        self.policy = policy  # injected partitions and fetch delays (simulations)
        self.on_fetched = on_fetched  # e.g. provide the fetched snapshot in the DHT
        # the size of the largest valid snapshot of this model: no fetch downloads or holds more
        self.max_snapshot_bytes = max_snapshot_bytes
        self.last_fetched: list[list[np.ndarray]] = []  # the neighbour models of the last merge
        self.skipped = 0  # merges a robust rule skipped for want of a full panel
        self.bound = DistanceBound()
        self._fresh = trio.Event()
        self.fetch_latencies: deque[float] = deque(maxlen=200)  # seconds, the latest successful fetches
        self._fetching = 0  # fetches in flight: their blocks are unpinned until decoded
        self._gc_done = trio.Event()
        self._gc_done.set()
        # author -> (entry CID of the snapshot that failed, monotonic time it may be tried again,
        # failures in a row): a dead or lying author costs one fetch timeout per back-off.
        self._failed: dict[str, tuple[object, float, int]] = {}
        self.connected_members: Callable[[], set[str]] = set  # the node's topic peers (direct connections)
        self._waited_s = 0.0  # time spent in bounded-staleness waits: not training
        self.rate = StepRate(clock=lambda: time.monotonic() - self._waited_s)  # own steps/s, at merges

    # -- freshness ----------------------------------------------------------------------

    def notify_fresh(self) -> None:
        """A new neighbour snapshot was announced (called by the announcement consumer)."""
        self._fresh.set()

    async def wait_fresh(self) -> None:
        """Wait for the next :meth:`notify_fresh`."""
        self._fresh = trio.Event()
        await self._fresh.wait()

    def excluded(self) -> set[str]:
        """Authors not to merge (nor wait for): forked ones, and those an injected partition
        or topology puts out of reach."""
        out = {a for a in self.view.authors() if self.ledger.is_forked(a)}
        out |= {a for a in self.view.members() if not self.policy.may_connect(a)}  # authors are members
        return out

    def usable(self, ref: SnapshotRef | None) -> bool:
        """Whether ``ref`` may be chosen: not a snapshot whose fetch failed within its back-off."""
        if ref is None:
            return False
        failed = self._failed.get(ref.author)
        return failed is None or failed[0] != ref.entry_cid or time.monotonic() >= failed[1]

    def _alive_after_ms(self) -> float:
        return (time.time() - getattr(self.cfg, "live_s", LIVE_S)) * 1000

    def lagging(self, step: int) -> list[str]:
        """Live neighbours more than two merge intervals behind ``step``.

        Only authors worth waiting for count: one that announced within ``live_s``
        (a crashed peer stops announcing, so it never stalls the others for long) and
        whose latest snapshot can be fetched (a snapshot nobody delivered is not waited
        for again until its back-off ends). While this peer itself is starting (its
        first ``STARTUP_MERGES`` merge intervals), a directly connected member that
        joined but published no snapshot yet counts as being at step 0, so the first
        peer to start does not race ahead of the others alone. After that a newcomer
        never holds anyone up (it starts from the swarm's average anyway), so a stream
        of fresh identities that join and never publish costs nothing.
        """
        # A paced neighbour announces its step up to one interval late: allow two
        # intervals of steps at this peer's own rate (the second for the time its
        # publish takes), or two paced peers would take each other for laggards.
        horizon = step - 2 * self.cfg.merge_every - 2 * self.rate.steps_in(self.cfg.publish_interval_s)
        starting = step < STARTUP_MERGES * self.cfg.merge_every
        alive_after_ms = self._alive_after_ms()
        excluded = self.excluded()
        connected = self.connected_members() if starting else set()
        out = []
        for a in self.view.members():
            if a in excluded or self.view.last_seen_ms(a) < alive_after_ms:
                continue
            ref = self.view.latest(a)
            if ref is None:
                if a in connected:
                    out.append(a)
            elif self.usable(ref) and ref.step < horizon:
                out.append(a)
        return out

    def _live(self) -> list:
        alive_after_ms = self._alive_after_ms()
        excluded = self.excluded()
        return [r for a in self.view.authors()
                if a not in excluded and (r := self.view.latest(a)).ts_ms >= alive_after_ms and self.usable(r)]

    def should_wait(self, step: int, refs: list[SnapshotRef]) -> bool:
        """Wait at this merge? Only a peer that is not behind waits, and only for live neighbours.

        A live neighbour lagging behind is waited for (stale-synchronous: the fast wait
        for the slow). With no fresh snapshot at hand the peer waits for one only when a
        live neighbour is about to publish and none is far ahead: a peer that is itself
        far behind (it just restarted, or is slower) trains on at full speed instead.
        """
        if self.lagging(step):
            return True
        if refs or self.cfg.publish_interval_s > 0:  # paced: the next fresh snapshot may be a second away
            return False
        live = self._live()
        ahead = step + 2 * self.cfg.merge_every
        return bool(live) and not any(r.step > ahead for r in live)

    async def choose(self, step: int) -> list[SnapshotRef]:
        """Up to ``merge_k`` fresh snapshots, after a bounded wait for laggards and freshness."""
        # a robust rule gets each chosen neighbour's latest snapshot, merged before or not
        fresh_only = self.cfg.rule not in ROBUST_RULES
        self.rate.note(step)
        k = self.cfg.merge_k
        choose = lambda: self.view.choose(k, exclude=self._unusable(), fresh_only=fresh_only,  # noqa: E731
                                          prefer=self.connected_members(), max_others=self.max_strangers())
        refs = choose()
        if self.cfg.merge_wait_s > 0 and self.should_wait(step, refs):
            started = time.monotonic()
            with trio.move_on_after(self.cfg.merge_wait_s):
                while self.should_wait(step, refs):
                    await self.wait_fresh()
                    refs = choose()
            self._waited_s += time.monotonic() - started
        return refs

    def max_strangers(self) -> int:
        """Seats in a panel for authors this peer has no connection to: a third of ``merge_k``, at least one."""
        return max(1, self.cfg.merge_k // 3)

    def _unusable(self) -> set[str]:
        """Authors not to choose now: excluded ones, and those whose latest snapshot failed to arrive."""
        return self.excluded() | {a for a in self._failed if not self.usable(self.view.latest(a))}

    # -- fetching and merging -----------------------------------------------------------------

    async def fetch_all(self, refs: list[SnapshotRef], step: int) -> list:
        """The usable contributions among ``refs`` (fetched concurrently; failures dropped)."""
        out: list = [None] * len(refs)

        async def one(i: int, ref: SnapshotRef) -> None:
            out[i] = await self._fetch(ref, step)

        async with trio.open_nursery() as nursery:
            for i, ref in enumerate(refs):
                nursery.start_soon(one, i, ref)
        return [c for c in out if c is not None]

    async def merge(self, local: list[np.ndarray], refs: list[SnapshotRef], step: int) -> Merged | None:
        """Fetch ``refs`` and merge them into ``local``; None when nothing usable arrived."""
        return await self.combine(local, refs, await self.fetch_mergeable(refs, step), step)

    async def fetch_mergeable(self, refs: list[SnapshotRef], step: int) -> list:
        """:meth:`fetch_all` of the ``refs`` whose authors may still be merged.

        Refs are chosen before a wait: a fork or a partition may have come since.
        """
        excluded = self.excluded()
        return await self.fetch_all([r for r in refs if r.author not in excluded], step)

    async def combine(self, local: list[np.ndarray], refs: list[SnapshotRef], contributions: list,
                      step: int) -> Merged | None:
        """Merge contributions fetched earlier for ``refs`` into ``local`` (None: nothing usable).

        ``local`` may be newer than the model the fetch was started for (the peer trains
        on while it fetches in the background). Authors that became unmergeable
        meanwhile (a fork, a partition) are dropped here.
        """
        from learnae.averaging import merge

        excluded = self.excluded()
        contributions = [c for c in contributions if c.author not in excluded]
        if not contributions:
            return None
        by_author = {r.author: r for r in refs}
        self.last_fetched = [c.weights for c in contributions]
        contributions = await run_sized(lambda: self.bound.apply(local, contributions),
                                        sum(a.nbytes for a in local) * (1 + len(contributions)))
        if self.bound.clipped_last:
            self.metrics.rejected.labels(reason="clipped").inc(self.bound.clipped_last)
        params = {"local_samples": self.local_samples} if self.cfg.rule == "weighted" else {}
        nbytes = sum(a.nbytes for a in local) * (1 + len(contributions))
        result = await run_sized(
            lambda: merge(local, contributions, rule=self.cfg.rule, weight_cap=self.cfg.weight_cap, **params), nbytes)
        for author, reason in result.excluded.items():
            self.metrics.rejected.labels(reason=reason).inc()
            log.warning("merge: excluded the snapshot of %s: %s", author, reason)
        if result.skipped:  # too few neighbours for a robust rule: the local model is kept
            self.metrics.merges_skipped.inc()
            self.skipped += 1
            return None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("merge at step %d: distances to local %s, moved %.3f", step,
                      [round(_distance(local, c.weights), 3) for c in contributions],
                      _distance(local, result.weights))
        parents = []
        for author, weight in result.influence.items():
            if author in by_author and weight > 0:  # robust rules list dropped authors at 0
                self.view.mark_merged(by_author[author])
                parents.append(Parent(by_author[author].entry_cid, float(weight)))
        return Merged(result.weights, parents)

    async def collect_garbage(self) -> int:
        """Remove unpinned blocks from the store, unless a fetch is in flight (0 then).

        A fetched neighbour snapshot is not pinned: a collection between its
        arrival and its decoding would lose it. Fetches starting meanwhile wait.
        """
        if self._fetching:
            return 0
        self._gc_done = trio.Event()
        try:
            return await self.store.gc()
        finally:
            self._gc_done.set()

    async def _fetch(self, ref: SnapshotRef, step: int):
        await self._gc_done.wait()
        self._fetching += 1
        try:
            return await self._fetch_one(ref, step)
        finally:
            self._fetching -= 1

    async def _fetch_one(self, ref: SnapshotRef, step: int):
        from learnae.averaging import Contribution
        from learnae.storage.snapshot import decode_snapshot

        t0 = time.monotonic()
        try:
            with trio.fail_after(self.cfg.fetch_timeout_s):
                if (delay := self.policy.fetch_delay_s(ref.author)) > 0:
                    await trio.sleep(delay)  # an injected round trip (and retransmission) on this link
                # the author has it: the other peers are asked only if it does not deliver
                await self.bitswap.fetch(ref.model_cid, [ref.author], timeout_s=self.cfg.fetch_timeout_s,
                                         eager=False, max_bytes=self.max_snapshot_bytes)
                data = await self.store.get(ref.model_cid, max_bytes=self.max_snapshot_bytes)
            snap = await run_sized(lambda: decode_snapshot(data, fingerprint=self.fingerprint), len(data))
        except trio.TooSlowError:
            return self._reject(ref, "fetch-timeout", f"no block within {self.cfg.fetch_timeout_s} s")
        except RemoteError as exc:
            return self._reject(ref, exc.reason, str(exc))
        except LearnaeError as exc:  # a service or store failure: try another neighbour next time
            return self._reject(ref, "fetch-failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - a stream reset or protocol error deep in libp2p
            # A neighbour's network trouble must never take this peer down: count it, log it
            # with its type (it is unexpected), and merge without that snapshot.
            log.warning("unexpected %s while fetching %s from %s", type(exc).__name__, ref.model_cid, ref.author,
                        exc_info=True)
            return self._reject(ref, "fetch-error", repr(exc))
        self._failed.pop(ref.author, None)
        if self.on_fetched is not None:
            self.on_fetched(ref)
        self.fetch_latencies.append(time.monotonic() - t0)
        self.metrics.fetch_latency.observe(self.fetch_latencies[-1])
        self.metrics.bytes_in.inc(len(data))
        # "weighted" weighs by data size: the author's shard, not its cumulative samples
        # (which would hand the merge to whoever trains fastest).
        shard = self.view.shard_samples(ref.author)
        return Contribution(
            weights=list(snap.arrays), samples=max(1, shard if shard is not None else self.local_samples),
            staleness_steps=max(0, step - ref.step),
            staleness_s=max(0.0, time.time() - ref.ts_ms / 1000), author=ref.author,
        )

    def distrust(self, author: str, reason: str) -> None:
        """Do not choose ``author``'s current snapshot again before a back-off (e.g. merging it diverged)."""
        ref = self.view.latest(author)
        if ref is not None:
            self._reject(ref, reason, "distrusted after a merge")

    def _reject(self, ref: SnapshotRef, reason: str, detail: str) -> None:
        """Count and log a snapshot that could not be used; back off from choosing it again."""
        self.metrics.rejected.labels(reason=reason).inc()
        failed = self._failed.get(ref.author)
        n = failed[2] + 1 if failed is not None and failed[0] == ref.entry_cid else 1
        self._failed[ref.author] = (ref.entry_cid, time.monotonic() + min(MAX_RETRY_S, RETRY_S * 2 ** (n - 1)), n)
        level = logging.INFO if reason.startswith("fetch") else logging.WARNING  # a neighbour gone is no news
        log.log(level, "snapshot %s of %s rejected (%s): %s; not tried again for %.0f s", ref.model_cid, ref.author,
                reason, detail, min(MAX_RETRY_S, RETRY_S * 2 ** (n - 1)))
        return None


class DistanceBound:
    """How far a neighbour's model may be from the local one before it is clipped.

    The radius is the smaller of ``NORM_FACTOR`` times the local model's norm (two
    independently initialised models of one architecture are about 1.4 norms apart,
    so this never clips an honest peer, while a sign-flipped x10 model is 11 norms
    away) and, once ``HISTORY_MIN`` merges have been seen, ``HISTORY_FACTOR`` times
    the median distance of the contributions merged recently (the swarm's usual
    spread, which a few hostile models cannot move). See :mod:`learnae.averaging.clipping`.
    """

    NORM_FACTOR = 2.0
    HISTORY_FACTOR = 4.0
    HISTORY_MIN = 8

    def __init__(self, history: int = 64):
        self.recent: deque[float] = deque(maxlen=history)
        self.clipped = 0  # contributions clipped so far
        self.clipped_last = 0  # in the last apply()

    def radius(self, local: list[np.ndarray]) -> float:
        from learnae.averaging.clipping import norm

        r = self.NORM_FACTOR * norm(local)
        if len(self.recent) >= self.HISTORY_MIN:
            r = min(r, self.HISTORY_FACTOR * float(np.median(self.recent)))
        return max(r, 1e-6)

    def apply(self, local: list[np.ndarray], contributions: list) -> list:
        """The contributions clipped to :meth:`radius`; their distances join the history."""
        from learnae.averaging.clipping import clip, distances

        radius = self.radius(local)
        out, clipped = clip(local, contributions, radius)
        self.recent.extend(min(d, radius) for d in distances(local, out) if np.isfinite(d))
        self.clipped_last = sum(clipped)
        self.clipped += self.clipped_last
        if self.clipped_last:
            log.info("clipped %d contribution(s) to %.3g from the local model", self.clipped_last, radius)
        return out


def accumulate_parents(held: list[Parent], new: list[Parent]) -> list[Parent]:
    """The parents of the next snapshot after one more merge.

    Several merges can happen before a publish (a publish still on its way is
    skipped; ``merge_every`` may be below ``publish_every``), and a robust rule
    may merge the same neighbour snapshot again. A snapshot entry names each
    parent once (the ledger schema requires it), so a parent merged again has its
    weights summed, which is what credits would have counted had each merge been
    published. Beyond the schema's limit the lightest parents are left out.
    """
    from learnae.ledger.schema import MAX_PARENTS

    weights: dict[bytes, float] = {}
    entries: dict[bytes, object] = {}
    for p in [*held, *new]:
        key = bytes(p.entry)
        weights[key] = weights.get(key, 0.0) + p.weight
        entries.setdefault(key, p.entry)
    parents = [Parent(entries[k], w) for k, w in weights.items()]
    if len(parents) > MAX_PARENTS:
        keep = {bytes(p.entry) for p in sorted(parents, key=lambda p: -p.weight)[:MAX_PARENTS]}
        parents = [p for p in parents if bytes(p.entry) in keep]
    return parents


def _distance(a, b) -> float:
    """L2 distance between two models (for debug logs)."""
    return float(np.sqrt(sum(float(np.sum((x.astype(np.float64) - y) ** 2)) for x, y in zip(a, b))))
