"""Messages built and answered by the domain layer validate against the official schemas (``../shared``):
ebRS/XDS.b bodies (offline-dmp.xsd) and the DMP-specific services (schemas embedded in the ANS WSDLs)."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
from lxml import etree

from sandbox.dmp import build, xds
from sandbox.dmp.store import APPROVED, ARCHIVED
from tests.sandbox.dmp.conftest import PATIENT, Dmp, caller, errors_of, status_of

WSDL = "http://schemas.xmlsoap.org/wsdl/"
XS = "http://www.w3.org/2001/XMLSchema"


@pytest.fixture(scope="module")
def xds_schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(file=str(shared_dir / "schemas" / "xds" / "offline-dmp.xsd"))


def wsdl_schema(shared_dir: Path, name: str) -> etree.XMLSchema:
    wsdl = etree.parse(str(shared_dir / "schemas" / "xds" / "dmp-ans" / "wsdl" / name))
    return etree.XMLSchema(copy.deepcopy(wsdl.find(f"{{{WSDL}}}types/{{{XS}}}schema")))


def valid(schema: etree.XMLSchema, el: etree._Element) -> None:
    root = etree.fromstring(etree.tostring(el))
    assert schema.validate(root), "\n".join(str(e) for e in schema.error_log)


def xop_infoset(root: etree._Element, parts: dict[str, bytes]) -> etree._Element:
    root = copy.deepcopy(root)
    for inc in list(root.iter(f"{{{xds.XOP}}}Include")):
        parent = inc.getparent()
        parent.remove(inc)
        parent.text = base64.b64encode(parts[inc.get("href")[4:]]).decode()
    return root


def test_xds_requests_and_answers_are_schema_valid(dmp: Dmp, xds_schema: etree.XMLSchema) -> None:
    dep = build.provide_and_register([build.DepositDocument(dmp.document())], signer=dmp.signer())
    valid(xds_schema, xop_infoset(dep.body, dep.attachments))
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    valid(xds_schema, resp.body)
    failure = dmp.call("repository", dep.body, caller("gp"), dep.attachments)  # duplicate -> error list
    assert errors_of(failure)
    valid(xds_schema, failure.body)
    dmp.store.set_authorisation(PATIENT.ins, "899700000013")
    query = build.find_documents(PATIENT.ins, PATIENT.oid)
    valid(xds_schema, query)
    found = dmp.call("registry", query, caller("gp"))
    valid(xds_schema, found.body)
    refused = dmp.call("registry", query, caller("specialist"))
    assert errors_of(refused)
    valid(xds_schema, refused.body)
    entry = next(found.body.iter(f"{{{xds.RIM}}}ExtrinsicObject"))
    update = build.update_confidentiality(PATIENT.ins, PATIENT.oid, entry, ["N", "MASQUE_PS"])
    valid(xds_schema, update)
    answer = dmp.call("registry", update, caller("gp"))
    assert status_of(answer) == xds.SUCCESS
    valid(xds_schema, answer.body)
    archive = build.update_status(PATIENT.ins, PATIENT.oid, entry.get("id"), APPROVED, ARCHIVED)
    valid(xds_schema, archive)
    retrieve = build.retrieve(dep.unique_ids)
    valid(xds_schema, retrieve)
    got = dmp.call("repository", retrieve, caller("gp"))
    valid(xds_schema, xop_infoset(got.body, {cid: data for cid, (data, _m) in got.attachments.items()}))


def test_dmp_specific_services_are_schema_valid(dmp: Dmp, shared_dir: Path) -> None:
    hab = wsdl_schema(shared_dir, "Habilitations.wsdl")
    spec = wsdl_schema(shared_dir, "PatientsSpecific.wsdl")
    for body in (build.set_authorization("AJOUT", "MEDECIN_TRAITANT"), build.list_authorizations("TOUTE")):
        valid(hab, body)
    valid(hab, dmp.call("habilitations", build.set_authorization("AJOUT"), caller("gp")).body)
    valid(hab, dmp.call("habilitations", build.list_authorizations("TOUTE"), caller("gp")).body)
    valid(hab, dmp.call("habilitations", build.list_authorizations("TOUTE"), caller("nurse")).body)
    valid(spec, build.patient_list("20200101000000"))
    valid(spec, dmp.call("patientsSpecific", build.patient_list(), caller("gp", patient=None)).body)


def test_the_schemas_do_reject_bad_messages(xds_schema: etree.XMLSchema, shared_dir: Path) -> None:
    """The checks above can fail: a response without its status, an unknown TD0.3 action."""
    bad = xds.registry_response()
    del bad.attrib["status"]
    assert not xds_schema.validate(etree.fromstring(etree.tostring(bad)))
    assert not wsdl_schema(shared_dir, "Habilitations.wsdl").validate(build.set_authorization("PEUTETRE"))
