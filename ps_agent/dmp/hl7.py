"""TD0.2 (existence test + authorisation status): HL7v3 PRPA_IN201307UV02 / PRPA_IN201308UV02 (§7.1)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from ps_agent.dmp.errors import Hl7Refusal, ProtocolError, french_message
from ps_agent.dmp.lps import LpsInfo
from ps_agent.dmp.model import PatientId
from ps_agent.dmp.xmlns import HL7, q

DMP_DEVICE = "1.2.250.1.213.4.1.1.1"
PROCESSING_CODE = "P"  # S1 sends "D"; "P" (production) is the HL7 value for real traffic [I]


class Authorisation:
    VALIDE = "VALIDE"
    EXPIRE = "EXPIRE"
    INTERDIT = "INTERDIT"
    NON_EXISTE = "NON_EXISTE"


# [I] TD0.2 gives the DMP's state in patient/statusCode; only "active" (= open) is confirmed by the spec
# (dmp-protocol.md §7.1). An opposition is read from HL7 RoleStatus "nullified" (what the sandbox sends);
# any other non-active code is a closed DMP. Either way nothing but TD0.2 is allowed (PAT-06).
OPPOSED_STATUS_CODES = frozenset({"nullified"})


@dataclass(frozen=True)
class DmpStatus:
    """What TD0.2 says about a patient's DMP for this professional."""

    exists: bool
    active: bool  # statusCode "active" (False when closed)
    authorisation: str  # VALIDE | EXPIRE | INTERDIT | NON_EXISTE | "" when absent
    is_medecin_traitant: bool
    family_name: str = ""
    given_name: str = ""
    birth_date: str = ""
    gender: str = ""
    internet_account_open: bool | None = None
    status_code: str = ""  # patient/statusCode/@code verbatim ("active", "terminated", "nullified"...)

    @property
    def opposed(self) -> bool:
        """The patient objected to his DMP (PAT-06), see ``OPPOSED_STATUS_CODES``."""
        return self.exists and self.status_code in OPPOSED_STATUS_CODES

    @property
    def closed(self) -> bool:
        return self.exists and not self.active and not self.opposed

    @property
    def authorised(self) -> bool:
        return self.authorisation == Authorisation.VALIDE

    @property
    def blocked(self) -> bool:
        return self.authorisation == Authorisation.INTERDIT

    @property
    def summary_fr(self) -> str:
        if not self.exists:
            return "Ce patient n'a pas de DMP."
        if self.opposed:
            return "Le patient s'est opposé à son DMP : aucun dépôt ni consultation possible."
        if self.closed:
            return "Le DMP de ce patient est fermé."
        parts = ["DMP actif"]
        parts.append(
            {
                Authorisation.VALIDE: "vous êtes autorisé",
                Authorisation.EXPIRE: "votre autorisation a expiré",
                Authorisation.INTERDIT: "le patient a bloqué votre accès",
                Authorisation.NON_EXISTE: "vous n'êtes pas encore autorisé",
            }.get(self.authorisation, "autorisation inconnue")
        )
        if self.is_medecin_traitant:
            parts.append("vous êtes son médecin traitant")
        return ", ".join(parts) + "."


def _sub(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, q(HL7, tag), attrs)


