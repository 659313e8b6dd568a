from __future__ import annotations

from lxml import etree

QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"


def stored_query() -> etree._Element:
    q = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY})
    return q


def test_direct_unsigned_ok(recording):
    _running, service, wire = recording
    r = wire.call("TD3.1", stored_query())
    assert r.status_code == 200, r.text
    assert len(service.requests) == 1
    c = service.requests[0].caller
    assert c.id_nat == "899700000013" and c.mode == "DIRECTE" and not c.vihf_signed
