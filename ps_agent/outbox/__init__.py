"""The deposit queue: every deposit is written here *before* it is sent, and leaves only with a definite
outcome (registered, refused, or handed back by a person).

States of an entry (``EntryState``), one SQLite row each, changed by transitions in place (never
delete-then-add, so no fault between two writes can lose a document)::

    pending ──claim──▶ sending ──▶ registered          (confirmed by the DMP; documents purged)
       ▲                  │  └──▶ refused (why)         (final refusal about the document/patient/rights)
       │                  └─────▶ waiting (why, next try) ──claim──▶ sending …
       └── any active state ──hand_back──▶ handed_back  (a person took the documents back)

Claims are exclusive across threads AND processes on the same file (``BEGIN IMMEDIATE`` + an owner id
and a lease expiry, portable to Windows): two agents resuming the same home never both send an entry. A
claim whose owner died (crash, ``kill -9``) is taken over at once when this machine can tell the owner
process ended (``ps_agent.outbox.owner``), otherwise after ``lease_s``; the entry is sent again: the
same submission (same uniqueIds), which the DMP refuses as already registered if the first send had
committed — that refusal means "registered" (``ps_agent.dmp.errors.classify_failure``).

Full disk: an outcome (registered, refused, waiting) that cannot be written is kept in memory and written
before any later access to the file (``flush_deferred``); meanwhile this instance reports the entry with
that outcome and never sends it again. If the process ends first, the claim is taken over (dead owner)
and the resend resolves as "already registered".

Documents: each document's bytes are a file of the folder ``<queue file>-documents`` (``_documents``),
written and flushed before the row naming it (file name + SHA-1) is committed, removed (or emptied and
kept as a spare) after the row stopped naming it was committed. At open, files no row names (a crash
between the two steps) are removed, under the write lock; a row whose file is missing or altered is
reported (``DocumentMissing``: that entry only, the others go on). A queue file of a former version
(documents inside SQLite) has its documents moved to files at open, in one transaction.

Why files (measured, benchmarks/bench_queue.py and the same calls of the former queue interleaved on the
same disk): the former queue wrote the ≈ 270 KB into the WAL, copied it at checkpoint, then had SQLite's
``secure_delete`` (on in Debian's build) overwrite it with zeros through the WAL again at the purge, and
the WAL kept the document's frames, readable in the ``-wal`` file, until later deposits overwrote them.
A file is written once, never enters the WAL, and is gone from the file system at the purge (emptied,
and kept by the instance as a spare file for its next document: a creation costs more than the write,
see ``_documents``).

Files: the queue file and the document files are 0600 in 0700 folders, whoever created them (full CDA
and INS inside).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ps_agent.config import DEFAULT_QUEUE_LEASE_S, ensure_private_dir, make_private_file
from ps_agent.errors import PsAgentError
from ps_agent.outbox import _documents
from ps_agent.outbox.owner import new_owner_id, owner_alive, owner_dead

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = DEFAULT_QUEUE_LEASE_S  # [I] see ``ps_agent.config.DEFAULT_QUEUE_LEASE_S``
# [I] Bounded exponential backoff with jitter between sends after a transient failure: 2 s, 4 s, 8 s…
# capped at 15 minutes, each multiplied by a random factor in [0.5, 1).
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 15 * 60.0


class OutboxError(PsAgentError):
    """The queue file cannot be read or written."""


class EntryBusy(OutboxError):
    """Another thread or process is sending this entry right now."""


class EntryNotFound(OutboxError):
    """No such entry in the queue."""


class DocumentMissing(OutboxError):
    """A document file of an entry is missing or altered: that entry cannot be sent (code
    ``DOCUMENT_MISSING``). Listings report it as the entry's reason; ``claim`` raises it."""

    def __init__(self, entry_id: str, position: int, path: Path, what: str) -> None:
        super().__init__(
            f"Le document n° {position + 1} de l'envoi « {entry_id} » est {what} dans la file d'envoi "
            f"({path}) : cet envoi ne peut pas partir. Déposez à nouveau ce document depuis votre logiciel.",
            code="DOCUMENT_MISSING",
        )
        self.entry_id = entry_id


class EntryState(enum.StrEnum):
    PENDING = "pending"  # written, not sent yet
    SENDING = "sending"  # claimed by an owner until lease_until
    WAITING = "waiting"  # a transient failure: sent again at next_try (reason says why)
    REGISTERED = "registered"  # the DMP holds the documents
    REFUSED = "refused"  # final refusal (reason says why)
    HANDED_BACK = "handed_back"  # a person took the documents back

    @property
    def label_fr(self) -> str:
        return STATE_LABELS_FR[self]


STATE_LABELS_FR = {
    EntryState.PENDING: "en attente d'envoi",
    EntryState.SENDING: "envoi en cours",
    EntryState.WAITING: "nouvel essai prévu",
    EntryState.REGISTERED: "enregistré dans le DMP",
    EntryState.REFUSED: "refusé par le DMP",
    EntryState.HANDED_BACK: "rendu à l'utilisateur",
}
ACTIVE_STATES = frozenset({EntryState.PENDING, EntryState.SENDING, EntryState.WAITING})
FINAL_STATES = frozenset({EntryState.REGISTERED, EntryState.REFUSED, EntryState.HANDED_BACK})


