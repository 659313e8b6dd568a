"""TD3.1 answers of the real sandbox read by the agent (entries taken while the answer is parsed:
ebrim.QueryEntries) equal, field by field, the previous whole-tree parser (tests/fixtures/td31_oracle.py)
on the same bytes: the demo patient's seeded documents, deposits by two authors, a replacement (an
entry made Deprecated), and GetDocuments."""

from __future__ import annotations

from dataclasses import fields

import cda
from cda.build import Replacement
from ps_agent.dmp.ebrim import FindFilters
from ps_agent.dmp.model import DocumentEntry, PatientId, Status
from ps_agent.dmp.xmlns import QUERY, RIM, SOAP, q, safe_parse
from sandbox import demo
from tests.fixtures import td31_oracle

from . import docs
from .conftest import patient_ref


def _oracle(raw: bytes) -> list[DocumentEntry]:
    rol = safe_parse(raw).find(
        f"{q(SOAP, 'Body')}/{q(QUERY, 'AdhocQueryResponse')}/{q(RIM, 'RegistryObjectList')}"
    )
    return [] if rol is None else td31_oracle.parse_document_entries(rol)


def _assert_same(got: list[DocumentEntry], oracle: list[DocumentEntry]) -> None:
    assert len(got) == len(oracle)
    for g, o in zip(got, oracle, strict=True):
        for f in fields(DocumentEntry):
            assert getattr(g, f.name) == getattr(o, f.name), (o.unique_id, f.name)


def test_sandbox_answers_parse_as_with_the_previous_parser(agent_for, monkeypatch):
    gp, specialist = agent_for("gp"), agent_for("specialist")
    p = demo.DEMO_ADULT
    patient = patient_ref(p)
    first = docs.letter(p, "gp", title="Compte rendu « oracle » & <test>")
    gp.deposit(patient, first)
    specialist.deposit(patient, docs.letter(p, "specialist", title="Avis spécialisé"))
    again = docs.letter(p, "gp", title="Compte rendu remplacé", replaces=Replacement.of(cda.parse(first)))
    gp.deposit(patient, again)
    answers: list[bytes] = []
    real = gp.client._record

    def record(direction: str, action: str, xml: bytes) -> None:
        if direction == "in" and b"AdhocQueryResponse" in xml:
            answers.append(xml)
        real(direction, action, xml)

    monkeypatch.setattr(gp.client, "_record", record)
    pid = PatientId(p.ins, p.oid)
    found = gp.client.find_documents(pid)
    every = gp.client.find_documents(
        pid, FindFilters(statuses=(Status.APPROVED, Status.DEPRECATED, Status.ARCHIVED))
    )
    some = gp.client.get_documents(pid, unique_ids=[e.unique_id for e in every[:3]])
    assert len(answers) == 3
    for got, raw in zip((found, every, some), answers, strict=True):
        _assert_same(got, _oracle(raw))
    # real variety: several authors, the replaced entry among the deprecated ones
    assert len({e.authors for e in every}) >= 2 and len(some) == 3
    assert any(e.status == Status.DEPRECATED for e in every)
    assert any(e.title == "Compte rendu « oracle » & <test>" for e in every)
