"""Document management (TD3.3a–d), centre 15, and local refusals of bad requests, against the sandbox."""

from __future__ import annotations

import pytest

from ps_agent.access.errors import (
    DepositNotAllowed,
    EmergencyAccessDenied,
    IdentityNotQualified,
    RoleNotAllowed,
)
from ps_agent.access.policy import AccessMode, PatientRef
from ps_agent.agent import InvalidRequest
from ps_agent.auth.model import AuthMode
from ps_agent.dmp.errors import DmpRefusal
from ps_agent.dmp.model import Status, Visibility

from . import docs
from .conftest import identity_of, patient_ref

pytestmark = pytest.mark.slow


def _adult():
    from sandbox.demo import DEMO_ADULT

    return DEMO_ADULT


def test_archive_unarchive_and_delete_by_author_only(agent_for):
    p = _adult()
    patient = patient_ref(p)
    gp = agent_for("gp")
    uid = gp.deposit(patient, docs.letter(p, "gp", title="À archiver")).document_uids[0]
    gp.archive(patient, uid)
    assert uid not in {e.unique_id for e in gp.list_documents(patient)}
    archived = {e.unique_id: e for e in gp.list_documents(patient, include_archived=True)}
    assert archived[uid].status == Status.ARCHIVED
    gp.unarchive(patient, uid)
    assert uid in {e.unique_id for e in gp.list_documents(patient)}
    # only the author may delete: the DMP's refusal reaches the specialist as a typed error in French
    sp = agent_for("specialist")
    with pytest.raises(DmpRefusal) as exc:
        sp.delete(patient, uid)
    assert exc.value.retryable is False and "auteur" in exc.value.message_fr
    assert [r.event.outcome for r in sp.audit().records(action="dmp.delete")] == ["refused"]
    gp.delete(patient, uid)
    assert uid not in {e.unique_id for e in sp.list_documents(patient, include_archived=True)}
    assert [r.event.outcome for r in gp.audit().records(action="dmp.delete")] == ["success"]
    assert gp.audit().verify().ok and sp.audit().verify().ok


def test_make_visible_to_patient(agent_for):
    p = _adult()
    patient = patient_ref(p)
    gp = agent_for("gp")
    uid = gp.deposit(
        patient,
        docs.letter(p, "gp", title="Résultat à annoncer"),
        visibility=Visibility(invisible_to_patient=True),
    ).document_uids[0]
    before = next(e for e in gp.list_documents(patient) if e.unique_id == uid)
    assert before.visibility.invisible_to_patient
    gp.make_visible(patient, uid)
    after = next(e for e in gp.list_documents(patient) if e.unique_id == uid)
    assert not after.visibility.invisible_to_patient


def test_masked_and_invisible_together_is_refused_before_sending(agent_for):
    p = _adult()
    gp = agent_for("gp")
    with pytest.raises(InvalidRequest) as exc:
        gp.deposit(
            patient_ref(p),
            docs.letter(p, "gp"),
            visibility=Visibility(masked_to_professionals=True, invisible_to_patient=True),
        )
    assert "à la fois" in exc.value.message_fr


def test_document_for_another_patient_is_refused(agent_for):
    from sandbox.demo import DEMO_MINOR

    gp = agent_for("gp")
    with pytest.raises(InvalidRequest) as exc:
        gp.deposit(patient_ref(_adult()), docs.letter(DEMO_MINOR, "gp"))
    assert "autre patient" in exc.value.message_fr


def test_unknown_document_is_a_clear_error(agent_for):
    gp = agent_for("gp")
    with pytest.raises(InvalidRequest) as exc:
        gp.retrieve(patient_ref(_adult()), "1.2.250.1.999.404")
    assert "introuvable" in exc.value.message_fr


def test_centre_15_regulator_reads_but_cannot_deposit(agent_for):
    p = _adult()
    patient = patient_ref(p)
    reg = agent_for("regulator")
    reg.emergency_access(patient, AccessMode.CENTRE_15, "Appel au centre 15 : douleur thoracique")
    assert len(reg.list_documents(patient)) > 0
    with pytest.raises((DepositNotAllowed, EmergencyAccessDenied)) as exc:
        reg.deposit(patient, docs.letter(p, "regulator", title="Régulation"))
    assert "consultation" in exc.value.message_fr
    search = [r for r in reg.audit().records(action="dmp.search") if r.event.outcome == "success"]
    assert search[-1].event.access_mode == "centre_15"


def test_centre_15_needs_a_regulation_role(agent_for):
    with pytest.raises(EmergencyAccessDenied):
        agent_for("gp").emergency_access(patient_ref(_adult()), AccessMode.CENTRE_15, "Appel au centre 15")


def test_deposit_needs_a_qualified_identity(agent_for):
    p = _adult()
    gp = agent_for("gp")
    with pytest.raises(IdentityNotQualified):
        gp.deposit(PatientRef(p.ins, p.oid, "PROV"), docs.letter(p, "gp"))
    assert [r.event.outcome for r in gp.audit().records(action="dmp.deposit")] == ["refused"]


def test_secretary_may_not_consult(agent_for):
    secretary = agent_for("specialist", mode=AuthMode.INDIRECTE_RENFORCEE, identity=identity_of("secretary"))
    with pytest.raises(RoleNotAllowed):
        secretary.list_documents(patient_ref(_adult()))


def test_authorisation_lists_td04_and_td16(agent_for):
    from datetime import UTC, datetime

    from sandbox.profiles import PROFILES

    gp = agent_for("gp")
    rows = gp.authorised_patients(datetime(2000, 1, 1, tzinfo=UTC))
    adult = _adult()
    assert adult.ins in {r["nationalId"] for r in rows}
    mine = next(r for r in rows if r["nationalId"] == adult.ins)
    assert mine["MT"] == "true"
    pros = gp.authorised_professionals(patient_ref(adult), mode="ACTIVE")
    assert PROFILES["pharmacist"].id_nat in {r["nationalId"] for r in pros}
    actions = [(r.event.action, r.event.transaction) for r in gp.audit().records()]
    assert ("dmp.patient_list", "TD0.4") in actions and ("dmp.authorisations", "TD1.6") in actions


def test_deposit_pdf_wraps_it_in_a_cda_level_1(agent_for):
    from sandbox.demo import DEMO_ADULT

    gp = agent_for("gp")
    patient = patient_ref(DEMO_ADULT)
    pdf = docs.pdf("Compte rendu en PDF")
    uid = gp.deposit_pdf(
        patient,
        pdf,
        type_code="11488-4",
        title="Compte rendu en PDF",
        patient_traits=docs.patient_input(DEMO_ADULT),
    ).document_uids[0]
    entry = next(e for e in gp.list_documents(patient, rubric="Comptes rendus") if e.unique_id == uid)
    assert entry.format_code.code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert entry.authors[0].id_nat == "899700000013"
    import base64

    import cda

    body = cda.parse(gp.retrieve(patient, entry).content)
    assert body.title == "Compte rendu en PDF"
    raw = gp.retrieve(patient, entry).content
    assert base64.b64encode(pdf)[:40] in raw
