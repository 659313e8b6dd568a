"""SOAP 1.2 envelope, WS-Addressing checks, service/action catalogue and SOAP 1.2 fault building."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from sandbox.server.context import SoapFault

SOAP_NS = "http://www.w3.org/2003/05/soap-envelope"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSA_NS = "http://www.w3.org/2005/08/addressing"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
XDSB_NS = "urn:ihe:iti:xds-b:2007"
XOP_NS = "http://www.w3.org/2004/08/xop/include"
SANDBOX_FAULT_NS = "urn:ps-agent:sandbox:fault"
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
WSA_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"

HL7_NS = "urn:hl7-org:v3"
HAB_NS = "urn:si-dmp-habilitations"
PAT_NS = "urn:si-dmp-patients"
LCM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
QUERY_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"

BASE_PATH = "/si-dmp-server/v2/services/"

# service -> action -> expected first child of soap:Body (namespace, local name)  [dmp-protocol.md §3]
ACTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "patients": {
        "urn:hl7-org:v3:PRPA_IN201307UV02": (HL7_NS, "PRPA_IN201307UV02"),  # TD0.2, TD1.3a
        "urn:hl7-org:v3:PRPA_IN201311UV02": (HL7_NS, "PRPA_IN201311UV02"),  # TD1.1 create
        "urn:hl7-org:v3:PRPA_IN201314UV02": (HL7_NS, "PRPA_IN201314UV02"),  # TD1.2/1.3b/1.4
    },
    "habilitations": {
        "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization": (HAB_NS, "setAuthorization"),
        "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient": (
            HAB_NS,
            "listAuthorizationByPatient",
        ),
    },
    "patientsSpecific": {
        "urn:si-dmp-patients:PatientSpecificEndPoint:patientList": (PAT_NS, "patientList"),
    },
    "repository": {
        "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b": (XDSB_NS, "ProvideAndRegisterDocumentSetRequest"),
        "urn:ihe:iti:2007:RetrieveDocumentSet": (XDSB_NS, "RetrieveDocumentSetRequest"),
    },
    "registry": {
        "urn:ihe:iti:2007:RegistryStoredQuery": (QUERY_NS, "AdhocQueryRequest"),
        "urn:ihe:iti:2010:UpdateDocumentSet": (LCM_NS, "SubmitObjectsRequest"),
    },
}

# Uncertain point (dmp-protocol.md §3 caveat): the 2024 WSDLs give other SOAP actions for TD0.3/TD1.6 than
# the S1 samples. The sandbox accepts both and hands the domain layer the S1 form.
ACTION_ALIASES: dict[str, str] = {
    "urn:hl7-org:v3:setAuthorization": "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization",
    "urn:hl7-org:v3:listAuthorizationByPatient": (
        "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient"
    ),
}

# Header blocks the server understands (for soap:mustUnderstand).
UNDERSTOOD_HEADERS = {
    (WSA_NS, "MessageID"),
    (WSA_NS, "To"),
    (WSA_NS, "ReplyTo"),
    (WSA_NS, "Action"),
    (WSA_NS, "From"),
    (WSA_NS, "FaultTo"),
    (WSA_NS, "RelatesTo"),
    (WSSE_NS, "Security"),
}

# The real DMP's English reason for a missing WS-A header [dmp-protocol.md §4.2, O:S12], kept as Detail.
WSA_MISSING_TEXT = "A required header representing a Message Addressing Property is not present"

_FAULT_PREFIXES = {"wsa": WSA_NS, "wsse": WSSE_NS, "sandbox": SANDBOX_FAULT_NS}


@dataclass
class Envelope:
    """A checked request envelope."""

    root: etree._Element
    action: str
    message_id: str
    to: str
    security: etree._Element
    body: etree._Element  # first child of soap:Body


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _true(value: str | None) -> bool:
    return value is not None and value.strip() in ("true", "1")


def check_envelope(root: etree._Element, service: str, http_action: str | None) -> Envelope:
    """Check SOAP 1.2 structure, mustUnderstand and the four WS-Addressing headers; return the pieces."""
    if root.tag == _q(SOAP11_NS, "Envelope"):
        raise SoapFault(
            "Enveloppe SOAP 1.1 refusée : le DMP attend SOAP 1.2.",
            code="VersionMismatch",
        )
    if root.tag != _q(SOAP_NS, "Envelope"):
        raise SoapFault("Le message n'est pas une enveloppe SOAP 1.2.", subcode="sandbox:NotSoap")
    header = root.find(_q(SOAP_NS, "Header"))
    body = root.find(_q(SOAP_NS, "Body"))
    if body is None:
        raise SoapFault("Enveloppe SOAP sans élément Body.", subcode="sandbox:NotSoap")
    if header is None:
        raise SoapFault(
            "En-tête SOAP absent : les en-têtes WS-Addressing et le VIHF sont obligatoires.",
            subcode="wsa:MessageAddressingHeaderRequired",
            detail=WSA_MISSING_TEXT,
        )
    for block in header:
        if not isinstance(block.tag, str):
            continue
        if _true(block.get(_q(SOAP_NS, "mustUnderstand"))):
            qname = etree.QName(block)
            if (qname.namespace, qname.localname) not in UNDERSTOOD_HEADERS:
                raise SoapFault(
                    f"En-tête SOAP obligatoire non compris : {{{qname.namespace}}}{qname.localname}.",
                    code="MustUnderstand",
                )

    def wsa(name: str) -> etree._Element:
        found = header.findall(_q(WSA_NS, name))
        if not found:
            raise SoapFault(
                f"En-tête WS-Addressing obligatoire absent : wsa:{name}.",
                subcode="wsa:MessageAddressingHeaderRequired",
                detail=WSA_MISSING_TEXT,
            )
        if len(found) > 1:
            raise SoapFault(
                f"En-tête WS-Addressing en double : wsa:{name}.",
                subcode="wsa:InvalidAddressingHeader",
            )
        return found[0]

    message_id = (wsa("MessageID").text or "").strip()
    to = (wsa("To").text or "").strip()
    reply_to = wsa("ReplyTo")
    action_el = wsa("Action")
    action = (action_el.text or "").strip()
    if not message_id:
        raise SoapFault("wsa:MessageID est vide.", subcode="wsa:InvalidAddressingHeader")
    address = reply_to.find(_q(WSA_NS, "Address"))
    if address is None or (address.text or "").strip() != WSA_ANONYMOUS:
        raise SoapFault(
            "wsa:ReplyTo doit être l'adresse anonyme (réponse synchrone).",
            subcode="wsa:OnlyAnonymousAddressSupported",
        )
    if to and not to.rstrip("/").endswith("/" + service):
        raise SoapFault(
            f"wsa:To ({to}) ne désigne pas le service « {service} » appelé.",
            subcode="wsa:InvalidAddressingHeader",
        )
    action = ACTION_ALIASES.get(action, action)
    if http_action is not None and ACTION_ALIASES.get(http_action, http_action) != action:
        raise SoapFault(
            "L'action SOAP du Content-Type HTTP diffère de wsa:Action.",
            subcode="wsa:ActionMismatch",
        )
    expected = ACTIONS.get(service, {}).get(action)
    if expected is None:
        raise SoapFault(
            f"Action SOAP « {action} » non prise en charge par le service « {service} ».",
            subcode="wsa:ActionNotSupported",
        )
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise SoapFault("Le corps SOAP doit contenir exactement un élément.", subcode="sandbox:InvalidBody")
    payload = children[0]
    if payload.tag != _q(*expected):
        raise SoapFault(
            f"Le corps SOAP ({etree.QName(payload).localname}) ne correspond pas à l'action « {action} ».",
            subcode="sandbox:InvalidBody",
        )
    securities = header.findall(_q(WSSE_NS, "Security"))
    if len(securities) != 1:
        raise SoapFault(
            "En-tête wsse:Security absent ou multiple : le VIHF est obligatoire.",
            subcode="wsse:InvalidSecurity",
        )
    return Envelope(root, action, message_id, to, securities[0], payload)


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _header(action: str, relates_to: str | None) -> etree._Element:
    header = etree.Element(_q(SOAP_NS, "Header"), nsmap={"soap": SOAP_NS, "wsa": WSA_NS})
    a = etree.SubElement(header, _q(WSA_NS, "Action"))
    a.set(_q(SOAP_NS, "mustUnderstand"), "true")
    a.text = action
    etree.SubElement(header, _q(WSA_NS, "MessageID")).text = new_message_id()
    etree.SubElement(header, _q(WSA_NS, "To")).text = WSA_ANONYMOUS
    if relates_to:
        etree.SubElement(header, _q(WSA_NS, "RelatesTo")).text = relates_to
    return header


_EMPTY_BODY_END = b"<soap:Body/></soap:Envelope>"


def build_envelope(action: str, relates_to: str | None, body_child: etree._Element) -> bytes:
    """The answer envelope. The body element is serialised on its own and spliced in: moving a large
    answer (thousands of registry objects) into another lxml document costs as much as serialising it."""
    env = etree.Element(_q(SOAP_NS, "Envelope"), nsmap={"soap": SOAP_NS, "wsa": WSA_NS})
    env.append(_header(action, relates_to))
    etree.SubElement(env, _q(SOAP_NS, "Body"))
    head = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    assert head.endswith(_EMPTY_BODY_END)
    payload = etree.tostring(body_child, encoding="UTF-8", xml_declaration=False, with_tail=False)
    return head[: -len(_EMPTY_BODY_END)] + b"<soap:Body>" + payload + b"</soap:Body></soap:Envelope>"


def build_fault(fault: SoapFault, relates_to: str | None) -> bytes:
    """A SOAP 1.2 fault envelope with the French reason (and the optional detail text)."""
    env = etree.Element(_q(SOAP_NS, "Envelope"), nsmap={"soap": SOAP_NS, "wsa": WSA_NS})
    env.append(_header(WSA_FAULT_ACTION, relates_to))
    body = etree.SubElement(env, _q(SOAP_NS, "Body"))
    f = etree.SubElement(
        body,
        _q(SOAP_NS, "Fault"),
        nsmap={"wsse": WSSE_NS, "sandbox": SANDBOX_FAULT_NS},
    )
    code = etree.SubElement(f, _q(SOAP_NS, "Code"))
    code_name = (
        fault.code
        if fault.code in ("Sender", "Receiver", "MustUnderstand", "VersionMismatch")
        else ("Sender")
    )
    etree.SubElement(code, _q(SOAP_NS, "Value")).text = f"soap:{code_name}"
    if fault.subcode:
        prefix, _, local = fault.subcode.rpartition(":")
        if prefix not in _FAULT_PREFIXES:
            prefix = "sandbox"
        sub = etree.SubElement(code, _q(SOAP_NS, "Subcode"))
        etree.SubElement(sub, _q(SOAP_NS, "Value")).text = f"{prefix}:{local}"
    reason = etree.SubElement(f, _q(SOAP_NS, "Reason"))
    text = etree.SubElement(reason, _q(SOAP_NS, "Text"))
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "fr")
    text.text = fault.reason_fr
    if fault.detail:
        detail = etree.SubElement(f, _q(SOAP_NS, "Detail"))
        etree.SubElement(detail, _q(SANDBOX_FAULT_NS, "message")).text = fault.detail
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def fault_http_status(fault: SoapFault) -> int:
    """SOAP 1.2 HTTP binding: Sender faults are 400, the others 500."""
    return 400 if fault.code == "Sender" else 500
