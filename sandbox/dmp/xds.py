"""ebRIM 3.0 / XDS.b helpers: read submitted metadata, write registry responses and query results."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from lxml import etree

from sandbox.dmp.errors import SEVERITY_ERROR

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"

SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"

DOC_ENTRY_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
UPDATE_AVAILABILITY = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
REPOSITORY_UNIQUE_ID = "1.2.250.1.213.4.1.1.1.2"

# Classification schemes (dmp-protocol.md §8.1-8.2)
S_AUTHOR_DOC = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
S_AUTHOR_SS = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
S_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
S_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
S_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
S_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
S_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
S_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
S_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
S_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
E_DOC_PATIENT = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
E_DOC_UNIQUE = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
E_SS_PATIENT = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
E_SS_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
E_SS_UNIQUE = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

CONFIDENTIALITY_SYSTEMS = {
    "N": "2.16.840.1.113883.5.25",
    "MASQUE_PS": "1.2.250.1.213.1.1.4.13",
    "INVISIBLE_PATIENT": "1.2.250.1.213.1.1.4.13",
    "INVISIBLE_REPRESENTANTS_LEGAUX": "1.2.250.1.213.1.1.4.13",
}


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


@dataclass
class Coded:
    code: str
    scheme: str  # codingScheme slot
    display: str


@dataclass
class RegistryObject:
    """A rim:ExtrinsicObject or rim:RegistryPackage, read into plain values."""

    element: etree._Element
    id: str
    lid: str
    mime_type: str
    object_type: str
    slots: dict[str, list[str]] = field(default_factory=dict)
    classifications: dict[str, list[Coded]] = field(default_factory=dict)  # scheme uuid -> codes
    authors: list[dict[str, list[str]]] = field(default_factory=list)
    external_ids: dict[str, str] = field(default_factory=dict)  # scheme uuid -> value
    name: str = ""
    is_submission_set: bool = False

    def slot(self, name: str) -> str:
        values = self.slots.get(name) or [""]
        return values[0]

    def code(self, scheme: str) -> Coded | None:
        values = self.classifications.get(scheme)
        return values[0] if values else None


@dataclass
class Association:
    element: etree._Element
    id: str
    type: str
    source: str
    target: str
    slots: dict[str, list[str]] = field(default_factory=dict)


def _slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall(q(RIM, "Slot")):
        out[slot.get("name", "")] = [(v.text or "").strip() for v in slot.iter(q(RIM, "Value"))]
    return out


def _localized(el: etree._Element, child: str) -> str:
    node = el.find(f"{q(RIM, child)}/{q(RIM, 'LocalizedString')}")
    return node.get("value", "") if node is not None else ""


def read_object(el: etree._Element) -> RegistryObject:
    obj = RegistryObject(
        element=el,
        id=el.get("id", ""),
        lid=el.get("lid", ""),
        mime_type=el.get("mimeType", ""),
        object_type=el.get("objectType", ""),
        slots=_slots(el),
        name=_localized(el, "Name"),
    )
    for cl in el.findall(q(RIM, "Classification")):
        scheme = cl.get("classificationScheme", "")
        if cl.get("classificationNode") == SUBMISSION_SET_NODE:
            obj.is_submission_set = True
            continue
        if scheme in (S_AUTHOR_DOC, S_AUTHOR_SS):
            obj.authors.append(_slots(cl))
            continue
        coding = _slots(cl).get("codingScheme", [""])
        obj.classifications.setdefault(scheme, []).append(
            Coded(cl.get("nodeRepresentation", ""), coding[0] if coding else "", _localized(cl, "Name"))
        )
    for ext in el.findall(q(RIM, "ExternalIdentifier")):
        obj.external_ids[ext.get("identificationScheme", "")] = ext.get("value", "")
    return obj


@dataclass
class Submission:
    """The objects of a SubmitObjectsRequest."""

    documents: list[RegistryObject]
    packages: list[RegistryObject]
    associations: list[Association]


def read_submission(request: etree._Element) -> Submission:
    """``request`` is a lcm:SubmitObjectsRequest."""
    object_list = request.find(q(RIM, "RegistryObjectList"))
    docs: list[RegistryObject] = []
    packages: list[RegistryObject] = []
    assocs: list[Association] = []
    marked: set[str] = set()
    if object_list is None:
        return Submission(docs, packages, assocs)
    for el in object_list:
        if not isinstance(el.tag, str):
            continue
        if el.tag == q(RIM, "ExtrinsicObject"):
            docs.append(read_object(el))
        elif el.tag == q(RIM, "RegistryPackage"):
            packages.append(read_object(el))
        elif el.tag == q(RIM, "Association"):
            assocs.append(
                Association(
                    el,
                    el.get("id", ""),
                    el.get("associationType", ""),
                    el.get("sourceObject", ""),
                    el.get("targetObject", ""),
                    _slots(el),
                )
            )
        elif el.tag == q(RIM, "Classification") and el.get("classificationNode") == SUBMISSION_SET_NODE:
            # review note 6: the SubmissionSet marker may be a top-level object too
            marked.add(el.get("classifiedObject", ""))
    for pkg in packages:
        if pkg.id in marked:
            pkg.is_submission_set = True
    return Submission(docs, packages, assocs)


def parse_cx(value: str) -> tuple[str, str]:
    """``{id}^^^&{oid}&ISO^NH[...]`` -> (id, oid); ("", "") when malformed."""
    parts = value.strip().strip("'").split("^")
    if len(parts) < 4:
        return "", ""
    authority = parts[3].split("&")
    if len(authority) < 2:
        return "", ""
    return parts[0], authority[1]


def parse_xcn_id(value: str) -> str:
    return value.split("^", 1)[0] if value else ""


def parse_xon_id(value: str) -> str:
    parts = value.split("^")
    return parts[9] if len(parts) >= 10 else ""


def registry_response(errors: list[tuple[str, str, str]] | None = None) -> etree._Element:
    """``errors``: (errorCode, codeContext, location)."""
    resp = etree.Element(q(RS, "RegistryResponse"), nsmap={"rs": RS})
    fill_status(resp, errors)
    return resp


def fill_status(resp: etree._Element, errors: list[tuple[str, str, str]] | None) -> None:
    resp.set("status", FAILURE if errors else SUCCESS)
    if errors:
        lst = etree.SubElement(resp, q(RS, "RegistryErrorList"))
        for code, context, location in errors:
            err = etree.SubElement(lst, q(RS, "RegistryError"))
            err.set("errorCode", code)
            err.set("codeContext", context)
            err.set("severity", SEVERITY_ERROR)
            err.set("location", location)


def add_slot(
    parent: etree._Element, name: str, values: list[str], *, before: etree._Element | None = None
) -> None:
    slot = etree.Element(q(RIM, "Slot"), name=name)
    vl = etree.SubElement(slot, q(RIM, "ValueList"))
    for v in values:
        etree.SubElement(vl, q(RIM, "Value")).text = v
    if before is not None:
        before.addprevious(slot)
    else:
        # slots come first in ebRIM (RegistryObjectType: Slot*, Name?, Description?, VersionInfo?, ...)
        first_other = next((c for c in parent if isinstance(c.tag, str) and c.tag != q(RIM, "Slot")), None)
        if first_other is not None:
            first_other.addprevious(slot)
        else:
            parent.append(slot)


def set_slot(parent: etree._Element, name: str, values: list[str]) -> None:
    for slot in parent.findall(q(RIM, "Slot")):
        if slot.get("name") == name:
            parent.remove(slot)
    add_slot(parent, name, values)


def confidentiality_classification(entry_uuid: str, code: str) -> etree._Element:
    cl = etree.Element(
        q(RIM, "Classification"),
        id=f"urn:uuid:conf-{code}-{entry_uuid[-12:]}",
        classificationScheme=S_CONFIDENTIALITY,
        classifiedObject=entry_uuid,
        nodeRepresentation=code,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification",
    )
    add_slot(cl, "codingScheme", [CONFIDENTIALITY_SYSTEMS.get(code, "1.2.250.1.213.1.1.4.13")])
    name = etree.SubElement(cl, q(RIM, "Name"))
    etree.SubElement(name, q(RIM, "LocalizedString"), value=code)
    return cl


def render_entry(
    metadata: bytes,
    *,
    status: str,
    version: int,
    confidentiality: tuple[str, ...],
    lid: str = "",
) -> bytes:
    """An ExtrinsicObject with its current status, logicalId, version and confidentiality codes."""
    el = etree.fromstring(metadata)
    el.set("status", status)
    if lid:
        el.set("lid", lid)
    for cl in el.findall(q(RIM, "Classification")):
        if cl.get("classificationScheme") == S_CONFIDENTIALITY:
            el.remove(cl)
    anchor = el.find(q(RIM, "ExternalIdentifier"))
    for code in confidentiality:
        cl = confidentiality_classification(el.get("id", ""), code)
        if anchor is not None:
            anchor.addprevious(cl)
        else:
            el.append(cl)
    info = el.find(q(RIM, "VersionInfo"))
    if info is not None:
        info.set("versionName", str(version))
    return etree.tostring(el)


def reidentify_entry(metadata: bytes, entry_uuid: str) -> bytes:
    """The ExtrinsicObject of a new metadata version: ``id`` = the new entryUUID, the objects it contains
    (Classification, ExternalIdentifier) pointing at it with fresh ids of their own (registry object ids are
    unique). The ``lid`` is left as is."""
    el = etree.fromstring(metadata)
    old = el.get("id", "")
    el.set("id", entry_uuid)
    for child in el.iter(q(RIM, "Classification"), q(RIM, "ExternalIdentifier")):
        for attr in ("classifiedObject", "registryObject"):
            if child.get(attr) == old:
                child.set(attr, entry_uuid)
        if child.get("id"):
            child.set("id", f"urn:uuid:{uuid.uuid4()}")
    data: bytes = etree.tostring(el)
    return data


def parse_query_values(values: list[str]) -> list[str]:
    """``('a','b')`` / ``'a'`` / several Value elements -> [a, b]."""
    out: list[str] = []
    for raw in values:
        text = raw.strip()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]
        for item in _split_list(text):
            item = item.strip()
            if len(item) >= 2 and item[0] == item[-1] == "'":
                item = item[1:-1]
            if item:
                out.append(item.replace("''", "'"))
    return out


def _split_list(text: str) -> list[str]:
    items, buf, quoted = [], [], False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    items.append("".join(buf))
    return items
