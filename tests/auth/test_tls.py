"""Mutual TLS 1.2 with the DMP suites: software key (ssl) and external signer (tlslite-ng)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ps_agent.auth.errors import TlsError
from ps_agent.auth.model import AuthMode, ProfessionalIdentity
from ps_agent.auth.software import SoftwareCredentials, SoftwareSigner
from ps_agent.auth.tls import make_transport, verify_server_chain
from sandbox.pki import TestPki
from sandbox.profiles import PROFILES
from tests.auth.tls_server import mtls_server


def _creds(pki: TestPki, profile: str = "gp", *, external_tls: bool = False) -> SoftwareCredentials:
    p = PROFILES[profile]
    h = pki.card(profile)
    identity = ProfessionalIdentity(p.id_nat, p.family_name, p.given_name, p.profession_code)
    return SoftwareCredentials(
        identity,
        AuthMode.DIRECTE,
        h.auth_cert,
        h.auth_key,
        h.sign_cert,
        h.sign_key,
        h.chain,
        external_tls=external_tls,
    )


@pytest.fixture
def server(test_pki: TestPki):
    full = test_pki.directory / "server" / "server.fullchain.pem"
    with mtls_server(test_pki.server_cert, test_pki.server_key, test_pki.ca_bundle, cert_chain=full) as url:
        yield url


def _fingerprint(cert) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.mark.parametrize("external", [False, True], ids=["ssl-software-key", "tlslite-external-signer"])
def test_server_sees_the_client_certificate(test_pki: TestPki, server: str, external: bool) -> None:
    creds = _creds(test_pki, external_tls=external)
    with httpx.Client(transport=creds.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
        first = client.get(f"{server}/si-dmp-server/v2/services/patients").json()
        second = client.post(f"{server}/x", content=b"a" * 100_000).json()
    assert first["client_cert_sha256"] == _fingerprint(test_pki.card("gp").auth_cert)
    assert "899700000013" in first["client_subject"]
    assert first["version"] == "TLSv1.2"
    assert first["cipher"] == "ECDHE-RSA-AES256-GCM-SHA384"
    assert second["body_len"] == 100_000
    assert second["body_sha256"] == hashlib.sha256(b"a" * 100_000).hexdigest()


def test_external_signer_is_what_signs_the_handshake(test_pki: TestPki, server: str) -> None:
    """The key object handed to TLS is only the Signer: count its calls."""
    holder = test_pki.card("nurse")

    class CountingSigner(SoftwareSigner):
        calls = 0

        def sign_digest_info(self, digest_info: bytes) -> bytes:
            CountingSigner.calls += 1
            return super().sign_digest_info(digest_info)

    signer = CountingSigner(holder.auth_key, holder.auth_cert, holder.chain)
    transport = make_transport(ca_file=test_pki.ca_bundle, certificate=holder.auth_cert, signer=signer)
    with httpx.Client(transport=transport) as client:
        seen = [client.get(f"{server}/{i}").json() for i in range(3)]
    assert {s["client_cert_sha256"] for s in seen} == {_fingerprint(holder.auth_cert)}
    assert CountingSigner.calls == 1  # keep-alive: one handshake, one signature


@pytest.mark.parametrize(
    "suite", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES256-SHA384"]
)
def test_each_dmp_suite_negotiates_with_an_external_signer(
    test_pki: TestPki, suite: str, monkeypatch
) -> None:
    import tests.auth.tls_server as srv

    monkeypatch.setattr(srv, "DMP_SUITES_OPENSSL", suite)
    full = test_pki.directory / "server" / "server.fullchain.pem"
    with mtls_server(test_pki.server_cert, test_pki.server_key, test_pki.ca_bundle, cert_chain=full) as url:
        creds = _creds(test_pki, external_tls=True)
        with httpx.Client(transport=creds.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
            got = client.post(url, content=b"z" * 20_000).json()
    assert got["cipher"] == suite
    assert got["body_len"] == 20_000


@pytest.mark.parametrize("external", [False, True])
def test_server_from_another_pki_is_refused(test_pki: TestPki, foreign_pki: TestPki, external: bool) -> None:
    with mtls_server(foreign_pki.server_cert, foreign_pki.server_key, test_pki.ca_bundle) as url:
        creds = _creds(test_pki, external_tls=external)
        with httpx.Client(transport=creds.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
            with pytest.raises((TlsError, httpx.ConnectError)) as info:
                client.get(url)
    if external:
        assert isinstance(info.value, TlsError)
        assert "n'est pas reconnu" in info.value.message_fr


def test_wrong_host_name_is_refused_unless_host_check_disabled(test_pki: TestPki) -> None:
    chain = [
        test_pki.server_cert.read_bytes(),
        test_pki.organisations_ca.public_bytes(serialization.Encoding.PEM),
    ]
    der = [x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER) for pem in chain]
    verify_server_chain(der, test_pki.roots, "localhost", True)
    verify_server_chain(der, test_pki.roots, "127.0.0.1", True)
    with pytest.raises(TlsError, match="n'est pas reconnu"):
        verify_server_chain(der, test_pki.roots, "lps2.dmp.gouv.fr", True)
    verify_server_chain(der, test_pki.roots, "lps2.dmp.gouv.fr", False)
    with pytest.raises(TlsError):
        verify_server_chain(der[:1], test_pki.roots, "localhost", False)  # intermediate missing
    with pytest.raises(TlsError):
        verify_server_chain([], test_pki.roots, "localhost", True)


def test_localhost_name_verifies_through_the_transport(test_pki: TestPki, server: str) -> None:
    creds = _creds(test_pki, external_tls=True)
    with httpx.Client(transport=creds.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
        assert client.get(server.replace("127.0.0.1", "localhost")).status_code == 200


def test_client_from_another_pki_is_rejected_by_the_server(
    test_pki: TestPki, foreign_pki: TestPki, server: str
) -> None:
    creds = _creds(foreign_pki, external_tls=True)
    with httpx.Client(transport=creds.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
        with pytest.raises((TlsError, httpx.TransportError)):
            client.get(server)


def test_missing_ca_file_is_a_clear_error(test_pki: TestPki, tmp_path: Path) -> None:
    creds = _creds(test_pki)
    with pytest.raises(TlsError, match="introuvable"):
        creds.tls_transport(ca_file=str(tmp_path / "absent.pem"))
