"""TLS on loopback: client certificate required and checked against the test PKI (the handshake itself
fails for a foreign, expired or missing certificate, as on the real DMP front end), TLS 1.2+ with the DMP
suites, loopback only."""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path

import httpx
import pytest

from sandbox.server import SandboxServerError, start
from tests.fixtures.sandbox import ACTIONS, envelope
from tests.sandbox.server.bodies import find_documents
from tests.sandbox.server.conftest import RecordingService

HANDSHAKE_ERRORS = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)


def _context(
    ca: Path, cert: tuple[Path, Path] | None, *, max_tls12: bool = False, ciphers: str | None = None
):
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _post(running, wire, ctx) -> httpx.Response:
    action = ACTIONS["TD3.1"][1]
    env = envelope(action, find_documents(), wire.vihf())
    with httpx.Client(verify=ctx, timeout=10) as client:
        return client.post(
            running.url("registry"), content=env, headers={"Content-Type": "application/soap+xml"}
        )


def test_foreign_pki_client_certificate_fails_the_handshake(recording, test_pki, foreign_pki):
    running, service, wire = recording
    foreign = foreign_pki.card("gp")
    ctx = _context(test_pki.ca_bundle, (foreign.auth_cert_path, foreign.auth_key_path))
    with pytest.raises(HANDSHAKE_ERRORS):
        _post(running, wire, ctx)
    assert not service.requests
    assert wire.call("TD3.1", find_documents()).status_code == 200  # still serving


def test_expired_client_certificate_fails_the_handshake(recording, test_pki):
    running, service, wire = recording
    expired = test_pki.card("expired")
    ctx = _context(test_pki.ca_bundle, (expired.auth_cert_path, expired.auth_key_path))
    with pytest.raises(HANDSHAKE_ERRORS):
        _post(running, wire, ctx)
    assert not service.requests
    assert wire.call("TD3.1", find_documents()).status_code == 200


def test_no_client_certificate_fails_the_handshake(recording, test_pki):
    running, service, wire = recording
    with pytest.raises(HANDSHAKE_ERRORS):
        _post(running, wire, _context(test_pki.ca_bundle, None))
    assert not service.requests


def test_server_certificate_is_trusted_through_the_ca_bundle(recording, test_pki):
    running, _service, wire = recording
    gp = test_pki.card("gp")
    ctx = _context(test_pki.ca_bundle, (gp.auth_cert_path, gp.auth_key_path))  # hostname check on
    assert _post(running, wire, ctx).status_code == 200


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES256-SHA384",
    ],
)
def test_dmp_tls12_suites_accepted(recording, test_pki, suite):
    running, _service, wire = recording
    gp = test_pki.card("gp")
    ctx = _context(test_pki.ca_bundle, (gp.auth_cert_path, gp.auth_key_path), max_tls12=True, ciphers=suite)
    assert _post(running, wire, ctx).status_code == 200


def test_other_tls12_suite_refused(recording, test_pki):
    running, _service, wire = recording
    gp = test_pki.card("gp")
    ctx = _context(
        test_pki.ca_bundle, (gp.auth_cert_path, gp.auth_key_path), max_tls12=True, ciphers="AES128-SHA"
    )
    with pytest.raises(HANDSHAKE_ERRORS):
        _post(running, wire, ctx)


def test_tls11_refused(recording, test_pki):
    running, _service, _wire = recording
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.recv(1)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",  # noqa: S104 - checking that it is refused
        "192.0.2.10",
        "example.org",
        "::",
    ],
)
def test_only_loopback_addresses(tmp_path, test_pki, host):
    with pytest.raises(SandboxServerError) as err:
        start(tmp_path, test_pki, host=host, service=RecordingService(tmp_path))
    assert "boucle locale" in str(err.value)


def test_listens_on_loopback_only(recording):
    running, _service, _wire = recording
    assert running.host == "127.0.0.1"
    assert running.base_url == f"https://127.0.0.1:{running.port}/si-dmp-server/v2/services/"


def test_port_in_use_is_a_clear_error(recording, tmp_path, test_pki):
    running, _service, _wire = recording
    with pytest.raises(SandboxServerError) as err:
        start(tmp_path, test_pki, port=running.port, service=RecordingService(tmp_path))
    assert "Impossible d'écouter" in str(err.value)


def test_stop_releases_the_port(tmp_path, test_pki):
    running = start(tmp_path, test_pki, service=RecordingService(tmp_path))
    port = running.port
    running.stop()
    running.stop()  # idempotent
    again = start(tmp_path, test_pki, port=port, service=RecordingService(tmp_path))
    again.stop()


def test_stop_is_prompt_with_open_keep_alive_connections(tmp_path, test_pki):
    import time

    from tests.fixtures.sandbox import Wire

    running = start(tmp_path, test_pki, service=RecordingService(tmp_path))
    wire = Wire(running, test_pki)
    try:
        assert wire.call("TD3.1", find_documents()).status_code == 200  # a pooled connection stays open
        t0 = time.monotonic()
        running.stop()
        assert time.monotonic() - t0 < 5  # not the 30 s idle timeout
        with pytest.raises(httpx.TransportError):
            wire.call("TD3.1", find_documents())
    finally:
        wire.close()
