"""Built-in rules: ids, severities, French messages naming the element; no crash on foreign documents."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from cda import build
from cda.build import AuthorInput, PatientInput
from cda.errors import XmlSecurityError, XmlSyntaxError
from cda.validate import RULES, check_rules, errors, validate_builtin

H = "{urn:hl7-org:v3}"


def test_rules_are_well_formed() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert re.fullmatch(r"(CDA|VAC)-[A-Z]?\d\d", rule.id)
        assert rule.severity in ("error", "warning")
        assert rule.message and rule.message[0].isupper()


@pytest.fixture
def doc(patient: PatientInput, author: AuthorInput, pdf: bytes) -> etree._Element:
    return etree.fromstring(
        build.level1(type_code="78601-2", content=pdf, title="CR", patient=patient, author=author)
    )


def test_message_names_the_element(doc: etree._Element) -> None:
    given = doc.find(f".//{H}patient/{H}name/{H}given[@qualifier='BR']")
    given.getparent().remove(given)  # type: ignore[union-attr]
    [finding] = errors(check_rules(doc))
    assert finding.message == (
        "Le prénom de naissance du patient est absent "
        "(recordTarget/patientRole/patient/name/given[@qualifier='BR'])"
    )
    assert "ERREUR" in str(finding)


def test_wrong_ins_key_and_future_birth(doc: etree._Element) -> None:
    doc.find(f"{H}recordTarget/{H}patientRole/{H}id").set("extension", "279035121518988")  # type: ignore[union-attr]
    doc.find(f".//{H}birthTime").set("value", "29990101")  # type: ignore[union-attr]
    ids = sorted(f.rule_id for f in errors(check_rules(doc)))
    assert ids == ["CDA-P02", "CDA-P09"]


def test_malformed_rpps_and_pdf_body(doc: etree._Element) -> None:
    doc.find(f"{H}author/{H}assignedAuthor/{H}id").set("extension", "81234")  # type: ignore[union-attr]
    doc.find(f"{H}component/{H}nonXMLBody/{H}text").text = "R0lGODlhAQABAIAAAP"  # type: ignore[union-attr]
    ids = sorted(f.rule_id for f in errors(check_rules(doc)))
    assert ids == ["CDA-A03", "CDA-B02"]


def test_warnings_do_not_block(doc: etree._Element) -> None:
    doc.find(f"{H}code").set("code", "28617-9")  # in J07, not accepted by the DMP  # type: ignore[union-attr]
    findings = check_rules(doc)
    assert [f.rule_id for f in findings] == ["CDA-H10"] and errors(findings) == []


def test_minimal_foreign_document_gives_findings_not_a_crash() -> None:
    findings = validate_builtin(b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>")
    assert len(errors(findings)) > 20
    assert all(f.message.endswith(f"({f.xpath})") for f in findings)


def test_unreadable_inputs_raise_typed_errors() -> None:
    with pytest.raises(XmlSyntaxError):
        validate_builtin(b"not xml")
    with pytest.raises(XmlSecurityError):
        validate_builtin(b"<!DOCTYPE x><ClinicalDocument xmlns='urn:hl7-org:v3'/>")
