"""Establishment credentials (indirect / AIR mode) from PKCS#12 files."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ps_agent.auth.errors import CertificateError, Pkcs12Error
from ps_agent.auth.establishment import EstablishmentSession
from ps_agent.auth.model import Activity, AuthMode, Credentials, ProfessionalIdentity
from ps_agent.errors import ConfigurationError
from sandbox.pki import P12_PASSPHRASE, TestPki
from sandbox.profiles import ESTABLISHMENT, PROFILES
from tests.auth.tls_server import mtls_server

SECRETARY = ProfessionalIdentity(
    id_nat="3990000018/SEC00001",
    family_name="SECRETAIRE",
    given_name="MARIE",
    profession_code="",
    non_ps_role="SECRETARIAT_MEDICAL",
    activity=Activity(ESTABLISHMENT.structure_id, ESTABLISHMENT.structure_name, ESTABLISHMENT.sector),
)
AUTHOR = ProfessionalIdentity(PROFILES["specialist"].id_nat, "CARDIOLOGUE", "CLAIRE", "10", "Médecin", "SM04")


def _session(pki: TestPki, **kw) -> EstablishmentSession:
    org = pki.establishment
    return EstablishmentSession.from_pkcs12(
        org.auth_p12, org.sign_p12, P12_PASSPHRASE, user=SECRETARY, author=AUTHOR, **kw
    )


def test_pkcs12_session_identity_mode_and_signature(test_pki: TestPki) -> None:
    session = _session(test_pki, ca_file=test_pki.ca_bundle)
    assert isinstance(session, Credentials)
    assert session.identity == SECRETARY
    assert session.author == AUTHOR
    assert session.mode is AuthMode.INDIRECTE
    signer = session.vihf_signer()
    assert signer.certificate == test_pki.establishment.sign_cert
    assert session.organisation_certificate.subject == test_pki.establishment.sign_cert.subject
    sig = signer.sign(b"vihf")
    signer.certificate.public_key().verify(sig, b"vihf", padding.PKCS1v15(), hashes.SHA256())
    assert signer.chain == test_pki.establishment.chain


def test_air_mode_is_accepted_and_directe_refused(test_pki: TestPki) -> None:
    assert _session(test_pki, mode=AuthMode.INDIRECTE_RENFORCEE).mode is AuthMode.INDIRECTE_RENFORCEE
    with pytest.raises(ConfigurationError):
        _session(test_pki, mode=AuthMode.DIRECTE)


def test_tls_uses_the_org_auth_cli_certificate(test_pki: TestPki) -> None:
    full = test_pki.directory / "server" / "server.fullchain.pem"
    with mtls_server(test_pki.server_cert, test_pki.server_key, test_pki.ca_bundle, cert_chain=full) as url:
        session = _session(test_pki)
        with httpx.Client(transport=session.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
            seen = client.get(url).json()
    assert seen["client_subject"] == test_pki.establishment.auth_cert.subject.rfc4514_string()
    assert seen["version"] == "TLSv1.2"


def test_wrong_passphrase_is_a_clear_error(test_pki: TestPki) -> None:
    org = test_pki.establishment
    with pytest.raises(Pkcs12Error) as info:
        EstablishmentSession.from_pkcs12(org.auth_p12, org.sign_p12, "mauvais", user=SECRETARY)
    assert info.value.code == "p12_passphrase"
    assert "mot de passe" in info.value.message_fr and "auth.p12" in info.value.message_fr


def test_missing_and_garbage_files(test_pki: TestPki, tmp_path: Path) -> None:
    org = test_pki.establishment
    with pytest.raises(Pkcs12Error) as missing:
        EstablishmentSession.from_pkcs12(
            tmp_path / "absent.p12", org.sign_p12, P12_PASSPHRASE, user=SECRETARY
        )
    assert "introuvable" in missing.value.message_fr
    garbage = tmp_path / "garbage.p12"
    garbage.write_bytes(b"\x30\x82" + b"not a pkcs12" * 20)
    with pytest.raises(Pkcs12Error):
        EstablishmentSession.from_pkcs12(garbage, org.sign_p12, P12_PASSPHRASE, user=SECRETARY)


def test_establishment_of_another_pki_is_untrusted(test_pki: TestPki, foreign_pki: TestPki) -> None:
    org = foreign_pki.establishment
    with pytest.raises(CertificateError):
        EstablishmentSession.from_pkcs12(
            org.auth_p12, org.sign_p12, P12_PASSPHRASE, user=SECRETARY, ca_file=test_pki.ca_bundle
        )


def test_auth_certificate_cannot_sign_the_vihf(test_pki: TestPki) -> None:
    """ORG AUTH_CLI given as the signature certificate: refused (no non-repudiation)."""
    org = test_pki.establishment
    with pytest.raises(CertificateError) as info:
        EstablishmentSession.from_pkcs12(org.auth_p12, org.auth_p12, P12_PASSPHRASE, user=SECRETARY)
    assert "non-répudiation" in info.value.message_fr