@dataclass(frozen=True)
class QueuedDeposit:
    """One entry of the queue (one submission set). ``documents`` is empty once registered/handed back."""

    id: str  # the submission set uniqueId: sent again unchanged (idempotency key with the document ids)
    patient_ins: str
    patient_oid: str
    ins_status: str
    document_uids: tuple[str, ...]
    documents: tuple[bytes, ...]
    visibility: tuple[bool, bool, bool]  # masked_to_professionals, invisible_to_patient, invisible_to_reps
    replaces: tuple[str, ...]  # uniqueId replaced by each document ("" when none)
    replaces_entry_uuids: tuple[str, ...]  # entryUUID of the replaced version, resolved before the 1st send
    titles: tuple[str, ...]
    actor_id_nat: str  # who deposited (the session's identity)
    on_behalf_of: str  # the author professional in INDIRECTE/AIR
    created: str
    updated: str
    state: EntryState
    reason_fr: str = ""
    reason_code: str = ""
    attempts: int = 0
    next_try: float = 0.0  # epoch seconds (WAITING)
    owner: str = ""
    lease_until: float = 0.0
    journaled: bool = False  # the outcome's audit record is written
    document_sha1: tuple[str, ...] = ()  # SHA-1 of each document, kept after the bytes are purged

    # compatibility with the former ``PendingDeposit``
    @property
    def submission_set_uid(self) -> str:
        return self.id

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def summary_fr(self) -> str:
        what = ", ".join(t or u for t, u in zip(self.titles, self.document_uids, strict=False)) or "-"
        text = f"{self.state.label_fr} : {what}"
        if self.state is EntryState.WAITING and self.next_try:
            at = datetime.fromtimestamp(self.next_try).astimezone().strftime("%d/%m/%Y %H:%M:%S")
            text += f" (prochain essai à {at})"
        if self.reason_fr:
            text += f" — {self.reason_fr}"
        return text


PendingDeposit = QueuedDeposit  # former name


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - the XDS document hash


def _sha1s(documents: tuple[bytes, ...], given: tuple[str, ...] | None) -> tuple[str, ...]:
    """The documents' SHA-1: ``given`` (computed by the caller from the same bytes) when it has one
    well-formed digest per document, else computed here."""
    if (
        given is not None
        and len(given) == len(documents)
        and all(len(g) == 40 and g == g.lower() for g in given)
    ):
        return tuple(given)
    return tuple(sha1_of(d) for d in documents)


def backoff_delay(attempts: int, rnd: Callable[[], float] = random.random) -> float:
    """Delay before the next send after ``attempts`` sends: bounded exponential with jitter."""
    base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * float(2 ** min(max(0, attempts - 1), 32)))
    return base * (0.5 + 0.5 * rnd())


