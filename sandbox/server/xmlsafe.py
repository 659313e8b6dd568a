"""Hardened XML parsing for everything the server reads off the wire.

No DTD is loaded, no entity is resolved, no network access, no huge trees; any DOCTYPE is refused before
parsing (it is how entity-expansion and external-entity attacks begin), so nothing is ever read from disk.
"""

from __future__ import annotations

import re

from lxml import etree

from sandbox.server.context import SoapFault

_DOCTYPE = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
        collect_ids=False,
    )


def parse(data: bytes, *, what: str = "message SOAP") -> etree._Element:
    """Parse untrusted XML bytes; raise :class:`SoapFault` (Sender) on a DOCTYPE or malformed XML."""
    if _DOCTYPE.search(data):
        raise SoapFault(
            f"Le {what} contient une déclaration DOCTYPE/ENTITY : refusée pour des raisons de sécurité.",
            subcode="sandbox:ForbiddenDoctype",
        )
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise SoapFault(
            f"Le {what} n'est pas un XML bien formé ({exc.msg}).", subcode="sandbox:MalformedXml"
        ) from None
    if root is None:
        raise SoapFault(f"Le {what} est vide.", subcode="sandbox:MalformedXml")
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise SoapFault(
            f"Le {what} contient une déclaration DOCTYPE : refusée pour des raisons de sécurité.",
            subcode="sandbox:ForbiddenDoctype",
        )
    return root
