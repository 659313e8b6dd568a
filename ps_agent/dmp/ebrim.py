"""ebRIM 3.0 wire format of the XDS metadata model (dmp-protocol.md §7.5–7.9, §8).

Builders return lxml elements; parsers take elements from responses parsed by ``safe_parse``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from lxml import etree

from ps_agent.dmp.errors import ProtocolError, RegistryErrorItem, RegistryRefusal, french_message
from ps_agent.dmp.model import (
    Author,
    Code,
    DocumentEntry,
    PatientId,
    Status,
    SubmissionSet,
    parse_xds_time,
    xds_time,
)
from ps_agent.dmp.mtom import cid_href
from ps_agent.dmp.xmlns import LCM, QUERY, RIM, RS, SOAP, XDSB, XML_NS, XOP, q
from ps_agent.dmp.xmltext import NotXmlText
from ps_agent.dmp.xmltext import attr as _xa
from ps_agent.dmp.xmltext import text as _xt

# Classification / identification schemes (IHE ITI TF-3 4.2.5)
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_CLASSIFICATION_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
DE_OBJECT_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
REGISTRY_PACKAGE_TYPE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage"
CLASSIFICATION_TYPE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
EXTERNAL_ID_TYPE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"
ASSOCIATION_TYPE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"  # 2007, not S3's 2010 (§7.5)
UPDATE_AVAILABILITY = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"

FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"

SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"


_CLARK: dict[tuple[str, str], str] = {}  # (ns, tag) -> "{ns}tag": ≈ 200 elements per deposit


def _clark(ns: str, tag: str) -> str:
    name = _CLARK.get((ns, tag))
    if name is None:
        name = _CLARK[(ns, tag)] = q(ns, tag)
    return name


def _el(parent: etree._Element | None, ns: str, tag: str, **attrs: str) -> etree._Element:
    name = _clark(ns, tag)
    if parent is None:
        return etree.Element(name, attrs)
    return etree.SubElement(parent, name, attrs)


def _slot(parent: etree._Element, name: str, values: Iterable[str]) -> None:
    values = [v for v in values if v is not None and v != ""]
    if not values:
        return
    slot = _el(parent, RIM, "Slot", name=name)
    vl = _el(slot, RIM, "ValueList")
    for v in values:
        _el(vl, RIM, "Value").text = v


def _localized(parent: etree._Element, tag: str, text: str) -> None:
    if not text:
        return
    holder = _el(parent, RIM, tag)
    ls = _el(holder, RIM, "LocalizedString", value=text)
    ls.set(q(XML_NS, "lang"), "fr-FR")
    ls.set("charset", "UTF-8")


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _copied(
    parent: etree._Element,
    key: tuple[object, ...],
    build: Callable[[etree._Element], etree._Element],
    values: dict[str, str],
) -> etree._Element:
    """A copy of the template ``build`` makes once (per thread, per ``key`` and the parent's prefix for
    RIM), with ``values`` set on its root, appended to ``parent``. A copy is made in C; building the same
    elements from Python costs ≈ 5 µs per element (lxml checks every attribute and text), ≈ 200 elements
    per deposit. ``build`` creates the root's attributes in their final order (placeholders for
    ``values``): setting an existing attribute keeps its place, so the bytes are those of a direct build."""
    prefix = parent.prefix
    cache: dict[tuple[object, ...], etree._Element] | None = getattr(_templates, "cache", None)
    if cache is None:
        cache = _templates.cache = {}
    full_key = (*key, prefix)
    template = cache.get(full_key)
    if template is None:
        template = build(etree.Element(_clark(RIM, "Templates"), nsmap={prefix: RIM}))
        if len(cache) < 2048:
            cache[full_key] = template
    el = copy.deepcopy(template)
    for name, value in values.items():
        el.set(name, value)
    parent.append(el)  # the copy's own xmlns:<prefix> is dropped: the parent declares the same one
    return el


USE_TEMPLATES = True  # False: every element built one by one (the byte-identity test)
_templates = threading.local()  # lxml trees are not shared between threads


def _classification(
    parent: etree._Element, ids: _Ids, scheme: str, obj: str, code: Code | None, node: str | None = None
) -> etree._Element:
    if not USE_TEMPLATES:
        return _build_classification(parent, ids("cl"), scheme, obj, code, node)
    return _copied(
        parent,
        ("classification", scheme, node, code),
        lambda holder: _build_classification(holder, "", scheme, "", code, node),
        {"classifiedObject": obj, "id": ids("cl")},
    )


def _build_classification(
    parent: etree._Element, cl_id: str, scheme: str, obj: str, code: Code | None, node: str | None
) -> etree._Element:
    cl = _el(
        parent,
        RIM,
        "Classification",
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation=node if node is not None else (code.code if code else ""),
        id=cl_id,
        objectType=CLASSIFICATION_TYPE,
    )
    if code is not None:
        _slot(cl, "codingScheme", [code.scheme])
        _localized(cl, "Name", code.display or code.code)
    return cl


def _author(parent: etree._Element, ids: _Ids, scheme: str, obj: str, author: Author) -> None:
    if not USE_TEMPLATES:
        _build_author(parent, ids("cl"), scheme, obj, author)
        return
    _copied(
        parent,
        ("author", scheme, author),
        lambda holder: _build_author(holder, "", scheme, "", author),
        {"classifiedObject": obj, "id": ids("cl")},
    )


def _build_author(
    parent: etree._Element, cl_id: str, scheme: str, obj: str, author: Author
) -> etree._Element:
    cl = _el(
        parent,
        RIM,
        "Classification",
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation="",
        id=cl_id,
        objectType=CLASSIFICATION_TYPE,
    )
    _slot(cl, "authorPerson", [author.xcn])
    _slot(cl, "authorInstitution", [author.xon])
    if author.role:
        _slot(cl, "authorRole", [author.role])
    if author.specialty:
        s = author.specialty
        _slot(cl, "authorSpecialty", [f"{s.code}^{s.display}^{s.scheme}"])
    return cl


def _external_id(parent: etree._Element, ids: _Ids, scheme: str, obj: str, value: str, name: str) -> None:
    if not USE_TEMPLATES:
        _build_external_id(parent, ids("ei"), scheme, obj, value, name)
        return
    _copied(
        parent,
        ("external", scheme, name),
        lambda holder: _build_external_id(holder, "", scheme, "", "", name),
        {"registryObject": obj, "value": value, "id": ids("ei")},
    )


def _build_external_id(
    parent: etree._Element, ei_id: str, scheme: str, obj: str, value: str, name: str
) -> etree._Element:
    ei = _el(
        parent,
        RIM,
        "ExternalIdentifier",
        identificationScheme=scheme,
        registryObject=obj,
        value=value,
        id=ei_id,
        objectType=EXTERNAL_ID_TYPE,
    )
    _localized(ei, "Name", name)
    return ei


def submission_set_element(parent: etree._Element, ids: _Ids, ss: SubmissionSet, sid: str) -> None:
    pkg = _el(parent, RIM, "RegistryPackage", id=sid, objectType=REGISTRY_PACKAGE_TYPE)
    _slot(pkg, "submissionTime", [xds_time(ss.submission_time)])
    _localized(pkg, "Name", ss.title)
    _localized(pkg, "Description", ss.comments)
    for a in ss.authors:
        _author(pkg, ids, SS_AUTHOR, sid, a)
    _classification(pkg, ids, SS_CONTENT_TYPE, sid, ss.content_type)
    _external_id(pkg, ids, SS_PATIENT_ID, sid, ss.patient_id.cx, "XDSSubmissionSet.patientId")
    _external_id(pkg, ids, SS_SOURCE_ID, sid, ss.source_id, "XDSSubmissionSet.sourceId")
    _external_id(pkg, ids, SS_UNIQUE_ID, sid, ss.unique_id, "XDSSubmissionSet.uniqueId")
    # The SubmissionSet marker as a top-level object (IHE examples; review note 6).
    _el(
        parent,
        RIM,
        "Classification",
        classifiedObject=sid,
        classificationNode=SS_CLASSIFICATION_NODE,
        id=ids("cl"),
        objectType=CLASSIFICATION_TYPE,
    )


def document_entry_element(
    parent: etree._Element, ids: _Ids, de: DocumentEntry, did: str, *, lid: str = "", status: str = ""
) -> etree._Element:
    attrs = {"id": did, "mimeType": de.mime_type, "objectType": DE_OBJECT_TYPE}
    if lid:
        attrs["lid"] = lid
    if status:
        attrs["status"] = status
    eo = _el(parent, RIM, "ExtrinsicObject", **attrs)
    _slot(eo, "creationTime", [xds_time(de.creation_time)])
    _slot(eo, "languageCode", [de.language])
    _slot(eo, "legalAuthenticator", [de.legal_authenticator])
    if de.service_start:
        _slot(eo, "serviceStartTime", [xds_time(de.service_start)])
    if de.service_stop:
        _slot(eo, "serviceStopTime", [xds_time(de.service_stop)])
    _slot(eo, "sourcePatientId", [de.source_patient_id or de.patient_id.cx])
    _slot(eo, "sourcePatientInfo", de.source_patient_info)
    if de.hash:
        _slot(eo, "hash", [de.hash])
    if de.size is not None:
        _slot(eo, "size", [str(de.size)])
    if de.repository_unique_id and status:
        _slot(eo, "repositoryUniqueId", [de.repository_unique_id])
    _localized(eo, "Name", de.title)
    _localized(eo, "Description", de.comments)
    for a in de.authors:
        _author(eo, ids, DE_AUTHOR, did, a)
    _classification(eo, ids, DE_CLASS, did, de.class_code)
    for c in de.confidentiality:
        _classification(eo, ids, DE_CONFIDENTIALITY, did, c)
    for c in de.event_codes:
        _classification(eo, ids, DE_EVENT, did, c)
    _classification(eo, ids, DE_FORMAT, did, de.format_code)
    _classification(eo, ids, DE_FACILITY, did, de.healthcare_facility_type)
    _classification(eo, ids, DE_PRACTICE, did, de.practice_setting)
    _classification(eo, ids, DE_TYPE, did, de.type_code)
    _external_id(eo, ids, DE_PATIENT_ID, did, de.patient_id.cx, "XDSDocumentEntry.patientId")
    _external_id(eo, ids, DE_UNIQUE_ID, did, de.unique_id, "XDSDocumentEntry.uniqueId")
    return eo


def _association(
    parent: etree._Element,
    ids: _Ids,
    kind: str,
    source: str,
    target: str,
    slots: dict[str, str] | None = None,
) -> None:
    a = _el(
        parent,
        RIM,
        "Association",
        id=ids("as"),
        associationType=kind,
        objectType=ASSOCIATION_TYPE,
        sourceObject=source,
        targetObject=target,
    )
    for k, v in (slots or {}).items():
        _slot(a, k, [v])


@dataclass(frozen=True)
class DepositItem:
    """One document of a submission: its metadata, bytes, and the entryUUID it replaces.

    ``c14n_sha256``: the XAdES document digest of ``content`` (``xades.tree_digest``) when the caller has
    already computed it from the tree it parsed from these very bytes; None: computed when signing."""

    entry: DocumentEntry
    content: bytes
    replaces_entry_uuid: str = ""
    c14n_sha256: bytes | None = field(default=None, compare=False, repr=False)


def provide_and_register(
    ss: SubmissionSet,
    items: Sequence[DepositItem],
    signature: DepositItem | None,
    *,
    content_ids: Sequence[str],
) -> etree._Element:
    """ITI-41 body. ``content_ids`` are the MTOM cids of items (then of the signature)."""
    root = _el(None, XDSB, "ProvideAndRegisterDocumentSetRequest")
    sor = _el(root, LCM, "SubmitObjectsRequest")
    rol = _el(sor, RIM, "RegistryObjectList")
    ids = _Ids()
    submission_set_element(rol, ids, ss, "SubmissionSet01")
    symbolic = [f"Document{n + 1:02d}" for n in range(len(items))]
    for sym, item in zip(symbolic, items, strict=True):
        document_entry_element(rol, ids, item.entry, sym)
    if signature is not None:
        document_entry_element(rol, ids, signature.entry, "Signature01")
    for sym in symbolic + (["Signature01"] if signature is not None else []):
        _association(rol, ids, HAS_MEMBER, "SubmissionSet01", sym, {"SubmissionSetStatus": "Original"})
    if signature is not None:
        _association(rol, ids, SIGNS, "Signature01", "SubmissionSet01")
    for sym, item in zip(symbolic, items, strict=True):
        if item.replaces_entry_uuid:
            _association(rol, ids, RPLC, sym, item.replaces_entry_uuid)
    all_syms = symbolic + (["Signature01"] if signature is not None else [])
    for sym, cid in zip(all_syms, content_ids, strict=True):
        doc = _el(root, XDSB, "Document", id=sym)
        _el(doc, XOP, "Include", href=cid_href(cid))
    return root


# --------------------------------------------------------------------------- ITI-41 as text
# A deposit's ebRIM (≈ 300 elements) written as the text lxml serialises for the elements built above
# (ps_agent.dmp.xmltext), from fragments cached per code, author and scheme: building the elements from
# Python, even copied from templates, then serialising them costs ≈ 4× more. ``provide_and_register_xml``
# is byte for byte ``etree.tostring(provide_and_register(...), encoding="UTF-8")`` (tests/dmp/
# test_wire_text.py compares them on varied metadata, escapes and characters included); a value that is not
# XML text (a control character, a lone surrogate) is left to the element build, which refuses it as before.


def _t_slot(out: list[str], p: str, name: str, values: Iterable[str]) -> None:
    values = [v for v in values if v is not None and v != ""]
    if not values:
        return
    out.append(f'<{p}:Slot name="{_xa(name)}"><{p}:ValueList>')
    for v in values:
        out.append(f"<{p}:Value>{_xt(v)}</{p}:Value>")
    out.append(f"</{p}:ValueList></{p}:Slot>")


def _t_localized(out: list[str], p: str, tag: str, text: str) -> None:
    if text:
        value = _xa(text)
        out.append(
            f'<{p}:{tag}><{p}:LocalizedString value="{value}" xml:lang="fr-FR" charset="UTF-8"/></{p}:{tag}>'
        )


def _t_element(p: str, tag: str, head: str, children: list[str]) -> str:
    """``<p:tag head/>`` or ``<p:tag head>children</p:tag>`` (lxml writes a childless element empty)."""
    if not children:
        return f"<{p}:{tag} {head}/>"
    return f"<{p}:{tag} {head}>{''.join(children)}</{p}:{tag}>"


# Cached fragments: (text before the object id, text between it and the element id, text after). Strings
# are immutable: shared by threads. Bounded (cleared when full).
_FRAGMENTS: dict[tuple[object, ...], tuple[str, str, str]] = {}
_OBJ, _ID = "\x00obj\x00", "\x00id\x00"  # never in a value (_xa refuses NUL): the split points


def _fragment(key: tuple[object, ...], build: Callable[[], str]) -> tuple[str, str, str]:
    found = _FRAGMENTS.get(key)
    if found is None:
        before, rest = build().split(_OBJ)
        between, after = rest.split(_ID)
        found = (before, between, after)
        if len(_FRAGMENTS) >= 2048:
            _FRAGMENTS.clear()
        _FRAGMENTS[key] = found
    return found


def _t_classification(
    out: list[str], p: str, ids: _Ids, scheme: str, obj: str, code: Code | None, node: str | None = None
) -> None:
    def build() -> str:
        children: list[str] = []
        if code is not None:
            _t_slot(children, p, "codingScheme", [code.scheme])
            _t_localized(children, p, "Name", code.display or code.code)
        rep = node if node is not None else (code.code if code else "")
        head = (
            f'classificationScheme="{_xa(scheme)}" classifiedObject="{_OBJ}" nodeRepresentation="{_xa(rep)}" '
            f'id="{_ID}" objectType="{CLASSIFICATION_TYPE}"'
        )
        return _t_element(p, "Classification", head, children)

    before, between, after = _fragment(("classification", p, scheme, node, code), build)
    out.append(f"{before}{_xa(obj)}{between}{ids('cl')}{after}")


def _t_author(out: list[str], p: str, ids: _Ids, scheme: str, obj: str, author: Author) -> None:
    def build() -> str:
        children: list[str] = []
        _t_slot(children, p, "authorPerson", [author.xcn])
        _t_slot(children, p, "authorInstitution", [author.xon])
        if author.role:
            _t_slot(children, p, "authorRole", [author.role])
        if author.specialty:
            s = author.specialty
            _t_slot(children, p, "authorSpecialty", [f"{s.code}^{s.display}^{s.scheme}"])
        head = (
            f'classificationScheme="{_xa(scheme)}" classifiedObject="{_OBJ}" nodeRepresentation="" '
            f'id="{_ID}" objectType="{CLASSIFICATION_TYPE}"'
        )
        return _t_element(p, "Classification", head, children)

    before, between, after = _fragment(("author", p, scheme, author), build)
    out.append(f"{before}{_xa(obj)}{between}{ids('cl')}{after}")


def _t_external_id(out: list[str], p: str, ids: _Ids, scheme: str, obj: str, value: str, name: str) -> None:
    def build() -> str:
        children: list[str] = []
        _t_localized(children, p, "Name", name)
        head = (
            f'identificationScheme="{_xa(scheme)}" registryObject="{_OBJ}" value="\x00value\x00" '
            f'id="{_ID}" objectType="{EXTERNAL_ID_TYPE}"'
        )
        return _t_element(p, "ExternalIdentifier", head, children)

    before, between, after = _fragment(("external", p, scheme, name), build)
    head, tail = between.split("\x00value\x00")
    out.append(f"{before}{_xa(obj)}{head}{_xa(value)}{tail}{ids('ei')}{after}")


def _t_submission_set(out: list[str], p: str, ids: _Ids, ss: SubmissionSet, sid: str) -> None:
    children: list[str] = []
    _t_slot(children, p, "submissionTime", [xds_time(ss.submission_time)])
    _t_localized(children, p, "Name", ss.title)
    _t_localized(children, p, "Description", ss.comments)
    for a in ss.authors:
        _t_author(children, p, ids, SS_AUTHOR, sid, a)
    _t_classification(children, p, ids, SS_CONTENT_TYPE, sid, ss.content_type)
    _t_external_id(children, p, ids, SS_PATIENT_ID, sid, ss.patient_id.cx, "XDSSubmissionSet.patientId")
    _t_external_id(children, p, ids, SS_SOURCE_ID, sid, ss.source_id, "XDSSubmissionSet.sourceId")
    _t_external_id(children, p, ids, SS_UNIQUE_ID, sid, ss.unique_id, "XDSSubmissionSet.uniqueId")
    out.append(
        _t_element(p, "RegistryPackage", f'id="{_xa(sid)}" objectType="{REGISTRY_PACKAGE_TYPE}"', children)
    )
    out.append(
        f'<{p}:Classification classifiedObject="{_xa(sid)}" classificationNode="{SS_CLASSIFICATION_NODE}" '
        f'id="{ids("cl")}" objectType="{CLASSIFICATION_TYPE}"/>'
    )


def _t_document_entry(out: list[str], p: str, ids: _Ids, de: DocumentEntry, did: str) -> None:
    children: list[str] = []
    _t_slot(children, p, "creationTime", [xds_time(de.creation_time)])
    _t_slot(children, p, "languageCode", [de.language])
    _t_slot(children, p, "legalAuthenticator", [de.legal_authenticator])
    if de.service_start:
        _t_slot(children, p, "serviceStartTime", [xds_time(de.service_start)])
    if de.service_stop:
        _t_slot(children, p, "serviceStopTime", [xds_time(de.service_stop)])
    _t_slot(children, p, "sourcePatientId", [de.source_patient_id or de.patient_id.cx])
    _t_slot(children, p, "sourcePatientInfo", de.source_patient_info)
    if de.hash:
        _t_slot(children, p, "hash", [de.hash])
    if de.size is not None:
        _t_slot(children, p, "size", [str(de.size)])
    _t_localized(children, p, "Name", de.title)
    _t_localized(children, p, "Description", de.comments)
    for a in de.authors:
        _t_author(children, p, ids, DE_AUTHOR, did, a)
    _t_classification(children, p, ids, DE_CLASS, did, de.class_code)
    for c in de.confidentiality:
        _t_classification(children, p, ids, DE_CONFIDENTIALITY, did, c)
    for c in de.event_codes:
        _t_classification(children, p, ids, DE_EVENT, did, c)
    _t_classification(children, p, ids, DE_FORMAT, did, de.format_code)
    _t_classification(children, p, ids, DE_FACILITY, did, de.healthcare_facility_type)
    _t_classification(children, p, ids, DE_PRACTICE, did, de.practice_setting)
    _t_classification(children, p, ids, DE_TYPE, did, de.type_code)
    _t_external_id(children, p, ids, DE_PATIENT_ID, did, de.patient_id.cx, "XDSDocumentEntry.patientId")
    _t_external_id(children, p, ids, DE_UNIQUE_ID, did, de.unique_id, "XDSDocumentEntry.uniqueId")
    head = f'id="{_xa(did)}" mimeType="{_xa(de.mime_type)}" objectType="{DE_OBJECT_TYPE}"'
    out.append(_t_element(p, "ExtrinsicObject", head, children))


def _t_association(
    out: list[str],
    p: str,
    ids: _Ids,
    kind: str,
    source: str,
    target: str,
    slots: dict[str, str] | None = None,
) -> None:
    children: list[str] = []
    for k, v in (slots or {}).items():
        _t_slot(children, p, k, [v])
    head = (
        f'id="{ids("as")}" associationType="{kind}" objectType="{ASSOCIATION_TYPE}" '
        f'sourceObject="{_xa(source)}" targetObject="{_xa(target)}"'
    )
    out.append(_t_element(p, "Association", head, children))


def provide_and_register_xml(
    ss: SubmissionSet,
    items: Sequence[DepositItem],
    signature: DepositItem | None,
    *,
    content_ids: Sequence[str],
) -> bytes:
    """``etree.tostring(provide_and_register(...), encoding="UTF-8")``, written as text (the deposit's
    wire form: ``envelope.build`` takes it as is)."""
    try:
        return _provide_and_register_text(ss, items, signature, content_ids).encode("utf-8")
    except NotXmlText:
        return etree.tostring(
            provide_and_register(ss, items, signature, content_ids=content_ids), encoding="UTF-8"
        )


def _provide_and_register_text(
    ss: SubmissionSet, items: Sequence[DepositItem], signature: DepositItem | None, content_ids: Sequence[str]
) -> str:
    # the prefixes lxml gives the element build (no nsmap): ns0 xdsb, ns1 lcm, ns2 rim, then one per Include
    p = "ns2"
    out = [f'<ns0:ProvideAndRegisterDocumentSetRequest xmlns:ns0="{XDSB}">']
    out.append(f'<ns1:SubmitObjectsRequest xmlns:ns1="{LCM}"><ns2:RegistryObjectList xmlns:ns2="{RIM}">')
    ids = _Ids()
    _t_submission_set(out, p, ids, ss, "SubmissionSet01")
    symbolic = [f"Document{n + 1:02d}" for n in range(len(items))]
    for sym, item in zip(symbolic, items, strict=True):
        _t_document_entry(out, p, ids, item.entry, sym)
    if signature is not None:
        _t_document_entry(out, p, ids, signature.entry, "Signature01")
    all_syms = symbolic + (["Signature01"] if signature is not None else [])
    for sym in all_syms:
        _t_association(out, p, ids, HAS_MEMBER, "SubmissionSet01", sym, {"SubmissionSetStatus": "Original"})
    if signature is not None:
        _t_association(out, p, ids, SIGNS, "Signature01", "SubmissionSet01")
    for sym, item in zip(symbolic, items, strict=True):
        if item.replaces_entry_uuid:
            _t_association(out, p, ids, RPLC, sym, item.replaces_entry_uuid)
    out.append("</ns2:RegistryObjectList></ns1:SubmitObjectsRequest>")
    for n, (sym, cid) in enumerate(zip(all_syms, content_ids, strict=True)):
        ns, href = f"ns{3 + n}", _xa(cid_href(cid))
        out.append(
            f'<ns0:Document id="{sym}"><{ns}:Include xmlns:{ns}="{XOP}" href="{href}"/></ns0:Document>'
        )
    out.append("</ns0:ProvideAndRegisterDocumentSetRequest>")
    return "".join(out)


def metadata_update(ss: SubmissionSet, current: DocumentEntry, new_entry: DocumentEntry) -> etree._Element:
    """ITI-57 DocumentEntry update (new version with changed confidentiality codes, §7.8)."""
    sor = _el(None, LCM, "SubmitObjectsRequest")
    rol = _el(sor, RIM, "RegistryObjectList")
    ids = _Ids()
    submission_set_element(rol, ids, ss, "SubmissionSet01")
    document_entry_element(
        rol,
        ids,
        new_entry,
        "Document01",
        lid=current.logical_id or current.entry_uuid,
        status=Status.APPROVED,
    )
    _association(
        rol,
        ids,
        HAS_MEMBER,
        "SubmissionSet01",
        "Document01",
        {"SubmissionSetStatus": "Original", "PreviousVersion": current.version or "1"},
    )
    return sor


def availability_update(ss: SubmissionSet, entry_uuid: str, original: str, new: str) -> etree._Element:
    """ITI-57 UpdateAvailabilityStatus (archive, unarchive, delete; §7.9)."""
    sor = _el(None, LCM, "SubmitObjectsRequest")
    rol = _el(sor, RIM, "RegistryObjectList")
    ids = _Ids()
    submission_set_element(rol, ids, ss, "SubmissionSet01")
    a = _el(
        rol,
        RIM,
        "Association",
        id="association1",
        associationType=UPDATE_AVAILABILITY,
        objectType=ASSOCIATION_TYPE,
        sourceObject="SubmissionSet01",
        targetObject=entry_uuid,
    )
    _slot(a, "OriginalStatus", [original])
    _slot(a, "NewStatus", [new])
    return sor


def _quoted_list(values: Iterable[str]) -> str:
    return "(" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


@dataclass(frozen=True)
class FindFilters:
    """Optional FindDocuments filters (§7.6). Codes are matched code^^scheme."""

    statuses: tuple[Status, ...] = (Status.APPROVED,)
    class_codes: tuple[Code, ...] = ()
    type_codes: tuple[Code, ...] = ()
    practice_settings: tuple[Code, ...] = ()
    facility_types: tuple[Code, ...] = ()
    format_codes: tuple[Code, ...] = ()
    event_codes: tuple[Code, ...] = ()
    confidentiality_codes: tuple[Code, ...] = ()
    creation_from: object | None = None  # datetime
    creation_to: object | None = None
    service_start_from: object | None = None
    service_start_to: object | None = None
    service_stop_from: object | None = None
    service_stop_to: object | None = None
    author_person: str = ""  # XCN pattern, e.g. "899700000013%" (IHE LIKE syntax)


def find_documents(patient: PatientId, filters: FindFilters | None = None) -> etree._Element:
    f = filters or FindFilters()
    root = _el(None, QUERY, "AdhocQueryRequest")
    _el(root, QUERY, "ResponseOption", returnComposedObjects="true", returnType="LeafClass")
    aq = _el(root, RIM, "AdhocQuery", id=FIND_DOCUMENTS)
    _slot(aq, "$XDSDocumentEntryPatientId", [f"'{patient.cx}'"])
    _slot(aq, "$XDSDocumentEntryStatus", [_quoted_list(s.value for s in f.statuses)])
    for name, codes in (
        ("ClassCode", f.class_codes),
        ("TypeCode", f.type_codes),
        ("PracticeSettingCode", f.practice_settings),
        ("HealthcareFacilityTypeCode", f.facility_types),
        ("FormatCode", f.format_codes),
        ("EventCodeList", f.event_codes),
        ("ConfidentialityCode", f.confidentiality_codes),
    ):
        if codes:
            _slot(aq, f"$XDSDocumentEntry{name}", [_quoted_list(c.query_form() for c in codes)])
    for name, value in (
        ("CreationTimeFrom", f.creation_from),
        ("CreationTimeTo", f.creation_to),
        ("ServiceStartTimeFrom", f.service_start_from),
        ("ServiceStartTimeTo", f.service_start_to),
        ("ServiceStopTimeFrom", f.service_stop_from),
        ("ServiceStopTimeTo", f.service_stop_to),
    ):
        if value is not None:
            _slot(aq, f"$XDSDocumentEntry{name}", [xds_time(value)])  # type: ignore[arg-type]
    if f.author_person:
        _slot(aq, "$XDSDocumentEntryAuthorPerson", [f"'{f.author_person}'"])
    return root


def get_documents(*, unique_ids: Sequence[str] = (), entry_uuids: Sequence[str] = ()) -> etree._Element:
    root = _el(None, QUERY, "AdhocQueryRequest")
    _el(root, QUERY, "ResponseOption", returnComposedObjects="true", returnType="LeafClass")
    aq = _el(root, RIM, "AdhocQuery", id=GET_DOCUMENTS)
    if unique_ids:
        _slot(aq, "$XDSDocumentEntryUniqueId", [_quoted_list(unique_ids)])
    else:
        _slot(aq, "$XDSDocumentEntryEntryUUID", [_quoted_list(entry_uuids)])
    return root


def retrieve_request(requests: Sequence[tuple[str, str]]) -> etree._Element:
    """ITI-43 body for (repositoryUniqueId, documentUniqueId) pairs."""
    root = _el(None, XDSB, "RetrieveDocumentSetRequest")
    for repo, uid in requests:
        dr = _el(root, XDSB, "DocumentRequest")
        _el(dr, XDSB, "RepositoryUniqueId").text = repo
        _el(dr, XDSB, "DocumentUniqueId").text = uid
    return root


# --------------------------------------------------------------------------- parsing

_SLOT = q(RIM, "Slot")
_VALUE = q(RIM, "Value")
_VALUE_LIST = q(RIM, "ValueList")
_CLASSIFICATION = q(RIM, "Classification")
_EXTERNAL_ID = q(RIM, "ExternalIdentifier")
_LOCALIZED = q(RIM, "LocalizedString")
_NAME = q(RIM, "Name")
_DESCRIPTION = q(RIM, "Description")
_VERSION_INFO = q(RIM, "VersionInfo")
_EXTRINSIC_OBJECT = q(RIM, "ExtrinsicObject")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_CODE = Code("", "")  # frozen: one shared instance for every missing code
_KNOWN_SLOTS = frozenset(
    {
        "creationTime", "languageCode", "legalAuthenticator", "serviceStartTime", "serviceStopTime",
        "sourcePatientId", "sourcePatientInfo", "hash", "size", "repositoryUniqueId",
    }
)  # fmt: skip

# Codes and authors repeat across a DMP's entries (same types, classes, formats, authors): the frozen,
# immutable objects are shared. Bounded: cleared when full, so a hostile answer cannot grow them.
_CACHE_MAX = 4096
_CODE_CACHE: dict[tuple[str, str, str], Code] = {}
_AUTHOR_CACHE: dict[tuple[str, str, str, str], Author] = {}
_PATIENT_CACHE: dict[str, PatientId] = {}


def _cached(cache: dict, key: object, value: object) -> Any:  # type: ignore[type-arg]
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


# Everything the walk needs, in one C-level filtered iteration (other elements are skipped in C).
_WALK_TAGS = (
    _VALUE, _SLOT, _LOCALIZED, _NAME, _CLASSIFICATION, _EXTERNAL_ID, _DESCRIPTION,
    _VERSION_INFO, _EXTRINSIC_OBJECT,
)  # fmt: skip
_new_object = object.__new__
# The walk itself takes the four frequent kinds in any namespace (libxml2 then compares no namespace URI
# for them: ≈ 5 % of the walk); those of another namespace, which the look-ahead iterators do not meet,
# reach the ``.tag`` path and are skipped there, as if not walked.
_RARE_TAGS = frozenset(_WALK_TAGS[4:])
_WALK_TAGS_ANY_NS = ("{*}Value", "{*}Slot", "{*}LocalizedString", "{*}Name", *_WALK_TAGS[4:])

# One document Classification as the walk reads it: [classificationScheme, nodeRepresentation, its Slots
# (name → values, the last Slot of a name wins), the first LocalizedString value of its Names or None].
_ClassificationRecord = list[Any]


_NONE = ("",)  # (values or _NONE)[0]: the first value or ""
_from_iso = datetime.fromisoformat


def _xds_time(value: str) -> datetime | None:
    """``parse_xds_time`` with its usual case (14 ASCII digits) first, without its general checks."""
    if len(value) == 14 and value.isdigit() and value.isascii():
        try:
            return _from_iso(f"{value[:8]}T{value[8:]}+00:00")
        except ValueError:
            return None
    return parse_xds_time(value)


def _document_entry(
    eo: etree._Element,
    slots: dict[str, list[str]],
    classifications: list[_ClassificationRecord],
    ext: dict[str, str],
    title: str | None,
    comments: str | None,
    version: str | None,
) -> DocumentEntry:
    """The ``DocumentEntry`` of one ExtrinsicObject from what the walk collected: Classifications
    become shared Codes (grouped by scheme, document order) and Authors."""
    authors: list[Author] = []
    codes: dict[str, list[Code]] = {}
    for scheme, node, cls_slots, cls_name in classifications:
        get = cls_slots.get
        if scheme == DE_AUTHOR:
            key = (
                (get("authorPerson") or _NONE)[0],
                (get("authorInstitution") or _NONE)[0],
                (get("authorSpecialty") or _NONE)[0],
                (get("authorRole") or _NONE)[0],
            )
            author = _AUTHOR_CACHE.get(key)
            if author is None:
                specialty = None
                if key[2]:
                    parts = [*key[2].split("^"), "", ""]
                    specialty = Code(parts[0], parts[2], parts[1])
                author = _cached(_AUTHOR_CACHE, key, Author.from_xcn(key[0], key[1], specialty, key[3]))
            authors.append(author)
            continue
        ckey = (node, (get("codingScheme") or _NONE)[0], cls_name or "")
        code = _CODE_CACHE.get(ckey)
        if code is None:
            code = _cached(_CODE_CACHE, ckey, Code(*ckey))
        found = codes.get(scheme)
        if found is None:
            codes[scheme] = [code]
        else:
            found.append(code)
    patient_cx = ext.get(DE_PATIENT_ID, "")
    patient = _PATIENT_CACHE.get(patient_cx)
    if patient is None:
        try:
            patient = _cached(_PATIENT_CACHE, patient_cx, PatientId.parse_cx(patient_cx))
        except ValueError as exc:
            raise ProtocolError(
                "Le DMP a renvoyé un document sans identifiant patient valide.", detail=patient_cx
            ) from exc
    unique_id = ext.get(DE_UNIQUE_ID, "")
    if not unique_id:
        raise ProtocolError("Le DMP a renvoyé un document sans identifiant unique.", detail=eo.get(b"id", ""))
    get = slots.get
    size = (get("size") or _NONE)[0]
    creation = _xds_time((get("creationTime") or _NONE)[0])
    start = (get("serviceStartTime") or _NONE)[0]
    stop = (get("serviceStopTime") or _NONE)[0]
    extra = slots.keys() - _KNOWN_SLOTS  # a set made in C; usually empty
    one = codes.get
    # The frozen dataclass's generated __init__ sets its 28 fields one object.__setattr__ at a time
    # (≈ 8 µs, a tenth of this parser's time on a 2,000-entry answer); the same instance is made by
    # filling its __dict__ (DocumentEntry has no __post_init__, no __slots__, no field computed in
    # __init__: tests/dmp/test_query_parse.py checks it and compares every field with the oracle).
    entry: DocumentEntry = _new_object(DocumentEntry)
    entry.__dict__.update(
        unique_id=unique_id,
        patient_id=patient,
        type_code=(one(DE_TYPE) or (_NO_CODE,))[0],
        class_code=(one(DE_CLASS) or (_NO_CODE,))[0],
        format_code=(one(DE_FORMAT) or (_NO_CODE,))[0],
        healthcare_facility_type=(one(DE_FACILITY) or (_NO_CODE,))[0],
        practice_setting=(one(DE_PRACTICE) or (_NO_CODE,))[0],
        creation_time=creation if creation is not None else _EPOCH,
        title=title or "",
        comments=comments or "",
        mime_type=eo.get(b"mimeType", ""),
        language=(get("languageCode") or _NONE)[0],
        authors=tuple(authors),
        confidentiality=tuple(one(DE_CONFIDENTIALITY, ())),
        event_codes=tuple(one(DE_EVENT, ())),
        service_start=_xds_time(start) if start else None,
        service_stop=_xds_time(stop) if stop else None,
        legal_authenticator=(get("legalAuthenticator") or _NONE)[0],
        source_patient_id=(get("sourcePatientId") or _NONE)[0],
        source_patient_info=tuple(get("sourcePatientInfo", ())),
        entry_uuid=eo.get(b"id", ""),
        logical_id=eo.get(b"lid", ""),
        status=eo.get(b"status", ""),
        version=version or "",
        repository_unique_id=(get("repositoryUniqueId") or _NONE)[0],
        hash=(get("hash") or _NONE)[0],
        size=int(size) if size.isdecimal() else None,  # not isdigit(): int("²") fails
        extra_slots={k: tuple(v) for k, v in slots.items() if k in extra} if extra else {},
    )
    return entry


def parse_document_entries(rol: etree._Element) -> list[DocumentEntry]:
    """The ``rim:ExtrinsicObject`` children of a ``rim:RegistryObjectList`` → ``DocumentEntry`` list."""
    out: list[DocumentEntry] = []
    _walk(rol, rol, out)
    return out


def _walk(container: etree._Element, rol: etree._Element, out: list[DocumentEntry], limit: int = -1) -> None:
    """The entries (ExtrinsicObject children of ``rol``) found in ``container`` (``rol`` itself, or one of
    its ExtrinsicObjects when a TD3.1 answer is read while parsed: QueryEntries) appended to ``out``.
    With ``limit`` ≥ 0, the walk stops at the entry after the first ``limit`` ones (QueryEntries walks a run
    of whole entries at the start of a list still being parsed this way: one set of iterators for the run).

    A TD3.1 answer holds up to thousands of entries of ≈ 95 elements each, so this is ONE C-level
    filtered walk over the whole list (``rol.iter(tags)``, document order; ValueLists and
    other unneeded elements are skipped in C) driving a state machine in plain locals, with the least
    Python per element (libxml2's XPath or XSLT cost more per value than this walk:
    benchmarks/bench_agent.py, docs/agent.md). Ownership is checked, not inferred from the order: every
    Slot, Name, Description, Classification, ExternalIdentifier and VersionInfo is attributed with
    ``getparent()`` to the ExtrinsicObject (a direct child of the list) or to its Classification being
    read, every LocalizedString to its Name, so elements nested elsewhere (a Classification inside a
    Classification, the Name or Slots of an ExternalIdentifier, other registry objects of the list) or
    out of the schema's order are ignored or attributed as a tree walk would (tests/dmp/test_query_parse.py
    compares with a plain ``findall`` parse and with the previous parser). The Values read are those met
    after an owned Slot and before the next walked element, i.e. its ``ValueList/Value`` in a
    schema-valid answer (checking each Value's parent doubles the walk's cost). First wins for Name,
    Description and VersionInfo; the last Slot of a name wins.

    The kind of the frequent elements (Values, Slots, LocalizedStrings, Names: ≈ 2/3 of the walk) is
    known without ``.tag``, which builds a new ``{namespace}name`` string per element (≈ 1,400 machine
    instructions under callgrind, a fifth of the walk's): one single-tag iterator per kind runs one element
    ahead of the walk, and lxml keeps one proxy per node while it lives, so the walk meets that very
    object (``is``); the single-tag iterators cost ≈ 7,500 instructions each per entry, so the rarer kinds
    keep ``.tag``.
    """
    append = out.append
    eo: etree._Element | None = None
    slots: dict[str, list[str]] = {}
    classifications: list[_ClassificationRecord] = []
    ext: dict[str, str] = {}
    title: str | None = None
    comments: str | None = None
    version: str | None = None
    cls_el: etree._Element | None = None  # the document Classification being read
    cls_rec: _ClassificationRecord = []
    cls_slots: dict[str, list[str]] = {}
    values: list[str] | None = None  # the values of the owned Slot being read
    name_el: etree._Element | None = None  # the owned Name/Description being read
    name_kind = 0  # 1 title, 2 comments, 3 Classification name
    nxt = next
    # The next element of each frequent kind (None: no more). The walk and these iterators go through
    # the same unchanging subtree in document order and the walk's tags include theirs, so the walk meets
    # each of them in turn, as the same proxy: the ``else`` branch below sees these four kinds only in
    # another namespace.
    value_it = container.iter(_VALUE)
    slot_it = container.iter(_SLOT)
    localized_it = container.iter(_LOCALIZED)
    name_it = container.iter(_NAME)
    next_value = nxt(value_it, None)
    next_slot = nxt(slot_it, None)
    next_localized = nxt(localized_it, None)
    next_name = nxt(name_it, None)

    # Tests in order of frequency (per entry ≈ 21 Values, 20 Slots, 13 LocalizedStrings, 12 Names,
    # 9 Classifications, 2 ExternalIdentifiers, 1 ExtrinsicObject, 1 VersionInfo, 0–1 Description).
    for el in container.iter(_WALK_TAGS_ANY_NS):
        if el is next_value:
            next_value = nxt(value_it, None)
            if values is not None:
                values.append(el.text or "")
            continue
        if el is next_slot:
            next_slot = nxt(slot_it, None)
            parent = el.getparent()
            if parent is cls_el:
                values = cls_slots[el.get(b"name", "")] = []
            elif parent is eo:
                values = slots[el.get(b"name", "")] = []
            else:
                values = None
        elif el is next_localized:
            next_localized = nxt(localized_it, None)
            values = None
            if name_el is not None and el.getparent() is name_el:
                if name_kind == 3:
                    if cls_rec[3] is None:
                        cls_rec[3] = el.get(b"value", "")
                elif name_kind == 1:
                    if title is None:
                        title = el.get(b"value", "")
                elif comments is None:
                    comments = el.get(b"value", "")
        elif el is next_name:
            next_name = nxt(name_it, None)
            values = None
            parent = el.getparent()
            if parent is cls_el:
                name_el, name_kind = el, 3
            elif parent is eo:
                name_el, name_kind = el, 1
            else:
                name_el = None
        else:
            tag = el.tag
            if tag not in _RARE_TAGS:  # a Value, Slot, LocalizedString or Name of another namespace
                continue
            values = None
            if tag == _CLASSIFICATION:
                if el.getparent() is eo:  # one nested in another object is not the document's
                    cls_el, cls_slots = el, {}
                    cls_rec = [
                        el.get(b"classificationScheme", ""),
                        el.get(b"nodeRepresentation", ""),
                        cls_slots,
                        None,
                    ]
                    classifications.append(cls_rec)
            elif tag == _EXTERNAL_ID:
                if el.getparent() is eo:
                    ext[el.get(b"identificationScheme", "")] = el.get(b"value", "")
            elif tag == _EXTRINSIC_OBJECT:
                if el.getparent() is rol:
                    if eo is not None:
                        append(_document_entry(eo, slots, classifications, ext, title, comments, version))
                    if limit == 0:  # the entry after the run: not read (it may be still being parsed)
                        return
                    limit -= 1
                    eo, slots, classifications, ext = el, {}, [], {}
                    title = comments = version = None
                    cls_el = name_el = None
            elif tag == _DESCRIPTION:
                if el.getparent() is eo:
                    name_el, name_kind = el, 2
                else:
                    name_el = None
            elif tag == _VERSION_INFO:
                if version is None and el.getparent() is eo:
                    version = el.get(b"versionName", "")
    if eo is not None:
        append(_document_entry(eo, slots, classifications, ext, title, comments, version))


# Entries walked together by QueryEntries (one set of iterators per run instead of per entry: their set-up
# is ≈ 10 % of the model's cost); the run's subtrees stay in the tree until walked (≈ 45 KB each).
_RUN = 8


class QueryEntries:
    """A TD3.1 answer's entries read while the answer is parsed (``envelope.parse(take=entries.taker)``,
    then ``parse_query_response(body, entries)``): the ExtrinsicObjects of the answer's list are turned into
    ``DocumentEntry`` objects, ``_RUN`` at a time, as soon as they are parsed, then dropped from the tree
    (the last ones by ``finish``, which ``parse_query_response`` calls). Same entries, same order, same
    errors as ``parse_document_entries`` on the whole tree; the ``ProtocolError`` of a bad entry is kept and
    raised by ``parse_query_response`` after the envelope and status checks, as the whole-tree parse would.
    Not shared between answers nor threads (one per call)."""

    def __init__(self) -> None:
        self.entries: list[DocumentEntry] = []
        self.error: ProtocolError | None = None
        self._rol: etree._Element | None = None
        self._run: list[etree._Element] = []
        self.taker: tuple[str, Callable[[etree._Element], bool]] = (_EXTRINSIC_OBJECT, self.take)

    def take(self, eo: etree._Element) -> bool:
        """Read ``eo`` if it is an entry of the answer's list (as ``parse_query_response`` finds it:
        the first RegistryObjectList of the Body's first element); False leaves it in the tree (an entry
        stays there until its run is read, then is removed by ``_read_run``)."""
        rol = eo.getparent()
        if rol is None:
            return False
        if rol is not self._rol:
            if not _is_answer_list(rol):
                return False
            if self._run:  # not reachable: one answer list per answer
                self._read_run()
            self._rol = rol
        run = self._run
        run.append(eo)
        if len(run) >= _RUN:
            self._read_run()
        return False

    def finish(self) -> None:
        """Read the entries still waiting (the answer is parsed)."""
        if self._run:
            self._read_run()

    def _read_run(self) -> None:
        """The waiting entries read, then cleared and removed. They are walked with one ``_walk`` over the
        list when nothing else is in it from its start to the entry after the run (or its end): the walk then
        meets exactly their elements; otherwise each one alone, as its own container."""
        run, rol = self._run, self._rol
        self._run = []
        assert rol is not None
        if self.error is None:
            try:
                after = run[-1].getnext()
                if (
                    run[0].getprevious() is None
                    and all(a.getnext() is b for a, b in pairwise(run))
                    and (after is None or after.tag == _EXTRINSIC_OBJECT)
                ):
                    _walk(rol, rol, self.entries, len(run))
                else:
                    for eo in run:
                        _walk(eo, rol, self.entries)
            except ProtocolError as exc:
                self.error = exc
        for eo in run:
            eo.clear()  # its subtree freed now, while the memory is hot for the next entries
            rol.remove(eo)


_REGISTRY_OBJECT_LIST = q(RIM, "RegistryObjectList")
_SOAP_BODY = q(SOAP, "Body")


def _is_answer_list(rol: etree._Element) -> bool:
    """``rol`` is ``soap:Envelope/soap:Body/*[1]/rim:RegistryObjectList[1]`` (first of its kind each)."""
    if rol.tag != _REGISTRY_OBJECT_LIST or (
        next(rol.itersiblings(_REGISTRY_OBJECT_LIST, preceding=True), None) is not None
    ):
        return False
    response = rol.getparent()
    if response is None or any(isinstance(e.tag, str) for e in response.itersiblings(preceding=True)):
        return False
    body = response.getparent()
    if body is None or body.tag != _SOAP_BODY or next(body.itersiblings(_SOAP_BODY, preceding=True), None):
        return False
    envelope = body.getparent()
    return envelope is not None and envelope.tag == q(SOAP, "Envelope") and envelope.getparent() is None


def parse_document_entry(eo: etree._Element) -> DocumentEntry:
    """One ``rim:ExtrinsicObject`` → ``DocumentEntry`` (the same walk, on a list of one)."""
    holder = etree.Element(q(RIM, "RegistryObjectList"))
    holder.append(copy.deepcopy(eo))
    [entry] = parse_document_entries(holder)
    return entry


def registry_errors(response: etree._Element) -> tuple[RegistryErrorItem, ...]:
    out = []
    for e in response.iter(q(RS, "RegistryError")):
        out.append(
            RegistryErrorItem(
                code=e.get("errorCode", ""),
                code_context=e.get("codeContext", "") or (e.text or "").strip(),
                severity=e.get("severity", "Error").rsplit(":", 1)[-1],
                location=e.get("location", ""),
            )
        )
    return tuple(out)


def check_registry_status(response: etree._Element) -> tuple[RegistryErrorItem, ...]:
    """Raise ``RegistryRefusal`` unless ``status`` is Success; return warnings."""
    status = response.get("status", "")
    errors = registry_errors(response)
    if status == SUCCESS:
        return errors
    if status not in (FAILURE, PARTIAL):
        raise ProtocolError("La réponse du DMP ne porte pas de statut reconnu.", detail=f"status={status!r}")
    real = [e for e in errors if e.severity != "Warning"] or list(errors)
    if not real:
        raise RegistryRefusal("Le DMP a refusé l'opération sans préciser d'erreur.", code="Failure")
    first = real[0]
    message = french_message(first.code, first.code_context)
    if len(real) > 1:
        message += f" (+{len(real) - 1} autre(s) erreur(s))"
    raise RegistryRefusal(message, code=first.code, code_context=first.code_context, errors=errors)


def parse_query_response(root: etree._Element, taken: QueryEntries | None = None) -> list[DocumentEntry]:
    """A TD3.1 ``query:AdhocQueryResponse`` → its entries; ``taken``: those already read while parsing."""
    if root.tag != q(QUERY, "AdhocQueryResponse"):
        raise ProtocolError("Le DMP n'a pas renvoyé une réponse de recherche.", detail=str(root.tag))
    check_registry_status(root)
    if taken is not None:
        taken.finish()
        if taken.error is not None:
            raise taken.error
    rol = root.find(q(RIM, "RegistryObjectList"))
    rest = [] if rol is None else parse_document_entries(rol)
    if taken is None:
        return rest
    return taken.entries + rest if rest else taken.entries
