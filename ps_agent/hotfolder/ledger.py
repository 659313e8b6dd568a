"""The hot folder's ledger: one SQLite row per item (content hash → state), so an item is never deposited
twice, across restarts, crashes and the same file dropped twice."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ps_agent.config import make_private_file

BUILDING = "building"  # CDA written in work/, not yet in the deposit queue (or not known to be)
QUEUED = "queued"  # in the deposit queue (entry_id known)
DONE = "done"  # registered: receipt written in done/
REJECTED = "rejected"  # refused by the DMP: error written in rejected/

_SCHEMA = """
CREATE TABLE IF NOT EXISTS item (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    document_uid TEXT NOT NULL,
    entry_id TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS item_entry ON item(entry_id);
CREATE INDEX IF NOT EXISTS item_state ON item(state);
"""


@dataclass(frozen=True)
class Item:
    key: str
    name: str
    state: str
    document_uid: str
    entry_id: str
    created: str
    updated: str
    outcome: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._rlock = threading.Lock()
        opened: list[sqlite3.Connection] = []

        def connect() -> sqlite3.Connection:
            con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            opened.append(con)
            return con

        try:
            self._con = connect()
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=FULL")
            self._con.executescript(_SCHEMA)
            make_private_file(path)
            # Reads go through a connection of their own (WAL: a reader sees the last commit and never
            # waits for a writer): a lookup no longer queues behind another worker's durable claim (its
            # fsync).
            self._reader = connect()
            # The commits that need no fsync go through the same connection, set to synchronous=NORMAL for
            # their transaction (a PRAGMA is a flag: no I/O); they go to the same WAL file, which the next
            # durable commit fsyncs whole. One writer connection, not two: a commit by one connection makes
            # the other drop its page cache and read the pages again (≈ 10 reads of the WAL per item).
            self._sync = True
        except BaseException:  # nothing left open by a ledger that could not be opened
            for con in opened:
                con.close()
            raise

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable=False`` skips its fsync (WAL, ``synchronous=NORMAL``): it
        survives a crash or ``kill -9`` of the process, and the next durable commit syncs it too."""
        con = self._con
        with self._lock:
            if durable is not self._sync:
                con.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
                self._sync = durable
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def get(self, key: str) -> Item | None:
        with self._rlock:
            row = self._reader.execute("SELECT * FROM item WHERE key=?", (key,)).fetchone()
        return Item(*row) if row else None

    def by_entry(self, entry_id: str) -> Item | None:
        with self._rlock:
            row = self._reader.execute("SELECT * FROM item WHERE entry_id=?", (entry_id,)).fetchone()
        return Item(*row) if row else None

    def in_flight(self, name: str) -> Item | None:
        """The item of that name still being deposited, if any."""
        with self._rlock:
            row = self._reader.execute(
                "SELECT * FROM item WHERE name=? AND state IN (?,?) ORDER BY created DESC",
                (name, BUILDING, QUEUED),
            ).fetchone()
        return Item(*row) if row else None

    def claim_new(self, key: str, name: str, document_uid: str) -> Item | None:
        """Insert the item in state BUILDING; None when the key is already known (never twice)."""
        stamp = _now()
        with self._tx() as con:
            inserted = con.execute(
                "INSERT OR IGNORE INTO item VALUES (?,?,?,?,?,?,?,?)",
                (key, name, BUILDING, document_uid, "", stamp, stamp, ""),
            ).rowcount
        return Item(key, name, BUILDING, document_uid, "", stamp, stamp, "") if inserted == 1 else None

    def set_state(
        self, key: str, state: str, *, entry_id: str | None = None, outcome: str = "", durable: bool = True
    ) -> None:
        """``durable=False`` for the states recovery can rebuild (QUEUED: the queue entry holding the item's
        uniqueId is adopted; DONE/REJECTED: the receipt or error file, fsync'd, is found by its hash)."""
        with self._tx(durable=durable) as con:
            if entry_id is None:
                con.execute(
                    "UPDATE item SET state=?, outcome=?, updated=? WHERE key=?", (state, outcome, _now(), key)
                )
            else:
                con.execute(
                    "UPDATE item SET state=?, entry_id=?, outcome=?, updated=? WHERE key=?",
                    (state, entry_id, outcome, _now(), key),
                )

    def unfinished(self) -> list[Item]:
        with self._lock:
            rows = self._con.execute(
                "SELECT * FROM item WHERE state IN (?,?) ORDER BY created", (BUILDING, QUEUED)
            ).fetchall()
        return [Item(*r) for r in rows]

    def count(self, state: str) -> int:
        with self._rlock:
            row = self._reader.execute("SELECT count(*) FROM item WHERE state=?", (state,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._rlock:
            self._reader.close()
        with self._lock:
            self._con.close()
