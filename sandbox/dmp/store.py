"""Persistent state of the sandbox DMP: one SQLite database plus document files in a data folder.

Layout of the data folder::

    <data>/dmp.sqlite3          patients, authorisations, documents (registry), submission sets, traces
    <data>/documents/<uuid>     the bytes of each stored document (repository), named by entryUUID

SQLite runs in WAL mode with one connection per thread (``threading.local``), so the store is
safe to share between the server's worker threads; every write is one ``BEGIN IMMEDIATE``
transaction. A deposit writes the document files first (named by fresh entryUUIDs) and commits the
registry rows in one transaction: a document is either registered once, or not at all (an orphan
file left by a crash is never referenced and is removed on next start).

Errors: :class:`StoreError` (a :class:`sandbox.errors.SandboxError`) with a French message, for
the patient console and tests (unknown patient, unknown document, bad value).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sandbox.dmp.xds import reidentify_entry, render_entry
from sandbox.errors import SandboxError

DB_NAME = "dmp.sqlite3"
DOCS_DIR = "documents"
# Idle SQLite connections kept for reuse; more may be open while busy, closed when given back.
POOL_MAX_IDLE = 8

# DMP status of a patient (PAT-06): an open DMP, a DMP closed by its holder, or an opposition.
ACTIVE = "ACTIVE"
CLOSED = "CLOSED"
OPPOSED = "OPPOSED"
PATIENT_STATUSES = (ACTIVE, CLOSED, OPPOSED)

# [I] the DMP's "ageMajorite" parameter (PAT-05) is not public: French civil majority.
AGE_OF_MAJORITY = 18

# Authorisation of a professional on a DMP (TD0.2 AUTORISATION values).
VALIDE = "VALIDE"
INTERDIT = "INTERDIT"  # the patient blocked this professional (PAT-01)

# Availability status URNs (dmp-protocol.md §8.5).
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
STATUSES = (APPROVED, DEPRECATED, ARCHIVED, DELETED)

# Confidentiality codes (dmp-protocol.md §8.3).
MASQUE_PS = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTANTS_LEGAUX = "INVISIBLE_REPRESENTANTS_LEGAUX"

_DOCUMENTS_TABLE = """
CREATE TABLE IF NOT EXISTS documents (
    entry_uuid TEXT PRIMARY KEY,
    lid TEXT NOT NULL,
    unique_id TEXT NOT NULL,  -- shared by the metadata versions of a document (ITI-57)
    patient_ins TEXT NOT NULL,
    patient_oid TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    type_code TEXT NOT NULL,
    class_code TEXT NOT NULL,
    format_code TEXT NOT NULL,
    practice_code TEXT NOT NULL DEFAULT '',
    facility_code TEXT NOT NULL DEFAULT '',
    confidentiality TEXT NOT NULL DEFAULT '[]',
    author_id TEXT NOT NULL,
    author_structure TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    mime_type TEXT NOT NULL,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    creation_time TEXT NOT NULL DEFAULT '',
    service_start TEXT NOT NULL DEFAULT '',
    service_stop TEXT NOT NULL DEFAULT '',
    set_id TEXT NOT NULL DEFAULT '',
    submission_uuid TEXT NOT NULL,
    replaces TEXT,
    metadata BLOB NOT NULL,
    content_uuid TEXT NOT NULL,  -- file name of the bytes, shared by the metadata versions
    registered_at TEXT NOT NULL
);
"""
_DOCUMENTS_INDEXES = """
CREATE INDEX IF NOT EXISTS documents_patient ON documents(patient_ins, status);
CREATE INDEX IF NOT EXISTS documents_lid ON documents(lid);
CREATE UNIQUE INDEX IF NOT EXISTS documents_uid_version ON documents(unique_id, version);
"""
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS patients (
    ins TEXT PRIMARY KEY,
    oid TEXT NOT NULL,
    family_name TEXT NOT NULL,
    given_names TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL,
    birth_place TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status_changed_at TEXT NOT NULL,
    medecin_traitant TEXT,
    allow_bris_de_glace INTEGER NOT NULL DEFAULT 1,
    allow_centre_15 INTEGER NOT NULL DEFAULT 1,
    allow_masked_in_emergency INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS legal_representatives (
    ins TEXT NOT NULL REFERENCES patients(ins),
    name TEXT NOT NULL,
    relation TEXT NOT NULL,
    PRIMARY KEY (ins, name)
);
CREATE TABLE IF NOT EXISTS authorisations (
    ins TEXT NOT NULL REFERENCES patients(ins),
    ps_id TEXT NOT NULL,
    status TEXT NOT NULL,
    family_name TEXT NOT NULL DEFAULT '',
    given_name TEXT NOT NULL DEFAULT '',
    speciality TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (ins, ps_id)
);
CREATE INDEX IF NOT EXISTS authorisations_ps ON authorisations(ps_id);
CREATE TABLE IF NOT EXISTS submission_sets (
    entry_uuid TEXT PRIMARY KEY,
    unique_id TEXT NOT NULL UNIQUE,
    patient_ins TEXT NOT NULL,
    author_id TEXT NOT NULL,
    submission_time TEXT NOT NULL,
    source_id TEXT NOT NULL,
    signature BLOB,  -- the XAdES signature of the submission set, as received
    registered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS traces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    patient_ins TEXT,
    ps_id TEXT NOT NULL DEFAULT '',
    ps_name TEXT NOT NULL DEFAULT '',
    structure_id TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL DEFAULT '',
    purpose TEXT NOT NULL DEFAULT '',
    reason TEXT,
    transaction_name TEXT NOT NULL,
    what TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_patient ON traces(patient_ins, id);
"""
    + _DOCUMENTS_TABLE
    + _DOCUMENTS_INDEXES
)


