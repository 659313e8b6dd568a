"""Robustness: a silent client blocks nobody, concurrent clients, hostile signatures, IPv6 loopback."""

from __future__ import annotations

import socket
import threading

import pytest
from lxml import etree

from sandbox.server import start
from tests.fixtures.sandbox import ACTIONS, DS, SAML, WSSE, VihfSpec, Wire, envelope, soap_fault
from tests.sandbox.server.bodies import find_documents
from tests.sandbox.server.conftest import RecordingService


def test_silent_client_does_not_block_others(recording):
    running, _service, wire = recording
    idle = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(3)]  # never handshake
    try:
        assert wire.call("TD3.1", find_documents()).status_code == 200
    finally:
        for s in idle:
            s.close()


def test_concurrent_clients(recording):
    _running, service, wire = recording
    profiles = ["gp", "specialist", "pharmacist", "nurse"]
    errors: list[str] = []

    def worker(profile: str) -> None:
        w = Wire(wire.sandbox, wire.pki)
        try:
            for _ in range(10):
                r = w.call("TD3.1", find_documents(), spec=VihfSpec(profile=profile))
                if r.status_code != 200:
                    errors.append(r.text)
        finally:
            w.close()

    threads = [threading.Thread(target=worker, args=(p,)) for p in profiles * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(service.requests) == 80
    assert {r.caller.id_nat for r in service.requests} == {
        "899700000013",
        "899700000021",
        "899700000039",
        "899700000047",
    }


@pytest.mark.parametrize("garbage", ["not base64 !!", "QUFBQQ=="], ids=["not-base64", "not-a-certificate"])
def test_garbage_signature_certificate(recording, garbage):
    _running, _service, wire = recording
    vihf = wire.vihf(VihfSpec(profile="secretary", mode="INDIRECTE"))
    vihf.find(f".//{{{DS}}}X509Certificate").text = garbage
    r = wire.call("TD3.1", find_documents(), vihf=vihf, who="establishment")
    assert r.status_code == 400
    assert "certificat de signature du VIHF est illisible" in soap_fault(r)[2]


def test_signature_in_the_wrong_place(recording):
    _running, _service, wire = recording
    vihf = wire.vihf(VihfSpec(profile="secretary", mode="INDIRECTE"))
    sig = vihf.find(f"{{{DS}}}Signature")
    vihf.remove(sig)
    vihf.append(sig)
    r = wire.call("TD3.1", find_documents(), vihf=vihf, who="establishment")
    assert "suivre immédiatement saml2:Issuer" in soap_fault(r)[2]


def test_two_assertions_refused(recording):
    _running, _service, wire = recording
    service, action = ACTIONS["TD3.1"]
    env = etree.fromstring(envelope(action, find_documents(), wire.vihf()))
    security = env.find(f".//{{{WSSE}}}Security")
    security.append(wire.vihf())
    assert len(security.findall(f"{{{SAML}}}Assertion")) == 2
    r = wire.post(service, etree.tostring(env), "application/soap+xml")
    assert "absent de l'en-tête wsse:Security ou multiple" in soap_fault(r)[2]


def test_ipv6_loopback(tmp_path, test_pki):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        running = start(tmp_path, test_pki, host="::1", service=RecordingService(tmp_path))
    except Exception as exc:
        pytest.skip(f"::1 unavailable: {exc}")
    wire = Wire(running, test_pki)
    try:
        assert running.base_url.startswith("https://[::1]:")
        assert wire.call("TD3.1", find_documents()).status_code == 200
    finally:
        wire.close()
        running.stop()


def test_unexpected_server_error_is_a_receiver_fault(recording, monkeypatch):
    running, _service, wire = recording

    def boom(*_a, **_k):
        raise RuntimeError("bug")

    monkeypatch.setattr(running._server.verifier, "verify", boom)
    r = wire.call("TD3.1", find_documents())
    assert r.status_code == 500
    code, sub, reason = soap_fault(r)
    assert (code, sub) == ("soap:Receiver", "sandbox:InternalError") and "Erreur interne" in reason
    monkeypatch.undo()
    assert wire.call("TD3.1", find_documents()).status_code == 200


def test_domain_layer_failure_is_a_receiver_fault(recording, monkeypatch):
    _running, service, wire = recording
    monkeypatch.setattr(service, "handle", lambda _req: 1 / 0)
    r = wire.call("TD3.1", find_documents())
    assert r.status_code == 500 and soap_fault(r)[1] == "sandbox:InternalError"


def test_domain_soap_fault_is_passed_through(recording):
    from sandbox.server.context import SoapFault

    _running, service, wire = recording
    service.fault = SoapFault("Opération inconnue du domaine.", subcode="DMPUnknownOperation", detail="d")
    r = wire.call("TD3.1", find_documents())
    assert r.status_code == 400
    assert soap_fault(r) == ("soap:Sender", "sandbox:DMPUnknownOperation", "Opération inconnue du domaine.")
