"""Minimal, schema-valid request bodies for the server-layer tests."""

from __future__ import annotations

from lxml import etree

QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"


def find_documents(ins_cx: str = "'123^^^&1.2.250.1.213.1.4.10&ISO^NH'") -> etree._Element:
    req = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(req, f"{{{QUERY}}}ResponseOption", returnComposedObjects="true", returnType="LeafClass")
    q = etree.SubElement(req, f"{{{RIM}}}AdhocQuery", id=FIND_DOCUMENTS)
    for name, value in (
        ("$XDSDocumentEntryPatientId", ins_cx),
        ("$XDSDocumentEntryStatus", "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"),
    ):
        slot = etree.SubElement(q, f"{{{RIM}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
    return req


def provide_and_register(docs: dict[str, str | bytes]) -> etree._Element:
    """ITI-41 body skeleton: one xdsb:Document per entry; a str value is a ``cid:`` reference (MTOM), bytes
    are inlined as base64. (The registry metadata is the domain layer's business, not tested here.)"""
    import base64

    req = etree.Element(
        f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB, "lcm": LCM, "rim": RIM}
    )
    sor = etree.SubElement(req, f"{{{LCM}}}SubmitObjectsRequest")
    etree.SubElement(sor, f"{{{RIM}}}RegistryObjectList")
    for doc_id, content in docs.items():
        d = etree.SubElement(req, f"{{{XDSB}}}Document", id=doc_id)
        if isinstance(content, str):
            etree.SubElement(d, f"{{{XOP}}}Include", href=content, nsmap={"xop": XOP})
        else:
            d.text = base64.b64encode(content).decode()
    return req


def retrieve(unique_id: str = "1.2.3.4") -> etree._Element:
    req = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    dr = etree.SubElement(req, f"{{{XDSB}}}DocumentRequest")
    etree.SubElement(dr, f"{{{XDSB}}}RepositoryUniqueId").text = "1.2.250.1.213.4.1.1.1.2"
    etree.SubElement(dr, f"{{{XDSB}}}DocumentUniqueId").text = unique_id
    return req
