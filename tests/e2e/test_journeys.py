"""The users' journeys of issue 5, agent ↔ sandbox over mutual TLS on loopback.

Each journey runs twice (``agent_for`` below is parametrized over the credentials):

- ``[software]``: DIRECTE credentials from the card profiles' software keys of the test PKI;
- ``[card]`` (marker ``pcsc``): a real ``AuthSession`` over the emulated CPS card through pcscd, so the
  TLS client authentication and the VIHF signatures are made by the card. When a journey passes from
  one professional to another the card really leaves the reader and the other one is inserted; the
  previous session is asserted closed and a new one is opened (``CardAgents`` in conftest.py), so a
  journey asks ``agent_for(profile)`` again when a professional comes back to the reader.

The establishment modes (INDIRECTE / AIR: the secretary) use the establishment's certificates in both
variants: there is no card in that mode. After each journey the audit journal holds the expected
records and verifies.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cda
from cda.build import Replacement
from ps_agent.access.errors import (
    ConsentRequired,
    EmergencyAccessDenied,
    HabilitationDenied,
    NoActiveDmp,
    PatientBlockedAccess,
)
from ps_agent.access.policy import AccessMode
from ps_agent.agent import Agent
from ps_agent.auth.model import AuthMode, ProfessionalIdentity
from ps_agent.dmp.errors import DmpRefusal
from ps_agent.dmp.model import Status, Visibility
from ps_agent.errors import PsAgentError

from . import docs
from .conftest import identity_of, patient_ref, seeded_sandbox

pytestmark = pytest.mark.slow


class _SameAgent:
    """Software variant: asking again for the same professional gives the same agent (like a card
    session that stayed open), so the journeys read the same with software keys and with the card."""

    def __init__(self, make: Callable[..., Agent]) -> None:
        self.make = make
        self.agents: dict[tuple[Any, ...], Agent] = {}

    def __call__(
        self,
        profile: str = "gp",
        *,
        mode: AuthMode = AuthMode.DIRECTE,
        identity: ProfessionalIdentity | None = None,
        home: Path | None = None,
    ) -> Agent:
        key = (profile, mode, identity.id_nat if identity else None, home)
        if key not in self.agents:
            self.agents[key] = self.make(profile, mode=mode, identity=identity, home=home)
        return self.agents[key]


@pytest.fixture(scope="module", params=["software", pytest.param("card", marks=pytest.mark.pcsc)])
def credentials(request: pytest.FixtureRequest) -> str:
    """How the professionals authenticate in this run of the journeys."""
    return request.param


@pytest.fixture(scope="module")
def dmp_sandbox(credentials: str, tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    """A demo DMP of its own for each variant: the journeys change it (consent, deposits...)."""
    with seeded_sandbox(tmp_path_factory, test_pki) as running:
        yield running


@pytest.fixture
def agent_for(
    request: pytest.FixtureRequest, credentials: str, software_agent_for: Callable[..., Agent]
) -> Callable[..., Agent]:
    """The journeys' agents: software keys, or the emulated card through pcscd (see the module doc)."""
    if credentials == "card":
        return request.getfixturevalue("card_agent_for")
    return _SameAgent(software_agent_for)


def demo():
    from sandbox import demo as d

    return d


def actions(agent) -> list[tuple[str, str]]:
    return [(r.event.action, r.event.outcome) for r in agent.audit().records()]


def assert_journal_ok(agent, profile: str | None = None) -> None:
    """The journal verifies; with ``profile``, every record names that professional, in DIRECTE mode
    (with the card: the identity read from the card in the reader)."""
    result = agent.audit().verify()
    assert result.ok, result.message_fr
    if profile is not None:
        from sandbox.profiles import PROFILES

        recs = agent.audit().records()
        assert recs
        assert {(r.event.actor_id_nat, r.event.auth_mode) for r in recs} == {
            (PROFILES[profile].id_nat, "DIRECTE")
        }