class StoreError(SandboxError):
    """A refused store operation; ``message_fr`` is shown to the tester as is."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


class DuplicateUniqueId(StoreError):
    """A document or submission-set uniqueId already registered (XDSDocumentUniqueIdError)."""

    def __init__(self, unique_id: str) -> None:
        super().__init__(f"L'identifiant unique {unique_id} est déjà enregistré dans le DMP.")
        self.unique_id = unique_id


class StaleReplacement(StoreError):
    """The document targeted by a replacement is no longer the current version."""


class StaleVersion(StaleReplacement):
    """An update names an entry that is not the latest version of its document (XDSMetadataVersionError)."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime | None = None) -> str:
    return (moment or now_utc()).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True)
class Patient:
    ins: str
    oid: str
    family_name: str
    given_names: str
    birth_date: str  # yyyyMMdd
    sex: str  # M | F | U
    birth_place: str
    status: str
    created_at: str
    status_changed_at: str
    medecin_traitant: str | None
    allow_bris_de_glace: bool
    allow_centre_15: bool
    allow_masked_in_emergency: bool
    legal_representatives: tuple[tuple[str, str], ...] = ()

    @property
    def is_minor(self) -> bool:
        """Under AGE_OF_MAJORITY today (birth_date yyyyMMdd)."""
        today = now_utc().strftime("%Y%m%d")
        return int(today) - int(self.birth_date) < AGE_OF_MAJORITY * 10000


@dataclass(frozen=True)
class Authorisation:
    ins: str
    ps_id: str
    status: str
    family_name: str
    given_name: str
    speciality: str
    started_at: str
    updated_at: str


@dataclass(frozen=True)
class StoredDocument:
    entry_uuid: str
    lid: str
    unique_id: str
    patient_ins: str
    patient_oid: str
    status: str
    version: int
    type_code: str
    class_code: str
    format_code: str
    practice_code: str
    facility_code: str
    confidentiality: tuple[str, ...]
    author_id: str
    author_structure: str
    title: str
    mime_type: str
    hash: str
    size: int
    creation_time: str
    service_start: str
    service_stop: str
    set_id: str
    submission_uuid: str
    replaces: str | None
    metadata: bytes  # the registry's ExtrinsicObject, kept rendered in its current state (status, codes…)
    registered_at: str
    content_uuid: str = ""  # name of the file holding the bytes (shared by the metadata versions)

    @property
    def masked(self) -> bool:
        return MASQUE_PS in self.confidentiality


@dataclass
class NewDocument:
    """One document of a deposit, ready to register (built by the ITI-41 handler)."""

    entry_uuid: str
    unique_id: str
    patient_ins: str
    patient_oid: str
    type_code: str
    class_code: str
    format_code: str
    practice_code: str
    facility_code: str
    confidentiality: tuple[str, ...]
    author_id: str
    author_structure: str
    title: str
    mime_type: str
    hash: str
    size: int
    creation_time: str
    service_start: str
    service_stop: str
    set_id: str
    metadata: bytes
    content: bytes
    lid: str = ""
    replaces: str | None = None  # entryUUID of the replaced version (RPLC)


@dataclass
class NewSubmission:
    entry_uuid: str
    unique_id: str
    patient_ins: str
    author_id: str
    submission_time: str
    source_id: str
    signature: bytes | None
    documents: list[NewDocument] = field(default_factory=list)


