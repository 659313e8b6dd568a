"""Append-only, hash-chained audit journal in SQLite (issue 5 item 4, access-rules TRC-04).

One record per action. Each record's ``hash`` is SHA-256 over a canonical JSON serialisation of
(format version, seq, timestamp, clock note, every event field, prev_hash); ``prev_hash`` is the
previous record's hash (64 zeros for the first). So:

- editing any field of a record changes its hash                       -> caught at that record;
- deleting a record leaves a gap in ``seq`` and a broken ``prev_hash``  -> caught at the next one;
- inserting or reordering records breaks seq / prev_hash / hash        -> caught;
- truncating the tail is caught by the *anchor* file ``<journal>.anchor`` (last seq + hash, written
  after each commit, only ever moving forward);
- SQLite triggers refuse UPDATE and DELETE (defence in depth). Dropping them is itself reported by
  ``verify``; an edit made after dropping them is caught by the hashes.

A determined attacker with write access to both files can rewrite the whole chain: that is what
the optional syslog forwarding (``ps_agent.audit.syslog``) is for, since the collector keeps the
hashes outside this machine.

Durability: WAL mode with ``synchronous=FULL``; ``append`` returns only once the record is
committed, so the caller can show patient data afterwards (records are written *before* data is
returned). Concurrent writers (UI + CLI) serialise on ``BEGIN IMMEDIATE``.

Time: UTC ISO-8601 with milliseconds (``2026-11-25T20:31:56.123Z``). Timestamps never go back: if
the wall clock is earlier than the last record (clock set back, NTP step), the record takes the last
timestamp and its ``clock_note`` says by how much the clock went back and what it read. ``verify``
checks that timestamps never decrease. (Decision for "a clock that can be checked", see docs.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from ps_agent.audit.errors import AuditEventError, AuditIntegrityError, AuditWriteError
from ps_agent.audit.sanitize import MAX_DETAIL, MAX_REASON, MAX_SHORT, clean_ids, clean_text

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
OUTCOMES = ("success", "refused", "error", "pending")
ACCESS_MODES = ("normal", "bris_de_glace", "centre_15")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@dataclass(frozen=True)
class AuditEvent:
    """What the caller supplies: plain facts, never a PIN, a key or document content."""

    action: str  # "dmp.status", "dmp.consent", "dmp.deposit", "dmp.search", "dmp.retrieve", ... "auth.login"
    outcome: str  # "success" | "refused" | "error" | "pending"
    actor_id_nat: str
    actor_name: str
    actor_profession: str
    auth_mode: str  # DIRECTE / INDIRECTE / INDIRECTE_RENFORCEE ("" before authentication)
    card_serial: str = ""
    structure_id: str = ""
    patient_ins: str = ""  # matricule, or matricule + "^" + oid
    transaction: str = ""  # "TD0.2", "TD2.1", ...
    document_ids: tuple[str, ...] = ()
    access_mode: str = "normal"  # normal | bris_de_glace | centre_15
    reason: str = ""  # emergency reason etc.
    error_code: str = ""
    detail: str = ""
    on_behalf_of: str = ""  # author id_nat in AIR/INDIRECTE deposits
    rule_id: str = ""  # access-policy rule that decided (e.g. "URG-01"), when relevant


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    timestamp: str
    event: AuditEvent
    prev_hash: str
    hash: str
    clock_note: str = ""  # set when the wall clock went back (the timestamp was held)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    message_fr: str = ""
    problems: tuple[str, ...] = field(default=())


class Forwarder(Protocol):
    """Something told about each committed record (e.g. the syslog forwarder). Must never block."""

    def attach(self, journal: AuditJournal) -> None: ...

    def notify(self, record: AuditRecord) -> None: ...


_EVENT_FIELDS = tuple(f.name for f in fields(AuditEvent))
_LIMITS = {"reason": MAX_REASON, "detail": MAX_DETAIL}

_SCHEMA = """
CREATE TABLE audit_records (
    seq INTEGER PRIMARY KEY,
    timestamp TEXT NOT NULL,
    clock_note TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor_id_nat TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    actor_profession TEXT NOT NULL,
    auth_mode TEXT NOT NULL,
    card_serial TEXT NOT NULL,
    structure_id TEXT NOT NULL,
    patient_ins TEXT NOT NULL,
    transaction_code TEXT NOT NULL,
    document_ids TEXT NOT NULL,
    access_mode TEXT NOT NULL,
    reason TEXT NOT NULL,
    error_code TEXT NOT NULL,
    detail TEXT NOT NULL,
    on_behalf_of TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_patient ON audit_records(patient_ins);
CREATE INDEX audit_by_time ON audit_records(timestamp);
CREATE INDEX audit_by_action ON audit_records(action);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit journal is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit journal is append-only'); END;
CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE audit_forward_state (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
"""
_TRIGGERS = ("audit_no_update", "audit_no_delete")
_COLUMNS = (
    "seq, timestamp, clock_note, action, outcome, actor_id_nat, actor_name, actor_profession, auth_mode, "
    "card_serial, structure_id, patient_ins, transaction_code, document_ids, access_mode, reason, "
    "error_code, detail, on_behalf_of, rule_id, prev_hash, hash"
)


def format_timestamp(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and a ``Z``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_timestamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _filter_ts(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_timestamp(value)
    text = str(value)
    if _TS_RE.match(text):
        return text
    try:
        return format_timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise AuditEventError(f"Date de filtre invalide : « {text} » (format attendu AAAA-MM-JJ).") from exc


def canonical_bytes(seq: int, timestamp: str, clock_note: str, event: AuditEvent, prev_hash: str) -> bytes:
    """The exact bytes hashed for a record (sorted keys, no spaces, UTF-8)."""
    payload: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "seq": seq,
        "timestamp": timestamp,
        "clock_note": clock_note,
        "prev_hash": prev_hash,
        "event": {name: _jsonable(getattr(event, name)) for name in _EVENT_FIELDS},
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(seq: int, timestamp: str, clock_note: str, event: AuditEvent, prev_hash: str) -> str:
    return hashlib.sha256(canonical_bytes(seq, timestamp, clock_note, event, prev_hash)).hexdigest()


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def sanitize_event(event: AuditEvent) -> AuditEvent:
    """Validate the structure (raise ``AuditEventError``) and clean every free-text field."""
    if not isinstance(event, AuditEvent):
        raise AuditEventError("Événement d'audit invalide.")
    if not isinstance(event.action, str) or not _ACTION_RE.match(event.action or ""):
        raise AuditEventError(f"Action d'audit invalide : « {event.action} ».")
    if event.outcome not in OUTCOMES:
        raise AuditEventError(
            f"Résultat d'audit invalide : « {event.outcome} » (attendu : {', '.join(OUTCOMES)})."
        )
    if event.access_mode not in ACCESS_MODES:
        raise AuditEventError(f"Mode d'accès invalide dans l'audit : « {event.access_mode} ».")
    if isinstance(event.document_ids, str):
        raise AuditEventError("document_ids doit être une liste d'identifiants, pas une chaîne.")
    changes: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        if name in ("action", "outcome", "access_mode"):
            continue
        value = getattr(event, name)
        if name == "document_ids":
            changes[name] = clean_ids(tuple(value))
        else:
            changes[name] = clean_text("" if value is None else str(value), _LIMITS.get(name, MAX_SHORT))
    return replace(event, **changes)


class AuditJournal:
    """The journal file. Thread-safe; several processes may append to the same file."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.path = Path(path)
        self.anchor_path = self.path.with_name(self.path.name + ".anchor")
        self._anchor_lock_path = self.anchor_path.with_name(self.anchor_path.name + ".lock")
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Patient identifiers inside: owner-only. SQLite gives its -wal/-shm files the same mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            self._conn = self._connect()
            self._ensure_schema()
        except (OSError, sqlite3.Error) as exc:
            raise AuditWriteError(
                f"Impossible d'ouvrir le journal d'audit {self.path} : {exc}", code="AUDIT_OPEN"
            ) from exc
        self.forwarder = forwarder
        if forwarder is not None:
            forwarder.attach(self)

    # -- connection / schema ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        # Switching a new file to WAL takes an exclusive lock without the busy handler: when two processes
        # create the journal at once, one gets SQLITE_BUSY at once; retry for a while.
        deadline = time.monotonic() + 30
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.02)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def connect_reader(self) -> sqlite3.Connection:
        """A separate connection (for a forwarder thread)."""
        return self._connect()

    def _ensure_schema(self) -> None:
        with self._lock:
            exists = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_records'"
            ).fetchone()
            if exists:
                # Never recreate missing triggers silently: their absence is evidence ``verify`` reports.
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                again = self._conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_records'"
                ).fetchone()
                if not again:
                    for statement in _split_sql(_SCHEMA):
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO audit_meta(key, value) VALUES ('format', ?)", (str(FORMAT_VERSION),)
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        if self.forwarder is not None:
            closer = getattr(self.forwarder, "close", None)
            if callable(closer):
                closer()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AuditJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------
    def append(self, event: AuditEvent) -> AuditRecord:
        """Record ``event`` durably; returns once committed (raise ``AuditWriteError`` otherwise)."""
        clean = sanitize_event(event)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    last = self._conn.execute(
                        "SELECT seq, timestamp, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
                    ).fetchone()
                    seq = (last[0] + 1) if last else 1
                    prev_hash = last[2] if last else GENESIS_HASH
                    wall = format_timestamp(self._clock())
                    timestamp, clock_note = wall, ""
                    if last and wall < last[1]:
                        back_ms = int(
                            (_parse_timestamp(last[1]) - _parse_timestamp(wall)).total_seconds() * 1000
                        )
                        timestamp = last[1]
                        clock_note = f"horloge système en retard de {back_ms} ms (lue : {wall})"
                    digest = record_hash(seq, timestamp, clock_note, clean, prev_hash)
                    self._conn.execute(
                        f"INSERT INTO audit_records ({_COLUMNS}) VALUES ({', '.join('?' * 22)})",  # noqa: S608
                        (
                            seq,
                            timestamp,
                            clock_note,
                            clean.action,
                            clean.outcome,
                            clean.actor_id_nat,
                            clean.actor_name,
                            clean.actor_profession,
                            clean.auth_mode,
                            clean.card_serial,
                            clean.structure_id,
                            clean.patient_ins,
                            clean.transaction,
                            json.dumps(list(clean.document_ids), ensure_ascii=False),
                            clean.access_mode,
                            clean.reason,
                            clean.error_code,
                            clean.detail,
                            clean.on_behalf_of,
                            clean.rule_id,
                            prev_hash,
                            digest,
                        ),
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise AuditWriteError(
                    f"Le journal d'audit n'a pas pu être écrit ({exc}) : l'action est annulée.",
                    code="AUDIT_WRITE",
                ) from exc
            record = AuditRecord(seq, timestamp, clean, prev_hash, digest, clock_note)
            self._advance_anchor(seq, digest)
        if self.forwarder is not None:
            try:
                self.forwarder.notify(record)
            except Exception:  # noqa: S110 - forwarding must never block the journal
                pass
        return record

    def _advance_anchor(self, seq: int, digest: str) -> None:
        """Write ``<journal>.anchor`` = last seq + hash; only moves forward (file lock across processes).

        The anchor is overwritten in place (fixed-size record padded with spaces, one ``pwrite`` at offset 0):
        no temporary file, rename or fsync per append (they cost ~0.5 ms each time). It needs no fsync: the
        record itself is already durable (SQLite commit, ``synchronous=FULL``) and a crash can only leave an
        *older* anchor on disk (a ``ANCHOR_SIZE``-byte record lies within one disk sector: old or new, never
        torn), which ``verify`` accepts since the anchor may lag but never lead. Readers take the same lock
        (shared) so they never see a half-written record.
        """
        try:
            with open(self._anchor_lock_path, "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                current = _read_anchor(self.anchor_path)
                if current is not None and current[0] >= seq:
                    return
                data = json.dumps({"seq": seq, "hash": digest}).encode("ascii").ljust(ANCHOR_SIZE)
                fd = os.open(self.anchor_path, os.O_CREAT | os.O_WRONLY, 0o600)
                try:
                    os.pwrite(fd, data, 0)
                    if os.fstat(fd).st_size != len(data):  # e.g. an anchor written by an older version
                        os.ftruncate(fd, len(data))
                finally:
                    os.close(fd)
        except OSError as exc:
            raise AuditWriteError(
                f"L'ancre du journal d'audit n'a pas pu être écrite ({exc}).", code="AUDIT_ANCHOR"
            ) from exc

    def _read_anchor_locked(self) -> tuple[int, str] | None:
        """The anchor, read under the shared lock (never a record being written)."""
        try:
            with open(self._anchor_lock_path, "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_SH)
                return _read_anchor(self.anchor_path)
        except OSError:
            return _read_anchor(self.anchor_path)

    # -- reading ------------------------------------------------------------------------------
    def records(
        self,
        *,
        patient_ins: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        action: str | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        return list(
            self.iter_records(
                patient_ins=patient_ins,
                since=since,
                until=until,
                action=action,
                after_seq=after_seq,
                limit=limit,
            )
        )

    def iter_records(
        self,
        *,
        patient_ins: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        action: str | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> Iterator[AuditRecord]:
        """Records in ``seq`` order. ``patient_ins`` matches the matricule with or without ``^oid``;
        ``action`` matches exactly or as a prefix ending with "." (``"dmp."``); ``until`` is exclusive
        when a full timestamp, inclusive of the whole day for a bare date."""
        clauses: list[str] = []
        params: list[Any] = []
        if patient_ins:
            matricule = patient_ins.split("^", 1)[0]
            clauses.append("(patient_ins = ? OR patient_ins = ? OR patient_ins LIKE ? ESCAPE '\\')")
            params += [patient_ins, matricule, _like_escape(matricule) + "^%"]
        if since is not None:
            clauses.append("timestamp >= ?")
            params.append(_filter_ts(since))
        if until is not None:
            if isinstance(until, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", until):
                clauses.append("substr(timestamp, 1, 10) <= ?")
                params.append(until)
            else:
                clauses.append("timestamp < ?")
                params.append(_filter_ts(until))
        if action:
            if action.endswith("."):
                clauses.append("action LIKE ? ESCAPE '\\'")
                params.append(_like_escape(action) + "%")
            else:
                clauses.append("action = ?")
                params.append(action)
        if after_seq is not None:
            clauses.append("seq > ?")
            params.append(after_seq)
        sql = f"SELECT {_COLUMNS} FROM audit_records"  # noqa: S608
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if conn is None:
            with self._lock:
                rows = self._conn.execute(sql, params).fetchall()
            for row in rows:
                yield _row_to_record(row)
        else:
            for row in conn.execute(sql, params):
                yield _row_to_record(row)

    def last_seq(self) -> int:
        """``seq`` of the last record (0 when empty)."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(seq) FROM audit_records").fetchone()
        return int(row[0] or 0)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM audit_records").fetchone()[0])

    # -- verification -------------------------------------------------------------------------
    def verify(self) -> VerifyResult:
        """Walk the whole chain; report the first bad record (by its ``seq``) in French.

        Reads the anchor first, then walks a consistent snapshot (own connection, read transaction) so
        that appends made meanwhile, by this or another process, neither block nor disturb it: the anchor
        only moves forward after a commit, so in an honest journal it can never be ahead of the snapshot.
        """
        anchor = self._read_anchor_locked()
        problems: list[str] = []
        first_bad: int | None = None
        expected_seq = 1
        prev_hash = GENESIS_HASH
        prev_ts = ""
        count = 0
        hash_at_anchor: str | None = None
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise AuditWriteError(
                f"Impossible de lire le journal d'audit : {exc}", code="AUDIT_OPEN"
            ) from exc
        try:
            conn.execute("BEGIN")
            cursor = conn.execute(f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq")  # noqa: S608
            for row in cursor:
                count += 1
                try:
                    rec = _row_to_record(row)
                except (ValueError, TypeError) as exc:
                    first_bad = row[0]
                    problems.append(f"Enregistrement n° {row[0]} illisible ({exc}).")
                    break
                problem = self._check_one(rec, expected_seq, prev_hash, prev_ts)
                if problem:
                    first_bad = expected_seq if problem.startswith("manquant:") else rec.seq
                    problems.append(problem.removeprefix("manquant:"))
                    break
                if anchor is not None and rec.seq == anchor[0]:
                    hash_at_anchor = rec.hash
                expected_seq = rec.seq + 1
                prev_hash = rec.hash
                prev_ts = rec.timestamp
            if first_bad is None:
                triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
                missing = [t for t in _TRIGGERS if t not in triggers]
                if missing:
                    problems.append(
                        "Les protections du journal (déclencheurs "
                        + ", ".join(missing)
                        + ") ont été supprimées : le fichier a été modifié en dehors de l'agent."
                    )
            conn.execute("COMMIT")
        finally:
            conn.close()
        if first_bad is None and not problems:
            anchor_problem, anchor_bad = self._check_anchor(anchor, count, expected_seq - 1, hash_at_anchor)
            if anchor_problem:
                problems.append(anchor_problem)
                first_bad = anchor_bad
        if problems:
            return VerifyResult(False, count, first_bad, problems[0], tuple(problems))
        return VerifyResult(
            True, count, None, f"Journal d'audit intègre : {count} enregistrement(s) vérifié(s)."
        )

    @staticmethod
    def _check_one(rec: AuditRecord, expected_seq: int, prev_hash: str, prev_ts: str) -> str:
        if rec.seq > expected_seq:
            missing = (
                f"n° {expected_seq}" if rec.seq == expected_seq + 1 else f"n° {expected_seq} à {rec.seq - 1}"
            )
            return (
                f"manquant:Enregistrement {missing} manquant (supprimé) : "
                f"le journal passe directement au n° {rec.seq}."
            )
        if rec.seq < expected_seq:
            return f"Enregistrement n° {rec.seq} en double ou hors d'ordre."
        if rec.prev_hash != prev_hash:
            return (
                f"Enregistrement n° {rec.seq} : le chaînage est rompu (empreinte précédente incorrecte) : "
                "un enregistrement a été supprimé, inséré ou déplacé."
            )
        if not _TS_RE.match(rec.timestamp):
            return f"Enregistrement n° {rec.seq} : horodatage invalide « {rec.timestamp} »."
        if rec.timestamp < prev_ts:
            return (
                f"Enregistrement n° {rec.seq} : horodatage antérieur au précédent "
                f"({rec.timestamp} < {prev_ts}) : enregistrements réordonnés."
            )
        expected = record_hash(rec.seq, rec.timestamp, rec.clock_note, rec.event, rec.prev_hash)
        if expected != rec.hash:
            return f"Enregistrement n° {rec.seq} : contenu modifié (l'empreinte SHA-256 ne correspond plus)."
        return ""

    def _check_anchor(
        self, anchor: tuple[int, str] | None, count: int, last_seq: int, hash_at_anchor: str | None
    ) -> tuple[str, int | None]:
        if anchor is None:
            # A crash between the first commit and the first anchor write leaves one record unanchored.
            if count <= 1:
                return "", None
            return (
                f"L'ancre du journal ({self.anchor_path.name}) est absente ou illisible : "
                "impossible de vérifier que les derniers enregistrements n'ont pas été supprimés.",
                None,
            )
        a_seq, a_hash = anchor
        if a_seq > last_seq:
            return (
                f"Enregistrement n° {last_seq + 1} manquant (supprimé) : l'ancre du journal indique "
                f"{a_seq} enregistrement(s), le fichier s'arrête au n° {last_seq}.",
                last_seq + 1,
            )
        # The anchor may lag (written after each commit; appends since it was read): it must match the
        # record it names.
        if a_seq > 0 and hash_at_anchor != a_hash:
            return (
                f"Enregistrement n° {a_seq} : ne correspond pas à l'ancre du journal "
                "(journal réécrit ou remplacé).",
                a_seq,
            )
        return "", None

    def check(self) -> VerifyResult:
        """``verify`` that raises ``AuditIntegrityError`` when the journal is not intact."""
        result = self.verify()
        if not result.ok:
            raise AuditIntegrityError(result.message_fr, first_bad_seq=result.first_bad_seq)
        return result

    # -- exports ------------------------------------------------------------------------------
    def export_fhir(self, out: IO[str], **filters: Any) -> int:
        from ps_agent.audit.export import write_fhir_bundle

        return write_fhir_bundle(self.iter_records(**filters), out)

    def export_csv(self, out: IO[str], **filters: Any) -> int:
        from ps_agent.audit.export import write_csv

        return write_csv(self.iter_records(**filters), out)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _split_sql(script: str) -> list[str]:
    """Split the schema on ';' outside trigger bodies (they contain one themselves)."""
    out: list[str] = []
    buf: list[str] = []
    depth = 0
    for line in script.strip().splitlines():
        buf.append(line)
        upper = line.upper()
        if "BEGIN" in upper.split():
            depth += 1
        if upper.strip().endswith("END;"):
            depth -= 1
        if line.rstrip().endswith(";") and depth == 0:
            out.append("\n".join(buf))
            buf = []
    if buf and "".join(buf).strip():
        out.append("\n".join(buf))
    return out


ANCHOR_SIZE = 128  # bytes of the anchor record (JSON padded with spaces; well under one 512-byte sector)


def _read_anchor(path: Path) -> tuple[int, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["seq"]), str(data["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _row_to_record(row: tuple[Any, ...]) -> AuditRecord:
    (
        seq,
        timestamp,
        clock_note,
        action,
        outcome,
        actor_id_nat,
        actor_name,
        actor_profession,
        auth_mode,
        card_serial,
        structure_id,
        patient_ins,
        transaction,
        document_ids,
        access_mode,
        reason,
        error_code,
        detail,
        on_behalf_of,
        rule_id,
        prev_hash,
        digest,
    ) = row
    ids = json.loads(document_ids) if document_ids else []
    if not isinstance(ids, list):
        raise ValueError("document_ids n'est pas une liste")
    event = AuditEvent(
        action=action,
        outcome=outcome,
        actor_id_nat=actor_id_nat,
        actor_name=actor_name,
        actor_profession=actor_profession,
        auth_mode=auth_mode,
        card_serial=card_serial,
        structure_id=structure_id,
        patient_ins=patient_ins,
        transaction=transaction,
        document_ids=tuple(str(i) for i in ids),
        access_mode=access_mode,
        reason=reason,
        error_code=error_code,
        detail=detail,
        on_behalf_of=on_behalf_of,
        rule_id=rule_id,
    )
    return AuditRecord(int(seq), str(timestamp), event, str(prev_hash), str(digest), str(clock_note))


def record_to_dict(record: AuditRecord) -> dict[str, Any]:
    """Plain dict of a record (used by exports and the syslog message)."""
    data = asdict(record.event)
    data["document_ids"] = list(record.event.document_ids)
    return {
        "seq": record.seq,
        "timestamp": record.timestamp,
        "clock_note": record.clock_note,
        **data,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


__all__ = [
    "ACCESS_MODES",
    "GENESIS_HASH",
    "OUTCOMES",
    "AuditEvent",
    "AuditJournal",
    "AuditRecord",
    "Forwarder",
    "VerifyResult",
    "canonical_bytes",
    "format_timestamp",
    "record_hash",
    "record_to_dict",
    "sanitize_event",
]
