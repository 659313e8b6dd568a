"""ebRIM, MTOM, XAdES and envelope handling, checked against the official schemas in ../shared."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from ps_agent.dmp import ebrim, envelope, mtom, xades
from ps_agent.dmp.errors import ProtocolError, RegistryRefusal, SoapFault
from ps_agent.dmp.model import (
    Code,
    DocumentEntry,
    PatientId,
    Status,
    SubmissionSet,
    Visibility,
)
from ps_agent.dmp.xmlns import QUERY, RIM, RS, SOAP, WSA, XDSB, XOP, q
from tests.fixtures.dmp_samples import CDA, entry


@pytest.fixture(scope="module")
def dmp_schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(file=str(shared_dir / "schemas/xds/offline-dmp.xsd"))


@pytest.fixture(scope="module")
def ipf_schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(file=str(shared_dir / "schemas/xds/offline-ipf-xdsb.xsd"))


def submission(patient: PatientId) -> SubmissionSet:
    return SubmissionSet(
        "2.25.1234",
        "1.2.250.1.999.1.1",
        patient,
        datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        entry(patient).authors,
        Code("SA07", "1.2.250.1.71.4.2.4", "Cabinet"),
        title="Lot",
    )


def xop_infoset(root: etree._Element, parts: dict[str, bytes]) -> etree._Element:
    """Replace each xop:Include by the base64 of its part (how MTOM messages are validated)."""
    root = copy.deepcopy(root)
    for inc in list(root.iter(q(XOP, "Include"))):
        parent = inc.getparent()
        parent.remove(inc)
        parent.text = base64.b64encode(parts[inc.get("href")]).decode()
    return root


def test_provide_and_register_is_schema_valid_with_replacement(patient, dmp_schema, ipf_schema):
    e = entry(patient)
    items = [ebrim.DepositItem(e, CDA, replaces_entry_uuid="urn:uuid:0e1c3c4a-0000-4000-8000-000000000001")]
    sig = ebrim.DepositItem(entry(patient, "2.25.99", language="art"), b"<sig/>")
    body = ebrim.provide_and_register(submission(patient), items, sig, content_ids=["d1@x", "s1@x"])
    infoset = xop_infoset(body, {"cid:d1@x": CDA, "cid:s1@x": b"<sig/>"})
    assert dmp_schema.validate(infoset), dmp_schema.error_log
    assert ipf_schema.validate(infoset), ipf_schema.error_log
    kinds = [a.get("associationType").rsplit(":", 1)[-1] for a in body.iter(q(RIM, "Association"))]
    assert kinds == ["HasMember", "HasMember", "signs", "RPLC"]
    rplc = next(a for a in body.iter(q(RIM, "Association")) if a.get("associationType").endswith("RPLC"))
    assert rplc.get("associationType") == "urn:ihe:iti:2007:AssociationType:RPLC"
    assert rplc.get("sourceObject") == "Document01"
    codes = [
        c.get("nodeRepresentation")
        for c in body.iter(q(RIM, "Classification"))
        if c.get("classificationScheme") == ebrim.DE_CONFIDENTIALITY
        and c.get("classifiedObject") == "Document01"
    ]
    assert codes == ["N", "MASQUE_PS"]


def test_metadata_and_availability_updates_are_schema_valid(patient, dmp_schema):
    current = entry(
        patient, entry_uuid="urn:uuid:1", logical_id="urn:uuid:1", status=Status.APPROVED, version="1"
    )
    upd = ebrim.metadata_update(submission(patient), current, current.with_visibility(Visibility()))
    assert dmp_schema.validate(upd), dmp_schema.error_log
    eo = upd.find(f".//{q(RIM, 'ExtrinsicObject')}")
    assert eo.get("lid") == "urn:uuid:1"
    hm = upd.find(f".//{q(RIM, 'Association')}")
    slots = {s.get("name"): s.findtext(f".//{q(RIM, 'Value')}") for s in hm.iter(q(RIM, "Slot"))}
    assert slots == {"SubmissionSetStatus": "Original", "PreviousVersion": "1"}
    av = ebrim.availability_update(submission(patient), "urn:uuid:1", Status.APPROVED, Status.ARCHIVED)
    assert dmp_schema.validate(av), dmp_schema.error_log
    values = [v.text for v in av.iter(q(RIM, "Value"))]
    assert Status.APPROVED.value in values and Status.ARCHIVED.value in values


def test_queries_are_schema_valid(patient, dmp_schema):
    f = ebrim.FindFilters(
        statuses=(Status.APPROVED, Status.ARCHIVED),
        class_codes=(Code("10", "1.2.250.1.213.1.1.4.1"),),
        creation_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    fd = ebrim.find_documents(patient, f)
    assert dmp_schema.validate(fd), dmp_schema.error_log
    slots = {s.get("name"): [v.text for v in s.iter(q(RIM, "Value"))] for s in fd.iter(q(RIM, "Slot"))}
    assert slots["$XDSDocumentEntryPatientId"] == [f"'{patient.cx}'"]
    assert slots["$XDSDocumentEntryClassCode"] == ["('10^^1.2.250.1.213.1.1.4.1')"]
    assert slots["$XDSDocumentEntryCreationTimeFrom"] == ["20260101000000"]
    assert dmp_schema.validate(ebrim.get_documents(unique_ids=["1.2.3", "4.5"]))
    assert dmp_schema.validate(ebrim.retrieve_request([("1.2.250.1.213.4.1.1.1.2", "1.2.3")]))


def _query_response(entries: list[DocumentEntry]) -> etree._Element:
    root = etree.Element(q(QUERY, "AdhocQueryResponse"), status=ebrim.SUCCESS)
    rol = etree.SubElement(root, q(RIM, "RegistryObjectList"))
    ids = ebrim._Ids()
    for n, e in enumerate(entries):
        eo = ebrim.document_entry_element(
            rol, ids, e, f"urn:uuid:{n}", lid=f"urn:uuid:{n}", status=Status.APPROVED
        )
        anchor = eo.find(q(RIM, "Description"))
        anchor = anchor if anchor is not None else eo.find(q(RIM, "Name"))
        anchor.addnext(etree.Element(q(RIM, "VersionInfo"), versionName="1"))
    return root


def test_query_response_round_trips_into_the_model(patient, dmp_schema):
    e = entry(patient, repository_unique_id="1.2.250.1.213.4.1.1.1.2")
    resp = _query_response([e])
    assert dmp_schema.validate(resp), dmp_schema.error_log
    [parsed] = ebrim.parse_query_response(etree.fromstring(etree.tostring(resp)))
    assert parsed.entry_uuid == "urn:uuid:0" and parsed.status == Status.APPROVED and parsed.version == "1"
    for name in (
        "unique_id",
        "patient_id",
        "type_code",
        "class_code",
        "format_code",
        "title",
        "authors",
        "hash",
    ):
        assert getattr(parsed, name) == getattr(e, name), name
    assert parsed.visibility == Visibility(masked_to_professionals=True)
    assert parsed.creation_time == e.creation_time
    assert parsed.repository_unique_id == "1.2.250.1.213.4.1.1.1.2"


def test_query_response_parsing_attributes_each_element_to_its_owner(patient):
    """Elements out of the schema's order, comments, and Slots/Names nested in other objects (an
    ExternalIdentifier, a Slot of a Classification) never leak into the document's own fields."""
    e = entry(patient, repository_unique_id="1.2.250.1.213.4.1.1.1.2", comments="Commentaire")
    resp = etree.fromstring(etree.tostring(_query_response([e])))
    [reference] = ebrim.parse_query_response(copy.deepcopy(resp))
    eo = resp.find(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ExtrinsicObject')}")
    slots = eo.findall(q(RIM, "Slot"))
    eo.append(slots[0])  # a document Slot after the Classifications and ExternalIdentifiers
    eo.insert(0, etree.Comment(" commentaire du registre "))
    ext = eo.find(q(RIM, "ExternalIdentifier"))
    rogue_name = etree.SubElement(ext, q(RIM, "Name"))
    etree.SubElement(rogue_name, q(RIM, "LocalizedString"), value="XDSDocumentEntry.uniqueId")
    rogue_slot = etree.SubElement(ext, q(RIM, "Slot"), name="hash")
    etree.SubElement(etree.SubElement(rogue_slot, q(RIM, "ValueList")), q(RIM, "Value")).text = "0" * 40
    cl = eo.find(q(RIM, "Classification"))
    nested = etree.Element(q(RIM, "Classification"), classificationScheme=ebrim.DE_TYPE)
    nested.set("nodeRepresentation", "99999-9")
    nested_name = etree.SubElement(nested, q(RIM, "Name"))
    etree.SubElement(nested_name, q(RIM, "LocalizedString"), value="Classification imbriquée")
    cl.insert(0, nested)  # before the outer Classification's own Slots and Name
    [parsed] = ebrim.parse_query_response(resp)
    assert parsed == reference
    assert parsed.title == e.title and parsed.comments == "Commentaire" and parsed.hash == e.hash
    assert parsed.type_code == e.type_code


def test_registry_failure_becomes_typed_refusal_with_unknown_code_verbatim():
    resp = etree.fromstring(
        f"""<rs:RegistryResponse xmlns:rs="{RS}" status="{ebrim.FAILURE}"><rs:RegistryErrorList>
        <rs:RegistryError errorCode="DMP_WEIRD_42" codeContext="Motif inconnu du DMP"
          severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error" location="x"/>
        <rs:RegistryError errorCode="XDSRegistryMetadataError" codeContext="classCode"
          severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"/>
        </rs:RegistryErrorList></rs:RegistryResponse>""".encode()
    )
    with pytest.raises(RegistryRefusal) as exc:
        ebrim.check_registry_status(resp)
    err = exc.value
    assert err.code == "DMP_WEIRD_42" and err.code_context == "Motif inconnu du DMP"
    assert "Motif inconnu du DMP" in err.message_fr and "DMP_WEIRD_42" in err.message_fr
    assert len(err.errors) == 2 and err.retryable is False
    ok = etree.fromstring(f'<rs:RegistryResponse xmlns:rs="{RS}" status="{ebrim.SUCCESS}"/>'.encode())
    assert ebrim.check_registry_status(ok) == ()
    weird = etree.fromstring(f'<rs:RegistryResponse xmlns:rs="{RS}" status="Maybe"/>'.encode())
    with pytest.raises(ProtocolError):
        ebrim.check_registry_status(weird)


def test_known_codes_get_french_messages():
    resp = etree.fromstring(
        f"""<rs:RegistryResponse xmlns:rs="{RS}" status="{ebrim.FAILURE}"><rs:RegistryErrorList>
        <rs:RegistryError errorCode="XDSDuplicateUniqueIdInRegistry" codeContext="1.2.3"/>
        </rs:RegistryErrorList></rs:RegistryResponse>""".encode()
    )
    with pytest.raises(RegistryRefusal) as exc:
        ebrim.check_registry_status(resp)
    assert exc.value.message_fr.startswith("Un document portant cet identifiant existe déjà")


# ----------------------------------------------------------------------------- MTOM


def test_mtom_round_trip_and_variants():
    parts = [
        mtom.Part("doc 1@x", "text/xml", CDA),
        mtom.Part("sig@x", "text/xml", b"\r\n--not-a-boundary\r\n"),
    ]
    ctype, body = mtom.build(b"<root/>", parts, action="urn:a")
    root, got = mtom.parse(ctype, body)
    assert root == b"<root/>"
    assert got["doc 1@x"].data == CDA and got["sig@x"].data == b"\r\n--not-a-boundary\r\n"
    assert mtom.resolve_include(mtom.cid_href("doc 1@x"), got) == CDA
    # unquoted parameters, no start (first part is the root), base64 part, LF line ends
    raw = (
        b"--b1\nContent-Type: application/xop+xml\n\n<r/>\n--b1\nContent-ID: <p@x>\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode(b"hello") + b"\n--b1--\n"
    )
    root, got = mtom.parse("multipart/related; boundary=b1; type=application/xop+xml", raw)
    assert root == b"<r/>" and got["p@x"].data == b"hello"


@pytest.mark.parametrize(
    "ctype, body",
    [
        ("multipart/related", b"--x\r\n\r\n"),
        ('multipart/related; boundary="x"', b"--x\r\nContent-ID: <a>\r\n\r\n<r/>\r\n"),  # no closing
        ('multipart/related; boundary="x"', b"garbage"),
        ("text/html", b"<html/>"),
    ],
)
def test_mtom_malformed_is_protocol_error(ctype, body):
    with pytest.raises(ProtocolError):
        mtom.parse(ctype, body)


def test_missing_xop_part_is_protocol_error():
    with pytest.raises(ProtocolError):
        mtom.resolve_include("cid:absent@x", {})


# ----------------------------------------------------------------------------- XAdES


def test_xades_signature_verifies_and_detects_changes(signer):
    other_doc = CDA.replace(b"Lettre", b"Autre")
    sig = xades.sign_submission_set(signer, "2.25.1", [("1.2.3", CDA), ("1.2.4", other_doc)])
    cert = xades.verify(sig, {"1.2.3": CDA, "1.2.4": other_doc})
    assert cert == signer.certificate
    # Manifest layout of S1: placeholder for the submission set, one reference per document
    root = etree.fromstring(sig)
    uris = [r.get("URI") for r in root.iterfind(".//{*}Manifest/{*}Reference")]
    assert uris == ["urn:oid:2.25.1", "urn:oid:1.2.3", "urn:oid:1.2.4"]
    with pytest.raises(ProtocolError):
        xades.verify(sig, {"1.2.3": CDA.replace(b"Lettre", b"Letter")})
    with pytest.raises(ProtocolError):
        xades.verify(sig.replace(b"2.25.1", b"2.25.2"), {})
    # comments are part of the C14N-WithComments digest
    with pytest.raises(ProtocolError):
        xades.verify(sig, {"1.2.3": CDA.replace(b"a comment", b"another comment")})


# ----------------------------------------------------------------------------- envelope


def _response(body: str, relates_to: str = "urn:uuid:req", action: str = "urn:aResponse") -> bytes:
    return f"""<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}"><s:Header><a:Action>{action}</a:Action>
    <a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>""".encode()


RR = f'<rs:RegistryResponse xmlns:rs="{RS}" status="{ebrim.SUCCESS}"/>'


def test_envelope_parse_checks_relates_to_action_and_body():
    ok = envelope.parse(
        _response(RR),
        request_id="urn:uuid:req",
        expected_body=[q(RS, "RegistryResponse")],
        expected_actions=["urn:aResponse"],
    )
    assert ok.body.get("status") == ebrim.SUCCESS
    cases = [
        _response(RR, relates_to="urn:uuid:other"),
        _response(RR, action="urn:other"),
        _response(f'<x:Other xmlns:x="{XDSB}"/>'),
        b"<not-soap/>",
        b"not xml at all",
        b"",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
    ]
    for data in cases:
        with pytest.raises(ProtocolError):
            envelope.parse(
                data,
                request_id="urn:uuid:req",
                expected_body=[q(RS, "RegistryResponse")],
                expected_actions=["urn:aResponse"],
            )


def test_soap_fault_is_a_refusal_with_code_and_reason():
    fault = (
        "<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode>"
        "<s:Value>wsa:MessageAddressingHeaderRequired</s:Value></s:Subcode></s:Code><s:Reason>"
        '<s:Text xml:lang="fr">VIHF invalide : structure inconnue</s:Text></s:Reason></s:Fault>'
    )
    with pytest.raises(SoapFault) as exc:
        envelope.parse(_response(fault), request_id="urn:uuid:req", expected_body=[], expected_actions=[])
    assert exc.value.code == "s:Sender/wsa:MessageAddressingHeaderRequired"
    assert exc.value.code_context == "VIHF invalide : structure inconnue"
    assert "VIHF invalide" in exc.value.message_fr
    assert exc.value.retryable is False
