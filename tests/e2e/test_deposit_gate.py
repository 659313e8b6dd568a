"""The agent runs the CDA engine's built-in CI-SIS rules before a deposit: a document the DMP would refuse
is refused locally, with the faulty element named in French, nothing is sent, and the refusal is audited."""

from __future__ import annotations

import pytest

from cda.errors import DocumentNotDepositable

from . import docs
from .conftest import patient_ref


def test_a_defective_document_is_refused_before_sending(agent_for) -> None:
    from sandbox.demo import DEMO_ADULT

    patient = patient_ref(DEMO_ADULT)
    gp = agent_for("gp")
    good = docs.letter(DEMO_ADULT, "gp", title="Lettre de consultation")
    # A defect the built-in rules catch (CDA-P04): the patient's birth first name is missing.
    bad = good.replace(b'<given qualifier="BR">CAMILLE</given>', b"", 1)
    assert bad != good
    before = {e.unique_id for e in gp.list_documents(patient)}

    with pytest.raises(DocumentNotDepositable) as exc:
        gp.deposit(patient, bad)
    assert "ne peut pas être envoyé au DMP" in exc.value.message_fr
    assert "prénom de naissance" in exc.value.message_fr
    assert exc.value.field  # the XPath of the faulty element

    assert {e.unique_id for e in gp.list_documents(patient)} == before  # nothing reached the DMP
    refused = [r for r in gp.audit().records() if r.event.action == "dmp.deposit"]
    assert refused and refused[-1].event.outcome == "refused"
    assert refused[-1].event.error_code
    assert gp.audit().verify().ok
    assert gp.pending_deposits() == []  # nothing left in the outbox either

    # The same letter without the defect goes through.
    gp.deposit(patient, good)
