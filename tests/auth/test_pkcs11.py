"""PKCS#11 back-end against SoftHSM2 tokens (keys imported non-exportable, as on a card)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ps_agent.auth.errors import CertificateError, PinFormatError, Pkcs11Error, SessionClosed, WrongPin
from ps_agent.auth.establishment import EstablishmentSession
from ps_agent.auth.model import AuthMode, Credentials, KeyUse, ProfessionalIdentity
from ps_agent.auth.pkcs11 import MODULE_ENV, Pkcs11Session, Pkcs11Token, find_cryptolib, load_module
from sandbox.pki import TestPki
from sandbox.profiles import PROFILES
from tests.auth.tls_server import mtls_server

pytestmark = pytest.mark.softhsm


def test_public_phase_then_login_and_sign(softhsm, test_pki: TestPki) -> None:
    token = Pkcs11Token.open(softhsm.module, token_label="CPS-TEST")
    try:
        gp = test_pki.card("gp")
        assert token.certificate(KeyUse.AUTHENTICATION) == gp.auth_cert
        assert token.certificate(KeyUse.SIGNATURE) == gp.sign_cert
        assert token.data_object("CPS_INFO_PS")  # public
        assert token.data_object("CPS_ACTIVITY_01_PS") is None  # private: invisible before login
        with pytest.raises(Pkcs11Error):
            token.signer(KeyUse.SIGNATURE)
        token.login("1234")
        assert token.data_object("CPS_ACTIVITY_01_PS")
        signer = token.signer(KeyUse.SIGNATURE)
        sig = signer.sign(b"vihf")
        gp.sign_cert.public_key().verify(sig, b"vihf", padding.PKCS1v15(), hashes.SHA256())
    finally:
        token.close()


def test_pkcs11_session_identity_and_tls(softhsm, test_pki: TestPki) -> None:
    session = Pkcs11Session.open(
        "1234", module=softhsm.module, token_label="CPS-TEST", ca_file=test_pki.ca_bundle
    )
    try:
        assert isinstance(session, Credentials)
        p = PROFILES["gp"]
        assert session.identity.id_nat == p.id_nat
        assert session.identity.specialty_code == "SM26"
        assert (
            session.identity.activity
            and session.identity.activity.structure_id == p.situations[0].structure_id
        )
        assert session.mode is AuthMode.DIRECTE
        full = test_pki.directory / "server" / "server.fullchain.pem"
        with mtls_server(
            test_pki.server_cert, test_pki.server_key, test_pki.ca_bundle, cert_chain=full
        ) as url:
            with httpx.Client(transport=session.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
                seen = client.get(url).json()
        assert seen["client_subject"] == test_pki.card("gp").auth_cert.subject.rfc4514_string()
    finally:
        session.close()
    with pytest.raises(SessionClosed):
        session.vihf_signer()


def test_wrong_pin_and_bad_format(softhsm) -> None:
    token = Pkcs11Token.open(softhsm.module, token_label="CPS-TEST")
    try:
        with pytest.raises(PinFormatError):
            token.login("12345")
        with pytest.raises(WrongPin) as info:
            token.login("9999")
        assert "incorrect" in info.value.message_fr
        token.login("1234")
    finally:
        token.close()


def test_expired_token_certificate_is_refused(softhsm) -> None:
    with pytest.raises(CertificateError, match="a expiré"):
        Pkcs11Session.open("1234", module=softhsm.module, token_label="CPS-EXPIRED")


def test_module_path_errors(tmp_path: Path) -> None:
    with pytest.raises(Pkcs11Error) as missing:
        load_module(tmp_path / "libcps3_pkcs11_lux.so")
    assert "introuvable" in missing.value.message_fr
    fake = tmp_path / "not-pkcs11.so"
    fake.write_bytes(b"\x7fELF this is not a library")
    with pytest.raises(Pkcs11Error) as bad:
        load_module(fake)
    assert "n'est pas une bibliothèque PKCS#11" in bad.value.message_fr
    with pytest.raises(Pkcs11Error):
        load_module(
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
            if Path("/usr/lib/x86_64-linux-gnu/libc.so.6").exists()
            else fake
        )


def test_cryptolib_autodetection(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MODULE_ENV, raising=False)
    import ps_agent.auth.pkcs11 as p11

    lib = tmp_path / "libcps3_pkcs11_lux.so"
    lib.write_bytes(b"")
    monkeypatch.setitem(p11.CRYPTOLIB_CANDIDATES, "linux", (str(tmp_path / "absent.so"), str(lib)))
    assert find_cryptolib("linux") == lib
    monkeypatch.setenv(MODULE_ENV, "/opt/custom/module.so")
    assert find_cryptolib("linux") == Path("/opt/custom/module.so")


def test_unknown_token_label(softhsm) -> None:
    with pytest.raises(Pkcs11Error, match="NOPE"):
        Pkcs11Token.open(softhsm.module, token_label="NOPE")


def test_establishment_from_a_pkcs11_token(softhsm, test_pki: TestPki) -> None:
    token = Pkcs11Token.open(softhsm.module, token_label="ORG-TEST")
    try:
        token.login("1234")
        user = ProfessionalIdentity(
            "3990000018/SEC00001", "SECRETAIRE", "MARIE", "", non_ps_role="SECRETARIAT_MEDICAL"
        )
        session = EstablishmentSession.from_pkcs11(token, user=user, mode=AuthMode.INDIRECTE_RENFORCEE)
        assert session.vihf_signer().certificate == test_pki.establishment.sign_cert
        full = test_pki.directory / "server" / "server.fullchain.pem"
        with mtls_server(
            test_pki.server_cert, test_pki.server_key, test_pki.ca_bundle, cert_chain=full
        ) as url:
            with httpx.Client(transport=session.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
                seen = client.get(url).json()
        assert seen["client_subject"] == test_pki.establishment.auth_cert.subject.rfc4514_string()
    finally:
        token.close()


def test_vihf_signed_through_pkcs11_verifies(softhsm, test_pki: TestPki) -> None:
    """The VIHF code uses the PKCS#11 signer exactly as the card's (one Signer interface)."""
    from cryptography.hazmat.primitives import serialization
    from lxml import etree
    from signxml import XMLVerifier

    from ps_agent.dmp import vihf

    session = Pkcs11Session.open("1234", module=softhsm.module, token_label="CPS-TEST")
    try:
        signer = session.vihf_signer()
        lps = vihf.LpsInfo(name="ps-agent", version="0.1", homologation_id="TEST")
        request = vihf.VihfRequest(identity=session.identity, mode=AuthMode.DIRECTE, patient=None, lps=lps)
        signed = vihf.sign(
            vihf.build(request, issuer=vihf.issuer_dn(signer.certificate, session.identity)), signer
        )
    finally:
        session.close()
    pem = test_pki.card("gp").sign_cert.public_bytes(serialization.Encoding.PEM)
    XMLVerifier().verify(etree.tostring(signed), x509_cert=pem, id_attribute="ID")


def test_situation_out_of_range_is_refused(softhsm) -> None:
    from ps_agent.errors import AuthError

    with pytest.raises(AuthError) as negative:  # refused before the module is even loaded
        Pkcs11Session.open("1234", module="/nonexistent/module.so", situation_index=-1)
    assert negative.value.code == "bad_situation" and "à partir de 1" in negative.value.message_fr
    with pytest.raises(AuthError) as beyond:
        Pkcs11Session.open("1234", module=softhsm.module, token_label="CPS-TEST", situation_index=1)
    assert beyond.value.code == "bad_situation"
    assert "La situation d'exercice n° 2 n'existe pas" in beyond.value.message_fr
    with Pkcs11Session.open("1234", module=softhsm.module, token_label="CPS-TEST") as session:
        assert session.identity.activity is not None
