"""Network failures and bad answers from the real sandbox (its fault injection): typed errors, and never a
duplicate deposit nor a lost one (the deposit queue resends the same submission; "already registered"
means registered, confirmed by GetDocuments + hash for a reader)."""

from __future__ import annotations

import pytest

from ps_agent.dmp.errors import SoapFault, TransportError
from ps_agent.outbox import EntryState
from ps_agent.session import DepositDeferred

from . import docs
from .conftest import patient_ref

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"


def _adult():
    from sandbox.demo import DEMO_ADULT

    return DEMO_ADULT


def test_answer_lost_after_commit_is_recovered_without_duplicate(agent_for, faults, dmp_sandbox):
    """The first send commits and its answer is lost; every resend of the same submission loses its answer
    too while the fault lasts: the deposit waits in the queue, then resolves as registered (the DMP says
    "already registered", the GP confirms by GetDocuments + hash), never duplicated, never refused."""
    p = _adult()
    gp = agent_for("gp")
    patient = patient_ref(p)
    gp.dmp_status(patient)
    faults(reset_after_commit_rate=1.0, actions=(ITI41,))
    with pytest.raises(DepositDeferred) as exc:
        gp.deposit(patient, docs.letter(p, "gp", title="Lettre réseau coupé"))
    assert exc.value.retryable and "file d'envoi" in exc.value.message_fr
    [waiting] = gp.pending_deposits()
    assert waiting.state is EntryState.WAITING and waiting.documents
    dmp_sandbox.faults.clear()
    [outcome] = gp.resume_pending()
    assert outcome.state is EntryState.REGISTERED and outcome.result.recovered
    assert "empreinte" in outcome.reason_fr  # confirmed by the hash, not assumed
    uid = outcome.document_uids[0]
    listing = [e.unique_id for e in gp.list_documents(patient)]
    assert listing.count(uid) == 1
    rec = [r.event.outcome for r in gp.audit().records(action="dmp.deposit")]
    assert rec[0] == "pending" and rec[-1] == "success" and "refused" not in rec
    assert gp.pending_deposits() == []


def test_request_lost_before_commit_waits_in_the_queue_then_goes_through(agent_for, faults):
    p = _adult()
    gp = agent_for("gp")
    patient = patient_ref(p)
    gp.dmp_status(patient)
    data = docs.letter(p, "gp", title="Lettre jamais arrivée")
    faults(reset_before_commit_rate=1.0, actions=(ITI41,))
    with pytest.raises(TransportError) as exc:
        gp.deposit(patient, data)
    assert exc.value.retryable and "injoignable" in exc.value.message_fr
    faults()
    import cda

    uid = cda.parse(data).id.root
    assert uid not in {e.unique_id for e in gp.list_documents(patient)}
    outcomes = [r.event.outcome for r in gp.audit().records(action="dmp.deposit")]
    assert outcomes == ["pending", "error"]
    # the user sends it again by hand: it goes through the entry that kept it (no second entry)
    assert gp.deposit(patient, data).document_uids == (uid,)
    assert gp.resume_pending() == []
    assert [e.state for e in gp.services.queue.entries()] == [EntryState.REGISTERED]
    assert [e.unique_id for e in gp.list_documents(patient)].count(uid) == 1


def test_server_errors_are_retryable_transport_errors_and_faults_are_refusals(agent_for, faults):
    p = _adult()
    gp = agent_for("gp")
    patient = patient_ref(p)
    gp.dmp_status(patient)
    faults(http_503_rate=1.0, actions=(ITI18,))
    with pytest.raises(TransportError) as exc:
        gp.list_documents(patient)
    assert exc.value.retryable and "503" in exc.value.message_fr
    faults(soap_fault_rate=1.0, actions=(ITI18,))
    with pytest.raises(SoapFault) as fault:
        gp.list_documents(patient)
    assert fault.value.retryable is False and fault.value.code_context
    outcomes = [r.event.outcome for r in gp.audit().records(action="dmp.search")]
    assert outcomes == ["error", "refused"]
    assert gp.audit().verify().ok


def test_outbox_keeps_unresolved_deposit_and_resumes_after_restart(agent_for, faults, tmp_path, dmp_sandbox):
    p = _adult()
    patient = patient_ref(p)
    home = tmp_path / "outbox-home"
    gp = agent_for("gp", home=home)
    gp.dmp_status(patient)
    data = docs.letter(p, "gp", title="Lettre en attente")
    faults(reset_before_commit_rate=1.0, actions=(ITI41,))
    with pytest.raises(TransportError):
        gp.deposit(patient, data)
    [pending] = gp.pending_deposits()
    assert pending.documents == (data,) and pending.patient_ins == p.ins
    gp.close()
    faults()
    # "restart": a new agent on the same data folder resolves the queue
    again = agent_for("gp", home=home)
    [result] = again.resume_pending()
    assert result.registered and not result.result.recovered
    assert result.document_uids == pending.document_uids
    assert again.pending_deposits() == []
    assert [e.unique_id for e in again.list_documents(patient)].count(pending.document_uids[0]) == 1
    assert again.resume_pending() == []
    [entry] = again.queue_entries()
    assert entry.state is EntryState.REGISTERED and entry.documents == ()  # bytes purged once registered


def test_outbox_resolves_a_registered_deposit_without_duplicate(agent_for, faults, tmp_path):
    p = _adult()
    patient = patient_ref(p)
    home = tmp_path / "outbox-home2"
    gp = agent_for("gp", home=home)
    gp.dmp_status(patient)
    # the answer is lost on every exchange: the outcome is unknown, the deposit stays in the queue
    faults(reset_after_commit_rate=1.0)
    with pytest.raises(TransportError):
        gp.deposit(patient, docs.letter(p, "gp", title="Lettre à l'issue inconnue"))
    faults()
    [pending] = gp.pending_deposits()
    [result] = gp.resume_pending()
    assert result.registered and result.result.recovered
    assert [e.unique_id for e in gp.list_documents(patient)].count(pending.document_uids[0]) == 1


def test_frame_log_keeps_exchanges_without_document_bytes(dmp_sandbox, test_pki, tmp_path):
    import json as _json

    from ps_agent.agent import Agent
    from ps_agent.auth.model import AuthMode
    from ps_agent.auth.software import SoftwareCredentials
    from ps_agent.config import AgentConfig, Environment

    from .conftest import identity_of

    p = _adult()
    c = test_pki.card("gp")
    creds = SoftwareCredentials(
        identity_of("gp"), AuthMode.DIRECTE, c.auth_cert, c.auth_key, c.sign_cert, c.sign_key
    )
    env = Environment("sandbox", dmp_sandbox.base_url, ca_file=str(test_pki.ca_bundle))
    with Agent(creds, AgentConfig(env, tmp_path / "home", frame_log=True)) as agent:
        data = docs.letter(p, "gp", title="Lettre tracée")
        uid = agent.deposit(patient_ref(p), data).document_uids[0]
        agent.retrieve(patient_ref(p), uid)
    lines = [_json.loads(line) for line in (tmp_path / "home" / "frames.jsonl").read_text().splitlines()]
    assert {ln["direction"] for ln in lines} == {"in", "out"}
    assert any("ProvideAndRegisterDocumentSet" in ln["action"] for ln in lines)
    blob = "\n".join(ln["xml"] for ln in lines)
    assert "saml2:Assertion" in blob or "Assertion" in blob
    assert "JVBERi0" not in blob and "%PDF" not in blob  # neither the PDF nor its base64 (CDA body)
