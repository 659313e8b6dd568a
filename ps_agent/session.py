"""``Session``: one authenticated credential (card, PKCS#11 token, establishment) over the long-lived
``Services``; ``PatientHandle``: one patient within a session.

Every operation (1) asks the access policy before anything leaves the machine (one helper,
``Session._authorize``: local check, TD0.2 when stale, check again), (2) runs the DMP transactions, (3)
appends an audit record (refusals and errors included) *before* returning patient data. The record takes
the transaction, message id, VIHF id and duration from the exchanges of THAT call
(``ps_agent.dmp.client.record_exchanges``), never from shared state. Results are ``Result[T]``: the value
plus those exchange facts.

Threading rule: a ``Session`` may be called from several threads at once (the DMP client, the journal and
the deposit queue are thread-safe). A ``PatientHandle``'s state (DMP status, access mode, emergency
reason) is guarded by its own lock; a TD0.2 refresh runs once at a time per patient (others wait for it).
Callbacks (progress, events) run on the thread doing the work, never on a UI thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import queue as queue_mod
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from cda.errors import CdaError
from ps_agent.access.policy import AccessMode, Action, Decision, DmpState, PatientRef
from ps_agent.audit.errors import AuditError
from ps_agent.audit.journal import AuditEvent, AuditRecord
from ps_agent.auth.model import AuthMode, Credentials, ProfessionalIdentity
from ps_agent.context import DEFAULT_CONTEXT, Cancelled, Context, run_interruptible
from ps_agent.dmp.client import DepositResult, DmpClient, ExchangeInfo, author_of, record_exchanges
from ps_agent.dmp.ebrim import DepositItem, FindFilters
from ps_agent.dmp.errors import (
    DmpRefusal,
    FailureKind,
    InvalidRequest,
    TransportError,
    classify_failure,
)
from ps_agent.dmp.hl7 import Authorisation, DmpStatus
from ps_agent.dmp.metadata import author_input_of, entry_from_cda, is_vaccination_document, rubric_of
from ps_agent.dmp.model import DocumentEntry, PatientId, RetrievedDocument, Status, Visibility
from ps_agent.dmp.vihf import Purpose
from ps_agent.errors import AccessDenied, PsAgentError
from ps_agent.events import CARD_CHANGED, JOURNAL_APPENDED, SESSION_CLOSED
from ps_agent.outbox import (
    ACTIVE_STATES,
    EntryNotFound,
    EntryState,
    OutboxError,
    QueuedDeposit,
    backoff_delay,
)

if TYPE_CHECKING:
    from ps_agent.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a TD0.2 answer is reused for the same patient before asking again [I]: long enough for one
# consultation, short enough to see a patient's new block or closure within the session.
STATUS_TTL_S = 300.0
# Patient handles a session keeps beyond those in use (each holds the patient's TD0.2 answer and access
# mode, a few hundred bytes): a hot folder depositing for 100,000 patients a year keeps these, not all.
PATIENT_HANDLES_KEPT = 1024

# Parallel TD3.2 requests for the vaccination status, each of up to RETRIEVE_MANY_MAX_DOCUMENTS documents
# (a few, to stay polite with the DMP) [I].
VACCINATION_FETCH_WORKERS = 4

# [I] TD0.2 carries no "opposed to emergency access" flag in the spec: the agent learns it from the DMP's
# refusal of a bris de glace / centre 15 request (this code, last segment of the fault/status code) and
# then refuses further emergency attempts on that patient locally (URG-01/URG-06) for the session.
EMERGENCY_REFUSAL_CODES = frozenset({"DMPEmergencyAccessRefused"})

# reason_code of a queue entry whose intent record could not be written (it is written before its send)
INTENT_NOT_JOURNALED = "AUDIT_WRITE"

# Reasons a card session gives when the card left the reader (or the reader went): ``card_changed``.
CARD_CHANGE_REASONS = frozenset({"removed", "reader_gone", "changed"})

# [I] Longest wait between two sends of one deposit inside an interactive call; longer waits are left to
# the queue (the entry is WAITING, resumed later).
INLINE_RETRY_MAX_WAIT_S = 1.0


UPDATE_STEPS_FR = {
    Action.MASK: "Masquage du document",
    Action.UNMASK: "Démasquage du document",
    Action.MAKE_VISIBLE: "Document rendu visible",
    Action.ARCHIVE: "Archivage du document",
    Action.UNARCHIVE: "Désarchivage du document",
    Action.DELETE: "Suppression du document",
}


@dataclass(frozen=True)
class Result(Generic[T]):
    """The value of an operation and the facts of the DMP exchanges that produced it (in order)."""

    value: T
    exchanges: tuple[ExchangeInfo, ...] = ()
    notices: tuple[str, ...] = ()

    @property
    def exchange(self) -> ExchangeInfo | None:
        return self.exchanges[-1] if self.exchanges else None


@dataclass(frozen=True)
class DocumentList:
    """A TD3.1 answer for the UI: entries plus French explanations of what may be missing."""

    entries: tuple[DocumentEntry, ...]
    hidden_explanations: tuple[str, ...] = ()  # what the habilitation matrix hides from this profession
    notices: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[DocumentEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class EmergencyAccess:
    patient: PatientRef
    mode: AccessMode
    reason: str
    notice_fr: str
    status: DmpStatus


class EntryNotResumable(OutboxError):
    """A queue entry that cannot be sent now (``Session.resume_entry``): ``state`` says why, in French in
    ``message_fr`` (settled, being sent, or another professional's deposit)."""

    def __init__(self, entry: QueuedDeposit, *, other_professional: bool = False) -> None:
        self.entry = entry
        self.state = entry.state
        why = f" ({entry.reason_fr})" if entry.reason_fr else ""
        head = f"L'envoi « {entry.id} » est à l'état « {entry.state.label_fr} »{why}"
        if other_professional:
            code = "QUEUE_OTHER_PROFESSIONAL"
            message = (
                f"L'envoi « {entry.id} » a été déposé par un autre professionnel : seule sa session peut "
                "l'envoyer (ou rendez les documents avec « ps-agent outbox hand-back »)."
            )
        elif entry.state is EntryState.SENDING:
            code, message = "QUEUE_BUSY", f"{head} : il est déjà en cours d'envoi, réessayez dans un instant."
        elif entry.state is EntryState.REFUSED:
            code = "QUEUE_REFUSED"
            message = (
                f"{head} : un refus du DMP est définitif, le renvoyer tel quel serait refusé de nouveau ; "
                "rendez les documents (« ps-agent outbox hand-back ») pour les corriger et les déposer à "
                "nouveau."
            )
        else:
            code, message = "QUEUE_FINAL", f"{head} : il n'y a rien à reprendre."
        super().__init__(message, code=code)


@dataclass(frozen=True)
class DepositOutcome:
    """What became of one queue entry in ``resume``: its state after the attempt and why."""

    entry_id: str
    state: EntryState
    reason_fr: str
    document_uids: tuple[str, ...]
    result: DepositResult | None = None
    exchanges: tuple[ExchangeInfo, ...] = ()

    @property
    def submission_set_uid(self) -> str:
        return self.entry_id

    @property
    def registered(self) -> bool:
        return self.state is EntryState.REGISTERED


class DepositDeferred(TransportError):
    """The DMP could not be reached (or did not answer) after the sends allowed now: the deposit is kept in
    the queue (state WAITING) and will be sent again; nothing is lost, nothing was refused."""

    def __init__(self, message_fr: str, *, entry: QueuedDeposit, code: str | None = "DEFERRED") -> None:
        super().__init__(message_fr, code=code)
        self.entry = entry


class AuditPending(AuditError):
    """The documents ARE registered in the DMP, but the audit record of the outcome could not be written
    (disk full...): it is kept and written as soon as the journal can be written again. ``result`` holds the
    deposit's result."""

    def __init__(self, result: DepositResult, cause: BaseException) -> None:
        super().__init__(
            f"{len(result.document_uids)} document(s) enregistré(s) dans le DMP "
            f"(lot {result.submission_set_uid}). La trace de cet envoi n'a pas pu être écrite dans le "
            "journal d'audit (disque plein ?) : elle est gardée et sera écrite dès que le journal pourra "
            "l'être.",
            code="AUDIT_PENDING",
        )
        self.result = result
        self.cause = cause


def dmp_state(status: DmpStatus, *, emergency_opposed: bool = False) -> DmpState:
    """TD0.2 answer (+ what the DMP said about emergency access) → the policy's view of it."""
    if status.authorisation == Authorisation.VALIDE:
        authorised: bool | None = True
    elif status.authorisation == Authorisation.INTERDIT:
        authorised = False
    else:
        authorised = None
    return DmpState(
        exists=status.exists,
        closed=status.closed,
        opposed=status.opposed,
        emergency_opposed=emergency_opposed,
        authorised=authorised,
        is_medecin_traitant=status.is_medecin_traitant,
    )


def _exchange_note(exchanges: Sequence[ExchangeInfo]) -> str:
    """The exchange facts as they go into the audit record's detail (message id, VIHF id, duration)."""
    parts = []
    for x in exchanges[-4:]:
        bits = [x.transaction, f"message {x.message_id}"]
        if x.vihf_id:
            bits.append(f"VIHF {x.vihf_id}")
        if x.duration_s:
            bits.append(f"{x.duration_s * 1000:.0f} ms")
        parts.append(" ".join(bits))
    return "[" + " | ".join(parts) + "]" if parts else ""


def _run_interruptible(fn: Callable[[], T], ctx: Context) -> T:
    """A DMP call that a cancellation or the deadline abandons (``ps_agent.context.run_interruptible``)."""
    return run_interruptible(fn, ctx, name="ps-agent-dmp-call")


class Session:
    """One credential (``Credentials``: card ``AuthSession``, ``Pkcs11Session``, ``EstablishmentSession``,
    ``SoftwareCredentials``) talking to the configured DMP, over the shared ``Services``.

    Open it with ``services.open_session(credentials)`` (or ``services.open_card_session(...)``); close it
    with ``close()`` (a credential the services opened — card, PKCS#11 — is closed too; one given by the
    caller stays the caller's to close)."""

    def __init__(
        self,
        services: Services,
        credentials: Credentials,
        *,
        transport: httpx.BaseTransport | None = None,
        owns_credentials: bool = False,
    ) -> None:
        self.services = services
        self.credentials = credentials
        self._owns_credentials = owns_credentials
        cfg = services.config
        self.client = DmpClient(
            credentials,
            cfg.environment,
            cfg.lps,
            transport=transport,
            frame_recorder=services.frames.record,
            deposit_retries=cfg.deposit_retries,
        )
        # Patient handles: every one still in use (weak map: the window's patient, deposits in flight), the
        # PATIENT_HANDLES_KEPT last used (their TD0.2 answer reused for STATUS_TTL_S) and those in emergency
        # access; not every patient of a hospital's year.
        self._handles: weakref.WeakValueDictionary[tuple[str, str], PatientHandle] = (
            weakref.WeakValueDictionary()
        )
        self._recent: OrderedDict[tuple[str, str], PatientHandle] = OrderedDict()
        self._emergency: dict[tuple[str, str], PatientHandle] = {}  # out of _recent, in emergency access
        self._lock = threading.Lock()
        self.closed = False
        self._attach_journal_signer()
        on_closed = getattr(credentials, "on_closed", None)
        if callable(on_closed):
            on_closed(self._credential_closed)

    # ------------------------------------------------------------------ lifecycle
    def _attach_journal_signer(self) -> None:
        journal = self.services.journal
        if not hasattr(journal, "set_checkpoint_signer"):
            return
        try:
            signer = self.credentials.vihf_signer()
        except PsAgentError:
            signer = None
        if signer is None:
            return
        ident = self.identity
        if self.mode is AuthMode.DIRECTE:
            label = f"carte CPS — {ident.display_name} ({ident.id_nat})"
        else:
            where = ident.activity.structure_name or ident.activity.structure_id if ident.activity else ""
            label = f"établissement {where} — utilisateur {ident.display_name} ({self.mode.value})"
        try:
            journal.set_checkpoint_signer(signer, label)
        except Exception:  # the journal's checkpoints must never prevent a session
            log.exception("could not register the journal's checkpoint signer")

    def _detach_journal_signer(self) -> None:
        journal = self.services.journal
        if hasattr(journal, "set_checkpoint_signer"):
            try:
                journal.set_checkpoint_signer(None)
            except Exception:
                log.exception("could not clear the journal's checkpoint signer")

    def _credential_closed(self, reason: str) -> None:
        self._detach_journal_signer()
        self.services.events.emit(SESSION_CLOSED, reason)
        if reason in CARD_CHANGE_REASONS:
            self.services.events.emit(CARD_CHANGED, reason)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._detach_journal_signer()
        self.client.close()
        if self._owns_credentials:  # opened by the services (card / PKCS#11 login): closed with it
            closer = getattr(self.credentials, "close", None)
            if callable(closer):
                closer()
        self.services._forget(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def identity(self) -> ProfessionalIdentity:
        return self.credentials.identity

    @property
    def mode(self) -> AuthMode:
        return self.credentials.mode

    def patient(self, ref: PatientRef) -> PatientHandle:
        """The handle of a patient in this session (the same object for the same INS while it is held, or
        among the ``PATIENT_HANDLES_KEPT`` last used)."""
        key = (ref.ins, ref.oid)
        with self._lock:
            handle = self._handles.get(key)
            if handle is None or handle.ref != ref:
                handle = self._handles[key] = PatientHandle(self, ref)
            recent = self._recent
            recent[key] = handle
            recent.move_to_end(key)
            if len(recent) > PATIENT_HANDLES_KEPT:
                old_key, old = recent.popitem(last=False)
                # an emergency access lasts until it is ended, however many patients come meanwhile
                self._emergency = {
                    k: h for k, h in self._emergency.items() if h.access_mode is not AccessMode.NORMAL
                }
                if old.access_mode is not AccessMode.NORMAL:
                    self._emergency[old_key] = old
            return handle

    # ------------------------------------------------------------------ audit
    def _event(
        self,
        action: str,
        outcome: str,
        handle: PatientHandle | None,
        *,
        exchanges: Sequence[ExchangeInfo] = (),
        ctx: Context = DEFAULT_CONTEXT,
        **kw: Any,
    ) -> AuditEvent:
        ident = self.identity
        mode, reason = handle.access() if handle is not None else (AccessMode.NORMAL, "")
        kw.setdefault("access_mode", mode.value)
        if mode is not AccessMode.NORMAL:
            kw.setdefault("reason", ctx.reason or reason)
        if exchanges:
            kw.setdefault("transaction", exchanges[-1].transaction)
        note = _exchange_note(exchanges)
        detail = kw.pop("detail", "") or ""
        if ctx.purpose:
            detail = (
                f"{detail}; finalité déclarée : {ctx.purpose}"
                if detail
                else f"finalité déclarée : {ctx.purpose}"
            )
        if ctx.background:
            detail = f"{detail}; tâche de fond" if detail else "tâche de fond"
        if note:
            detail = f"{detail} {note}".strip()
        return AuditEvent(
            action=action,
            outcome=outcome,
            actor_id_nat=ident.id_nat,
            actor_name=ident.display_name,
            actor_profession=ident.profession_code or ident.non_ps_role,
            auth_mode=self.mode.value,
            card_serial=ident.extra.get("card_serial", ""),
            structure_id=ident.activity.structure_id if ident.activity else "",
            patient_ins=handle.ref.ins_with_oid if handle is not None else "",
            detail=detail,
            **kw,
        )

    def _audit(self, action: str, outcome: str, handle: PatientHandle | None, **kw: Any) -> None:
        self.services.record(self._event(action, outcome, handle, **kw))

    def _audit_or_keep(
        self,
        action: str,
        outcome: str,
        handle: PatientHandle | None,
        *,
        on_written: Callable[[], None] | None = None,
        **kw: Any,
    ) -> bool:
        """For records of what already happened at the DMP (a deposit waiting or refused): when the journal
        cannot be written, the record is kept and written later instead of hiding the outcome."""
        event = self._event(action, outcome, handle, **kw)
        try:
            self.services.record(event)
        except AuditError:
            self.services.keep_for_later(event, on_written)
            return False
        return True

    # ------------------------------------------------------------------ policy (the ONE helper)
    def _decide(
        self,
        action: Action,
        handle: PatientHandle | None,
        ctx: Context,
        *,
        type_code: str | None = None,
        access_mode: AccessMode | None = None,
        reason: str | None = None,
        with_status: bool = True,
    ) -> Decision:
        st = handle.snapshot() if handle is not None else None
        dmp = None
        if with_status and st is not None and st.status is not None:
            dmp = dmp_state(st.status, emergency_opposed=st.emergency_opposed)
        return self.services.policy.decide(
            action,
            identity=self.identity,
            mode=self.mode,
            patient=handle.ref if handle is not None else None,
            dmp=dmp,
            access_mode=access_mode
            if access_mode is not None
            else (st.access_mode if st else AccessMode.NORMAL),
            reason=reason if reason is not None else (ctx.reason or (st.reason if st else "")),
            type_code=type_code,
            purpose=ctx.purpose,
            background=ctx.background,
        )

    def _authorize(
        self,
        action: Action,
        audit_action: str,
        handle: PatientHandle | None,
        ctx: Context,
        *,
        type_codes: Sequence[str | None] = (None,),
        refresh_status: bool = True,
        **kw: Any,
    ) -> Decision:
        """Ask the policy; a refusal is audited then raised (``AccessDenied``). With ``refresh_status``
        (the default) a stale TD0.2 answer is first checked locally (INS, role, mode... refuse before any
        exchange), then refreshed, then checked again with the DMP's status."""
        decision: Decision | None = None

        def check(with_status: bool) -> Decision:
            last: Decision | None = None
            for tc in type_codes:
                d = self._decide(action, handle, ctx, type_code=tc, with_status=with_status, **kw)
                if not d.allowed:
                    from ps_agent.access.errors import error_for

                    exc = error_for(d)
                    self._audit(
                        audit_action, "refused", handle, ctx=ctx, transaction="",
                        error_code=str(exc.code or ""), rule_id=d.rule_id, detail=exc.message_fr,
                    )  # fmt: skip
                    raise exc
                last = d
            assert last is not None
            return last

        if handle is not None and refresh_status and not handle.status_fresh():
            check(with_status=False)
            handle._refresh_status(ctx)
        decision = check(with_status=True)
        return decision

    def _authorize_local(
        self,
        action: Action,
        audit_action: str,
        handle: PatientHandle | None,
        ctx: Context,
        *,
        type_codes: Sequence[str | None] = (None,),
    ) -> None:
        """The policy's local rules only (no DMP status, no exchange): what is refused before anything is
        queued or sent. A refusal is audited then raised (``AccessDenied``)."""
        for tc in type_codes:
            d = self._decide(action, handle, ctx, type_code=tc, with_status=False)
            if not d.allowed:
                from ps_agent.access.errors import error_for

                exc = error_for(d)
                self._audit(
                    audit_action, "refused", handle, ctx=ctx, transaction="",
                    error_code=str(exc.code or ""), rule_id=d.rule_id, detail=exc.message_fr,
                )  # fmt: skip
                raise exc

    # ------------------------------------------------------------------ DMP calls
    def _dmp(
        self,
        audit_action: str,
        handle: PatientHandle | None,
        fn: Callable[[], T],
        ctx: Context,
        **kw: Any,
    ) -> tuple[T, tuple[ExchangeInfo, ...]]:
        """Run DMP calls under this call's exchange recorder; errors are audited (refused/error) with the
        exchanges' own facts and re-raised; cancellation/deadline stop the wait (``Cancelled``)."""
        with record_exchanges() as rec:
            try:
                value = _run_interruptible(fn, ctx)
            except Cancelled:
                self._audit(
                    audit_action, "error", handle, ctx=ctx, exchanges=tuple(rec),
                    error_code="CANCELLED", detail="opération annulée", **kw,
                )  # fmt: skip
                raise
            except DmpRefusal as exc:
                last = str(exc.code or "").replace(":", "/").rsplit("/", 1)[-1]
                if last in EMERGENCY_REFUSAL_CODES and handle is not None:
                    handle._set(emergency_opposed=True)
                self._audit(
                    audit_action, "refused", handle, ctx=ctx, exchanges=tuple(rec),
                    error_code=str(exc.code or ""), detail=exc.code_context, **kw,
                )  # fmt: skip
                raise
            except PsAgentError as exc:
                self._audit(
                    audit_action, "error", handle, ctx=ctx, exchanges=tuple(rec),
                    error_code=str(exc.code or ""), detail=exc.message_fr, **kw,
                )  # fmt: skip
                raise
            except Exception as exc:  # a defect: still leave a trace of the attempt, then let it surface
                self._audit(
                    audit_action, "error", handle, ctx=ctx, exchanges=tuple(rec),
                    error_code="INTERNAL", detail=type(exc).__name__, **kw,
                )  # fmt: skip
                raise
            return value, tuple(rec)

    # ------------------------------------------------------------------ TD0.4
    def authorised_patients(
        self, since: datetime, *, date_type: str = "LASTAUTORIZATION", ctx: Context = DEFAULT_CONTEXT
    ) -> Result[list[dict[str, str]]]:
        """TD0.4: the DMPs this professional is authorised on (changed since ``since``); asked to the
        policy (AUTH-03, AUTH-04, GEN-03) and journaled."""
        act = "dmp.patient_list"
        self._authorize(Action.PATIENT_LIST, act, None, ctx)
        ctx.report("Liste des patients autorisés", 0, 1)
        rows, ex = self._dmp(act, None, lambda: self.client.patient_list(since, date_type=date_type), ctx)
        self._audit(
            act, "success", None, ctx=ctx, exchanges=ex,
            detail=f"{len(rows)} DMP ({date_type} depuis {since.date().isoformat()})",
        )  # fmt: skip
        ctx.report("Liste des patients autorisés", 1, 1)
        return Result(rows, ex)

    # ------------------------------------------------------------------ deposit queue
    def queue_entries(self, *, active_only: bool = False) -> list[QueuedDeposit]:
        """The deposit queue (each entry with its state and French reason), oldest first."""
        q = self.services.queue
        return q.pending() if active_only else q.entries()

    def resume(self, *, ctx: Context = DEFAULT_CONTEXT, all_entries: bool = False) -> list[DepositOutcome]:
        """Send every due entry of the queue (pending, waiting whose time came, claims that expired) that
        this session's professional deposited; ``all_entries`` also sends waiting entries now. Each entry
        is resolved on its own: a failure on one never holds back the others. Also writes the audit
        records that a full disk kept pending."""
        q = self.services.queue
        self._before_resume()
        entries = q.pending() if all_entries else q.due()  # unreadable queue: OutboxError (nothing to say)
        mine = [e for e in entries if not e.actor_id_nat or e.actor_id_nat == self.identity.id_nat]
        outcomes: list[DepositOutcome] = []
        total = len(mine)
        ctx.report("Reprise des envois en attente", 0, total)
        for n, entry in enumerate(mine, start=1):
            ctx.check()
            outcomes.append(self._resume_one(entry, ctx))
            ctx.report("Reprise des envois en attente", n, total)
        return outcomes

    def resume_entry(self, entry_id: str, *, ctx: Context = DEFAULT_CONTEXT) -> DepositOutcome:
        """Send one entry of the queue now: pending, waiting (even before its next try) or a claim whose
        owner died. ``EntryNotFound`` when the queue has no such entry; ``EntryNotResumable`` (its
        ``state`` and a French message saying it) when it is settled (registered, refused: a refusal is
        final, handed back), being sent right now, or deposited by another professional than this
        session's (``code`` ``QUEUE_OTHER_PROFESSIONAL``). The send's own failure is its outcome (waiting,
        refused), as in ``resume``."""
        q = self.services.queue
        self._before_resume()
        entry = q.get(entry_id)
        if entry is None:
            raise EntryNotFound(f"Aucun envoi « {entry_id} » dans la file d'envoi.", code="NOT_FOUND")
        if entry.state not in ACTIVE_STATES:
            raise EntryNotResumable(entry)
        if entry.actor_id_nat and entry.actor_id_nat != self.identity.id_nat:
            raise EntryNotResumable(entry, other_professional=True)
        return self._resume_one(entry, ctx, strict=True)

    def _before_resume(self) -> None:
        """Before sending queue entries: the audit records a full disk kept pending, if there is room
        now, and the queue's outcomes a full disk kept in memory."""
        try:
            self.services.flush_backlog()
        except Exception:
            log.warning("the audit journal still cannot be written: kept records stay pending")
        else:
            with contextlib.suppress(Exception):
                self._journal_unjournaled()
        with contextlib.suppress(OutboxError):
            self.services.queue.flush_deferred()

    def _resume_one(self, entry: QueuedDeposit, ctx: Context, *, strict: bool = False) -> DepositOutcome:
        """One entry of ``resume``: its outcome, whatever fails (never raised, except cancellation; with
        ``strict``, ``EntryNotResumable`` when another thread or process holds or settled it meanwhile)."""
        q = self.services.queue

        def current(reason: str = "") -> DepositOutcome:
            try:
                cur = q.get(entry.id) or entry
            except Exception:
                cur = entry
            return DepositOutcome(cur.id, cur.state, reason or cur.reason_fr, cur.document_uids)

        try:
            claimed = q.claim(entry.id)
        except Exception as exc:
            return current(getattr(exc, "message_fr", "") or str(exc))
        if claimed is None:  # sent by another thread/process meanwhile, or already final
            if strict:
                raise EntryNotResumable(q.get(entry.id) or entry)
            return current()
        try:
            return self._send_entry(claimed, ctx, inline_retries=0, raise_errors=False)
        except Cancelled:
            raise
        except AuditPending as exc:  # registered; its audit record is written when space returns
            return DepositOutcome(
                claimed.id, EntryState.REGISTERED, exc.message_fr, claimed.document_uids, exc.result,
                exc.result.exchanges,
            )  # fmt: skip
        except Exception as exc:
            log.exception("deposit queue entry %s", entry.id)
            return current(getattr(exc, "message_fr", "") or str(exc))

    def hand_back(self, entry_id: str, write: Callable[[QueuedDeposit], None]) -> QueuedDeposit:
        """Give a queued deposit back to the user: ``write(entry)`` makes the documents durable elsewhere
        (``ps_agent.services.write_documents``); then the entry is HANDED_BACK (journaled)."""
        entry = self.services.queue.hand_back(entry_id, write)
        self._audit(
            "dmp.deposit", "error", self._handle_of(entry), error_code="HANDED_BACK",
            document_ids=entry.document_uids,
            detail=f"lot {entry.id} : documents rendus à l'utilisateur, non envoyés",
        )  # fmt: skip
        return entry

    def _handle_of(self, entry: QueuedDeposit) -> PatientHandle:
        return self.patient(PatientRef(entry.patient_ins, entry.patient_oid, entry.ins_status))

    def _journal_unjournaled(self) -> None:
        """Outcomes whose audit record a full disk prevented (and the process ended since), or whose
        "journaled" flag a crash (or another process) kept from the queue file although the record was
        written: a registered entry's success record is looked up in the journal first and, when there,
        only the flag is set. One record, never two: an entry whose depositor may still be writing its
        record (this instance's, or a live process's within its lease) is left to it, and the lookup, the
        record and the flag are one step under the queue file's write lock (``DepositQueue.journal_once``),
        so two recoverers (the window and the hot folder after a crash) do not both write it."""
        q = self.services.queue
        for e in q.unjournaled():
            if q.record_in_flight(e):
                continue
            outcome = "success" if e.state is EntryState.REGISTERED else "refused"
            written: list[AuditRecord] = []

            def write(
                e: QueuedDeposit = e, outcome: str = outcome, written: list[AuditRecord] = written
            ) -> None:
                if outcome == "success" and self._success_journaled(e):
                    return
                event = self._event(
                    "dmp.deposit", outcome, self._handle_of(e), transaction="TD2.1",
                    document_ids=e.document_uids,
                    error_code="" if outcome == "success" else e.reason_code,
                    detail=f"lot {e.id}; trace écrite en différé ({e.state.label_fr})",
                )  # fmt: skip
                written.append(self.services.journal.append(event))  # no backlog flush inside the lock

            try:
                q.journal_once(e.id, write)
            except (AuditError, OutboxError):
                return
            for record in written:
                self.services.events.emit(JOURNAL_APPENDED, record)

    def _success_journaled(self, entry: QueuedDeposit) -> bool:
        """Whether the journal holds the success record of ``entry``'s own send: its detail is "lot <id>",
        alone or followed by ";" (``_registered``'s notes, a delayed record) or by " [" (the exchange facts
        ``_event`` appends); not "lot <id> ; …", the record of the same documents handed again
        (``_deposit_again``), nor the record of a longer id."""
        lot = re.compile(rf"lot {re.escape(entry.id)}(?:$|;| \[)")
        return any(
            lot.match(detail)
            for detail in self.services.journal.details(
                ins=entry.patient_ins, oid=entry.patient_oid, action="dmp.deposit", outcome="success"
            )
        )

    def _items_of(
        self, entry: QueuedDeposit, known: Sequence[PreparedDocument] = ()
    ) -> tuple[list[DepositItem], Any]:
        """The entry's documents as DepositItems. ``known``: what ``deposit_batch`` derived from the same
        bytes a moment ago (one parse per document): reused for a document whose bytes are those very
        bytes and whose visibility is the entry's; any other document is parsed here."""
        vis = Visibility(*entry.visibility)
        ref = (entry.patient_ins, entry.patient_oid)
        items = []
        first_author = None
        for i, data in enumerate(entry.documents):
            k = known[i] if i < len(known) else None
            digest = None
            if k is not None and k.visibility == vis and (k.content is data or k.content == data):
                doc_entry, digest = k.entry, k.c14n_sha256
            else:
                doc_entry, _ = entry_from_cda(data, ref, vis)
            if i == 0 and doc_entry.authors:
                first_author = doc_entry.authors[0]
            uuid = entry.replaces_entry_uuids[i] if i < len(entry.replaces_entry_uuids) else ""
            items.append(DepositItem(doc_entry, data, uuid, c14n_sha256=digest))
        return items, first_author

    def _submission(self, entry: QueuedDeposit, first_author: Any) -> tuple[Any, str]:
        ss = self.client.submission_set(PatientId(entry.patient_ins, entry.patient_oid))
        # the client's submission set already names the acting professional (author_of(identity)): one
        # copy, with the entry's id, and the author replaced only when someone else is the author
        if self.mode != AuthMode.DIRECTE:
            session_author = getattr(self.credentials, "author", None)  # EstablishmentSession: the PS
            if isinstance(session_author, ProfessionalIdentity):
                first_author = author_of(session_author)
            if first_author is not None:
                return replace(ss, unique_id=entry.id, authors=(first_author,)), first_author.id_nat
        return replace(ss, unique_id=entry.id), ""

    def _may_read(self, handle: PatientHandle, ctx: Context) -> bool:
        return self._decide(Action.SEARCH, handle, replace(ctx, background=False)).allowed

    def _confirm_registered(
        self, handle: PatientHandle, items: Sequence[DepositItem], ctx: Context
    ) -> tuple[bool, str]:
        """After "already registered": (True, note) when confirmed. A reader confirms by GetDocuments and
        hash; a depositor who may not read trusts the uniqueId (the idempotency key)."""
        if not self._may_read(handle, ctx):
            return (
                True,
                "déjà enregistré (renvoi du même lot ; vérification par le contenu impossible "
                "pour ce profil)",
            )
        uids = [i.entry.unique_id for i in items]
        purpose, reason = handle.purpose()
        found = self.client.get_documents(handle.pid, unique_ids=uids, purpose=purpose, reason=reason)
        by_uid = {e.unique_id: e for e in found}
        for it in items:
            got = by_uid.get(it.entry.unique_id)
            if got is None:
                return False, "un identifiant de ce lot est déjà utilisé dans le DMP par un autre document"
            digest = hashlib.sha1(it.content).hexdigest().lower()  # noqa: S324 - XDS hash is SHA-1
            if got.hash and got.hash.lower() != digest:
                return False, "un autre document porte déjà cet identifiant dans le DMP (contenu différent)"
        return True, "déjà enregistré (renvoi du même lot, vérifié par l'empreinte)"

    def _send_entry(
        self,
        entry: QueuedDeposit,
        ctx: Context,
        *,
        inline_retries: int,
        raise_errors: bool,
        known: Sequence[PreparedDocument] = (),
    ) -> DepositOutcome:
        """Send a claimed entry until it has an outcome or must wait; every transition is one row update.
        No network call ever happens between taking an entry and rewriting its row. ``known``: see
        ``_items_of``."""
        q = self.services.queue
        handle = self._handle_of(entry)
        uids = entry.document_uids
        keys = (*uids, entry.id)
        if entry.reason_code == INTENT_NOT_JOURNALED:  # the intent first, as for a new deposit
            try:
                self._audit(
                    "dmp.deposit", "pending", handle, ctx=ctx, transaction="TD2.1", document_ids=uids,
                    on_behalf_of=entry.on_behalf_of, detail=f"lot {entry.id} : intention d'envoi (reprise)",
                )  # fmt: skip
            except AuditError:
                waiting = q.mark_waiting(
                    entry.id, "le journal d'audit ne peut pas être écrit", INTENT_NOT_JOURNALED, 0.0
                )
                return DepositOutcome(waiting.id, waiting.state, waiting.reason_fr, uids)
        all_ex: list[ExchangeInfo] = []
        attempts_here = 0
        while True:
            attempts_here += 1
            on_behalf = ""
            try:
                with record_exchanges() as rec:
                    try:
                        items, first_author = self._items_of(entry, known)
                        # the policy with the DMP's status (TD0.2 refreshed when stale), at every attempt:
                        # a transient failure here leaves the entry WAITING, a final one REFUSED (why)
                        self._authorize(
                            Action.DEPOSIT, "dmp.deposit", handle, ctx,
                            type_codes=[i.entry.type_code.code for i in items],
                        )  # fmt: skip
                        ctx.report("Préparation du lot", 0, 3)
                        ss, on_behalf = self._submission(entry, first_author)
                        if any(
                            r and not u
                            for r, u in zip(entry.replaces, entry.replaces_entry_uuids, strict=False)
                        ):
                            resolved = tuple(
                                (u or (handle._resolve(r, "dmp.deposit", ctx).entry_uuid if r else ""))
                                for r, u in zip(entry.replaces, entry.replaces_entry_uuids, strict=False)
                            )
                            q.set_replaced_entry_uuids(entry.id, resolved)
                            entry = replace(entry, replaces_entry_uuids=resolved)
                            items, first_author = self._items_of(entry, known)
                        ctx.report("Envoi au DMP", 1, 3)
                        result = _run_interruptible(partial(self.client.send_deposit, ss, items), ctx)
                        note = ""
                    finally:
                        all_ex.extend(rec)
            except Cancelled:
                entry = q.mark_waiting(
                    entry.id, "envoi interrompu par l'utilisateur ; il sera repris", "CANCELLED", 0.0
                )
                raise
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise
                kind = classify_failure(exc, unique_ids=keys)
                if kind is FailureKind.ALREADY_REGISTERED:
                    try:
                        with record_exchanges() as check_rec:
                            try:
                                ok, note = self._confirm_registered(handle, items, ctx)
                            finally:
                                all_ex.extend(check_rec)
                    except Exception as check_exc:
                        if classify_failure(check_exc) is FailureKind.TRANSIENT:  # wait, send again later
                            exc, kind = check_exc, FailureKind.TRANSIENT
                        else:  # the DMP refuses the check itself: the uniqueId alone settles it [I]
                            ok, note = (
                                True,
                                "déjà enregistré (renvoi du même lot ; vérification refusée par le DMP)",
                            )
                            kind = FailureKind.ALREADY_REGISTERED
                    if kind is FailureKind.ALREADY_REGISTERED:
                        if ok:
                            result = DepositResult(entry.id, uids, recovered=True, attempts=entry.attempts)
                            return self._registered(entry, handle, result, note, on_behalf, all_ex, ctx)
                        return self._refused(
                            entry, handle,
                            InvalidRequest(note[0].upper() + note[1:] + ".", code="UNIQUE_ID_CONFLICT"),
                            all_ex, ctx, raise_errors,
                        )  # fmt: skip
                if kind is FailureKind.FINAL:
                    return self._refused(entry, handle, exc, all_ex, ctx, raise_errors)
                # transient: the outcome may be unknown; the same submission will be sent again
                reason = getattr(exc, "message_fr", "") or type(exc).__name__
                code = str(getattr(exc, "code", "") or type(exc).__name__)
                delay = backoff_delay(entry.attempts, self.services.random)
                if attempts_here <= inline_retries:
                    if ctx.cancel is not None:
                        if ctx.cancel.wait(min(delay, INLINE_RETRY_MAX_WAIT_S)):
                            entry = q.mark_waiting(
                                entry.id, "envoi interrompu par l'utilisateur", "CANCELLED", 0.0
                            )
                            raise Cancelled() from exc
                    else:
                        threading.Event().wait(min(delay, INLINE_RETRY_MAX_WAIT_S))
                    renewed = q.claim_again(entry.id)
                    if renewed is not None:
                        entry = renewed
                        continue
                waiting = q.mark_waiting(entry.id, reason, code, self.services.clock() + delay)
                self._audit_or_keep(
                    "dmp.deposit", "error", handle, ctx=ctx, exchanges=tuple(all_ex), error_code=code,
                    document_ids=uids, on_behalf_of=on_behalf,
                    detail=f"lot {entry.id} : {reason} ; gardé dans la file d'envoi, nouvel essai prévu",
                )  # fmt: skip
                if raise_errors:
                    raise DepositDeferred(
                        f"{reason} Le document est gardé dans la file d'envoi : il sera renvoyé "
                        "automatiquement (ou avec « ps-agent outbox resume »).",
                        entry=waiting,
                        code=code,
                    ) from exc
                return DepositOutcome(
                    waiting.id, waiting.state, waiting.reason_fr, uids, exchanges=tuple(all_ex)
                )
            else:
                return self._registered(entry, handle, result, note, on_behalf, all_ex, ctx, sent=True)

    def _registered(
        self,
        entry: QueuedDeposit,
        handle: PatientHandle,
        result: DepositResult,
        note: str,
        on_behalf: str,
        exchanges: list[ExchangeInfo],
        ctx: Context,
        *,
        sent: bool = False,
    ) -> DepositOutcome:
        """``sent``: ``result`` is the DMP's answer to this very send (its attempt count is the entry's,
        not a recovery); else ``result`` was built by the caller as it is."""
        q = self.services.queue
        ex = tuple(exchanges)
        if sent:  # one copy of the result with every field this outcome sets
            result = replace(result, attempts=entry.attempts, recovered=False, exchanges=ex)
        else:
            result = replace(result, exchanges=ex)
        marked = False
        try:
            q.mark_registered(entry.id, note_fr=note)
            marked = True
        except OutboxError:
            # the row stays SENDING: its lease expires, the resend gets "already registered" → registered.
            log.warning("deposit %s registered but the queue could not be updated", entry.id)
        detail = f"lot {entry.id}" + (f"; {note}" if note else "")
        if any(entry.replaces_entry_uuids):
            detail += "; remplacement"
        event = self._event(
            "dmp.deposit", "success", handle, ctx=ctx, exchanges=ex, transaction="TD2.1",
            document_ids=entry.document_uids, on_behalf_of=on_behalf, detail=detail,
        )  # fmt: skip
        ctx.report("Dépôt terminé", 3, 3)
        # Registered (durable) first, then the record, then the journaled mark: a crash before the record
        # leaves the entry registered-not-journaled, and its record is written at the next start without
        # asking the DMP again. The mark is not a commit of its own: it rides in the queue's next write
        # transaction (``durable=False``); a crash before that leaves the entry registered-not-journaled
        # WITH its record in the journal, which ``_journal_unjournaled`` finds (one record, never two).
        # Writing the record first would save the same but a crash between the two would journal the
        # deposit twice or refuse a registered deposit (the resend's record and the policy checked again).
        try:
            self.services.record(event)
        except AuditError as exc:
            self.services.keep_for_later(event, lambda: q.mark_journaled(entry.id))
            raise AuditPending(result, exc) from exc
        try:
            q.mark_journaled(entry.id, durable=not marked)
        except OutboxError:
            pass
        return DepositOutcome(entry.id, EntryState.REGISTERED, note, entry.document_uids, result, ex)

    def _refused(
        self,
        entry: QueuedDeposit,
        handle: PatientHandle,
        exc: BaseException,
        exchanges: list[ExchangeInfo],
        ctx: Context,
        raise_errors: bool,
    ) -> DepositOutcome:
        q = self.services.queue
        reason = getattr(exc, "message_fr", "") or type(exc).__name__
        code = str(getattr(exc, "code", "") or type(exc).__name__)
        done = q.mark_refused(entry.id, reason, code)
        written = True
        if not isinstance(exc, AccessDenied):  # a local refusal was already journaled by the policy check
            written = self._audit_or_keep(
                "dmp.deposit", "refused", handle, ctx=ctx, exchanges=tuple(exchanges), error_code=code,
                document_ids=entry.document_uids,
                detail=f"lot {entry.id} : {getattr(exc, 'code_context', '') or reason}",
                on_written=lambda: q.mark_journaled(entry.id),
            )  # fmt: skip
        if written:
            with contextlib.suppress(OutboxError):
                q.mark_journaled(entry.id)
        if raise_errors:
            raise exc
        return DepositOutcome(
            done.id, done.state, done.reason_fr, done.document_uids, exchanges=tuple(exchanges)
        )


def current_version(found: Sequence[DocumentEntry]) -> DocumentEntry:
    """Of the entries a GetDocuments returned for one uniqueId, the current version: not deprecated
    (a registry may also return the versions an update superseded), then the highest version number."""

    def key(e: DocumentEntry) -> tuple[bool, int]:
        try:
            version = int(e.version or 0)
        except ValueError:
            version = 0
        return (not str(e.status or "").endswith("Deprecated"), version)

    return max(found, key=key)


@dataclass(frozen=True)
class PreparedDocument:
    """What ``deposit_batch`` derived from one document's bytes (one parse), reused when sending them."""

    content: bytes
    visibility: Visibility
    entry: DocumentEntry
    c14n_sha256: bytes


@dataclass(frozen=True)
class PatientState:
    """A consistent copy of a patient handle's state."""

    status: DmpStatus | None
    status_at: float
    access_mode: AccessMode
    reason: str
    emergency_opposed: bool


class PatientHandle:
    """One patient in one session: the patient id, the DMP status (TD0.2, reused ``STATUS_TTL_S``) and the
    access mode (normal / bris de glace / centre 15 and its reason). Get it with ``session.patient(ref)``.
    Thread-safe: its state is guarded by a lock, a TD0.2 refresh runs once at a time."""

    def __init__(self, session: Session, ref: PatientRef) -> None:
        self.session = session
        self.ref = ref
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._status: DmpStatus | None = None
        self._status_at = 0.0
        self._access_mode = AccessMode.NORMAL
        self._reason = ""
        self._emergency_opposed = False

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> PatientId:
        return PatientId(self.ref.ins, self.ref.oid)

    def snapshot(self) -> PatientState:
        with self._lock:
            return PatientState(
                self._status, self._status_at, self._access_mode, self._reason, self._emergency_opposed
            )

    @property
    def status(self) -> DmpStatus | None:
        """The last TD0.2 answer (None before the first)."""
        with self._lock:
            return self._status

    @property
    def access_mode(self) -> AccessMode:
        with self._lock:
            return self._access_mode

    def access(self) -> tuple[AccessMode, str]:
        with self._lock:
            return self._access_mode, self._reason

    def purpose(self) -> tuple[Purpose, str]:
        with self._lock:
            return Purpose(self._access_mode.value), self._reason

    def _set(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, f"_{k}", v)

    def status_fresh(self) -> bool:
        with self._lock:
            return self._status is not None and time.monotonic() - self._status_at <= STATUS_TTL_S

    def _refresh_status(self, ctx: Context) -> DmpStatus:
        """TD0.2 when the status is stale; one refresh at a time (others wait and reuse it)."""
        with self._refresh_lock:
            if self.status_fresh():
                st = self.status
                assert st is not None
                return st
            return self.dmp_status(ctx=ctx).value

    # ------------------------------------------------------------------ TD0.2 / TD0.3
    def dmp_status(self, *, ctx: Context = DEFAULT_CONTEXT) -> Result[DmpStatus]:
        """TD0.2: existence, open/closed, my authorisation, médecin traitant flag."""
        s = self.session
        s._authorize(Action.STATUS, "dmp.status", self, ctx, refresh_status=False)
        purpose, reason = self.purpose()
        status, ex = s._dmp(
            "dmp.status", self,
            lambda: s.client.status(self.pid, purpose=purpose, reason=ctx.reason or reason), ctx,
        )  # fmt: skip
        self._set(status=status, status_at=time.monotonic())
        s._audit(
            "dmp.status", "success", self, ctx=ctx, exchanges=ex, detail=f"{status.authorisation or '-'}"
        )
        return Result(status, ex)

    def record_consent(
        self, *, how: str = "oral", medecin_traitant: bool = False, ctx: Context = DEFAULT_CONTEXT
    ) -> Result[DmpStatus]:
        """TD0.3 AJOUT after the patient consented (explicit user action, ACC-03); returns the new status."""
        s = self.session
        s._authorize(Action.CONSENT, "dmp.consent", self, ctx)
        ctx.report("Enregistrement de l'accord du patient", 0, 1)
        context, ex = s._dmp(
            "dmp.consent", self,
            lambda: s.client.set_authorization(self.pid, add=True, medecin_traitant=medecin_traitant), ctx,
        )  # fmt: skip
        s._audit(
            "dmp.consent", "success", self, ctx=ctx, exchanges=ex, detail=f"consentement {how}; {context}"
        )
        self._set(status=None)
        ctx.report("Enregistrement de l'accord du patient", 1, 1)
        st = self.dmp_status(ctx=ctx)
        return Result(st.value, ex + st.exchanges)

    def emergency_access(
        self, mode: AccessMode | str, reason: str, *, ctx: Context = DEFAULT_CONTEXT
    ) -> Result[EmergencyAccess]:
        """Open the record in bris de glace / centre 15 mode (until ``end_emergency_access``)."""
        s = self.session
        mode = AccessMode(mode)
        decision = s._authorize(
            Action.EMERGENCY,
            "dmp.emergency",
            self,
            ctx,
            refresh_status=False,
            access_mode=mode,
            reason=reason,
        )
        previous = self.access()
        ctx.report("Ouverture de l'accès en urgence", 0, 1)
        self._set(access_mode=mode, reason=reason.strip())
        try:
            status, ex = s._dmp(
                "dmp.emergency", self,
                lambda: s.client.status(self.pid, purpose=Purpose(mode.value), reason=reason), ctx,
            )  # fmt: skip
            self._set(status=status, status_at=time.monotonic())
            s._authorize(
                Action.EMERGENCY,
                "dmp.emergency",
                self,
                ctx,
                refresh_status=False,
                access_mode=mode,
                reason=reason,
            )
        except PsAgentError:
            self._set(access_mode=previous[0], reason=previous[1])
            raise
        with s._lock:  # kept until the access ends, even if this handle already left the recent ones
            s._emergency[(self.ref.ins, self.ref.oid)] = self
        s._audit(
            "dmp.emergency",
            "success",
            self,
            ctx=ctx,
            exchanges=ex,
            transaction="TD0.2",
            rule_id=decision.rule_id,
        )
        ctx.report("Ouverture de l'accès en urgence", 1, 1)
        return Result(
            EmergencyAccess(self.ref, mode, reason, decision.notice_fr, status), ex, (decision.notice_fr,)
        )

    def end_emergency_access(self, *, ctx: Context = DEFAULT_CONTEXT) -> None:
        """Back to normal access; journaled (the emergency mode and its reason are in the record)."""
        mode, _ = self.access()
        if mode is AccessMode.NORMAL:
            return
        self.session._audit(
            "dmp.emergency_end", "success", self, ctx=ctx, detail=f"fin de l'accès en urgence ({mode.value})"
        )
        self._set(access_mode=AccessMode.NORMAL, reason="")

    def authorised_professionals(
        self, *, mode: str = "TOUTE", ctx: Context = DEFAULT_CONTEXT
    ) -> Result[list[dict[str, str]]]:
        """TD1.6: who is authorised on (``ACTIVE``) or blocked from (``INTERDITE``) this DMP."""
        s = self.session
        act = "dmp.authorisations"
        s._authorize(Action.SEARCH, act, self, ctx)
        rows, ex = s._dmp(act, self, lambda: s.client.list_authorizations(self.pid, mode=mode), ctx)
        s._audit(
            act, "success", self, ctx=ctx, exchanges=ex, transaction="TD1.6", detail=f"{len(rows)} {mode}"
        )
        ctx.report("Liste des professionnels autorisés", 1, 1)
        return Result(rows, ex)

    # ------------------------------------------------------------------ TD3.1 / TD3.2
    def list_documents(
        self,
        *,
        rubric: str | None = None,
        filters: FindFilters | None = None,
        include_archived: bool = False,
        include_deprecated: bool = False,
        ctx: Context = DEFAULT_CONTEXT,
    ) -> Result[DocumentList]:
        """TD3.1 FindDocuments, optionally narrowed to a DMP rubric ("Comptes rendus", "Prévention"...)."""
        s = self.session
        s._authorize(Action.SEARCH, "dmp.search", self, ctx)
        f = filters or FindFilters()
        statuses = list(f.statuses)
        if include_archived and Status.ARCHIVED not in statuses:
            statuses.append(Status.ARCHIVED)
        if include_deprecated and Status.DEPRECATED not in statuses:
            statuses.append(Status.DEPRECATED)
        f = replace(f, statuses=tuple(statuses))
        purpose, reason = self.purpose()
        ctx.report("Recherche des documents", 0, 1)
        entries, ex = s._dmp(
            "dmp.search", self,
            lambda: s.client.find_documents(self.pid, f, purpose=purpose, reason=ctx.reason or reason), ctx,
        )  # fmt: skip
        if rubric:
            entries = [e for e in entries if rubric_of(e) == rubric]
        entries.sort(key=lambda e: e.creation_time, reverse=True)
        hidden = tuple(s.services.policy.hidden_types_explanation(s.identity))
        s._audit(
            "dmp.search", "success", self, ctx=ctx, exchanges=ex,
            document_ids=tuple(e.unique_id for e in entries),
            detail=f"{len(entries)} document(s)" + (f", rubrique {rubric}" if rubric else ""),
        )  # fmt: skip
        ctx.report("Recherche des documents", 1, 1)
        return Result(DocumentList(tuple(entries), hidden), ex)

    def _resolve(
        self, document: DocumentEntry | str, audit_action: str, ctx: Context, *, fresh: bool = False
    ) -> DocumentEntry:
        """The document's registry entry; by uniqueId (GetDocuments) when given a string or ``fresh``: an
        ITI-57 update (mask, unmask...) makes a NEW version entry (new entryUUID), so an entry listed
        earlier may be stale — updates resolve the current version right before sending."""
        if isinstance(document, DocumentEntry):
            if not fresh:
                return document
            document = document.unique_id
        s = self.session
        purpose, reason = self.purpose()
        found, _ = s._dmp(
            audit_action, self,
            lambda: s.client.get_documents(self.pid, unique_ids=[document], purpose=purpose, reason=reason),
            ctx, document_ids=(document,),
        )  # fmt: skip
        if not found:
            s._audit(audit_action, "refused", self, ctx=ctx, document_ids=(document,), error_code="NOT_FOUND")
            message = "Ce document est introuvable dans le DMP (ou ne vous est pas accessible)."
            if s.services.policy.hidden_types_explanation(s.identity):
                # The DMP does not list what the habilitation matrix hides: say so rather than stay silent.
                message += (
                    " Certains types de documents ne sont pas accessibles à votre profession"
                    " (la liste des documents les indique)."
                )
            raise InvalidRequest(message, code="NOT_FOUND")
        return current_version(found)

    def retrieve(
        self, document: DocumentEntry | str, *, ctx: Context = DEFAULT_CONTEXT
    ) -> Result[RetrievedDocument]:
        """TD3.2: the document's bytes (checked against the registry hash)."""
        s = self.session
        s._authorize(Action.RETRIEVE, "dmp.retrieve", self, ctx)
        entry = self._resolve(document, "dmp.retrieve", ctx)
        s._authorize(Action.RETRIEVE, "dmp.retrieve", self, ctx, type_codes=[entry.type_code.code])
        purpose, reason = self.purpose()
        ctx.report("Lecture du document", 0, 1)

        def fetch() -> RetrievedDocument:
            try:
                return s.client.retrieve(self.pid, entry, purpose=purpose, reason=ctx.reason or reason)
            except DmpRefusal as exc:
                # The DMP's answer wins; say why when the habilitation matrix explains it (HAB-03).
                notice = s.services.policy.matrix_notice(s.identity, entry.type_code.code)
                if notice:
                    exc.message_fr = f"{notice} ({exc.message_fr})"
                    exc.args = (exc.message_fr,)
                raise

        doc, ex = s._dmp("dmp.retrieve", self, fetch, ctx, document_ids=(entry.unique_id,))
        s._audit("dmp.retrieve", "success", self, ctx=ctx, exchanges=ex, document_ids=(entry.unique_id,))
        ctx.report("Lecture du document", 1, 1)
        return Result(doc, ex)

    # ------------------------------------------------------------------ TD2.1
    def deposit(
        self,
        document: bytes,
        *,
        visibility: Visibility | None = None,
        replaces: DocumentEntry | str | None = None,
        ctx: Context = DEFAULT_CONTEXT,
    ) -> Result[DepositResult]:
        """TD2.1 of one CDA document (already built; a PDF goes through ``deposit_pdf``)."""
        return self.deposit_batch(
            [document], visibility=visibility, replaces=[replaces] if replaces else None, ctx=ctx
        )

    def deposit_pdf(
        self,
        pdf: bytes,
        *,
        type_code: str,
        title: str,
        patient_traits: Any,
        author: Any = None,
        visibility: Visibility | None = None,
        ctx: Context = DEFAULT_CONTEXT,
    ) -> Result[DepositResult]:
        """Wrap a PDF in a CDA level 1 (``cda.build.level1``) and deposit it; ``author`` defaults to the
        acting professional and his activity."""
        from cda import build

        if author is None:
            author = author_input_of(self.session.identity)
        data = build.level1(
            type_code=type_code, content=pdf, title=title, patient=patient_traits, author=author,
            media_type="application/pdf",
        )  # fmt: skip
        return self.deposit(data, visibility=visibility, ctx=ctx)

    def deposit_batch(
        self,
        documents: Sequence[bytes],
        *,
        visibility: Visibility | None = None,
        replaces: Sequence[DocumentEntry | str | None] | None = None,
        ctx: Context = DEFAULT_CONTEXT,
    ) -> Result[DepositResult]:
        """TD2.1 of several CDA documents in one submission set (one XAdES signature), through the deposit
        queue: written durably, intent journaled, then sent until registered, refused, or left WAITING in
        the queue (``DepositDeferred``). Registered but not journaled (full disk): ``AuditPending``."""
        from cda.parser import parse_element
        from cda.validate import check_deposit_ready
        from cda.xml import safe_parse
        from ps_agent.dmp.client import new_oid
        from ps_agent.dmp.xades import tree_digest

        s = self.session
        q = s.services.queue
        if not documents:
            raise InvalidRequest("Aucun document à envoyer.", code="EMPTY")
        ctx.check()
        vis = visibility or Visibility()
        prepared = []
        known: list[PreparedDocument] = []
        reps = list(replaces or [None] * len(documents))
        for i, data in enumerate(documents):
            try:
                root = safe_parse(data)  # parsed once: the gate, the metadata and the XAdES digest
                check_deposit_ready(root)  # the built-in CI-SIS rules: refuse locally what the DMP would
                entry, md = entry_from_cda(data, self.ref, vis, doc=parse_element(root))
                digest = tree_digest(root, data)  # the tree parsed from exactly these bytes
            except (CdaError, InvalidRequest) as exc:
                code = getattr(exc, "code", None) or type(exc).__name__
                s._audit(
                    "dmp.deposit", "refused", self, ctx=ctx, transaction="TD2.1", error_code=str(code),
                    detail=f"document n° {i + 1} refusé avant envoi",
                )  # fmt: skip
                raise
            prepared.append((entry, md, data, reps[i] if i < len(reps) else None))
            known.append(PreparedDocument(data, vis, entry, digest))
        # Only the LOCAL rules here (role, mode, INS, purpose...: no exchange). The DMP's status (TD0.2) and
        # the rules that need it are checked once the document is queued, inside the entry's resolution: a
        # transient failure of that check leaves the entry WAITING, never a false refusal (issue 8.1).
        s._authorize_local(
            Action.DEPOSIT, "dmp.deposit", self, ctx, type_codes=[p[0].type_code.code for p in prepared]
        )
        replaced_uids: list[str] = []
        replaced_uuids: list[str] = []
        for _, md, _, rep in prepared:
            target = rep or (md.replaced_document_id or None)
            if target is None:
                replaced_uids.append("")
                replaced_uuids.append("")
            elif isinstance(target, DocumentEntry):  # the caller's entry (no GetDocuments: AIR may not read)
                replaced_uids.append(target.unique_id)
                replaced_uuids.append(target.entry_uuid)
            else:  # a uniqueId: its entryUUID is resolved (GetDocuments) inside the send, after queueing
                replaced_uids.append(target)
                replaced_uuids.append("")
        uids = tuple(p[0].unique_id for p in prepared)
        first_author = prepared[0][0].authors[0] if prepared[0][0].authors else None
        session_author = getattr(s.credentials, "author", None)
        if s.mode != AuthMode.DIRECTE and isinstance(session_author, ProfessionalIdentity):
            first_author = author_of(session_author)
        on_behalf = first_author.id_nat if s.mode != AuthMode.DIRECTE and first_author is not None else ""
        sha1s = tuple(p[0].hash for p in prepared)  # the XDS hash: SHA-1 of the same bytes, computed once
        try:
            same = q.find_same(uids, tuple(documents), document_sha1=sha1s)
        except OutboxError:
            same = None
        if same is not None and same.state in (EntryState.REGISTERED, *ACTIVE_STATES):
            return self._deposit_again(same, ctx)
        entry_id = new_oid()
        queued = q.add(  # durable before the first byte is sent
            entry_id,
            (self.ref.ins, self.ref.oid, self.ref.ins_status),
            uids,
            tuple(documents),
            (vis.masked_to_professionals, vis.invisible_to_patient, vis.invisible_to_legal_representatives),
            tuple(replaced_uids),
            replaces_entry_uuids=tuple(replaced_uuids),
            titles=tuple(p[0].title for p in prepared),
            actor_id_nat=s.identity.id_nat,
            on_behalf_of=on_behalf,
            claim=True,
            document_sha1=sha1s,
        )
        try:  # the intent, before anything is sent (issue 8.2)
            s._audit(
                "dmp.deposit", "pending", self, ctx=ctx, transaction="TD2.1", document_ids=uids,
                on_behalf_of=on_behalf, detail=f"lot {entry_id} : intention d'envoi",
            )  # fmt: skip
        except AuditError as exc:
            with contextlib.suppress(OutboxError):  # if even that fails, its claim expires: same outcome
                q.mark_waiting(
                    entry_id, "le journal d'audit ne peut pas être écrit", INTENT_NOT_JOURNALED, 0.0
                )
            raise AuditError(
                "Le journal d'audit ne peut pas être écrit (disque plein ?) : le document n'est pas envoyé ; "
                "il est gardé dans la file d'envoi et partira quand le journal pourra être écrit.",
                code="AUDIT_WRITE",
            ) from exc
        outcome = s._send_entry(
            queued, ctx, inline_retries=s.services.config.deposit_retries, raise_errors=True, known=known
        )
        assert outcome.result is not None
        return Result(outcome.result, outcome.exchanges, (outcome.reason_fr,) if outcome.reason_fr else ())

    def _deposit_again(self, same: QueuedDeposit, ctx: Context) -> Result[DepositResult]:
        """The same documents (uniqueIds and content) handed again — after a crash, a full disk, a second
        click: the entry that already holds them answers, never a second entry. Registered: said so
        (nothing is sent). Still open: that entry is sent now, or left to whoever is sending it."""
        s = self.session
        q = s.services.queue
        if same.state is EntryState.REGISTERED:
            note = "déjà enregistré (document déjà déposé depuis ce poste)"
            s._audit_or_keep(
                "dmp.deposit", "success", self, ctx=ctx, transaction="TD2.1", document_ids=same.document_uids,
                on_behalf_of=same.on_behalf_of, detail=f"lot {same.id} ; {note}",
            )  # fmt: skip
            ctx.report("Dépôt terminé", 3, 3)
            result = DepositResult(same.id, same.document_uids, recovered=True, attempts=same.attempts)
            return Result(result, (), (note,))
        claimed = q.claim(same.id)
        if claimed is None:
            cur = q.get(same.id) or same
            if cur.state is EntryState.REGISTERED:
                return self._deposit_again(cur, ctx)
            raise DepositDeferred(
                f"Ce document est déjà dans la file d'envoi ({cur.state.label_fr}) : il n'est pas envoyé "
                "une seconde fois ; il partira ou est en train de partir avec cet envoi.",
                entry=cur,
                code="ALREADY_QUEUED",
            )
        outcome = s._send_entry(
            claimed, ctx, inline_retries=s.services.config.deposit_retries, raise_errors=True
        )
        assert outcome.result is not None
        return Result(outcome.result, outcome.exchanges, (outcome.reason_fr,) if outcome.reason_fr else ())

    # ------------------------------------------------------------------ TD3.3
    def _update(
        self,
        action: Action,
        audit_action: str,
        document: DocumentEntry | str,
        fn: Callable[[DocumentEntry], None],
        ctx: Context,
    ) -> Result[None]:
        s = self.session
        s._authorize(action, audit_action, self, ctx)
        step = UPDATE_STEPS_FR.get(action, "Mise à jour du document")
        ctx.report(step, 0, 2)
        entry = self._resolve(document, audit_action, ctx, fresh=True)
        ctx.report(step, 1, 2)
        _, ex = s._dmp(audit_action, self, lambda: fn(entry), ctx, document_ids=(entry.unique_id,))
        s._audit(
            audit_action,
            "success",
            self,
            ctx=ctx,
            exchanges=ex,
            transaction="TD3.3",
            document_ids=(entry.unique_id,),
        )
        ctx.report(step, 2, 2)
        return Result(None, ex)

    def mask(self, document: DocumentEntry | str, *, ctx: Context = DEFAULT_CONTEXT) -> Result[None]:
        """TD3.3a: mask the document to other professionals (MASQUE_PS)."""
        client = self.session.client

        def go(e: DocumentEntry) -> None:
            v = e.visibility
            if v.invisible_to_patient:
                raise InvalidRequest(
                    "Un document invisible pour le patient ne peut pas être masqué aux professionnels.",
                    code="PAT-03",
                )
            client.update_visibility(self.pid, e, replace(v, masked_to_professionals=True))

        return self._update(Action.MASK, "dmp.mask", document, go, ctx)

    def unmask(self, document: DocumentEntry | str, *, ctx: Context = DEFAULT_CONTEXT) -> Result[None]:
        client = self.session.client
        return self._update(
            Action.UNMASK, "dmp.unmask", document,
            lambda e: client.update_visibility(
                self.pid, e, replace(e.visibility, masked_to_professionals=False)
            ),
            ctx,
        )  # fmt: skip

    def make_visible(
        self,
        document: DocumentEntry | str,
        *,
        to_legal_representatives: bool = False,
        ctx: Context = DEFAULT_CONTEXT,
    ) -> Result[None]:
        """TD3.3b: make visible to the patient (and, irreversibly, to legal representatives)."""
        client = self.session.client

        def go(e: DocumentEntry) -> None:
            v = replace(e.visibility, invisible_to_patient=False)
            if to_legal_representatives:
                v = replace(v, invisible_to_legal_representatives=False)
            client.update_visibility(self.pid, e, v)

        return self._update(Action.MAKE_VISIBLE, "dmp.make_visible", document, go, ctx)

    def archive(self, document: DocumentEntry | str, *, ctx: Context = DEFAULT_CONTEXT) -> Result[None]:
        client = self.session.client
        return self._update(
            Action.ARCHIVE, "dmp.archive", document,
            lambda e: client.update_status(self.pid, e, Status.ARCHIVED), ctx,
        )  # fmt: skip

    def unarchive(self, document: DocumentEntry | str, *, ctx: Context = DEFAULT_CONTEXT) -> Result[None]:
        client = self.session.client
        return self._update(
            Action.UNARCHIVE, "dmp.unarchive", document,
            lambda e: client.update_status(self.pid, e, Status.APPROVED), ctx,
        )  # fmt: skip

    def delete(self, document: DocumentEntry | str, *, ctx: Context = DEFAULT_CONTEXT) -> Result[None]:
        """TD3.3c: delete (only the author may)."""
        client = self.session.client
        return self._update(
            Action.DELETE, "dmp.delete", document,
            lambda e: client.update_status(self.pid, e, Status.DELETED), ctx,
        )  # fmt: skip

    # ------------------------------------------------------------------ vaccinations
    def vaccination_status(self, *, ctx: Context = DEFAULT_CONTEXT) -> Result[list[Any]]:
        """All vaccinations of VAC-NOTE, VAC, VSM and IPS documents, merged (duplicates removed), by date.

        The documents are read with ``DmpClient.retrieve_many`` (several DocumentRequest per TD3.2
        request: TD3.1 + 2 × TD3.2 for 200 documents), up to ``VACCINATION_FETCH_WORKERS`` requests at
        once; progress is reported per request answered; the one audit record lists every exchange.
        Cancellable: ``ctx.cancel`` stops it within ``CANCEL_LATENCY_S`` (requests in flight are dropped)."""
        import cda
        from cda import vaccinations
        from ps_agent.dmp.client import retrieve_chunks

        s = self.session
        listing = self.list_documents(ctx=replace(ctx, progress=None))
        docs = [e for e in listing.value if is_vaccination_document(e)]
        readable = [
            e for e in docs  # what the matrix hides is explained by list_documents; skip it here
            if s._decide(Action.RETRIEVE, self, ctx, type_code=e.type_code.code).allowed
        ]  # fmt: skip
        purpose, reason = self.purpose()
        total = len(readable)
        ids = tuple(e.unique_id for e in readable)
        step = "Lecture des documents de vaccination"
        ctx.report(step, 0, total)

        # several DocumentRequest per TD3.2 request (ITI-43): 200 documents are 2 round trips, not 200
        chunks = retrieve_chunks(readable)

        def fetch_chunk(chunk: Sequence[DocumentEntry]) -> list[RetrievedDocument]:
            return s.client.retrieve_many(self.pid, chunk, purpose=purpose, reason=ctx.reason or reason)

        def fetch_all() -> list[RetrievedDocument]:
            out: list[list[RetrievedDocument] | None] = [None] * len(chunks)
            done_q: queue_mod.Queue[Future[Any] | None] = queue_mod.Queue()
            remove = (
                ctx.cancel.on_cancel(lambda: done_q.put(None)) if ctx.cancel is not None else (lambda: None)
            )
            pool = ThreadPoolExecutor(
                max_workers=VACCINATION_FETCH_WORKERS, thread_name_prefix="ps-agent-vac"
            )
            try:
                futures: dict[Future[Any], int] = {}
                for i, chunk in enumerate(chunks):
                    # in a copy of this thread's context: each chunk's exchanges land in the recorder of
                    # s._dmp, so the audit record (success, refusal, error or cancellation) lists them all
                    submitted = pool.submit(contextvars.copy_context().run, fetch_chunk, chunk)
                    futures[submitted] = i
                    submitted.add_done_callback(done_q.put)
                done = 0
                for _ in chunks:
                    ctx.check()
                    try:
                        fut = done_q.get(timeout=ctx.remaining())
                    except queue_mod.Empty:
                        ctx.check()
                        raise Cancelled() from None
                    if fut is None:
                        ctx.check()
                        raise Cancelled()
                    got = fut.result()
                    out[futures[fut]] = got
                    done += len(got)
                    ctx.report(step, done, total)  # progress per request answered
            finally:
                remove()
                pool.shutdown(wait=False, cancel_futures=True)
            return [d for got in out if got is not None for d in got]

        # fetch_all watches ctx.cancel / ctx.deadline itself (in this thread): no extra worker around it
        contents, exchanges = s._dmp(
            "dmp.retrieve", self, fetch_all, replace(ctx, cancel=None, deadline=None),
            transaction="TD3.2", document_ids=ids,
        )  # fmt: skip
        # one record for the whole read, written before any vaccination is returned
        s._audit(
            "dmp.retrieve", "success", self, ctx=ctx, exchanges=tuple(exchanges), transaction="TD3.2",
            document_ids=ids, detail=f"statut vaccinal : {total} document(s)",
        )  # fmt: skip
        groups = [vaccinations.extract(cda.parse(d.content)) for d in contents]
        return Result(vaccinations.merge(*groups), listing.exchanges + tuple(exchanges))

    def record_vaccination(
        self, note: bytes | None = None, *, ctx: Context = DEFAULT_CONTEXT, **builder_args: Any
    ) -> Result[DepositResult]:
        """Deposit a vaccination note (VAC-NOTE): given bytes, or built by ``cda.build.vaccination_note``."""
        if note is None:
            from cda import build

            note = build.vaccination_note(**builder_args)
        return self.deposit(note, ctx=ctx)


__all__ = [
    "EMERGENCY_REFUSAL_CODES",
    "STATUS_TTL_S",
    "VACCINATION_FETCH_WORKERS",
    "AuditPending",
    "DepositDeferred",
    "DepositOutcome",
    "DocumentList",
    "EmergencyAccess",
    "EntryNotResumable",
    "PatientHandle",
    "PatientState",
    "Result",
    "Session",
    "dmp_state",
]
