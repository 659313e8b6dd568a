"""MTOM/XOP: deposits with parts (any boundary, quoted or not, base64 parts, URL-encoded cid), inline base64
normalised to attachments, a missing part refused, MTOM responses for ITI-43."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from sandbox.server import mtom
from sandbox.server.context import SoapFault
from tests.fixtures.sandbox import ACTIONS, SOAP, envelope, soap_fault
from tests.sandbox.server.bodies import XDSB, XOP, provide_and_register, retrieve

DEPOSIT_SERVICE, DEPOSIT = ACTIONS["TD2.1"]
CDA = b"<ClinicalDocument xmlns='urn:hl7-org:v3'>" + b"x" * 50_000 + b"</ClinicalDocument>"


def _includes(body):
    return [i.get("href") for i in body.iter(f"{{{XOP}}}Include")]


def test_deposit_parts_reach_the_domain_layer(recording):
    _running, service, wire = recording
    body = provide_and_register({"Document01": "cid:doc1%40agent", "Signature01": "cid:sig1@agent"})
    r = wire.call(
        "TD2.1", body, parts={"doc1@agent": (CDA, "text/xml"), "sig1@agent": (b"<Signature/>", "text/xml")}
    )
    assert r.status_code == 200, r.text
    req = service.requests[-1]
    assert req.attachments == {"doc1@agent": CDA, "sig1@agent": b"<Signature/>"}
    assert _includes(req.body) == ["cid:doc1@agent", "cid:sig1@agent"]  # URL-decoded


def test_missing_mtom_part(recording):
    _running, service, wire = recording
    body = provide_and_register({"Document01": "cid:doc1@agent", "Signature01": "cid:absent@agent"})
    r = wire.call("TD2.1", body, parts={"doc1@agent": (CDA, "text/xml")})
    assert r.status_code == 400
    _code, sub, reason = soap_fault(r)
    assert sub == "sandbox:MissingMtomPart" and "absent@agent" in reason and "Pièce MTOM manquante" in reason
    assert not service.requests and service.refusals


def test_inline_base64_document_is_normalised(recording):
    _running, service, wire = recording
    r = wire.call("TD2.1", provide_and_register({"Document01": CDA}))
    assert r.status_code == 200, r.text
    req = service.requests[-1]
    (href,) = _includes(req.body)
    assert req.attachments[href[4:]] == CDA


def test_invalid_inline_base64(recording):
    _running, _service, wire = recording
    body = provide_and_register({"Document01": b""})
    body.find(f"{{{XDSB}}}Document").text = "***not base64***"
    _code, sub, _reason = soap_fault(wire.call("TD2.1", body))
    assert sub == "sandbox:InvalidBase64"


def test_raw_multipart_variants(recording):
    """Unquoted parameters, no ``start`` (first part is the root), a base64-encoded part, LF line ends."""
    _running, service, wire = recording
    env = envelope(DEPOSIT, provide_and_register({"Document01": "cid:d1"}), wire.vihf())
    payload = (
        b'--xyz\nContent-Type: application/xop+xml; type="application/soap+xml"\nContent-ID: <root>\n\n'
        + env
        + b"\n--xyz\nContent-Type: text/xml\nContent-Transfer-Encoding: base64\nContent-ID: <d1>\n\n"
        + base64.encodebytes(CDA)
        + b"\n--xyz--\n"
    )
    r = wire.post(DEPOSIT_SERVICE, payload, "multipart/related; boundary=xyz; type=application/xop+xml")
    assert r.status_code == 200, r.text
    assert service.requests[-1].attachments == {"d1": CDA}


@pytest.mark.parametrize(
    ("payload", "ctype", "words"),
    [
        (b"--b\r\n\r\nx\r\n--b--", "multipart/related", "boundary"),
        (b"--b\r\nContent-ID: <a>\r\n\r\nx\r\n", "multipart/related; boundary=b", "tronqué"),
        (b"--b\r\nContent-ID: <a>\r\n\r\nx\r\n--b--", 'multipart/related; boundary=b; start="<zz>"', "zz"),
        (
            b"--b\r\nContent-ID: <a>\r\n\r\nx\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n"
            b"Content-ID: <c>\r\n\r\ny\r\n--b--",
            "multipart/related; boundary=b",
            "quoted-printable",
        ),
    ],
    ids=["no-boundary", "truncated", "unknown-start", "bad-encoding"],
)
def test_broken_multipart(recording, payload, ctype, words):
    _running, _service, wire = recording
    r = wire.post(DEPOSIT_SERVICE, payload, ctype)
    assert r.status_code == 400
    _code, sub, reason = soap_fault(r)
    assert sub == "sandbox:InvalidMtom" and words in reason


def test_retrieve_answer_is_mtom(recording):
    _running, _service, wire = recording
    r = wire.call("TD3.2", retrieve())
    assert r.status_code == 200
    ctype = mtom.parse_content_type(r.headers["content-type"])
    assert ctype.mime == "multipart/related"
    assert (
        ctype.params["type"] == "application/xop+xml" and ctype.params["start-info"] == "application/soap+xml"
    )
    root, parts = mtom.parse_multipart(r.content, ctype)
    env = etree.fromstring(root)
    include = env.find(f"{{{SOAP}}}Body//{{{XOP}}}Include")
    assert parts[mtom.normalise_cid(include.get("href"))] == b"<ClinicalDocument/>"


def test_parse_multipart_unit():
    ctype = mtom.parse_content_type('multipart/related; boundary="a b"; start="<r@x>"')
    body = (
        b"--a b\r\nContent-ID: <p@x>\r\n\r\nPART\r\n--a b\r\nContent-ID: <r@x>\r\n\r\n<root/>\r\n--a b--\r\n"
    )
    root, parts = mtom.parse_multipart(body, ctype)
    assert root == b"<root/>" and parts == {"p@x": b"PART"}
    with pytest.raises(SoapFault):
        mtom.parse_multipart(body.replace(b"<p@x>", b"<r@x>"), ctype)
