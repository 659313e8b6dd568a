"""VIHF verification over real HTTPS: every refusal is a SOAP fault with its French reason, traced, and the
accepted VIHFs produce the right Caller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from sandbox import profiles
from tests.fixtures.sandbox import SAML, TEST_INS, VihfSpec, build_vihf, sign_vihf, soap_fault
from tests.sandbox.server.bodies import find_documents


def call(wire, spec=None, *, vihf=None, who=None, sign=None):
    return wire.call("TD3.1", find_documents(), spec=spec, vihf=vihf, who=who, sign=sign)


def refused(response, *words):
    assert response.status_code == 400, response.text
    code, _sub, reason = soap_fault(response)
    assert code == "soap:Sender"
    for w in words:
        assert w in reason, reason
    return reason


# -- accepted ---------------------------------------------------------------------------------------------
def test_direct_unsigned_gp(recording):
    _running, service, wire = recording
    assert call(wire).status_code == 200
    c = service.requests[-1].caller
    assert (c.id_nat, c.mode, c.purpose, c.vihf_signed) == ("899700000013", "DIRECTE", "normal", False)
    assert (c.profession_code, c.specialty_code, c.structure_id, c.sector) == (
        "10",
        "SM26",
        "380000000100017",
        "SA07",
    )
    assert (c.patient_ins, c.patient_oid) == (TEST_INS, "1.2.250.1.213.1.4.10")
    assert c.family_name == "MEDECIN-GENERALISTE" and c.lps_name == "TESTS-SANDBOX" and not c.is_regulator
    assert "899700000013" in c.tls_subject


@pytest.mark.parametrize("sha1", [False, True], ids=["rsa-sha256", "rsa-sha1"])
def test_direct_signed_with_card_signature_certificate(recording, sha1):
    _running, service, wire = recording
    r = call(wire, vihf=wire.vihf(VihfSpec(), sign=True, sha1=sha1), who="gp")
    assert r.status_code == 200, r.text
    assert service.requests[-1].caller.vihf_signed


def test_indirect_secretary_signed_by_establishment(recording):
    _running, service, wire = recording
    spec = VihfSpec(profile="secretary", mode="INDIRECTE", subject_id="Marie SECRETAIRE")
    assert call(wire, spec).status_code == 200
    c = service.requests[-1].caller
    assert c.mode == "INDIRECTE" and c.non_ps_role == "SECRETARIAT_MEDICAL" and c.profession_code == ""
    assert c.structure_id == profiles.ESTABLISHMENT.structure_id and c.vihf_signed
    assert (c.given_name, c.family_name) == ("Marie", "SECRETAIRE")


def test_indirect_renforcee_specialist(recording):
    _running, service, wire = recording
    spec = VihfSpec(profile="specialist", mode="INDIRECTE_RENFORCEE")
    assert call(wire, spec).status_code == 200
    c = service.requests[-1].caller
    assert c.mode == "INDIRECTE_RENFORCEE" and c.specialty_code == "SM04"


def test_pharmacist_specialty_section(recording):
    _running, service, wire = recording
    assert call(wire, VihfSpec(profile="pharmacist")).status_code == 200
    assert service.requests[-1].caller.profession_code == "21"


def test_bris_de_glace_in_direct_mode_with_reason(recording):
    _running, service, wire = recording
    r = call(wire, VihfSpec(purpose="bris_de_glace", reason="Patient inconscient aux urgences"))
    assert r.status_code == 200
    c = service.requests[-1].caller
    assert c.purpose == "bris_de_glace" and c.reason == "Patient inconscient aux urgences"


def test_centre_15_for_the_regulator(recording):
    _running, service, wire = recording
    assert call(wire, VihfSpec(profile="regulator", purpose="centre_15")).status_code == 200
    assert service.requests[-1].caller.is_regulator


def test_secret_minor_connection_code(recording):
    _running, service, wire = recording
    spec = VihfSpec(confidentiality="INVISIBLE_REPRESENTANTS_LEGAUX^1.2.250.1.213.1.1.4.13")
    assert call(wire, spec).status_code == 200
    assert service.requests[-1].caller.confidentiality == "INVISIBLE_REPRESENTANTS_LEGAUX"


def test_td04_without_patient(recording):
    _running, service, wire = recording
    pat = "urn:si-dmp-patients"
    body = etree.Element(f"{{{pat}}}patientList", nsmap={None: pat})
    r = wire.call("TD0.4", body, spec=VihfSpec(patient_ins=None))
    assert r.status_code == 200, r.text
    assert service.requests[-1].caller.patient_ins is None


# -- signature and certificates -----------------------------------------------------------------------------
def test_unsigned_vihf_refused_in_indirect_mode(recording):
    _running, service, wire = recording
    r = call(wire, VihfSpec(profile="secretary", mode="INDIRECTE"), sign=False)
    refused(r, "non signé", "INDIRECTE")
    assert "non signé" in service.refusals[-1][3]


def test_tampered_vihf_refused(recording):
    _running, _service, wire = recording
    vihf = wire.vihf(VihfSpec(profile="secretary", mode="INDIRECTE"))
    for av in vihf.iter(f"{{{SAML}}}AttributeValue"):
        if av.text == "3.0":
            av.text = "4.0"  # a signed value changed after signing
    refused(call(wire, vihf=vihf, who="establishment"), "signature du VIHF est invalide")


def test_vihf_signed_with_authentication_certificate_refused(recording, test_pki):
    _running, _service, wire = recording
    holder = test_pki.card("gp")
    vihf = sign_vihf(
        build_vihf(VihfSpec(), holder.auth_cert.subject.rfc4514_string()), holder.auth_cert, holder.auth_key
    )
    refused(call(wire, vihf=vihf, who="gp"), "Not a valid signature certificate")


def test_vihf_signed_by_another_pki_refused(recording, foreign_pki):
    _running, _service, wire = recording
    org = foreign_pki.establishment
    vihf = sign_vihf(
        build_vihf(VihfSpec(profile="secretary", mode="INDIRECTE"), org.sign_cert.subject.rfc4514_string()),
        org.sign_cert,
        org.sign_key,
    )
    refused(call(wire, vihf=vihf, who="establishment"), "autorité de confiance")


def test_vihf_signed_with_expired_certificate_refused(recording, test_pki):
    _running, _service, wire = recording
    expired = test_pki.card("expired")
    spec = VihfSpec()
    vihf = sign_vihf(
        build_vihf(spec, expired.sign_cert.subject.rfc4514_string()), expired.sign_cert, expired.sign_key
    )
    refused(call(wire, vihf=vihf, who="gp"), "expiré")


def test_direct_vihf_signed_by_another_holder_refused(recording, test_pki):
    _running, _service, wire = recording
    nurse = test_pki.card("nurse")
    vihf = sign_vihf(
        build_vihf(VihfSpec(), nurse.sign_cert.subject.rfc4514_string()), nurse.sign_cert, nurse.sign_key
    )
    refused(call(wire, vihf=vihf, who="gp"), "même professionnel")


def test_direct_tls_certificate_of_another_card_refused(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(profile="gp"), who="nurse"), "Mode DIRECTE", "899700000013")


def test_direct_mode_with_establishment_tls_refused(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(profile="gp"), who="establishment"), "Mode DIRECTE")


def test_indirect_mode_with_card_tls_refused(recording):
    _running, _service, wire = recording
    refused(
        call(wire, VihfSpec(profile="secretary", mode="INDIRECTE"), who="gp"), "établissement (ORG AUTH_CLI)"
    )


def test_indirect_vihf_signed_by_a_card_refused(recording, test_pki):
    _running, _service, wire = recording
    gp = test_pki.card("gp")
    spec = VihfSpec(
        profile="gp", mode="INDIRECTE", structure_id=profiles.ESTABLISHMENT.structure_id, sector="SA01"
    )
    vihf = sign_vihf(build_vihf(spec, gp.sign_cert.subject.rfc4514_string()), gp.sign_cert, gp.sign_key)
    refused(call(wire, vihf=vihf, who="establishment"), "ORG SIGN")


def test_issuer_must_match_the_certificate(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(issuer="CN=QUELQU'UN D'AUTRE,C=FR")), "saml2:Issuer")


def test_issuer_compared_as_a_parsed_dn(recording, test_pki):
    """Review note 7: attribute order and keyword vs dotted OID do not matter."""
    _running, _service, wire = recording
    subject = test_pki.card("gp").auth_cert.subject
    reordered = ",".join(reversed(subject.rfc4514_string().split(",")))
    assert call(wire, VihfSpec(issuer=reordered)).status_code == 200


# -- structure and attributes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "Identifiant_Structure",
        "Secteur_Activite",
        "urn:oasis:names:tc:xacml:2.0:subject:role",
        "VIHF_Version",
        "Authentification_mode",
        "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
        "Ressource_URN",
        "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
        "LPS_Nom",
        "LPS_Version",
        "LPS_ID_HOMOLOGATION_DMP",
    ],
)
def test_missing_mandatory_attribute(recording, name):
    _running, service, wire = recording
    refused(call(wire, VihfSpec(omit={name})), "Attribut obligatoire absent du VIHF", name)
    assert name in service.refusals[-1][3]


def test_subject_id_mandatory_in_indirect_mode(recording):
    _running, _service, wire = recording
    spec = VihfSpec(
        profile="secretary", mode="INDIRECTE", omit={"urn:oasis:names:tc:xspa:1.0:subject:subject-id"}
    )
    refused(call(wire, spec), "subject-id")


def test_missing_name_id_and_issuer(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(omit={"NameID"})), "NameID")
    refused(call(wire, VihfSpec(omit={"Issuer"})), "Issuer")


@pytest.mark.parametrize("profile", ["gp", "pharmacist"])
def test_missing_specialty(recording, profile):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(profile=profile, specialty_code="")), "Aucune spécialité dans le vihf")


def test_nurse_needs_no_specialty(recording):
    _running, _service, wire = recording
    assert call(wire, VihfSpec(profile="nurse")).status_code == 200


def test_structure_not_linked_to_the_card(recording):
    _running, _service, wire = recording
    refused(
        call(wire, VihfSpec(structure_id=profiles.HOPITAL.structure_id, sector="SA01")),
        "PS et Structure non liés",
    )


def test_unknown_structure(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(structure_id="3" + "99999999999999")), "Structure introuvable ou inactive")


def test_sector_inconsistent_with_card_activity(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(sector="SA01")), "Secteur d'activité SA01 incohérent")


def test_profession_inconsistent_with_card(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(profession_code="60", specialty_code="")), "profession du VIHF")


def test_specialty_inconsistent_with_card(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(specialty_code="SM04")), "spécialité du VIHF")


def test_indirect_structure_must_be_the_establishment(recording):
    _running, _service, wire = recording
    spec = VihfSpec(
        profile="secretary", mode="INDIRECTE", structure_id=profiles.CABINET.structure_id, sector="SA07"
    )
    refused(call(wire, spec), "certificat de l'établissement")


def test_bris_de_glace_refused_in_indirect_mode(recording):
    _running, _service, wire = recording
    spec = VihfSpec(profile="specialist", mode="INDIRECTE", purpose="bris_de_glace", reason="urgence")
    refused(call(wire, spec), "bris de glace", "directe")


def test_centre_15_refused_for_a_non_regulator(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(profile="gp", purpose="centre_15")), "centre 15", "régulateurs")


def test_unknown_purpose(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(purpose="curiosite")), "purposeofuse")


@pytest.mark.parametrize(
    ("ins", "oid", "words"),
    [
        (
            TEST_INS[:-2] + f"{(int(TEST_INS[-2:]) + 1) % 100:02d}",
            "1.2.250.1.213.1.4.10",
            ["clé de contrôle"],
        ),
        (TEST_INS, "1.2.3.4", ["Autorité d'affectation"]),
        ("12345", "1.2.250.1.213.1.4.10", ["15 caractères"]),
    ],
    ids=["bad-key", "unknown-oid", "too-short"],
)
def test_bad_patient_ins(recording, ins, oid, words):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(patient_ins=ins, patient_oid=oid)), *words)


def test_unsupported_vihf_version(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(version="9.9")), "Version de VIHF")


def test_stale_and_future_vihf(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(issue_instant=datetime.now(UTC) - timedelta(days=1))), "périmé")
    refused(call(wire, VihfSpec(issue_instant=datetime.now(UTC) + timedelta(hours=1))), "futur")


def test_bad_confidentiality_code(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(confidentiality="MASQUE_PS^1.2.250.1.213.1.1.4.13")), "confidentialité")


def test_signature_wrapping_is_refused(recording):
    """A valid signed assertion moved aside and replaced by a forged one must not pass."""
    _running, _service, wire = recording
    genuine = wire.vihf(VihfSpec(profile="secretary", mode="INDIRECTE"))
    forged = etree.fromstring(etree.tostring(genuine))
    for av in forged.iter(f"{{{SAML}}}AttributeValue"):
        if av.text == "SECRETAIRE" or (av.text or "").endswith("SECRETAIRE"):
            av.text = "Jean IMPOSTEUR"
    forged.set("ID", "_forged")
    refused(call(wire, vihf=forged, who="establishment"), "signature du VIHF")


def test_cpe_card_in_direct_mode(recording):
    """A secretary with her CPE card: DIRECTE, non-PS role, structure of the card."""
    _running, service, wire = recording
    assert call(wire, VihfSpec(profile="secretary")).status_code == 200
    c = service.requests[-1].caller
    assert (
        c.non_ps_role == "SECRETARIAT_MEDICAL" and c.id_nat == "3990000018/SEC00001" and c.mode == "DIRECTE"
    )


def test_unknown_professional_in_direct_mode(recording):
    _running, _service, wire = recording
    refused(call(wire, VihfSpec(id_nat="899700009999"), who="gp"), "Mode DIRECTE")


def test_direct_tls_with_the_card_signature_certificate_refused(recording, test_pki):
    """TLS must use the card's authentication certificate, not its (non-repudiation) signature one."""
    _running, _service, wire = recording
    gp = test_pki.card("gp")
    env_vihf = wire.vihf(VihfSpec())
    from tests.fixtures.sandbox import ACTIONS, envelope

    service, action = ACTIONS["TD3.1"]
    env = envelope(action, find_documents(), env_vihf)
    r = wire.post(service, env, "application/soap+xml", cert=(str(gp.sign_cert_path), str(gp.sign_key_path)))
    refused(r, "certificat de signature")


