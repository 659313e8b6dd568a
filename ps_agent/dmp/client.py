"""DMP client over httpx: one method per transaction (dmp-protocol.md §3, §7).

The client knows nothing about access rules or audit (``ps_agent.agent`` does); it turns a call
into a signed SOAP exchange and the answer into model objects or typed errors.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import httpx
from lxml import etree

from ps_agent.auth.model import AuthMode, Credentials, ProfessionalIdentity
from ps_agent.dmp import ebrim, envelope, hl7, mtom, vihf, xades
from ps_agent.dmp.ebrim import DepositItem, FindFilters
from ps_agent.dmp.environment import Environment
from ps_agent.dmp.errors import (
    DmpStatusRefusal,
    DocumentIntegrityError,
    DocumentMissingError,
    ProtocolError,
    TransportError,
    french_message,
)
from ps_agent.dmp.hl7 import DmpStatus
from ps_agent.dmp.lps import LpsInfo
from ps_agent.dmp.model import (
    CS_CONFIDENTIALITY_DMP,
    CS_CONFIDENTIALITY_HL7,
    CS_SPECIALTY_COMBINATION,
    DMP_REPOSITORY_UNIQUE_ID,
    Author,
    Code,
    DocumentEntry,
    PatientId,
    RetrievedDocument,
    Status,
    SubmissionSet,
    Visibility,
)
from ps_agent.dmp.transport import post_bounded
from ps_agent.dmp.vihf import Purpose
from ps_agent.dmp.xmlns import HABILITATIONS, PATIENTS_SPECIFIC, QUERY, RS, XDSB, XOP, q
from ps_agent.errors import AuthError

log = logging.getLogger(__name__)

# TD0.3/TD0.4/TD1.6 bodies: children in the service namespace, as in S1 and in the 2024 WSDLs (each
# element is declared form="qualified" despite elementFormDefault="unqualified"). Answers are read by
# local name so an unqualified server is accepted too.
QUALIFIED_DMP_SPECIFIC_CHILDREN = True

# TD3.2 with several documents (``DmpClient.retrieve_many``): one ITI-43 request carries at most this
# many DocumentRequest, and at most this many bytes by the registry's announced sizes (a larger
# document goes alone) [I]: the spec sets no limit; 100 keeps a 200-document vaccination status at two
# round trips and an answer of typical documents (10 KB–1 MB) well under the 20 MB of one big PDF.
RETRIEVE_MANY_MAX_DOCUMENTS = 100
RETRIEVE_MANY_MAX_BYTES = 20_000_000

FrameRecorder = Callable[[str, str, bytes], None]  # (direction, action, xml bytes minus documents)
Progress = Callable[[str, int, int], None]  # (step label in French, done, total)


def new_oid() -> str:
    """A fresh, never reused OID (UUID-derived ``2.25.x``, ≤ 64 characters)."""
    return f"2.25.{uuid.uuid4().int}"


@dataclass(frozen=True)
class CallContext:
    """Per-call VIHF facts: the patient and why we access it."""

    patient: PatientId | None
    purpose: Purpose = Purpose.NORMAL
    reason: str = ""


@dataclass(frozen=True)
class DepositResult:
    submission_set_uid: str
    document_uids: tuple[str, ...]
    recovered: bool = False  # True when a lost answer was found registered by GetDocuments
    attempts: int = 1
    warnings: tuple[str, ...] = ()
    exchanges: tuple[ExchangeInfo, ...] = ()  # the facts of the exchanges that led to this outcome


@dataclass
class ExchangeInfo:
    """One exchange's facts, for the result and the audit journal (§10): filled by the call that made it,
    never read from shared state (see ``record_exchanges``)."""

    transaction: str = ""
    message_id: str = ""
    relates_to: str = ""
    vihf_id: str = ""
    duration_s: float = 0.0  # from the request leaving to the answer read (0 when it failed)
    extra: dict[str, str] = field(default_factory=dict)


_EXCHANGES: contextvars.ContextVar[list[ExchangeInfo] | None] = contextvars.ContextVar(
    "ps_agent_dmp_exchanges", default=None
)


@contextmanager
def record_exchanges() -> Iterator[list[ExchangeInfo]]:
    """Collect the ``ExchangeInfo`` of every exchange made by the current thread/context inside the block
    (in order, failed ones included). Each thread or task has its own list: parallel calls never mix."""
    out: list[ExchangeInfo] = []
    token = _EXCHANGES.set(out)
    try:
        yield out
    finally:
        _EXCHANGES.reset(token)


def _new_exchange(td: str, message_id: str, vihf_id: str) -> ExchangeInfo:
    info = ExchangeInfo(td, message_id, vihf_id=vihf_id)
    info.extra["started"] = repr(time.monotonic())
    sink = _EXCHANGES.get()
    if sink is not None:
        sink.append(info)
    return info


def _finish_exchange(info: ExchangeInfo, relates_to: str) -> None:
    info.relates_to = relates_to
    info.duration_s = max(0.0, time.monotonic() - float(info.extra.pop("started", "0") or 0))


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _child_text(el: etree._Element, name: str) -> str:
    for c in el.iter():
        if isinstance(c.tag, str) and _local(c) == name:
            return (c.text or "").strip()
    return ""


def content_type_for(identity: ProfessionalIdentity) -> Code:
    """SubmissionSet contentTypeCode: the activity sector (TRE_R02), which JDV_J59 allows, rather
    than a TRE_R209 activity type the agent cannot know [I]."""
    sector = identity.activity.sector if identity.activity else "SA07"
    return Code(
        sector, "1.2.250.1.71.4.2.4", identity.activity.structure_name if identity.activity else sector
    )


def author_of(identity: ProfessionalIdentity) -> Author:
    """The XDS author for the acting professional (card activity = institution)."""
    spec = None
    if identity.profession_code:
        combo = f"G15_{identity.profession_code}"
        if identity.specialty_code and not identity.specialty_code.startswith("G15_"):
            combo += f"/{identity.specialty_code}"
        elif identity.specialty_code:
            combo = identity.specialty_code
        spec = Code(combo, CS_SPECIALTY_COMBINATION, identity.profession_label or combo)
    act = identity.activity
    return Author(
        identity.id_nat,
        identity.family_name,
        identity.given_name,
        act.structure_name if act else "",
        act.structure_id if act else "",
        spec,
    )


def retrieve_chunks(entries: Sequence[DocumentEntry]) -> list[Sequence[DocumentEntry]]:
    """``entries`` cut in order into requests of ≤ RETRIEVE_MANY_MAX_DOCUMENTS documents and
    ≤ RETRIEVE_MANY_MAX_BYTES announced bytes (an entry without a size counts as 0)."""
    chunks: list[Sequence[DocumentEntry]] = []
    start, size = 0, 0
    for i, e in enumerate(entries):
        n = e.size or 0
        if i > start and (i - start >= RETRIEVE_MANY_MAX_DOCUMENTS or size + n > RETRIEVE_MANY_MAX_BYTES):
            chunks.append(entries[start:i])
            start, size = i, 0
        size += n
    if start < len(entries):
        chunks.append(entries[start:])
    return chunks


def _document_content(doc: etree._Element, parts: dict[str, mtom.Part]) -> bytes:
    """The bytes of an ``xdsb:Document``: its MTOM part, or inline base64."""
    inc = doc.find(q(XOP, "Include"))
    if inc is not None:
        return mtom.resolve_include(inc.get("href", ""), parts)
    return base64.b64decode((doc.text or "").strip())  # as ``retrieve``; the hash and size check follow


def _check_integrity(entry: DocumentEntry, content: bytes) -> None:
    """The registry's hash (SHA-1) and size of ``entry`` against the bytes received."""
    if entry.hash and hashlib.sha1(content).hexdigest().lower() != entry.hash.lower():  # noqa: S324
        raise DocumentIntegrityError(
            f"Le document {entry.unique_id} reçu du DMP ne correspond pas à son empreinte : "
            "il n'est pas affiché.",
            code="HASH_MISMATCH",
        )
    if entry.size is not None and len(content) != entry.size:
        raise DocumentIntegrityError(
            f"Le document {entry.unique_id} reçu du DMP n'a pas la taille annoncée : il n'est pas affiché.",
            code="SIZE_MISMATCH",
        )


