"""The SQLite index of a ledger (stdlib ``sqlite3``, WAL mode), rebuildable from the logs.

The index holds no fact that the entry logs do not: every row derives from one
stored entry, so deleting ``index.sqlite`` and reopening the ledger rebuilds it.
CIDs are stored as their binary form (BLOB); entry bytes stay in the logs and
rows point at them (``log``, ``off``, ``len``).

Tables: ``entries`` (by author/seq, kind/time, model CID), ``parents`` (merge
edges child entry -> parent entry with weight: forward and reverse lineage),
``forks`` (equivocation proofs), ``meta`` (how far each log is indexed).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from learnae.ledger.cbor import cid_to_bytes
from learnae.ledger.entry import Entry

__all__ = ["Index", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    cid BLOB PRIMARY KEY, author TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    ts INTEGER NOT NULL, swarm TEXT NOT NULL, prev BLOB, log INTEGER NOT NULL,
    off INTEGER NOT NULL, len INTEGER NOT NULL, model BLOB, step INTEGER, samples INTEGER, shard BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_author_seq ON entries(author, seq);
CREATE INDEX IF NOT EXISTS entries_kind_ts ON entries(kind, ts);
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
CREATE INDEX IF NOT EXISTS entries_model ON entries(model);
-- covering indexes for credits and lineage (a table lookup per row would cost ~1 s at 100k);
-- the claims are bounded in Python, which needs step beside samples (replaces entries_author_kind)
DROP INDEX IF EXISTS entries_author_kind;
CREATE INDEX IF NOT EXISTS entries_author_claims ON entries(author, kind, seq, samples, step);
CREATE TABLE IF NOT EXISTS parents(
    child BLOB NOT NULL, child_author TEXT NOT NULL, child_seq INTEGER NOT NULL,
    parent BLOB NOT NULL, weight REAL NOT NULL,
    parent_author TEXT, parent_seq INTEGER,  -- NULL until the parent entry is stored here
    PRIMARY KEY(child, parent)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parents_parent ON parents(parent);
CREATE INDEX IF NOT EXISTS parents_child_author
    ON parents(child_author, child_seq, parent_author, parent_seq, weight);
CREATE INDEX IF NOT EXISTS parents_parent_author
    ON parents(parent_author, child_author, weight, parent_seq, child_seq);
CREATE TABLE IF NOT EXISTS forks(
    author TEXT NOT NULL, seq INTEGER NOT NULL, first BLOB NOT NULL, second BLOB NOT NULL,
    PRIMARY KEY(author, seq)
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
"""


