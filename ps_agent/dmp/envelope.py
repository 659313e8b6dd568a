"""SOAP 1.2 + WS-Addressing envelope (dmp-protocol.md §4.2) and response unwrapping."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass

from lxml import etree

from ps_agent.dmp import xmltext
from ps_agent.dmp.errors import ProtocolError, SoapFault, french_message
from ps_agent.dmp.xmlns import SOAP, WSA, WSSE, q, safe_parse, safe_parse_taking

ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# [I] Bounds on what a SOAP fault may put in front of the user and into the journal: a Reason text is cut
# at MAX_FAULT_TEXT characters, each code Value at MAX_FAULT_VALUE, and at most MAX_FAULT_SUBCODES levels
# of Subcode are read (SOAP 1.2 sets no limit; real faults have one or two). A longer text or chain is
# truncated with a marker, never refused: the refusal itself stays visible.
MAX_FAULT_TEXT = 1000
MAX_FAULT_VALUE = 200
MAX_FAULT_SUBCODES = 8
TRUNCATED = "…"


def build(
    action: str, to: str, assertion: etree._Element | bytes | None, body: etree._Element | bytes
) -> tuple[bytes, str]:
    """Serialise a request envelope. Returns (bytes, wsa:MessageID).

    ``assertion`` and ``body``: elements, or their UTF-8 serialisation (``etree.tostring(el,
    encoding="UTF-8")``, e.g. ``ebrim.provide_and_register_xml``). Written as text: the bytes lxml writes
    for the same envelope built as a tree (``build_tree``; tests/dmp/test_wire_text.py compares them)."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    return _build_text(message_id, action, to, assertion, body), message_id


_SOAP_HEAD = (
    f"<?xml version='1.0' encoding='UTF-8'?>\n<soap:Envelope xmlns:soap=\"{SOAP}\" xmlns:wsa=\"{WSA}\">"
    "<soap:Header><wsa:MessageID>"
).encode()
_SECURITY = f'<wsse:Security xmlns:wsse="{WSSE}">'.encode()


def _serialised(el: etree._Element | bytes) -> bytes:
    return el if isinstance(el, bytes) else etree.tostring(el, encoding="UTF-8", with_tail=False)


def _build_text(
    message_id: str,
    action: str,
    to: str,
    assertion: etree._Element | bytes | None,
    body: etree._Element | bytes,
) -> bytes:
    header = (
        f"{xmltext.text(message_id)}</wsa:MessageID><wsa:To>{xmltext.text(to)}</wsa:To>"
        f'<wsa:ReplyTo soap:mustUnderstand="true"><wsa:Address>{ANONYMOUS}</wsa:Address></wsa:ReplyTo>'
        f'<wsa:Action soap:mustUnderstand="true">{xmltext.text(action)}</wsa:Action>'
    ).encode()
    out = [_SOAP_HEAD, header]
    if assertion is not None:
        out += [_SECURITY, _serialised(assertion), b"</wsse:Security>"]
    out += [b"</soap:Header><soap:Body>", _serialised(body), b"</soap:Body></soap:Envelope>"]
    return b"".join(out)


def build_tree(
    action: str, to: str, assertion: etree._Element | None, body: etree._Element, *, message_id: str
) -> bytes:
    """The same envelope built as a tree (the reference of ``build``'s test). Moves ``assertion`` and
    ``body`` into it."""
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
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class SoapResponse:
    body: etree._Element  # first element child of soap:Body
    action: str
    message_id: str
    relates_to: str


def _bounded(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + TRUNCATED


def _fault(fault: etree._Element) -> SoapFault:
    """A typed fault: Code/Value and its Subcode chain (bounded depth), the Reason text (bounded length,
    French ``xml:lang`` preferred)."""
    values: list[str] = []
    level = fault.find(q(SOAP, "Code"))
    while level is not None:
        if len(values) > MAX_FAULT_SUBCODES:
            values.append(TRUNCATED)
            break
        values.append(_bounded(level.findtext(q(SOAP, "Value")) or "", MAX_FAULT_VALUE))
        level = level.find(q(SOAP, "Subcode"))
    values = [v for v in values if v]
    code = "/".join(values) or "soap:Fault"
    texts = fault.findall(f"{q(SOAP, 'Reason')}/{q(SOAP, 'Text')}")
    chosen = next((t for t in texts if (t.get(XML_LANG) or "").lower().startswith("fr")), None)
    if chosen is None and texts:
        chosen = texts[0]
    reason = _bounded(chosen.text or "", MAX_FAULT_TEXT) if chosen is not None else ""
    last = next((v for v in reversed(values) if v != TRUNCATED), code)
    return SoapFault(french_message(last, reason), code=code, code_context=reason)


# An element tag and what takes each such element while the answer is parsed (xmlns.safe_parse_taking).
Taker = tuple[str, Callable[[etree._Element], bool]]


def parse(
    data: bytes,
    *,
    request_id: str,
    expected_body: Collection[str],
    expected_actions: Collection[str],
    take: Taker | None = None,
) -> SoapResponse:
    """Unwrap a response: faults become ``SoapFault``; anything unexpected is a ``ProtocolError``.

    ``take`` (tag, function): elements of that tag are handed over while parsing and removed from the
    tree when taken (a TD3.1 answer's entries: ebrim.QueryEntries); the checks below run on the rest."""
    root = safe_parse(data) if take is None else safe_parse_taking(data, *take)
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
    action = message_id = relates_to = ""
    if header is not None:
        action = (header.findtext(q(WSA, "Action")) or "").strip()
        message_id = (header.findtext(q(WSA, "MessageID")) or "").strip()
        relates_to = (header.findtext(q(WSA, "RelatesTo")) or "").strip()
    # checked on faults as on answers: a fault about another request is not this request's outcome
    if relates_to and relates_to != request_id:
        raise ProtocolError(
            "La réponse du DMP ne correspond pas à la requête envoyée.",
            detail=f"RelatesTo {relates_to[:MAX_FAULT_VALUE]} != {request_id}",
        )
    if first.tag == q(SOAP, "Fault"):
        raise _fault(first)
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