def test_gp_deposits_letter_finds_it_in_comptes_rendus_replaces_and_masks(agent_for):
    p = demo().DEMO_ADULT
    patient = patient_ref(p)
    gp = agent_for("gp")
    data = docs.letter(p, "gp", title="Consultation du 25 novembre")
    steps: list[tuple[str, int, int]] = []
    result = gp.deposit(patient, data, progress=lambda s, d, t: steps.append((s, d, t)))
    uid = result.document_uids[0]
    assert steps and steps[-1][1] == steps[-1][2]  # progress reached 100 %

    listing = gp.list_documents(patient, rubric="Comptes rendus")
    assert uid in {e.unique_id for e in listing}
    assert all(e.class_code.code == "10" for e in listing)
    mine = next(e for e in listing if e.unique_id == uid)
    assert mine.title == "Consultation du 25 novembre" and mine.status == Status.APPROVED

    # replace it: new version, same setId, RPLC -> the old one is deprecated
    new = docs.letter(
        p, "gp", title="Consultation du 25 novembre (corrigée)", replaces=Replacement.of(cda.parse(data))
    )
    new_uid = gp.deposit(patient, new).document_uids[0]
    after = {e.unique_id: e for e in gp.list_documents(patient, include_deprecated=True)}
    assert after[new_uid].status == Status.APPROVED
    assert after[uid].status == Status.DEPRECATED
    assert uid not in {e.unique_id for e in gp.list_documents(patient)}

    # mask a letter to other professionals: the author still sees it, flagged
    other_uid = gp.deposit(patient, docs.letter(p, "gp", title="Consultation à masquer")).document_uids[0]
    gp.mask(patient, other_uid)
    masked = next(e for e in gp.list_documents(patient) if e.unique_id == other_uid)
    assert masked.visibility.masked_to_professionals
    # a professional of another structure (not médecin traitant, not author) no longer sees it
    pharmacist_view = agent_for("pharmacist").list_documents(patient)
    assert other_uid not in {e.unique_id for e in pharmacist_view}
    gp = agent_for("gp")  # back to the GP (with the card: her card again, a new session)
    gp.unmask(patient, other_uid)
    assert other_uid in {e.unique_id for e in agent_for("pharmacist").list_documents(patient)}

    got = actions(gp)
    assert ("dmp.status", "success") in got
    assert got.count(("dmp.deposit", "success")) == 3
    assert ("dmp.mask", "success") in got and ("dmp.unmask", "success") in got
    ph = agent_for("pharmacist")  # the pharmacist's journal: her two listings (two sessions with the card)
    assert actions(ph).count(("dmp.search", "success")) == 2
    assert_journal_ok(ph, "pharmacist")
    deposit_rec = [r for r in gp.audit().records(action="dmp.deposit") if r.event.outcome == "success"]
    assert deposit_rec[0].event.document_ids == (uid,) and deposit_rec[0].event.transaction == "TD2.1"
    assert deposit_rec[0].event.patient_ins == f"{p.ins}^{p.oid}"
    assert_journal_ok(gp, "gp")


def test_gp_masks_a_replaced_letter(agent_for):
    """ITI-57 on a replacing version: its lid (from TD3.1) is the logicalId shared by all versions."""
    p = demo().DEMO_ADULT
    patient = patient_ref(p)
    gp = agent_for("gp")
    data = docs.letter(p, "gp", title="Lettre v1")
    gp.deposit(patient, data)
    new = docs.letter(p, "gp", title="Lettre v2", replaces=Replacement.of(cda.parse(data)))
    new_uid = gp.deposit(patient, new).document_uids[0]
    gp.mask(patient, new_uid)
    assert next(
        e for e in gp.list_documents(patient) if e.unique_id == new_uid
    ).visibility.masked_to_professionals
    masked = [r for r in gp.audit().records(action="dmp.mask") if r.event.outcome == "success"]
    assert [r.event.document_ids for r in masked] == [(new_uid,)]
    assert actions(gp).count(("dmp.deposit", "success")) == 2
    assert_journal_ok(gp, "gp")


def test_pharmacist_reads_vaccinations_and_records_one(agent_for):
    p = demo().DEMO_ADULT
    patient = patient_ref(p)
    ph = agent_for("pharmacist")
    progress: list[tuple[int, int]] = []
    before = ph.vaccination_status(patient, progress=lambda s, d, t: progress.append((d, t)))
    assert before, "the demo adult has vaccination documents"
    assert [v.date for v in before] == sorted(v.date for v in before)
    assert progress[-1][0] == progress[-1][1]
    # a lot of its own: the status counts one vaccination per (date, vaccine, lot) across documents, and
    # the module's DMP is shared by the journeys' two variants
    lot = f"LOT-E2E-{uuid.uuid4().hex[:8].upper()}"
    ph.record_vaccination(patient, docs.vaccination(p, "pharmacist", lot_number=lot))
    after = ph.vaccination_status(patient)
    assert len(after) == len(before) + 1
    assert any(v.lot_number == lot for v in after)
    got = actions(ph)
    assert ("dmp.deposit", "success") in got and ("dmp.retrieve", "success") in got
    assert_journal_ok(ph, "pharmacist")


