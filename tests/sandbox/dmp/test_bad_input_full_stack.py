"""Every "Bad input" of issue 4 against the real sandbox (HTTPS, server layer + DMP rules + SQLite): each gets
its SOAP fault or registry error, nothing is stored, the refusal is traced, and the server keeps serving."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from sandbox import demo
from sandbox.dmp import build, xds
from sandbox.profiles import PROFILES
from tests.fixtures.sandbox import ACTIONS, VihfSpec, envelope, soap_fault
from tests.fixtures.sandbox_calls import _errors, _find, _root, _spec

P = demo.DEMO_ADULT
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


@pytest.fixture
def stack(sandbox_server, test_pki, wire_for):
    store = sandbox_server.store
    store.create_patient(P.ins, P.oid, P.family_name, P.given_names, P.birth_date, P.sex, P.birth_place)
    store.set_authorisation(P.ins, PROFILES["gp"].id_nat)
    wire = wire_for(sandbox_server, test_pki)
    resp, dep = _deposit(wire, test_pki)
    assert _root(resp)[0].get("status") == xds.SUCCESS, resp.text
    return sandbox_server, wire, dep


def _deposit(wire, pki, *, title: str = "Consultation", mutate=None, drop_part: bool = False):
    data = build.text_document(
        build.patient_input(P.ins, P.oid, P.family_name, P.given_names, P.birth_date, P.sex, P.birth_place),
        build.author_input(PROFILES["gp"]),
        "11488-4",
        title,
        "Texte.",
    )
    holder = pki.card("gp")
    dep = build.provide_and_register(
        [build.DepositDocument(data)], signer=(holder.sign_key, holder.sign_cert, holder.chain)
    )
    if mutate is not None:
        mutate(dep)
    parts = {cid: (content, "text/xml") for cid, content in dep.attachments.items()}
    if drop_part:
        parts.pop(next(iter(parts)))
    return wire.call("TD2.1", dep.body, spec=_spec("gp", P), parts=parts), dep


def _still_serving_and_unchanged(sandbox, wire, traces_before: int) -> None:
    root = _find(wire, "gp", P)
    assert root.get("status") == xds.SUCCESS
    assert len(list(root.iter(f"{{{xds.RIM}}}ExtrinsicObject"))) == 1  # nothing more was stored
    assert len(sandbox.store.documents(P.ins)) == 1
    # the refusal and the check were both traced
    assert len(sandbox.store.traces()) >= traces_before + 2


def _raw(wire, body: bytes, *, service: str = "registry", ctype: str | None = None) -> httpx.Response:
    return wire.post(service, body, ctype or f'application/soap+xml; action="{ACTIONS["TD3.1"][1]}"')


def test_malformed_xml(stack):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())
    _code, sub, reason = soap_fault(_raw(wire, b"<soap:Envelope><unclosed>"))
    assert sub == "sandbox:MalformedXml" and "bien formé" in reason
    _still_serving_and_unchanged(sandbox, wire, n)


def test_external_entity_reads_nothing(stack, tmp_path: Path):
    sandbox, wire, _dep = stack
    secret = tmp_path / "secret.txt"
    secret.write_text("CONTENU-SECRET")
    n = len(sandbox.store.traces())
    env = envelope(ACTIONS["TD3.1"][1], build.find_documents(P.ins, P.oid), wire.vihf(_spec("gp", P)))
    env = env.replace(
        b"<?xml version='1.0' encoding='UTF-8'?>",
        f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>'.encode(),
    ).replace(b"urn:dmp</", b"&x;</")
    assert b"<!DOCTYPE" in env and b"&x;" in env
    r = _raw(wire, env)
    _code, sub, _reason = soap_fault(r)
    assert sub == "sandbox:ForbiddenDoctype"
    assert b"CONTENU-SECRET" not in r.content
    assert all("CONTENU-SECRET" not in (t.what + t.result) for t in sandbox.store.traces())
    _still_serving_and_unchanged(sandbox, wire, n)


def test_entity_expansion(stack):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())
    lol = b'<!ENTITY a "aaaaaaaaaa">' + b"".join(
        b'<!ENTITY %s "%s">' % (c.encode(), (b"&" + p.encode() + b";") * 10)
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    r = _raw(wire, b'<?xml version="1.0"?><!DOCTYPE z [' + lol + b"]><z>&i;</z>")
    assert soap_fault(r)[1] == "sandbox:ForbiddenDoctype"
    _still_serving_and_unchanged(sandbox, wire, n)


def test_missing_mtom_part(stack, test_pki):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())
    resp, _ = _deposit(wire, test_pki, title="Sans pièce", drop_part=True)
    _code, sub, reason = soap_fault(resp)
    assert sub == "sandbox:MissingMtomPart" and "Pièce MTOM manquante" in reason
    _still_serving_and_unchanged(sandbox, wire, n)


def test_hash_mismatch(stack, test_pki):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())

    def wrong_hash(dep) -> None:
        for slot in dep.body.iter(f"{{{xds.RIM}}}Slot"):
            if slot.get("name") == "hash" and slot.getparent().get("id") == "Document01":
                slot[0][0].text = hashlib.sha1(b"autre chose").hexdigest()  # noqa: S324 - XDS hash

    resp, _ = _deposit(wire, test_pki, title="Mauvaise empreinte", mutate=wrong_hash)
    assert _errors(_root(resp)[0])[0][0] == "XDSRepositoryMetadataError"
    _still_serving_and_unchanged(sandbox, wire, n)


def test_duplicate_unique_id(stack, test_pki):
    sandbox, wire, dep = stack
    n = len(sandbox.store.traces())
    parts = {cid: (content, "text/xml") for cid, content in dep.attachments.items()}
    resp = wire.call("TD2.1", dep.body, spec=_spec("gp", P), parts=parts)
    assert _errors(_root(resp)[0])[0][0] == "XDSDocumentUniqueIdError"
    _still_serving_and_unchanged(sandbox, wire, n)


def test_oversize_request(stack):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())
    from sandbox.server import http as server_http

    big = b"<x>" + b"a" * (server_http.MAX_REQUEST_BYTES + 10) + b"</x>"
    r = _raw(wire, big, service="repository")
    assert r.status_code == 413
    assert soap_fault(r)[1] == "sandbox:RequestTooLarge"
    _still_serving_and_unchanged(sandbox, wire, n)


@pytest.mark.parametrize("defect", ["unsigned", "tampered"])
def test_unsigned_or_tampered_vihf(stack, defect):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())
    spec = VihfSpec(profile="secretary", mode="INDIRECTE", patient_ins=P.ins, patient_oid=P.oid)
    vihf = wire.vihf(spec, sign=defect != "unsigned")
    if defect == "tampered":
        for av in vihf.iter(f"{{{SAML}}}AttributeValue"):
            if av.text == "3.0":
                av.text = "4.0"
    r = wire.call("TD3.1", build.find_documents(P.ins, P.oid), vihf=vihf, who="establishment")
    _code, sub, reason = soap_fault(r)
    assert sub in ("wsse:FailedCheck", "wsse:FailedAuthentication", "wsse:InvalidSecurityToken")
    assert ("non signé" if defect == "unsigned" else "signature du VIHF est invalide") in reason
    _still_serving_and_unchanged(sandbox, wire, n)


@pytest.mark.parametrize("which", ["foreign", "expired"])
def test_foreign_or_expired_client_certificate(stack, test_pki, foreign_pki, which):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())
    holder = foreign_pki.card("gp") if which == "foreign" else test_pki.card("expired")
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        wire.post(
            "registry",
            b"<x/>",
            "application/soap+xml",
            cert=(str(holder.auth_cert_path), str(holder.auth_key_path)),
        )
    root = _find(wire, "gp", P)
    assert root.get("status") == xds.SUCCESS
    assert len(sandbox.store.traces()) >= n + 1


def test_ins_with_a_bad_key(stack):
    sandbox, wire, _dep = stack
    n = len(sandbox.store.traces())
    bad = P.ins[:-2] + f"{(int(P.ins[-2:]) + 1) % 100:02d}"
    spec = VihfSpec(profile="gp", patient_ins=bad, patient_oid=P.oid)
    r = wire.call("TD3.1", build.find_documents(bad, P.oid), spec=spec)
    _code, _sub, reason = soap_fault(r)
    assert "clé de contrôle" in reason
    # and in an HL7v3 query body: an AE acknowledgement
    r = wire.call("TD0.2", build.existence_query(bad, P.oid), spec=_spec("gp", P))
    ack = _root(r)[0].find(".//{urn:hl7-org:v3}acknowledgement")
    assert ack.get("typeCode") == "AE"
    assert ack.find("{*}acknowledgementDetail/{*}code").get("code") == "INVALID_INS"
    _still_serving_and_unchanged(sandbox, wire, n)
