"""Agent ordering guarantees, with a scripted DMP: refusals stop before the network, the audit record is
written before patient data is returned, consent is never recorded without an explicit call."""

from __future__ import annotations

from pathlib import Path

import pytest

from ps_agent.access.errors import NoActiveDmp
from ps_agent.access.policy import PatientRef
from ps_agent.agent import Agent, dmp_state
from ps_agent.audit.journal import AuditJournal
from ps_agent.config import ENVIRONMENTS, AgentConfig
from ps_agent.dmp.hl7 import DmpStatus
from ps_agent.errors import AuditError
from tests.fixtures.dmp_samples import ITI18, TD02, entry, hl7_answer

from .fakedmp import FakeCredentials, FakeDmp, ok, query_response

TD03 = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization"


@pytest.fixture
def dmp() -> FakeDmp:
    return FakeDmp()


def make_agent(tmp_path: Path, dmp: FakeDmp, gp, signer, journal: AuditJournal | None = None) -> Agent:
    return Agent(
        FakeCredentials(gp, signer),
        AgentConfig(ENVIRONMENTS["sandbox"], tmp_path / "home"),
        transport=dmp.transport(),
        journal=journal,
    )


def closed_answer(req):
    body = hl7_answer("AA").replace('<statusCode code="active"/>', '<statusCode code="completed"/>')
    return ok(req, body)


def test_refusal_is_audited_and_nothing_is_sent(tmp_path, dmp, gp, signer, patient):
    dmp.handlers[TD02] = closed_answer
    agent = make_agent(tmp_path, dmp, gp, signer)
    ref = PatientRef(patient.matricule, patient.oid)
    with pytest.raises(NoActiveDmp):
        agent.list_documents(ref)
    assert [c.action for c in dmp.calls] == [TD02]  # only the status test went out
    recs = agent.audit().records()
    assert [(r.event.action, r.event.outcome) for r in recs] == [
        ("dmp.status", "success"),
        ("dmp.search", "refused"),
    ]
    assert recs[-1].event.rule_id == "PAT-06"


class FailingJournal(AuditJournal):
    def append(self, event):
        if event.action == "dmp.search" and event.outcome == "success":
            raise AuditError("Le journal d'audit ne peut pas être écrit.", code="AUDIT_WRITE")
        return super().append(event)


def test_no_patient_data_without_audit_record(tmp_path, dmp, gp, signer, patient):
    dmp.handlers[TD02] = lambda req: ok(req, hl7_answer("AA"))
    dmp.handlers[ITI18] = lambda req: ok(req, query_response([entry(patient)]))
    journal = FailingJournal(tmp_path / "j.sqlite3")
    agent = make_agent(tmp_path, dmp, gp, signer, journal=journal)
    with pytest.raises(AuditError):
        agent.list_documents(PatientRef(patient.matricule, patient.oid))


def test_dmp_state_mapping():
    assert dmp_state(DmpStatus(True, True, "VALIDE", True)).authorised is True
    assert dmp_state(DmpStatus(True, True, "INTERDIT", False)).blocked
    assert dmp_state(DmpStatus(True, True, "EXPIRE", False)).authorised is None
    assert dmp_state(DmpStatus(True, False, "VALIDE", False)).closed
    assert not dmp_state(DmpStatus(False, False, "NON_EXISTE", False)).exists