def test_pharmacist_cannot_see_imaging_report_and_is_told_why(agent_for):
    p = demo().DEMO_ADULT
    patient = patient_ref(p)
    gp_list = agent_for("gp").list_documents(patient)
    imaging = [e for e in gp_list if e.type_code.code == "18748-4"]
    assert imaging, "the demo adult has imaging reports (seen by the gp)"
    ph = agent_for("pharmacist")
    listing = ph.list_documents(patient)
    assert not [e for e in listing if e.type_code.code == "18748-4"]
    assert any(
        "pharmaciens n'ont pas accès" in s and "imagerie" in s.lower() for s in listing.hidden_explanations
    )
    # Asking anyway (an entry seen elsewhere): refused, and the refusal says why. The policy refuses
    # locally only for CONFIRMED matrix rows (HAB-03); otherwise the DMP refuses and the agent explains.
    with pytest.raises((HabilitationDenied, DmpRefusal)) as exc:
        ph.retrieve(patient, imaging[0])
    assert "pharmaciens n'ont pas accès" in exc.value.message_fr
    refused = [r for r in ph.audit().records(action="dmp.retrieve") if r.event.outcome == "refused"]
    assert refused and refused[-1].event.document_ids == (imaging[0].unique_id,)
    assert_journal_ok(ph, "pharmacist")


def test_pharmacist_cannot_see_hospital_report_and_is_told_why(agent_for):
    """A doctor deposits a CR hospitalier (séjour, 34112-3); the project's habilitation matrix denies it to
    pharmacists: their listing explains it in French and retrieving it is refused with the explanation."""
    p = demo().DEMO_ADULT
    patient = patient_ref(p)
    gp = agent_for("gp")
    uid = gp.deposit(
        patient, docs.letter(p, "gp", type_code="34112-3", title="CR d'hospitalisation du 20 novembre")
    ).document_uids[0]
    report = next(e for e in gp.list_documents(patient) if e.unique_id == uid)
    assert report.type_code.code == "34112-3"

    ph = agent_for("pharmacist")
    listing = ph.list_documents(patient)
    assert uid not in {e.unique_id for e in listing}
    assert not [e for e in listing if e.type_code.code == "34112-3"]
    assert any(
        "pharmaciens n'ont pas accès" in s and "hospitalier" in s for s in listing.hidden_explanations
    ), listing.hidden_explanations
    with pytest.raises((HabilitationDenied, DmpRefusal)) as exc:
        ph.retrieve(patient, report)
    assert "pharmaciens n'ont pas accès" in exc.value.message_fr and "hospitalier" in exc.value.message_fr
    with pytest.raises(PsAgentError) as by_uid:  # by uniqueId alone: the DMP does not even list it
        ph.retrieve(patient, uid)
    assert "pas accessibles à votre profession" in by_uid.value.message_fr
    refused = [r for r in ph.audit().records(action="dmp.retrieve") if r.event.outcome == "refused"]
    assert refused and refused[-1].event.document_ids == (uid,)
    assert_journal_ok(ph, "pharmacist")
    assert_journal_ok(gp, "gp")


def test_opposed_dmp_is_reported_as_an_opposition_and_refuses_everything_but_the_status(agent_for):
    p = demo().DEMO_OPPOSED
    patient = patient_ref(p)
    gp = agent_for("gp")
    status = gp.dmp_status(patient)
    assert status.exists and status.opposed and not status.closed
    assert "opposé" in status.summary_fr
    from ps_agent.agent import dmp_state

    assert dmp_state(status).opposed and not dmp_state(status).active
    with pytest.raises(NoActiveDmp) as exc:
        gp.deposit(patient, docs.letter(p, "gp"))
    assert "opposition" in exc.value.message_fr
    with pytest.raises(NoActiveDmp):
        gp.list_documents(patient)
    assert ("dmp.deposit", "refused") in actions(gp)
    assert_journal_ok(gp, "gp")


