"""The access rules as pure functions (no XML): each decision and its French sentence."""

from __future__ import annotations

import dataclasses

import pytest

from sandbox.dmp import rules
from sandbox.dmp.rules import AccessRefused
from sandbox.dmp.store import (
    APPROVED,
    ARCHIVED,
    DELETED,
    INTERDIT,
    VALIDE,
    Authorisation,
    Patient,
    StoredDocument,
)
from sandbox.profiles import PROFILES
from tests.sandbox.dmp.conftest import caller

PATIENT = Patient(
    "279037505612309",
    "1.2.250.1.213.1.4.10",
    "X",
    "Y",
    "19790321",
    "F",
    "75056",
    "ACTIVE",
    "",
    "",
    PROFILES["gp"].id_nat,
    True,
    True,
    False,
)
DOC = StoredDocument(
    entry_uuid="urn:uuid:1",
    lid="urn:uuid:1",
    unique_id="1.2.3",
    patient_ins=PATIENT.ins,
    patient_oid=PATIENT.oid,
    status=APPROVED,
    version=1,
    type_code="11488-4",
    class_code="10",
    format_code="f",
    practice_code="AMBULATOIRE",
    facility_code="SA01",
    confidentiality=("N",),
    author_id=PROFILES["specialist"].id_nat,
    author_structure=PROFILES["specialist"].situations[0].structure_id,
    title="t",
    mime_type="text/xml",
    hash="h",
    size=1,
    creation_time="20260101",
    service_start="",
    service_stop="",
    set_id="",
    submission_uuid="s",
    replaces=None,
    metadata=b"",
    registered_at="",
)


def auth(profile: str, status: str = VALIDE) -> Authorisation:
    return Authorisation(PATIENT.ins, PROFILES[profile].id_nat, status, "", "", "", "", "")


def refused(func, *args) -> AccessRefused:
    with pytest.raises(AccessRefused) as info:
        func(*args)
    return info.value


def test_dmp_status() -> None:
    assert refused(rules.check_dmp_open, None).message_fr == "Ce patient n'a pas de DMP."
    assert refused(rules.check_dmp_open, dataclasses.replace(PATIENT, status="CLOSED")).code == "DMPClosed"
    assert refused(rules.check_dmp_open, dataclasses.replace(PATIENT, status="OPPOSED")).code == "DMPOpposed"
    assert rules.check_dmp_open(PATIENT) is PATIENT


def test_consultation_normal_mode() -> None:
    assert rules.check_consultation(caller("gp"), PATIENT, auth("gp")) is PATIENT
    assert refused(rules.check_consultation, caller("gp"), PATIENT, None).code == "DMPAccessNotAuthorized"
    blocked = refused(rules.check_consultation, caller("nurse"), PATIENT, auth("nurse", INTERDIT))
    assert blocked.code == "DMPAccessBlocked" and "déposer" in blocked.message_fr
    secretary = refused(rules.check_consultation, caller("secretary"), PATIENT, None)
    assert secretary.message_fr == "Consultation réservée aux professionnels prenant en charge le patient."


def test_consultation_emergency_modes() -> None:
    btg = caller("specialist", purpose="bris_de_glace", reason="coma")
    assert rules.check_consultation(btg, PATIENT, None) is PATIENT
    no_btg = dataclasses.replace(PATIENT, allow_bris_de_glace=False)
    assert refused(rules.check_consultation, btg, no_btg, None).code == "DMPEmergencyAccessRefused"
    samu = caller("regulator", purpose="centre_15")
    assert rules.check_consultation(samu, PATIENT, None) is PATIENT
    assert refused(rules.check_consultation, samu, dataclasses.replace(PATIENT, allow_centre_15=False), None)
    assert (
        refused(rules.check_consultation, btg, PATIENT, auth("specialist", INTERDIT)).code
        == "DMPAccessBlocked"
    )


def test_document_visibility() -> None:
    masked = dataclasses.replace(DOC, confidentiality=("MASQUE_PS", "N"))
    assert rules.can_see(caller("specialist"), PATIENT, masked)  # author
    assert rules.can_see(caller("gp"), PATIENT, masked)  # médecin traitant
    assert not rules.can_see(caller("pharmacist"), PATIENT, masked)
    btg = caller("pharmacist", purpose="bris_de_glace", reason="x")
    assert not rules.can_see(btg, PATIENT, masked)
    assert rules.can_see(btg, dataclasses.replace(PATIENT, allow_masked_in_emergency=True), masked)
    deleted = dataclasses.replace(DOC, status=DELETED)
    assert rules.can_see(caller("specialist"), PATIENT, deleted) and not rules.can_see(
        caller("gp"), PATIENT, deleted
    )
    imaging = dataclasses.replace(DOC, type_code="18748-4", class_code="31")
    assert not rules.can_see(caller("pharmacist"), PATIENT, imaging)  # matrix: class 31 read=N
    assert rules.can_see(caller("nurse"), PATIENT, imaging)


def test_deposit_rules() -> None:
    assert rules.check_deposit(caller("gp"), PATIENT, "", "", "11488-4") is PATIENT
    assert (
        refused(rules.check_deposit, caller("nurse"), PATIENT, "", "", "60593-1").code
        == "DMPHabilitationRefused"
    )
    samu = caller("regulator", purpose="centre_15")
    assert "centre 15" in refused(rules.check_deposit, samu, PATIENT, "", "", "11488-4").message_fr
    both = {"N", "MASQUE_PS", "INVISIBLE_PATIENT"}
    assert (
        refused(rules.check_deposit_confidentiality, caller("gp"), PATIENT, both).code
        == "XDSRegistryMetadataError"
    )
    assert rules.expected_author(caller("gp")) == PROFILES["gp"].id_nat
    assert rules.expected_author(caller("secretary", mode="INDIRECTE")) == ""


def test_updates() -> None:
    rules.check_confidentiality_update(caller("gp"), PATIENT, DOC, {"N", "MASQUE_PS"})
    hidden = dataclasses.replace(DOC, confidentiality=("INVISIBLE_PATIENT", "N"))
    rules.check_confidentiality_update(caller("gp"), PATIENT, hidden, {"N"})
    assert refused(rules.check_confidentiality_update, caller("gp"), PATIENT, DOC, {"N", "INVISIBLE_PATIENT"})
    assert refused(rules.check_confidentiality_update, caller("gp"), PATIENT, DOC, {"MASQUE_PS"})
    rules.check_status_change(caller("gp"), DOC, APPROVED, ARCHIVED)
    assert refused(rules.check_status_change, caller("gp"), DOC, APPROVED, DELETED).code == "DMPAccessDenied"
    rules.check_status_change(caller("specialist"), DOC, APPROVED, DELETED)
    assert (
        refused(rules.check_status_change, caller("gp"), DOC, ARCHIVED, APPROVED).code
        == "XDSMetadataUpdateError"
    )