def test_indirect_tls_with_the_org_signature_certificate_refused(recording, test_pki):
    _running, _service, wire = recording
    org = test_pki.establishment
    from tests.fixtures.sandbox import ACTIONS, envelope

    service, action = ACTIONS["TD3.1"]
    env = envelope(action, find_documents(), wire.vihf(VihfSpec(profile="secretary", mode="INDIRECTE")))
    r = wire.post(
        service, env, "application/soap+xml", cert=(str(org.sign_cert_path), str(org.sign_key_path))
    )
    refused(r, "certificat de signature", "ORG AUTH_CLI")


def test_direct_signed_vihf_over_the_signature_certificate_refused(recording, test_pki):
    _running, _service, wire = recording
    gp = test_pki.card("gp")
    from tests.fixtures.sandbox import ACTIONS, envelope

    service, action = ACTIONS["TD3.1"]
    env = envelope(action, find_documents(), wire.vihf(VihfSpec(), sign=True))
    r = wire.post(service, env, "application/soap+xml", cert=(str(gp.sign_cert_path), str(gp.sign_key_path)))
    refused(r, "certificat de signature", "de la carte")


# -- replay (issue 8) ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [VihfSpec(), VihfSpec(profile="secretary", mode="INDIRECTE")],
    ids=["direct-unsigned", "indirect-signed"],
)
def test_a_replayed_vihf_is_refused(recording, spec):
    _running, service, wire = recording
    vihf = wire.vihf(spec)
    assert call(wire, spec, vihf=vihf).status_code == 200
    served = len(service.requests)
    # the same assertion in a new envelope (new MessageID): refused, not handed to the domain layer
    refused(call(wire, spec, vihf=vihf), "déjà utilisé", "rejeu")
    assert len(service.requests) == served
    assert call(wire, spec).status_code == 200  # a fresh VIHF is fine