class Index:
    """SQLite tables over the stored entries. Not thread-safe: one owner (the Ledger).

    Args:
        path: the database file; ``":memory:"`` for a throwaway index.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False):
        self.path = path
        self._depth = 0
        if readonly:
            uri = Path(path).resolve().as_uri() + "?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            try:
                self.db.execute("SELECT COUNT(*) FROM entries")  # fail now if it is not our index
            except sqlite3.DatabaseError:
                self.db.close()
                raise
            return
        if str(path) != ":memory:":  # created private; SQLite gives its -wal and -shm files the same mode
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # the logs, not the index, are the durable truth
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self.reset()
        self.db.executescript(_SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def reset(self) -> None:
        """Drop every table (before a rebuild)."""
        for table in ("entries", "parents", "forks", "meta"):
            self.db.execute(f"DROP TABLE IF EXISTS {table}")
        self.db.executescript(_SCHEMA)

    # -- transactions -------------------------------------------------------------------

    def __enter__(self) -> Index:
        if self._depth == 0:
            self.db.execute("BEGIN")
        self._depth += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._depth -= 1
        if self._depth == 0:
            try:
                if exc_type is None:
                    self.db.execute("COMMIT")
                elif self.db.in_transaction:  # SQLite itself rolls back on a full disk
                    self.db.execute("ROLLBACK")
            except sqlite3.OperationalError as failed:
                self._raise_if_full(failed)
                raise
        if exc is not None:
            self._raise_if_full(exc)

    def _raise_if_full(self, exc: BaseException) -> None:
        """SQLite's "database or disk is full" as the OSError every other full write raises."""
        if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path)) from exc

    # -- writes -----------------------------------------------------------------------

    def add(self, e: Entry, log_id: int, off: int, length: int) -> None:
        """Index one entry stored at ``(log_id, off, length)``."""
        cid = cid_to_bytes(e.cid)
        body = e.body
        model = step = samples = shard = None
        if e.kind == "snapshot":
            model, step, samples = cid_to_bytes(body["model"]), body["step"], body["samples"]
        elif e.kind == "shard":
            shard, samples = cid_to_bytes(body["shard"]), body["samples"]
        self.db.execute(
            "INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, e.author, e.seq, e.kind, e.ts, e.swarm, cid_to_bytes(e.prev) if e.prev else None,
             log_id, off, length, model, step, samples, shard),
        )
        # merge edges carry both ends' author and seq, so credits and lineage never join
        self.db.execute("UPDATE parents SET parent_author=?, parent_seq=? WHERE parent=? AND parent_author IS NULL",
                        (e.author, e.seq, cid))
        if e.kind == "snapshot" and body["parents"]:
            rows = []
            for p in body["parents"]:
                parent = cid_to_bytes(p["entry"])
                known = self.db.execute("SELECT author, seq FROM entries WHERE cid=?", (parent,)).fetchone()
                rows.append((cid, e.author, e.seq, parent, p["weight"], *(known or (None, None))))
            self.db.executemany("INSERT OR IGNORE INTO parents VALUES (?,?,?,?,?,?,?)", rows)

    def add_fork(self, author: str, seq: int, first: bytes, second: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO forks VALUES (?,?,?,?)", (author, seq, first, second))

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    # -- reads ------------------------------------------------------------------------

    def location(self, cid: bytes) -> tuple[int, int, int, str, int] | None:
        """``(log, off, len, author, seq)`` of a stored entry, or None."""
        return self.db.execute(
            "SELECT log, off, len, author, seq FROM entries WHERE cid=?", (cid,)).fetchone()

    def at(self, author: str, seq: int) -> list[bytes]:
        """CIDs stored for ``(author, seq)`` (two or more only for a fork)."""
        return [r[0] for r in self.db.execute(
            "SELECT cid FROM entries WHERE author=? AND seq=?", (author, seq))]

    def head(self, author: str, log_id: int | None = None) -> tuple[bytes, int] | None:
        """``(cid, seq)`` of the author's highest stored entry (in log ``log_id`` if given)."""
        if log_id is None:
            return self.db.execute(
                "SELECT cid, seq FROM entries WHERE author=? ORDER BY seq DESC LIMIT 1", (author,)).fetchone()
        return self.db.execute(
            "SELECT cid, seq FROM entries WHERE author=? AND log=? ORDER BY seq DESC LIMIT 1",
            (author, log_id)).fetchone()

    def fork_seq(self, author: str) -> int | None:
        row = self.db.execute("SELECT MIN(seq) FROM forks WHERE author=?", (author,)).fetchone()
        return row[0]

    def forks(self) -> list[tuple[str, int, bytes, bytes]]:
        return self.db.execute("SELECT author, seq, first, second FROM forks ORDER BY author, seq").fetchall()

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def select(self, *, author: str | None = None, kind: str | None = None, since_ms: int | None = None,
               until_ms: int | None = None, limit: int | None = None) -> list[tuple]:
        """Rows ``(log, off, len, cid)`` matching the filters, ordered by author then seq."""
        where, args = [], []
        for clause, value in (("author=?", author), ("kind=?", kind), ("ts>=?", since_ms), ("ts<?", until_ms)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT log, off, len, cid FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY author, seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.db.execute(sql, args).fetchall()

    def latest_snapshot(self, author: str) -> tuple[int, int, int] | None:
        return self.db.execute(
            "SELECT log, off, len FROM entries WHERE author=? AND kind='snapshot' ORDER BY seq DESC LIMIT 1",
            (author,)).fetchone()

    def merged_by(self, entry_cid: bytes) -> list[tuple[bytes, str, int, float]]:
        """Reverse lineage: ``(child cid, child author, child seq, weight)`` of every merge of an entry."""
        return self.db.execute(
            "SELECT child, child_author, child_seq, weight FROM parents WHERE parent=? ORDER BY child_author",
            (entry_cid,)).fetchall()

    def close(self) -> None:
        self.db.close()