def test_emergency_opposition_reported_by_the_dmp_is_then_enforced_locally(agent_for, dmp_sandbox):
    p = demo().DEMO_BLOCKING
    patient = patient_ref(p)
    reason = "Patient inconscient admis aux urgences, antécédents inconnus"
    dmp_sandbox.store.set_emergency(p.ins, bris_de_glace=False)
    try:
        sp = agent_for("specialist")
        with pytest.raises(DmpRefusal) as exc:
            sp.emergency_access(patient, AccessMode.BRIS_DE_GLACE, reason)
            sp.list_documents(patient)
        assert "EmergencyAccessRefused" in str(exc.value.code)
        sent = len(sp.audit().records())
        with pytest.raises(EmergencyAccessDenied) as again:  # now refused before anything is sent
            sp.emergency_access(patient, AccessMode.BRIS_DE_GLACE, reason)
        assert "opposé à l'accès en urgence" in again.value.message_fr
        last = sp.audit().records()[sent:]
        assert [(r.event.action, r.event.outcome) for r in last] == [("dmp.emergency", "refused")]
        assert last[0].event.rule_id == "URG-01"
        assert_journal_ok(sp, "specialist")
    finally:
        dmp_sandbox.store.set_emergency(p.ins, bris_de_glace=True)


def test_doctor_without_authorisation_is_refused_records_consent_then_reads(agent_for):
    p = demo().DEMO_MINOR
    patient = patient_ref(p)
    sp = agent_for("specialist")
    status = sp.dmp_status(patient)
    assert status.exists and not status.authorised
    with pytest.raises(ConsentRequired) as exc:
        sp.list_documents(patient)
    assert exc.value.needs_consent and "accord" in exc.value.message_fr
    new_status = sp.record_consent(patient, how="oral")
    assert new_status.authorised
    assert len(sp.list_documents(patient)) >= 1
    got = actions(sp)
    assert (
        got.index(("dmp.search", "refused"))
        < got.index(("dmp.consent", "success"))
        < got.index(("dmp.search", "success"))
    )
    assert_journal_ok(sp, "specialist")


def test_bris_de_glace_without_then_with_reason(agent_for):
    p = demo().DEMO_BLOCKING  # the specialist is not authorised on this DMP
    patient = patient_ref(p)
    sp = agent_for("specialist")
    with pytest.raises(EmergencyAccessDenied) as exc:
        sp.emergency_access(patient, AccessMode.BRIS_DE_GLACE, "urgence")
    assert "motif" in exc.value.message_fr.lower()
    reason = "Patient inconscient admis aux urgences, antécédents inconnus"
    access = sp.emergency_access(patient, AccessMode.BRIS_DE_GLACE, reason)
    assert "médecin traitant" in access.notice_fr
    listing = sp.list_documents(patient)
    assert len(listing) >= 1
    recs = sp.audit().records()
    refused = [r for r in recs if r.event.action == "dmp.emergency" and r.event.outcome == "refused"]
    assert refused and refused[0].event.rule_id.startswith("URG")
    search = [r for r in recs if r.event.action == "dmp.search" and r.event.outcome == "success"]
    assert search[-1].event.access_mode == "bris_de_glace" and search[-1].event.reason == reason
    assert_journal_ok(sp, "specialist")


def test_bris_de_glace_is_refused_in_establishment_mode(agent_for):
    p = demo().DEMO_BLOCKING
    sec = agent_for("specialist", mode=AuthMode.INDIRECTE_RENFORCEE)
    with pytest.raises(EmergencyAccessDenied):
        sec.emergency_access(
            patient_ref(p), AccessMode.BRIS_DE_GLACE, "Patient inconscient, antécédents inconnus"
        )
    assert ("dmp.emergency", "refused") in actions(sec)
    assert {r.event.auth_mode for r in sec.audit().records()} == {"INDIRECTE_RENFORCEE"}
    assert_journal_ok(sec)


def test_blocked_professional_cannot_consult_but_can_deposit(agent_for):
    p = demo().DEMO_BLOCKING
    patient = patient_ref(p)
    nurse = agent_for("nurse")
    status = nurse.dmp_status(patient)
    assert status.blocked
    with pytest.raises(PatientBlockedAccess) as exc:
        nurse.list_documents(patient)
    assert "bloqué" in exc.value.message_fr
    result = nurse.deposit(patient, docs.letter(p, "nurse", type_code="11506-3", title="Suivi de soins"))
    assert result.document_uids
    got = actions(nurse)
    assert ("dmp.search", "refused") in got and ("dmp.deposit", "success") in got
    assert_journal_ok(nurse, "nurse")


