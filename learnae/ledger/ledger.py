"""The Ledger: this peer's own chain, everyone else's entries, forks, index, credits, lineage.

On disk, in ``<data-dir>/ledger/``:

* ``own.log``: this peer's chain, one fsynced record per entry (see :mod:`.log`);
  an append returns only once the entry is durable, so it is never published
  and then lost (which would make the peer fork itself on restart).
* ``received.log``: other authors' verified entries, in acceptance order.
* ``index.sqlite``: the SQLite index (:mod:`.index`), rebuilt from the two logs
  when missing, stale or damaged.

Example:
    >>> import tempfile
    >>> from learnae.identity import Identity
    >>> me = Identity.generate()
    >>> led = Ledger.open(tempfile.mkdtemp(), me, swarm="s1")
    >>> e = led.append("leave", {"reason": "done"})
    >>> led.receive(e.to_bytes()).status
    <Status.DUPLICATE: 'duplicate'>
    >>> led.close()
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from multiformats import CID

from learnae.errors import InvalidEntryError, LearnaeError, StoreError, UserError
from learnae.identity import Identity
from learnae.ledger.cbor import cid_from_bytes, cid_to_bytes
from learnae.ledger.entry import Entry, decode_entry, now_ms, sign_entry
from learnae.ledger.holding import HoldingArea
from learnae.ledger.index import Index
from learnae.ledger.log import EntryLog

__all__ = ["Ledger", "Status", "ReceiveResult", "ForkProof", "LEDGER_DIR"]

log = logging.getLogger(__name__)

LEDGER_DIR = "ledger"
OWN, RECEIVED = 0, 1
FetchBlock = Callable[[CID], Awaitable[bytes]]


class Status(str, enum.Enum):
    """What :meth:`Ledger.receive` did with an entry."""

    ACCEPTED = "accepted"    # new, verified, chained: stored (propagate it)
    DUPLICATE = "duplicate"  # already stored or held (ignore)
    HELD = "held"            # verified but its prev is missing: waiting (do not propagate yet)
    FORK = "fork"            # a second valid entry at a known (author, seq): proof kept (propagate it)
    REJECTED = "rejected"    # invalid or breaks its chain (reject; penalise the sender)


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Two valid entries by one author with one ``seq``: proof of equivocation.

    Anyone can check it with :meth:`check`; gossip re-publishes both entries so
    every honest peer detects the fork itself.
    """

    author: str
    seq: int
    first: Entry
    second: Entry

    def check(self) -> bool:
        """True if both entries verify, share author and seq, and differ."""
        try:
            a, b = decode_entry(self.first.to_bytes()), decode_entry(self.second.to_bytes())
        except InvalidEntryError:
            return False
        return a.author == b.author == self.author and a.seq == b.seq == self.seq and a.cid != b.cid


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    """The outcome of :meth:`Ledger.receive`.

    Attributes:
        status: see :class:`Status`.
        cid: the entry's CID (None if it did not even decode).
        reason: why it was rejected (an InvalidEntryError reason, "bad-chain",
            "forked-author" or "wrong-swarm").
        proof: the fork proof, for ``FORK``.
        released: results for held entries this one unblocked (their status too).
    """

    status: Status
    cid: CID | None = None
    reason: str | None = None
    proof: ForkProof | None = None
    released: tuple[ReceiveResult, ...] = ()


