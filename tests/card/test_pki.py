"""The generated IGC-Santé-like test PKI: shapes, chains, idempotency, the foreign PKI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from sandbox.pki import P12_PASSPHRASE, PkiError, TestPki, load_or_create
from sandbox.profiles import ESTABLISHMENT, PROFILES


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    assert len(values) == 1, f"{oid} appears {len(values)} times"
    return str(values[0].value)


def _verify_client(pki: TestPki, cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
    store = Store(pki.roots)
    # IGC-Santé card certificates carry no subjectAltName: relax only that end-entity requirement
    verifier = (
        PolicyBuilder()
        .store(store)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    verifier.verify(cert, chain)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_card_subject_carries_idnat_names_and_profession(test_pki: TestPki, profile: str) -> None:
    creds = test_pki.card(profile)
    p = PROFILES[profile]
    for cert in (creds.auth_cert, creds.sign_cert):
        assert _attr(cert.subject, NameOID.COMMON_NAME) == p.id_nat
        assert _attr(cert.subject, NameOID.SURNAME) == p.family_name
        assert _attr(cert.subject, NameOID.GIVEN_NAME) == p.given_name
        assert _attr(cert.subject, NameOID.TITLE) == p.profession_label
        # CN, SN and GN share one multi-valued RDN, as on real CPS certificates
        assert any(len(rdn) == 3 for rdn in cert.subject.rdns)
        assert cert.issuer == test_pki.personnes_ca.subject
    assert creds.auth_cert.public_key() == creds.auth_key.public_key()
    assert creds.sign_cert.public_key() == creds.sign_key.public_key()
    assert creds.auth_key.public_key() != creds.sign_key.public_key()


def test_key_usages_split_auth_and_signature(test_pki: TestPki) -> None:
    creds = test_pki.card("gp")
    auth_ku = creds.auth_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    sign_ku = creds.sign_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert auth_ku.digital_signature and auth_ku.key_encipherment and not auth_ku.content_commitment
    assert sign_ku.digital_signature and sign_ku.content_commitment and not sign_ku.key_encipherment
    eku = creds.auth_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_card_auth_chain_verifies_against_the_test_roots(test_pki: TestPki) -> None:
    creds = test_pki.card("gp")
    _verify_client(test_pki, creds.auth_cert, creds.chain)


def test_expired_profile_is_refused_by_chain_verification(test_pki: TestPki) -> None:
    creds = test_pki.card("expired")
    assert creds.auth_cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    with pytest.raises(VerificationError):
        _verify_client(test_pki, creds.auth_cert, creds.chain)


def test_foreign_pki_does_not_validate_our_cards(test_pki: TestPki, foreign_pki: TestPki) -> None:
    assert {c.subject for c in foreign_pki.roots}.isdisjoint({c.subject for c in test_pki.roots})
    creds = foreign_pki.card("gp")
    with pytest.raises(VerificationError):
        _verify_client(test_pki, creds.auth_cert, creds.chain)


def test_server_certificate_names_loopback(test_pki: TestPki) -> None:
    cert = x509.load_pem_x509_certificate(test_pki.server_cert.read_bytes())
    store = Store(test_pki.roots)
    chain = [test_pki.organisations_ca]
    for name in ("localhost",):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name)).verify(cert, chain)
    from ipaddress import IPv4Address

    PolicyBuilder().store(store).build_server_verifier(x509.IPAddress(IPv4Address("127.0.0.1"))).verify(
        cert, chain
    )
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("dmp.example")).verify(cert, chain)


def test_establishment_pkcs12_opens_with_the_passphrase(test_pki: TestPki) -> None:
    org = test_pki.establishment
    key, cert, extra = pkcs12.load_key_and_certificates(org.auth_p12.read_bytes(), P12_PASSPHRASE.encode())
    assert cert == org.auth_cert and key is not None
    assert _attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME) == ESTABLISHMENT.structure_id
    assert extra == org.chain
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(org.sign_p12.read_bytes(), b"wrong")
    sign_ku = org.sign_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert sign_ku.content_commitment
    _verify_client(test_pki, org.auth_cert, org.chain)


def test_load_or_create_is_idempotent(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    gp = first.card("gp").auth_cert
    again = load_or_create(tmp_path)
    assert again.roots == first.roots
    assert again.card("gp").auth_cert == gp
    assert again.ca_bundle.read_bytes() == first.ca_bundle.read_bytes()


def test_a_directory_holds_one_pki_only(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    with pytest.raises(PkiError, match="foreign"):
        load_or_create(tmp_path, name="foreign")
    with pytest.raises(PkiError, match="unknown card profile"):
        load_or_create(tmp_path).card("astronaut")


def test_private_keys_are_not_world_readable(test_pki: TestPki) -> None:
    mode = test_pki.card("gp").auth_key_path.stat().st_mode & 0o777
    assert mode == 0o600
