"""Damaged documents never crash the engine: every public reader either answers or raises a ``CdaError``."""

from __future__ import annotations

import random

import pytest
from lxml import etree

import cda
from cda import build
from cda.build import AuthorInput, PatientInput, VaccinationInput
from cda.classify import classify_document
from cda.errors import CdaError
from cda.metadata import derive
from cda.vaccinations import extract
from cda.validate import validate_builtin


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


def _exercise(data: bytes) -> None:
    try:
        doc = cda.parse(data)
        validate_builtin(data)
        extract(doc)
        classify_document(doc)
        derive(doc, data)
    except CdaError as exc:
        assert exc.message_fr


@pytest.mark.parametrize("seed", range(4))
def test_damaged_level1_and_vac_note(
    seed: int, patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput, pdf: bytes
) -> None:
    l1 = build.level1(type_code="78601-2", content=pdf, title="CR", patient=patient, author=author)
    note = build.vaccination_note(patient=patient, author=author, vaccination=vaccination)
    for data in _mutations(l1, seed, 60) + _mutations(note, seed + 100, 60):
        _exercise(data)


def test_truncated_and_binary_inputs(patient: PatientInput, author: AuthorInput, pdf: bytes) -> None:
    data = build.level1(type_code="78601-2", content=pdf, title="CR", patient=patient, author=author)
    for cut in (1, 10, 100, len(data) // 2, len(data) - 5):
        _exercise(data[:cut])
    _exercise(bytes(range(256)))
    _exercise("<ClinicalDocument xmlns='urn:hl7-org:v3'>é</ClinicalDocument>".encode("latin-1"))
