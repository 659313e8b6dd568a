"""Append-only, hash-chained audit journal in SQLite (issue 5 item 4, issue 8 item 4, access-rules TRC-04).

One record per action. Each record's ``hash`` is SHA-256 over a canonical JSON serialisation of
(format version, seq, timestamp, clock note, every event field, prev_hash); ``prev_hash`` is the
previous record's hash (64 zeros for the first). Three levels of guarantee, reported by ``verify``:

- **local**: the chain is intact, the anchor file ``<journal>.anchor`` (last seq + hash, fsync'd after
  each commit, only moving forward) matches, the SQLite triggers refusing UPDATE/DELETE are there *with
  their original definition*. Anyone with the user's file rights could still have rewritten all of it.
- **signed**: signed checkpoints (``ps_agent.audit.checkpoint``) of the chain head, made with the card's
  signature key while a card session is open or the establishment's key in AIR mode
  (``set_checkpoint_signer``), automatically every ``CHECKPOINT_EVERY`` records, when the signer is
  set or removed and at ``close``. They are stored in the journal (``audit_checkpoints``), the last one
  also in ``<journal>.checkpoint`` and on the collector. A rewritten, truncated, emptied or replaced
  journal no longer matches a checkpoint that still exists somewhere.
- **remote**: the collector (syslog over TLS, ``ps_agent.audit.syslog``; head service,
  ``ps_agent.audit.collector``) holds the same chain up to its last received record.

Durability: WAL mode with ``synchronous=FULL``; ``append`` returns only once the record is
committed and the anchor fsync'd, so the caller can show patient data afterwards. Threads of one process
share the commits (group commit: the records queued while one commit runs are written by the next in one
transaction, one WAL fsync and one anchor fsync; see ``append``). Concurrent writers (UI + CLI)
serialise on ``BEGIN IMMEDIATE``; the anchor is written under a portable file lock
(``ps_agent.audit._files``).

Time: UTC ISO-8601 with milliseconds (``2026-11-25T20:31:56.123Z``), read from the wall clock. A jump
of the wall clock (more than ``CLOCK_JUMP_TOLERANCE_S`` away from what the monotonic clock measured
since this process's previous record, or earlier than the last record) is written in the record's
``clock_note`` and the timestamps follow the wall clock again: a jump to 2030 and back leaves the
later records at their true time. ``verify`` accepts a timestamp earlier than the previous one only
when its record declares the jump.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from ps_agent.audit._files import InPlaceFile, restrict_dir, restrict_file, write_atomic
from ps_agent.audit.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    cert_fingerprint,
    chain_problem,
    make_checkpoint,
    signature_problem,
)
from ps_agent.audit.errors import AuditEventError, AuditIntegrityError, AuditWriteError
from ps_agent.audit.sanitize import MAX_DETAIL, MAX_REASON, MAX_SHORT, clean_ids, clean_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
OUTCOMES = ("success", "refused", "error", "pending")
ACCESS_MODES = ("normal", "bris_de_glace", "centre_15")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# [I] A signed checkpoint every 20 records. A CPS card signs in 0.2-0.5 s: one action in 20 pays that
# (automatic checkpoints are made right after the record is committed, never inside it). A GP journals
# some 20-100 actions a day, so at most 19 records - less than a morning's work - are protected only
# locally (and by the collector, when there is one) before the next checkpoint; closing the session or
# the journal signs the rest.
CHECKPOINT_EVERY = 20
# [I] A wall clock more than 2 s away from what the monotonic clock measured since the previous record
# of this process is a jump (NTP slews far less than that; a user or a bad RTC steps by more).
CLOCK_JUMP_TOLERANCE_S = 2.0

GUARANTEE_LOCAL = "local"
GUARANTEE_SIGNED = "signed"
GUARANTEE_REMOTE = "remote"


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
    clock_note: str = ""  # set when the wall clock jumped (forward or back)


@dataclass(frozen=True)
class RemoteHead:
    """What the collector holds for this workstation (``ps_agent.audit.collector.fetch_head``).

    ``seq``/``hash``: the last record of this journal the collector received with an unbroken chain from
    record 1 (0 / "" when none); ``checkpoint``: the last signed checkpoint it received for this journal;
    ``other_journals``: ids of other journals the collector holds for the same source (workstation);
    ``conflicts``: seqs for which it received two different hashes."""

    collector: str
    seq: int = 0
    hash: str = ""
    checkpoint: Checkpoint | None = None
    other_journals: tuple[tuple[str, int], ...] = ()
    conflicts: tuple[int, ...] = ()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    message_fr: str = ""
    problems: tuple[str, ...] = field(default=())
    guarantee: str = GUARANTEE_LOCAL  # local | signed | remote (meaningful when ok)
    guarantee_fr: str = ""
    signed_seq: int = 0  # last record covered by a valid signed checkpoint
    remote_seq: int = 0  # last record confirmed by the collector
    first_bad_checkpoint: int | None = None
    last_checkpoint: Checkpoint | None = None
    notes: tuple[str, ...] = field(default=())  # facts that do not fail verify (e.g. collector unreachable)


class Forwarder(Protocol):
    """Something told about each committed record (e.g. the syslog forwarder), in chain order, by the thread
    that committed it (the group's leader, ``AuditJournal.append``). Must never block nor append."""

    def attach(self, journal: AuditJournal) -> None: ...

    def notify(self, record: AuditRecord) -> None: ...


_EVENT_FIELDS = tuple(f.name for f in fields(AuditEvent))
_LIMITS = {"reason": MAX_REASON, "detail": MAX_DETAIL}
# the free-text fields ``sanitize_event`` cleans, with their length limit
_TEXT_FIELDS = tuple(
    (name, _LIMITS.get(name, MAX_SHORT))
    for name in _EVENT_FIELDS
    if name not in ("action", "outcome", "access_mode", "document_ids")
)

_RAISE = "BEGIN SELECT RAISE(ABORT, 'audit journal is append-only'); END"
# The triggers, by definition: ``verify`` compares sqlite_master's text with these (whitespace aside).
TRIGGERS = {
    "audit_no_update": f"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_records {_RAISE}",
    "audit_no_delete": f"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_records {_RAISE}",
    "audit_checkpoints_no_update": (
        f"CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints {_RAISE}"
    ),
    "audit_checkpoints_no_delete": (
        f"CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints {_RAISE}"
    ),
}
_RECORDS_SCHEMA = [
    """CREATE TABLE audit_records (
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
)""",
    "CREATE INDEX audit_by_patient ON audit_records(patient_ins)",
    "CREATE INDEX audit_by_time ON audit_records(timestamp)",
    "CREATE INDEX audit_by_action ON audit_records(action)",
    TRIGGERS["audit_no_update"],
    TRIGGERS["audit_no_delete"],
    "CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE audit_forward_state (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)",
]
_CHECKPOINTS_SCHEMA = [
    """CREATE TABLE audit_checkpoints (
    id INTEGER PRIMARY KEY,
    number INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    head TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    data TEXT NOT NULL
)""",
    TRIGGERS["audit_checkpoints_no_update"],
    TRIGGERS["audit_checkpoints_no_delete"],
]
_COLUMNS = (
    "seq, timestamp, clock_note, action, outcome, actor_id_nat, actor_name, actor_profession, auth_mode, "
    "card_serial, structure_id, patient_ins, transaction_code, document_ids, access_mode, reason, "
    "error_code, detail, on_behalf_of, rule_id, prev_hash, hash"
)


def _normalise_sql(sql: str) -> str:
    return " ".join(sql.replace(";", " ").split())


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
    """The exact bytes hashed for a record (sorted keys, no spaces, UTF-8): ``json.dumps`` of
    {"v", "seq", "timestamp", "clock_note", "prev_hash", "event": {every field}} with ``sort_keys=True``,
    ``separators=(",", ":")``, ``ensure_ascii=False``.

    Written here directly, key by key in sorted order, with json's own string encoder, when every value
    is a plain ``str`` (a tuple/list of them for ``document_ids``) and ``seq`` a plain ``int`` (what
    ``sanitize_event`` and the database give): the same bytes (tests/audit compare the two on odd
    texts) at a fraction of the cost. Anything else goes through ``json.dumps`` itself."""
    fast = _canonical_fast(seq, timestamp, clock_note, event, prev_hash)
    if fast is not None:
        return fast
    return _canonical_json(seq, timestamp, clock_note, event, prev_hash)


def _canonical_json(seq: int, timestamp: str, clock_note: str, event: AuditEvent, prev_hash: str) -> bytes:
    """The reference serialisation (``json.dumps``) of ``canonical_bytes``."""
    payload: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "seq": seq,
        "timestamp": timestamp,
        "clock_note": clock_note,
        "prev_hash": prev_hash,
        "event": {name: _jsonable(getattr(event, name)) for name in _EVENT_FIELDS},
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_ENCODE_STR: Callable[[str], str] = json.encoder.encode_basestring  # what ensure_ascii=False writes
_SORTED_EVENT_KEYS = tuple((name, json.dumps(name) + ":") for name in sorted(_EVENT_FIELDS))


def _canonical_fast(
    seq: int, timestamp: str, clock_note: str, event: AuditEvent, prev_hash: str
) -> bytes | None:
    if type(seq) is not int or not (type(timestamp) is type(clock_note) is type(prev_hash) is str):
        return None
    enc = _ENCODE_STR
    parts: list[str] = []
    for name, key in _SORTED_EVENT_KEYS:
        value = getattr(event, name)
        if type(value) is str:
            parts.append(key + enc(value))
        elif type(value) in (tuple, list) and all(type(i) is str for i in value):
            parts.append(key + "[" + ",".join(map(enc, value)) + "]")
        else:
            return None
    return (
        f'{{"clock_note":{enc(clock_note)},"event":{{{",".join(parts)}}},"prev_hash":{enc(prev_hash)},'
        f'"seq":{int.__repr__(seq)},"timestamp":{enc(timestamp)},"v":{FORMAT_VERSION}}}'
    ).encode()


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
    for name, limit in _TEXT_FIELDS:
        value = getattr(event, name)
        cleaned = clean_text("" if value is None else str(value), limit)
        if type(value) is not str or cleaned != value:
            changes[name] = cleaned
    ids = event.document_ids
    cleaned_ids = clean_ids(tuple(ids))
    if type(ids) is not tuple or cleaned_ids != ids or not all(type(i) is str for i in ids):
        changes["document_ids"] = cleaned_ids
    # the usual case (plain facts, nothing to clean): the event itself, no copy
    return replace(event, **changes) if changes else event


class _Ticket:
    """One caller's event waiting for the group commit (``AuditJournal.append``)."""

    __slots__ = ("done", "error", "event", "record")

    def __init__(self, event: AuditEvent) -> None:
        self.event = event
        self.done = False
        self.record: AuditRecord | None = None
        self.error: BaseException | None = None


def _ids_json(ids: tuple[str, ...]) -> str:
    """``json.dumps(list(ids), ensure_ascii=False)`` of the strings ``sanitize_event`` leaves."""
    return "[" + ", ".join(map(_ENCODE_STR, ids)) + "]"


def _row_values(
    seq: int, timestamp: str, clock_note: str, clean: AuditEvent, prev_hash: str, digest: str
) -> tuple[object, ...]:
    return (
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
        _ids_json(clean.document_ids),
        clean.access_mode,
        clean.reason,
        clean.error_code,
        clean.detail,
        clean.on_behalf_of,
        clean.rule_id,
        prev_hash,
        digest,
    )


class AuditJournal:
    """The journal file. Thread-safe; several processes may append to the same file."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        forwarder: Forwarder | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        """``clock`` is the wall clock (UTC); ``monotonic`` the clock jumps are measured against
        (default ``time.monotonic`` when ``clock`` is the real one; with an injected ``clock`` and no
        ``monotonic``, only a clock earlier than the last record is noted)."""
        self.path = Path(path)
        self.anchor_path = self.path.with_name(self.path.name + ".anchor")
        self.checkpoint_path = self.path.with_name(self.path.name + ".checkpoint")
        self._anchor_lock_path = self.anchor_path.with_name(self.anchor_path.name + ".lock")
        # the anchor and its lock file stay open between group commits (``_advance_anchor``)
        self._anchor = InPlaceFile(self.anchor_path, self._anchor_lock_path)
        self._anchor_seen: tuple[bytes, tuple[int, str, str] | None] = (b"", None)  # last bytes, parsed
        self._cp_copy_seen: tuple[str, Checkpoint | None] = ("", None)  # last checkpoint copy written
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monotonic = monotonic if monotonic is not None else (None if clock else time.monotonic)
        self._last_clock: tuple[datetime, float] | None = None
        self._lock = threading.RLock()
        self._cp_lock = threading.RLock()
        # group commit (``append``): events waiting to be written, and whether a thread is writing a group
        self._group = threading.Condition(threading.Lock())
        self._waiting: list[_Ticket] = []
        self._leading = False
        self._signer: CheckpointSigner | None = None
        self._signer_label = ""
        self.checkpoint_every = max(1, int(checkpoint_every))
        # the highest checkpoint seq this handle has seen (``_finish``); -inf-like until first asked
        self._cp_seq_known = -(2**62)
        self._closed = False
        self._foreign_anchor_logged = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            restrict_dir(self.path.parent)  # 0700 whoever created it (mkdir's mode obeys the umask)
            # Patient identifiers inside: owner-only whoever created the file.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            restrict_file(self.path)
            self._conn = self._connect()
            created = self._ensure_schema()
            for suffix in ("-wal", "-shm"):
                restrict_file(Path(str(self.path) + suffix))
            self.journal_id = self._meta("journal_id")
            if created and read_anchor(self.anchor_path) is None:
                # The anchor exists from the start (seq 0, fsync'd): an empty anchor left by a crash
                # right after creation reads as seq 0, never as tampering. An anchor left by a previous
                # journal at this path is kept: it is the evidence that the journal was replaced.
                self._advance_anchor(0, GENESIS_HASH, force=True)
        except (OSError, sqlite3.Error) as exc:
            self._anchor.close()
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

    def _table_exists(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
        ).fetchone()
        return row is not None

    def _ensure_schema(self) -> bool:
        """Create the schema (True when the journal is new). An older journal gains the checkpoint table
        and a journal id; missing triggers are never recreated silently (their absence is evidence)."""
        with self._lock:
            if self._table_exists("audit_records") and self._table_exists("audit_checkpoints"):
                if self._meta_or_none("journal_id"):
                    return False
            self._conn.execute("BEGIN IMMEDIATE")
            created = False
            try:
                if not self._table_exists("audit_records"):
                    for statement in _RECORDS_SCHEMA:
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO audit_meta(key, value) VALUES ('format', ?)", (str(FORMAT_VERSION),)
                    )
                    created = True
                if not self._table_exists("audit_checkpoints"):
                    for statement in _CHECKPOINTS_SCHEMA:
                        self._conn.execute(statement)
                self._conn.execute(
                    "INSERT OR IGNORE INTO audit_meta(key, value) VALUES ('journal_id', ?)",
                    (str(uuid.uuid4()),),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return created

    def _meta_or_none(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM audit_meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _meta(self, key: str) -> str:
        with self._lock:
            return self._meta_or_none(key) or ""

    def close(self) -> None:
        """Sign the records not yet covered (when a signer is set), stop the forwarder, close the DB.
        Idempotent."""
        if self._closed:
            return
        with self._cp_lock:
            if self._signer is not None:
                self._try_checkpoint(self._signer, self._signer_label or "fermeture du journal")
        self._closed = True
        if self.forwarder is not None:
            closer = getattr(self.forwarder, "close", None)
            if callable(closer):
                closer()
        with self._lock:
            self._conn.close()
        self._anchor.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> AuditJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------
    def _timestamp(self, last_ts: str | None) -> tuple[str, str]:
        """(timestamp, clock_note) from the wall clock, noting a jump (see the module docstring)."""
        wall_dt = self._clock()
        if wall_dt.tzinfo is None:
            wall_dt = wall_dt.replace(tzinfo=UTC)
        wall = format_timestamp(wall_dt)
        note = ""
        mono = self._monotonic() if self._monotonic is not None else None
        if mono is not None and self._last_clock is not None:
            ref_wall, ref_mono = self._last_clock
            expected = ref_wall + timedelta(seconds=mono - ref_mono)
            drift = (wall_dt - expected).total_seconds()
            if abs(drift) > CLOCK_JUMP_TOLERANCE_S:
                way = "avancée" if drift > 0 else "reculée"
                note = (
                    f"saut d'horloge : horloge système {way} de {abs(drift):.3f} s par rapport à l'horloge "
                    f"monotone (attendue {format_timestamp(expected)}, lue {wall})"
                )
        if not note and last_ts is not None and wall < last_ts:
            back_ms = int((_parse_timestamp(last_ts) - _parse_timestamp(wall)).total_seconds() * 1000)
            note = (
                f"saut d'horloge : horloge système antérieure de {back_ms} ms au dernier enregistrement "
                f"(lue {wall})"
            )
        if mono is not None:
            self._last_clock = (wall_dt, mono)
        return wall, note

    def append(self, event: AuditEvent) -> AuditRecord:
        """Record ``event`` durably; returns once committed and the anchor fsync'd (raise
        ``AuditWriteError`` otherwise).

        Group commit: appenders from several threads queue their event; one of them (the leader) writes
        every event queued at that moment in ONE transaction (one fsync of the WAL) and advances the
        anchor once (one fsync), then wakes the others. Each caller still returns only once its own
        record is durable, and a failure of that transaction or of the anchor is raised to every caller
        of the group. The chain's order is the commit order (seq, prev_hash and timestamp are set inside
        the transaction, as before)."""
        clean = sanitize_event(event)
        ticket = _Ticket(clean)
        with self._group:
            self._waiting.append(ticket)
            while not ticket.done and self._leading:
                self._group.wait()
            if ticket.done:
                return self._finish(ticket)
            self._leading = True
            batch, self._waiting = self._waiting, []
        try:
            self._commit_group(batch)
        finally:
            with self._group:
                self._leading = False
                self._group.notify_all()
        if ticket.error is not None and not isinstance(ticket.error, Exception):
            raise ticket.error  # KeyboardInterrupt & co. in the leader: the others get an AuditWriteError
        return self._finish(ticket)

    def _finish(self, ticket: _Ticket) -> AuditRecord:
        error = ticket.error
        if error is not None:
            if isinstance(error, AuditWriteError):  # each caller gets its own exception (own traceback)
                raise AuditWriteError(error.message_fr, code=error.code) from error.__cause__
            raise AuditWriteError(
                f"Le journal d'audit n'a pas pu être écrit ({error}) : l'action est annulée.",
                code="AUDIT_WRITE",
            ) from error
        record = ticket.record
        if record is None:  # pragma: no cover - done without error means committed
            raise AuditWriteError("Le journal d'audit n'a pas pu être écrit.", code="AUDIT_WRITE")
        signer = self._signer
        # a checkpoint is due when CHECKPOINT_EVERY records follow the last one: asked of the database only
        # when the last one this handle knows of says so (another process may have signed one since)
        if (
            signer is not None
            and record.seq - self._cp_seq_known >= self.checkpoint_every
            and record.seq - self._last_checkpoint_seq() >= self.checkpoint_every
        ):
            with self._cp_lock:
                self._try_checkpoint(signer, self._signer_label)
        return record

    def _commit_group(self, batch: list[_Ticket]) -> None:
        """Write ``batch`` (in order) in one transaction, then the anchor; set each ticket's outcome."""
        if not batch:  # a leader interrupted before marking its group done: its callers raise in _finish
            return
        records: list[AuditRecord] = []
        error: BaseException | None = None
        try:
            with self._lock:
                if self._closed:
                    raise AuditWriteError(
                        "Le journal d'audit est fermé : l'action est annulée.", code="AUDIT_CLOSED"
                    )
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        last = self._conn.execute(
                            "SELECT seq, timestamp, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
                        ).fetchone()
                        seq = last[0] if last else 0
                        prev_hash = last[2] if last else GENESIS_HASH
                        last_ts: str | None = last[1] if last else None
                        rows = []
                        for ticket in batch:
                            seq += 1
                            clean = ticket.event
                            timestamp, clock_note = self._timestamp(last_ts)
                            digest = record_hash(seq, timestamp, clock_note, clean, prev_hash)
                            rows.append(_row_values(seq, timestamp, clock_note, clean, prev_hash, digest))
                            records.append(AuditRecord(seq, timestamp, clean, prev_hash, digest, clock_note))
                            prev_hash, last_ts = digest, timestamp
                        self._conn.executemany(
                            f"INSERT INTO audit_records ({_COLUMNS}) VALUES ({', '.join('?' * 22)})",  # noqa: S608
                            rows,
                        )
                        self._conn.execute("COMMIT")
                    except BaseException:
                        records.clear()
                        with contextlib.suppress(sqlite3.Error):
                            self._conn.execute("ROLLBACK")
                        raise
                except sqlite3.Error as exc:
                    raise AuditWriteError(
                        f"Le journal d'audit n'a pas pu être écrit ({exc}) : l'action est annulée.",
                        code="AUDIT_WRITE",
                    ) from exc
            # outside the connection's lock (readers need not wait for this fsync), still before any
            # later group (only the leader writes) and before any caller of this group returns
            self._advance_anchor(records[-1].seq, records[-1].hash)
        except BaseException as exc:
            error = exc
        for record in records:  # committed: forwarded in chain order, even when the anchor failed
            self._notify(record)
        with self._group:
            for i, ticket in enumerate(batch):
                ticket.error = error
                ticket.record = records[i] if records else None
                ticket.done = True

    def _notify(self, item: AuditRecord | Checkpoint) -> None:
        if self.forwarder is None:
            return
        try:
            if isinstance(item, Checkpoint):
                hook = getattr(self.forwarder, "notify_checkpoint", None)
                if callable(hook):
                    hook(item)
            else:
                self.forwarder.notify(item)
        except Exception:  # forwarding must never block the journal
            log.warning("audit forwarder notification failed", exc_info=True)

    def _advance_anchor(self, seq: int, digest: str, *, force: bool = False) -> None:
        """Write ``<journal>.anchor`` = last seq + hash; only moves forward (file lock across processes).

        One fixed-size record (``ANCHOR_SIZE`` bytes, JSON padded with spaces, within one disk sector) is
        overwritten in place and fdatasync'd (``InPlaceFile.write``, on descriptors kept open): after a
        power loss it holds the last record or, when the crash fell between the commit and the anchor
        write, the one before (``verify`` accepts an anchor that lags, never one that leads). The anchor is
        read again under the lock each time (another process may have advanced it); parsed only when its
        bytes differ from the last ones seen.
        """
        try:
            with self._anchor.locked():
                raw = self._anchor.read()
                seen_raw, seen = self._anchor_seen
                current = seen if raw is not None and raw == seen_raw else parse_anchor(raw)
                if current is not None and current[2] and current[2] != self.journal_id:
                    # Another journal's anchor: kept as evidence (verify reports the replacement).
                    if not self._foreign_anchor_logged:
                        log.warning("audit anchor belongs to journal %s: not overwritten", current[2])
                        self._foreign_anchor_logged = True
                    return
                if not force and current is not None and current[0] >= seq:
                    self._anchor_seen = (raw or b"", current)
                    return
                record = {"seq": seq, "hash": digest, "journal": self.journal_id}
                data = json.dumps(record).encode("ascii").ljust(ANCHOR_SIZE)
                self._anchor_seen = (b"", None)  # unknown until the write succeeded
                self._anchor.write(data)
                self._anchor_seen = (data, (seq, digest, self.journal_id))
        except OSError as exc:
            raise AuditWriteError(
                f"L'ancre du journal d'audit n'a pas pu être écrite ({exc}).", code="AUDIT_ANCHOR"
            ) from exc

    def _read_anchor_locked(self) -> tuple[int, str, str] | None:
        """The anchor, read under the lock (never a record being written)."""
        try:
            with self._anchor.locked():
                return parse_anchor(self._anchor.read())
        except OSError:
            return read_anchor(self.anchor_path)

    # -- signed checkpoints -------------------------------------------------------------------
    def set_checkpoint_signer(self, signer: CheckpointSigner | None, label: str = "") -> None:
        """Sign checkpoints with ``signer`` from now on (None: stop). ``label`` says whose key it is
        (e.g. "carte CPS", "établissement"). Setting a signer signs the records written before it (if any);
        removing or replacing it first signs the records its session wrote - so call it *before* the
        session closes (a closed card can no longer sign: the final checkpoint is then skipped and
        logged). Never raises for a signing failure."""
        with self._cp_lock:
            old, old_label = self._signer, self._signer_label
            if old is not None and old is not signer and not self._closed:
                self._try_checkpoint(old, old_label)
            self._signer, self._signer_label = signer, label
            if signer is not None and not self._closed:
                self._try_checkpoint(signer, label)

    @property
    def checkpoint_signer(self) -> CheckpointSigner | None:
        return self._signer

    def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint of the current head now with the signer set (None without a signer or an
        empty journal; the last checkpoint when it already covers the head). The signer's own typed
        error propagates (card removed, session closed)."""
        with self._cp_lock:
            if self._signer is None:
                return None
            return self._make_checkpoint(self._signer, self._signer_label)

    def _try_checkpoint(self, signer: CheckpointSigner, label: str) -> Checkpoint | None:
        try:
            return self._make_checkpoint(signer, label)
        except Exception as exc:  # a checkpoint never breaks the action that triggered it
            log.warning("audit checkpoint not signed: %s", exc)
            return None

    def _last_checkpoint_seq(self) -> int:
        with self._lock:
            if self._closed:
                return 0
            # the newest row (rowid order: no scan of a table that grows with the journal); ``_finish`` counts
            # from the highest one this handle has seen (a checkpoint another process signed late with a
            # lower head does not bring the next one forward)
            row = self._conn.execute("SELECT seq FROM audit_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        seq = int(row[0]) if row else 0
        self._cp_seq_known = max(self._cp_seq_known, seq)
        return seq

    def _make_checkpoint(self, signer: CheckpointSigner, label: str) -> Checkpoint | None:
        with self._lock:
            head = self._conn.execute(
                "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if head is None:
                return None
            last = self._conn.execute(
                "SELECT number, seq, data FROM audit_checkpoints ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if last is not None and int(last[1]) >= int(head[0]):
                self._cp_seq_known = max(self._cp_seq_known, int(last[1]))
                return Checkpoint.from_json(last[2])
            number = int(last[0]) + 1 if last else 1
            timestamp = format_timestamp(self._clock())
        # Signing may take a while (a card): outside the journal lock, appends go on meanwhile.
        cp = make_checkpoint(
            signer,
            journal_id=self.journal_id,
            number=number,
            seq=int(head[0]),
            head=str(head[1]),
            timestamp=timestamp,
            label=label,
        )
        problem = signature_problem(cp)
        if problem:
            raise AuditWriteError(f"Point de contrôle non signé : {problem}.", code="AUDIT_CHECKPOINT")
        with self._lock:
            data = cp.to_json()  # once: the row and the copy file hold the same text
            try:
                self._conn.execute(
                    "INSERT INTO audit_checkpoints(number, seq, head, timestamp, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (cp.number, cp.seq, cp.head, cp.timestamp, data),
                )
            except sqlite3.Error as exc:
                raise AuditWriteError(
                    f"Le point de contrôle du journal d'audit n'a pas pu être écrit ({exc}).",
                    code="AUDIT_CHECKPOINT",
                ) from exc
        self._cp_seq_known = max(self._cp_seq_known, cp.seq)
        self._write_checkpoint_copy(cp, data)
        self._notify(cp)
        return cp

    def _write_checkpoint_copy(self, cp: Checkpoint, data: str) -> None:
        """``<journal>.checkpoint``: the last signed checkpoint, outside the database (moves forward).
        ``data``: ``cp.to_json()``. The copy is read again under the lock each time (another process may
        have written one); parsed only when its text differs from the one this handle wrote last."""
        try:
            with self._anchor.locked():
                seen_text, seen = self._cp_copy_seen
                current = read_checkpoint_file(self.checkpoint_path, seen_text, seen)
                if isinstance(current, Checkpoint) and current.journal_id != cp.journal_id:
                    log.warning("audit checkpoint copy belongs to journal %s: kept", current.journal_id)
                    return  # evidence that the journal was replaced
                if isinstance(current, Checkpoint) and current.seq > cp.seq:
                    return
                self._cp_copy_seen = ("", None)  # unknown until the write succeeded
                write_atomic(self.checkpoint_path, data.encode("utf-8"))
                self._cp_copy_seen = (data, cp)
        except OSError as exc:
            log.warning("audit checkpoint copy not written: %s", exc)

    def last_checkpoint_id(self) -> int:
        """Row id of the last stored checkpoint (0 when none): the forwarder's progress marker."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(id) FROM audit_checkpoints").fetchone()
        return int(row[0] or 0)

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints stored in the journal, oldest first (unverified; see ``verify``)."""
        with self._lock:
            rows = self._conn.execute("SELECT data FROM audit_checkpoints ORDER BY id").fetchall()
        return [Checkpoint.from_json(r[0]) for r in rows]

    def iter_checkpoint_rows(self, after_id: int, conn: sqlite3.Connection) -> list[tuple[int, Checkpoint]]:
        """(row id, checkpoint) after ``after_id`` (for the forwarder's own connection)."""
        out: list[tuple[int, Checkpoint]] = []
        for row_id, data in conn.execute(
            "SELECT id, data FROM audit_checkpoints WHERE id > ? ORDER BY id", (after_id,)
        ):
            with contextlib.suppress(ValueError):
                out.append((int(row_id), Checkpoint.from_json(data)))
        return out

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

    def details(self, *, ins: str, oid: str, action: str, outcome: str) -> list[str]:
        """The ``detail`` of the records of one patient (``ins^oid`` as the agent writes it, or the bare
        matricule), ``action`` and ``outcome`` exactly, found through the patient index: a lookup whose cost
        is one patient's records, not the journal's (``iter_records``' LIKE on the patient, OR'd, makes
        SQLite walk every record of the action)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT detail FROM audit_records "
                "WHERE patient_ins IN (?, ?) AND +action = ? AND outcome = ?",
                (f"{ins}^{oid}", ins, action, outcome),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def last_seq(self) -> int:
        """``seq`` of the last record (0 when empty)."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(seq) FROM audit_records").fetchone()
        return int(row[0] or 0)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM audit_records").fetchone()[0])

    # -- verification -------------------------------------------------------------------------
    def verify(
        self, *, signer_ca: str | os.PathLike[str] | None = None, remote: RemoteHead | None = None
    ) -> VerifyResult:
        """Walk the whole chain, the triggers, the anchor, the signed checkpoints (in the journal, in
        ``<journal>.checkpoint`` and, with ``remote``, on the collector) and what the collector holds.
        ``signer_ca``: PEM bundle the checkpoint signers' certificates must chain to (at signing time).

        Reads the anchor, the checkpoint copy (and the caller fetched ``remote``) first, then walks a
        consistent snapshot: what was written meanwhile can only be newer, so an honest journal always
        extends them. The first problem is reported in French, naming the record or the checkpoint.
        """
        anchor = self._read_anchor_locked()
        file_cp = read_checkpoint_file(self.checkpoint_path)
        bundle = _load_bundle(signer_ca) if signer_ca else None
        problems: list[str] = []
        first_bad: int | None = None
        expected_seq = 1
        prev_hash = GENESIS_HASH
        prev_ts = ""
        count = 0
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise AuditWriteError(
                f"Impossible de lire le journal d'audit : {exc}", code="AUDIT_OPEN"
            ) from exc
        try:
            conn.execute("BEGIN")
            meta = conn.execute("SELECT value FROM audit_meta WHERE key = 'journal_id'").fetchone()
            journal_id = str(meta[0]) if meta else ""
            try:
                cp_rows = conn.execute("SELECT id, data FROM audit_checkpoints ORDER BY id").fetchall()
            except sqlite3.Error:
                cp_rows = []
            db_cps: list[Checkpoint] = []
            for row_id, data in cp_rows:
                try:
                    db_cps.append(Checkpoint.from_json(data))
                except ValueError:
                    problems.append(
                        f"Point de contrôle (ligne {row_id}) illisible : la table a été modifiée."
                    )
            extra_cps = [c for c in (file_cp if isinstance(file_cp, Checkpoint) else None,) if c is not None]
            if remote is not None and remote.checkpoint is not None:
                extra_cps.append(remote.checkpoint)
            wanted = {c.seq for c in db_cps + extra_cps}
            if anchor is not None:
                wanted.add(anchor[0])
            if remote is not None and remote.seq:
                wanted.add(remote.seq)
            heads: dict[int, str] = {}
            cursor = conn.execute(f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq")  # noqa: S608
            for row in cursor:
                count += 1
                try:
                    rec = _row_to_record(row)
                except (ValueError, TypeError) as exc:
                    first_bad = row[0]
                    problems.insert(0, f"Enregistrement n° {row[0]} illisible ({exc}).")
                    break
                problem = self._check_one(rec, expected_seq, prev_hash, prev_ts)
                if problem:
                    first_bad = expected_seq if problem.startswith("manquant:") else rec.seq
                    problems.insert(0, problem.removeprefix("manquant:"))
                    break
                if rec.seq in wanted:
                    heads[rec.seq] = rec.hash
                expected_seq = rec.seq + 1
                prev_hash = rec.hash
                prev_ts = rec.timestamp
            triggers = {
                str(name): str(sql or "")
                for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger'")
            }
            conn.execute("COMMIT")
        finally:
            conn.close()
        last_seq = expected_seq - 1
        if first_bad is None:
            problems += _trigger_problems(triggers)
        # Signed checkpoints: in the journal, the copy outside it, the collector's.
        bad_cp: int | None = None
        valid: list[Checkpoint] = []
        payloads = {c.payload for c in db_cps}
        sources: list[tuple[Checkpoint, str]] = [(c, "dans le journal") for c in db_cps]
        if isinstance(file_cp, Checkpoint):
            sources.append((file_cp, f"copie {self.checkpoint_path.name}"))
        elif isinstance(file_cp, str):
            problems.append(
                f"La copie du dernier point de contrôle ({self.checkpoint_path.name}) est illisible "
                f"({file_cp})."
            )
        if remote is not None and remote.checkpoint is not None:
            sources.append((remote.checkpoint, f"détenu par le collecteur {remote.collector}"))
        trusted = _trusted_signers([c for c, _ in sources], bundle) if bundle is not None else None
        if first_bad is None:
            for cp, where in sources:
                problem, seq_bad = _checkpoint_problem(
                    cp, where, journal_id, last_seq, heads, bundle, trusted
                )
                if not problem and where != "dans le journal" and cp.payload not in payloads:
                    problem = (
                        f"Le point de contrôle n° {cp.number} ({where}), signé par {cp.signer_name} le "
                        f"{_fr_date(cp.timestamp)}, manque dans le journal : des points de contrôle ont été "
                        "supprimés de la base."
                    )
                if problem:
                    problems.append(problem)
                    if bad_cp is None:
                        bad_cp = cp.number
                        if seq_bad is not None:
                            first_bad = seq_bad
                else:
                    valid.append(cp)
            if bad_cp is not None and first_bad is None:
                # Which records changed: after the last checkpoint that still matches.
                upto = _cp_seq(sources, bad_cp)
                good = max((c.seq for c in valid if c.seq < upto), default=0)
                problems.append(f"Les enregistrements modifiés sont entre le n° {good + 1} et le n° {upto}.")
        if first_bad is None and not problems:
            anchor_problem, anchor_bad = self._check_anchor(
                anchor, count, last_seq, heads.get(anchor[0]) if anchor else None, journal_id
            )
            if anchor_problem:
                problems.append(anchor_problem)
                first_bad = anchor_bad
        remote_seq = 0
        if remote is not None and first_bad is None:
            remote_problem, remote_bad = _remote_problem(remote, last_seq, heads, count)
            if remote_problem:
                problems.append(remote_problem)
                first_bad = remote_bad
            else:
                remote_seq = remote.seq
        notes: list[str] = []
        if remote is not None and not remote_seq and not problems:
            notes.append(
                f"Le collecteur {remote.collector} ne détient encore aucun enregistrement de ce journal."
            )
        if problems:
            return VerifyResult(
                False, count, first_bad, problems[0], tuple(problems), first_bad_checkpoint=bad_cp
            )
        best = max(valid, key=lambda c: (c.seq, c.timestamp), default=None)
        guarantee, text = _guarantee(count, last_seq, best, remote, remote_seq)
        return VerifyResult(
            True,
            count,
            None,
            f"Journal d'audit intègre : {count} enregistrement(s) vérifié(s).",
            guarantee=guarantee,
            guarantee_fr=text,
            signed_seq=best.seq if best else 0,
            remote_seq=remote_seq,
            last_checkpoint=best,
            notes=tuple(notes),
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
        if rec.timestamp < prev_ts and not rec.clock_note:
            return (
                f"Enregistrement n° {rec.seq} : horodatage antérieur au précédent "
                f"({rec.timestamp} < {prev_ts}) sans saut d'horloge déclaré : enregistrements réordonnés."
            )
        expected = record_hash(rec.seq, rec.timestamp, rec.clock_note, rec.event, rec.prev_hash)
        if expected != rec.hash:
            return f"Enregistrement n° {rec.seq} : contenu modifié (l'empreinte SHA-256 ne correspond plus)."
        return ""

    def _check_anchor(
        self,
        anchor: tuple[int, str, str] | None,
        count: int,
        last_seq: int,
        hash_at_anchor: str | None,
        journal_id: str,
    ) -> tuple[str, int | None]:
        if anchor is not None and anchor[2] and anchor[2] != journal_id:
            return (
                f"L'ancre du journal ({self.anchor_path.name}) appartient à un autre journal (identifiant "
                f"{anchor[2]}, {anchor[0]} enregistrement(s)) : le journal local (identifiant "
                f"{journal_id or 'absent'}) a été remplacé.",
                1 if anchor[0] else None,
            )
        if anchor is None or anchor[0] == 0:
            # Written (seq 0) at creation and fsync'd after every commit: a crash can leave it empty or
            # at 0 only while the journal holds at most one record.
            if count <= 1:
                return "", None
            if anchor is None:
                return (
                    f"L'ancre du journal ({self.anchor_path.name}) est absente ou illisible : "
                    "impossible de vérifier que les derniers enregistrements n'ont pas été supprimés.",
                    None,
                )
            return (
                f"L'ancre du journal ({self.anchor_path.name}) a été remise à zéro alors que le journal "
                f"compte {count} enregistrements : journal remplacé ou ancre réécrite.",
                None,
            )
        a_seq, a_hash, _ = anchor
        if a_seq > last_seq:
            return (
                f"Enregistrement n° {last_seq + 1} manquant (supprimé) : l'ancre du journal indique "
                f"{a_seq} enregistrement(s), le fichier s'arrête au n° {last_seq}.",
                last_seq + 1,
            )
        # The anchor may lag (written after each commit; appends since it was read): it must match the
        # record it names.
        if hash_at_anchor != a_hash:
            return (
                f"Enregistrement n° {a_seq} : ne correspond pas à l'ancre du journal "
                "(journal réécrit ou remplacé).",
                a_seq,
            )
        return "", None

    def check(self, **kwargs: Any) -> VerifyResult:
        """``verify`` that raises ``AuditIntegrityError`` when the journal is not intact."""
        result = self.verify(**kwargs)
        if not result.ok:
            raise AuditIntegrityError(result.message_fr, first_bad_seq=result.first_bad_seq)
        return result

    # -- exports ------------------------------------------------------------------------------
    def export_fhir(self, out: IO[str], **filters: Any) -> int:
        """FHIR Bundle of the records ``iter_records(**filters)`` reads; ``where=`` (a record predicate, e.g.
        ``RecordFilter.matches``) keeps only those it accepts."""
        from ps_agent.audit.export import write_fhir_bundle

        where = filters.pop("where", None)
        return write_fhir_bundle(self.iter_records(**filters), out, where=where)

    def export_csv(self, out: IO[str], **filters: Any) -> int:
        """CSV of the records ``iter_records(**filters)`` reads; ``where=`` (a record predicate, e.g.
        ``RecordFilter.matches``) keeps only those it accepts."""
        from ps_agent.audit.export import write_csv

        where = filters.pop("where", None)
        return write_csv(self.iter_records(**filters), out, where=where)


def _cp_seq(sources: list[tuple[Checkpoint, str]], number: int) -> int:
    return next((c.seq for c, _ in sources if c.number == number), 0)


def _fr_date(timestamp: str) -> str:
    try:
        moment = _parse_timestamp(timestamp)
    except ValueError:
        return timestamp
    return moment.strftime("%d/%m/%Y à %H:%M UTC")


def _load_bundle(path: str | os.PathLike[str]) -> list[Any]:
    from cryptography import x509

    try:
        return list(x509.load_pem_x509_certificates(Path(path).read_bytes()))
    except (OSError, ValueError) as exc:
        raise AuditWriteError(
            f"Le fichier des autorités de certification des signataires est illisible : {path}",
            code="AUDIT_SIGNER_CA",
        ) from exc


def _trigger_problems(defined: dict[str, str]) -> list[str]:
    """The append-only triggers must exist *with their original definition*; no other trigger."""
    missing = [t for t in TRIGGERS if t not in defined]
    altered = [
        t for t in TRIGGERS if t in defined and _normalise_sql(defined[t]) != _normalise_sql(TRIGGERS[t])
    ]
    extra = sorted(t for t in defined if t not in TRIGGERS)
    out: list[str] = []
    if missing:
        out.append(
            "Les protections du journal (déclencheurs "
            + ", ".join(missing)
            + ") ont été supprimées : le fichier a été modifié en dehors de l'agent."
        )
    if altered:
        out.append(
            "Les protections du journal (déclencheurs "
            + ", ".join(altered)
            + ") ont été remplacées par des déclencheurs qui ne protègent plus : le fichier a été modifié "
            "en dehors de l'agent."
        )
    if extra:
        out.append(
            "Déclencheurs inconnus dans le journal (" + ", ".join(extra) + ") : le fichier a été modifié "
            "en dehors de l'agent."
        )
    return out


def _signer_key(cp: Checkpoint) -> str:
    return cert_fingerprint(cp.certificate) + "".join(cert_fingerprint(c) for c in cp.chain)


def _trusted_signers(checkpoints: list[Checkpoint], bundle: list[Any]) -> set[str]:
    """Signers whose chain validates at the earliest and the latest of their checkpoints' times: every
    certificate's validity is an interval, so it validates at every time in between (one path
    validation per signer instead of one per checkpoint)."""
    groups: dict[str, list[Checkpoint]] = {}
    for cp in checkpoints:
        groups.setdefault(_signer_key(cp), []).append(cp)
    out: set[str] = set()
    for key, cps in groups.items():
        first = min(cps, key=lambda c: c.timestamp)
        last = max(cps, key=lambda c: c.timestamp)
        if not chain_problem(first, bundle) and (last is first or not chain_problem(last, bundle)):
            out.add(key)
    return out


def _checkpoint_problem(
    cp: Checkpoint,
    where: str,
    journal_id: str,
    last_seq: int,
    heads: dict[int, str],
    bundle: list[Any] | None,
    trusted: set[str] | None = None,
) -> tuple[str, int | None]:
    who = (
        f"Le point de contrôle n° {cp.number} ({where}), signé par {cp.signer_name} "
        f"le {_fr_date(cp.timestamp)},"
    )
    sig = signature_problem(cp)
    if sig:
        return f"Le point de contrôle n° {cp.number} ({where}) n'est pas valide : {sig}.", None
    if bundle is not None and (trusted is None or _signer_key(cp) not in trusted):
        chain = chain_problem(cp, bundle)
        if chain:
            return f"{who} n'est pas reconnu : {chain}.", None
    if cp.journal_id != journal_id:
        return (
            f"{who} appartient à un autre journal (identifiant {cp.journal_id}) : le journal local "
            f"(identifiant {journal_id or 'absent'}) a été remplacé.",
            None,
        )
    if cp.seq > last_seq:
        return (
            f"Enregistrement n° {last_seq + 1} manquant (supprimé) : {who[0].lower()}{who[1:]} couvre les "
            f"enregistrements n° 1 à {cp.seq}, le journal s'arrête au n° {last_seq}.",
            last_seq + 1,
        )
    if heads.get(cp.seq) != cp.head:
        return (
            f"{who} ne correspond plus à l'enregistrement n° {cp.seq} : le journal a été réécrit jusqu'au "
            f"n° {cp.seq} au plus.",
            None,
        )
    return "", None


def _remote_problem(
    remote: RemoteHead, last_seq: int, heads: dict[int, str], count: int
) -> tuple[str, int | None]:
    if remote.conflicts:
        return (
            f"Le collecteur {remote.collector} a reçu deux versions différentes de l'enregistrement "
            f"n° {remote.conflicts[0]} : le journal a été réécrit après envoi.",
            remote.conflicts[0],
        )
    if remote.seq > last_seq:
        return (
            f"Enregistrement n° {last_seq + 1} manquant (supprimé) : le collecteur {remote.collector} "
            f"détient les enregistrements n° 1 à {remote.seq}, le journal local s'arrête au n° {last_seq}.",
            last_seq + 1,
        )
    if remote.seq and heads.get(remote.seq) != remote.hash:
        return (
            f"Enregistrement n° {remote.seq} : ne correspond pas à celui que détient le collecteur "
            f"{remote.collector} : le journal a été réécrit jusqu'au n° {remote.seq} au plus.",
            remote.seq,
        )
    if not remote.seq and remote.other_journals:
        other, n = remote.other_journals[0]
        return (
            f"Le collecteur {remote.collector} détient pour ce poste un autre journal (identifiant {other}, "
            f"{n} enregistrement(s)) et rien du journal local ({count} enregistrement(s)) : le journal a été "
            "remplacé.",
            1 if n else None,
        )
    return "", None


def _guarantee(
    count: int, last_seq: int, best: Checkpoint | None, remote: RemoteHead | None, remote_seq: int
) -> tuple[str, str]:
    tail_from = max(remote_seq, best.seq if best else 0)
    tail = (
        f" Les enregistrements n° {tail_from + 1} à {last_seq} ne sont protégés que localement."
        if last_seq > tail_from
        else ""
    )
    signed = (
        f" Les enregistrements n° 1 à {best.seq} sont couverts par le point de contrôle n° {best.number} "
        f"signé par {best.signer_name} le {_fr_date(best.timestamp)}."
        if best
        else ""
    )
    if remote is not None and remote_seq:
        return GUARANTEE_REMOTE, (
            f"Garantie : confirmée à distance. Le collecteur {remote.collector} détient la même chaîne "
            f"jusqu'au n° {remote_seq}.{signed}{tail}"
        )
    if best is not None:
        return GUARANTEE_SIGNED, f"Garantie : signée.{signed}{tail}"
    return GUARANTEE_LOCAL, (
        f"Garantie : locale seulement. La chaîne de {count} enregistrement(s) est intacte, mais toute "
        "personne ayant accès aux fichiers de ce poste aurait pu la réécrire entièrement (aucun point de "
        "contrôle signé, aucun collecteur ne la confirme)."
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


ANCHOR_SIZE = 256  # bytes of the anchor record (JSON padded with spaces; within one 512-byte sector)


def read_anchor(path: Path) -> tuple[int, str, str] | None:
    """(seq, hash, journal id) of the anchor ("" id for an anchor written before ids existed); None when
    missing, empty (a crash right after creation) or unreadable."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return parse_anchor(raw)


def parse_anchor(raw: bytes | None) -> tuple[int, str, str] | None:
    """``read_anchor`` of the file's bytes (None: missing)."""
    if raw is None:
        return None
    try:
        text = raw.strip(b" \x00\r\n\t")
        if not text:
            return None
        data = json.loads(text)
        return int(data["seq"]), str(data["hash"]), str(data.get("journal") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_checkpoint_file(
    path: Path, known_text: str = "", known: Checkpoint | None = None
) -> Checkpoint | str | None:
    """The checkpoint copy: None when absent, a problem text when unreadable. ``known`` is returned as
    it is when the file holds exactly ``known_text`` (its ``to_json()``: the caller wrote it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return str(exc)
    if known is not None and text == known_text:
        return known
    if not text.strip():
        return None  # a crash before the first checkpoint was fully written (atomic replace: unlikely)
    try:
        return Checkpoint.from_json(text)
    except ValueError as exc:
        return str(exc)


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
    "CHECKPOINT_EVERY",
    "CLOCK_JUMP_TOLERANCE_S",
    "GENESIS_HASH",
    "GUARANTEE_LOCAL",
    "GUARANTEE_REMOTE",
    "GUARANTEE_SIGNED",
    "OUTCOMES",
    "TRIGGERS",
    "AuditEvent",
    "AuditJournal",
    "AuditRecord",
    "Checkpoint",
    "Forwarder",
    "RemoteHead",
    "VerifyResult",
    "canonical_bytes",
    "format_timestamp",
    "read_anchor",
    "read_checkpoint_file",
    "record_hash",
    "record_to_dict",
    "sanitize_event",
]
