"""ebRIM Classifications, authors and ExternalIdentifiers copied from templates (built once per scheme and
code, author or name) serialise byte for byte as the same elements built one by one: ITI-41 with several
documents and the signature, an ITI-57 update (another namespace layout), from several threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lxml import etree

from ps_agent.access.policy import PatientRef
from ps_agent.dmp import ebrim
from ps_agent.dmp.ebrim import DepositItem
from ps_agent.dmp.metadata import entry_from_cda
from ps_agent.dmp.model import Code, SubmissionSet, Visibility
from sandbox import demo
from tests.e2e import docs

_LETTERS: list[bytes] = []  # made once: each call of docs.letter draws new identifiers


def _bodies() -> list[bytes]:
    ref = PatientRef(demo.DEMO_ADULT.ins, demo.DEMO_ADULT.oid)
    if not _LETTERS:
        _LETTERS.append(docs.letter(demo.DEMO_ADULT, "gp", title="Lettre & <compte rendu>", size=2_000))
        _LETTERS.append(docs.letter(demo.DEMO_ADULT, "gp", type_code="11490-0", title="Sortie", size=1_000))
    letter, other = _LETTERS
    e1, _ = entry_from_cda(letter, ref, Visibility(masked_to_professionals=True))
    e2, _ = entry_from_cda(other, ref, Visibility(invisible_to_patient=True))
    ss = SubmissionSet(
        unique_id="1.2.250.1.999.1",
        source_id="1.2.250.1.999.2",
        patient_id=e1.patient_id,
        submission_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        authors=e1.authors,
        content_type=Code("04", "1.2.250.1.213.1.1.4.12", "Hospitalisation"),
        title="Lot",
    )
    sig = DepositItem(replace(e1, unique_id="1.2.250.1.999.3", title="Signature"), b"<sig/>")
    items = [DepositItem(e1, letter), DepositItem(e2, other, "urn:uuid:0f6a2b7e-0000-4000-8000-000000000001")]
    out = [
        etree.tostring(ebrim.provide_and_register(ss, items, sig, content_ids=["a@x", "b@x", "c@x"])),
        etree.tostring(
            ebrim.metadata_update(ss, replace(e1, entry_uuid="urn:uuid:1", logical_id="urn:uuid:1"), e2)
        ),
    ]
    return out


@pytest.fixture
def element_by_element() -> list[bytes]:
    ebrim.USE_TEMPLATES = False
    try:
        return _bodies()
    finally:
        ebrim.USE_TEMPLATES = True


def test_templates_serialise_exactly_as_elements_built_one_by_one(element_by_element: list[bytes]) -> None:
    assert _bodies() == element_by_element  # templates being filled
    assert _bodies() == element_by_element  # templates reused
    assert b"Classification" in element_by_element[0] and b"Classification" in element_by_element[1]


def test_templates_from_several_threads(element_by_element: list[bytes]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: _bodies(), range(16)))
    assert all(r == element_by_element for r in results)
