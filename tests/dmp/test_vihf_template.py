"""The VIHF assertion ``vihf.build`` makes is the assertion built element by element (``vihf.build_direct``)
byte for byte, with its own ID and instants, and signing one tree never changes another; the text
templates of ``vihf.assertion_xml`` write the same bytes, for any patient from one template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from ps_agent.auth.model import AuthMode
from ps_agent.dmp import vihf
from ps_agent.dmp.model import PatientId
from ps_agent.dmp.vihf import Purpose

TEST_OID = "1.2.250.1.213.1.4.10"
# Varied patients: INS of the test OID, another OID, and resource-ids whose text needs escapes (the type
# allows any string: ``& < >`` written as entities in both forms, quotes and non-ASCII as they are)
VARIED_PATIENTS = (
    PatientId("279035121518989", TEST_OID),
    PatientId("188075935022123", TEST_OID),
    PatientId("1990399999999", "1.2.250.1.213.1.4.8"),
    PatientId("A&B<C>D\"E'é]]>", "1.2.3&4"),
)


def _with_id(assertion: etree._Element, assertion_id: str) -> bytes:
    assertion.set("ID", assertion_id)
    return etree.tostring(assertion)


def test_build_is_the_direct_build_with_its_own_id_and_instants(gp, patient, lps, signer):
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    for mode, purpose, reason in [
        (AuthMode.DIRECTE, Purpose.NORMAL, ""),
        (AuthMode.INDIRECTE_RENFORCEE, Purpose.NORMAL, ""),
        (AuthMode.DIRECTE, Purpose.BRIS_DE_GLACE, "Patient inconscient aux urgences"),
    ]:
        req = vihf.VihfRequest(gp, mode, patient, lps, purpose, reason)
        direct = vihf.build_direct(req, issuer="CN=x", now=now, assertion_id="_fixed")
        first = vihf.build(req, issuer="CN=x", now=now)
        vihf.sign(first, signer)  # signs the copy in place
        later = vihf.build(req, issuer="CN=x", now=now + timedelta(seconds=1))
        second = vihf.build(req, issuer="CN=x", now=now)
        assert first.get("ID") != second.get("ID") and first.get("ID", "").startswith("_")
        assert _with_id(second, "_fixed") == etree.tostring(direct)
        stamp = "2026-03-04T05:06:08.000Z"
        assert later.get("IssueInstant") == stamp
        assert later.find(vihf.q(vihf.SAML2, "AuthnStatement")).get("AuthnInstant") == stamp


def test_assertion_text_is_the_signed_tree_byte_for_byte(gp, patient, lps, signer, tmp_path):
    """``vihf.assertion_xml`` (text templates) is ``tostring(sign(build(...)))`` with the same ID and instant,
    signed or not, for each mode and purpose; xmlsec1 verifies what it writes and refuses it tampered."""
    from dataclasses import replace

    from cryptography.hazmat.primitives import serialization

    from tests.fixtures.xmlsec import SAML2_ASSERTION, xmlsec1_verify_outcomes

    now = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    odd = replace(gp, family_name='D\'ARC & <FILS> "é"', activity=replace(gp.activity, structure_name="A\tB"))
    for identity in (gp, odd):
        for mode, purpose, reason in [
            (AuthMode.DIRECTE, Purpose.NORMAL, ""),
            (AuthMode.INDIRECTE_RENFORCEE, Purpose.NORMAL, ""),
            (AuthMode.DIRECTE, Purpose.BRIS_DE_GLACE, "Patient inconscient aux urgences"),
            (AuthMode.DIRECTE, Purpose.CENTRE_15, ""),
        ]:
            req = vihf.VihfRequest(identity, mode, patient, lps, purpose, reason)
            for with_signer in (signer, None):
                for _ in range(2):  # templates made, then reused
                    written, assertion_id = vihf.assertion_xml(
                        req, issuer="CN=x, O=é", signer=with_signer, now=now
                    )
                    tree = vihf.build_direct(req, issuer="CN=x, O=é", now=now, assertion_id=assertion_id)
                    if with_signer is not None:
                        vihf.sign(tree, with_signer)
                    assert written == etree.tostring(tree, encoding="UTF-8")
                    assert assertion_id.startswith("_") and len(assertion_id) == 37
    written, _ = vihf.assertion_xml(
        vihf.VihfRequest(gp, AuthMode.DIRECTE, patient, lps), issuer="CN=x", signer=signer
    )
    tampered = written.replace(b"899700000013</saml2:NameID>", b"899700000021</saml2:NameID>")
    assert tampered != written
    outcomes = xmlsec1_verify_outcomes(
        written,
        tampered,
        signer.certificate.public_bytes(serialization.Encoding.PEM),
        tmp_path,
        SAML2_ASSERTION,
    )
    assert outcomes[0] == (0, True), outcomes
    assert outcomes[1][0] != 0


@pytest.mark.parametrize("mode", [AuthMode.DIRECTE, AuthMode.INDIRECTE_RENFORCEE])
def test_one_text_template_serves_every_patient_byte_for_byte(gp, lps, signer, mode, monkeypatch):
    """The patient's resource-id is a value of the text template: requests for many patients of one
    professional, mode and purpose use ONE template (and one more without a patient), and each writes
    exactly ``tostring(sign(build_direct(...)))``; a resource-id with a CR (written ``&#13;`` by the
    serialisation, ``&#xD;`` by the C14N) gets a template of its own, still byte for byte."""
    monkeypatch.setattr(vihf, "_TEXT_TEMPLATES", {})
    now = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    many = [*VARIED_PATIENTS, *(PatientId(f"1{n:012d}00", TEST_OID) for n in range(20))]
    for with_signer in (signer, None):
        for patient in [*many, None, *many[:2]]:
            req = vihf.VihfRequest(gp, mode, patient, lps)
            written, assertion_id = vihf.assertion_xml(req, issuer="CN=x", signer=with_signer, now=now)
            tree = vihf.build_direct(req, issuer="CN=x", now=now, assertion_id=assertion_id)
            if with_signer is not None:
                vihf.sign(tree, with_signer)
            assert written == etree.tostring(tree, encoding="UTF-8"), patient
    assert len(vihf._TEXT_TEMPLATES) == 4  # (signed, unsigned) x (with a patient, without)
    with_cr = PatientId("2790351215\r18989", TEST_OID)
    req = vihf.VihfRequest(gp, mode, with_cr, lps)
    written, assertion_id = vihf.assertion_xml(req, issuer="CN=x", signer=signer, now=now)
    tree = vihf.sign(vihf.build_direct(req, issuer="CN=x", now=now, assertion_id=assertion_id), signer)
    assert written == etree.tostring(tree, encoding="UTF-8")
    assert b"2790351215&#13;18989" in written
    assert len(vihf._TEXT_TEMPLATES) == 5
    with pytest.raises(ValueError, match="XML compatible"):  # not XML text: lxml's own refusal
        vihf.assertion_xml(vihf.VihfRequest(gp, mode, PatientId("27\x01", TEST_OID), lps), issuer="CN=x",
                           signer=signer)  # fmt: skip


def test_patient_template_matches_signxml_and_xmlsec1_verifies_it(gp, lps, signer, tmp_path):
    """For patients filled into the shared template (one needing escapes): signxml's XMLSigner signs the
    directly built tree into the same bytes, the resource-id reads back as the patient's CX, and xmlsec1
    verifies what the template wrote (and refuses it with another patient swapped in)."""
    from cryptography.hazmat.primitives import serialization
    from signxml import XMLVerifier

    from ps_agent.dmp.xmlns import SAML2, q
    from tests.fixtures.xmlsec import SAML2_ASSERTION, xmlsec1_verify_outcomes

    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    written_all = []
    for patient in VARIED_PATIENTS:
        req = vihf.VihfRequest(gp, AuthMode.INDIRECTE_RENFORCEE, patient, lps)
        written, assertion_id = vihf.assertion_xml(req, issuer="CN=x", signer=signer, now=now)
        tree = vihf.build_direct(req, issuer="CN=x", now=now, assertion_id=assertion_id)
        assert written == etree.tostring(vihf.sign_with_signxml(tree, signer), encoding="UTF-8")
        verified = XMLVerifier().verify(written, x509_cert=signer.certificate, id_attribute="ID")
        values = {
            a.get("Name"): a.findtext(q(SAML2, "AttributeValue"))
            for a in verified.signed_xml.iter(q(SAML2, "Attribute"))
        }
        assert values["urn:oasis:names:tc:xacml:2.0:resource:resource-id"] == patient.cx
        written_all.append(written)
    odd = written_all[-1]
    assert b"A&amp;B&lt;C&gt;D\"E'\xc3\xa9]]&gt;^^^&amp;1.2.3&amp;4&amp;ISO^NH" in odd
    swapped = odd.replace(b"A&amp;B&lt;C&gt;D", b"A&amp;B&lt;C&gt;X")
    assert swapped != odd
    outcomes = xmlsec1_verify_outcomes(
        odd, swapped, signer.certificate.public_bytes(serialization.Encoding.PEM), tmp_path, SAML2_ASSERTION
    )
    assert outcomes[0] == (0, True), outcomes
    assert outcomes[1][0] != 0
