"""``Services``: what lives as long as the agent (configuration, audit journal, deposit queue, access
policy, events, frame log), apart from the per-credential ``Session``s opened over them.

::

    services = Services(AgentConfig.default("sandbox", ca_file=...))
    session = services.open_card_session(reader, pin)   # card refusals (PIN, blocked, expired...) journaled
    patient = session.patient(PatientRef(ins, oid))
    patient.list_documents(ctx=Context(cancel=token, progress=cb)).value
    services.close()                                     # closes the sessions, the queue and the journal

Audit records that cannot be written because the disk is full are kept (in memory, and for deposits
also as a flag on the queue entry) and written as soon as the journal accepts records again: before the
next record, and on ``Session.resume``.
"""

from __future__ import annotations

import logging
import random as random_mod
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ps_agent.access.policy import AccessPolicy
from ps_agent.audit.errors import AuditError
from ps_agent.audit.framelog import FrameLog
from ps_agent.audit.journal import AuditEvent, AuditJournal, AuditRecord
from ps_agent.auth.model import Credentials
from ps_agent.config import AgentConfig, ensure_private_dir, make_private_file
from ps_agent.errors import PsAgentError
from ps_agent.events import JOURNAL_APPENDED, QUEUE_CHANGED, Events
from ps_agent.fileio import write_file
from ps_agent.outbox import DepositQueue, QueuedDeposit

if TYPE_CHECKING:  # the window's start-up imports neither httpx nor the DMP client (first session only)
    import httpx

    from ps_agent.session import Session

log = logging.getLogger(__name__)
T = TypeVar("T")

# [I] At most this many audit records are kept in memory while the journal cannot be written.
MAX_BACKLOG = 10_000


