"""The DMP transactions' semantics: ``DmpService(store).handle(SoapRequest) -> SoapResponse``.

Dispatch is on (service, body element): TD0.2 (``patients``), TD0.3 / TD1.6 (``habilitations``),
TD0.4 (``patientsSpecific``), ITI-41 / ITI-43 (``repository``), ITI-18 / ITI-57 (``registry``).
Refusals take the shape of each transaction (dmp-protocol.md §9): a ``RegistryResponse`` /
``AdhocQueryResponse`` Failure with IHE or ``DMP*`` codes and a French ``codeContext`` for XDS, an
``AE`` acknowledgement for HL7v3, ``output/status`` for the DMP-specific services, and a
:class:`SoapFault` only for SOAP-level problems (unknown operation, body of the wrong service).
Every request is traced (who, structure, role, patient, mode, purpose, reason, what, result).

Exceptions: :class:`sandbox.server.context.SoapFault` (from ``handle``); internal refusals use
:class:`RegistryRefusal` and :class:`sandbox.dmp.rules.AccessRefused`, never leaving this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree

import cda
from cda import classify, valuesets
from cda import ins as cda_ins
from cda.errors import CdaError
from cda.xml import safe_parse
from sandbox.dmp import errors as E
from sandbox.dmp import hl7, rules, xds
from sandbox.dmp.rules import AccessRefused
from sandbox.dmp.store import (
    APPROVED,
    ARCHIVED,
    DEPRECATED,
    INTERDIT,
    STATUSES,
    VALIDE,
    DuplicateUniqueId,
    NewDocument,
    NewSubmission,
    Patient,
    StaleReplacement,
    StaleVersion,
    Store,
    StoredDocument,
    StoredSubmission,
    new_entry_uuid,
)
from sandbox.dmp.xades import XadesError, verify_submission_signature
from sandbox.dmp.xds import RIM, XDSB, XOP, q
from sandbox.server.context import PURPOSE_NORMAL, Caller, SoapFault, SoapRequest, SoapResponse

log = logging.getLogger("sandbox.dmp")

# PRPA_IN201307UV02 reasonCode (dmp-protocol.md §3): TD0.2 existence test, TD1.3a read administrative data.
# An absent reasonCode is read as TEST_EXST. TD1.3a needs the same rights as a consultation [I].
READ_ADMINISTRATIVE_DATA = "CNSLT_DATA"
TD02_REASONS = ("", "TEST_EXST", READ_ADMINISTRATIVE_DATA)
# TD1.1 create, TD1.2 reactivate, TD1.3b update, TD1.4 close: not offered to an LPS by the sandbox (the agent
# does not need them; the patient console does the same); answered with a clear SOAP fault.
PATIENT_ADMIN_UNSUPPORTED = ("PRPA_IN201311UV02", "PRPA_IN201314UV02")

# XDS uniqueId of a document (IHE ITI TF-3 4.2.3.2.26; dmp-protocol.md §8.5 "≤ 64 chars"): "root" or
# "root^extension", root at most 64 characters, extension at most 16. A UUID root (cda.md §1) passes.
UNIQUE_ID_ROOT_MAX = 64
UNIQUE_ID_EXTENSION_MAX = 16

FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
MAX_RESULTS = 5000  # [I] beyond this FindDocuments answers XDSTooManyResults
SIGNATURE_FORMAT = "http://www.w3.org/2000/09/xmldsig#"
# [C:S7] the submission-set signature is mandatory for the DMP: an unsigned deposit is refused.
REQUIRE_SUBMISSION_SIGNATURE = True
# Confidentiality codes a deposit may carry (dmp-protocol 8.3); "N" is mandatory.
DEPOSIT_CONFIDENTIALITY = {"N", "MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"}

ACTIONS = {
    "TD0.2": "urn:hl7-org:v3:PRPA_IN201308UV02",
    "TD0.3": "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorizationResponse",
    "TD1.6": "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatientResponse",
    "TD0.4": "urn:si-dmp-patients:PatientSpecificEndPoint:patientListResponse",
    "TD2.1": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse",
    "TD3.1": "urn:ihe:iti:2007:RegistryStoredQueryResponse",
    "TD3.2": "urn:ihe:iti:2007:RetrieveDocumentSetResponse",
    "TD3.3": "urn:ihe:iti:2010:UpdateDocumentSet-Response",
}


# Request actions -> TD names (S1 and WSDL forms), for the traces of refused requests
ACTION_TDS = {
    "urn:hl7-org:v3:PRPA_IN201307UV02": "TD0.2",
    "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization": "TD0.3",
    "urn:hl7-org:v3:setAuthorization": "TD0.3",
    "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient": "TD1.6",
    "urn:hl7-org:v3:listAuthorizationByPatient": "TD1.6",
    "urn:si-dmp-patients:PatientSpecificEndPoint:patientList": "TD0.4",
    "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b": "TD2.1",
    "urn:ihe:iti:2007:RegistryStoredQuery": "TD3.1",
    "urn:ihe:iti:2007:RetrieveDocumentSet": "TD3.2",
    "urn:ihe:iti:2010:UpdateDocumentSet": "TD3.3",
}


class RegistryRefusal(Exception):
    def __init__(self, code: str, message_fr: str, location: str = "") -> None:
        super().__init__(message_fr)
        self.code = code
        self.message_fr = message_fr
        self.location = location


@dataclass
class _Outcome:
    """What a handler tells the tracer."""

    td: str
    result: str = "OK"
    what: list[str] = field(default_factory=list)


def _role(caller: Caller) -> str:
    if caller.profession_code:
        return caller.profession_code + (f"/{caller.specialty_code}" if caller.specialty_code else "")
    return caller.non_ps_role or caller.role_code


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - XDS hash slot is SHA-1 by definition


class DmpService:
    """The domain layer. Thread-safe as long as ``store`` is (it is)."""

    def __init__(self, store: Store, *, trusted_certs: Iterable[x509.Certificate] = ()) -> None:
        self.store = store
        self.trusted_certs = list(trusted_certs)
        self._routes: dict[tuple[str, str], Callable[[SoapRequest, _Outcome], SoapResponse]] = {
            ("patients", f"{{{hl7.HL7}}}PRPA_IN201307UV02"): self._td02,
            ("habilitations", f"{{{hl7.HABILITATIONS}}}setAuthorization"): self._td03,
            ("habilitations", f"{{{hl7.HABILITATIONS}}}listAuthorizationByPatient"): self._td16,
            ("patientsSpecific", f"{{{hl7.PATIENTS_SPECIFIC}}}patientList"): self._td04,
            ("repository", q(XDSB, "ProvideAndRegisterDocumentSetRequest")): self._iti41,
            ("repository", q(XDSB, "RetrieveDocumentSetRequest")): self._iti43,
            ("registry", f"{{{xds.QUERY}}}AdhocQueryRequest"): self._iti18,
            ("registry", q(xds.LCM, "SubmitObjectsRequest")): self._iti57,
        }
        self._td_names = {
            "PRPA_IN201307UV02": "TD0.2",
            "setAuthorization": "TD0.3",
            "listAuthorizationByPatient": "TD1.6",
            "patientList": "TD0.4",
            "ProvideAndRegisterDocumentSetRequest": "TD2.1",
            "RetrieveDocumentSetRequest": "TD3.2",
            "AdhocQueryRequest": "TD3.1",
            "SubmitObjectsRequest": "TD3.3",
        }

    # -- entry points ---------------------------------------------------------------------------
    def handle(self, req: SoapRequest) -> SoapResponse:
        tag = req.body.tag if isinstance(req.body.tag, str) else ""
        local = etree.QName(tag).localname if tag else ""
        outcome = _Outcome(self._td_names.get(local, req.service))
        handler = self._routes.get((req.service, tag))
        try:
            if handler is None and req.service == "patients" and local in PATIENT_ADMIN_UNSUPPORTED:
                outcome.td = "TD1.x"
                raise SoapFault(
                    f"Transaction {local} (création, réactivation, mise à jour ou fermeture de DMP) non"
                    " disponible dans le DMP de test : utilisez la console patient"
                    " (python -m sandbox patient create|close|reopen).",
                    subcode="sandbox:UnsupportedTransaction",
                )
            if handler is None:
                raise SoapFault(
                    f"Opération inconnue pour le service {req.service} : {local or '(corps vide)'}.",
                    subcode="sandbox:UnknownOperation",
                )
            return handler(req, outcome)
        except SoapFault as fault:
            outcome.result = f"REFUS SOAP : {fault.reason_fr}"
            raise
        except Exception as exc:
            outcome.result = f"ERREUR : {type(exc).__name__}"
            log.exception("domain layer failure on %s %s", req.service, local)
            raise SoapFault(
                "Erreur interne du DMP de test.", code="Receiver", subcode="sandbox:InternalError"
            ) from exc
        finally:
            self._trace(req.caller, outcome)

    def trace_refusal(self, caller: Caller | None, service: str, action: str, reason: str) -> None:
        """Trace a request the server layer refused before the domain layer (TLS, VIHF, envelope)."""
        td = ACTION_TDS.get(action) or next(
            (v for k, v in self._td_names.items() if action.endswith(k)), service or "?"
        )
        self._trace(caller, _Outcome(td, f"REFUS : {reason}", [action] if action else []))

    def _trace(self, caller: Caller | None, outcome: _Outcome) -> None:
        if caller is None:
            self.store.add_trace(transaction=outcome.td, result=outcome.result, what=" ".join(outcome.what))
            return
        self.store.add_trace(
            transaction=outcome.td,
            result=outcome.result,
            patient_ins=caller.patient_ins,
            ps_id=caller.id_nat,
            ps_name=f"{caller.given_name} {caller.family_name}".strip(),
            structure_id=caller.structure_id,
            role=_role(caller),
            mode=caller.mode,
            purpose=caller.purpose,
            reason=caller.reason,
            what=" ".join(outcome.what),
        )

    # -- TD0.2 ----------------------------------------------------------------------------------
    def _td02(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        query = hl7.read_existence_query(req.body)
        caller = req.caller

        def answer(**kw: object) -> SoapResponse:
            return SoapResponse(ACTIONS["TD0.2"], hl7.existence_response(query, **kw))  # type: ignore[arg-type]

        if query.reason not in TD02_REASONS:
            out.result = "AE : motif inconnu"
            return answer(
                patient=None,
                authorisation="",
                medecin_traitant=False,
                error=("INVALID_REASON", f"Motif de requête non pris en charge : {query.reason}."),
            )
        try:
            ins = cda_ins.check_nir(query.ins)
            cda_ins.check_oid(query.ins_oid)
        except CdaError as exc:
            out.result = "AE : INS invalide"
            return answer(
                patient=None, authorisation="", medecin_traitant=False, error=("INVALID_INS", exc.message_fr)
            )
        if caller.patient_ins and caller.patient_ins != ins:
            out.result = "AE : patient différent du VIHF"
            return answer(
                patient=None,
                authorisation="",
                medecin_traitant=False,
                error=(
                    "PATIENT_MISMATCH",
                    "Le patient de la requête ne correspond pas au patient du VIHF (resource-id).",
                ),
            )
        out.what.append(f"INS {ins}")
        patient = self.store.patient(ins)
        if (patient is None or patient.oid != query.ins_oid) and query.reason == READ_ADMINISTRATIVE_DATA:
            out.result = f"AE : {E.UNKNOWN_PATIENT}"
            return answer(
                patient=None,
                authorisation="",
                medecin_traitant=False,
                error=(E.UNKNOWN_PATIENT, "Ce patient n'a pas de DMP."),
            )
        if patient is None or patient.oid != query.ins_oid:
            out.result = "OK : pas de DMP"
            return answer(patient=None, authorisation="NON_EXISTE", medecin_traitant=False)
        auth = self.store.authorisation(ins, caller.id_nat)
        status = auth.status if auth else "NON_EXISTE"
        if query.reason == READ_ADMINISTRATIVE_DATA:
            # TD1.3a: the administrative data are part of the DMP: same rights as a consultation
            out.td = "TD1.3a"
            try:
                rules.check_consultation(caller, patient, auth)
            except AccessRefused as refused:
                out.result = f"AE : {refused.code}"
                return answer(
                    patient=None,
                    authorisation="",
                    medecin_traitant=False,
                    error=(refused.code, refused.message_fr),
                )
            out.result = "OK : données administratives"
            return answer(
                patient=patient,
                authorisation=status,
                medecin_traitant=patient.medecin_traitant == caller.id_nat,
            )
        warning = None
        if patient.status != "ACTIVE":
            try:
                rules.check_dmp_open(patient)
            except AccessRefused as refused:
                warning = refused.message_fr
        out.result = f"OK : DMP {patient.status}, autorisation {status}"
        return answer(
            patient=patient,
            authorisation=status,
            medecin_traitant=patient.medecin_traitant == caller.id_nat,
            warning=warning,
        )

    # -- TD0.3 ----------------------------------------------------------------------------------
    def _td03(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        ns = hl7.HABILITATIONS
        caller = req.caller
        action = hl7.child_text(req.body, ns, "action")
        role = hl7.child_text(req.body, ns, "role")
        out.what.append(f"{action} {role}".strip())
        root, output = hl7.dmp_output(ns, "setAuthorizationResponse", "", "")

        def done(status: str, context: str) -> SoapResponse:
            hl7.finish_output(ns, output, status, context)
            out.result = f"{status} : {context}" if context else status
            return SoapResponse(ACTIONS["TD0.3"], root)

        if action not in ("AJOUT", "SUPPRESSION"):
            return done(E.STATUS_INVALID, f"Action inconnue : « {action} » (AJOUT ou SUPPRESSION attendu).")
        if role not in ("", "MEDECIN_TRAITANT"):
            return done(E.STATUS_INVALID, f"Rôle inconnu : « {role} » (MEDECIN_TRAITANT attendu).")
        patient = self.store.patient(caller.patient_ins or "")
        if patient is None:
            return done(E.STATUS_NOT_FOUND, "Ce patient n'a pas de DMP.")
        try:
            rules.check_dmp_open(patient)
        except AccessRefused as refused:
            return done(E.STATUS_CLOSED, refused.message_fr)
        if not rules.is_ps(caller):
            return done(E.ACCESS_DENIED, "Seul un professionnel de santé peut être autorisé sur un DMP.")
        if caller.purpose != PURPOSE_NORMAL:
            return done(
                E.ACCESS_DENIED,
                "L'autorisation ne s'enregistre qu'en accès normal, avec l'accord du patient.",
            )
        current = self.store.authorisation(patient.ins, caller.id_nat)
        if action == "AJOUT":
            if current is not None and current.status == INTERDIT:
                return done(
                    E.BLOCKED,
                    "Le patient a bloqué votre accès à son dossier : il doit d'abord vous débloquer"
                    " depuis Mon espace santé.",
                )
            if role == "MEDECIN_TRAITANT" and caller.profession_code != "10":
                return done(E.ACCESS_DENIED, "Seul un médecin peut être déclaré médecin traitant.")
            context = ""
            if current is not None and current.status == VALIDE:
                context = "Autorisation déjà présente aucune action effectuée"
            else:
                self.store.set_authorisation(
                    patient.ins,
                    caller.id_nat,
                    VALIDE,
                    family_name=caller.family_name,
                    given_name=caller.given_name,
                    speciality=f"G15_{caller.profession_code}/{caller.specialty_code}".rstrip("/"),
                )
            if role == "MEDECIN_TRAITANT":
                self.store.set_medecin_traitant(patient.ins, caller.id_nat)
                context = "Médecin traitant déclaré."
            return done(E.STATUS_OK, context)
        # SUPPRESSION
        if role == "MEDECIN_TRAITANT":
            if patient.medecin_traitant == caller.id_nat:
                self.store.set_medecin_traitant(patient.ins, None)
                return done(E.STATUS_OK, "Déclaration de médecin traitant retirée.")
            return done(
                E.STATUS_OK, "Vous n'êtes pas médecin traitant de ce patient : aucune action effectuée"
            )
        if current is None or current.status != VALIDE:
            return done(E.STATUS_OK, "Aucune autorisation à supprimer : aucune action effectuée")
        self.store.remove_authorisation(patient.ins, caller.id_nat)
        return done(E.STATUS_OK, "")

    # -- TD1.6 ----------------------------------------------------------------------------------
    def _td16(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        ns = hl7.HABILITATIONS
        caller = req.caller
        mode = hl7.child_text(req.body, ns, "mode") or "TOUTE"
        root, output = hl7.dmp_output(ns, "listAuthorizationByPatientResponse", "", "")

        def done(status: str, context: str) -> SoapResponse:
            hl7.finish_output(ns, output, status, context)
            out.result = f"{status} : {context}" if context else status
            return SoapResponse(ACTIONS["TD1.6"], root)

        if mode not in ("ACTIVE", "INTERDITE", "TOUTE"):
            return done(E.STATUS_INVALID, f"Mode inconnu : « {mode} » (ACTIVE, INTERDITE ou TOUTE attendu).")
        patient = self.store.patient(caller.patient_ins or "")
        try:
            patient = rules.check_consultation(
                caller, patient, self.store.authorisation(caller.patient_ins or "", caller.id_nat)
            )
        except AccessRefused as refused:
            return done(
                refused.code if refused.code != E.DMP_NOT_FOUND else E.STATUS_NOT_FOUND, refused.message_fr
            )
        wanted = {"ACTIVE": {VALIDE}, "INTERDITE": {INTERDIT}, "TOUTE": {VALIDE, INTERDIT}}[mode]
        count = 0
        for auth in self.store.authorisations(patient.ins):
            if auth.status not in wanted:
                continue
            count += 1
            item = etree.Element(f"{{{ns}}}listOfAuthorizationByPatient")
            output.append(item)
            for name, value in (
                ("nationalId", auth.ps_id),
                ("nationalIdType", "1.2.250.1.71.4.2.1"),
                ("firstName", auth.given_name),
                ("lastName", auth.family_name),
                ("codeSpeciality", auth.speciality),
                ("startOfAuthorization", auth.started_at),
                ("lastActionDate", auth.updated_at),
                ("mode", "ACTIVE" if auth.status == VALIDE else "INTERDITE"),
            ):
                etree.SubElement(item, f"{{{ns}}}{name}").text = value
            if patient.medecin_traitant == auth.ps_id:
                etree.SubElement(item, f"{{{ns}}}specificRight").text = "MEDECIN_TRAITANT"
        out.what.append(f"{mode}: {count}")
        return done(E.STATUS_OK, "")

    # -- TD0.4 ----------------------------------------------------------------------------------
    def _td04(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        ns = hl7.PATIENTS_SPECIFIC
        caller = req.caller
        start = hl7.child_text(req.body, ns, "startDate")
        date_type = hl7.child_text(req.body, ns, "dateType") or "LASTAUTORIZATION"
        root, output = hl7.dmp_output(ns, "patientListResponse", "", "")

        def done(status: str, context: str) -> SoapResponse:
            hl7.finish_output(ns, output, status, context)
            out.result = f"{status} : {context}" if context else status
            return SoapResponse(ACTIONS["TD0.4"], root)

        if date_type not in ("LASTAUTORIZATION", "LASTDOC"):
            return done(E.STATUS_INVALID, f"Type de date inconnu : « {date_type} ».")
        if start and (len(start) not in (8, 12, 14) or not start.isdigit()):
            return done(E.STATUS_INVALID, f"Date de début invalide : « {start} » (AAAAMMJJHHMMSS attendu).")
        if not rules.is_ps(caller):
            return done(E.ACCESS_DENIED, "Liste réservée aux professionnels de santé.")
        count = 0
        for auth in self.store.authorisations(ps_id=caller.id_nat):
            if auth.status != VALIDE:
                continue
            patient = self.store.patient(auth.ins)
            if patient is None or patient.status != "ACTIVE":
                continue
            last_doc = self.store.last_document_time(patient.ins)
            pivot = auth.updated_at if date_type == "LASTAUTORIZATION" else last_doc
            if start and pivot < start:
                continue
            count += 1
            item = etree.SubElement(output, f"{{{ns}}}patientlistData")
            ident = etree.SubElement(item, f"{{{ns}}}patientIdentifier")
            etree.SubElement(ident, f"{{{ns}}}nationalId").text = patient.ins
            etree.SubElement(ident, f"{{{ns}}}nationalIdType").text = patient.oid
            etree.SubElement(item, f"{{{ns}}}lastName").text = patient.family_name
            etree.SubElement(item, f"{{{ns}}}firstName").text = patient.given_names.split()[0]
            etree.SubElement(item, f"{{{ns}}}dateOfBirth").text = patient.birth_date
            etree.SubElement(item, f"{{{ns}}}MT").text = str(
                patient.medecin_traitant == caller.id_nat
            ).lower()
            etree.SubElement(item, f"{{{ns}}}message").text = "false"
            etree.SubElement(item, f"{{{ns}}}lastUpdateDate").text = auth.updated_at
            if last_doc:
                etree.SubElement(item, f"{{{ns}}}lastAddDate").text = last_doc
        out.what.append(f"{date_type} {start}: {count}")
        return done(E.STATUS_OK, "")

    # -- ITI-41 (TD2.1) -------------------------------------------------------------------------
    def _iti41(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        try:
            self._deposit(req, out)
        except (RegistryRefusal, AccessRefused) as exc:
            code = exc.code
            out.result = f"{code} : {exc.message_fr}"
            return SoapResponse(
                ACTIONS["TD2.1"],
                xds.registry_response([(code, exc.message_fr, getattr(exc, "location", ""))]),
            )
        out.result = "OK"
        return SoapResponse(ACTIONS["TD2.1"], xds.registry_response())

    def _document_bytes(self, doc_el: etree._Element, attachments: dict[str, bytes]) -> bytes:
        include = doc_el.find(q(XOP, "Include"))
        doc_id = doc_el.get("id", "")
        if include is not None:
            from sandbox.server.mtom import normalise_cid

            cid = normalise_cid(include.get("href", ""))
            if cid not in attachments:
                raise RegistryRefusal(
                    E.MISSING_DOCUMENT,
                    f"La pièce MTOM du document {doc_id} est absente du message (cid:{cid}).",
                    doc_id,
                )
            return attachments[cid]
        text = "".join((doc_el.text or "").split())
        if not text:
            raise RegistryRefusal(E.MISSING_DOCUMENT, f"Le contenu du document {doc_id} est vide.", doc_id)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RegistryRefusal(
                E.MISSING_DOCUMENT, f"Le contenu du document {doc_id} n'est pas du base64 valide.", doc_id
            ) from None

    def _deposit(self, req: SoapRequest, out: _Outcome) -> None:
        caller = req.caller
        if not caller.patient_ins:
            raise RegistryRefusal(E.UNKNOWN_PATIENT, "Le VIHF ne désigne aucun patient (resource-id).")
        sor = req.body.find(q(xds.LCM, "SubmitObjectsRequest"))
        if sor is None:
            raise RegistryRefusal(E.METADATA, "Requête sans SubmitObjectsRequest.")
        sub = xds.read_submission(sor)
        contents: dict[str, bytes] = {}
        for doc_el in req.body.findall(q(XDSB, "Document")):
            contents[doc_el.get("id", "")] = self._document_bytes(doc_el, req.attachments)
        sets = [p for p in sub.packages if p.is_submission_set] or sub.packages
        if len(sets) != 1:
            raise RegistryRefusal(E.METADATA, "Le lot doit contenir exactement un SubmissionSet.")
        ss = sets[0]
        entries = {d.id: d for d in sub.documents}
        for doc_id in contents:
            if doc_id not in entries:
                raise RegistryRefusal(
                    E.MISSING_METADATA,
                    f"Le document {doc_id} n'a pas de métadonnées (ExtrinsicObject).",
                    doc_id,
                )
        for entry in sub.documents:
            if entry.id not in contents:
                raise RegistryRefusal(
                    E.MISSING_DOCUMENT, f"Le document {entry.id} est décrit mais absent du message.", entry.id
                )
        signers = {a.source for a in sub.associations if a.type == xds.SIGNS and a.target == ss.id}
        members = {a.target for a in sub.associations if a.type == xds.HAS_MEMBER and a.source == ss.id}
        for entry in sub.documents:
            if entry.id not in members:
                raise RegistryRefusal(
                    E.METADATA,
                    f"Le document {entry.id} n'est pas rattaché au lot (association HasMember).",
                    entry.id,
                )
        sig_entries = [
            e
            for e in sub.documents
            if e.id in signers or (e.code(xds.S_FORMAT) and e.code(xds.S_FORMAT).code == SIGNATURE_FORMAT)  # type: ignore[union-attr]
        ]
        cda_entries = [e for e in sub.documents if e not in sig_entries]
        if not cda_entries:
            raise RegistryRefusal(E.METADATA, "Le lot ne contient aucun document.")
        if len(sig_entries) > 1:
            raise RegistryRefusal(E.METADATA, "Le lot contient plusieurs signatures de lot.")

        # submission set
        ss_pid, ss_oid = xds.parse_cx(ss.external_ids.get(xds.E_SS_PATIENT, ""))
        ss_uid = ss.external_ids.get(xds.E_SS_UNIQUE, "")
        if not ss_uid:
            raise RegistryRefusal(E.METADATA, "Le lot n'a pas d'identifiant unique (uniqueId).", ss.id)
        if not ss.external_ids.get(xds.E_SS_SOURCE):
            raise RegistryRefusal(E.METADATA, "Le lot n'a pas d'identifiant de source (sourceId).", ss.id)
        if not ss.slot("submissionTime"):
            raise RegistryRefusal(E.METADATA, "Le lot n'a pas de date de soumission (submissionTime).", ss.id)
        content_type = ss.code(xds.S_CONTENT_TYPE)
        if content_type is None or not content_type.code:
            raise RegistryRefusal(E.METADATA, "Le lot n'a pas de type d'activité (contentTypeCode).", ss.id)
        if (ss_pid, ss_oid) != (caller.patient_ins, caller.patient_oid):
            raise RegistryRefusal(
                E.PATIENT_MISMATCH,
                "L'identifiant patient du lot ne correspond pas au patient du VIHF.",
                ss.id,
            )
        patient = self.store.patient(caller.patient_ins)
        if patient is not None and patient.oid != caller.patient_oid:
            patient = None
        rules.check_dmp_open(patient)
        assert patient is not None
        rules.check_not_regulation_write(caller)

        # documents
        new_docs: list[NewDocument] = []
        cda_contents: dict[str, bytes] = {}
        parsed: dict[str, etree._Element] = {}
        replacements = {a.source: a.target for a in sub.associations if a.type == xds.RPLC}
        for entry in cda_entries:
            data = contents[entry.id]
            new_docs.append(
                self._check_entry(caller, patient, entry, data, replacements.get(entry.id), parsed)
            )
            cda_contents[new_docs[-1].unique_id] = data
        sig_uids = [self._check_signature_entry(e, patient.ins, patient.oid) for e in sig_entries]
        uids = [d.unique_id for d in new_docs] + sig_uids + [ss_uid]
        if len(set(uids)) != len(uids):
            raise RegistryRefusal(
                E.UNIQUE_ID, "Le même identifiant unique est utilisé deux fois dans le lot."
            )
        taken = self.store.unique_id_exists(uids)
        if taken:
            raise RegistryRefusal(
                E.UNIQUE_ID, f"L'identifiant unique {taken} est déjà enregistré dans le DMP.", taken
            )

        # XAdES signature of the submission set
        signature: bytes | None = None
        if sig_entries:
            signature = contents[sig_entries[0].id]
            try:
                sig_root = safe_parse(signature)
            except CdaError as exc:
                raise RegistryRefusal(
                    E.SIGNATURE, f"Signature du lot illisible : {exc.message_fr}", sig_entries[0].id
                ) from None
            try:
                verify_submission_signature(
                    sig_root, ss_uid, cda_contents, parsed=parsed, trusted=self.trusted_certs
                )
            except XadesError as exc:
                raise RegistryRefusal(E.SIGNATURE, exc.message_fr, sig_entries[0].id) from None
        elif REQUIRE_SUBMISSION_SIGNATURE:
            raise RegistryRefusal(
                E.SIGNATURE, "La signature XAdES du lot de soumission est obligatoire pour le DMP.", ss.id
            )

        ss_uuid = new_entry_uuid()
        submission = NewSubmission(
            entry_uuid=ss_uuid,
            unique_id=ss_uid,
            patient_ins=patient.ins,
            author_id=caller.id_nat,
            submission_time=ss.slot("submissionTime"),
            source_id=ss.external_ids.get(xds.E_SS_SOURCE, ""),
            signature=signature,
            documents=new_docs,
        )
        try:
            self.store.register(submission)
        except DuplicateUniqueId as exc:
            raise RegistryRefusal(E.UNIQUE_ID, exc.message_fr, exc.unique_id) from None
        except StaleReplacement as exc:
            raise RegistryRefusal(E.METADATA_VERSION, exc.message_fr) from None
        out.what.extend(f"{d.unique_id} ({d.type_code})" for d in new_docs)

    @staticmethod
    def _check_signature_entry(entry: xds.RegistryObject, ins: str, oid: str) -> str:
        """The Signature01 entry (dmp-protocol 8.4): XML, same patient, its own uniqueId, xmldsig format."""
        if entry.object_type != xds.DOC_ENTRY_TYPE or entry.mime_type != "text/xml":
            raise RegistryRefusal(
                E.METADATA, "L'entrée de signature doit être un document text/xml.", entry.id
            )
        if xds.parse_cx(entry.external_ids.get(xds.E_DOC_PATIENT, "")) != (ins, oid):
            raise RegistryRefusal(
                E.PATIENT_MISMATCH,
                "L'identifiant patient de la signature ne correspond pas au patient.",
                entry.id,
            )
        unique_id = entry.external_ids.get(xds.E_DOC_UNIQUE, "")
        if not unique_id:
            raise RegistryRefusal(E.METADATA, "La signature du lot n'a pas d'identifiant unique.", entry.id)
        fmt = entry.code(xds.S_FORMAT)
        if fmt is None or fmt.code != SIGNATURE_FORMAT:
            raise RegistryRefusal(
                E.METADATA, f"Le formatCode de la signature doit être {SIGNATURE_FORMAT}.", entry.id
            )
        return unique_id

    def _check_entry(
        self,
        caller: Caller,
        patient: object,
        entry: xds.RegistryObject,
        data: bytes,
        replaces: str | None,
        parsed: dict[str, etree._Element] | None = None,
    ) -> NewDocument:
        from sandbox.dmp.store import Patient

        assert isinstance(patient, Patient)
        loc = entry.id

        def bad(message: str, code: str = E.METADATA) -> RegistryRefusal:
            return RegistryRefusal(code, message, loc)

        if entry.object_type != xds.DOC_ENTRY_TYPE:
            raise bad(f"Type d'objet inattendu pour {loc} : {entry.object_type}.")
        if entry.mime_type != "text/xml":
            raise bad(f"Type MIME {entry.mime_type or '(absent)'} refusé : text/xml attendu pour un CDA.")
        pid, oid = xds.parse_cx(entry.external_ids.get(xds.E_DOC_PATIENT, ""))
        if not pid:
            raise bad("Identifiant patient (patientId) absent ou mal formé.")
        if (pid, oid) != (patient.ins, patient.oid):
            raise bad(
                "L'identifiant patient du document ne correspond pas au patient du VIHF.", E.PATIENT_MISMATCH
            )
        unique_id = entry.external_ids.get(xds.E_DOC_UNIQUE, "")
        if not unique_id:
            raise bad("Identifiant unique du document (uniqueId) absent.")
        uid_root, _sep, uid_ext = unique_id.partition("^")
        if len(uid_root) > UNIQUE_ID_ROOT_MAX or len(uid_ext) > UNIQUE_ID_EXTENSION_MAX:
            raise bad(
                f"Identifiant unique du document trop long : {UNIQUE_ID_ROOT_MAX} caractères au plus pour"
                f" la racine (OID), {UNIQUE_ID_EXTENSION_MAX} pour l'extension."
            )
        # hash and size against the MTOM part (XDS: SHA-1 hex)
        if entry.slot("hash") and entry.slot("hash").lower() != _sha1(data):
            raise bad(
                "L'empreinte (hash) des métadonnées ne correspond pas au document reçu.",
                E.REPOSITORY_METADATA,
            )
        if entry.slot("size") and entry.slot("size") != str(len(data)):
            raise bad(
                "La taille (size) des métadonnées ne correspond pas au document reçu.", E.REPOSITORY_METADATA
            )
        for slot in ("creationTime", "languageCode", "sourcePatientId"):
            if not entry.slot(slot):
                raise bad(f"Métadonnée obligatoire absente : {slot}.")
        type_c = entry.code(xds.S_TYPE)
        class_c = entry.code(xds.S_CLASS)
        format_c = entry.code(xds.S_FORMAT)
        facility = entry.code(xds.S_FACILITY)
        practice = entry.code(xds.S_PRACTICE)
        for label, coded in (
            ("typeCode", type_c),
            ("classCode", class_c),
            ("formatCode", format_c),
            ("healthcareFacilityTypeCode", facility),
            ("practiceSettingCode", practice),
        ):
            if coded is None or not coded.code:
                raise bad(f"Métadonnée obligatoire absente : {label}.")
        assert type_c and class_c and format_c and facility and practice
        try:
            row = valuesets.check_dmp_type(type_c.code)
        except CdaError as exc:
            raise bad(exc.message_fr) from None
        if class_c.code != row.class_code:
            raise bad(
                f"Le classCode {class_c.code} ne correspond pas au type {type_c.code} (classe attendue"
                f" {row.class_code}, {row.class_label})."
            )
        if not valuesets.is_facility_type(facility.code):
            raise bad(f"healthcareFacilityTypeCode inconnu : {facility.code} (JDV_J02).")
        if not valuesets.is_practice_setting(practice.code):
            raise bad(f"practiceSettingCode inconnu : {practice.code} (JDV_J04).")
        conf = {c.code for c in entry.classifications.get(xds.S_CONFIDENTIALITY, [])}
        if "N" not in conf:
            raise bad("Le code de confidentialité N est obligatoire.")
        if conf - DEPOSIT_CONFIDENTIALITY:
            raise bad(
                f"Codes de confidentialité refusés : {', '.join(sorted(conf - DEPOSIT_CONFIDENTIALITY))}."
            )
        # the CDA inside
        try:
            doc = cda.parse(data)
            if parsed is not None:
                parsed[unique_id] = doc.root
        except CdaError as exc:
            raise bad(f"Le document n'est pas un CDA lisible : {exc.message_fr}") from None
        cda_uid = ""
        if doc.id is not None:
            cda_uid = f"{doc.id.root}^{doc.id.extension}" if doc.id.extension else doc.id.root
        if cda_uid != unique_id:
            raise bad(
                f"Le uniqueId {unique_id} ne correspond pas à l'identifiant du CDA ({cda_uid or 'absent'})."
            )
        if doc.type_code != type_c.code:
            raise bad(
                f"Le typeCode {type_c.code} ne correspond pas au code du CDA ({doc.type_code or 'absent'})."
            )
        expected_format = classify.format_code_of(doc)
        if format_c.code != expected_format:
            raise bad(f"Le formatCode {format_c.code} ne correspond pas au volet du CDA ({expected_format}).")
        cda_ins_id = doc.patient.ins if doc.patient else None
        if cda_ins_id is None:
            raise bad("Le CDA ne porte pas l'INS du patient (recordTarget).")
        try:
            cda_ins.check_nir(cda_ins_id.extension)
        except CdaError as exc:
            raise bad(exc.message_fr) from None
        if (cda_ins_id.extension, cda_ins_id.root) != (patient.ins, patient.oid):
            raise bad("L'INS du CDA ne correspond pas au patient du dépôt.", E.PATIENT_MISMATCH)
        # author
        author = entry.authors[0] if entry.authors else {}
        author_id = xds.parse_xcn_id((author.get("authorPerson") or [""])[0])
        if not author_id:
            raise bad("Auteur du document (authorPerson) absent.")
        author_structure = xds.parse_xon_id((author.get("authorInstitution") or [""])[0])
        specialty = (author.get("authorSpecialty") or [""])[0].split("^")[0]
        author_profession, author_specialty = "", ""
        if specialty.startswith("G15_"):
            head, _, tail = specialty[4:].partition("/")
            author_profession, author_specialty = head, tail
        if not caller.profession_code and not author_profession:
            raise bad("La spécialité de l'auteur (authorSpecialty) est obligatoire pour un dépôt délégué.")
        expected_author = rules.expected_author(caller)
        if expected_author and author_id != expected_author:
            raise bad(
                f"L'auteur du document ({author_id}) doit être le professionnel authentifié"
                f" ({expected_author}) : un professionnel ne dépose que les documents dont il est l'auteur."
            )
        rules.check_deposit(caller, patient, author_profession, author_specialty, type_c.code)
        rules.check_deposit_confidentiality(caller, patient, conf)
        # replacement
        set_id = ""
        if doc.set_id is not None:
            set_id = f"{doc.set_id.root}^{doc.set_id.extension}" if doc.set_id.extension else doc.set_id.root
        if replaces:
            old = self.store.document(entry_uuid=replaces)
            if old is None or old.patient_ins != patient.ins:
                raise bad(f"Le document à remplacer ({replaces}) est inconnu pour ce patient.")
            if old.status != APPROVED:
                raise bad("Le document à remplacer n'est plus la version courante.", E.METADATA_VERSION)
            if old.set_id and set_id and old.set_id != set_id:
                raise bad("Le nouveau document n'a pas le même setId que celui qu'il remplace.")
        entry_uuid = new_entry_uuid()
        metadata = self._registered_metadata(entry, entry_uuid, data, unique_id)
        return NewDocument(
            entry_uuid=entry_uuid,
            unique_id=unique_id,
            patient_ins=patient.ins,
            patient_oid=patient.oid,
            type_code=type_c.code,
            class_code=class_c.code,
            format_code=format_c.code,
            practice_code=practice.code,
            facility_code=facility.code,
            confidentiality=tuple(sorted(conf)),
            author_id=author_id,
            author_structure=author_structure,
            title=entry.name or doc.title,
            mime_type=entry.mime_type,
            hash=_sha1(data),
            size=len(data),
            creation_time=entry.slot("creationTime"),
            service_start=entry.slot("serviceStartTime"),
            service_stop=entry.slot("serviceStopTime"),
            set_id=set_id,
            metadata=metadata,
            content=data,
            replaces=replaces,
        )

    @staticmethod
    def _registered_metadata(
        entry: xds.RegistryObject, entry_uuid: str, data: bytes, unique_id: str
    ) -> bytes:
        """The submitted ExtrinsicObject with the registry's ids, hash, size and repositoryUniqueId."""
        el = etree.fromstring(etree.tostring(entry.element))
        symbolic = el.get("id", "")
        el.set("id", entry_uuid)
        el.set("lid", entry_uuid)
        el.set("status", APPROVED)
        for child in el.iter():
            if not isinstance(child.tag, str):
                continue
            for attr in ("classifiedObject", "registryObject"):
                if child.get(attr) == symbolic:
                    child.set(attr, entry_uuid)
            if child.tag in (q(RIM, "Classification"), q(RIM, "ExternalIdentifier")):
                ident = child.get("id", "")
                if not ident.startswith("urn:uuid:"):
                    child.set("id", new_entry_uuid())
        for extra in el.findall(q(XDSB, "Document")):
            el.remove(extra)
        xds.set_slot(el, "hash", [_sha1(data)])
        xds.set_slot(el, "size", [str(len(data))])
        xds.set_slot(el, "repositoryUniqueId", [xds.REPOSITORY_UNIQUE_ID])
        info = el.find(q(RIM, "VersionInfo"))
        if info is None:
            info = etree.Element(q(RIM, "VersionInfo"), versionName="1")
            anchor = next(
                (
                    c
                    for c in el
                    if isinstance(c.tag, str)
                    and c.tag not in (q(RIM, "Slot"), q(RIM, "Name"), q(RIM, "Description"))
                ),
                None,
            )
            if anchor is not None:
                anchor.addprevious(info)
            else:
                el.append(info)
        return etree.tostring(el)

    # -- ITI-18 (TD3.1) -------------------------------------------------------------------------
    def _iti18(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        resp = etree.Element(
            q(xds.QUERY, "AdhocQueryResponse"), nsmap={"query": xds.QUERY, "rim": RIM, "rs": xds.RS}
        )
        try:
            objects = self._query(req, out)
        except (RegistryRefusal, AccessRefused) as exc:
            out.result = f"{exc.code} : {exc.message_fr}"
            xds.fill_status(resp, [(exc.code, exc.message_fr, getattr(exc, "location", ""))])
            etree.SubElement(resp, q(RIM, "RegistryObjectList"))
            # RegistryErrorList must follow the status; RegistryObjectList after it (query.xsd)
            return SoapResponse(ACTIONS["TD3.1"], resp)
        # the store keeps each entry rendered in its current state: the answer is parsed in one go
        # (moving thousands of parsed entries between trees costs more than parsing them)
        answer = etree.fromstring(
            b'<query:AdhocQueryResponse xmlns:query="%s" xmlns:rim="%s" xmlns:rs="%s" status="%s">'
            b"<rim:RegistryObjectList>%s</rim:RegistryObjectList></query:AdhocQueryResponse>"
            % (xds.QUERY.encode(), RIM.encode(), xds.RS.encode(), xds.SUCCESS.encode(), b"".join(objects))
        )
        out.result = f"OK : {len(objects)} document(s)"
        return SoapResponse(ACTIONS["TD3.1"], answer)

    def _query(self, req: SoapRequest, out: _Outcome) -> list[bytes]:
        caller = req.caller
        option = req.body.find(q(xds.QUERY, "ResponseOption"))
        return_type = option.get("returnType", "LeafClass") if option is not None else "LeafClass"
        if return_type not in ("LeafClass", "ObjectRef"):
            raise RegistryRefusal(E.REGISTRY_ERROR, f"returnType non pris en charge : {return_type}.")
        adhoc = req.body.find(q(RIM, "AdhocQuery"))
        if adhoc is None:
            raise RegistryRefusal(E.REGISTRY_ERROR, "Requête sans AdhocQuery.")
        query_id = adhoc.get("id", "")
        params: dict[str, list[str]] = {}
        groups: dict[str, list[list[str]]] = {}  # one list per rim:Value (IHE: values ANDed, items ORed)
        for s in adhoc.findall(q(RIM, "Slot")):
            raw = [(v.text or "") for v in s.iter(q(RIM, "Value"))]
            params[s.get("name", "")] = xds.parse_query_values(raw)
            groups[s.get("name", "")] = [xds.parse_query_values([r]) for r in raw]
        if query_id not in (FIND_DOCUMENTS, GET_DOCUMENTS, FIND_SUBMISSION_SETS, GET_ASSOCIATIONS):
            raise RegistryRefusal(
                E.UNKNOWN_STORED_QUERY, f"Requête stockée non prise en charge : {query_id}."
            )
        patient = self.store.patient(caller.patient_ins or "")
        if patient is not None and patient.oid != caller.patient_oid:
            patient = None
        patient = rules.check_consultation(
            caller, patient, self.store.authorisation(caller.patient_ins or "", caller.id_nat)
        )
        for name, values in params.items():
            if name.endswith(("TimeFrom", "TimeTo")) and (
                len(values) > 1 or any(not _XDS_TIME.fullmatch(v) for v in values)
            ):
                raise RegistryRefusal(
                    E.STORED_QUERY_PARAM if len(values) > 1 else E.REGISTRY_ERROR,
                    f"Paramètre {name} invalide : une seule date UTC AAAA[MM[JJ[hh[mm[ss]]]]] attendue.",
                )
        if query_id in (FIND_SUBMISSION_SETS, GET_ASSOCIATIONS):
            return self._submission_query(query_id, caller, patient, params, return_type, out)
        if query_id == FIND_DOCUMENTS:
            out.what.append("FindDocuments")
            pids = params.get("$XDSDocumentEntryPatientId", [])
            if len(pids) != 1:
                raise RegistryRefusal(
                    E.STORED_QUERY_PARAM,
                    "Paramètre $XDSDocumentEntryPatientId obligatoire (une seule valeur).",
                )
            if xds.parse_cx(pids[0]) != (patient.ins, patient.oid):
                raise RegistryRefusal(
                    E.PATIENT_MISMATCH, "Le patient de la requête ne correspond pas au patient du VIHF."
                )
            statuses = params.get("$XDSDocumentEntryStatus", [])
            if not statuses:
                raise RegistryRefusal(E.STORED_QUERY_PARAM, "Paramètre $XDSDocumentEntryStatus obligatoire.")
            unknown = set(statuses) - set(STATUSES)
            if unknown:
                raise RegistryRefusal(E.REGISTRY_ERROR, f"Statut inconnu : {', '.join(sorted(unknown))}.")
            entry_types = params.get("$XDSDocumentEntryType", [])
            if entry_types and xds.DOC_ENTRY_TYPE not in entry_types:
                docs = []  # only stable entries exist in the DMP (no on-demand documents)
            else:
                docs = [d for d in self.store.documents(patient.ins, statuses) if _matches(d, params, groups)]
        else:
            out.what.append("GetDocuments")
            uids = params.get("$XDSDocumentEntryUniqueId", [])
            uuids = params.get("$XDSDocumentEntryEntryUUID", [])
            if bool(uids) == bool(uuids):
                raise RegistryRefusal(
                    E.STORED_QUERY_PARAM,
                    "GetDocuments attend $XDSDocumentEntryUniqueId ou $XDSDocumentEntryEntryUUID"
                    " (un seul des deux).",
                )
            found = [self.store.document(unique_id=u) for u in uids] + [
                self.store.document(entry_uuid=u) for u in uuids
            ]
            docs = [d for d in found if d is not None and d.patient_ins == patient.ins]
        visible = [d for d in docs if rules.can_see(caller, patient, d)]
        if len(visible) > MAX_RESULTS:
            raise RegistryRefusal(E.TOO_MANY, f"Trop de résultats ({len(visible)}) : affinez la recherche.")
        out.what.extend(d.unique_id for d in visible[:20])
        if return_type == "ObjectRef":
            return [b'<rim:ObjectRef id="%s"/>' % d.entry_uuid.encode() for d in visible]
        return [d.metadata for d in visible]

    def _submission_query(
        self,
        query_id: str,
        caller: Caller,
        patient: Patient,
        params: dict[str, list[str]],
        return_type: str,
        out: _Outcome,
    ) -> list[bytes]:
        """FindSubmissionSets and GetAssociations (dmp-protocol.md §7.6: the DMPi way to find what was
        submitted between two dates: FindSubmissionSets -> GetAssociations -> GetDocuments). A submission
        set, or an association, is shown only when the caller may see at least the document it leads to."""
        docs = self.store.documents(patient.ins)
        visible: dict[str, list[StoredDocument]] = {}
        for d in docs:
            if rules.can_see(caller, patient, d):
                visible.setdefault(d.submission_uuid, []).append(d)
        sets = {s.entry_uuid: s for s in self.store.submission_sets(patient.ins) if s.entry_uuid in visible}
        if query_id == FIND_SUBMISSION_SETS:
            out.what.append("FindSubmissionSets")
            pids = params.get("$XDSSubmissionSetPatientId", [])
            if len(pids) != 1:
                raise RegistryRefusal(
                    E.STORED_QUERY_PARAM,
                    "Paramètre $XDSSubmissionSetPatientId obligatoire (une seule valeur).",
                )
            if xds.parse_cx(pids[0]) != (patient.ins, patient.oid):
                raise RegistryRefusal(
                    E.PATIENT_MISMATCH, "Le patient de la requête ne correspond pas au patient du VIHF."
                )
            statuses = params.get("$XDSSubmissionSetStatus", [])
            if not statuses:
                raise RegistryRefusal(E.STORED_QUERY_PARAM, "Paramètre $XDSSubmissionSetStatus obligatoire.")
            found = [s for s in sets.values() if APPROVED in statuses and _submission_matches(s, params)]
            if len(found) > MAX_RESULTS:
                raise RegistryRefusal(E.TOO_MANY, f"Trop de résultats ({len(found)}) : affinez la recherche.")
            if return_type == "ObjectRef":
                return [b'<rim:ObjectRef id="%s"/>' % s.entry_uuid.encode() for s in found]
            return [_registry_package(s, patient) for s in found]
        out.what.append("GetAssociations")
        uuids = set(params.get("$uuid", []))
        if not uuids:
            raise RegistryRefusal(E.STORED_QUERY_PARAM, "Paramètre $uuid obligatoire pour GetAssociations.")
        pairs = [
            (s_uuid, d.entry_uuid)
            for s_uuid, members in visible.items()
            if s_uuid in sets
            for d in members
            if s_uuid in uuids or d.entry_uuid in uuids
        ]
        if return_type == "ObjectRef":
            return [b'<rim:ObjectRef id="%s"/>' % _association_id(a, b).encode() for a, b in pairs]
        return [_has_member(a, b) for a, b in pairs]

    # -- ITI-43 (TD3.2) -------------------------------------------------------------------------
    def _iti43(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        caller = req.caller
        resp = etree.Element(q(XDSB, "RetrieveDocumentSetResponse"), nsmap={"xdsb": XDSB, "rs": xds.RS})
        status = etree.SubElement(resp, q(xds.RS, "RegistryResponse"))
        requests = req.body.findall(q(XDSB, "DocumentRequest"))
        errors: list[tuple[str, str, str]] = []
        attachments: dict[str, tuple[bytes, str]] = {}
        try:
            if not requests:
                raise RegistryRefusal(E.REGISTRY_ERROR, "Aucun document demandé (DocumentRequest).")
            patient = self.store.patient(caller.patient_ins or "")
            if patient is not None and patient.oid != caller.patient_oid:
                patient = None
            patient = rules.check_consultation(
                caller, patient, self.store.authorisation(caller.patient_ins or "", caller.id_nat)
            )
        except (RegistryRefusal, AccessRefused) as exc:
            xds.fill_status(status, [(exc.code, exc.message_fr, getattr(exc, "location", ""))])
            out.result = f"{exc.code} : {exc.message_fr}"
            return SoapResponse(ACTIONS["TD3.2"], resp)
        found: list[tuple[str, StoredDocument]] = []
        for dr in requests:
            repo = (dr.findtext(q(XDSB, "RepositoryUniqueId")) or "").strip()
            uid = (dr.findtext(q(XDSB, "DocumentUniqueId")) or "").strip()
            if repo != xds.REPOSITORY_UNIQUE_ID:
                errors.append(("XDSUnknownRepositoryId", f"Entrepôt inconnu : {repo or '(absent)'}.", uid))
                continue
            doc = self.store.document(unique_id=uid)
            # a document the caller may not see is answered exactly like an unknown one (PAT-02)
            if doc is None or doc.patient_ins != patient.ins or not rules.can_see(caller, patient, doc):
                errors.append((E.UNIQUE_ID, f"Document introuvable : {uid}.", uid))
                continue
            found.append((uid, doc))
        xds.fill_status(status, errors or None)
        if errors and found:
            status.set("status", "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess")
        for n, (uid, doc) in enumerate(found, 1):
            cid = f"doc{n}.{uuid.uuid4().hex}@sandbox.dmp"
            attachments[cid] = (self.store.content(doc.entry_uuid), doc.mime_type)
            dresp = etree.SubElement(resp, q(XDSB, "DocumentResponse"))
            etree.SubElement(dresp, q(XDSB, "RepositoryUniqueId")).text = xds.REPOSITORY_UNIQUE_ID
            etree.SubElement(dresp, q(XDSB, "DocumentUniqueId")).text = uid
            etree.SubElement(dresp, q(XDSB, "mimeType")).text = doc.mime_type
            content = etree.SubElement(dresp, q(XDSB, "Document"))
            etree.SubElement(content, q(XOP, "Include"), nsmap={"xop": XOP}, href=f"cid:{cid}")
        out.what.extend(uid for uid, _ in found)
        out.result = (
            "OK" if not errors else f"{len(found)} document(s), {len(errors)} erreur(s) : {errors[0][1]}"
        )
        return SoapResponse(ACTIONS["TD3.2"], resp, attachments)

    # -- ITI-57 (TD3.3a-d) ----------------------------------------------------------------------
    def _iti57(self, req: SoapRequest, out: _Outcome) -> SoapResponse:
        try:
            self._update(req, out)
        except (RegistryRefusal, AccessRefused) as exc:
            out.result = f"{exc.code} : {exc.message_fr}"
            return SoapResponse(
                ACTIONS["TD3.3"],
                xds.registry_response([(exc.code, exc.message_fr, getattr(exc, "location", ""))]),
            )
        out.result = "OK"
        return SoapResponse(ACTIONS["TD3.3"], xds.registry_response())

    def _update(self, req: SoapRequest, out: _Outcome) -> None:
        caller = req.caller
        sub = xds.read_submission(req.body)
        if len([p for p in sub.packages if p.is_submission_set] or sub.packages) != 1:
            raise RegistryRefusal(E.METADATA, "La mise à jour doit contenir exactement un SubmissionSet.")
        patient = self.store.patient(caller.patient_ins or "")
        if patient is not None and patient.oid != caller.patient_oid:
            patient = None
        rules.check_not_regulation_write(caller)
        patient = rules.check_consultation(
            caller, patient, self.store.authorisation(caller.patient_ins or "", caller.id_nat)
        )
        if caller.purpose != PURPOSE_NORMAL:
            raise AccessRefused(
                E.ACCESS_DENIED, "Les mises à jour de documents ne se font qu'en accès normal."
            )

        def visible(doc: StoredDocument | None, ref: str) -> StoredDocument:
            if doc is None or doc.patient_ins != patient.ins or not rules.can_see(caller, patient, doc):
                raise RegistryRefusal(E.METADATA_UPDATE, f"Document introuvable : {ref}.", ref)
            return doc

        status_changes = [a for a in sub.associations if a.type == xds.UPDATE_AVAILABILITY]
        for assoc in status_changes:
            doc = visible(self.store.document(entry_uuid=assoc.target), assoc.target)
            original = (assoc.slots.get("OriginalStatus") or [""])[0]
            new = (assoc.slots.get("NewStatus") or [""])[0]
            if doc.status == DEPRECATED:  # an older version: the update names a stale entryUUID
                raise RegistryRefusal(
                    E.METADATA_VERSION,
                    f"L'entrée {doc.entry_uuid} n'est plus la version courante du document {doc.unique_id}"
                    " : relisez-le (TD3.1) avant de le mettre à jour.",
                    doc.entry_uuid,
                )
            rules.check_status_change(caller, doc, original, new)
            try:
                self.store.set_document_status(doc.entry_uuid, new, expected=original)
            except StaleVersion as exc:
                raise RegistryRefusal(E.METADATA_VERSION, exc.message_fr, doc.entry_uuid) from None
            except StaleReplacement as exc:
                raise RegistryRefusal(E.METADATA_UPDATE, exc.message_fr, doc.entry_uuid) from None
            out.what.append(f"{doc.unique_id} {original.rsplit(':', 1)[-1]}→{new.rsplit(':', 1)[-1]}")
        for entry in sub.documents:
            lid = entry.lid
            prev = next(
                (
                    (a.slots.get("PreviousVersion") or [""])[0]
                    for a in sub.associations
                    if a.type == xds.HAS_MEMBER and a.target == entry.id
                ),
                "",
            )
            if not lid:
                raise RegistryRefusal(E.METADATA_UPDATE, "Mise à jour sans logicalId (lid).", entry.id)
            existing = self.store.document(entry_uuid=entry.id) if entry.id.startswith("urn:uuid:") else None
            if existing is not None:
                # ITI-57 creates a new entry: its id is symbolic or a new UUID, never a registered entry
                raise RegistryRefusal(
                    E.METADATA_VERSION if existing.status == DEPRECATED else E.METADATA_UPDATE,
                    f"L'identifiant {entry.id} est déjà celui d'une version enregistrée : une nouvelle"
                    " version porte un identifiant symbolique ou un nouvel UUID (le lid nomme le document).",
                    entry.id,
                )
            current = next((d for d in self._versions(lid) if d.status in (APPROVED, ARCHIVED)), None)
            doc = visible(current, lid)
            if not prev.isdigit():
                raise RegistryRefusal(E.METADATA_UPDATE, "Slot PreviousVersion absent ou invalide.", entry.id)
            if int(prev) != doc.version:
                raise RegistryRefusal(
                    E.METADATA_VERSION,
                    f"La version {prev} n'est plus la version courante du document ({doc.version}).",
                    entry.id,
                )
            uid = entry.external_ids.get(xds.E_DOC_UNIQUE, doc.unique_id)
            if uid != doc.unique_id:
                raise RegistryRefusal(
                    E.METADATA_UPDATE, "Le uniqueId d'un document ne peut pas changer.", entry.id
                )
            new_codes = {c.code for c in entry.classifications.get(xds.S_CONFIDENTIALITY, [])}
            rules.check_confidentiality_update(caller, patient, doc, new_codes)
            try:
                created = self.store.set_confidentiality(
                    doc.entry_uuid, new_codes, expected_version=doc.version
                )
            except StaleReplacement as exc:
                raise RegistryRefusal(E.METADATA_VERSION, exc.message_fr, entry.id) from None
            out.what.append(
                f"{doc.unique_id} confidentialité {','.join(sorted(new_codes))}"
                f" (version {created.version}, {created.entry_uuid})"
            )
        if not status_changes and not sub.documents:
            raise RegistryRefusal(E.METADATA_UPDATE, "Aucune mise à jour dans la requête.")

    def _versions(self, lid: str) -> list[StoredDocument]:
        return self.store.documents_by_lid(lid)


_FILTERS = {
    "$XDSDocumentEntryClassCode": "class_code",
    "$XDSDocumentEntryTypeCode": "type_code",
    "$XDSDocumentEntryPracticeSettingCode": "practice_code",
    "$XDSDocumentEntryHealthcareFacilityTypeCode": "facility_code",
    "$XDSDocumentEntryFormatCode": "format_code",
}
_TIME_FILTERS = {
    "$XDSDocumentEntryCreationTimeFrom": ("creation_time", True),
    "$XDSDocumentEntryCreationTimeTo": ("creation_time", False),
    "$XDSDocumentEntryServiceStartTimeFrom": ("service_start", True),
    "$XDSDocumentEntryServiceStartTimeTo": ("service_start", False),
    "$XDSDocumentEntryServiceStopTimeFrom": ("service_stop", True),
    "$XDSDocumentEntryServiceStopTimeTo": ("service_stop", False),
}


_XDS_TIME = re.compile(r"\d{4}(\d{2}){0,5}")  # XDS DTM, UTC, truncated to any precision


def _coded(value: str) -> tuple[str, str]:
    """``code^^codingScheme`` (or a bare code) -> (code, scheme or "")."""
    parts = value.split("^")
    return parts[0].strip(), (parts[2].strip() if len(parts) > 2 else "")


def _code_in(item: str, codes: set[tuple[str, str]]) -> bool:
    code, scheme = _coded(item)
    return any(code == c and (not scheme or not s or scheme == s) for c, s in codes)


def _like(pattern: str, value: str) -> bool:
    """SQL LIKE of ITI-18 ``$XDSDocumentEntryAuthorPerson``: ``%`` any run, ``_`` one character."""
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _entry_details(doc: StoredDocument) -> tuple[set[tuple[str, str]], list[str]]:
    """Event codes (code, scheme) and authorPerson values of a stored entry (read only when a query asks)."""
    el = etree.fromstring(doc.metadata)
    events: set[tuple[str, str]] = set()
    authors: list[str] = []
    for cl in el.iter(q(RIM, "Classification")):
        scheme = cl.get("classificationScheme")
        if scheme == xds.S_EVENT:
            system = next(
                (
                    (v.text or "").strip()
                    for s in cl.findall(q(RIM, "Slot"))
                    if s.get("name") == "codingScheme"
                    for v in s.iter(q(RIM, "Value"))
                ),
                "",
            )
            events.add((cl.get("nodeRepresentation", ""), system))
        elif scheme == xds.S_AUTHOR_DOC:
            for s in cl.findall(q(RIM, "Slot")):
                if s.get("name") == "authorPerson":
                    authors.extend((v.text or "").strip() for v in s.iter(q(RIM, "Value")))
    return events, authors


def _matches(
    doc: StoredDocument, params: dict[str, list[str]], groups: dict[str, list[list[str]]] | None = None
) -> bool:
    groups = groups or {}
    for name, attr in _FILTERS.items():
        wanted = params.get(name)
        if wanted and getattr(doc, attr) not in {w.split("^")[0] for w in wanted}:
            return False
    conf = {(c, "") for c in doc.confidentiality}
    for group in groups.get("$XDSDocumentEntryConfidentialityCode", []):
        if group and not any(_code_in(item, conf) for item in group):
            return False
    events_wanted = [g for g in groups.get("$XDSDocumentEntryEventCodeList", []) if g]
    authors_wanted = params.get("$XDSDocumentEntryAuthorPerson", [])
    if events_wanted or authors_wanted:
        events, authors = _entry_details(doc)
        for group in events_wanted:
            if not any(_code_in(item, events) for item in group):
                return False
        if authors_wanted and not any(_like(p, a) for p in authors_wanted for a in authors):
            return False
    for name, (attr, lower) in _TIME_FILTERS.items():
        bound = (params.get(name) or [""])[0]
        if not bound:
            continue
        value = getattr(doc, attr)
        if not value:
            return False
        n = min(len(bound), len(value))
        if lower and value[:n] < bound[:n]:
            return False
        if not lower and value[:n] >= bound[:n]:
            return False
    return True


def _submission_matches(sub: StoredSubmission, params: dict[str, list[str]]) -> bool:
    sources = params.get("$XDSSubmissionSetSourceId")
    if sources and sub.source_id not in sources:
        return False
    authors = params.get("$XDSSubmissionSetAuthorPerson")
    # only the author's idNat is kept for a submission set: the pattern is matched on its first component
    if authors and not any(_like(p.split("^")[0] or "%", sub.author_id) for p in authors):
        return False
    for name, lower in (
        ("$XDSSubmissionSetSubmissionTimeFrom", True),
        ("$XDSSubmissionSetSubmissionTimeTo", False),
    ):
        bound = (params.get(name) or [""])[0]
        if not bound:
            continue
        n = min(len(bound), len(sub.submission_time))
        value = sub.submission_time[:n]
        if (lower and value < bound[:n]) or (not lower and value >= bound[:n]):
            return False
    return True


def _association_id(source: str, target: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{source} {target}')}"


def _registry_package(sub: StoredSubmission, patient: Patient) -> bytes:
    """The submission set as the registry keeps it (dmp-protocol.md §8.1), for FindSubmissionSets."""
    pkg = etree.Element(
        q(RIM, "RegistryPackage"),
        nsmap={"rim": RIM},
        id=sub.entry_uuid,
        lid=sub.entry_uuid,
        status=APPROVED,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage",
    )
    xds.set_slot(pkg, "submissionTime", [sub.submission_time])
    author = etree.SubElement(
        pkg,
        q(RIM, "Classification"),
        id=_association_id(sub.entry_uuid, "author"),
        classificationScheme=xds.S_AUTHOR_SS,
        classifiedObject=sub.entry_uuid,
        nodeRepresentation="",
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
    )
    xds.set_slot(author, "authorPerson", [f"{sub.author_id}^^^^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"])
    etree.SubElement(
        pkg,
        q(RIM, "Classification"),
        id=_association_id(sub.entry_uuid, "marker"),
        classificationNode=xds.SUBMISSION_SET_NODE,
        classifiedObject=sub.entry_uuid,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
    )
    for scheme, value, name in (
        (xds.E_SS_UNIQUE, sub.unique_id, "XDSSubmissionSet.uniqueId"),
        (xds.E_SS_SOURCE, sub.source_id, "XDSSubmissionSet.sourceId"),
        (xds.E_SS_PATIENT, f"{patient.ins}^^^&{patient.oid}&ISO^NH", "XDSSubmissionSet.patientId"),
    ):
        ext = etree.SubElement(
            pkg,
            q(RIM, "ExternalIdentifier"),
            id=_association_id(sub.entry_uuid, scheme),
            identificationScheme=scheme,
            registryObject=sub.entry_uuid,
            value=value,
            objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier",
        )
        etree.SubElement(etree.SubElement(ext, q(RIM, "Name")), q(RIM, "LocalizedString"), value=name)
    return etree.tostring(pkg)


def _has_member(source: str, target: str) -> bytes:
    assoc = etree.Element(
        q(RIM, "Association"),
        nsmap={"rim": RIM},
        id=_association_id(source, target),
        associationType=xds.HAS_MEMBER,
        sourceObject=source,
        targetObject=target,
        status=APPROVED,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association",
    )
    xds.set_slot(assoc, "SubmissionSetStatus", ["Original"])
    return etree.tostring(assoc)
