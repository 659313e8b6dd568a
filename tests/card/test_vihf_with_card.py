"""The VIHF code signs through the card's ``Signer`` without knowing it is a card (and verifies)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import XMLVerifier

from ps_agent.auth.model import AuthMode
from ps_agent.auth.session import AuthSession
from ps_agent.dmp import vihf
from sandbox.pki import TestPki

pytestmark = pytest.mark.pcsc


def test_vihf_signed_by_the_emulated_card_verifies(virtual_card, test_pki: TestPki) -> None:
    virtual_card.insert("gp")
    with AuthSession.open(virtual_card.reader_name, "1234", ca_file=test_pki.ca_bundle) as session:
        signer = session.vihf_signer()
        lps = vihf.LpsInfo(name="ps-agent", version="0.1", homologation_id="TEST")
        request = vihf.VihfRequest(identity=session.identity, mode=AuthMode.DIRECTE, patient=None, lps=lps)
        assertion = vihf.build(request, issuer=vihf.issuer_dn(signer.certificate, session.identity))
        before = virtual_card.card.apdu_count
        signed = vihf.sign(assertion, signer)
        assert virtual_card.card.apdu_count > before  # the card made the signature
    pem = test_pki.card("gp").sign_cert.public_bytes(serialization.Encoding.PEM)
    result = XMLVerifier().verify(etree.tostring(signed), x509_cert=pem, id_attribute="ID")
    assert result.signed_xml is not None
    assert "899700000013" in etree.tostring(signed).decode()