@dataclass(frozen=True)
class StoredSubmission:
    """A registered submission set (ITI-18 FindSubmissionSets)."""

    entry_uuid: str
    unique_id: str
    patient_ins: str
    author_id: str
    submission_time: str
    source_id: str
    registered_at: str


@dataclass(frozen=True)
class Trace:
    id: int
    at: str
    patient_ins: str | None
    ps_id: str
    ps_name: str
    structure_id: str
    role: str
    mode: str
    purpose: str
    reason: str | None
    transaction: str
    what: str
    result: str


class _Rows:
    """The rows of one read query, fetched while the connection was borrowed."""

    def __init__(self, rows: list[sqlite3.Row]) -> None:
        self._rows = rows

    def fetchone(self) -> sqlite3.Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[sqlite3.Row]:
        return self._rows

    def __iter__(self) -> Iterator[sqlite3.Row]:
        return iter(self._rows)


class _Reads:
    """Read queries, each on a connection borrowed from the pool and given back at once."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def execute(self, sql: str, params: Iterable[object] = ()) -> _Rows:
        with self._store._db() as db:
            return _Rows(db.execute(sql, tuple(params)).fetchall())


class Store:
    """SQLite + files; thread-safe. Open with ``Store(data_dir)``; ``close()`` when done."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.docs_dir = self.data_dir / DOCS_DIR
        self.docs_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / DB_NAME
        self._idle: list[sqlite3.Connection] = []
        self._open_connections = 0
        self._closed = False
        self._lock = threading.Lock()
        self._reads = _Reads(self)
        with self._db() as db:
            _migrate(db)
            db.executescript(_SCHEMA)
        self._remove_orphans()

    # -- connections ------------------------------------------------------------------------
    # A small pool, not a connection per thread: the server runs a thread per TCP connection, and a
    # connection kept per thread (threading.local) was never closed when its thread ended (two file
    # descriptors each, until every request failed). A borrowed connection goes back to the pool, or is
    # closed when POOL_MAX_IDLE are already idle.
    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for one unit of work (a read or a write transaction)."""
        with self._lock:
            if self._closed:
                raise StoreError("Le stockage du DMP de test est fermé.")
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self._open_connections += 1
        if conn is None:
            try:
                conn = self._open()
            except BaseException:
                with self._lock:
                    self._open_connections -= 1
                raise
        try:
            yield conn
        finally:
            keep = False
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                keep = True
            except sqlite3.Error:
                keep = False
            with self._lock:
                if keep and not self._closed and len(self._idle) < POOL_MAX_IDLE:
                    self._idle.append(conn)
                    conn = None
                else:
                    self._open_connections -= 1
            if conn is not None:
                conn.close()

    @property
    def open_connections(self) -> int:
        """SQLite connections currently open (idle in the pool or in use)."""
        with self._lock:
            return self._open_connections

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close the pooled connections; connections in use are closed when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open_connections -= len(idle)
        for conn in idle:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover
                pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_orphans(self) -> None:
        """Files without a registry row (a crash between the file write and the commit)."""
        known = {
            r[0].removeprefix("urn:uuid:")
            for r in self._reads.execute("SELECT content_uuid FROM documents").fetchall()
        }
        for path in self.docs_dir.iterdir():
            if path.name not in known:
                path.unlink(missing_ok=True)

    # -- patients ---------------------------------------------------------------------------
    def create_patient(
        self,
        ins: str,
        oid: str,
        family_name: str,
        given_names: str,
        birth_date: str,
        sex: str,
        birth_place: str = "",
        *,
        status: str = ACTIVE,
    ) -> Patient:
        if status not in PATIENT_STATUSES:
            raise StoreError(f"Statut de DMP inconnu : {status}.")
        if sex not in ("M", "F", "U"):
            raise StoreError(f"Sexe invalide : {sex} (M, F ou U attendu).")
        if len(birth_date) != 8 or not birth_date.isdigit():
            raise StoreError(f"Date de naissance invalide : {birth_date} (AAAAMMJJ attendu).")
        stamp = _ts()
        with self._write() as db:
            if db.execute("SELECT 1 FROM patients WHERE ins=?", (ins,)).fetchone():
                raise StoreError(f"Un DMP existe déjà pour l'INS {ins}.")
            db.execute(
                "INSERT INTO patients (ins, oid, family_name, given_names, birth_date, sex, birth_place,"
                " status, created_at, status_changed_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (ins, oid, family_name, given_names, birth_date, sex, birth_place, status, stamp, stamp),
            )
        return self.patient_or_raise(ins)

    def patient(self, ins: str) -> Patient | None:
        row = self._reads.execute("SELECT * FROM patients WHERE ins=?", (ins,)).fetchone()
        if row is None:
            return None
        reps = self._reads.execute(
            "SELECT name, relation FROM legal_representatives WHERE ins=? ORDER BY name", (ins,)
        )
        return Patient(
            ins=row["ins"],
            oid=row["oid"],
            family_name=row["family_name"],
            given_names=row["given_names"],
            birth_date=row["birth_date"],
            sex=row["sex"],
            birth_place=row["birth_place"],
            status=row["status"],
            created_at=row["created_at"],
            status_changed_at=row["status_changed_at"],
            medecin_traitant=row["medecin_traitant"],
            allow_bris_de_glace=bool(row["allow_bris_de_glace"]),
            allow_centre_15=bool(row["allow_centre_15"]),
            allow_masked_in_emergency=bool(row["allow_masked_in_emergency"]),
            legal_representatives=tuple((r["name"], r["relation"]) for r in reps),
        )

    def patient_or_raise(self, ins: str) -> Patient:
        found = self.patient(ins)
        if found is None:
            raise StoreError(f"Aucun DMP pour l'INS {ins}.")
        return found

    def patients(self) -> list[Patient]:
        rows = self._reads.execute("SELECT ins FROM patients ORDER BY family_name, ins").fetchall()
        return [p for p in (self.patient(r["ins"]) for r in rows) if p is not None]

    def _update_patient(self, ins: str, sql: str, params: Iterable[object]) -> None:
        with self._write() as db:
            cur = db.execute(sql, (*params, ins))
            if cur.rowcount == 0:
                raise StoreError(f"Aucun DMP pour l'INS {ins}.")

    def set_status(self, ins: str, status: str) -> None:
        """Close (CLOSED), record an opposition (OPPOSED) or reopen (ACTIVE) a DMP."""
        if status not in PATIENT_STATUSES:
            raise StoreError(f"Statut de DMP inconnu : {status}.")
        self._update_patient(
            ins, "UPDATE patients SET status=?, status_changed_at=? WHERE ins=?", (status, _ts())
        )

    def set_medecin_traitant(self, ins: str, ps_id: str | None) -> None:
        self._update_patient(ins, "UPDATE patients SET medecin_traitant=? WHERE ins=?", (ps_id,))

    def set_emergency(
        self,
        ins: str,
        *,
        bris_de_glace: bool | None = None,
        centre_15: bool | None = None,
        masked_in_emergency: bool | None = None,
    ) -> None:
        """Patient's emergency consents (BTG, ETREAT, MASKED of Mon espace santé)."""
        current = self.patient_or_raise(ins)
        self._update_patient(
            ins,
            "UPDATE patients SET allow_bris_de_glace=?, allow_centre_15=?, allow_masked_in_emergency=?"
            " WHERE ins=?",
            (
                int(current.allow_bris_de_glace if bris_de_glace is None else bris_de_glace),
                int(current.allow_centre_15 if centre_15 is None else centre_15),
                int(
                    current.allow_masked_in_emergency if masked_in_emergency is None else masked_in_emergency
                ),
            ),
        )

    def add_legal_representative(self, ins: str, name: str, relation: str = "parent") -> None:
        self.patient_or_raise(ins)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO legal_representatives (ins, name, relation) VALUES (?,?,?)",
                (ins, name, relation),
            )

    def remove_legal_representative(self, ins: str, name: str) -> None:
        with self._write() as db:
            cur = db.execute("DELETE FROM legal_representatives WHERE ins=? AND name=?", (ins, name))
            if cur.rowcount == 0:
                raise StoreError(f"{name} n'est pas représentant légal du patient {ins}.")

    # -- authorisations ---------------------------------------------------------------------
    def authorisation(self, ins: str, ps_id: str) -> Authorisation | None:
        row = self._reads.execute(
            "SELECT * FROM authorisations WHERE ins=? AND ps_id=?", (ins, ps_id)
        ).fetchone()
        return Authorisation(**dict(row)) if row else None

    def authorisations(self, ins: str | None = None, *, ps_id: str | None = None) -> list[Authorisation]:
        sql, params = "SELECT * FROM authorisations WHERE 1=1", []
        if ins is not None:
            sql += " AND ins=?"
            params.append(ins)
        if ps_id is not None:
            sql += " AND ps_id=?"
            params.append(ps_id)
        rows = self._reads.execute(sql + " ORDER BY started_at, ps_id", params).fetchall()
        return [Authorisation(**dict(r)) for r in rows]

    def set_authorisation(
        self,
        ins: str,
        ps_id: str,
        status: str = VALIDE,
        *,
        family_name: str = "",
        given_name: str = "",
        speciality: str = "",
    ) -> None:
        """Record the patient's authorisation (VALIDE) or block (INTERDIT) of a professional."""
        if status not in (VALIDE, INTERDIT):
            raise StoreError(f"Statut d'autorisation inconnu : {status}.")
        self.patient_or_raise(ins)
        stamp = _ts()
        with self._write() as db:
            old = db.execute("SELECT * FROM authorisations WHERE ins=? AND ps_id=?", (ins, ps_id)).fetchone()
            if old is None:
                db.execute(
                    "INSERT INTO authorisations VALUES (?,?,?,?,?,?,?,?)",
                    (ins, ps_id, status, family_name, given_name, speciality, stamp, stamp),
                )
            else:
                db.execute(
                    "UPDATE authorisations SET status=?, updated_at=?,"
                    " family_name=COALESCE(NULLIF(?, ''), family_name),"
                    " given_name=COALESCE(NULLIF(?, ''), given_name),"
                    " speciality=COALESCE(NULLIF(?, ''), speciality),"
                    " started_at=CASE WHEN status!=? THEN ? ELSE started_at END"
                    " WHERE ins=? AND ps_id=?",
                    (status, stamp, family_name, given_name, speciality, status, stamp, ins, ps_id),
                )

    def remove_authorisation(self, ins: str, ps_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM authorisations WHERE ins=? AND ps_id=?", (ins, ps_id)).rowcount > 0

    def block(self, ins: str, ps_id: str) -> None:
        """The patient blocks a professional (PAT-01): no more consultation, deposits still allowed."""
        self.set_authorisation(ins, ps_id, INTERDIT)

    def unblock(self, ins: str, ps_id: str) -> None:
        """Unblocking removes the block; the PS must obtain the patient's agreement again (PAT-01)."""
        found = self.authorisation(ins, ps_id)
        if found is None or found.status != INTERDIT:
            raise StoreError(f"Le professionnel {ps_id} n'est pas bloqué par le patient {ins}.")
        self.remove_authorisation(ins, ps_id)

    # -- documents --------------------------------------------------------------------------
    def _doc_path(self, entry_uuid: str) -> Path:
        return self.docs_dir / entry_uuid.removeprefix("urn:uuid:")

    def register(self, submission: NewSubmission) -> None:
        """Store the files, then register the whole submission in one transaction (atomic)."""
        written: list[Path] = []
        try:
            for doc in submission.documents:
                # a fresh entryUUID names the file: nobody refers to it before the registry commit
                path = self._doc_path(doc.entry_uuid)
                written.append(path)
                path.write_bytes(doc.content)
            stamp = _ts()
            with self._write() as db:
                self._insert_submission(db, submission, submission.signature, stamp)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def _insert_submission(
        self, db: sqlite3.Connection, sub: NewSubmission, signature: bytes | None, stamp: str
    ) -> None:
        try:
            db.execute(
                "INSERT INTO submission_sets VALUES (?,?,?,?,?,?,?,?)",
                (
                    sub.entry_uuid,
                    sub.unique_id,
                    sub.patient_ins,
                    sub.author_id,
                    sub.submission_time,
                    sub.source_id,
                    signature,
                    stamp,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateUniqueId(sub.unique_id) from exc
        for doc in sub.documents:
            # inside the write transaction: the check cannot race another deposit
            if db.execute("SELECT 1 FROM documents WHERE unique_id=?", (doc.unique_id,)).fetchone():
                raise DuplicateUniqueId(doc.unique_id)
            lid = doc.lid or doc.entry_uuid
            version = 1
            if doc.replaces:
                old = db.execute(
                    "SELECT status, lid, version FROM documents WHERE entry_uuid=?", (doc.replaces,)
                ).fetchone()
                if old is None or old["status"] != APPROVED:
                    raise StaleReplacement(
                        "Le document à remplacer n'existe pas ou n'est plus la version courante."
                    )
                db.execute("UPDATE documents SET status=? WHERE entry_uuid=?", (DEPRECATED, doc.replaces))
                self._rerender(db, doc.replaces)
                lid = old["lid"]
                version = old["version"] + 1
            try:
                db.execute(
                    "INSERT INTO documents (entry_uuid, lid, unique_id, patient_ins, patient_oid, status,"
                    " version, type_code, class_code, format_code, practice_code, facility_code,"
                    " confidentiality, author_id, author_structure, title, mime_type, hash, size,"
                    " creation_time, service_start, service_stop, set_id, submission_uuid, replaces,"
                    " metadata, content_uuid, registered_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        doc.entry_uuid,
                        lid,
                        doc.unique_id,
                        doc.patient_ins,
                        doc.patient_oid,
                        APPROVED,
                        version,
                        doc.type_code,
                        doc.class_code,
                        doc.format_code,
                        doc.practice_code,
                        doc.facility_code,
                        json.dumps(sorted(doc.confidentiality)),
                        doc.author_id,
                        doc.author_structure,
                        doc.title,
                        doc.mime_type,
                        doc.hash,
                        doc.size,
                        doc.creation_time,
                        doc.service_start,
                        doc.service_stop,
                        doc.set_id,
                        sub.entry_uuid,
                        doc.replaces,
                        render_entry(
                            doc.metadata,
                            status=APPROVED,
                            version=version,
                            confidentiality=tuple(sorted(doc.confidentiality)),
                            lid=lid,
                        ),
                        _file_name(doc.entry_uuid),
                        stamp,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateUniqueId(doc.unique_id) from exc

    @staticmethod
    def _rerender(db: sqlite3.Connection, entry_uuid: str) -> None:
        """Keep the stored ExtrinsicObject in step with the row (status, version, lid, confidentiality)."""
        row = db.execute(
            "SELECT metadata, status, version, lid, confidentiality FROM documents WHERE entry_uuid=?",
            (entry_uuid,),
        ).fetchone()
        rendered = render_entry(
            row["metadata"],
            status=row["status"],
            version=row["version"],
            confidentiality=tuple(json.loads(row["confidentiality"])),
            lid=row["lid"],
        )
        db.execute("UPDATE documents SET metadata=? WHERE entry_uuid=?", (rendered, entry_uuid))

    @staticmethod
    def _doc(row: sqlite3.Row) -> StoredDocument:
        data = dict(row)
        data["confidentiality"] = tuple(json.loads(data["confidentiality"]))
        return StoredDocument(**data)

    def unique_id_exists(self, unique_ids: Iterable[str]) -> str | None:
        """The first of ``unique_ids`` already used by a document or a submission set, if any."""
        db = self._reads
        for uid in unique_ids:
            if db.execute("SELECT 1 FROM documents WHERE unique_id=?", (uid,)).fetchone():
                return uid
            if db.execute("SELECT 1 FROM submission_sets WHERE unique_id=?", (uid,)).fetchone():
                return uid
        return None

    def document(
        self, *, entry_uuid: str | None = None, unique_id: str | None = None
    ) -> StoredDocument | None:
        if entry_uuid is not None:
            row = self._reads.execute("SELECT * FROM documents WHERE entry_uuid=?", (entry_uuid,)).fetchone()
        elif unique_id is not None:
            # the latest version of the document (its metadata versions share the uniqueId)
            row = self._reads.execute(
                "SELECT * FROM documents WHERE unique_id=? ORDER BY version DESC LIMIT 1", (unique_id,)
            ).fetchone()
        else:
            raise ValueError("entry_uuid or unique_id is required")
        return self._doc(row) if row else None

    def find_document(self, ins: str, ref: str) -> StoredDocument:
        """A document of this patient by entryUUID, uniqueId or unique prefix of either (console)."""
        rows = self._reads.execute(
            "SELECT * FROM documents WHERE patient_ins=? AND (entry_uuid=? OR unique_id=?"
            " OR entry_uuid LIKE ? OR unique_id LIKE ?)",
            (ins, ref, ref, f"urn:uuid:{ref}%", f"{ref}%"),
        ).fetchall()
        if not any(r["entry_uuid"] == ref for r in rows):
            # a uniqueId (or prefix) names the latest metadata version of its document
            latest: dict[str, sqlite3.Row] = {}
            for r in rows:
                if r["unique_id"] not in latest or r["version"] > latest[r["unique_id"]]["version"]:
                    latest[r["unique_id"]] = r
            rows = list(latest.values())
        else:
            rows = [r for r in rows if r["entry_uuid"] == ref]
        if len(rows) != 1:
            raise StoreError(
                f"Document {ref} introuvable pour l'INS {ins}."
                if not rows
                else f"Référence {ref} ambiguë ({len(rows)} documents) : précisez."
            )
        return self._doc(rows[0])

    def documents_by_lid(self, lid: str) -> list[StoredDocument]:
        rows = self._reads.execute(
            "SELECT * FROM documents WHERE lid=? ORDER BY version DESC", (lid,)
        ).fetchall()
        return [self._doc(r) for r in rows]

    def documents(self, ins: str, statuses: Iterable[str] | None = None) -> list[StoredDocument]:
        sql, params = "SELECT * FROM documents WHERE patient_ins=?", [ins]
        wanted = list(statuses) if statuses is not None else None
        if wanted is not None:
            sql += f" AND status IN ({','.join('?' * len(wanted))})"
            params.extend(wanted)
        rows = self._reads.execute(sql + " ORDER BY creation_time, registered_at", params).fetchall()
        return [self._doc(r) for r in rows]

    def submission_sets(self, ins: str) -> list[StoredSubmission]:
        rows = self._reads.execute(
            "SELECT entry_uuid, unique_id, patient_ins, author_id, submission_time, source_id,"
            " registered_at FROM submission_sets WHERE patient_ins=?"
            " ORDER BY submission_time, registered_at",
            (ins,),
        ).fetchall()
        return [StoredSubmission(*tuple(r)) for r in rows]

    def documents_for_patient_view(
        self, ins: str, *, legal_representative: bool = False
    ) -> list[StoredDocument]:
        """What Mon espace santé shows the patient (or a minor's legal representative)."""
        hidden = INVISIBLE_REPRESENTANTS_LEGAUX if legal_representative else INVISIBLE_PATIENT
        return [
            d
            for d in self.documents(ins, (APPROVED, ARCHIVED))
            if hidden not in d.confidentiality
            and not (legal_representative and INVISIBLE_PATIENT in d.confidentiality)
        ]

    def content(self, entry_uuid: str) -> bytes:
        row = self._reads.execute(
            "SELECT content_uuid FROM documents WHERE entry_uuid=?", (entry_uuid,)
        ).fetchone()
        return self._doc_path(row[0] if row is not None else entry_uuid).read_bytes()

    def set_confidentiality(
        self, entry_uuid: str, codes: Iterable[str], *, expected_version: int | None = None
    ) -> StoredDocument:
        """A new metadata version of a document with these confidentiality codes (ITI-57, dmp-protocol.md
        §7.8 and §8.5): a new entry (new entryUUID, same lid and uniqueId, version + 1, same bytes), the
        previous one Deprecated, in one transaction. Returns the new version.

        Raises :class:`StaleVersion` when ``entry_uuid`` is not the latest version of its document, or is
        not at ``expected_version``."""
        new_uuid = new_entry_uuid()
        with self._write() as db:
            row = db.execute("SELECT * FROM documents WHERE entry_uuid=?", (entry_uuid,)).fetchone()
            if row is None:
                raise StoreError(f"Document {entry_uuid} introuvable.")
            self._check_latest(db, row)
            if expected_version is not None and row["version"] != expected_version:
                raise StaleVersion(
                    f"La version {expected_version} du document n'est plus la version courante"
                    f" ({row['version']})."
                )
            version = row["version"] + 1
            confidentiality = tuple(sorted(set(codes)))
            db.execute("UPDATE documents SET status=? WHERE entry_uuid=?", (DEPRECATED, entry_uuid))
            self._rerender(db, entry_uuid)
            data = dict(row)
            data.update(
                entry_uuid=new_uuid,
                version=version,
                confidentiality=json.dumps(list(confidentiality)),
                # [I] the new version keeps the availability status (Approved, or Archived) of the previous
                replaces=None,
                registered_at=_ts(),
                metadata=render_entry(
                    reidentify_entry(row["metadata"], new_uuid),
                    status=row["status"],
                    version=version,
                    confidentiality=confidentiality,
                    lid=row["lid"],
                ),
            )
            names = list(data)
            db.execute(
                f"INSERT INTO documents ({', '.join(names)}) VALUES ({','.join('?' * len(names))})",  # noqa: S608 - column names from the row
                [data[n] for n in names],
            )
            new_row = db.execute("SELECT * FROM documents WHERE entry_uuid=?", (new_uuid,)).fetchone()
        return self._doc(new_row)

    @staticmethod
    def _check_latest(db: sqlite3.Connection, row: sqlite3.Row) -> None:
        latest = db.execute("SELECT MAX(version) FROM documents WHERE lid=?", (row["lid"],)).fetchone()[0]
        if row["status"] == DEPRECATED or row["version"] != latest:
            raise StaleVersion(
                f"L'entrée {row['entry_uuid']} n'est plus la version courante du document"
                f" (version {row['version']}, version courante {latest})."
            )

    def set_document_status(self, entry_uuid: str, status: str, *, expected: str | None = None) -> None:
        """Change the availability status of the latest version of a document, in place (ITI-57
        UpdateAvailabilityStatus creates no new version). :class:`StaleVersion` for an older version."""
        if status not in STATUSES:
            raise StoreError(f"Statut de document inconnu : {status}.")
        with self._write() as db:
            row = db.execute("SELECT * FROM documents WHERE entry_uuid=?", (entry_uuid,)).fetchone()
            if row is None:
                raise StoreError(f"Document {entry_uuid} introuvable.")
            self._check_latest(db, row)
            if expected is not None and row["status"] != expected:
                raise StaleReplacement(f"Le statut actuel du document est {row['status']}, pas {expected}.")
            db.execute("UPDATE documents SET status=? WHERE entry_uuid=?", (status, entry_uuid))
            self._rerender(db, entry_uuid)

    def mask(self, ins: str, ref: str, masked: bool = True) -> StoredDocument:
        """Patient console: mask/unmask a document to professionals (MASQUE_PS): a new version."""
        doc = self.find_document(ins, ref)
        codes = set(doc.confidentiality)
        (codes.add if masked else codes.discard)(MASQUE_PS)
        return self.set_confidentiality(doc.entry_uuid, codes)

    def make_visible(self, ins: str, ref: str, *, legal_representatives: bool = False) -> StoredDocument:
        """Make a document visible to the patient (or to the legal representatives): irreversible."""
        doc = self.find_document(ins, ref)
        codes = set(doc.confidentiality)
        codes.discard(INVISIBLE_REPRESENTANTS_LEGAUX if legal_representatives else INVISIBLE_PATIENT)
        return self.set_confidentiality(doc.entry_uuid, codes)

    def document_count(self, ins: str | None = None) -> int:
        """Documents (a uniqueId with its metadata versions counts once)."""
        if ins is None:
            rows = self._reads.execute("SELECT COUNT(DISTINCT unique_id) FROM documents").fetchall()
        else:
            rows = self._reads.execute(
                "SELECT COUNT(DISTINCT unique_id) FROM documents WHERE patient_ins=?", (ins,)
            ).fetchall()
        return int(rows[0][0])

    def last_document_time(self, ins: str) -> str:
        rows = self._reads.execute(
            "SELECT MAX(registered_at) FROM documents WHERE patient_ins=?", (ins,)
        ).fetchall()
        return str(rows[0][0] or "")

    # -- traces -----------------------------------------------------------------------------
    def add_trace(
        self,
        *,
        transaction: str,
        result: str,
        patient_ins: str | None = None,
        ps_id: str = "",
        ps_name: str = "",
        structure_id: str = "",
        role: str = "",
        mode: str = "",
        purpose: str = "",
        reason: str | None = None,
        what: str = "",
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO traces (at, patient_ins, ps_id, ps_name, structure_id, role, mode, purpose,"
                " reason, transaction_name, what, result) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    now_utc().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    patient_ins,
                    ps_id,
                    ps_name,
                    structure_id,
                    role,
                    mode,
                    purpose,
                    reason,
                    transaction,
                    what,
                    result,
                ),
            )

    def traces(self, ins: str | None = None, *, limit: int | None = None) -> list[Trace]:
        sql, params = "SELECT * FROM traces", []
        if ins is not None:
            sql += " WHERE patient_ins=?"
            params.append(ins)
        sql += " ORDER BY id"
        if limit is not None:
            inner = sql.replace("ORDER BY id", "ORDER BY id DESC")
            sql = "SELECT * FROM (" + inner + " LIMIT ?) ORDER BY id"  # noqa: S608 - constant fragments only
            params.append(limit)
        rows = self._reads.execute(sql, params).fetchall()
        out = []
        for r in rows:
            data = dict(r)
            data["transaction"] = data.pop("transaction_name")
            out.append(Trace(**data))
        return out


def _file_name(entry_uuid: str) -> str:
    return entry_uuid.removeprefix("urn:uuid:")


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a data folder of an earlier sandbox up to date: documents got metadata versions (ITI-57 new
    entries sharing the uniqueId, so no more UNIQUE on it) and a content_uuid column. One transaction."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(documents)").fetchall()}
    if not columns or "content_uuid" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE documents RENAME TO documents_before_versions")
        db.execute(_DOCUMENTS_TABLE)
        kept = ", ".join(sorted(columns))
        db.execute(
            f"INSERT INTO documents ({kept}, content_uuid) SELECT {kept},"  # noqa: S608 - column names from the schema
            " replace(entry_uuid, 'urn:uuid:', '') FROM documents_before_versions"
        )
        db.execute("DROP TABLE documents_before_versions")
        for statement in _DOCUMENTS_INDEXES.strip().splitlines():
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def new_entry_uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"
