"""VIHF construction and signature (dmp-protocol.md §6) checked with signxml and the official schemas."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import XMLVerifier

from ps_agent.auth.model import Activity, AuthMode, ProfessionalIdentity
from ps_agent.dmp import envelope, vihf
from ps_agent.dmp.errors import ProtocolError
from ps_agent.dmp.xmlns import HL7, SAML2, q
from tests.fixtures.xmlsec import SAML2_ASSERTION, xmlsec1_verify_outcomes

from .conftest import make_signer


def _attrs(assertion: etree._Element) -> dict[str, list[etree._Element]]:
    out: dict[str, list[etree._Element]] = {}
    for a in assertion.iter(q(SAML2, "Attribute")):
        out[a.get("Name")] = list(a.iter(q(SAML2, "AttributeValue")))
    return out


@pytest.fixture(scope="module")
def offline_schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(file=str(shared_dir / "schemas/xds/offline-dmp.xsd"))


def test_direct_vihf_carries_card_activity_and_patient(gp, patient, lps, signer):
    a = vihf.build(vihf.VihfRequest(gp, AuthMode.DIRECTE, patient, lps), issuer="CN=899700000013,O=TEST,C=FR")
    attrs = _attrs(a)
    assert a.findtext(f"{q(SAML2, 'Subject')}/{q(SAML2, 'NameID')}") == "899700000013"
    assert attrs["Identifiant_Structure"][0].text == "380000000100017"
    assert attrs["Secteur_Activite"][0].text == "SA07^1.2.250.1.71.4.2.4"
    assert attrs["Authentification_mode"][0].text == "DIRECTE"
    assert attrs["urn:oasis:names:tc:xacml:2.0:resource:resource-id"][0].text == (
        "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    )
    roles = [v.find(q(HL7, "Role")) for v in attrs["urn:oasis:names:tc:xacml:2.0:subject:role"]]
    assert [(r.get("code"), r.get("codeSystem")) for r in roles] == [
        ("10", "1.2.250.1.71.1.2.7"),
        ("SM26", "1.2.250.1.71.4.2.5"),
    ]
    purpose = attrs["urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"][0].find(q(HL7, "PurposeOfUse"))
    assert purpose.get("code") == "normal"
    assert "urn:oasis:names:tc:xspa:1.0:subject:subject-id" not in attrs  # DIRECTE: no subject-id
    for name in ("LPS_Nom", "LPS_Version", "LPS_ID_HOMOLOGATION_DMP", "VIHF_Version"):
        assert attrs[name][0].text


def test_indirect_vihf_has_subject_id_and_air_adds_authn_decl(gp, patient, lps):
    secretary = ProfessionalIdentity(
        "3990000018/SEC00001",
        "SECRETAIRE",
        "MARIE",
        "",
        non_ps_role="SECRETARIAT_MEDICAL",
        activity=Activity("1990000018", "CH", "SA01"),
    )
    a = vihf.build(vihf.VihfRequest(secretary, AuthMode.INDIRECTE_RENFORCEE, patient, lps), issuer="CN=X")
    attrs = _attrs(a)
    assert attrs["urn:oasis:names:tc:xspa:1.0:subject:subject-id"][0].text == "MARIE SECRETAIRE"
    role = attrs["urn:oasis:names:tc:xacml:2.0:subject:role"][0].find(q(HL7, "Role"))
    assert (role.get("code"), role.get("codeSystem")) == ("SECRETARIAT_MEDICAL", "1.2.250.1.213.1.1.4.6")
    assert a.find(f".//{q(SAML2, 'AuthnContextDecl')}") is not None


def test_emergency_purpose(gp, patient, lps):
    a = vihf.build(
        vihf.VihfRequest(
            gp, AuthMode.DIRECTE, patient, lps, purpose=vihf.Purpose.BRIS_DE_GLACE, reason="x" * 30
        ),
        issuer="CN=X",
    )
    p = _attrs(a)["urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"][0].find(q(HL7, "PurposeOfUse"))
    assert p.get("code") == "bris_de_glace"
    assert p.get("codeSystem") == "1.2.250.1.213.1.1.4.248"


def test_identity_without_activity_is_refused(gp, patient, lps):
    from dataclasses import replace

    with pytest.raises(ProtocolError) as exc:
        vihf.build(
            vihf.VihfRequest(replace(gp, activity=None), AuthMode.DIRECTE, patient, lps), issuer="CN=X"
        )
    assert "situation d'exercice" in exc.value.message_fr


def test_signed_vihf_verifies_with_signxml_and_tamper_is_detected(gp, patient, lps, signer):
    issuer = vihf.issuer_dn(signer.certificate, gp)
    signed = vihf.sign(
        vihf.build(vihf.VihfRequest(gp, AuthMode.DIRECTE, patient, lps), issuer=issuer), signer
    )
    # Signature right after Issuer
    assert signed[1].tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    data = etree.tostring(signed)
    XMLVerifier().verify(data, x509_cert=signer.certificate, id_attribute="ID")
    tampered = data.replace(b"899700000013</saml2:NameID>", b"899700000021</saml2:NameID>")
    assert tampered != data
    with pytest.raises(Exception):
        XMLVerifier().verify(tampered, x509_cert=signer.certificate, id_attribute="ID")
    other = make_signer("someone-else")
    with pytest.raises(Exception):
        XMLVerifier().verify(data, x509_cert=other.certificate, id_attribute="ID")


def test_signed_envelope_validates_against_official_schemas(gp, patient, lps, signer, offline_schema):
    signed = vihf.sign(
        vihf.build(vihf.VihfRequest(gp, AuthMode.DIRECTE, patient, lps), issuer="CN=X"), signer
    )
    body = etree.Element("{urn:si-dmp-habilitations}setAuthorization")
    etree.SubElement(body, "{urn:si-dmp-habilitations}action").text = "AJOUT"
    data, mid = envelope.build("urn:x", "https://127.0.0.1/x", signed, body)
    root = etree.fromstring(data)
    assert offline_schema.validate(root), offline_schema.error_log
    assertion = root.find(f".//{q(SAML2, 'Assertion')}")
    assert offline_schema.validate(assertion), offline_schema.error_log
    # The signature survives embedding in the envelope
    XMLVerifier().verify(etree.tostring(assertion), x509_cert=signer.certificate, id_attribute="ID")
    assert mid.startswith("urn:uuid:")


@pytest.mark.parametrize("mode", [AuthMode.DIRECTE, AuthMode.INDIRECTE_RENFORCEE])
def test_direct_signature_is_signxml_s_byte_for_byte_and_xmlsec1_verifies_it(
    gp, patient, lps, signer, tmp_path, mode
):
    """``vihf.sign`` builds the XML-DSig itself (one exclusive C14N of the assertion, one of SignedInfo):
    the result is what signxml's XMLSigner makes for the same settings (PKCS#1 v1.5 is deterministic),
    and an outside implementation (xmlsec1) verifies it and refuses it once tampered."""
    assertion = vihf.build(vihf.VihfRequest(gp, mode, patient, lps), issuer="CN=X")
    reference = etree.tostring(vihf.sign_with_signxml(copy.deepcopy(assertion), signer))
    signed = etree.tostring(vihf.sign(assertion, signer))
    assert signed == reference
    XMLVerifier().verify(signed, x509_cert=signer.certificate, id_attribute="ID")
    tampered = signed.replace(b"899700000013</saml2:NameID>", b"899700000021</saml2:NameID>")
    assert tampered != signed
    outcomes = xmlsec1_verify_outcomes(
        signed,
        tampered,
        signer.certificate.public_bytes(serialization.Encoding.PEM),
        tmp_path,
        SAML2_ASSERTION,
    )
    assert outcomes[0] == (0, True), outcomes
    assert outcomes[1][0] != 0
