"""An independent client following dmp-protocol.md to the letter, messages written by hand as text: the forms
the spec says the DMP accepts are accepted (S1's unprefixed ``mustUnderstand``, empty ``wsa:To``, the SOAP
action only in the Content-Type or only in wsa:Action, quoted or unquoted MIME parameters, ``mustUnderstand``
as ``1``, an MTOM action on the root part only, inline base64), and the others get the right fault."""

from __future__ import annotations

import base64
import uuid

import pytest
from lxml import etree

from tests.fixtures.sandbox import ACTIONS, soap_fault

STORED_QUERY = ACTIONS["TD3.1"][1]
DEPOSIT = ACTIONS["TD2.1"][1]
QUERY_BODY = """<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
    xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
  <query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>
  <rim:AdhocQuery id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d">
    <rim:Slot name="$XDSDocumentEntryPatientId"><rim:ValueList>
      <rim:Value>'279037505612309^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH'</rim:Value></rim:ValueList></rim:Slot>
    <rim:Slot name="$XDSDocumentEntryStatus"><rim:ValueList>
      <rim:Value>('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')</rim:Value></rim:ValueList></rim:Slot>
  </rim:AdhocQuery>
</query:AdhocQueryRequest>"""


def _envelope(
    vihf: etree._Element,
    body: str = QUERY_BODY,
    *,
    action: str = STORED_QUERY,
    must: str = 'mustUnderstand="true"',
    to: str = "",
) -> bytes:
    """S1 layout: namespaces declared on each header, ``must`` as written by the client."""
    assertion = etree.tostring(vihf).decode()
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">
  <soap:Header>
    <wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:uuid:{uuid.uuid4()}</wsa:MessageID>
    <wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">{to}</wsa:To>
    <wsa:ReplyTo {must} xmlns:wsa="http://www.w3.org/2005/08/addressing">
      <wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address>
    </wsa:ReplyTo>
    <wsa:Action {must} xmlns:wsa="http://www.w3.org/2005/08/addressing">{action}</wsa:Action>
    <wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">{
        assertion
    }</wsse:Security>
  </soap:Header>
  <soap:Body>{body}</soap:Body>
</soap:Envelope>""".encode()


@pytest.mark.parametrize(
    "must",
    ['mustUnderstand="true"', 'soap:mustUnderstand="true"', 'soap:mustUnderstand="1"', ""],
    ids=["s1-unprefixed", "soap12", "soap12-one", "absent"],
)
def test_must_understand_forms_are_accepted(recording, must):
    _running, service, wire = recording
    r = wire.post(
        "registry", _envelope(wire.vihf(), must=must), f'application/soap+xml; action="{STORED_QUERY}"'
    )
    assert r.status_code == 200, r.text
    assert service.requests[-1].action == STORED_QUERY


@pytest.mark.parametrize(
    "ctype",
    [
        f'application/soap+xml; charset=UTF-8; action="{STORED_QUERY}"',
        f"application/soap+xml;charset=UTF-8;action={STORED_QUERY}",
        "application/soap+xml; charset=UTF-8",
        "application/soap+xml",
        f'Application/SOAP+XML; Action="{STORED_QUERY}"',
    ],
    ids=["quoted", "unquoted", "no-action", "bare", "case"],
)
def test_action_in_content_type_or_only_in_wsa(recording, ctype):
    _running, service, wire = recording
    r = wire.post("registry", _envelope(wire.vihf(), to=wire.sandbox.url("registry")), ctype)
    assert r.status_code == 200, r.text
    assert service.requests[-1].action == STORED_QUERY


def test_no_soapaction_header_is_needed_but_a_contradicting_content_type_is_refused(recording):
    _running, service, wire = recording
    r = wire.post("registry", _envelope(wire.vihf()), f'application/soap+xml; action="{DEPOSIT}"')
    _code, sub, reason = soap_fault(r)
    assert sub == "wsa:ActionMismatch" and "wsa:Action" in reason
    assert not service.requests


def test_wsa_action_is_required_even_with_the_content_type_action(recording):
    _running, service, wire = recording
    env = _envelope(wire.vihf()).replace(
        f'<wsa:Action mustUnderstand="true" xmlns:wsa="http://www.w3.org/2005/08/addressing">{STORED_QUERY}'
        "</wsa:Action>".encode(),
        b"",
    )
    assert b"wsa:Action" not in env
    r = wire.post("registry", env, f'application/soap+xml; action="{STORED_QUERY}"')
    _code, sub, _reason = soap_fault(r)
    assert sub == "wsa:MessageAddressingHeaderRequired"
    assert not service.requests


def _deposit_body(document: str) -> str:
    return (
        '<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007">'
        '<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">'
        '<rim:RegistryObjectList xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"/>'
        "</lcm:SubmitObjectsRequest>"
        f'<xdsb:Document id="Document01">{document}</xdsb:Document>'
        "</xdsb:ProvideAndRegisterDocumentSetRequest>"
    )


CDA = b"<ClinicalDocument xmlns='urn:hl7-org:v3'>\xc3\xa9</ClinicalDocument>"


def test_mtom_with_action_on_the_root_part_only_and_unquoted_parameters(recording):
    _running, service, wire = recording
    body = _deposit_body(
        '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" '
        'href="cid:1.urn%3Auuid%3Aabc@apache.org"/>'
    )
    env = _envelope(wire.vihf(), body, action=DEPOSIT)
    content = (
        b"--MIMEBoundary_x\r\n"
        b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"; action="'
        + DEPOSIT.encode()
        + b'"\r\nContent-Transfer-Encoding: 8bit\r\nContent-ID: <0.root@apache.org>\r\n\r\n'
        + env
        + b"\r\n--MIMEBoundary_x\r\nContent-Type: text/xml\r\nContent-Transfer-Encoding: binary\r\n"
        b"Content-ID: <1.urn:uuid:abc@apache.org>\r\n\r\n" + CDA + b"\r\n--MIMEBoundary_x--\r\n"
    )
    ctype = (
        'multipart/related; boundary=MIMEBoundary_x; type="application/xop+xml"; '
        'start="<0.root@apache.org>"; start-info="application/soap+xml"'
    )
    r = wire.post("repository", content, ctype)
    assert r.status_code == 200, r.text
    req = service.requests[-1]
    assert req.action == DEPOSIT
    assert list(req.attachments.values()) == [CDA]


def test_inline_base64_document_without_mtom(recording):
    _running, service, wire = recording
    env = _envelope(wire.vihf(), _deposit_body(base64.b64encode(CDA).decode()), action=DEPOSIT)
    r = wire.post("repository", env, f'application/soap+xml; charset=UTF-8; action="{DEPOSIT}"')
    assert r.status_code == 200, r.text
    assert list(service.requests[-1].attachments.values()) == [CDA]
