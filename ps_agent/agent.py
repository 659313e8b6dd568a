"""``Agent``: a thin convenience facade (the long-lived ``Services`` + one ``Session``) with the method
names the CLI and earlier callers use, taking a ``PatientRef`` and returning plain values.

New code should use the shape underneath (see ``docs/agent.md``)::

    services = Services(config)                       # journal, deposit queue, policy, events
    session = services.open_session(credentials)      # one per credential (card, PKCS#11, establishment)
    handle = session.patient(PatientRef(ins, oid))    # DMP status + access mode of one patient
    handle.retrieve(uid, ctx=Context(cancel=token)).value

Errors: ``AccessDenied`` subclasses (local refusal, with ``rule_id``), ``DmpError`` subclasses
(``TransportError`` may be retried — ``DepositDeferred``: the deposit waits in the queue —, ``DmpRefusal``
never, ``ProtocolError`` = unusable answer), ``CdaError`` for an invalid document, ``AuthError`` when the
card/session ended, ``AuditPending`` when a deposit is registered but its audit record waits for disk space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx

from ps_agent.access.policy import AccessMode, AccessPolicy, PatientRef
from ps_agent.audit.journal import AuditJournal
from ps_agent.auth.model import Credentials
from ps_agent.config import AgentConfig
from ps_agent.context import Context, Progress
from ps_agent.dmp.client import DepositResult, DmpClient
from ps_agent.dmp.ebrim import FindFilters
from ps_agent.dmp.errors import InvalidRequest
from ps_agent.dmp.hl7 import DmpStatus
from ps_agent.dmp.metadata import (
    PRACTICE_SETTING_BY_SECTOR,
    author_input_of,
    entry_from_cda,
    is_vaccination_document,
    rubric_of,
)
from ps_agent.dmp.model import DocumentEntry, RetrievedDocument, Visibility
from ps_agent.outbox import QueuedDeposit
from ps_agent.services import Services
from ps_agent.session import (
    EMERGENCY_REFUSAL_CODES,
    STATUS_TTL_S,
    VACCINATION_FETCH_WORKERS,
    AuditPending,
    DepositDeferred,
    DepositOutcome,
    DocumentList,
    EmergencyAccess,
    PatientHandle,
    Session,
    dmp_state,
)


def _ctx(progress: Progress | None, ctx: Context | None) -> Context:
    if ctx is None:
        return Context(progress=progress)
    return ctx if progress is None else Context(**{**ctx.__dict__, "progress": progress})


class Agent:
    """``Services`` + one ``Session`` for one credential: ``Agent(credentials, config)``; a context
    manager, or call ``close()`` (closes the session, the queue and the journal; not the credential)."""

    def __init__(
        self,
        credentials: Credentials,
        config: AgentConfig,
        *,
        policy: AccessPolicy | None = None,
        journal: AuditJournal | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
        services: Services | None = None,
    ) -> None:
        self._own_services = services is None
        self.services = services or Services(config, policy=policy, journal=journal, clock=clock)
        self.config = config
        self.policy = self.services.policy
        try:
            self.session: Session = self.services.open_session(credentials, transport=transport)
        except BaseException:
            if self._own_services:
                self.services.close()
            raise

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> DmpClient:
        return self.session.client

    @property
    def events(self) -> Any:
        return self.services.events

    def close(self) -> None:
        self.session.close()
        if self._own_services:
            self.services.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def audit(self) -> AuditJournal:
        """The audit journal (``records()``, ``verify()``, ``export_fhir()``, ``export_csv()``)."""
        return self.services.journal

    def patient(self, patient: PatientRef) -> PatientHandle:
        return self.session.patient(patient)

    # ------------------------------------------------------------------ TD0.x
    def dmp_status(self, patient: PatientRef, *, ctx: Context | None = None) -> DmpStatus:
        return self.patient(patient).dmp_status(ctx=_ctx(None, ctx)).value

    def record_consent(
        self,
        patient: PatientRef,
        *,
        how: str = "oral",
        medecin_traitant: bool = False,
        ctx: Context | None = None,
    ) -> DmpStatus:
        return (
            self.patient(patient)
            .record_consent(how=how, medecin_traitant=medecin_traitant, ctx=_ctx(None, ctx))
            .value
        )

    def emergency_access(
        self, patient: PatientRef, mode: AccessMode | str, reason: str, *, ctx: Context | None = None
    ) -> EmergencyAccess:
        return self.patient(patient).emergency_access(mode, reason, ctx=_ctx(None, ctx)).value

    def end_emergency_access(self, patient: PatientRef, *, ctx: Context | None = None) -> None:
        self.patient(patient).end_emergency_access(ctx=_ctx(None, ctx))

    def authorised_professionals(
        self, patient: PatientRef, *, mode: str = "TOUTE", ctx: Context | None = None
    ) -> list[dict[str, str]]:
        return self.patient(patient).authorised_professionals(mode=mode, ctx=_ctx(None, ctx)).value

    def authorised_patients(
        self, since: datetime, *, date_type: str = "LASTAUTORIZATION", ctx: Context | None = None
    ) -> list[dict[str, str]]:
        return self.session.authorised_patients(since, date_type=date_type, ctx=_ctx(None, ctx)).value

    # ------------------------------------------------------------------ TD3.1 / TD3.2
    def list_documents(
        self,
        patient: PatientRef,
        *,
        rubric: str | None = None,
        filters: FindFilters | None = None,
        include_archived: bool = False,
        include_deprecated: bool = False,
        ctx: Context | None = None,
    ) -> DocumentList:
        return self.patient(patient).list_documents(
            rubric=rubric, filters=filters, include_archived=include_archived,
            include_deprecated=include_deprecated, ctx=_ctx(None, ctx),
        ).value  # fmt: skip

    def retrieve(
        self, patient: PatientRef, document: DocumentEntry | str, *, ctx: Context | None = None
    ) -> RetrievedDocument:
        return self.patient(patient).retrieve(document, ctx=_ctx(None, ctx)).value

    # ------------------------------------------------------------------ TD2.1
    def deposit(
        self,
        patient: PatientRef,
        document: bytes,
        *,
        visibility: Visibility | None = None,
        replaces: DocumentEntry | str | None = None,
        progress: Progress | None = None,
        ctx: Context | None = None,
    ) -> DepositResult:
        return (
            self.patient(patient)
            .deposit(document, visibility=visibility, replaces=replaces, ctx=_ctx(progress, ctx))
            .value
        )

    def deposit_pdf(
        self,
        patient: PatientRef,
        pdf: bytes,
        *,
        type_code: str,
        title: str,
        patient_traits: Any,
        author: Any = None,
        visibility: Visibility | None = None,
        progress: Progress | None = None,
        ctx: Context | None = None,
    ) -> DepositResult:
        return self.patient(patient).deposit_pdf(
            pdf, type_code=type_code, title=title, patient_traits=patient_traits, author=author,
            visibility=visibility, ctx=_ctx(progress, ctx),
        ).value  # fmt: skip

    def deposit_batch(
        self,
        patient: PatientRef,
        documents: Sequence[bytes],
        *,
        visibility: Visibility | None = None,
        replaces: Sequence[DocumentEntry | str | None] | None = None,
        progress: Progress | None = None,
        ctx: Context | None = None,
    ) -> DepositResult:
        return (
            self.patient(patient)
            .deposit_batch(documents, visibility=visibility, replaces=replaces, ctx=_ctx(progress, ctx))
            .value
        )

    # ------------------------------------------------------------------ deposit queue
    def pending_deposits(self) -> list[QueuedDeposit]:
        """Queue entries without a definite outcome yet (pending, sending, waiting)."""
        return self.services.queue.pending()

    def queue_entries(self) -> list[QueuedDeposit]:
        return self.services.queue.entries()

    def resume_pending(
        self, *, progress: Progress | None = None, ctx: Context | None = None, all_entries: bool = True
    ) -> list[DepositOutcome]:
        """Send the queue's entries (each on its own); one ``DepositOutcome`` per entry tried."""
        return self.session.resume(ctx=_ctx(progress, ctx), all_entries=all_entries)

    def resume_entry(
        self, entry_id: str, *, progress: Progress | None = None, ctx: Context | None = None
    ) -> DepositOutcome:
        """Send one entry of the queue now (``Session.resume_entry``: ``EntryNotFound``,
        ``EntryNotResumable``)."""
        return self.session.resume_entry(entry_id, ctx=_ctx(progress, ctx))

    def hand_back(self, entry_id: str, write: Callable[[QueuedDeposit], None]) -> QueuedDeposit:
        return self.session.hand_back(entry_id, write)

    # ------------------------------------------------------------------ TD3.3
    def mask(self, patient: PatientRef, document: DocumentEntry | str, *, ctx: Context | None = None) -> None:
        self.patient(patient).mask(document, ctx=_ctx(None, ctx))

    def unmask(
        self, patient: PatientRef, document: DocumentEntry | str, *, ctx: Context | None = None
    ) -> None:
        self.patient(patient).unmask(document, ctx=_ctx(None, ctx))

    def make_visible(
        self,
        patient: PatientRef,
        document: DocumentEntry | str,
        *,
        to_legal_representatives: bool = False,
        ctx: Context | None = None,
    ) -> None:
        self.patient(patient).make_visible(
            document, to_legal_representatives=to_legal_representatives, ctx=_ctx(None, ctx)
        )

    def archive(
        self, patient: PatientRef, document: DocumentEntry | str, *, ctx: Context | None = None
    ) -> None:
        self.patient(patient).archive(document, ctx=_ctx(None, ctx))

    def unarchive(
        self, patient: PatientRef, document: DocumentEntry | str, *, ctx: Context | None = None
    ) -> None:
        self.patient(patient).unarchive(document, ctx=_ctx(None, ctx))

    def delete(
        self, patient: PatientRef, document: DocumentEntry | str, *, ctx: Context | None = None
    ) -> None:
        self.patient(patient).delete(document, ctx=_ctx(None, ctx))

    # ------------------------------------------------------------------ vaccinations
    def vaccination_status(
        self, patient: PatientRef, *, progress: Progress | None = None, ctx: Context | None = None
    ) -> list[Any]:
        return self.patient(patient).vaccination_status(ctx=_ctx(progress, ctx)).value

    def record_vaccination(
        self,
        patient: PatientRef,
        note: bytes | None = None,
        *,
        progress: Progress | None = None,
        ctx: Context | None = None,
        **builder_args: Any,
    ) -> DepositResult:
        return self.patient(patient).record_vaccination(note, ctx=_ctx(progress, ctx), **builder_args).value


__all__ = [
    "EMERGENCY_REFUSAL_CODES",
    "PRACTICE_SETTING_BY_SECTOR",
    "STATUS_TTL_S",
    "VACCINATION_FETCH_WORKERS",
    "Agent",
    "AuditPending",
    "DepositDeferred",
    "DocumentList",
    "EmergencyAccess",
    "InvalidRequest",
    "author_input_of",
    "dmp_state",
    "entry_from_cda",
    "is_vaccination_document",
    "rubric_of",
]
