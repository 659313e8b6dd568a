# ruff: noqa: E501 - the rule tables read best one case per line
"""Access policy: every rule decided before the call, with its rule id and its French message."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ps_agent.access import (
    BRIS_DE_GLACE_MIN_REASON,
    AccessMode,
    AccessPolicy,
    Action,
    AuthenticationRequired,
    ConsentRequired,
    DepositNotAllowed,
    DmpState,
    EmergencyAccessDenied,
    ForbiddenPurpose,
    HabilitationDenied,
    IdentityNotQualified,
    NoActiveDmp,
    PatientBlockedAccess,
    PatientRef,
    RoleNotAllowed,
)
from ps_agent.access.policy import MSG_BTG_OPPOSED, NOTICE_BTG
from ps_agent.auth.model import Activity, AuthMode, ProfessionalIdentity
from ps_agent.errors import AccessDenied, PsAgentError
from sandbox.demo import DEMO_ADULT
from sandbox.profiles import PROFILES

D, IND, AIR = AuthMode.DIRECTE, AuthMode.INDIRECTE, AuthMode.INDIRECTE_RENFORCEE
PATIENT = PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid)
AUTHORISED = DmpState(exists=True, authorised=True)
NO_AUTH = DmpState(exists=True, authorised=None)
BLOCKED = DmpState(exists=True, authorised=False)
REASON = "Patient inconscient, détresse respiratoire aiguë"


def identity(profile: str) -> ProfessionalIdentity:
    p = PROFILES[profile]
    s = p.situations[0]
    return ProfessionalIdentity(
        id_nat=p.id_nat,
        family_name=p.family_name,
        given_name=p.given_name,
        profession_code=p.profession_code,
        profession_label=p.profession_label,
        specialty_code=p.specialty_code,
        card_type=p.card_type,
        non_ps_role="SECRETARIAT_MEDICAL" if not p.profession_code else "",
        activity=Activity(s.structure_id, s.structure_name, s.sector, s.role),
    )


GP, PHARMACIST, NURSE, SECRETARY, REGULATOR = (
    identity("gp"),
    identity("pharmacist"),
    identity("nurse"),
    identity("secretary"),
    identity("regulator"),
)


@pytest.fixture(scope="module")
def policy() -> AccessPolicy:
    return AccessPolicy()


def decide(
    policy: AccessPolicy, action: Action, who: ProfessionalIdentity = GP, mode: AuthMode = D, **kw: object
):
    kw.setdefault("patient", PATIENT)
    return policy.decide(action, identity=who, mode=mode, **kw)  # type: ignore[arg-type]


# (case id, action, identity, mode, kwargs, rule id, log code, exception class, message fragment)
REFUSALS = [
    ("anonymous user", Action.SEARCH, ProfessionalIdentity("", "", "", "10"), D, {"dmp": AUTHORISED},
     "AUTH-01", "DENIED_AUTH", AuthenticationRequired, "Authentification individuelle requise."),
    ("insurance purpose", Action.SEARCH, GP, D, {"dmp": AUTHORISED, "purpose": "assurance"},
     "GEN-03", "DENIED_PURPOSE", ForbiddenPurpose, "art. L1111-18 CSP"),
    ("no INS", Action.DEPOSIT, GP, D, {"patient": PatientRef("", DEMO_ADULT.oid)},
     "ID-01", "DENIED_INS", IdentityNotQualified, "Identifiant INS du patient absent ou invalide"),
    ("INS-C OID", Action.DEPOSIT, GP, D, {"patient": PatientRef(DEMO_ADULT.ins, "1.2.250.1.213.1.4.2")},
     "ID-01", "DENIED_INS", IdentityNotQualified, "Identifiant INS du patient absent ou invalide"),
    ("bad NIR key", Action.DEPOSIT, GP, D, {"patient": PatientRef(DEMO_ADULT.ins[:13] + "00", DEMO_ADULT.oid)},
     "ID-01", "DENIED_INS", IdentityNotQualified, "Identifiant INS du patient absent ou invalide"),
    ("provisional identity deposit", Action.DEPOSIT, GP, D,
     {"patient": PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid, "PROV")},
     "ID-02", "DENIED_INS", IdentityNotQualified, "Identité non qualifiée : envoi au DMP impossible."),
    ("recovered identity deposit", Action.DEPOSIT, GP, D,
     {"patient": PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid, "RECUP")},
     "ID-02", "DENIED_INS", IdentityNotQualified, "Qualifiez l'identité (INSi + pièce d'identité"),
    ("validated identity search", Action.SEARCH, GP, D,
     {"patient": PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid, "VALI"), "dmp": AUTHORISED},
     "ID-02", "DENIED_INS", IdentityNotQualified, "Identité non qualifiée"),
    ("secretary search", Action.SEARCH, SECRETARY, AIR, {"dmp": AUTHORISED},
     "AUTH-04", "DENIED_ROLE", RoleNotAllowed, "Consultation réservée aux professionnels prenant en charge le patient."),
    ("secretary retrieve", Action.RETRIEVE, SECRETARY, AIR, {"dmp": AUTHORISED},
     "AUTH-04", "DENIED_ROLE", RoleNotAllowed, "Consultation réservée"),
    ("secretary consent", Action.CONSENT, SECRETARY, AIR, {"dmp": NO_AUTH},
     "AUTH-04", "DENIED_ROLE", RoleNotAllowed, "Consultation réservée"),
    ("secretary emergency", Action.EMERGENCY, SECRETARY, D,
     {"dmp": NO_AUTH, "access_mode": AccessMode.BRIS_DE_GLACE, "reason": REASON},
     "AUTH-04", "DENIED_ROLE", RoleNotAllowed, "Consultation réservée"),
    ("plain indirect consultation", Action.SEARCH, GP, IND, {"dmp": AUTHORISED},
     "AUTH-03", "DENIED_AUTH", AuthenticationRequired, "authentification renforcée"),
    ("background consultation", Action.SEARCH, GP, D, {"dmp": AUTHORISED, "background": True},
     "AUTH-03", "DENIED_AUTH", AuthenticationRequired, "tâche de fond"),
    ("no DMP: deposit", Action.DEPOSIT, GP, D, {"dmp": DmpState(exists=False)},
     "PAT-06", "DMP_ABSENT", NoActiveDmp, "Ce patient n'a pas de DMP actif (opposition ou clôture)."),
    ("closed DMP: search", Action.SEARCH, GP, D, {"dmp": DmpState(exists=True, closed=True, authorised=True)},
     "PAT-06", "DMP_ABSENT", NoActiveDmp, "Aucun document ne sera envoyé."),
    ("opposed DMP: consent", Action.CONSENT, GP, D, {"dmp": DmpState(exists=True, opposed=True)},
     "PAT-06", "DMP_ABSENT", NoActiveDmp, "n'a pas de DMP actif"),
    ("blocked: search", Action.SEARCH, NURSE, D, {"dmp": BLOCKED},
     "PAT-01", "DENIED_BLOCKED", PatientBlockedAccess,
     "Le patient a bloqué votre accès à son dossier. Vous pouvez toujours y déposer des documents."),
    ("blocked: consent", Action.CONSENT, NURSE, D, {"dmp": BLOCKED},
     "PAT-01", "DENIED_BLOCKED", PatientBlockedAccess, "Le patient a bloqué votre accès"),
    ("no authorisation: search", Action.SEARCH, GP, D, {"dmp": NO_AUTH},
     "ACC-03", "NEED_CONSENT", ConsentRequired, "Le patient doit donner son accord avant la consultation."),
    ("no authorisation: retrieve", Action.RETRIEVE, PHARMACIST, D, {"dmp": NO_AUTH},
     "ACC-03", "NEED_CONSENT", ConsentRequired, "accord"),
    ("bris de glace in AIR", Action.SEARCH, GP, AIR,
     {"dmp": NO_AUTH, "access_mode": AccessMode.BRIS_DE_GLACE, "reason": REASON},
     "URG-01", "DENIED_EMERGENCY_MODE", EmergencyAccessDenied, "qu'avec votre carte CPS"),
    ("bris de glace without reason", Action.EMERGENCY, GP, D,
     {"dmp": NO_AUTH, "access_mode": AccessMode.BRIS_DE_GLACE},
     "URG-02", "DENIED_EMERGENCY_REASON", EmergencyAccessDenied, f"au moins {BRIS_DE_GLACE_MIN_REASON} caractères"),
    ("bris de glace short reason", Action.RETRIEVE, GP, D,
     {"dmp": NO_AUTH, "access_mode": AccessMode.BRIS_DE_GLACE, "reason": "  urgence vitale  "},
     "URG-02", "DENIED_EMERGENCY_REASON", EmergencyAccessDenied, "motif de l'accès en urgence"),
    ("bris de glace opposed", Action.EMERGENCY, GP, D,
     {"dmp": DmpState(exists=True, emergency_opposed=True), "access_mode": AccessMode.BRIS_DE_GLACE,
      "reason": REASON},
     "URG-01", "DENIED_EMERGENCY_OPT_OUT", EmergencyAccessDenied, MSG_BTG_OPPOSED),
    ("bris de glace blocked PS", Action.EMERGENCY, NURSE, D,
     {"dmp": BLOCKED, "access_mode": AccessMode.BRIS_DE_GLACE, "reason": REASON},
     "PAT-01", "DENIED_BLOCKED", PatientBlockedAccess, "l'accès en urgence n'est pas possible"),
    ("emergency without a mode", Action.EMERGENCY, GP, D, {"dmp": NO_AUTH},
     "URG-01", "DENIED_EMERGENCY_MODE", EmergencyAccessDenied, "bris de glace ou régulation"),
    ("centre 15 by a GP", Action.SEARCH, GP, D, {"dmp": NO_AUTH, "access_mode": AccessMode.CENTRE_15},
     "URG-06", "DENIED_ROLE", EmergencyAccessDenied, "réservé au médecin régulateur"),
    ("centre 15 deposit", Action.DEPOSIT, REGULATOR, D, {"dmp": NO_AUTH, "access_mode": AccessMode.CENTRE_15},
     "URG-06", "DENIED_REGULATION_WRITE", EmergencyAccessDenied, "seule la consultation est permise"),
    ("centre 15 mask", Action.MASK, REGULATOR, D, {"dmp": NO_AUTH, "access_mode": AccessMode.CENTRE_15},
     "URG-06", "DENIED_REGULATION_WRITE", EmergencyAccessDenied, "aucun dépôt ni modification"),
    ("centre 15 opposed", Action.SEARCH, REGULATOR, D,
     {"dmp": DmpState(exists=True, emergency_opposed=True), "access_mode": AccessMode.CENTRE_15},
     "URG-06", "DENIED_EMERGENCY_OPT_OUT", EmergencyAccessDenied, "opposé à l'accès en urgence"),
    ("patient document type", Action.DEPOSIT, GP, D, {"dmp": AUTHORISED, "type_code": "DOCPAT01"},
     "DEP-02", "DENIED_TYPE", DepositNotAllowed, "ne peut pas être déposé par un professionnel de santé"),
    ("residence certificate by a GP (confirmed row)", Action.RETRIEVE, GP, D,
     {"dmp": AUTHORISED, "type_code": "ATTEST-RESID"},
     "HAB-03", "DENIED_MATRIX", HabilitationDenied,
     "Les médecins n'ont pas accès aux documents « Attestation de résidence »"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("action", "who", "mode", "kw", "rule_id", "log_code", "exc_type", "fragment"),
    [pytest.param(*c[1:], id=c[0]) for c in REFUSALS],
)
def test_refusals(
    policy: AccessPolicy,
    action: Action,
    who: ProfessionalIdentity,
    mode: AuthMode,
    kw: dict[str, object],
    rule_id: str,
    log_code: str,
    exc_type: type[AccessDenied],
    fragment: str,
) -> None:
    decision = decide(policy, action, who, mode, **kw)
    assert not decision.allowed
    assert (decision.rule_id, decision.log_code) == (rule_id, log_code)
    assert fragment in decision.message_fr
    with pytest.raises(exc_type) as info:
        policy.check(action, identity=who, mode=mode, **{"patient": PATIENT, **kw})
    err = info.value
    assert isinstance(err, AccessDenied) and isinstance(err, PsAgentError)
    assert err.rule_id == err.code == rule_id
    assert err.message_fr == decision.message_fr and err.log_code == log_code


def test_consent_refusal_offers_to_record_consent(policy: AccessPolicy) -> None:
    decision = decide(policy, Action.SEARCH, dmp=NO_AUTH)
    assert decision.needs_consent and "enregistrez son consentement" in decision.notice_fr
    with pytest.raises(ConsentRequired) as info:
        policy.check(Action.SEARCH, identity=GP, mode=D, patient=PATIENT, dmp=NO_AUTH)
    assert info.value.needs_consent
    # The blocked professional is not offered to record consent: the patient's will is explicit.
    assert not decide(policy, Action.SEARCH, NURSE, dmp=BLOCKED).needs_consent


# (case id, action, identity, mode, kwargs, rule id)
ALLOWED = [
    ("authorised search", Action.SEARCH, GP, D, {"dmp": AUTHORISED}, "ACC-02"),
    ("authorised search in AIR", Action.SEARCH, GP, AIR, {"dmp": AUTHORISED}, "ACC-02"),
    ("médecin traitant without authorisation", Action.RETRIEVE, GP, D,
     {"dmp": DmpState(exists=True, is_medecin_traitant=True)}, "MT-01"),
    ("deposit without authorisation", Action.DEPOSIT, GP, D, {"dmp": NO_AUTH, "type_code": "11490-0"}, "ACC-07"),
    ("blocked PS may still deposit", Action.DEPOSIT, NURSE, D, {"dmp": BLOCKED}, "ACC-07"),
    ("secretary deposits in AIR", Action.DEPOSIT, SECRETARY, AIR, {"dmp": NO_AUTH, "type_code": "11490-0"}, "ACC-07"),
    ("secretary deposits in plain indirect", Action.DEPOSIT, SECRETARY, IND, {"dmp": NO_AUTH}, "ACC-07"),
    ("secretary status test", Action.STATUS, SECRETARY, AIR, {}, "ACC-03"),
    ("status on a closed DMP", Action.STATUS, GP, D, {"dmp": DmpState(exists=True, closed=True)}, "ACC-03"),
    ("status before anything else", Action.STATUS, GP, D, {}, "ACC-03"),
    ("record consent", Action.CONSENT, GP, D, {"dmp": NO_AUTH}, "ACC-03"),
    ("background deposit", Action.DEPOSIT, GP, D, {"dmp": NO_AUTH, "background": True}, "ACC-07"),
    ("search before TD0.2: the DMP decides", Action.SEARCH, GP, D, {}, "GEN-01"),
    ("bris de glace", Action.EMERGENCY, GP, D,
     {"dmp": NO_AUTH, "access_mode": AccessMode.BRIS_DE_GLACE, "reason": REASON}, "URG-04"),
    ("bris de glace reason of exactly the minimum", Action.SEARCH, GP, D,
     {"dmp": NO_AUTH, "access_mode": AccessMode.BRIS_DE_GLACE, "reason": "x" * BRIS_DE_GLACE_MIN_REASON}, "URG-04"),
    ("centre 15 regulator", Action.SEARCH, REGULATOR, D, {"dmp": NO_AUTH, "access_mode": AccessMode.CENTRE_15},
     "URG-06"),
    ("centre 15 regulator retrieve in AIR", Action.RETRIEVE, REGULATOR, AIR,
     {"dmp": NO_AUTH, "access_mode": AccessMode.CENTRE_15}, "URG-06"),
    ("mask own document", Action.MASK, GP, D, {"dmp": AUTHORISED}, "GEN-01"),
    ("delete by a secretary", Action.DELETE, SECRETARY, AIR, {"dmp": AUTHORISED}, "GEN-01"),
    ("care purpose", Action.SEARCH, GP, D, {"dmp": AUTHORISED, "purpose": "soins"}, "ACC-02"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("action", "who", "mode", "kw", "rule_id"), [pytest.param(*c[1:], id=c[0]) for c in ALLOWED]
)
def test_allowed(
    policy: AccessPolicy,
    action: Action,
    who: ProfessionalIdentity,
    mode: AuthMode,
    kw: dict[str, object],
    rule_id: str,
) -> None:
    decision = decide(policy, action, who, mode, **kw)
    assert decision.allowed, decision
    assert decision.rule_id == rule_id and decision.log_code == ""
    assert policy.check(action, identity=who, mode=mode, **{"patient": PATIENT, **kw}) == decision


def test_bris_de_glace_notice_tells_who_will_be_informed(policy: AccessPolicy) -> None:
    decision = decide(
        policy, Action.EMERGENCY, dmp=NO_AUTH, access_mode=AccessMode.BRIS_DE_GLACE, reason=REASON
    )
    assert decision.notice_fr == NOTICE_BTG
    assert "le patient et son médecin traitant seront informés de cet accès" in decision.notice_fr


def test_status_needs_a_qualified_identity_too(policy: AccessPolicy) -> None:
    """ID-02: the INS matricule may only be sent for a qualified identity, even for TD0.2."""
    decision = decide(policy, Action.STATUS, patient=PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid, "PROV"))
    assert not decision.allowed and decision.rule_id == "ID-02"


def test_string_arguments_are_accepted(policy: AccessPolicy) -> None:
    decision = policy.decide(
        "search", identity=GP, mode="DIRECTE", patient=PATIENT, dmp=AUTHORISED, access_mode="normal"
    )
    assert decision.allowed


# -- habilitation matrix ------------------------------------------------------------------------------


def test_inferred_matrix_refusal_does_not_block_but_explains(policy: AccessPolicy) -> None:
    """HAB-03: the pharmacist row for imaging is INFERRED: let the DMP decide, explain in the notice."""
    decision = decide(policy, Action.RETRIEVE, PHARMACIST, dmp=AUTHORISED, type_code="18748-4")
    assert decision.allowed
    assert "Les pharmaciens n'ont pas accès" in decision.notice_fr
    assert "Imagerie médicale" in decision.notice_fr


def test_hidden_types_are_explained(policy: AccessPolicy) -> None:
    sentences = policy.hidden_types_explanation(PHARMACIST)
    assert "Les pharmaciens n'ont pas accès aux documents de la classe « Imagerie médicale »." in sentences
    assert all(s.startswith("Les pharmaciens") for s in sentences)
    gp = policy.hidden_types_explanation(GP)
    assert any("Attestation de résidence" in s for s in gp)
    assert policy.hidden_types_explanation(SECRETARY) == [
        "Consultation réservée aux professionnels prenant en charge le patient."
    ]


@dataclass
class _Rule:
    status: str


@dataclass
class _Answer:
    read: bool
    write: bool
    rule: _Rule | None


class FakeMatrix:
    """A matrix where pharmacists cannot read hospital reports (confirmed) and nobody writes 'X-RO'."""

    def __init__(self) -> None:
        self.roles: list[str] = []

    def decide(self, profession: str, specialty: str, type_code: str, *, role: str = "") -> _Answer:
        self.roles.append(role)
        if type_code == "UNKNOWN":
            raise KeyError(type_code)
        if profession == "21" and type_code == "34112-3":
            return _Answer(False, False, _Rule("read=CONFIRMED; write=CONFIRMED"))
        if type_code == "X-RO":
            return _Answer(True, False, _Rule("read=CONFIRMED; write=CONFIRMED"))
        return _Answer(True, True, _Rule("read=INFERRED; write=INFERRED"))

    def explain(
        self, profession: str, specialty: str, type_code: str, *, action: str = "read", role: str = ""
    ) -> str:
        if action == "write":
            return "Les médecins ne peuvent pas déposer de documents « X-RO »."
        return "Les pharmaciens n'ont pas accès aux comptes rendus d'hospitalisation."


def test_confirmed_matrix_refusal_blocks_and_explains() -> None:
    policy = AccessPolicy(FakeMatrix())
    decision = decide(policy, Action.RETRIEVE, PHARMACIST, dmp=AUTHORISED, type_code="34112-3")
    assert not decision.allowed and decision.rule_id == "HAB-03"
    assert "Les pharmaciens n'ont pas accès aux comptes rendus d'hospitalisation." in decision.message_fr
    assert "matrice d'habilitation" in decision.message_fr
    with pytest.raises(HabilitationDenied):
        policy.check(
            Action.RETRIEVE, identity=PHARMACIST, mode=D, patient=PATIENT, dmp=AUTHORISED, type_code="34112-3"
        )
    write = decide(policy, Action.DEPOSIT, GP, dmp=AUTHORISED, type_code="X-RO")
    assert not write.allowed and write.rule_id == "HAB-01" and "ne peuvent pas déposer" in write.message_fr
    assert decide(policy, Action.RETRIEVE, GP, dmp=AUTHORISED, type_code="34112-3").allowed


def test_unknown_type_code_lets_the_dmp_decide() -> None:
    policy = AccessPolicy(FakeMatrix())
    decision = decide(policy, Action.RETRIEVE, PHARMACIST, dmp=AUTHORISED, type_code="UNKNOWN")
    assert decision.allowed and decision.notice_fr == ""


def test_role_rows_apply_only_when_the_role_is_established() -> None:
    matrix = FakeMatrix()
    policy = AccessPolicy(matrix)
    decide(
        policy, Action.RETRIEVE, REGULATOR, dmp=NO_AUTH, access_mode=AccessMode.CENTRE_15, type_code="11490-0"
    )
    decide(policy, Action.RETRIEVE, GP, dmp=DmpState(True, is_medecin_traitant=True), type_code="11490-0")
    decide(policy, Action.RETRIEVE, GP, dmp=AUTHORISED, type_code="11490-0")
    assert list(dict.fromkeys(matrix.roles)) == ["REGULATEUR", "MEDECIN_TRAITANT", ""]


def test_no_matrix_available_never_blocks() -> None:
    policy = AccessPolicy()
    policy._matrix = None  # as if cda.habilitations were absent
    assert decide(policy, Action.RETRIEVE, GP, dmp=AUTHORISED, type_code="ATTEST-RESID").allowed
    assert policy.hidden_types_explanation(PHARMACIST) == []
