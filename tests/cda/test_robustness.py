"""Damaged documents never crash the engine, and each is refused for a stated reason.

Every mutant either reads as a document, or is refused with a specific error: unreadable XML is an
``XmlSyntaxError``/``XmlSecurityError``; a readable one that breaks the rules is refused by the deposit
gate (``DocumentNotDepositable`` naming the element and listing the findings); a leaf error class, never
the bare root. The gate and the readers agree: a document the gate lets through is one the metadata
step can describe (otherwise the DMP would receive what we cannot describe). Targeted damage to what
the DMP requires (the patient's INS, the type code, the author) is refused by the gate, naming it."""

from __future__ import annotations

import random

import pytest
from lxml import etree

import cda
from cda import build
from cda.build import AuthorInput, PatientInput, VaccinationInput
from cda.classify import classify_document
from cda.errors import (
    CdaError,
    DocumentNotDepositable,
    UnreadableInput,
    XmlSecurityError,
    XmlSyntaxError,
)
from cda.metadata import derive
from cda.vaccinations import extract
from cda.validate import check_deposit_ready, validate_builtin
from cda.xml import safe_parse


def _mutations(data: bytes, seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        root = etree.fromstring(data)
        elements = [e for e in root.iter() if isinstance(e.tag, str) and e is not root]
        for _ in range(rng.randint(1, 4)):
            victim = rng.choice(elements)
            action = rng.random()
            if action < 0.4 and victim.getparent() is not None:
                victim.getparent().remove(victim)
            elif action < 0.7 and victim.attrib:
                del victim.attrib[rng.choice(list(victim.attrib))]
            elif action < 0.85 and victim.attrib:
                victim.set(
                    rng.choice(list(victim.attrib)), rng.choice(["", "x", "99999999999999", "2A", "-1"])
                )
            else:
                victim.text = rng.choice(["", " ", "é" * 3, "0" * 40])
            elements = [e for e in root.iter() if isinstance(e.tag, str) and e is not root]
        out.append(etree.tostring(root))
    return out


def _exercise(data: bytes) -> str:
    """Run every public reader on ``data``; return "unreadable", "refused" or "accepted"."""
    try:
        safe_parse(data)
    except UnreadableInput as exc:
        assert type(exc) in (XmlSyntaxError, XmlSecurityError), type(exc)
        assert exc.message_fr
        return "unreadable"
    try:
        findings = validate_builtin(data)
    except XmlSyntaxError as exc:  # well-formed, but not a CDA ClinicalDocument
        assert exc.field == "ClinicalDocument"
        return "unreadable"
    assert all(f.message and f.rule_id and f.severity in ("error", "warning") for f in findings)
    gate_ok = True
    try:
        check_deposit_ready(data)
    except DocumentNotDepositable as exc:
        gate_ok = False
        assert exc.findings and all(f.severity == "error" for f in exc.findings)
        assert exc.field == exc.findings[0].xpath
        assert exc.findings[0].message in exc.message_fr
        assert [f.rule_id for f in exc.findings] == [f.rule_id for f in findings if f.severity == "error"]
    try:
        doc = cda.parse(data)
        extract(doc)
        classify_document(doc)
        derive(doc, data)
    except CdaError as exc:
        assert type(exc) is not CdaError, "a refusal names its kind (leaf class)"
        assert exc.message_fr
        assert not gate_ok, f"the deposit gate let through what the readers refuse: {exc.message_fr}"
        return "refused"
    return "accepted" if gate_ok else "refused"


@pytest.mark.parametrize("seed", range(4))
def test_damaged_level1_and_vac_note(
    seed: int, patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput, pdf: bytes
) -> None:
    l1 = build.level1(type_code="78601-2", content=pdf, title="CR", patient=patient, author=author)
    note = build.vaccination_note(patient=patient, author=author, vaccination=vaccination)
    assert _exercise(l1) == _exercise(note) == "accepted"
    outcomes = [_exercise(data) for data in _mutations(l1, seed, 60) + _mutations(note, seed + 100, 60)]
    assert outcomes.count("refused") >= 40, outcomes  # the damage is noticed, not only survived


@pytest.mark.parametrize(
    ("xpath", "damage", "rule_fragment"),
    [
        ("h:recordTarget/h:patientRole/h:id", "drop", "INS"),
        ("h:recordTarget/h:patientRole/h:id", "extension=279037505612308", "clé"),
        ("h:code", "drop", "code"),
        ("h:author", "drop", "auteur"),
        ("h:setId", "drop", "setId"),
    ],
)
def test_targeted_damage_is_refused_by_the_gate_naming_it(
    xpath: str, damage: str, rule_fragment: str, patient: PatientInput, author: AuthorInput, pdf: bytes
) -> None:
    data = build.level1(type_code="78601-2", content=pdf, title="CR", patient=patient, author=author)
    root = etree.fromstring(data)
    (victim,) = root.xpath(xpath, namespaces={"h": "urn:hl7-org:v3"})
    if damage == "drop":
        victim.getparent().remove(victim)
    else:
        name, _, value = damage.partition("=")
        victim.set(name, value)
    damaged = etree.tostring(root)
    assert _exercise(damaged) == "refused"
    with pytest.raises(DocumentNotDepositable) as exc:
        check_deposit_ready(damaged)
    assert rule_fragment.casefold() in exc.value.message_fr.casefold(), exc.value.message_fr


def test_truncated_and_binary_inputs(patient: PatientInput, author: AuthorInput, pdf: bytes) -> None:
    data = build.level1(type_code="78601-2", content=pdf, title="CR", patient=patient, author=author)
    for cut in (1, 10, 100, len(data) // 2, len(data) - 5):
        assert _exercise(data[:cut]) == "unreadable"
    assert _exercise(bytes(range(256))) == "unreadable"
    assert _exercise("<ClinicalDocument xmlns='urn:hl7-org:v3'>é</ClinicalDocument>".encode("latin-1")) == (
        "unreadable"
    )
    assert _exercise(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>") == "unreadable"
    assert _exercise(b"<html/>") == "unreadable"  # well-formed, not a CDA
