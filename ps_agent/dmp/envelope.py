"""SOAP 1.2 + WS-Addressing envelope (dmp-protocol.md §4.2) and response unwrapping."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from lxml import etree

from ps_agent.dmp.errors import ProtocolError, SoapFault, french_message
from ps_agent.dmp.xmlns import SOAP, WSA, WSSE, q, safe_parse

ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"


def build(action: str, to: str, assertion: etree._Element | None, body: etree._Element) -> tuple[bytes, str]:
    """Serialise a request envelope. Returns (bytes, wsa:MessageID)."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    env = etree.Element(q(SOAP, "Envelope"), nsmap={"soap": SOAP, "wsa": WSA})
    header = etree.SubElement(env, q(SOAP, "Header"))
    etree.SubElement(header, q(WSA, "MessageID")).text = message_id
    etree.SubElement(header, q(WSA, "To")).text = to
    reply = etree.SubElement(header, q(WSA, "ReplyTo"), {q(SOAP, "mustUnderstand"): "true"})
    etree.SubElement(reply, q(WSA, "Address")).text = ANONYMOUS
    etree.SubElement(header, q(WSA, "Action"), {q(SOAP, "mustUnderstand"): "true"}).text = action
    if assertion is not None:
        sec = etree.SubElement(header, q(WSSE, "Security"), nsmap={"wsse": WSSE})
        sec.append(assertion)
    b = etree.SubElement(env, q(SOAP, "Body"))
    b.append(body)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8"), message_id


@dataclass(frozen=True)
class SoapResponse:
    body: etree._Element  # first element child of soap:Body
    action: str
    message_id: str
    relates_to: str


def _fault(fault: etree._Element) -> SoapFault:
    values = [v.text.strip() for v in fault.iter(q(SOAP, "Value")) if v.text]
    code = "/".join(values) or "soap:Fault"
    texts = [t.text.strip() for t in fault.iter(q(SOAP, "Text")) if t.text]
    reason = texts[0] if texts else ""
    return SoapFault(french_message(values[-1] if values else code, reason), code=code, code_context=reason)


def parse(
    data: bytes, *, request_id: str, expected_body: Collection[str], expected_actions: Collection[str]
) -> SoapResponse:
    """Unwrap a response: faults become ``SoapFault``; anything unexpected is a ``ProtocolError``."""
    root = safe_parse(data)
    if root.tag != q(SOAP, "Envelope"):
        raise ProtocolError("La réponse du DMP n'est pas une enveloppe SOAP 1.2.", detail=str(root.tag))
    header = root.find(q(SOAP, "Header"))
    body = root.find(q(SOAP, "Body"))
    if body is None:
        raise ProtocolError("La réponse du DMP n'a pas de corps SOAP.", detail="no Body")
    children = [c for c in body if isinstance(c.tag, str)]
    if not children:
        raise ProtocolError("La réponse du DMP est vide.", detail="empty Body")
    first = children[0]
    if first.tag == q(SOAP, "Fault"):
        raise _fault(first)
    action = message_id = relates_to = ""
    if header is not None:
        action = (header.findtext(q(WSA, "Action")) or "").strip()
        message_id = (header.findtext(q(WSA, "MessageID")) or "").strip()
        relates_to = (header.findtext(q(WSA, "RelatesTo")) or "").strip()
    if relates_to and relates_to != request_id:
        raise ProtocolError(
            "La réponse du DMP ne correspond pas à la requête envoyée.",
            detail=f"RelatesTo {relates_to} != {request_id}",
        )
    if action and expected_actions and action not in expected_actions:
        raise ProtocolError(
            "Le DMP a renvoyé un message inattendu.",
            detail=f"action {action!r} not in {sorted(expected_actions)}",
        )
    if first.tag not in expected_body:
        raise ProtocolError(
            "Le DMP a renvoyé un message inattendu.",
            detail=f"body {first.tag!r} not in {sorted(expected_body)}",
        )
    return SoapResponse(first, action, message_id, relates_to)