class Services:
    """The long-lived half of the agent. Thread-safe. ``close()`` closes everything it opened."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        policy: AccessPolicy | None = None,
        journal: AuditJournal | None = None,
        events: Events | None = None,
        clock: Callable[[], datetime] | None = None,
        queue_clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random_mod.random,
        lease_s: float | None = None,
    ) -> None:
        self.config = config
        self.events = events or Events()
        self.policy = policy or AccessPolicy()
        self.clock = queue_clock
        self.random = random
        ensure_private_dir(config.home)
        self.journal = journal or AuditJournal(config.audit_path, clock=clock)
        self.frames = FrameLog(config.home / "frames.jsonl", enabled=config.frame_log)
        self.queue = DepositQueue(
            config.outbox_path,
            clock=queue_clock,
            lease_s=max(lease_s or config.queue_lease_s, config.environment.timeout_s + 5.0),
            on_change=lambda e: self.events.emit(QUEUE_CHANGED, e),
        )
        self._backlog: list[tuple[AuditEvent, Callable[[], None] | None]] = []
        self._backlog_lock = threading.Lock()
        self._sessions: list[Session] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sessions
    def open_session(
        self,
        credentials: Credentials,
        *,
        transport: httpx.BaseTransport | None = None,
        owns_credentials: bool = False,
    ) -> Session:
        """A ``Session`` over an already authenticated credential (card ``AuthSession``, ``Pkcs11Session``,
        ``EstablishmentSession``, ``SoftwareCredentials``)."""
        from ps_agent.session import Session

        session = Session(self, credentials, transport=transport, owns_credentials=owns_credentials)
        with self._lock:
            self._sessions.append(session)
        return session

    def _forget(self, session: Session) -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)

    def journal_login(self, what: str, opener: Callable[[], T]) -> T:
        """Run a card/token login (``opener``, e.g. ``lambda: AuthSession.open(...)``): every refusal
        (wrong PIN with tries left, blocked, expired card, no card or reader...) is journaled
        ("card.login", refused, the error code), never the PIN. For callers that open the card
        themselves (the CLI)."""
        try:
            return opener()
        except PsAgentError as exc:
            tries = getattr(exc, "tries_left", None)
            detail = exc.message_fr + (f" (essais restants : {tries})" if tries is not None else "")
            self.record(
                AuditEvent(
                    action="card.login",
                    outcome="refused",
                    actor_id_nat="",
                    actor_name="",
                    actor_profession="",
                    auth_mode="DIRECTE",
                    error_code=str(exc.code or type(exc).__name__),
                    detail=f"{what} : {detail}",
                )
            )
            raise

    def open_card_session(
        self,
        reader: str | None,
        pin: str,
        *,
        situation_index: int = 0,
        confirm_final_try: bool = False,
        transport: httpx.BaseTransport | None = None,
        **kw: Any,
    ) -> Session:
        """Open the CPS card in ``reader`` with ``pin`` (``AuthSession.open``) and a ``Session`` on it.
        Refusals are journaled then raised; the success too ("card.login", success, card serial)."""
        from ps_agent.auth.session import AuthSession

        auth = self.journal_login(
            "carte CPS",
            lambda: AuthSession.open(
                reader, pin, situation_index=situation_index, confirm_final_try=confirm_final_try,
                ca_file=self.config.environment.ca_file or None, **kw,
            ),
        )  # fmt: skip
        return self._logged_in(auth, transport)

    def open_pkcs11_session(
        self, pin: str, *, transport: httpx.BaseTransport | None = None, **kw: Any
    ) -> Session:
        """Open the card through its PKCS#11 module (Cryptolib; ``Pkcs11Session.open``), journaled alike."""
        from ps_agent.auth.pkcs11 import Pkcs11Session

        auth = self.journal_login(
            "carte CPS (PKCS#11)",
            lambda: Pkcs11Session.open(pin, ca_file=self.config.environment.ca_file or None, **kw),
        )
        return self._logged_in(auth, transport)

    def _logged_in(self, auth: Any, transport: httpx.BaseTransport | None) -> Session:
        ident = auth.identity
        try:
            self.record(
                AuditEvent(
                    action="card.login",
                    outcome="success",
                    actor_id_nat=ident.id_nat,
                    actor_name=ident.display_name,
                    actor_profession=ident.profession_code or ident.non_ps_role,
                    auth_mode=auth.mode.value,
                    card_serial=ident.extra.get("card_serial", ""),
                    structure_id=ident.activity.structure_id if ident.activity else "",
                )
            )
        except AuditError:
            auth.close()
            raise
        return self.open_session(auth, transport=transport, owns_credentials=True)

    # ------------------------------------------------------------------ journal
    def record(self, event: AuditEvent) -> AuditRecord:
        """Append ``event`` (after any record a full disk kept pending). Raises ``AuditError`` when it
        cannot be written (the caller decides: a read is then cancelled)."""
        self.flush_backlog()
        record = self.journal.append(event)
        self.events.emit(JOURNAL_APPENDED, record)
        return record

    def keep_for_later(self, event: AuditEvent, on_written: Callable[[], None] | None = None) -> None:
        """A record that must exist but cannot be written now (disk full): written by ``flush_backlog``,
        which then calls ``on_written`` (e.g. flag the queue entry as journaled)."""
        with self._backlog_lock:
            if len(self._backlog) < MAX_BACKLOG:
                self._backlog.append((event, on_written))
            else:
                log.error("audit backlog full: a record is lost (%s %s)", event.action, event.outcome)

    @property
    def backlog(self) -> int:
        with self._backlog_lock:
            return len(self._backlog)

    def flush_backlog(self) -> None:
        """Write the kept records, oldest first; stop (keep the rest) at the first that still fails."""
        with self._backlog_lock:
            while self._backlog:
                event, on_written = self._backlog[0]
                note = "trace écrite en différé (journal plein au moment de l'action)"
                delayed = replace(event, detail=f"{event.detail}; {note}".strip("; "))
                record = self.journal.append(delayed)
                self._backlog.pop(0)
                self.events.emit(JOURNAL_APPENDED, record)
                if on_written is not None:
                    try:
                        on_written()
                    except Exception:
                        log.exception("after writing a delayed audit record")

    # ------------------------------------------------------------------ queue
    def queue_entries(self, *, active_only: bool = False) -> list[QueuedDeposit]:
        return self.queue.pending() if active_only else self.queue.entries()

    def hand_back(
        self, entry_id: str, write: Callable[[QueuedDeposit], None], *, actor: Any = None
    ) -> QueuedDeposit:
        """Give a queued deposit back to a person (no DMP session needed): ``write(entry)`` makes the
        documents durable elsewhere (``write_documents``); only then is the entry HANDED_BACK and its bytes
        purged. Journaled ("dmp.deposit", error HANDED_BACK) under ``actor`` (a ``ProfessionalIdentity``)
        or the depositor recorded in the entry."""
        entry = self.queue.hand_back(entry_id, write)
        who_id = getattr(actor, "id_nat", "") or entry.actor_id_nat
        self.record(
            AuditEvent(
                action="dmp.deposit",
                outcome="error",
                actor_id_nat=who_id,
                actor_name=getattr(actor, "display_name", ""),
                actor_profession=getattr(actor, "profession_code", ""),
                auth_mode="",
                patient_ins=f"{entry.patient_ins}^{entry.patient_oid}",
                transaction="TD2.1",
                document_ids=entry.document_uids,
                error_code="HANDED_BACK",
                detail=f"lot {entry.id} : documents rendus à l'utilisateur, non envoyés",
            )
        )
        return entry

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions), []
        for s in sessions:
            s.close()
        self.queue.close()
        try:
            self.journal.close()
        except Exception:
            log.exception("closing the audit journal")

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_documents(entry: QueuedDeposit, folder: Path) -> list[Path]:
    """Write an entry's CDA documents into ``folder``, each file 0600 and fsync'd, named by uniqueId; returns
    the paths. Used by ``hand_back`` before the entry is marked handed back. A folder the user chose and that
    already exists keeps its permissions (it may be shared on purpose); one created here is 0700."""
    if not folder.is_dir():
        ensure_private_dir(folder)
    paths = []
    for uid, data in zip(entry.document_uids, entry.documents, strict=True):
        path = folder / f"{uid}.xml"
        write_file(path, data)
        make_private_file(path)
        paths.append(path)
    return paths


__all__ = ["MAX_BACKLOG", "Services", "write_documents"]