# The signature DocumentEntry's fixed codes (IHE DSG; frozen, shared by every deposit)
_SIGNATURE_TYPE = Code("E1762", "ASTM", "Full Document")
_SIGNATURE_CLASS = Code("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature")
_SIGNATURE_FORMAT = Code("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style")
_SIGNATURE_CONFIDENTIALITY = (
    Code("N", CS_CONFIDENTIALITY_HL7, "Normal"),
    Code("MASQUE_PS", CS_CONFIDENTIALITY_DMP, "Masqué aux professionnels de santé"),
    Code("INVISIBLE_PATIENT", CS_CONFIDENTIALITY_DMP, "Non visible par le patient"),
)
_SIGNATURE_EVENTS = (Code("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source"),)


class DmpClient:
    """Talks to one DMP environment under one authenticated session (``Credentials``)."""

    def __init__(
        self,
        credentials: Credentials,
        environment: Environment,
        lps: LpsInfo,
        *,
        transport: httpx.BaseTransport | None = None,
        frame_recorder: FrameRecorder | None = None,
        deposit_retries: int = 1,
        deadline_s: float | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        self._creds = credentials
        # overall deadline and response size cap of one exchange (ps_agent.dmp.transport)
        self._deadline_s = deadline_s or environment.deadline_s
        self._max_response_bytes = max_response_bytes or environment.max_response_bytes
        self._env = environment
        self._lps = lps
        self._frames = frame_recorder
        self._deposit_retries = deposit_retries
        if transport is None:
            transport = credentials.tls_transport(
                ca_file=environment.ca_file, verify_host=environment.verify_host
            )
        # built here without auth, hooks, mounts nor proxies: requests go to ``transport`` directly
        # (``post_bounded(transport=...)``), the client keeps the pool's lifetime and the cookie jar
        self._transport = transport
        self._http = httpx.Client(transport=transport, timeout=environment.timeout_s)
        self._urls: dict[str, httpx.URL] = {}  # per service, parsed once (≈ 50 µs a parse)

    # ------------------------------------------------------------------ plumbing
    def _parsed_url(self, service: str) -> httpx.URL:
        url = self._urls.get(service)
        if url is None:
            url = self._urls[service] = httpx.URL(self._env.url(service))
        return url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DmpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def identity(self) -> ProfessionalIdentity:
        return self._creds.identity

    @property
    def mode(self) -> AuthMode:
        return self._creds.mode

    def _assertion(self, ctx: CallContext) -> tuple[bytes, str]:
        """(serialised VIHF assertion, its ID) for a request: ``vihf.assertion_xml``, signed unless the
        mode is DIRECTE and the environment does not sign those."""
        signer = self._creds.vihf_signer()
        identity = self._creds.identity
        cert = signer.certificate if signer is not None else None
        req = vihf.VihfRequest(identity, self._creds.mode, ctx.patient, self._lps, ctx.purpose, ctx.reason)
        issuer = vihf.issuer_dn(cert, identity)
        if identity.activity is None:
            vihf.build(req, issuer=issuer)  # its refusal, before the signer's
        must_sign = self._creds.mode != AuthMode.DIRECTE or self._env.sign_direct_vihf
        if signer is None and self._creds.mode != AuthMode.DIRECTE:
            raise AuthError(
                "Le certificat de signature de l'établissement est indispensable en mode indirect.",
                code="NO_VIHF_SIGNER",
            )
        return vihf.assertion_xml(req, issuer=issuer, signer=signer if must_sign else None)

    def _record(self, direction: str, action: str, xml: bytes) -> None:
        if self._frames is not None:
            try:
                self._frames(direction, action, xml)
            except Exception:  # the frame log must never break a call
                log.exception("frame log failed")

    def _call(
        self,
        td: str,
        service: str,
        body: etree._Element | bytes,
        ctx: CallContext,
        *,
        expected_body: Sequence[str],
        mtom_parts: Sequence[mtom.Part] = (),
        prepared: tuple[str, bytes, str] | None = None,
        take: envelope.Taker | None = None,
    ) -> tuple[envelope.SoapResponse, dict[str, mtom.Part]]:
        self._creds.ensure_active()
        action = self._env.actions[td]
        url = self._parsed_url(service)
        vihf_id = ""
        if prepared is None:
            content_type, payload, message_id, vihf_id = self._prepare(td, service, body, ctx, mtom_parts)
        else:
            content_type, payload, message_id = prepared
        exchange = _new_exchange(td, message_id, vihf_id)
        # one overall deadline and a size cap for the whole exchange (hostile or trickling server)
        response = post_bounded(
            self._http,
            url,
            content=payload,
            content_type=content_type,
            deadline_s=self._deadline_s,
            max_response_bytes=self._max_response_bytes,
            transport=self._transport,
        )
        ctype = response.content_type
        raw = response.content
        parts: dict[str, mtom.Part] = {}
        try:
            if mtom.is_multipart(ctype):
                raw, parts = mtom.parse(ctype, raw)
            self._record("in", action, raw)
            expected_actions = {action + "Response", action + "-Response", f"{action}Response"}
            if td == "TD0.2":
                expected_actions.add("urn:hl7-org:v3:PRPA_IN201308UV02")
            result = envelope.parse(
                raw,
                request_id=message_id,
                expected_body=expected_body,
                expected_actions=expected_actions,
                take=take,
            )
        except ProtocolError as exc:
            if response.status_code >= 500:
                raise TransportError(
                    f"Le DMP a rencontré une erreur (HTTP {response.status_code}). Réessayez plus tard.",
                    code=f"HTTP_{response.status_code}",
                    detail=exc.detail,
                ) from exc
            if response.status_code >= 400:
                raise ProtocolError(
                    f"Le DMP a répondu par une erreur HTTP {response.status_code}.",
                    code=f"HTTP_{response.status_code}",
                    detail=exc.detail,
                ) from exc
            raise
        if response.status_code >= 300:
            raise ProtocolError(
                f"Le DMP a répondu HTTP {response.status_code} avec un message de réussite.",
                code=f"HTTP_{response.status_code}",
            )
        _finish_exchange(exchange, result.relates_to)
        return result, parts

    def prepare(
        self,
        td: str,
        service: str,
        body: etree._Element | bytes,
        ctx: CallContext,
        *,
        mtom_parts: Sequence[mtom.Part] = (),
    ) -> tuple[str, bytes, str]:
        """Build (Content-Type, payload, MessageID) of a request without sending it."""
        return self._prepare(td, service, body, ctx, mtom_parts)[:3]

    def _prepare(
        self,
        td: str,
        service: str,
        body: etree._Element | bytes,
        ctx: CallContext,
        mtom_parts: Sequence[mtom.Part],
    ) -> tuple[str, bytes, str, str]:
        """(Content-Type, payload, MessageID, VIHF assertion ID) of a request."""
        action = self._env.actions[td]
        assertion, assertion_id = self._assertion(ctx)
        xml, message_id = envelope.build(action, self._env.url(service), assertion, body)
        self._record("out", action, xml)
        if mtom_parts:
            ctype, payload = mtom.build(xml, list(mtom_parts), action=action)
        else:
            ctype, payload = f'application/soap+xml; charset=UTF-8; action="{action}"', xml
        return ctype, payload, message_id, assertion_id

    # ------------------------------------------------------------------ TD0.x
    def status(self, patient: PatientId, *, purpose: Purpose = Purpose.NORMAL, reason: str = "") -> DmpStatus:
        """TD0.2: does the DMP exist, is it open, am I authorised, am I the médecin traitant."""
        resp, _ = self._call(
            "TD0.2",
            "patients",
            hl7.build_request(patient, self._lps),
            CallContext(patient, purpose, reason),
            expected_body=[q("urn:hl7-org:v3", "PRPA_IN201308UV02")],
        )
        return hl7.parse_response(resp.body)

    def _dmp_specific(self, ns: str, tag: str, children: dict[str, str]) -> etree._Element:
        nsmap: dict[str | None, str] = {None: ns} if QUALIFIED_DMP_SPECIFIC_CHILDREN else {"d": ns}
        root = etree.Element(q(ns, tag), nsmap=nsmap)
        for k, v in children.items():
            etree.SubElement(root, q(ns, k) if QUALIFIED_DMP_SPECIFIC_CHILDREN else k).text = v
        return root

    @staticmethod
    def _check_dmp_status(body: etree._Element) -> tuple[str, str]:
        status = _child_text(body, "status")
        context = _child_text(body, "context")
        if not status:
            raise ProtocolError("La réponse du DMP ne contient pas de statut.", detail=_local(body))
        if status != "DMPOk":
            raise DmpStatusRefusal(french_message(status, context), code=status, code_context=context)
        return status, context

    def set_authorization(
        self, patient: PatientId, *, add: bool = True, medecin_traitant: bool = False
    ) -> str:
        """TD0.3: record (AJOUT) or remove (SUPPRESSION) my authorisation. Returns the DMP context text."""
        children = {"action": "AJOUT" if add else "SUPPRESSION"}
        if medecin_traitant:
            children["role"] = "MEDECIN_TRAITANT"
        resp, _ = self._call(
            "TD0.3",
            "habilitations",
            self._dmp_specific(HABILITATIONS, "setAuthorization", children),
            CallContext(patient),
            expected_body=[q(HABILITATIONS, "setAuthorizationResponse")],
        )
        return self._check_dmp_status(resp.body)[1]

    def list_authorizations(self, patient: PatientId, *, mode: str = "TOUTE") -> list[dict[str, str]]:
        """TD1.6: professionals authorised on (ACTIVE) or blocked from (INTERDITE) a DMP, or both (TOUTE)."""
        if mode not in ("ACTIVE", "INTERDITE", "TOUTE"):
            raise ValueError("mode must be ACTIVE, INTERDITE or TOUTE")
        resp, _ = self._call(
            "TD1.6",
            "habilitations",
            self._dmp_specific(HABILITATIONS, "listAuthorizationByPatient", {"mode": mode}),
            CallContext(patient),
            expected_body=[q(HABILITATIONS, "listAuthorizationByPatientResponse")],
        )
        self._check_dmp_status(resp.body)
        out = []
        for item in resp.body.iter():
            if isinstance(item.tag, str) and _local(item) == "listOfAuthorizationByPatient":
                row: dict[str, str] = {}
                for c in item:
                    if isinstance(c.tag, str):
                        key = _local(c)
                        text = (c.text or "").strip()
                        row[key] = f"{row[key]},{text}" if key in row else text
                out.append(row)
        return out

    def patient_list(self, since: datetime, *, date_type: str = "LASTAUTORIZATION") -> list[dict[str, str]]:
        """TD0.4: DMPs I am authorised on since a date."""
        body = self._dmp_specific(
            PATIENTS_SPECIFIC,
            "patientList",
            {"startDate": since.astimezone(UTC).strftime("%Y%m%d%H%M%S"), "dateType": date_type},
        )
        resp, _ = self._call(
            "TD0.4",
            "patientsSpecific",
            body,
            CallContext(None),
            expected_body=[q(PATIENTS_SPECIFIC, "patientListResponse")],
        )
        self._check_dmp_status(resp.body)
        out = []
        for item in resp.body.iter():
            if isinstance(item.tag, str) and _local(item) == "patientlistData":
                row = {}
                for c in item:
                    if isinstance(c.tag, str) and len(c) == 0:
                        row[_local(c)] = (c.text or "").strip()
                row["nationalId"] = _child_text(item, "nationalId")
                row["nationalIdType"] = _child_text(item, "nationalIdType")
                out.append(row)
        return out

    # ------------------------------------------------------------------ TD3.1 / TD3.2
    def find_documents(
        self,
        patient: PatientId,
        filters: FindFilters | None = None,
        *,
        purpose: Purpose = Purpose.NORMAL,
        reason: str = "",
    ) -> list[DocumentEntry]:
        """TD3.1a FindDocuments (the entries are read while the answer is parsed: ebrim.QueryEntries)."""
        entries = ebrim.QueryEntries()
        resp, _ = self._call(
            "TD3.1",
            "registry",
            ebrim.find_documents(patient, filters),
            CallContext(patient, purpose, reason),
            expected_body=[q(QUERY, "AdhocQueryResponse")],
            take=entries.taker,
        )
        return ebrim.parse_query_response(resp.body, entries)

    def get_documents(
        self,
        patient: PatientId,
        *,
        unique_ids: Sequence[str] = (),
        entry_uuids: Sequence[str] = (),
        purpose: Purpose = Purpose.NORMAL,
        reason: str = "",
    ) -> list[DocumentEntry]:
        """TD3.1b GetDocuments by uniqueId or entryUUID."""
        if not unique_ids and not entry_uuids:
            raise ValueError("unique_ids or entry_uuids required")
        entries = ebrim.QueryEntries()
        resp, _ = self._call(
            "TD3.1",
            "registry",
            ebrim.get_documents(unique_ids=unique_ids, entry_uuids=entry_uuids),
            CallContext(patient, purpose, reason),
            expected_body=[q(QUERY, "AdhocQueryResponse")],
            take=entries.taker,
        )
        return ebrim.parse_query_response(resp.body, entries)

    def retrieve(
        self, patient: PatientId, entry: DocumentEntry, *, purpose: Purpose = Purpose.NORMAL, reason: str = ""
    ) -> RetrievedDocument:
        """TD3.2 (ITI-43); the bytes are checked against the registry's hash and size."""
        repo = entry.repository_unique_id or DMP_REPOSITORY_UNIQUE_ID
        resp, parts = self._call(
            "TD3.2",
            "repository",
            ebrim.retrieve_request([(repo, entry.unique_id)]),
            CallContext(patient, purpose, reason),
            expected_body=[q(XDSB, "RetrieveDocumentSetResponse")],
        )
        rr = resp.body.find(q(RS, "RegistryResponse"))
        if rr is None:
            raise ProtocolError("La réponse du DMP n'a pas de statut.", detail="no RegistryResponse")
        ebrim.check_registry_status(rr)
        for dr in resp.body.iter(q(XDSB, "DocumentResponse")):
            uid = (dr.findtext(q(XDSB, "DocumentUniqueId")) or "").strip()
            if uid != entry.unique_id:
                continue
            doc = dr.find(q(XDSB, "Document"))
            if doc is None:
                raise ProtocolError("Le DMP n'a pas renvoyé le contenu du document.", detail=uid)
            inc = doc.find(q(XOP, "Include"))
            if inc is not None:
                content = mtom.resolve_include(inc.get("href", ""), parts)
            else:
                import base64

                content = base64.b64decode((doc.text or "").strip())
            if entry.hash and hashlib.sha1(content).hexdigest().lower() != entry.hash.lower():  # noqa: S324
                raise DocumentIntegrityError(
                    "Le document reçu du DMP ne correspond pas à son empreinte : il n'est pas affiché.",
                    code="HASH_MISMATCH",
                )
            if entry.size is not None and len(content) != entry.size:
                raise DocumentIntegrityError(
                    "Le document reçu du DMP n'a pas la taille annoncée : il n'est pas affiché.",
                    code="SIZE_MISMATCH",
                )
            return RetrievedDocument(
                uid,
                (dr.findtext(q(XDSB, "RepositoryUniqueId")) or repo).strip(),
                (dr.findtext(q(XDSB, "mimeType")) or entry.mime_type).strip(),
                content,
            )
        raise ProtocolError("Le DMP n'a pas renvoyé le document demandé.", detail=entry.unique_id)

    def retrieve_many(
        self,
        patient: PatientId,
        entries: Sequence[DocumentEntry],
        *,
        purpose: Purpose = Purpose.NORMAL,
        reason: str = "",
    ) -> list[RetrievedDocument]:
        """TD3.2 (ITI-43) for several documents: several DocumentRequest per request, chunked by
        ``RETRIEVE_MANY_MAX_DOCUMENTS`` / ``RETRIEVE_MANY_MAX_BYTES``; one result per entry, in order.

        Each document is checked against its entry's hash and size as ``retrieve`` does
        (``DocumentIntegrityError``); a document missing from an answer (PartialSuccess, or absent
        without a word) raises ``DocumentMissingError`` naming every missing uniqueId of that request;
        a Failure is the DMP's ``RegistryRefusal``. Requests are sent one after the other (the caller
        may run several ``retrieve_many`` in parallel)."""
        out: list[RetrievedDocument] = []
        for chunk in retrieve_chunks(entries):
            out.extend(self._retrieve_chunk(patient, chunk, CallContext(patient, purpose, reason)))
        return out

    def _retrieve_chunk(
        self, patient: PatientId, entries: Sequence[DocumentEntry], ctx: CallContext
    ) -> list[RetrievedDocument]:
        wanted: dict[tuple[str, str], DocumentEntry] = {}
        for e in entries:  # the same document twice is asked once
            wanted.setdefault((e.repository_unique_id or DMP_REPOSITORY_UNIQUE_ID, e.unique_id), e)
        resp, parts = self._call(
            "TD3.2",
            "repository",
            ebrim.retrieve_request(list(wanted)),
            ctx,
            expected_body=[q(XDSB, "RetrieveDocumentSetResponse")],
        )
        rr = resp.body.find(q(RS, "RegistryResponse"))
        if rr is None:
            raise ProtocolError("La réponse du DMP n'a pas de statut.", detail="no RegistryResponse")
        partial = rr.get("status", "") == ebrim.PARTIAL
        errors = ebrim.registry_errors(rr) if partial else ebrim.check_registry_status(rr)
        by_uid = {uid: e for (_, uid), e in wanted.items()}
        got: dict[str, RetrievedDocument] = {}
        for dr in resp.body.iterchildren(q(XDSB, "DocumentResponse")):
            uid = (dr.findtext(q(XDSB, "DocumentUniqueId")) or "").strip()
            entry = by_uid.get(uid)
            if entry is None or uid in got:
                continue  # not asked for, or twice: ignored (only what was asked is returned)
            doc = dr.find(q(XDSB, "Document"))
            if doc is None:
                continue  # reported missing below
            content = _document_content(doc, parts)
            _check_integrity(entry, content)
            got[uid] = RetrievedDocument(
                uid,
                (
                    dr.findtext(q(XDSB, "RepositoryUniqueId"))
                    or entry.repository_unique_id
                    or DMP_REPOSITORY_UNIQUE_ID
                ).strip(),
                (dr.findtext(q(XDSB, "mimeType")) or entry.mime_type).strip(),
                content,
            )
        missing = tuple(uid for uid in by_uid if uid not in got)
        if missing:
            more = f" (et {len(missing) - 1} autre(s))" if len(missing) > 1 else ""
            raise DocumentMissingError(
                f"Le DMP n'a pas renvoyé le document {missing[0]}{more}.", unique_ids=missing, errors=errors
            )
        return [got[e.unique_id] for e in entries]

    # ------------------------------------------------------------------ TD2.1
    def submission_set(
        self, patient: PatientId, content_type: Code | None = None, *, title: str = ""
    ) -> SubmissionSet:
        return SubmissionSet(
            unique_id=new_oid(),
            source_id=self._lps.oid,
            patient_id=patient,
            submission_time=datetime.now(UTC),
            authors=(author_of(self._creds.identity),),
            content_type=content_type or content_type_for(self._creds.identity),
            title=title,
        )

    def _signature_entry(self, ss: SubmissionSet, first: DocumentEntry, sig: bytes) -> DepositItem:
        entry = DocumentEntry(
            unique_id=new_oid(),
            patient_id=ss.patient_id,
            type_code=_SIGNATURE_TYPE,
            class_code=_SIGNATURE_CLASS,
            format_code=_SIGNATURE_FORMAT,
            healthcare_facility_type=first.healthcare_facility_type,
            practice_setting=first.practice_setting,
            creation_time=ss.submission_time,
            title="Signature du lot de soumission",
            language="art",
            authors=ss.authors,
            confidentiality=_SIGNATURE_CONFIDENTIALITY,
            event_codes=_SIGNATURE_EVENTS,
        )
        return DepositItem(entry, sig)

    def build_deposit(self, ss: SubmissionSet, items: Sequence[DepositItem]) -> tuple[bytes, list[mtom.Part]]:
        """The ITI-41 body (serialised: ``ebrim.provide_and_register_xml``) and its MTOM parts, XAdES
        signature included."""
        signer = self._creds.vihf_signer()
        if signer is None:
            raise AuthError(
                "Aucun certificat de signature n'est disponible : le lot ne peut pas être signé.",
                code="NO_SIGNER",
            )
        sig = xades.sign_submission_set(
            signer,
            ss.unique_id,
            [(i.entry.unique_id, i.content) for i in items],
            digests=[i.c14n_sha256 for i in items],
        )
        sig_item = self._signature_entry(ss, items[0].entry, sig)
        cids = [mtom.new_cid(n + 1) for n in range(len(items) + 1)]
        body = ebrim.provide_and_register_xml(ss, items, sig_item, content_ids=cids)
        parts = [
            mtom.Part(cid, it.entry.mime_type, it.content)
            for cid, it in zip(cids, [*items, sig_item], strict=True)
        ]
        return body, parts

    def deposit(
        self,
        ss: SubmissionSet,
        items: Sequence[DepositItem],
        *,
        progress: Progress | None = None,
    ) -> DepositResult:
        """TD2.1 (ITI-41). After a network failure, never resend before GetDocuments shows the
        first attempt was not registered (no duplicates)."""
        if not items:
            raise ValueError("nothing to deposit")
        if progress:
            progress("Signature du lot", 0, 3)
        body, parts = self.build_deposit(ss, items)
        uids = tuple(i.entry.unique_id for i in items)
        attempts = 0
        while True:
            attempts += 1
            if progress:
                progress("Envoi au DMP", 1, 3)
            try:
                resp, _ = self._call(
                    "TD2.1",
                    "repository",
                    body,
                    CallContext(ss.patient_id),
                    expected_body=[q(RS, "RegistryResponse")],
                    mtom_parts=parts,
                )
            except TransportError as exc:
                if progress:
                    progress("Vérification après incident réseau", 2, 3)
                found = self._registered(ss.patient_id, uids)
                if found == len(uids):
                    return DepositResult(ss.unique_id, uids, recovered=True, attempts=attempts)
                if found:
                    raise ProtocolError(
                        "Le DMP n'a enregistré qu'une partie du lot : vérifiez le dossier avant de renvoyer.",
                        code="PARTIAL_DEPOSIT",
                    ) from exc
                if attempts > self._deposit_retries:
                    raise
                continue
            warnings = ebrim.check_registry_status(resp.body)
            if progress:
                progress("Dépôt terminé", 3, 3)
            return DepositResult(
                ss.unique_id,
                uids,
                attempts=attempts,
                warnings=tuple(french_message(w.code, w.code_context) for w in warnings),
            )

    def send_deposit(
        self,
        ss: SubmissionSet,
        items: Sequence[DepositItem],
        *,
        progress: Progress | None = None,
    ) -> DepositResult:
        """ONE TD2.1 (ITI-41) attempt, no check and no resend: the deposit queue decides what a failure
        means (``errors.classify_failure``). Sending the same ``ss`` and items again is safe: their
        uniqueIds are the idempotency key (a duplicate refusal then means "registered")."""
        if not items:
            raise ValueError("nothing to deposit")
        if progress:
            progress("Signature du lot", 0, 2)
        body, parts = self.build_deposit(ss, items)
        if progress:
            progress("Envoi au DMP", 1, 2)
        resp, _ = self._call(
            "TD2.1",
            "repository",
            body,
            CallContext(ss.patient_id),
            expected_body=[q(RS, "RegistryResponse")],
            mtom_parts=parts,
        )
        warnings = ebrim.check_registry_status(resp.body)
        if progress:
            progress("Dépôt terminé", 2, 2)
        return DepositResult(
            ss.unique_id,
            tuple(i.entry.unique_id for i in items),
            warnings=tuple(french_message(w.code, w.code_context) for w in warnings),
        )

    def _registered(self, patient: PatientId, uids: Sequence[str]) -> int:
        """How many of ``uids`` the registry knows (any status). A failure here is re-raised:
        without an answer we cannot know, so we must not resend."""
        entries = self.get_documents(patient, unique_ids=uids)
        known = {e.unique_id for e in entries}
        return sum(1 for u in uids if u in known)

    # ------------------------------------------------------------------ TD3.3
    def update_visibility(self, patient: PatientId, entry: DocumentEntry, visibility: Visibility) -> None:
        """TD3.3a/b (ITI-57 metadata update): new confidentiality codes on a new version."""
        if not entry.entry_uuid:
            raise ValueError("entry must come from TD3.1")
        new = replace(entry.with_visibility(visibility), entry_uuid="", status="")
        ss = replace(self.submission_set(patient), title="Mise à jour de la visibilité")
        resp, _ = self._call(
            "TD3.3",
            "registry",
            ebrim.metadata_update(ss, entry, new),
            CallContext(patient),
            expected_body=[q(RS, "RegistryResponse")],
        )
        ebrim.check_registry_status(resp.body)

    def update_status(self, patient: PatientId, entry: DocumentEntry, new_status: Status) -> None:
        """TD3.3c/d (ITI-57 UpdateAvailabilityStatus): archive, unarchive, delete."""
        if not entry.entry_uuid:
            raise ValueError("entry must come from TD3.1")
        ss = self.submission_set(patient)
        resp, _ = self._call(
            "TD3.3",
            "registry",
            ebrim.availability_update(ss, entry.entry_uuid, entry.status or Status.APPROVED, new_status),
            CallContext(patient),
            expected_body=[q(RS, "RegistryResponse")],
        )
        ebrim.check_registry_status(resp.body)