def test_the_replay_memory_is_bounded_and_never_accepts_a_replay():
    from sandbox.server.context import SoapFault
    from sandbox.server.vihf import ReplayCache

    cache = ReplayCache(max_entries=3, max_age=timedelta(hours=2))
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for n in range(4):
        cache.remember(f"_id{n}", t0 + timedelta(seconds=n), t0 + timedelta(seconds=n))
    assert len(cache) == 3
    now = t0 + timedelta(seconds=10)
    with pytest.raises(SoapFault, match="trop ancien"):  # forgotten, so refused rather than accepted
        cache.remember("_id0", t0, now)
    with pytest.raises(SoapFault, match="déjà utilisé"):
        cache.remember("_id3", t0 + timedelta(seconds=3), now)
    cache.remember("_id4", now, now)
    # once their validity is over, IDs are forgotten (the VIHF would be refused as too old anyway)
    later = t0 + timedelta(hours=2, seconds=30)
    cache.remember("_id5", later, later)
    assert len(cache) == 1


# -- centre 15 in indirect modes (dmp-protocol.md §1: only bris de glace is restricted to DIRECTE) -----------
@pytest.mark.parametrize("mode", ["INDIRECTE", "INDIRECTE_RENFORCEE"])
def test_centre_15_in_indirect_modes_for_a_regulator(recording, mode):
    _running, service, wire = recording
    spec = VihfSpec(
        profile="regulator",
        mode=mode,
        purpose="centre_15",
        structure_id=profiles.ESTABLISHMENT.structure_id,
        sector=profiles.ESTABLISHMENT.sector,
    )
    r = call(wire, spec)
    assert r.status_code == 200, r.text
    c = service.requests[-1].caller
    assert (c.mode, c.purpose, c.is_regulator) == (mode, "centre_15", True)
    # still reserved to regulators, and bris de glace still DIRECTE only
    refused(call(wire, VihfSpec(profile="secretary", mode=mode, purpose="centre_15")), "régulateurs")
    refused(call(wire, VihfSpec(profile="specialist", mode=mode, purpose="bris_de_glace")), "directe")
