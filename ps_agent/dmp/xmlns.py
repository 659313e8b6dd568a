"""XML namespaces of the DMP messages and the hardened parser used for every response."""

from __future__ import annotations

import io
from collections.abc import Callable

from lxml import etree

from ps_agent.dmp.errors import ProtocolError

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.1.1#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XS = "http://www.w3.org/2001/XMLSchema"
HL7 = "urn:hl7-org:v3"
XDSB = "urn:ihe:iti:xds-b:2007"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XOP = "http://www.w3.org/2004/08/xop/include"
HABILITATIONS = "urn:si-dmp-habilitations"
PATIENTS_SPECIFIC = "urn:si-dmp-patients"
XML_NS = "http://www.w3.org/XML/1998/namespace"

NSMAP = {
    "soap": SOAP,
    "wsa": WSA,
    "wsse": WSSE,
    "saml2": SAML2,
    "ds": DS,
    "xades": XADES,
    "xsi": XSI,
    "xs": XS,
    "hl7": HL7,
    "xdsb": XDSB,
    "lcm": LCM,
    "rim": RIM,
    "rs": RS,
    "query": QUERY,
    "xop": XOP,
    "hab": HABILITATIONS,
    "psp": PATIENTS_SPECIFIC,
}


def q(ns: str, local: str) -> str:
    """Clark notation ``{ns}local``."""
    return f"{{{ns}}}{local}"


# The hardened settings of every DMP response parse (safe_parse, and safe_parse_taking which repeats
# them): no entity expansion, no DTD loaded, no network, libxml2's size limits (huge_tree off).
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=False
)


def safe_parse(data: bytes) -> etree._Element:
    """Parse untrusted XML (a DMP answer): no DTD, no entities, no network; DOCTYPE refused."""
    if not data or not data.strip():
        raise ProtocolError("La réponse du DMP est vide.", detail="empty body")
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise ProtocolError("La réponse du DMP n'est pas un XML valide.", detail=str(exc)) from exc
    tree = root.getroottree()
    if tree.docinfo.doctype:
        raise ProtocolError("La réponse du DMP contient une déclaration DOCTYPE, refusée.", detail="DOCTYPE")
    return root


def safe_parse_taking(data: bytes, tag: str, take: Callable[[etree._Element], bool]) -> etree._Element:
    """``safe_parse`` (same hardened settings, same errors), streaming: each element ``tag``, once parsed
    whole, is handed to ``take``; when ``take`` returns True it is then cleared and removed from the
    tree. A TD3.1 answer of thousands of entries is thus read entry by entry while the parser goes on,
    and never lives in memory whole (≈ 45 KB of tree per entry; the tree of 2,000 entries costs more to
    free than the lxml parse's third). ``take`` must not raise; the DOCTYPE refusal is checked at the
    end, as the declaration comes first and nothing of the document is expanded in the meantime.

    Only "start" events are asked for: lxml then wraps libxml2's start-element callback alone (with
    "end" events it wraps both, and each call takes the GIL back from the parser: ≈ 8 % of the parse).
    An element of ``tag`` is whole once an element that is not inside it starts (a following sibling,
    the next entry), or once the document is parsed: elements are handed over then, in document order
    (one nested in another one after it, ``take`` deciding what it makes of either)."""
    if not data or not data.strip():
        raise ProtocolError("La réponse du DMP est vide.", detail="empty body")
    events = etree.iterparse(
        io.BytesIO(data),
        events=("start",),
        tag=tag,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_blank_text=False,
    )
    pending: list[etree._Element] = []  # started, not yet handed over, in document order
    try:
        for _, el in events:
            if pending:
                _hand_over_whole(pending, el, take)
            pending.append(el)
        root = events.root
    except etree.XMLSyntaxError as exc:
        raise ProtocolError("La réponse du DMP n'est pas un XML valide.", detail=str(exc)) from exc
    for el in pending:  # the document is parsed: all are whole
        _hand_over(el, take)
    if root is None:  # not reachable: a document without a root element is a syntax error
        raise ProtocolError("La réponse du DMP n'est pas un XML valide.", detail="no root element")
    if root.getroottree().docinfo.doctype:
        raise ProtocolError("La réponse du DMP contient une déclaration DOCTYPE, refusée.", detail="DOCTYPE")
    return root


def _hand_over_whole(
    pending: list[etree._Element], started: etree._Element, take: Callable[[etree._Element], bool]
) -> None:
    """Hand over the pending elements that ``started`` (just started) is not inside of: they are whole.
    Stops at the first one it is inside of (it and the later ones wait)."""
    parent = started.getparent()
    ancestors: list[etree._Element] | None = None
    done = 0
    for el in pending:
        if el.getparent() is not parent:  # not a sibling (the usual case): is ``started`` inside it?
            if ancestors is None:
                ancestors = list(started.iterancestors())
            if any(a is el for a in ancestors):
                break
        _hand_over(el, take)
        done += 1
    del pending[:done]


def _hand_over(el: etree._Element, take: Callable[[etree._Element], bool]) -> None:
    if take(el):
        el.clear()  # its subtree freed now, while the memory is hot for the next entry
        parent = el.getparent()
        if parent is not None:
            parent.remove(el)
