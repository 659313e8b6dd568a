"""The VIHF assertion copied from a per-request template (``vihf.build``) is the assertion built element by
element (``vihf.build_direct``) byte for byte, with its own ID and instants, and signing a copy never
changes the template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lxml import etree

from ps_agent.auth.model import AuthMode
from ps_agent.dmp import vihf
from ps_agent.dmp.vihf import Purpose


def _with_id(assertion: etree._Element, assertion_id: str) -> bytes:
    assertion.set("ID", assertion_id)
    return etree.tostring(assertion)


def test_copied_assertion_is_the_direct_build(gp, patient, lps, signer):
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