def build_request(patient: PatientId, lps: LpsInfo, *, now: datetime | None = None) -> etree._Element:
    now = now or datetime.now(UTC)
    root = etree.Element(q(HL7, "PRPA_IN201307UV02"), {"ITSVersion": "XML_1.0"}, nsmap={None: HL7})
    _sub(root, "id", root=lps.oid, extension=str(uuid.uuid4()))
    _sub(root, "creationTime", value=now.astimezone(UTC).strftime("%Y%m%d%H%M%S"))
    _sub(root, "interactionId", root="2.16.840.1.113883.1.6", extension="PRPA_IN201307UV02")
    _sub(root, "processingCode", code=PROCESSING_CODE)
    _sub(root, "processingModeCode", code="T")
    _sub(root, "acceptAckCode", code="AL")
    rcv = _sub(_sub(root, "receiver", typeCode="RCV"), "device", classCode="DEV", determinerCode="INSTANCE")
    _sub(rcv, "id", root=DMP_DEVICE)
    _sub(rcv, "softwareName").text = "DMP"
    snd = _sub(_sub(root, "sender", typeCode="SND"), "device", classCode="DEV", determinerCode="INSTANCE")
    _sub(snd, "id", root=lps.oid)
    _sub(snd, "softwareName").text = lps.name
    cap = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(cap, "reasonCode", code="TEST_EXST", codeSystem="1.2.250.1.213.1.1.4.11")
    qbp = _sub(cap, "queryByParameter")
    _sub(qbp, "queryId", root=lps.oid, extension=str(uuid.uuid4()))
    _sub(qbp, "statusCode", code="new")
    pi = _sub(_sub(qbp, "parameterList"), "patientIdentifier")
    _sub(pi, "value", root=patient.oid, extension=patient.matricule)
    _sub(pi, "semanticsText").text = "Patient.id"
    return root


def parse_response(root: etree._Element) -> DmpStatus:
    if root.tag != q(HL7, "PRPA_IN201308UV02"):
        raise ProtocolError("Le DMP n'a pas renvoyé de réponse au test d'existence.", detail=str(root.tag))
    ack = root.find(q(HL7, "acknowledgement"))
    if ack is None:
        raise ProtocolError(
            "La réponse du DMP n'a pas d'accusé de réception HL7.", detail="no acknowledgement"
        )
    ack_type = ack.get("typeCode", "")
    if ack_type not in ("AA", "CA"):
        detail = ack.find(q(HL7, "acknowledgementDetail"))
        code = ""
        text = ""
        if detail is not None:
            c = detail.find(q(HL7, "code"))
            code = c.get("code", "") if c is not None else ""
            text = (detail.findtext(q(HL7, "text")) or "").strip()
        code = code or ack_type
        raise Hl7Refusal(french_message(code, text), code=code, code_context=text)
    ns = {"h": HL7}
    qrc = root.xpath("string(.//h:queryAck/h:queryResponseCode/@code)", namespaces=ns)
    if qrc not in ("OK", "NF"):
        raise ProtocolError(
            "La réponse du DMP au test d'existence est incomplète.", detail=f"queryResponseCode={qrc!r}"
        )
    authorisation = ""
    is_mt = False
    for line in root.iter(q(HL7, "attentionLine")):
        kw = line.find(q(HL7, "keyWordText"))
        val = line.find(q(HL7, "value"))
        if kw is None or val is None:
            continue
        if kw.get("code") == "AUTORISATION":
            authorisation = val.get("code", "")
        elif kw.get("code") == "STATUT_MT":
            is_mt = val.get("value", "").lower() == "true"
    if qrc == "NF":
        return DmpStatus(False, False, authorisation or Authorisation.NON_EXISTE, False)
    patient = root.find(f".//{q(HL7, 'registrationEvent')}/{q(HL7, 'subject1')}/{q(HL7, 'patient')}")
    status = ""
    family = given = birth = gender = ""
    account = None
    if patient is not None:
        status = patient.xpath("string(h:statusCode/@code)", namespaces=ns)
        family = patient.xpath("string(h:patientPerson/h:name/h:family)", namespaces=ns)
        given = patient.xpath("string(h:patientPerson/h:name/h:given)", namespaces=ns)
        birth = patient.xpath("string(h:patientPerson/h:birthTime/@value)", namespaces=ns)
        gender = patient.xpath("string(h:patientPerson/h:administrativeGenderCode/@code)", namespaces=ns)
        for obs in patient.iter(q(HL7, "administrativeObservation")):
            c = obs.find(q(HL7, "code"))
            v = obs.find(q(HL7, "value"))
            if c is not None and v is not None and c.get("code") == "COMPTE_INTERNET_OUVERT":
                account = v.get("value", "").lower() == "true"
    return DmpStatus(
        exists=True,
        active=(status or "active") == "active",
        status_code=status,
        authorisation=authorisation,
        is_medecin_traitant=is_mt,
        family_name=family,
        given_name=given,
        birth_date=birth,
        gender=gender,
        internet_account_open=account,
    )
