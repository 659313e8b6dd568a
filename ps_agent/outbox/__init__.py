"""Persistent store of deposits whose outcome is unknown (network failure, crash during the call).

A deposit is written here *before* it is sent and removed once the DMP accepted or refused it. What
remains after a ``TransportError`` (or a crash) is resolved by ``Agent.resume_pending()``: GetDocuments by
uniqueId first (registered → done, never resent), resend only what the DMP does not know. The CDA bytes
are kept until then, in the agent's data folder (mode 0700), so nothing is lost.

Speed: ``remove_later`` queues the (non-durable) removal of a resolved deposit on the outbox's own thread,
off the deposit's path; ``pending`` and ``close`` first wait for queued work. (Writing the entry on that
thread while the request is signed was measured too: no gain, the GIL hand-over costs what it saves.)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ps_agent.errors import PsAgentError


class OutboxError(PsAgentError):
    """The outbox file cannot be read or written."""


@dataclass(frozen=True)
class PendingDeposit:
    submission_set_uid: str
    patient_ins: str
    patient_oid: str
    ins_status: str
    document_uids: tuple[str, ...]
    documents: tuple[bytes, ...]
    visibility: tuple[
        bool, bool, bool
    ]  # masked_to_professionals, invisible_to_patient, invisible_to_legal_reps
    replaces: tuple[str, ...]  # uniqueId replaced by each document ("" when none)
    created: str
    attempts: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    submission_set_uid TEXT PRIMARY KEY,
    patient_ins TEXT NOT NULL, patient_oid TEXT NOT NULL, ins_status TEXT NOT NULL,
    document_uids TEXT NOT NULL, visibility TEXT NOT NULL, replaces TEXT NOT NULL,
    created TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS pending_document (
    submission_set_uid TEXT NOT NULL REFERENCES pending(submission_set_uid) ON DELETE CASCADE,
    position INTEGER NOT NULL, content BLOB NOT NULL, PRIMARY KEY (submission_set_uid, position)
);
"""


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            self._con.execute("PRAGMA journal_mode = WAL")  # one fsync per commit, durable with FULL
            self._con.execute("PRAGMA synchronous = FULL")
            self._con.execute("PRAGMA foreign_keys = ON")
            with self._con:
                self._con.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(
                f"La file d'envoi du DMP est illisible : {self.path} ({exc})", code="OUTBOX"
            ) from exc
        # One thread for queued removals (in order); ``_drain`` waits for them.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ps-agent-outbox")

    def _drain(self) -> None:
        """Wait until every queued write has run."""
        self._worker.submit(lambda: None).result()

    def remove_later(self, submission_set_uid: str) -> None:
        """Queue ``remove`` (not durable anyway, see ``remove``); errors only leave the entry pending,
        which ``resume_pending`` resolves without resending."""
        self._worker.submit(self._remove_quietly, submission_set_uid)

    def _remove_quietly(self, submission_set_uid: str) -> None:
        try:
            self.remove(submission_set_uid)
        except OutboxError:
            pass

    def _connect(self) -> sqlite3.Connection:
        return self._con

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        with self._lock:
            self._con.close()

    def add(
        self,
        submission_set_uid: str,
        patient: tuple[str, str, str],
        document_uids: tuple[str, ...],
        documents: tuple[bytes, ...],
        visibility: tuple[bool, bool, bool],
        replaces: tuple[str, ...],
    ) -> None:
        """Durably record a deposit about to be sent (fsync before returning)."""
        try:
            self._add(submission_set_uid, patient, document_uids, documents, visibility, replaces)
        except sqlite3.Error as exc:
            raise OutboxError(
                f"La file d'envoi du DMP n'a pas pu être écrite ({exc}) : le document n'est pas envoyé.",
                code="OUTBOX",
            ) from exc

    def _add(
        self,
        submission_set_uid: str,
        patient: tuple[str, str, str],
        document_uids: tuple[str, ...],
        documents: tuple[bytes, ...],
        visibility: tuple[bool, bool, bool],
        replaces: tuple[str, ...],
    ) -> None:
        with self._lock, self._connect() as con:
            con.execute("PRAGMA synchronous = FULL")
            con.execute(
                "INSERT INTO pending VALUES (?,?,?,?,?,?,?,?,1)",
                (
                    submission_set_uid,
                    *patient,
                    json.dumps(list(document_uids)),
                    json.dumps(list(visibility)),
                    json.dumps(list(replaces)),
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
            con.executemany(
                "INSERT INTO pending_document VALUES (?,?,?)",
                [(submission_set_uid, i, sqlite3.Binary(d)) for i, d in enumerate(documents)],
            )

    def remove(self, submission_set_uid: str) -> None:
        """Forget a resolved deposit. Not fsync'd: if a crash loses the removal, ``resume_pending`` finds
        the documents registered (GetDocuments) and never resends them."""
        try:
            with self._lock, self._connect() as con:
                con.execute("PRAGMA synchronous = NORMAL")
                con.execute("DELETE FROM pending WHERE submission_set_uid = ?", (submission_set_uid,))
        except sqlite3.Error as exc:
            raise OutboxError(
                f"La file d'envoi du DMP n'a pas pu être mise à jour ({exc}).", code="OUTBOX"
            ) from exc

    def bump(self, submission_set_uid: str) -> None:
        with self._lock, self._connect() as con:
            con.execute(
                "UPDATE pending SET attempts = attempts + 1 WHERE submission_set_uid = ?",
                (submission_set_uid,),
            )

    def pending(self) -> list[PendingDeposit]:
        self._drain()
        with self._lock, self._connect() as con:
            rows = con.execute("SELECT * FROM pending ORDER BY created, submission_set_uid").fetchall()
            out = []
            for r in rows:
                docs = con.execute(
                    "SELECT content FROM pending_document WHERE submission_set_uid = ? ORDER BY position",
                    (r[0],),
                ).fetchall()
                out.append(
                    PendingDeposit(
                        r[0],
                        r[1],
                        r[2],
                        r[3],
                        tuple(json.loads(r[4])),
                        tuple(bytes(d[0]) for d in docs),
                        tuple(json.loads(r[5])),
                        tuple(json.loads(r[6])),
                        r[7],
                        r[8],
                    )
                )
            return out