class Ledger:
    """One peer's view of the swarm's ledger. Use :meth:`open`; not thread-safe.

    Args:
        directory: the ledger directory (``<data-dir>/ledger``).
        identity: this peer's key; needed to :meth:`append`.
        swarm: if set, entries of other swarms are rejected ("wrong-swarm").
        fetch_block: optional ``async (cid) -> bytes`` used by :meth:`fill_gaps`
            to fetch missing ``prev`` entries (any callable; e.g. a Store's ``get_block``).
        max_held: capacity of the out-of-order holding area.
        readonly: read without writing anything (safe next to a running peer): the
            on-disk index is used when it is current, else an in-memory one is built.

    Raises:
        UserError: another process (a running peer) has the ledger open for writing.
        StoreError: the stored chain is damaged or belongs to another key.
    """

    def __init__(self, directory: Path, identity: Identity | None = None, *, swarm: str | None = None,
                 fetch_block: FetchBlock | None = None, max_held: int = 1024, readonly: bool = False):
        self.dir = Path(directory)
        self.readonly = readonly
        self.identity = identity
        self._own_id = identity.peer_id if identity is not None else None  # computed once: base58 is slow
        self._lock_fd = None
        if readonly:
            self._open_readonly()
        else:
            try:
                self._open_writable()
            except BaseException:
                self._unlock()
                raise
        self.swarm = swarm
        self.fetch_block = fetch_block
        self.holding = HoldingArea(max_held)
        self.rejected: dict[str, int] = {}  # reason -> count
        # Called with every entry stored from the network (received, released from the
        # holding area, fetched to fill a gap, synced), so a peer's view of the swarm
        # learns only entries whose chain is complete, whatever path they came by.
        self.on_store: Callable[[Entry], None] | None = None
        self._gap_tries: dict[bytes, tuple[int, float]] = {}  # missing prev -> (fetches, next try at)
        # While True (a peer sets it from start until it has synced with the swarm), an entry
        # signed with our key that continues our chain is taken back into own.log.
        self.recovering = False
        self._load_own_head()

    def _open_readonly(self) -> None:
        self._own = EntryLog(self.dir / "own.log", readonly=True)
        self._recv = EntryLog(self.dir / "received.log", readonly=True)
        self._logs = (self._own, self._recv)
        db = self.dir / "index.sqlite"
        self.index = None
        try:
            self.index = Index(db, readonly=True) if db.exists() else None
            current = self.index is not None and (self.index.get_meta("own_size"), self.index.get_meta(
                "recv_size")) == (self._own.size, self._recv.size)
        except sqlite3.DatabaseError:
            current = False
        if not current:
            if self.index is not None:
                self.index.close()
            self.index = Index(":memory:")
            self._catch_up()
        self._own.records = self._recv.records = []

    def _open_writable(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise UserError(f"{self.dir} is in use by another learnae process (a running peer?); "
                            f"stop it first, or use a read-only command") from None
        self._own = EntryLog(self.dir / "own.log")
        self._recv = EntryLog(self.dir / "received.log")
        self._logs = (self._own, self._recv)
        if self._own.records and self.identity is not None:
            author = decode_entry(self._own.records[0][1], verify=False).author
            if author != self.identity.peer_id:
                raise StoreError(f"{self._own.path} holds the chain of {author}, not of this key "
                                 f"{self.identity.peer_id}; use the data dir that belongs to this key")
        try:
            self.index = Index(self.dir / "index.sqlite")
            self._catch_up()
        except sqlite3.DatabaseError as exc:
            log.warning("%s: index unreadable (%s); rebuilding it from the logs", self.dir, exc)
            for suffix in ("", "-wal", "-shm"):
                (self.dir / f"index.sqlite{suffix}").unlink(missing_ok=True)
            self.index = Index(self.dir / "index.sqlite")
            self._catch_up()
        self._own.records = self._recv.records = []  # replayed; free the memory

    @classmethod
    def open(cls, data_dir: Path | str, identity: Identity | None = None, **kwargs) -> Ledger:
        """Open (creating if needed) the ledger of a peer data dir. Keyword args as the class."""
        return cls(Path(data_dir) / LEDGER_DIR, identity, **kwargs)

    def close(self) -> None:
        if not self.readonly:
            self._recv.sync()
        self.index.close()
        for lg in self._logs:
            lg.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- startup: bring the index level with the logs ---------------------------------

    def _catch_up(self) -> None:
        own_done = self.index.get_meta("own_size", 0)
        recv_done = self.index.get_meta("recv_size", 0)
        if own_done > self._own.size or recv_done > self._recv.size:
            log.warning("%s: index is ahead of the logs; rebuilding it", self.dir)
            self.index.reset()
            own_done = recv_done = 0
        with self.index:
            for off, data in self._own.records:
                if off > own_done:
                    self._replay(OWN, off, data)
            for off, data in self._recv.records:
                if off > recv_done:
                    self._replay(RECEIVED, off, data)
            self.index.set_meta("own_size", self._own.size)
            self.index.set_meta("recv_size", self._recv.size)

    def _replay(self, log_id: int, off: int, data: bytes) -> None:
        try:
            e = decode_entry(data, verify=False)  # verified before it was written here
        except InvalidEntryError as exc:
            raise StoreError(f"{self._logs[log_id].path}: stored entry at byte {off} is damaged ({exc})") from exc
        key = cid_to_bytes(e.cid)
        others = [c for c in self.index.at(e.author, e.seq) if c != key]
        self.index.add(e, log_id, off, len(data))
        if others:
            self.index.add_fork(e.author, e.seq, others[0], key)

    def _load_own_head(self) -> None:
        self.next_seq, self.head = 0, None
        self._last_ts = 0
        if self.identity is None:
            return
        head = self.index.head(self.identity.peer_id, OWN)  # never a forged twin from received.log
        if head is not None:
            self.head = cid_from_bytes(head[0])
            self.next_seq = head[1] + 1
            self._last_ts = self.entry(self.head).ts

    # -- own chain ----------------------------------------------------------------------

    def append(self, kind: str, body: dict, *, swarm: str | None = None, ts: int | None = None) -> Entry:
        """Sign the next entry of this peer's chain and store it durably (fsync) before returning.

        Raises:
            LearnaeError: if the ledger was opened without an identity or swarm.
            InvalidEntryError: if ``body`` does not fit ``kind``'s schema.
            StoreError: if the disk write fails (nothing is appended then).
            OSError: ENOSPC if the index's disk is full after the log write: the entry is
                appended and the index takes it in when the ledger is next opened.

        Example:
            >>> # led.append("snapshot", {"model": cid, "step": 10, "samples": 640,
            >>> #                         "metrics": {"loss": 0.3}, "parents": []})
        """
        if self.identity is None:
            raise LearnaeError("this ledger was opened without an identity; it cannot append")
        swarm = swarm or self.swarm
        if not swarm:
            raise LearnaeError("no swarm id given for the entry")
        ts = max(now_ms() if ts is None else ts, self._last_ts)  # keep the chain's clock monotonic
        e = sign_entry(self.identity, swarm=swarm, seq=self.next_seq, prev=self.head, kind=kind, body=body, ts=ts)
        data = e.to_bytes()
        off = self._own.append(data, durable=True)
        self.head, self.next_seq, self._last_ts = e.cid, e.seq + 1, ts  # the log is the truth: it is appended
        with self.index:
            self.index.add(e, OWN, off, len(data))
            self.index.set_meta("own_size", self._own.size)
        return e

    # -- other peers' entries -----------------------------------------------------------

    def receive(self, entry: Entry | bytes) -> ReceiveResult:
        """Verify an entry from the network and place it: store, hold, record a fork, or reject.

        Never raises for bad remote data: the result says what happened and why.

        Example:
            >>> # res = led.receive(message.data)
            >>> # if res.status in (Status.ACCEPTED, Status.FORK): propagate
        """
        try:
            if not isinstance(entry, Entry):
                entry = decode_entry(entry)
            elif not entry.verified:
                try:
                    data = entry.to_bytes()
                except Exception:  # a hand-built Entry holding values DAG-CBOR cannot encode
                    return self._rejected(None, "bad-schema")
                entry = decode_entry(data)
        except InvalidEntryError as exc:
            return self._rejected(None, exc.reason)
        if self.swarm is not None and entry.swarm != self.swarm:
            return self._rejected(entry.cid, "wrong-swarm")
        key = cid_to_bytes(entry.cid)
        if key in self.holding or self.index.location(key) is not None:
            return ReceiveResult(Status.DUPLICATE, entry.cid)
        return self._place(entry, key)

    def _rejected(self, cid: CID | None, reason: str) -> ReceiveResult:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        log.info("rejected entry %s: %s", cid, reason)
        return ReceiveResult(Status.REJECTED, cid, reason)

    def _place(self, e: Entry, key: bytes) -> ReceiveResult:
        others = [c for c in self.index.at(e.author, e.seq) if c != key]
        if others and self.index.fork_seq(e.author) is not None:
            # One proof per author suffices: more twins prove nothing new and would let a
            # forked author grow every peer's ledger without bound.
            return ReceiveResult(Status.DUPLICATE, e.cid)
        if others:
            self._store(e)
            self.index.add_fork(e.author, e.seq, others[0], key)
            proof = ForkProof(e.author, e.seq, self.entry(cid_from_bytes(others[0])), e)
            log.warning("fork: author %s signed two entries at seq %d (%s, %s)",
                        e.author, e.seq, proof.first.cid, e.cid)
            return ReceiveResult(Status.FORK, e.cid, proof=proof)
        if e.author == self._own_id:
            # Our own signature on the entry that follows our head: we signed it before own.log
            # lost its tail (or the data dir was restored from a backup). Take it back, so the
            # next append continues the chain instead of signing a second entry at this seq.
            if not (self.recovering and not self.readonly and e.seq >= self.next_seq):
                # anything else of ours that we never wrote is a forgery; never build on it
                return self._rejected(e.cid, "unknown-own-entry")
            if e.seq == self.next_seq and e.prev == self.head:
                return self._adopt_own(e)
            # a later one waits in the holding area for the entries before it
        fork_seq = self.index.fork_seq(e.author)
        if fork_seq is not None and e.seq > fork_seq:
            return self._rejected(e.cid, "forked-author")
        if e.prev is not None:
            prev = self.index.location(cid_to_bytes(e.prev))
            if prev is None:
                twin = self.holding.twin(e, key)
                if twin is not None:  # two signed entries at one seq: a fork, whatever the chain before
                    return self._fork_held(twin, e, key)
                for old in self.holding.add(e, key):
                    log.info("holding area full: evicted %s seq %d", old.author, old.seq)
                return ReceiveResult(Status.HELD, e.cid)
            if prev[3] != e.author or prev[4] != e.seq - 1:
                return self._rejected(e.cid, "bad-chain")
        self._store(e)
        return ReceiveResult(Status.ACCEPTED, e.cid, released=tuple(self._release(key)))

    def _fork_held(self, twin: tuple[bytes, Entry], e: Entry, key: bytes) -> ReceiveResult:
        """Record a fork between a held entry and ``e`` before their chain arrived.

        Both entries are stored (ledger verify accepts a forked seq without its
        predecessor) so the proof survives restarts and can be shown to anyone.
        """
        twin_key, first = twin
        self.holding.remove(twin_key)
        self._store(first)
        self._store(e)
        self.index.add_fork(e.author, e.seq, twin_key, key)
        log.warning("fork: author %s signed two entries at seq %d (%s, %s), seen before their chain",
                    e.author, e.seq, first.cid, e.cid)
        return ReceiveResult(Status.FORK, e.cid, proof=ForkProof(e.author, e.seq, first, e))

    def _store(self, e: Entry) -> None:
        data = e.to_bytes()
        off = self._recv.append(data, durable=False)  # in the OS on return; fsynced by sync()/close()
        with self.index:
            self.index.add(e, RECEIVED, off, len(data))
            self.index.set_meta("recv_size", self._recv.size)
        if self.on_store is not None:
            self.on_store(e)

    def _adopt_own(self, e: Entry) -> ReceiveResult:
        data = e.to_bytes()
        off = self._own.append(data, durable=True)
        with self.index:
            self.index.add(e, OWN, off, len(data))
            self.index.set_meta("own_size", self._own.size)
        self.head, self.next_seq, self._last_ts = e.cid, e.seq + 1, max(self._last_ts, e.ts)
        log.warning("recovered own entry seq %d (%s) from the swarm: this peer had signed it before "
                    "its own.log lost it", e.seq, e.cid)
        return ReceiveResult(Status.ACCEPTED, e.cid, released=tuple(self._release(cid_to_bytes(e.cid))))

    def _release(self, key: bytes) -> list[ReceiveResult]:
        out, stack = [], [key]
        while stack:
            for child in self.holding.pop_children(stack.pop()):
                ckey = cid_to_bytes(child.cid)
                res = self._place(child, ckey)
                out.append(res)
                if res.status is Status.ACCEPTED:
                    out.extend(res.released)
                    stack.append(ckey)
        return out

    async def fill_gaps(self, *, timeout_s: float = 10.0, max_fetches: int = 256,
                        retry_s: float = 30.0, max_tries: int = 5) -> int:
        """Fetch the missing ``prev`` of held entries through ``fetch_block``; return blocks fetched.

        Only prevs nobody holds are asked for (a held entry's predecessor that is held
        itself is not missing, only waiting). A prev that could not be fetched is asked
        again after ``retry_s`` (doubling), at most ``max_tries`` times: an entry whose
        ``prev`` points nowhere costs a bounded number of requests, then waits in the
        holding area until evicted. Each fetch has a deadline; a block that does not
        hash to its CID or does not verify is dropped (and counted in :attr:`rejected`).
        """
        import time

        import trio

        from learnae.ledger.verify import block_cid_ok

        if self.fetch_block is None:
            return 0
        fetched, tried = 0, set()
        while fetched < max_fetches:
            now = time.monotonic()
            wanted = [c for c in self.holding.missing() if c not in tried
                      and self._gap_tries.get(bytes(c), (0, 0.0))[1] <= now
                      and self._gap_tries.get(bytes(c), (0, 0.0))[0] < max_tries]
            if not wanted:
                break
            for cid in wanted[: max_fetches - fetched]:
                tried.add(cid)
                fetched += 1
                try:
                    with trio.fail_after(timeout_s):
                        data = await self.fetch_block(cid)
                except Exception as exc:  # any store or network failure: try again another time
                    n = self._gap_tries.get(bytes(cid), (0, 0.0))[0] + 1
                    self._gap_tries[bytes(cid)] = (n, time.monotonic() + retry_s * 2 ** (n - 1))
                    log.debug("could not fetch missing entry %s (try %d): %r", cid, n, exc)
                    continue
                self._gap_tries.pop(bytes(cid), None)
                if not isinstance(data, (bytes, bytearray)) or not block_cid_ok(cid, bytes(data)):
                    self._rejected(cid, "cid-mismatch")
                    continue
                self.receive(bytes(data))
        if len(self._gap_tries) > 4 * self.holding.max_entries:  # forget the oldest bookkeeping
            for key in list(self._gap_tries)[: len(self._gap_tries) // 2]:
                del self._gap_tries[key]
        return fetched

    def gaps(self) -> int:
        """Missing entries held entries wait for (the ledger's outstanding gaps)."""
        return len(self.holding.missing())

    def sync(self) -> None:
        """Make every received entry durable (own appends always are)."""
        self._recv.sync()

    # -- reads --------------------------------------------------------------------------

    def _read(self, loc) -> Entry:
        log_id, off, length = loc[:3]
        return decode_entry(self._logs[log_id].read(off, length), verify=False)

    def entry(self, cid: CID) -> Entry | None:
        """The stored entry with this CID, or None."""
        loc = self.index.location(cid_to_bytes(cid))
        return None if loc is None else self._read(loc)

    def entry_bytes(self, cid: CID) -> bytes | None:
        """The stored block of an entry (what a block store serves to peers), or None."""
        loc = self.index.location(cid_to_bytes(cid))
        return None if loc is None else self._logs[loc[0]].read(loc[1], loc[2])

    def entries(self, *, author: str | None = None, kind: str | None = None, since_ms: int | None = None,
                until_ms: int | None = None, limit: int | None = None) -> list[Entry]:
        """Stored entries matching every filter given, by author then seq."""
        return [self._read(r) for r in self.index.select(author=author, kind=kind, since_ms=since_ms,
                                                         until_ms=until_ms, limit=limit)]

    def raw_entries(self) -> list[tuple[CID, bytes]]:
        """Every stored entry as ``(cid, bytes)``, each author's chain in seq order."""
        return [(cid_from_bytes(cid), self._logs[log_id].read(off, length))
                for log_id, off, length, cid in self.index.select()]

    def latest_snapshot(self, author: str) -> Entry | None:
        loc = self.index.latest_snapshot(author)
        return None if loc is None else self._read(loc)

    def merged_by(self, entry_cid: CID) -> list[tuple[CID, str, float]]:
        """Reverse lineage: ``(child entry, child author, weight)`` for every merge of ``entry_cid``."""
        return [(cid_from_bytes(c), a, w) for c, a, _, w in self.index.merged_by(cid_to_bytes(entry_cid))]

    def is_forked(self, author: str) -> bool:
        return self.index.fork_seq(author) is not None

    def fork_proofs(self, swarm: str | None = None) -> list[ForkProof]:
        """Every fork proof held (both entries of each), for re-publishing; of one swarm if given."""
        proofs = [ForkProof(a, s, self.entry(cid_from_bytes(x)), self.entry(cid_from_bytes(y)))
                  for a, s, x, y in self.index.forks()]
        return [p for p in proofs if swarm is None or p.first.swarm == swarm]

    def credits(self):
        """Per-author credits, best score first (see :mod:`learnae.ledger.credits`)."""
        from learnae.ledger.credits import compute_credits

        return compute_credits(self.index.db)

    def trace(self, model: CID):
        """The lineage of a model CID (see :mod:`learnae.ledger.lineage`)."""
        from learnae.ledger.lineage import trace

        return trace(self.index.db, model)

    def export_car(self, path: Path | str, *, extra_blocks=()) -> int:
        """Write every entry (plus ``extra_blocks``, e.g. snapshot blocks) to a CARv1 file."""
        from learnae.ledger.archive import export_car

        return export_car(self, path, extra_blocks=extra_blocks)

    def import_car(self, path: Path | str, *, put_block=None):
        """Receive every entry of a CAR file (see :func:`learnae.ledger.archive.import_car`)."""
        from learnae.ledger.archive import import_car

        return import_car(self, path, put_block=put_block)

    def chain_heads(self, swarm: str | None = None, *, unbroken: bool = False) -> dict[str, tuple[int, CID]]:
        """``author -> (seq, CID)`` of each author's highest stored entry (of ``swarm`` if given).

        ``unbroken``: the head of the chain held without a gap from seq 0 instead (what a
        sync client has): entries stored beyond a gap, e.g. both entries of a fork seen
        before the chain leading to it, do not count, and an author with no seq 0 is left out.
        """
        sql = ("SELECT e.author, e.seq, e.cid, h.n FROM entries e JOIN (SELECT author, MAX(seq) AS s, "
               "COUNT(DISTINCT seq) AS n FROM entries GROUP BY author) h ON h.author = e.author AND h.s = e.seq")
        out = {}
        for author, seq, cid, n in self.index.db.execute(sql):
            if author in out:  # a forked head: either twin will do
                continue
            if unbroken and n != seq + 1:  # a gap below the head: the head of the part before it
                seq = -1
                for (s,) in self.index.db.execute("SELECT DISTINCT seq FROM entries WHERE author=? ORDER BY seq",
                                                  (author,)):
                    if s != seq + 1:
                        break
                    seq = s
                if seq < 0:
                    continue
                cid = self.index.at(author, seq)[0]
            out[author] = (seq, cid_from_bytes(cid))
        if swarm is not None:
            out = {a: h for a, h in out.items() if (e := self.entry(h[1])) is not None and e.swarm == swarm}
        return out

    def chain_after(self, author: str, seq: int, limit: int = 256) -> list[bytes]:
        """The stored entries of ``author`` with a seq above ``seq``, in chain order, as block bytes."""
        rows = self.index.db.execute(
            "SELECT log, off, len FROM entries WHERE author=? AND seq>? ORDER BY seq LIMIT ?",
            (author, seq, int(limit))).fetchall()
        return [self._logs[log_id].read(off, length) for log_id, off, length in rows]

    def entry_at(self, author: str, seq: int) -> list[CID]:
        """The CIDs stored at ``(author, seq)``: one, or two for a fork."""
        return [cid_from_bytes(c) for c in self.index.at(author, seq)]

    def heads(self) -> list[CID]:
        """The CID of each author's highest stored entry (the CAR roots)."""
        rows = self.index.db.execute(
            "SELECT e.cid FROM entries e JOIN (SELECT author, MAX(seq) AS s FROM entries GROUP BY author) h "
            "ON h.author = e.author AND h.s = e.seq ORDER BY e.author")
        return [cid_from_bytes(r[0]) for r in rows]

    def __len__(self) -> int:
        return self.index.count()
