"""TD3.2 with several documents per request against the real sandbox (ITI-43, MTOM answer)."""

from __future__ import annotations

import pytest

from ps_agent.dmp import client as client_mod
from ps_agent.dmp.model import PatientId
from ps_agent.dmp.xmlns import XDSB, q
from sandbox import demo

from . import docs
from .conftest import patient_ref


def test_retrieve_many_reads_several_documents_per_request_from_the_sandbox(agent_for, monkeypatch):
    agent = agent_for("gp")
    p = demo.DEMO_ADULT
    patient = patient_ref(p)
    letters = [docs.letter(p, "gp", title=f"Lot de lecture {n}") for n in range(7)]
    for data in letters:
        agent.deposit(patient, data)
    pid = PatientId(p.ins, p.oid)
    entries = [e for e in agent.client.find_documents(pid) if e.title.startswith("Lot de lecture")]
    assert len(entries) == 7

    answers: list[tuple[int, int]] = []  # (DocumentResponse, MTOM parts) of each TD3.2 answer
    real_call = agent.client._call

    def counting_call(td, *args, **kwargs):
        resp, parts = real_call(td, *args, **kwargs)
        if td == "TD3.2":
            answers.append((len(resp.body.findall(q(XDSB, "DocumentResponse"))), len(parts)))
        return resp, parts

    monkeypatch.setattr(agent.client, "_call", counting_call)
    monkeypatch.setattr(client_mod, "RETRIEVE_MANY_MAX_DOCUMENTS", 3)
    got = agent.client.retrieve_many(pid, entries)
    assert answers == [(3, 3), (3, 3), (1, 1)]  # several documents per answer, each its MTOM part
    assert [d.unique_id for d in got] == [e.unique_id for e in entries]
    assert {d.content for d in got} == set(letters)  # the bytes deposited, hash and size checked

    # a document the sandbox does not know: named in the typed error, nothing returned
    from dataclasses import replace

    from ps_agent.dmp.errors import DocumentMissingError

    ghost = replace(entries[0], unique_id="1.2.250.1.999.404", hash="", size=None)
    answers.clear()
    with pytest.raises(DocumentMissingError) as exc:
        agent.client.retrieve_many(pid, [entries[1], ghost])
    assert exc.value.unique_ids == ("1.2.250.1.999.404",) and "1.2.250.1.999.404" in exc.value.message_fr
    assert answers == [(1, 1)]  # PartialSuccess: the known one came, the request was one


def test_vaccination_status_reads_its_documents_several_per_request(agent_for, monkeypatch):
    """``PatientHandle.vaccination_status`` reads through ``retrieve_many``: one TD3.2 request per chunk
    (chunks made small here), progress per request answered, and the one audit record names every
    exchange of every chunk."""
    from ps_agent.context import Context

    p = demo.DEMO_ADULT
    patient = patient_ref(p)
    ph = agent_for("pharmacist")
    for n in range(3):
        ph.record_vaccination(patient, docs.vaccination(p, "pharmacist", lot_number=f"LOT-CHUNK-{n}"))
    monkeypatch.setattr(client_mod, "RETRIEVE_MANY_MAX_DOCUMENTS", 2)
    steps: list[tuple[int, int]] = []
    result = ph.session.patient(patient).vaccination_status(
        ctx=Context(progress=lambda s, d, t: steps.append((d, t)))
    )
    assert {"LOT-CHUNK-0", "LOT-CHUNK-1", "LOT-CHUNK-2"} <= {v.lot_number for v in result.value}
    reads = [x for x in result.exchanges if x.transaction == "TD3.2"]
    total = steps[-1][1]
    assert total >= 3 and len(reads) == (total + 1) // 2  # ≤ 2 documents per request
    assert steps[0] == (0, total) and steps[-1] == (total, total) and len(steps) == len(reads) + 1
    [record] = [r.event for r in ph.audit().records(action="dmp.retrieve")]
    assert record.outcome == "success" and record.transaction == "TD3.2"
    assert len(record.document_ids) == total
    assert all(x.message_id in record.detail for x in reads)
