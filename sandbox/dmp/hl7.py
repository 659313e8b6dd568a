"""TD0.2 (HL7v3 PRPA_IN201307UV02 -> PRPA_IN201308UV02) and the DMP-specific TD0.3/TD0.4/TD1.6 messages."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from sandbox.dmp.store import Patient, now_utc

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
HABILITATIONS = "urn:si-dmp-habilitations"
PATIENTS_SPECIFIC = "urn:si-dmp-patients"
DMP_DEVICE_OID = "1.2.250.1.213.4.1.1.1"
CS_KEYWORD = "1.2.250.1.213.4.1.2.6.1"
CS_AUTORISATION = "1.2.250.1.213.4.1.2.6.2"
CS_STATUT_MT = "1.2.250.1.213.4.1.2.6.3"
ACK_CODE_SYSTEM = "1.2.250.1.213.4.1.2.7"  # [I] code system of the sandbox's acknowledgementDetail codes

# [I] HL7 RoleStatus of the patient for each DMP status (the spec only confirms "active" = open).
PATIENT_STATUS_CODES = {"ACTIVE": "active", "CLOSED": "terminated", "OPPOSED": "nullified"}


def h(name: str) -> str:
    return f"{{{HL7}}}{name}"


@dataclass
class ExistenceQuery:
    message_id_root: str
    message_id_ext: str
    sender_oid: str
    ins: str
    ins_oid: str
    reason: str
    query_by_parameter: etree._Element | None


def read_existence_query(body: etree._Element) -> ExistenceQuery:
    value = body.find(f".//{h('patientIdentifier')}/{h('value')}")
    msg_id = body.find(h("id"))
    sender = body.find(f"{h('sender')}/{h('device')}/{h('id')}")
    reason = body.find(f"{h('controlActProcess')}/{h('reasonCode')}")
    return ExistenceQuery(
        message_id_root=msg_id.get("root", "") if msg_id is not None else "",
        message_id_ext=msg_id.get("extension", "") if msg_id is not None else "",
        sender_oid=sender.get("root", "") if sender is not None else "",
        ins=value.get("extension", "").strip() if value is not None else "",
        ins_oid=value.get("root", "").strip() if value is not None else "",
        reason=reason.get("code", "") if reason is not None else "",
        query_by_parameter=body.find(f"{h('controlActProcess')}/{h('queryByParameter')}"),
    )


def existence_response(
    query: ExistenceQuery,
    *,
    patient: Patient | None,
    authorisation: str,
    medecin_traitant: bool,
    error: tuple[str, str] | None = None,
    warning: str | None = None,
) -> etree._Element:
    """PRPA_IN201308UV02. ``error`` (code, French text) makes an AE acknowledgement."""
    root = etree.Element(h("PRPA_IN201308UV02"), nsmap={None: HL7, "xsi": XSI}, ITSVersion="XML_1.0")
    etree.SubElement(root, h("id"), root=DMP_DEVICE_OID, extension=str(uuid.uuid4()))
    etree.SubElement(root, h("creationTime"), value=now_utc().strftime("%Y%m%d%H%M%S"))
    etree.SubElement(root, h("interactionId"), root="2.16.840.1.113883.1.6", extension="PRPA_IN201308UV02")
    etree.SubElement(root, h("processingCode"), code="P")
    etree.SubElement(root, h("processingModeCode"), code="T")
    etree.SubElement(root, h("acceptAckCode"), code="NE")
    rcv = etree.SubElement(
        etree.SubElement(root, h("receiver"), typeCode="RCV"),
        h("device"),
        classCode="DEV",
        determinerCode="INSTANCE",
    )
    etree.SubElement(rcv, h("id"), root=query.sender_oid or "0")
    snd = etree.SubElement(
        etree.SubElement(root, h("sender"), typeCode="SND"),
        h("device"),
        classCode="DEV",
        determinerCode="INSTANCE",
    )
    etree.SubElement(snd, h("id"), root=DMP_DEVICE_OID)
    etree.SubElement(snd, h("softwareName")).text = "DMP"
    if error is None:
        line = etree.SubElement(root, h("attentionLine"))
        etree.SubElement(line, h("keyWordText"), code="AUTORISATION", codeSystem=CS_KEYWORD)
        val = etree.SubElement(line, h("value"), code=authorisation, codeSystem=CS_AUTORISATION)
        val.set(f"{{{XSI}}}type", "CV")
        line = etree.SubElement(root, h("attentionLine"))
        etree.SubElement(line, h("keyWordText"), code="STATUT_MT", codeSystem=CS_STATUT_MT)
        val = etree.SubElement(line, h("value"), value="true" if medecin_traitant else "false")
        val.set(f"{{{XSI}}}type", "BL")
    ack = etree.SubElement(root, h("acknowledgement"), typeCode="AE" if error else "AA")
    target = etree.SubElement(ack, h("targetMessage"))
    etree.SubElement(target, h("id"), root=query.message_id_root or "0", extension=query.message_id_ext)
    if error is not None or warning:
        detail = etree.SubElement(ack, h("acknowledgementDetail"), typeCode="E" if error else "W")
        code, text = error if error is not None else ("DMP_STATUS", warning or "")
        etree.SubElement(detail, h("code"), code=code, codeSystem=ACK_CODE_SYSTEM)
        etree.SubElement(detail, h("text")).text = text
    cap = etree.SubElement(root, h("controlActProcess"), classCode="CACT", moodCode="EVN")
    etree.SubElement(cap, h("code"), code="PRPA_TE201308UV02", codeSystem="2.16.840.1.113883.1.6")
    if error is None and patient is not None:
        ev = etree.SubElement(
            etree.SubElement(cap, h("subject"), typeCode="SUBJ"),
            h("registrationEvent"),
            classCode="REG",
            moodCode="EVN",
        )
        etree.SubElement(ev, h("statusCode"), code="active")
        pat = etree.SubElement(
            etree.SubElement(ev, h("subject1"), typeCode="SBJ"), h("patient"), classCode="PAT"
        )
        etree.SubElement(pat, h("id"), root=patient.oid, extension=patient.ins)
        etree.SubElement(pat, h("statusCode"), code=PATIENT_STATUS_CODES.get(patient.status, "active"))
        person = etree.SubElement(pat, h("patientPerson"), classCode="PSN", determinerCode="INSTANCE")
        name = etree.SubElement(person, h("name"))
        for given in patient.given_names.split():
            etree.SubElement(name, h("given")).text = given
        etree.SubElement(name, h("family"), qualifier="BR").text = patient.family_name
        etree.SubElement(
            person, h("administrativeGenderCode"), code=patient.sex, codeSystem="2.16.840.1.113883.5.1"
        )
        etree.SubElement(person, h("birthTime"), value=patient.birth_date)
        cust = etree.SubElement(
            etree.SubElement(ev, h("custodian"), typeCode="CST"), h("assignedEntity"), classCode="ASSIGNED"
        )
        etree.SubElement(cust, h("id"), root=DMP_DEVICE_OID)
    qack = etree.SubElement(cap, h("queryAck"))
    etree.SubElement(
        qack,
        h("queryResponseCode"),
        code="OK" if patient is not None and error is None else ("AE" if error else "NF"),
    )
    if query.query_by_parameter is not None:
        cap.append(etree.fromstring(etree.tostring(query.query_by_parameter)))
    return root


def dmp_output(
    ns: str, response_name: str, status: str, context: str
) -> tuple[etree._Element, etree._Element]:
    """``<{response_name} xmlns={ns}><output><status/><context/></output>``; returns (root, output)."""
    root = etree.Element(f"{{{ns}}}{response_name}", nsmap={None: ns})
    output = etree.SubElement(root, f"{{{ns}}}output")
    return root, output


def finish_output(ns: str, output: etree._Element, status: str, context: str) -> None:
    etree.SubElement(output, f"{{{ns}}}status").text = status
    if context:
        etree.SubElement(output, f"{{{ns}}}context").text = context


def child_text(body: etree._Element, ns: str, name: str) -> str:
    el = body.find(f"{{{ns}}}{name}")
    if el is None:
        el = body.find(name)  # tolerate unqualified children (elementFormDefault="unqualified" schemas)
    return (el.text or "").strip() if el is not None else ""