_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_entry (
    id TEXT PRIMARY KEY,
    patient_ins TEXT NOT NULL, patient_oid TEXT NOT NULL, ins_status TEXT NOT NULL,
    document_uids TEXT NOT NULL, visibility TEXT NOT NULL, replaces TEXT NOT NULL,
    replaces_entry_uuids TEXT NOT NULL DEFAULT '[]', titles TEXT NOT NULL DEFAULT '[]',
    actor_id_nat TEXT NOT NULL DEFAULT '', on_behalf_of TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL, updated TEXT NOT NULL,
    state TEXT NOT NULL, reason_fr TEXT NOT NULL DEFAULT '', reason_code TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '', lease_until REAL NOT NULL DEFAULT 0,
    journaled INTEGER NOT NULL DEFAULT 0,
    document_sha1 TEXT NOT NULL DEFAULT '[]',
    document_files TEXT NOT NULL DEFAULT '[]'
);
-- former versions kept the documents here (moved to files at open: ``DepositQueue._documents_to_files``)
CREATE TABLE IF NOT EXISTS queue_document (
    entry_id TEXT NOT NULL REFERENCES queue_entry(id),
    position INTEGER NOT NULL, content BLOB NOT NULL, PRIMARY KEY (entry_id, position)
);
CREATE INDEX IF NOT EXISTS queue_by_document_uids ON queue_entry(document_uids);
"""
_COLUMNS = (
    "id, patient_ins, patient_oid, ins_status, document_uids, visibility, replaces, replaces_entry_uuids, "
    "titles, actor_id_nat, on_behalf_of, created, updated, state, reason_fr, reason_code, attempts, "
    "next_try, owner, lease_until, journaled, document_sha1"
)
_SELECT_ROW = f"SELECT {_COLUMNS}, document_files FROM queue_entry WHERE id = ?"  # noqa: S608
DOCUMENTS_SUFFIX = "-documents"  # the documents' folder: ``<queue file name>-documents`` beside it
# Emptied document files an instance keeps for its next documents (``_documents``: "Spare files"): as many
# as deposits usually overlap in one process (the hot folder's workers), so that each finds one.
SPARE_FILES = 8


# Outcomes kept in memory that are written only if this instance still holds the claim (``registered``
# is a fact about the DMP: written whoever holds the row).
_OWNED_OUTCOMES = frozenset({EntryState.WAITING.value, EntryState.REFUSED.value})


def _not_found(entry_id: str) -> EntryNotFound:
    return EntryNotFound(f"Aucun envoi « {entry_id} » dans la file d'envoi.", code="NOT_FOUND")


def _entry_of(r: Sequence[Any], docs: tuple[bytes, ...], sha1s: tuple[str, ...]) -> QueuedDeposit:
    """An entry from a row of ``_COLUMNS`` (then ``document_files``)."""
    vis = json.loads(r[5])
    return QueuedDeposit(
        id=r[0],
        patient_ins=r[1],
        patient_oid=r[2],
        ins_status=r[3],
        document_uids=tuple(json.loads(r[4])),
        documents=docs,
        visibility=(bool(vis[0]), bool(vis[1]), bool(vis[2])),
        replaces=tuple(json.loads(r[6])),
        replaces_entry_uuids=tuple(json.loads(r[7])),
        titles=tuple(json.loads(r[8])),
        actor_id_nat=r[9],
        on_behalf_of=r[10],
        created=r[11],
        updated=r[12],
        state=EntryState(r[13]),
        reason_fr=r[14],
        reason_code=r[15],
        attempts=r[16],
        next_try=r[17],
        owner=r[18],
        lease_until=r[19],
        journaled=bool(r[20]),
        document_sha1=sha1s,
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DepositQueue:
    """The queue file of one agent home. Thread-safe; several processes may share the file.

    ``clock`` (epoch seconds) is injectable for tests; ``owner`` identifies this instance in claims.
    ``on_change(entry)`` is called after every committed change (the ``queue_changed`` event).
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        on_change: Callable[[QueuedDeposit], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.documents_dir = self.path.with_name(self.path.name + DOCUMENTS_SUFFIX)
        self._clock = clock
        self.owner = owner or new_owner_id()
        self.lease_s = lease_s
        self.on_change = on_change
        self._lock = threading.RLock()
        self._private_after_write = False
        # outcomes a full disk kept from being written: entry id → [(column values, purge)], in order
        self._deferred: dict[str, list[tuple[dict[str, object], bool]]] = {}
        # emptied document files of purged rows, this instance's own (``_documents``: "Spare files")
        self._spares: list[str] = []
        self._spare_lock = threading.Lock()
        # entries whose "journaled" flag rides in this instance's next write transaction (``mark_journaled``
        # with ``durable=False``), in insertion order
        self._journaled_later: dict[str, None] = {}
        try:
            ensure_private_dir(self.path.parent)
            ensure_private_dir(self.documents_dir)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._con.execute("PRAGMA busy_timeout = 30000")
            self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = FULL")  # every transition is durable
            with self._tx():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._con.execute(statement)
                self._migrate()
                self._recover()
            make_private_file(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(
                f"La file d'envoi du DMP est illisible : {self.path} ({exc})", code="OUTBOX"
            ) from exc

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (exclusive writer across processes)."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                riding = self._journaled_flags(self._con)
                yield self._con
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._con.execute("ROLLBACK")
                raise
            try:
                self._con.execute("COMMIT")
            except BaseException:  # e.g. SQLITE_FULL at commit: never leave the connection in a transaction
                with contextlib.suppress(sqlite3.Error):
                    self._con.execute("ROLLBACK")
                raise
            self._journaled_written(riding)

    def _journaled_flags(self, con: sqlite3.Connection) -> tuple[str, ...]:
        """Inside a write transaction (lock held): the "journaled" flags waiting in memory, written with it;
        returns their ids (forgotten once the transaction is committed, kept if it is not)."""
        ids = tuple(self._journaled_later)
        if ids:
            con.execute(
                "UPDATE queue_entry SET journaled=1, owner='', lease_until=0 "  # noqa: S608
                f"WHERE id IN ({','.join('?' * len(ids))})",
                ids,
            )
        return ids

    def _journaled_written(self, ids: tuple[str, ...]) -> None:
        for entry_id in ids:
            self._journaled_later.pop(entry_id, None)

    def _migrate(self) -> None:
        """Entries of the former ``pending`` table become PENDING entries (same row data, in one tx); a
        queue file of the first version gets the ``document_sha1`` column; documents kept inside SQLite
        (every former version) are moved to files (``_documents_to_files``)."""
        cols = {r[1] for r in self._con.execute("PRAGMA table_info(queue_entry)").fetchall()}
        if "document_sha1" not in cols:
            self._con.execute("ALTER TABLE queue_entry ADD COLUMN document_sha1 TEXT NOT NULL DEFAULT '[]'")
        if "document_files" not in cols:
            self._con.execute("ALTER TABLE queue_entry ADD COLUMN document_files TEXT NOT NULL DEFAULT '[]'")
        self._pending_to_entries()
        self._documents_to_files()

    def _documents_to_files(self) -> None:
        """Documents of a former version's rows (``queue_document`` blobs) become files named by their
        rows, inside the open's transaction: the files are flushed before the rows name them and the blobs
        go; a crash before the commit leaves the blobs as they were and files no row names (removed by
        ``_recover``). A row without digests gets them (``find_same`` then recognises its documents)."""
        ids = [r[0] for r in self._con.execute("SELECT DISTINCT entry_id FROM queue_document").fetchall()]
        written: list[str] = []
        try:
            for entry_id in ids:
                blobs = [bytes(r[0]) for r in self._con.execute(
                    "SELECT content FROM queue_document WHERE entry_id = ? ORDER BY position", (entry_id,)
                ).fetchall()]  # fmt: skip
                names = _documents.write_all(self.documents_dir, blobs)
                written.extend(names)
                self._con.execute(
                    "UPDATE queue_entry SET document_files = ?, document_sha1 = CASE document_sha1 "
                    "WHEN '[]' THEN ? ELSE document_sha1 END WHERE id = ?",
                    (json.dumps(names), json.dumps([sha1_of(b) for b in blobs]), entry_id),
                )
            if ids:
                self._con.execute("DELETE FROM queue_document")
        except BaseException:
            _documents.remove(self.documents_dir, written)
            raise

    def _recover(self) -> None:
        """Under the write lock (no other process is between a file's write and its row's commit): remove
        the document files no row names (a crash between those two steps, or between a row's purge and
        its files' removal); log the rows whose file is missing (``DocumentMissing`` when such an entry is
        read or taken for sending)."""
        named: set[str] = set()
        for (files,) in self._con.execute(
            "SELECT document_files FROM queue_entry WHERE document_files != '[]'"
        ).fetchall():
            named.update(json.loads(files))
        present = _documents.ours(self.documents_dir)
        _documents.remove(self.documents_dir, present - named)
        for name in sorted(named - present):
            log.error("deposit queue: document file %s is missing", self.documents_dir / name)

    def _pending_to_entries(self) -> None:
        old = self._con.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='pending'"
        ).fetchone()
        if not old:
            return
        now = _now_iso()
        for r in self._con.execute("SELECT * FROM pending").fetchall():
            self._con.execute(
                f"INSERT OR IGNORE INTO queue_entry ({_COLUMNS}) "  # noqa: S608
                "VALUES (?,?,?,?,?,?,?,'[]','[]','','',?,?,?,'','',?,0,'',0,0,'[]')",
                (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], now, EntryState.PENDING.value, r[8]),
            )
            self._con.execute(
                "INSERT OR IGNORE INTO queue_document SELECT submission_set_uid, position, content "
                "FROM pending_document WHERE submission_set_uid = ?",
                (r[0],),
            )
        self._con.execute("DROP TABLE pending_document")
        self._con.execute("DROP TABLE pending")

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(OutboxError):
                self.flush_deferred()
            if self._journaled_later:
                with contextlib.suppress(sqlite3.Error), self._tx():
                    pass  # the flags ride in it
            self._con.close()
        with self._spare_lock:
            spares, self._spares = self._spares, []
        _documents.remove(self.documents_dir, spares)

    def _take_spare(self) -> str | None:
        with self._spare_lock:
            return self._spares.pop() if self._spares else None

    def _retire(self, names: Iterable[str]) -> None:
        """Files the committed rows no longer name: kept as spares (emptied) or removed."""
        with self._spare_lock:
            _documents.recycle(self.documents_dir, names, self._spares, SPARE_FILES)

    # ------------------------------------------------------------------ outcomes kept in memory
    @property
    def deferred(self) -> tuple[str, ...]:
        """Ids of entries whose outcome waits in memory for the file to accept it (full disk)."""
        with self._lock:
            return tuple(self._deferred)

    def flush_deferred(self) -> None:
        """Write the outcomes a full disk kept in memory (oldest first); raises ``OutboxError`` (keeping the
        rest) when the file still refuses them. Listeners are told once the lock is released."""
        written: list[QueuedDeposit] = []
        try:
            self._flush_deferred_locked(written)
        finally:
            for entry in written:
                self._changed(entry)

    def _flush_deferred_locked(self, written: list[QueuedDeposit]) -> None:
        with self._lock:
            while self._deferred:
                entry_id = next(iter(self._deferred))
                changes = self._deferred[entry_id]
                gone: list[str] = []
                last: QueuedDeposit | None = None
                try:
                    with self._tx() as con:
                        for sets, purge in changes:
                            if sets.get("state") in _OWNED_OUTCOMES:
                                # "waiting"/"refused" are this instance's word only while it still holds
                                # the claim: if another process took it over meanwhile, that one decides
                                cur = self._row(con, entry_id, with_documents=False)
                                if cur.state is not EntryState.SENDING or cur.owner != self.owner:
                                    continue
                            written_files, last = self._write(con, entry_id, sets, purge)
                            gone.extend(written_files)
                        entry = last if last is not None else self._row(con, entry_id, with_documents=False)
                except sqlite3.Error as exc:
                    raise self._error(exc, "mise à jour") from exc
                self._retire(gone)  # the committed row no longer names them
                del self._deferred[entry_id]
                written.append(entry)

    def _try_flush(self) -> None:
        if self._deferred:
            with contextlib.suppress(OutboxError):
                self.flush_deferred()

    @staticmethod
    def _write(
        con: sqlite3.Connection, entry_id: str, sets: dict[str, object], purge: bool
    ) -> tuple[tuple[str, ...], QueuedDeposit]:
        """One row update; returns (names, the row as updated, without documents: the UPDATE's RETURNING,
        not read again). With ``purge`` the row stops naming its document files: their names are returned,
        to be removed once the transaction is committed (never before). ``EntryNotFound`` without a row."""
        gone: tuple[str, ...] = ()
        if purge:
            row = con.execute("SELECT document_files FROM queue_entry WHERE id=?", (entry_id,)).fetchone()
            gone = tuple(json.loads(row[0])) if row else ()
            sets = {**sets, "document_files": "[]"}
        cols = ", ".join(f"{k}=?" for k in sets)
        rows = con.execute(
            f"UPDATE queue_entry SET {cols} WHERE id=? RETURNING {_COLUMNS}, document_files",  # noqa: S608
            (*sets.values(), entry_id),
        ).fetchall()
        if not rows:
            raise _not_found(entry_id)
        return gone, _entry_of(rows[0], (), tuple(json.loads(rows[0][21] or "[]")))

    def _overlay(self, entry: QueuedDeposit) -> QueuedDeposit:
        """The entry as this instance knows it: with the outcomes kept in memory applied."""
        if entry.id in self._journaled_later and not entry.journaled:
            entry = replace(entry, journaled=True)
        changes = self._deferred.get(entry.id)
        if not changes:
            return entry
        for sets, purge in changes:
            fields = {k: v for k, v in sets.items() if k in QueuedDeposit.__dataclass_fields__}
            if "state" in fields:
                fields["state"] = EntryState(str(fields["state"]))
            if "journaled" in fields:
                fields["journaled"] = bool(fields["journaled"])
            entry = replace(entry, **fields)  # type: ignore[arg-type]
            if purge:
                entry = replace(entry, documents=())
        return entry

    def __enter__(self) -> DepositQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, exc: BaseException, what: str) -> OutboxError:
        return OutboxError(f"La file d'envoi du DMP n'a pas pu être {what} ({exc}).", code="OUTBOX")

    def _documents_of(self, entry_id: str, files: str, sha1s: tuple[str, ...]) -> tuple[bytes, ...]:
        """The documents a row names, each checked against its SHA-1 (``DocumentMissing`` otherwise)."""
        docs = []
        for i, name in enumerate(json.loads(files)):
            path = self.documents_dir / name
            try:
                data = _documents.read(self.documents_dir, name)
            except FileNotFoundError:
                raise DocumentMissing(entry_id, i, path, "introuvable") from None
            except OSError as exc:
                raise DocumentMissing(entry_id, i, path, f"illisible ({exc.strerror or exc})") from exc
            if i < len(sha1s) and sha1_of(data) != sha1s[i]:
                raise DocumentMissing(entry_id, i, path, "altéré (empreinte différente)")
            docs.append(data)
        return tuple(docs)

    def _listed(self, entry_id: str) -> QueuedDeposit:
        """An entry for a listing (``get``, ``entries``, ``find_same``): with its documents or, when a
        document file is missing or altered, without them and with the error as its reason (never raised:
        one damaged entry does not hide the others)."""
        try:
            return self._row(self._con, entry_id)
        except DocumentMissing as exc:
            entry = self._row(self._con, entry_id, with_documents=False)
            return replace(entry, reason_fr=exc.message_fr, reason_code=exc.code or "DOCUMENT_MISSING")

    def _row(self, con: sqlite3.Connection, entry_id: str, *, with_documents: bool = True) -> QueuedDeposit:
        r = con.execute(_SELECT_ROW, (entry_id,)).fetchone()
        if r is None:
            raise _not_found(entry_id)
        docs: tuple[bytes, ...] = ()
        sha1s = tuple(json.loads(r[21] or "[]"))
        if with_documents and r[22] != "[]":
            try:
                docs = self._documents_of(entry_id, r[22], sha1s)
            except DocumentMissing:
                if con.in_transaction:  # no other writer meanwhile: the file is really missing
                    raise
                # read outside a transaction: another process may have purged the row and removed its
                # files between the two reads; the row says so now
                again = con.execute("SELECT document_files FROM queue_entry WHERE id = ?", (entry_id,))
                if (again.fetchone() or ("[]",))[0] == r[22]:
                    raise
                return self._row(con, entry_id, with_documents=with_documents)
        return _entry_of(r, docs, sha1s)

    def _changed(self, entry: QueuedDeposit) -> QueuedDeposit:
        if self.on_change is not None:
            try:
                self.on_change(replace(entry, documents=()) if entry.documents else entry)
            except Exception:  # noqa: S110 - a listener never breaks the queue
                pass
        return entry

    # ------------------------------------------------------------------ writing
    def add(
        self,
        entry_id: str,
        patient: tuple[str, str, str],
        document_uids: tuple[str, ...],
        documents: tuple[bytes, ...],
        visibility: tuple[bool, bool, bool],
        replaces: tuple[str, ...],
        *,
        replaces_entry_uuids: tuple[str, ...] = (),
        titles: tuple[str, ...] = (),
        actor_id_nat: str = "",
        on_behalf_of: str = "",
        claim: bool = False,
        document_sha1: tuple[str, ...] | None = None,
    ) -> QueuedDeposit:
        """Durably record a deposit about to be sent (committed with fsync before returning). With
        ``claim=True`` the entry is created already claimed by this instance (state SENDING).
        ``document_sha1``: the documents' SHA-1 (lower-case hex) when the caller already has them.

        The documents' files are written and flushed (``_documents.write_all``) before the row naming them
        is committed: a crash in between leaves files no row names (removed at the next open, under the
        write lock). They are written BEFORE the lock is taken (the writes and fsyncs of one deposit
        overlap the commits of the others instead of queueing behind them), then checked again under the
        write lock: another process opening the queue in between may have removed them as unnamed; any
        missing is written again inside the transaction, where no open's clean-up can reach it.
        """
        now, stamp = self._clock(), _now_iso()
        sha1s = _sha1s(documents, document_sha1)
        state = EntryState.SENDING if claim else EntryState.PENDING
        # nothing is read back: the entry is what is written (the row stores these very values)
        entry = QueuedDeposit(
            id=entry_id, patient_ins=patient[0], patient_oid=patient[1], ins_status=patient[2],
            document_uids=tuple(document_uids), documents=tuple(bytes(d) for d in documents),
            visibility=(bool(visibility[0]), bool(visibility[1]), bool(visibility[2])),
            replaces=tuple(replaces),
            replaces_entry_uuids=tuple(replaces_entry_uuids or ("",) * len(document_uids)),
            titles=tuple(titles or ("",) * len(document_uids)), actor_id_nat=actor_id_nat,
            on_behalf_of=on_behalf_of, created=stamp, updated=stamp, state=state,
            attempts=1 if claim else 0, owner=self.owner if claim else "",
            lease_until=now + self.lease_s if claim else 0.0, document_sha1=sha1s,
        )  # fmt: skip
        names: tuple[str, ...] = ()
        committing = False
        try:
            # outside the lock; into this instance's spare files when it has some
            names = _documents.write_all(self.documents_dir, entry.documents, self._take_spare)
            with self._lock:
                try:
                    self._con.execute("BEGIN IMMEDIATE")
                    if not all(os.path.exists(self.documents_dir / n) for n in names):
                        _documents.remove(self.documents_dir, names)  # an open's clean-up took some
                        names = ()
                        names = _documents.write_all(self.documents_dir, entry.documents, self._take_spare)
                    self._con.execute(
                        f"INSERT INTO queue_entry ({_COLUMNS}, document_files) "  # noqa: S608
                        f"VALUES ({','.join('?' * 23)})",
                        (
                            entry_id, *patient, json.dumps(list(entry.document_uids)),
                            json.dumps(list(entry.visibility)), json.dumps(list(entry.replaces)),
                            json.dumps(list(entry.replaces_entry_uuids)), json.dumps(list(entry.titles)),
                            actor_id_nat, on_behalf_of, stamp, stamp, state.value, "", "", entry.attempts,
                            0.0, entry.owner, entry.lease_until, 0, json.dumps(list(sha1s)),
                            json.dumps(list(names)),
                        ),
                    )  # fmt: skip
                    riding = self._journaled_flags(self._con)
                    committing = True
                    self._con.execute("COMMIT")
                    self._journaled_written(riding)
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._con.execute("ROLLBACK")
                    if not committing:  # a COMMIT that failed may still be on disk: the next open decides
                        _documents.remove(self.documents_dir, names)
                    raise
        except (sqlite3.Error, OSError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise OutboxError(
                f"La file d'envoi du DMP n'a pas pu être écrite ({detail}) : le document n'est pas envoyé.",
                code="OUTBOX",
            ) from exc
        if not self._private_after_write:  # the -wal/-shm files exist once something was written
            make_private_file(self.path)
            self._private_after_write = True
        return self._changed(entry)

    def claim(self, entry_id: str) -> QueuedDeposit | None:
        """Take the entry for one send (state SENDING, owner = this instance, lease renewed, attempts + 1).
        None when it is not claimable: final, being sent by someone else (live lease), or not due yet is
        NOT checked here (``due`` does it): a person may ask to send a waiting entry now."""
        now = self._clock()
        self._try_flush()
        try:
            with self._tx() as con:
                try:
                    cur = self._row(con, entry_id, with_documents=False)
                except EntryNotFound:
                    return None
                if cur.state in FINAL_STATES or entry_id in self._deferred:
                    return None
                if cur.state is EntryState.SENDING and cur.lease_until > now and not owner_dead(cur.owner):
                    return None
                con.execute(
                    "UPDATE queue_entry SET state=?, owner=?, lease_until=?, attempts=attempts+1, updated=? "
                    "WHERE id=?",
                    (EntryState.SENDING.value, self.owner, now + self.lease_s, _now_iso(), entry_id),
                )
                entry = self._row(con, entry_id)
        except sqlite3.Error as exc:
            raise self._error(exc, "mise à jour") from exc
        return self._changed(entry)

    def claim_again(self, entry_id: str) -> QueuedDeposit | None:
        """Renew this instance's own claim for one more send (attempts + 1); None if it lost the claim."""
        now = self._clock()
        try:
            with self._tx() as con:
                cur = con.execute(
                    "UPDATE queue_entry SET lease_until=?, attempts=attempts+1, updated=? "
                    "WHERE id=? AND owner=? AND state=?",
                    (now + self.lease_s, _now_iso(), entry_id, self.owner, EntryState.SENDING.value),
                )
                if cur.rowcount != 1:
                    return None
                entry = self._row(con, entry_id)
        except sqlite3.Error as exc:
            raise self._error(exc, "mise à jour") from exc
        return self._changed(entry)

    def _transition(
        self,
        entry_id: str,
        sets: dict[str, object],
        *,
        purge: bool = False,
        defer: bool = False,
        release: bool = True,
        with_documents: bool = True,
    ) -> QueuedDeposit:
        """Move an entry this instance holds (or any active one when ``owner`` does not matter) in ONE
        transaction; with ``release`` the owner/lease are cleared. With ``defer`` (an outcome that already
        happened at the DMP), a file that cannot be written (full disk) keeps the change in memory
        (``flush_deferred``) and the entry is returned as it will be written. ``with_documents=False``:
        returned without its documents (not read back from the file); a purge has none to read."""
        sets = {**sets, "updated": _now_iso()}
        if release:
            sets = {**sets, "owner": "", "lease_until": 0.0}
        # listeners are told after the lock is released (a slow listener never holds up other deposits)
        gone: list[str] = []
        with self._lock:
            entry = self._transition_locked(entry_id, sets, purge, defer, with_documents and not purge, gone)
        # after the lock: the committed row no longer names them (one left by a crash is removed at open)
        self._retire(gone)
        return self._changed(entry)

    def _transition_locked(
        self,
        entry_id: str,
        sets: dict[str, object],
        purge: bool,
        defer: bool,
        with_documents: bool,
        gone: list[str],
    ) -> QueuedDeposit:
        """``gone``: receives the names of the document files the committed row no longer names."""
        if defer and entry_id in self._deferred:  # keep the order of this entry's changes
            self._try_flush()
        if entry_id not in self._deferred:
            try:
                with self._tx() as con:
                    written, entry = self._write(con, entry_id, sets, purge)
            except sqlite3.Error as exc:
                if not defer:
                    raise self._error(exc, "mise à jour") from exc
            else:
                gone.extend(written)
                # the documents are read after the commit: a damaged file never undoes an outcome
                return self._listed(entry_id) if with_documents else entry
        elif not defer:
            raise OutboxError(
                "La file d'envoi du DMP n'a pas pu être mise à jour (disque plein ?).", code="OUTBOX"
            )
        self._deferred.setdefault(entry_id, []).append((sets, purge))
        try:
            current = (
                self._listed(entry_id)
                if with_documents
                else self._row(self._con, entry_id, with_documents=False)
            )
        except sqlite3.Error:
            return self._overlay_unknown(entry_id)
        return self._overlay(current)

    def _overlay_unknown(self, entry_id: str) -> QueuedDeposit:
        """A placeholder when even reading fails: only the id and the kept outcome are known."""
        blank = QueuedDeposit(
            entry_id, "", "", "", (), (), (False, False, False), (), (), (), "", "", "", "",
            EntryState.SENDING,
        )  # fmt: skip
        return self._overlay(blank)

    def mark_waiting(self, entry_id: str, reason_fr: str, code: str, next_try: float) -> QueuedDeposit:
        return self._transition(
            entry_id,
            {
                "state": EntryState.WAITING.value,
                "reason_fr": reason_fr,
                "reason_code": code,
                "next_try": next_try,
            },
            defer=True,
        )

    def mark_registered(self, entry_id: str, *, journaled: bool = False, note_fr: str = "") -> QueuedDeposit:
        """Registered: the documents' bytes are purged (the DMP holds them). Not yet ``journaled``, the entry
        keeps its owner and lease: they tell ``record_in_flight`` that its depositor is writing the record."""
        return self._transition(
            entry_id,
            {"state": EntryState.REGISTERED.value, "reason_fr": note_fr, "reason_code": "",
             "next_try": 0.0, "journaled": int(journaled)},
            purge=True, defer=True, release=journaled,
        )  # fmt: skip

    def record_in_flight(self, entry: QueuedDeposit) -> bool:
        """Whether the depositor of a registered, not yet journaled ``entry`` may still be writing its audit
        record: this instance's own deposit (between its registration and its record), or one of a process
        of this machine still alive, whatever its lease (its record may wait in its memory for a full disk
        to free: ``Services.keep_for_later``); an owner this machine cannot judge (another host) within its
        lease. A recovery then leaves it alone (no second record); the entry of a process that died
        (``kill -9``), or an unjudged one whose lease passed, is recovered."""
        if entry.state is not EntryState.REGISTERED or entry.journaled or not entry.owner:
            return False
        if entry.owner == self.owner or owner_alive(entry.owner):
            return True
        return entry.lease_until > self._clock() and not owner_dead(entry.owner)

    def journal_once(self, entry_id: str, write: Callable[[], None]) -> bool:
        """``write()`` (the entry's outcome record, or nothing when the journal holds it already) then the
        "journaled" flag, in ONE write transaction of the queue file, only if the flag is still unset: two
        recoverers (threads or processes) never both write the record. Returns whether ``write`` ran. An
        entry with outcomes kept in memory (full disk) takes ``mark_journaled``'s path, after them."""
        with self._lock:
            deferred = entry_id in self._deferred
        if deferred:
            write()
            self.mark_journaled(entry_id)
            return True
        try:
            with self._tx() as con:  # the flags riding in it are written first: they count as set
                row = con.execute("SELECT journaled FROM queue_entry WHERE id=?", (entry_id,)).fetchone()
                if row is None or row[0]:
                    return False
                write()
                con.execute(
                    "UPDATE queue_entry SET journaled=1, owner='', lease_until=0 WHERE id=?", (entry_id,)
                )
        except sqlite3.Error as exc:
            raise self._error(exc, "mise à jour") from exc
        return True

    def mark_refused(
        self, entry_id: str, reason_fr: str, code: str, *, journaled: bool = False
    ) -> QueuedDeposit:
        """Refused for good; the documents stay until a person takes them back (``hand_back``)."""
        return self._transition(
            entry_id,
            {"state": EntryState.REFUSED.value, "reason_fr": reason_fr, "reason_code": code,
             "next_try": 0.0, "journaled": int(journaled)},
            defer=True,
        )  # fmt: skip

    def mark_journaled(self, entry_id: str, *, durable: bool = True) -> None:
        """The outcome's audit record is written (kept in memory if the file is full, as outcomes are).

        ``durable=False``: the flag is not committed now but in this instance's next write transaction
        (the next deposit's ``add``, a claim, an outcome, or ``close``); reads of this instance see it at
        once. For a caller that can tell from the journal whether the record exists (a crash before the
        flag is on disk leaves the entry "not journaled": ``Session._journal_unjournaled`` then finds its
        record and only sets the flag). An entry with outcomes kept in memory (full disk) takes the
        durable path, after them, so the flag never reaches the file before the outcome it belongs to."""
        if not durable:
            with self._lock:
                if entry_id not in self._deferred:
                    self._journaled_later[entry_id] = None
                    return
        self._transition(entry_id, {"journaled": 1}, defer=True, with_documents=False)  # owner released

    def set_replaced_entry_uuids(self, entry_id: str, uuids: tuple[str, ...]) -> None:
        try:
            with self._tx() as con:
                con.execute(
                    "UPDATE queue_entry SET replaces_entry_uuids=? WHERE id=?",
                    (json.dumps(list(uuids)), entry_id),
                )
        except sqlite3.Error as exc:
            raise self._error(exc, "mise à jour") from exc

    def hand_back(self, entry_id: str, write: Callable[[QueuedDeposit], None]) -> QueuedDeposit:
        """Give the documents of an unsent (or refused) entry back to a person: ``write(entry)`` must make
        them durable elsewhere (e.g. files fsync'd); only after it returns is the entry marked HANDED_BACK
        and its bytes purged. Refused while another thread or process is sending it (``EntryBusy``)."""
        entry = self.claim(entry_id)
        if entry is None:
            cur = self.get(entry_id)
            if cur is None:
                raise EntryNotFound(f"Aucun envoi « {entry_id} » dans la file d'envoi.", code="NOT_FOUND")
            if cur.state is EntryState.REFUSED:
                entry = cur
            elif cur.state is EntryState.SENDING:
                raise EntryBusy(
                    "Cet envoi est en cours de transmission au DMP : attendez son issue avant de le "
                    "reprendre.",
                    code="BUSY",
                )
            else:
                raise OutboxError(
                    f"Cet envoi est déjà terminé ({cur.state.label_fr}) : il n'y a rien à rendre.",
                    code="FINAL",
                )
        try:
            write(entry)
        except BaseException:
            if entry.state is EntryState.SENDING:  # give the claim back untouched
                self._transition(
                    entry_id, {"state": EntryState.PENDING.value, "attempts": max(0, entry.attempts - 1)}
                )
            raise
        return self._transition(
            entry_id,
            {"state": EntryState.HANDED_BACK.value, "reason_fr": "documents rendus à l'utilisateur",
             "reason_code": "HANDED_BACK", "next_try": 0.0},
            purge=True,
        )  # fmt: skip

    # ------------------------------------------------------------------ reading
    def get(self, entry_id: str) -> QueuedDeposit | None:
        try:
            with self._lock:
                self._try_flush()
                return self._overlay(self._listed(entry_id))
        except EntryNotFound:
            return None
        except sqlite3.Error as exc:
            raise self._error(exc, "lue") from exc

    def entries(self, states: Iterable[EntryState] | None = None) -> list[QueuedDeposit]:
        """Entries (oldest first), optionally of some states, with their documents."""
        wanted = {EntryState(s) for s in states} if states is not None else None
        try:
            with self._lock:
                self._try_flush()
                ids = [r[0] for r in self._con.execute("SELECT id FROM queue_entry ORDER BY created, rowid")]
                if wanted is not None:  # the states first: documents are read only for the entries kept
                    ids = [
                        i
                        for i in ids
                        if self._overlay(self._row(self._con, i, with_documents=False)).state in wanted
                    ]
                return [self._overlay(self._listed(i)) for i in ids]
        except sqlite3.Error as exc:
            raise self._error(exc, "lue") from exc

    def pending(self) -> list[QueuedDeposit]:
        """Entries without a definite outcome yet (pending, sending, waiting)."""
        return self.entries(ACTIVE_STATES)

    def due(self) -> list[QueuedDeposit]:
        """Active entries that may be sent now: pending, waiting whose time came, or sending whose claim
        expired (its owner died)."""
        now = self._clock()
        out = []
        for e in self.pending():
            if e.state is EntryState.PENDING or (e.state is EntryState.WAITING and e.next_try <= now):
                out.append(e)
            elif e.state is EntryState.SENDING and (e.lease_until <= now or owner_dead(e.owner)):
                out.append(e)
        return out

    def find_same(
        self,
        document_uids: tuple[str, ...],
        documents: tuple[bytes, ...],
        *,
        document_sha1: tuple[str, ...] | None = None,
    ) -> QueuedDeposit | None:
        """The newest entry that holds exactly these documents (same uniqueIds, same content), in any
        state: a document handed again (after a crash, a full disk...) resolves through it.
        ``document_sha1``: as for ``add``."""
        digests = _sha1s(documents, document_sha1)
        try:
            with self._lock:
                self._try_flush()
                for i, sha1s in self._con.execute(
                    "SELECT id, document_sha1 FROM queue_entry WHERE document_uids = ? "
                    "ORDER BY created DESC, rowid DESC",
                    (json.dumps(list(document_uids)),),
                ).fetchall():
                    if tuple(json.loads(sha1s or "[]")) == digests:  # only the match is read in full
                        return self._overlay(self._listed(i))
        except sqlite3.Error as exc:
            raise self._error(exc, "lue") from exc
        return None

    def unjournaled(self) -> list[QueuedDeposit]:
        """Entries with an outcome whose audit record could not be written yet (full disk)."""
        return [
            e for e in self.entries(FINAL_STATES) if not e.journaled and e.state is not EntryState.HANDED_BACK
        ]

    # former API
    def remove(self, entry_id: str) -> None:  # pragma: no cover - kept for callers of the old outbox
        raise OutboxError("Une entrée ne quitte la file qu'avec une issue définitive.", code="NO_REMOVE")


Outbox = DepositQueue  # former name

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "DepositQueue",
    "EntryBusy",
    "EntryNotFound",
    "EntryState",
    "Outbox",
    "OutboxError",
    "PendingDeposit",
    "QueuedDeposit",
    "backoff_delay",
]