def test_closed_dmp_refuses_deposit_and_consultation(agent_for):
    p = demo().DEMO_CLOSED
    patient = patient_ref(p)
    gp = agent_for("gp")
    status = gp.dmp_status(patient)
    assert status.exists and status.closed
    with pytest.raises(NoActiveDmp) as exc:
        gp.deposit(patient, docs.letter(p, "gp"))
    assert "pas de DMP actif" in exc.value.message_fr
    with pytest.raises(NoActiveDmp):
        gp.list_documents(patient)
    assert ("dmp.deposit", "refused") in actions(gp)
    assert_journal_ok(gp, "gp")


def test_secretary_deposits_in_air_mode_on_behalf_of_a_doctor(agent_for):
    p = demo().DEMO_ADULT
    patient = patient_ref(p)
    secretary = agent_for("specialist", mode=AuthMode.INDIRECTE_RENFORCEE, identity=identity_of("secretary"))
    data = docs.letter(p, "specialist", type_code="11490-0", title="Lettre de liaison (secrétariat)")
    uid = secretary.deposit(patient, data, visibility=Visibility(invisible_to_patient=True)).document_uids[0]
    rec = [r for r in secretary.audit().records(action="dmp.deposit") if r.event.outcome == "success"][-1]
    from sandbox.profiles import PROFILES

    assert rec.event.on_behalf_of == PROFILES["specialist"].id_nat
    assert rec.event.auth_mode == "INDIRECTE_RENFORCEE"
    assert rec.event.actor_id_nat == PROFILES["secretary"].id_nat
    found = next(e for e in agent_for("specialist").list_documents(patient) if e.unique_id == uid)
    assert found.visibility.invisible_to_patient
    assert found.authors[0].id_nat == PROFILES["specialist"].id_nat
    assert_journal_ok(secretary)


def test_editing_the_audit_file_is_detected(agent_for, tmp_path):
    p = demo().DEMO_ADULT
    gp = agent_for("gp", home=tmp_path / "tamper")
    gp.dmp_status(patient_ref(p))
    gp.list_documents(patient_ref(p))
    assert gp.audit().verify().ok
    path = gp.config.audit_path
    con = sqlite3.connect(path)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    table = next(t for t in tables if "record" in t or "journal" in t or "audit" in t)
    cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
    col = next(c for c in cols if c in ("patient_ins", "event", "event_json", "payload", "data"))
    try:
        for (trigger,) in con.execute("select name from sqlite_master where type='trigger'").fetchall():
            con.execute(f"drop trigger {trigger}")
        sql = f"update {table} set {col} = replace({col}, ?, '000000000000000') where seq = 1"  # noqa: S608
        con.execute(sql, (p.ins,))
        con.commit()
    finally:
        con.close()
    result = gp.audit().verify()
    assert not result.ok and result.first_bad_seq == 1


def test_secretary_with_establishment_session_from_pkcs12(dmp_sandbox, test_pki, tmp_path):
    """The same AIR deposit through the card team's EstablishmentSession (PKCS#12 files of the test PKI)."""
    from ps_agent.agent import Agent
    from ps_agent.auth.establishment import EstablishmentSession
    from ps_agent.config import AgentConfig, Environment
    from sandbox.pki import P12_PASSPHRASE
    from sandbox.profiles import PROFILES

    org = test_pki.establishment
    session = EstablishmentSession.from_pkcs12(
        org.auth_p12,
        org.sign_p12,
        P12_PASSPHRASE,
        user=identity_of("secretary"),
        author=identity_of("specialist"),
        mode=AuthMode.INDIRECTE_RENFORCEE,
        ca_file=test_pki.ca_bundle,
    )
    p = demo().DEMO_ADULT
    env = Environment("sandbox", dmp_sandbox.base_url, ca_file=str(test_pki.ca_bundle))
    with Agent(session, AgentConfig(env, tmp_path / "air")) as agent:
        data = docs.letter(p, "specialist", type_code="11490-0", title="Lettre (session d'établissement)")
        agent.deposit(patient_ref(p), data)
        rec = [r for r in agent.audit().records(action="dmp.deposit") if r.event.outcome == "success"][-1]
        assert rec.event.on_behalf_of == PROFILES["specialist"].id_nat
        assert rec.event.actor_id_nat == PROFILES["secretary"].id_nat
        assert agent.audit().verify().ok
