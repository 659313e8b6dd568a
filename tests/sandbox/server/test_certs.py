"""Certificate helpers: chain to the test PKI (cached by fingerprint), validity, kinds, DN comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.server import certs


@pytest.fixture
def trust(test_pki):
    return certs.TrustStore(test_pki.roots, test_pki.intermediates)


def test_chain_of_cards_and_establishment(trust, test_pki):
    gp = test_pki.card("gp")
    path = trust.verify(gp.sign_cert)
    assert path[0] == gp.sign_cert and path[1:] == gp.chain
    assert trust.verify(test_pki.establishment.sign_cert)[1:] == test_pki.establishment.chain


def test_foreign_and_expired(trust, test_pki, foreign_pki):
    with pytest.raises(certs.CertificateProblem) as err:
        trust.verify(foreign_pki.card("gp").sign_cert)
    assert err.value.kind == "untrusted" and "autorité de confiance" in err.value.message_fr
    with pytest.raises(certs.CertificateProblem) as err:
        trust.verify(test_pki.card("expired").sign_cert)
    assert err.value.kind == "expired" and "expiré" in err.value.message_fr
    gp = test_pki.card("gp").sign_cert
    with pytest.raises(certs.CertificateProblem):
        trust.verify(gp, at=gp.not_valid_before_utc - timedelta(days=1))  # not yet valid
    trust.verify(gp, at=datetime.now(UTC))


def test_chain_building_is_cached_by_fingerprint(trust, test_pki, monkeypatch):
    cert = test_pki.card("nurse").sign_cert
    calls = []
    real = trust._build
    monkeypatch.setattr(trust, "_build", lambda c: calls.append(c) or real(c))
    for _ in range(5):
        trust.verify(cert)
    assert len(calls) == 1


def test_kinds_and_usages(test_pki):
    gp, org = test_pki.card("gp"), test_pki.establishment
    assert certs.is_personal(gp.auth_cert) and certs.is_personal(test_pki.card("secretary").auth_cert)
    assert not certs.is_personal(org.auth_cert)
    assert certs.is_signature_certificate(gp.sign_cert) and not certs.is_signature_certificate(gp.auth_cert)
    assert certs.organisation_key(org.auth_cert) == certs.organisation_key(org.sign_cert)
    assert certs.common_name(gp.auth_cert) == "899700000013"


def test_same_dn_ignores_order_and_spelling(test_pki):
    subject = test_pki.card("gp").auth_cert.subject
    text = subject.rfc4514_string()  # Python writes 2.5.4.4=… for SN
    assert certs.same_dn(text, subject)
    assert certs.same_dn(",".join(reversed(text.split(","))), subject)
    s1_style = text.replace("2.5.4.4=MEDECIN-GENERALISTE", "SN=MEDECIN-GENERALISTE").replace(
        "2.5.4.42=", "GN="
    )
    assert certs.same_dn(s1_style, subject)
    hex_sn = "#13" + f"{len('MEDECIN-GENERALISTE'):02x}" + b"MEDECIN-GENERALISTE".hex()
    assert certs.same_dn(text.replace("2.5.4.4=MEDECIN-GENERALISTE", "2.5.4.4=" + hex_sn), subject)
    utf8_title = "#0c08" + "Médecin".encode().hex()  # UTF8String, 8 bytes
    assert certs.same_dn(text.replace("2.5.4.12=Médecin", "2.5.4.12=" + utf8_title), subject)
    assert not certs.same_dn(text.replace("899700000013", "899700000021"), subject)
    assert not certs.same_dn("not a dn ===", subject)
