"""The public API of the agent: one ``Agent`` per authenticated session, shaped by users' journeys.

Every operation: (1) asks the access policy (``ps_agent.access``) before anything leaves the
machine, (2) runs the DMP transactions (``ps_agent.dmp``), (3) appends an audit record
(``ps_agent.audit``) — refusals and errors included — *before* returning patient data.
The DMP's own answer always wins over the local policy.

Errors: ``AccessDenied`` subclasses (local refusal, with ``rule_id``), ``DmpError`` subclasses
(``TransportError`` may be retried, ``DmpRefusal`` never, ``ProtocolError`` = unusable answer),
``CdaError`` for an invalid document, ``AuthError`` when the card/session ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from cda.errors import CdaError
from cda.parser import parse_element
from cda.validate import check_deposit_ready
from cda.xml import safe_parse
from ps_agent.access.policy import AccessMode, AccessPolicy, Action, Decision, DmpState, PatientRef
from ps_agent.audit.framelog import FrameLog
from ps_agent.audit.journal import AuditEvent, AuditJournal
from ps_agent.auth.model import AuthMode, Credentials, ProfessionalIdentity
from ps_agent.config import AgentConfig
from ps_agent.dmp.client import DepositResult, DmpClient, Progress, author_of
from ps_agent.dmp.ebrim import DepositItem, FindFilters
from ps_agent.dmp.errors import DmpRefusal, ProtocolError
from ps_agent.dmp.hl7 import Authorisation, DmpStatus
from ps_agent.dmp.model import (
    Author,
    Code,
    DocumentEntry,
    PatientId,
    RetrievedDocument,
    Status,
    Visibility,
    parse_xds_time,
)
from ps_agent.dmp.vihf import Purpose
from ps_agent.errors import AccessDenied, PsAgentError
from ps_agent.outbox import Outbox, PendingDeposit

log = logging.getLogger(__name__)

# Document types whose entries make up the vaccination status (issue 5: VAC-NOTE, VAC, VSM, IPS);
# completed at run time by ``cda.classify`` (types shown in the carnet vaccinal).
VACCINATION_TYPE_CODES = frozenset({"87273-9", "11369-6", "SYNTH", "60591-5"})
VACCINATION_FORMAT_CODES = frozenset(
    {
        "urn:asip:ci-sis:vac-note:2021",
        "urn:asip:ci-sis:vac:2014",
        "urn:asip:ci-sis:vsm:2012",
        "urn:asip:ci-sis:ips:2024",
    }
)


# practiceSettingCode of a PDF wrapped by the agent, from the activity sector [I]: establishments
# (SA01-SA09 except the SA07/SA08 cabinets) → ETABLISSEMENT, the rest ambulatory.
PRACTICE_SETTING_BY_SECTOR = {f"SA0{n}": "ETABLISSEMENT" for n in (1, 2, 3, 4, 5, 6, 9)}

# How long a TD0.2 answer is reused for the same patient before asking again [I]: long enough for one
# consultation, short enough to see a patient's new block or closure within the session.
STATUS_TTL_S = 300.0

# Parallel TD3.2 reads for the vaccination status (a few, to stay polite with the DMP) [I].
VACCINATION_FETCH_WORKERS = 4


class InvalidRequest(PsAgentError):
    """The caller asked for something impossible before any exchange (bad visibility, unknown document)."""


def _patient_id(patient: PatientRef) -> PatientId:
    return PatientId(patient.ins, patient.oid)


@dataclass(frozen=True)
class DocumentList:
    """A TD3.1 answer for the UI: entries plus French explanations of what may be missing."""

    entries: tuple[DocumentEntry, ...]
    hidden_explanations: tuple[str, ...] = ()  # what the habilitation matrix hides from this profession
    notices: tuple[str, ...] = ()

    def __iter__(self):  # type: ignore[no-untyped-def]
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


@dataclass
class _PatientState:
    status: DmpStatus | None = None
    status_at: float = 0.0  # time.monotonic() of the TD0.2 answer
    access_mode: AccessMode = AccessMode.NORMAL
    reason: str = ""
    emergency_opposed: bool = False  # the DMP refused an emergency access (see EMERGENCY_REFUSAL_CODES)


# [I] TD0.2 carries no "opposed to emergency access" flag in the spec: the agent learns it from the DMP's
# refusal of a bris de glace / centre 15 request (this code, last segment of the fault/status code) and
# then refuses further emergency attempts on that patient locally (URG-01/URG-06) for the session.
EMERGENCY_REFUSAL_CODES = frozenset({"DMPEmergencyAccessRefused"})


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


def entry_from_cda(
    data: bytes, patient: PatientRef, visibility: Visibility, *, doc: Any = None
) -> tuple[DocumentEntry, Any]:
    """Parse a CDA (unless ``doc``, its already parsed ``cda.parse`` model, is given), derive its XDS
    metadata (``cda.metadata``) and turn them into a ``DocumentEntry``."""
    import cda
    from cda import metadata as cda_metadata

    if doc is None:
        doc = cda.parse(data)
    md = cda_metadata.derive(doc, data)

    def code(c: Any) -> Code:
        return Code(c.code, c.code_system, c.display_name) if c is not None else Code("", "")

    if not md.patient_id:
        raise InvalidRequest("Le document n'identifie pas le patient par son INS.", code="NO_INS")
    try:
        doc_patient = PatientId.parse_cx(md.patient_id)
    except ValueError as exc:
        raise InvalidRequest("L'INS du patient du document est illisible.", code="BAD_INS") from exc
    if (doc_patient.matricule, doc_patient.oid) != (patient.ins, patient.oid):
        raise InvalidRequest(
            "Le document concerne un autre patient que celui sélectionné : il n'est pas envoyé.",
            code="PATIENT_MISMATCH",
        )
    authors = []
    for a in md.authors:
        spec = None
        if a.specialty:
            p = a.specialty.split("^")
            spec = Code(p[0], p[2] if len(p) > 2 else "", p[1] if len(p) > 1 else "")
        authors.append(Author.from_xcn(a.person, a.institution, spec, a.role))
    if visibility.masked_to_professionals and visibility.invisible_to_patient:
        # PAT-03: cumul-invisible_patient-masque_ps=false on the DMP
        raise InvalidRequest(
            "Un document ne peut pas être à la fois masqué aux professionnels et invisible pour le patient.",
            code="PAT-03",
        )
    created = parse_xds_time(md.creation_time)
    entry = DocumentEntry(
        unique_id=md.unique_id,
        patient_id=doc_patient,
        type_code=code(md.type_code),
        class_code=code(md.class_code),
        format_code=code(md.format_code),
        healthcare_facility_type=code(md.healthcare_facility_type),
        practice_setting=code(md.practice_setting),
        creation_time=created or datetime.now().astimezone(),
        title=md.title,
        mime_type=md.mime_type,
        language=md.language_code,
        authors=tuple(authors),
        confidentiality=visibility.codes(),
        event_codes=tuple(code(c) for c in md.event_codes),
        service_start=parse_xds_time(md.service_start_time),
        service_stop=parse_xds_time(md.service_stop_time),
        legal_authenticator=md.legal_authenticator,
        source_patient_id=md.source_patient_id,
        source_patient_info=md.source_patient_info,
        hash=md.hash,
        size=md.size,
    )
    return entry, md


class Agent:
    """One authenticated professional (``Credentials``) talking to one DMP environment.

    ``Agent(credentials, config)``; use as a context manager or call ``close()``.
    """

    def __init__(
        self,
        credentials: Credentials,
        config: AgentConfig,
        *,
        policy: AccessPolicy | None = None,
        journal: AuditJournal | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._creds = credentials
        self.config = config
        self.policy = policy or AccessPolicy()
        config.home.mkdir(parents=True, exist_ok=True)
        self._journal = journal or AuditJournal(config.audit_path, clock=clock)
        self._frames = FrameLog(config.home / "frames.jsonl", enabled=config.frame_log)
        self.client = DmpClient(
            credentials,
            config.environment,
            config.lps,
            transport=transport,
            frame_recorder=self._frames.record,
            deposit_retries=config.deposit_retries,
        )
        self._patients: dict[tuple[str, str], _PatientState] = {}
        self._outbox = Outbox(config.home / "outbox.sqlite3")

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self.client.close()
        self._outbox.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def audit(self) -> AuditJournal:
        """The audit journal (``records()``, ``verify()``, ``export_fhir()``, ``export_csv()``)."""
        return self._journal

    def _state(self, patient: PatientRef) -> _PatientState:
        return self._patients.setdefault((patient.ins, patient.oid), _PatientState())

    def _purpose(self, patient: PatientRef) -> tuple[Purpose, str]:
        st = self._state(patient)
        return Purpose(st.access_mode.value), st.reason

    def _event(self, action: str, outcome: str, patient: PatientRef | None, **kw: Any) -> AuditEvent:
        ident = self._creds.identity
        st = self._state(patient) if patient is not None else _PatientState()
        kw.setdefault("access_mode", st.access_mode.value)
        if st.access_mode is not AccessMode.NORMAL:
            kw.setdefault("reason", st.reason)
        kw.setdefault("transaction", self.client.last.transaction)
        return AuditEvent(
            action=action,
            outcome=outcome,
            actor_id_nat=ident.id_nat,
            actor_name=ident.display_name,
            actor_profession=ident.profession_code or ident.non_ps_role,
            auth_mode=self._creds.mode.value,
            card_serial=ident.extra.get("card_serial", ""),
            structure_id=ident.activity.structure_id if ident.activity else "",
            patient_ins=patient.ins_with_oid if patient is not None else "",
            **kw,
        )

    def _audit(self, action: str, outcome: str, patient: PatientRef | None, **kw: Any) -> None:
        self._journal.append(self._event(action, outcome, patient, **kw))

    def _check(
        self,
        action: Action,
        audit_action: str,
        patient: PatientRef,
        *,
        type_code: str | None = None,
        **kw: Any,
    ) -> Decision:
        """Ask the policy; a refusal is audited then raised."""
        st = self._state(patient)
        try:
            return self.policy.check(
                action,
                identity=self._creds.identity,
                mode=self._creds.mode,
                patient=patient,
                dmp=dmp_state(st.status, emergency_opposed=st.emergency_opposed)
                if st.status is not None
                else None,
                access_mode=kw.pop("access_mode", st.access_mode),
                reason=kw.pop("reason", st.reason),
                type_code=type_code,
                **kw,
            )
        except AccessDenied as exc:
            self._audit(
                audit_action,
                "refused",
                patient,
                transaction="",
                error_code=str(exc.code or ""),
                rule_id=getattr(exc, "rule_id", "") or str(exc.code or ""),
                detail=exc.message_fr,
            )
            raise

    def _run(self, audit_action: str, patient: PatientRef, fn: Callable[[], Any], **kw: Any) -> Any:
        """Run DMP calls; errors are audited (refused/error) and re-raised."""
        try:
            return fn()
        except DmpRefusal as exc:
            last = str(exc.code or "").replace(":", "/").rsplit("/", 1)[-1]
            if last in EMERGENCY_REFUSAL_CODES and patient is not None:
                self._state(patient).emergency_opposed = True
            self._audit(
                audit_action,
                "refused",
                patient,
                error_code=str(exc.code or ""),
                detail=exc.code_context,
                **kw,
            )
            raise
        except PsAgentError as exc:
            self._audit(
                audit_action, "error", patient, error_code=str(exc.code or ""), detail=exc.message_fr, **kw
            )
            raise
        except Exception as exc:  # a defect: still leave a trace of the attempt, then let it surface
            name = type(exc).__name__
            self._audit(audit_action, "error", patient, error_code="INTERNAL", detail=name, **kw)
            raise

    def _status_fresh(self, patient: PatientRef) -> bool:
        st = self._state(patient)
        return st.status is not None and time.monotonic() - st.status_at <= STATUS_TTL_S

    def _ensure_status(self, patient: PatientRef) -> DmpStatus:
        st = self._state(patient)
        if not self._status_fresh(patient):
            self.dmp_status(patient)
        assert st.status is not None
        return st.status

    # ------------------------------------------------------------------ TD0.2 / TD0.3
    def dmp_status(self, patient: PatientRef) -> DmpStatus:
        """TD0.2: existence, open/closed, my authorisation, médecin traitant flag."""
        self._check(Action.STATUS, "dmp.status", patient)
        purpose, reason = self._purpose(patient)
        status = self._run(
            "dmp.status",
            patient,
            lambda: self.client.status(_patient_id(patient), purpose=purpose, reason=reason),
        )
        self._state(patient).status = status
        self._state(patient).status_at = time.monotonic()
        self._audit("dmp.status", "success", patient, detail=f"{status.authorisation or '-'}")
        return status

    def record_consent(
        self, patient: PatientRef, *, how: str = "oral", medecin_traitant: bool = False
    ) -> DmpStatus:
        """TD0.3 AJOUT after the patient consented (explicit user action, ACC-03); returns the new status."""
        self._check(Action.CONSENT, "dmp.consent", patient)
        self._ensure_status(patient)
        self._check(Action.CONSENT, "dmp.consent", patient)
        context = self._run(
            "dmp.consent",
            patient,
            lambda: self.client.set_authorization(
                _patient_id(patient), add=True, medecin_traitant=medecin_traitant
            ),
        )
        self._audit(
            "dmp.consent", "success", patient, transaction="TD0.3", detail=f"consentement {how}; {context}"
        )
        self._state(patient).status = None
        return self.dmp_status(patient)

    def emergency_access(self, patient: PatientRef, mode: AccessMode | str, reason: str) -> EmergencyAccess:
        """Open the record in bris de glace / centre 15 mode (until ``end_emergency_access``)."""
        mode = AccessMode(mode)
        st = self._state(patient)
        decision = self._check(Action.EMERGENCY, "dmp.emergency", patient, access_mode=mode, reason=reason)
        previous = (st.access_mode, st.reason)
        st.access_mode, st.reason = mode, reason.strip()
        try:
            status = self._run(
                "dmp.emergency",
                patient,
                lambda: self.client.status(_patient_id(patient), purpose=Purpose(mode.value), reason=reason),
            )
            st.status, st.status_at = status, time.monotonic()
            self._check(Action.EMERGENCY, "dmp.emergency", patient, access_mode=mode, reason=reason)
        except PsAgentError:
            st.access_mode, st.reason = previous
            raise
        self._audit("dmp.emergency", "success", patient, transaction="TD0.2", rule_id=decision.rule_id)
        return EmergencyAccess(patient, mode, reason, decision.notice_fr, status)

    def end_emergency_access(self, patient: PatientRef) -> None:
        st = self._state(patient)
        st.access_mode, st.reason = AccessMode.NORMAL, ""

    def authorised_professionals(self, patient: PatientRef, *, mode: str = "TOUTE") -> list[dict[str, str]]:
        """TD1.6: who is authorised on (``ACTIVE``) or blocked from (``INTERDITE``) this DMP."""
        self._check(Action.SEARCH, "dmp.authorisations", patient)
        self._ensure_status(patient)
        self._check(Action.SEARCH, "dmp.authorisations", patient)
        pid = _patient_id(patient)
        act = "dmp.authorisations"
        rows = self._run(act, patient, lambda: self.client.list_authorizations(pid, mode=mode))
        self._audit(act, "success", patient, transaction="TD1.6", detail=f"{len(rows)} {mode}")
        return rows

    def authorised_patients(
        self, since: datetime, *, date_type: str = "LASTAUTORIZATION"
    ) -> list[dict[str, str]]:
        """TD0.4: the DMPs this professional is authorised on (changed since ``since``)."""
        rows = self.client.patient_list(since, date_type=date_type)
        self._audit(
            "dmp.patient_list",
            "success",
            None,
            transaction="TD0.4",
            detail=f"{len(rows)} DMP ({date_type} depuis {since.date().isoformat()})",
        )
        return rows

    # ------------------------------------------------------------------ TD3.1 / TD3.2
    def list_documents(
        self,
        patient: PatientRef,
        *,
        rubric: str | None = None,
        filters: FindFilters | None = None,
        include_archived: bool = False,
        include_deprecated: bool = False,
    ) -> DocumentList:
        """TD3.1 FindDocuments, optionally narrowed to a DMP rubric ("Comptes rendus", "Prévention"...)."""
        self._check(Action.SEARCH, "dmp.search", patient)
        self._ensure_status(patient)
        self._check(Action.SEARCH, "dmp.search", patient)
        f = filters or FindFilters()
        statuses = list(f.statuses)
        if include_archived and Status.ARCHIVED not in statuses:
            statuses.append(Status.ARCHIVED)
        if include_deprecated and Status.DEPRECATED not in statuses:
            statuses.append(Status.DEPRECATED)
        f = replace(f, statuses=tuple(statuses))
        purpose, reason = self._purpose(patient)
        entries = self._run(
            "dmp.search",
            patient,
            lambda: self.client.find_documents(_patient_id(patient), f, purpose=purpose, reason=reason),
        )
        if rubric:
            entries = [e for e in entries if rubric_of(e) == rubric]
        entries.sort(key=lambda e: e.creation_time, reverse=True)
        hidden = tuple(self.policy.hidden_types_explanation(self._creds.identity))
        self._audit(
            "dmp.search",
            "success",
            patient,
            document_ids=tuple(e.unique_id for e in entries),
            detail=f"{len(entries)} document(s)" + (f", rubrique {rubric}" if rubric else ""),
        )
        return DocumentList(tuple(entries), hidden)

    def _resolve(
        self, patient: PatientRef, document: DocumentEntry | str, audit_action: str
    ) -> DocumentEntry:
        if isinstance(document, DocumentEntry):
            return document
        purpose, reason = self._purpose(patient)
        found = self._run(
            audit_action,
            patient,
            lambda: self.client.get_documents(
                _patient_id(patient), unique_ids=[document], purpose=purpose, reason=reason
            ),
            document_ids=(document,),
        )
        if not found:
            self._audit(audit_action, "refused", patient, document_ids=(document,), error_code="NOT_FOUND")
            message = "Ce document est introuvable dans le DMP (ou ne vous est pas accessible)."
            if self.policy.hidden_types_explanation(self._creds.identity):
                # The DMP does not list what the habilitation matrix hides: say so rather than stay silent.
                message += (
                    " Certains types de documents ne sont pas accessibles à votre profession"
                    " (la liste des documents les indique)."
                )
            raise InvalidRequest(message, code="NOT_FOUND")
        return found[0]

    def retrieve(self, patient: PatientRef, document: DocumentEntry | str) -> RetrievedDocument:
        """TD3.2: the document's bytes (checked against the registry hash)."""
        self._check(Action.RETRIEVE, "dmp.retrieve", patient)
        self._ensure_status(patient)
        self._check(Action.RETRIEVE, "dmp.retrieve", patient)
        entry = self._resolve(patient, document, "dmp.retrieve")
        self._check(Action.RETRIEVE, "dmp.retrieve", patient, type_code=entry.type_code.code)
        purpose, reason = self._purpose(patient)

        def fetch() -> RetrievedDocument:
            try:
                return self.client.retrieve(_patient_id(patient), entry, purpose=purpose, reason=reason)
            except DmpRefusal as exc:
                # The DMP's answer wins; say why when the habilitation matrix explains it (HAB-03).
                notice = self.policy.matrix_notice(self._creds.identity, entry.type_code.code)
                if notice:
                    exc.message_fr = f"{notice} ({exc.message_fr})"
                    exc.args = (exc.message_fr,)
                raise

        doc = self._run("dmp.retrieve", patient, fetch, document_ids=(entry.unique_id,))
        self._audit("dmp.retrieve", "success", patient, transaction="TD3.2", document_ids=(entry.unique_id,))
        return doc

    # ------------------------------------------------------------------ TD2.1
    def deposit(
        self,
        patient: PatientRef,
        document: bytes,
        *,
        visibility: Visibility | None = None,
        replaces: DocumentEntry | str | None = None,
        progress: Progress | None = None,
    ) -> DepositResult:
        """TD2.1 of one CDA document (already built; a PDF goes through ``cda.build.level1`` first)."""
        return self.deposit_batch(
            patient,
            [document],
            visibility=visibility,
            replaces=[replaces] if replaces else None,
            progress=progress,
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
    ) -> DepositResult:
        """Wrap a PDF in a CDA level 1 (``cda.build.level1``) and deposit it.

        ``patient_traits`` is a ``cda.build.PatientInput`` (INS traits); ``author`` a
        ``cda.build.AuthorInput``, by default the acting professional and his activity."""
        from cda import build

        if author is None:
            author = author_input_of(self._creds.identity)
        data = build.level1(
            type_code=type_code,
            content=pdf,
            title=title,
            patient=patient_traits,
            author=author,
            media_type="application/pdf",
        )
        return self.deposit(patient, data, visibility=visibility, progress=progress)

    def deposit_batch(
        self,
        patient: PatientRef,
        documents: Sequence[bytes],
        *,
        visibility: Visibility | None = None,
        replaces: Sequence[DocumentEntry | str | None] | None = None,
        progress: Progress | None = None,
    ) -> DepositResult:
        """TD2.1 of several CDA documents in one submission set (one XAdES signature)."""
        if not documents:
            raise InvalidRequest("Aucun document à envoyer.", code="EMPTY")
        vis = visibility or Visibility()
        prepared = []
        for i, data in enumerate(documents):
            try:
                root = safe_parse(data)  # parsed once for the gate and the metadata
                check_deposit_ready(root)  # the built-in CI-SIS rules: refuse locally what the DMP would
                entry, md = entry_from_cda(data, patient, vis, doc=parse_element(root))
            except (CdaError, InvalidRequest) as exc:
                code = getattr(exc, "code", None) or type(exc).__name__
                self._audit(
                    "dmp.deposit", "refused", patient, transaction="TD2.1", error_code=str(code),
                    detail=f"document n° {i + 1} refusé avant envoi",
                )  # fmt: skip
                raise
            prepared.append((entry, md, data, (replaces or [None] * len(documents))[i]))
        on_behalf = ""
        first_author = prepared[0][0].authors[0] if prepared[0][0].authors else None
        session_author = getattr(self._creds, "author", None)  # EstablishmentSession: the professional
        if self._creds.mode != AuthMode.DIRECTE and isinstance(session_author, ProfessionalIdentity):
            first_author = author_of(session_author)
        if self._creds.mode != AuthMode.DIRECTE and first_author is not None:
            on_behalf = first_author.id_nat
        uids = tuple(p[0].unique_id for p in prepared)
        if not self._status_fresh(patient):  # local refusals before asking TD0.2 (INS, role, mode...)
            for entry, *_ in prepared:
                self._check(Action.DEPOSIT, "dmp.deposit", patient, type_code=entry.type_code.code)
        self._ensure_status(patient)
        for entry, *_ in prepared:
            self._check(Action.DEPOSIT, "dmp.deposit", patient, type_code=entry.type_code.code)
        items = []
        for entry, md, data, rep in prepared:
            replaced_uuid = ""
            target = rep or (md.replaced_document_id or None)
            if target is not None:
                old = self._resolve(patient, target, "dmp.deposit")
                replaced_uuid = old.entry_uuid
            items.append(DepositItem(entry, data, replaced_uuid))
        ss = self.client.submission_set(_patient_id(patient))
        if self._creds.mode != AuthMode.DIRECTE and first_author is not None:
            ss = replace(ss, authors=(first_author,))
        else:
            ss = replace(ss, authors=(author_of(self._creds.identity),))
        replaced_uids = tuple(
            (rep.unique_id if isinstance(rep, DocumentEntry) else (rep or md.replaced_document_id or ""))
            for _, md, _, rep in prepared
        )
        self._outbox.add(  # durable before the first byte is sent
            ss.unique_id,
            (patient.ins, patient.oid, patient.ins_status),
            uids,
            tuple(documents),
            (vis.masked_to_professionals, vis.invisible_to_patient, vis.invisible_to_legal_representatives),
            replaced_uids,
        )
        try:
            result = self._run(
                "dmp.deposit",
                patient,
                lambda: self.client.deposit(ss, items, progress=progress),
                document_ids=uids,
                on_behalf_of=on_behalf,
            )
        except DmpRefusal:
            self._outbox.remove_later(ss.unique_id)  # a clear "no": nothing left to resolve
            raise
        # TransportError / ProtocolError: the outcome is unknown, the deposit stays in the outbox
        self._outbox.remove_later(ss.unique_id)
        detail = f"lot {ss.unique_id}" + ("; réponse perdue, dépôt retrouvé" if result.recovered else "")
        if any(i.replaces_entry_uuid for i in items):
            detail += "; remplacement"
        self._audit(
            "dmp.deposit", "success", patient, transaction="TD2.1", document_ids=uids, on_behalf_of=on_behalf,
            detail=detail,
        )  # fmt: skip
        return result

    def pending_deposits(self) -> list[PendingDeposit]:
        """Deposits whose outcome is unknown (network failure or crash during the call)."""
        return self._outbox.pending()

    def resume_pending(self, *, progress: Progress | None = None) -> list[DepositResult]:
        """Resolve the outbox: GetDocuments by uniqueId first; registered → done (never resent),
        unknown to the DMP → resent. Errors leave the deposit pending and are raised."""
        results = []
        for pending in self._outbox.pending():
            patient = PatientRef(pending.patient_ins, pending.patient_oid, pending.ins_status)
            found = self._run(
                "dmp.deposit",
                patient,
                lambda p=pending, pt=patient: self.client.get_documents(
                    _patient_id(pt), unique_ids=list(p.document_uids)
                ),
                document_ids=pending.document_uids,
            )
            known = {e.unique_id for e in found}
            if all(u in known for u in pending.document_uids):
                self._outbox.remove(pending.submission_set_uid)
                uids = pending.document_uids
                self._audit(
                    "dmp.deposit",
                    "success",
                    patient,
                    transaction="TD2.1",
                    document_ids=uids,
                    detail=f"lot {pending.submission_set_uid}; issue inconnue, dépôt retrouvé",
                )
                results.append(DepositResult(pending.submission_set_uid, uids, recovered=True, attempts=0))
                continue
            if known:
                raise ProtocolError(
                    "Le DMP n'a enregistré qu'une partie d'un lot en attente : vérifiez le dossier.",
                    code="PARTIAL_DEPOSIT",
                )
            self._outbox.remove(pending.submission_set_uid)
            results.append(
                self.deposit_batch(
                    patient,
                    list(pending.documents),
                    visibility=Visibility(*pending.visibility),
                    replaces=[r or None for r in pending.replaces],
                    progress=progress,
                )
            )
        return results

    # ------------------------------------------------------------------ TD3.3
    def _update(
        self,
        action: Action,
        audit_action: str,
        patient: PatientRef,
        document: DocumentEntry | str,
        fn: Callable[[DocumentEntry], None],
    ) -> None:
        self._check(action, audit_action, patient)
        self._ensure_status(patient)
        self._check(action, audit_action, patient)
        entry = self._resolve(patient, document, audit_action)
        self._run(audit_action, patient, lambda: fn(entry), document_ids=(entry.unique_id,))
        self._audit(audit_action, "success", patient, transaction="TD3.3", document_ids=(entry.unique_id,))

    def mask(self, patient: PatientRef, document: DocumentEntry | str) -> None:
        """TD3.3a: mask the document to other professionals (MASQUE_PS)."""

        def go(e: DocumentEntry) -> None:
            v = e.visibility
            if v.invisible_to_patient:
                raise InvalidRequest(
                    "Un document invisible pour le patient ne peut pas être masqué aux professionnels.",
                    code="PAT-03",
                )
            self.client.update_visibility(_patient_id(patient), e, replace(v, masked_to_professionals=True))

        self._update(Action.MASK, "dmp.mask", patient, document, go)

    def unmask(self, patient: PatientRef, document: DocumentEntry | str) -> None:
        def go(e: DocumentEntry) -> None:
            self.client.update_visibility(
                _patient_id(patient), e, replace(e.visibility, masked_to_professionals=False)
            )

        self._update(Action.UNMASK, "dmp.unmask", patient, document, go)

    def make_visible(
        self, patient: PatientRef, document: DocumentEntry | str, *, to_legal_representatives: bool = False
    ) -> None:
        """TD3.3b: make visible to the patient (and, irreversibly, to legal representatives)."""

        def go(e: DocumentEntry) -> None:
            v = replace(e.visibility, invisible_to_patient=False)
            if to_legal_representatives:
                v = replace(v, invisible_to_legal_representatives=False)
            self.client.update_visibility(_patient_id(patient), e, v)

        self._update(Action.MAKE_VISIBLE, "dmp.make_visible", patient, document, go)

    def archive(self, patient: PatientRef, document: DocumentEntry | str) -> None:
        self._update(
            Action.ARCHIVE, "dmp.archive", patient, document,
            lambda e: self.client.update_status(_patient_id(patient), e, Status.ARCHIVED),
        )  # fmt: skip

    def unarchive(self, patient: PatientRef, document: DocumentEntry | str) -> None:
        self._update(
            Action.UNARCHIVE, "dmp.unarchive", patient, document,
            lambda e: self.client.update_status(_patient_id(patient), e, Status.APPROVED),
        )  # fmt: skip

    def delete(self, patient: PatientRef, document: DocumentEntry | str) -> None:
        """TD3.3c: delete (only the author may)."""
        self._update(
            Action.DELETE, "dmp.delete", patient, document,
            lambda e: self.client.update_status(_patient_id(patient), e, Status.DELETED),
        )  # fmt: skip

    # ------------------------------------------------------------------ vaccinations
    def vaccination_status(self, patient: PatientRef, *, progress: Progress | None = None) -> list[Any]:
        """All vaccinations of VAC-NOTE, VAC, VSM and IPS documents, merged (duplicates removed), by date."""
        import cda
        from cda import vaccinations

        docs = [e for e in self.list_documents(patient) if is_vaccination_document(e)]
        readable = []
        for e in docs:  # what the matrix hides is explained by list_documents; skip it here
            decision = self.policy.decide(
                Action.RETRIEVE,
                identity=self._creds.identity,
                mode=self._creds.mode,
                patient=patient,
                dmp=dmp_state(
                    self._ensure_status(patient), emergency_opposed=self._state(patient).emergency_opposed
                ),
                access_mode=self._state(patient).access_mode,
                reason=self._state(patient).reason,
                type_code=e.type_code.code,
            )
            if decision.allowed:
                readable.append(e)
        purpose, reason = self._purpose(patient)
        pid = _patient_id(patient)
        total = len(readable)
        ids = tuple(e.unique_id for e in readable)

        def fetch_all() -> list[RetrievedDocument]:
            out: list[RetrievedDocument | None] = [None] * total
            with ThreadPoolExecutor(max_workers=VACCINATION_FETCH_WORKERS) as pool:
                futures = {
                    pool.submit(self.client.retrieve, pid, e, purpose=purpose, reason=reason): i
                    for i, e in enumerate(readable)
                }
                for done, fut in enumerate(as_completed(futures), start=1):
                    out[futures[fut]] = fut.result()
                    if progress:
                        progress("Lecture des documents de vaccination", done, total)
            return [d for d in out if d is not None]

        if progress:
            progress("Lecture des documents de vaccination", 0, total)
        contents = self._run("dmp.retrieve", patient, fetch_all, transaction="TD3.2", document_ids=ids)
        # one record for the whole read, written before any vaccination is returned
        self._audit(
            "dmp.retrieve", "success", patient, transaction="TD3.2", document_ids=ids,
            detail=f"statut vaccinal : {total} document(s)",
        )  # fmt: skip
        groups = [vaccinations.extract(cda.parse(d.content)) for d in contents]
        return vaccinations.merge(*groups)

    def record_vaccination(
        self,
        patient: PatientRef,
        note: bytes | None = None,
        *,
        progress: Progress | None = None,
        **builder_args: Any,
    ) -> DepositResult:
        """Deposit a vaccination note (VAC-NOTE): given bytes, or built by ``cda.build.vaccination_note``."""
        if note is None:
            from cda import build

            note = build.vaccination_note(**builder_args)
        return self.deposit(patient, note, progress=progress)


