"""The 65 ANS examples (and the 2 project skeletons) parse, classify to the reference class, give metadata."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import cda
from cda.classify import classify_document
from cda.metadata import derive
from tests.fixtures.shared import shared_path

EXAMPLES = sorted(p.name for p in (shared_path() / "cda" / "examples").glob("*.xml"))
ANS_EXAMPLES = [n for n in EXAMPLES if not n.startswith("SKELETON_")]


@pytest.fixture(scope="module")
def reference_classes(shared_dir: Path) -> dict[str, str]:
    with (shared_dir / "reference" / "document-types.csv").open(encoding="utf-8") as fh:
        return {r["type_code"]: r["class_code"] for r in csv.DictReader(fh)}


@pytest.mark.official
def test_the_65_ans_examples_are_all_there(shared_dir: Path) -> None:
    assert len(ANS_EXAMPLES) == 65


@pytest.mark.official
@pytest.mark.parametrize("name", EXAMPLES or ["(../shared absent)"])
def test_example_parses_and_classifies(
    name: str, shared_dir: Path, reference_classes: dict[str, str]
) -> None:
    data = (shared_dir / "cda" / "examples" / name).read_bytes()
    doc = cda.parse(data)
    assert doc.type_code, name
    assert doc.patient is not None and doc.patient.ins is not None
    assert doc.authors and doc.service_events and doc.body_kind
    classification = classify_document(doc)
    assert classification.class_code == reference_classes[doc.type_code]
    meta = derive(doc, data)
    assert meta.class_code.code == classification.class_code
    assert meta.type_code.code == doc.type_code
    assert len(meta.creation_time) == 14 and meta.creation_time.isdigit()
    assert meta.source_patient_id.endswith("&ISO^NH") and meta.size == len(data) and len(meta.hash) == 40
    assert meta.authors[0].person.endswith("^D^^^IDNPS")
    if doc.is_level1:
        assert meta.format_code.code == "urn:ihe:iti:xds-sd:pdf:2008"


# Fictitious NIRs of some ANS examples have a wrong key: the built-in tier rightly reports them (CDA-P02).
WRONG_NIR_KEY = {
    "CSE-CS24_2025.01.xml",
    "CSE-CS8_2025.01.xml",
    "CSE-CS9_2025.01.xml",
    "CSE-MDE_2023.01.xml",
    "OBP-SEM_2024.01.xml",
    "OBP-SNE_2024.01.xml",
    "SDM-MR_2025.01_nouveau-ne.xml",
}


@pytest.mark.official
@pytest.mark.parametrize("name", EXAMPLES or ["(../shared absent)"])
def test_builtin_rules_raise_no_false_alarm_on_ans_examples(name: str, shared_dir: Path) -> None:
    from cda.validate import errors, validate_builtin

    found = errors(validate_builtin((shared_dir / "cda" / "examples" / name).read_bytes()))
    expected = ["CDA-P02"] if name in WRONG_NIR_KEY else []
    assert [f.rule_id for f in found] == expected, [f.message for f in found]