def author_input_of(identity: ProfessionalIdentity) -> Any:
    """The ``cda.build.AuthorInput`` of a professional and his current activity (card situation)."""
    from cda import build

    act = identity.activity
    if act is None or not identity.profession_code:
        raise InvalidRequest(
            "L'auteur du document doit être un professionnel de santé avec une situation d'exercice.",
            code="NO_AUTHOR",
        )
    spec = author_of(identity).specialty
    return build.AuthorInput(
        id_nat=identity.id_nat,
        family_name=identity.family_name,
        given_name=identity.given_name,
        specialty_code=spec.code if spec else f"G15_{identity.profession_code}",
        organization_id=act.structure_id,
        organization_name=act.structure_name,
        facility_type_code=act.sector,
        practice_setting_code=PRACTICE_SETTING_BY_SECTOR.get(act.sector, "AMBULATOIRE"),
    )


def rubric_of(entry: DocumentEntry) -> str:
    """The DMP rubric of an entry ("Comptes rendus"...) from its type code (``cda.classify``)."""
    try:
        from cda.classify import classify_type

        return classify_type(entry.type_code.code, format_code=entry.format_code.code).dmp_rubric
    except Exception:  # unknown type: no rubric rather than an error in a listing
        return ""


def is_vaccination_document(entry: DocumentEntry) -> bool:
    if entry.type_code.code in VACCINATION_TYPE_CODES or entry.format_code.code in VACCINATION_FORMAT_CODES:
        return True
    try:
        from cda.classify import classify_type

        return bool(
            classify_type(entry.type_code.code, format_code=entry.format_code.code).in_vaccination_book
        )
    except Exception:
        return False


__all__ = [
    "Agent",
    "DocumentList",
    "EmergencyAccess",
    "InvalidRequest",
    "dmp_state",
    "entry_from_cda",
]
