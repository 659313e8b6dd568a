"""DmpClient failure modes: no duplicate deposit after a lost answer, typed errors for every bad answer."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from ps_agent.config import ENVIRONMENTS, LPS
from ps_agent.dmp import xades
from ps_agent.dmp.client import DmpClient
from ps_agent.dmp.ebrim import DepositItem
from ps_agent.dmp.errors import (
    DmpStatusRefusal,
    DmpTimeout,
    DocumentIntegrityError,
    Hl7Refusal,
    ProtocolError,
    RegistryRefusal,
    SoapFault,
    TransportError,
)
from ps_agent.dmp.model import Status
from ps_agent.dmp.xmlns import HABILITATIONS, RIM, XDSB, q
from ps_agent.errors import AuthError
from tests.fixtures.dmp_samples import CDA, ITI18, ITI41, ITI43, TD02, TD03, entry, hl7_answer

from .fakedmp import SUCCESS_RR, FakeCredentials, FakeDmp, envelope, ok, query_response


@pytest.fixture
def dmp() -> FakeDmp:
    return FakeDmp()


@pytest.fixture
def client(dmp, gp, signer):
    c = DmpClient(FakeCredentials(gp, signer), ENVIRONMENTS["sandbox"], LPS, transport=dmp.transport())
    yield c
    c.close()


def registry_handler(registered: dict[str, object]):
    def handle(req):
        uids = [
            v.text.strip("()'")
            for s in req.root.iter(q(RIM, "Slot"))
            if s.get("name") == "$XDSDocumentEntryUniqueId"
            for v in s.iter(q(RIM, "Value"))
        ]
        wanted = {u.strip("'") for raw in uids for u in raw.split("','")}
        return ok(req, query_response([e for uid, e in registered.items() if uid in wanted]))

    return handle


def _deposit(client, patient):
    ss = client.submission_set(patient)
    return client.deposit(ss, [DepositItem(entry(patient), CDA)])


def test_deposit_sends_signed_mtom_request(client, dmp, patient, signer):
    dmp.handlers[ITI41] = lambda req: ok(req, SUCCESS_RR)
    result = _deposit(client, patient)
    assert result.attempts == 1 and not result.recovered
    [call] = dmp.calls
    docs = {d.get("id"): d for d in call.root.iter(q(XDSB, "Document"))}
    assert set(docs) == {"Document01", "Signature01"}
    assert len(call.parts) == 2
    cda_part = next(p for p in call.parts.values() if p.data == CDA)
    sig_part = next(p for p in call.parts.values() if p is not cda_part)
    assert xades.verify(sig_part.data, {entry(patient).unique_id: CDA}) == signer.certificate


def test_lost_answer_after_registration_is_recovered_without_resend(client, dmp, patient):
    registered: dict[str, object] = {}

    def iti41(req):
        e = entry(patient, entry_uuid="urn:uuid:aa")
        registered[e.unique_id] = e
        raise httpx.ReadTimeout("answer lost")

    dmp.handlers[ITI41] = iti41
    dmp.handlers[ITI18] = registry_handler(registered)
    result = _deposit(client, patient)
    assert result.recovered and result.attempts == 1
    assert dmp.count(ITI41) == 1  # never sent twice
    assert dmp.count(ITI18) == 1


def test_lost_request_is_resent_once_after_checking(client, dmp, patient):
    registered: dict[str, object] = {}
    attempts = []

    def iti41(req):
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.ConnectError("connection reset")
        return ok(req, SUCCESS_RR)

    dmp.handlers[ITI41] = iti41
    dmp.handlers[ITI18] = registry_handler(registered)
    result = _deposit(client, patient)
    assert result.attempts == 2 and not result.recovered
    assert [c.action for c in dmp.calls] == [ITI41, ITI18, ITI41]


def test_unknown_outcome_is_not_resent_when_the_check_fails(client, dmp, patient):
    def iti41(req):
        raise httpx.ReadTimeout("lost")

    def iti18(req):
        raise httpx.ConnectError("down")

    dmp.handlers[ITI41] = iti41
    dmp.handlers[ITI18] = iti18
    with pytest.raises(TransportError):
        _deposit(client, patient)
    assert dmp.count(ITI41) == 1


def test_repeated_network_failures_give_up_with_retryable_error(client, dmp, patient):
    def iti41(req):
        raise httpx.ReadTimeout("lost")

    dmp.handlers[ITI41] = iti41
    dmp.handlers[ITI18] = registry_handler({})
    with pytest.raises(DmpTimeout) as exc:
        _deposit(client, patient)
    assert exc.value.retryable
    assert dmp.count(ITI41) == 2  # first try + one resend (deposit_retries=1), each after a check


def test_registry_refusal_is_never_retried(client, dmp, patient):
    dmp.handlers[ITI41] = lambda req: ok(
        req,
        '<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
        'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"><rs:RegistryErrorList>'
        '<rs:RegistryError errorCode="XDSPatientIdDoesNotMatch" codeContext="INS différent"/>'
        "</rs:RegistryErrorList></rs:RegistryResponse>",
    )
    with pytest.raises(RegistryRefusal) as exc:
        _deposit(client, patient)
    assert exc.value.code == "XDSPatientIdDoesNotMatch"
    assert dmp.count(ITI41) == 1


@pytest.mark.parametrize(
    "response, error",
    [
        (
            httpx.Response(200, content=b"<html>proxy</html>", headers={"content-type": "text/html"}),
            ProtocolError,
        ),
        (httpx.Response(200, content=b"", headers={"content-type": "application/soap+xml"}), ProtocolError),
        (httpx.Response(502, content=b"Bad gateway", headers={"content-type": "text/plain"}), TransportError),
        (httpx.Response(404, content=b"not found", headers={"content-type": "text/plain"}), ProtocolError),
    ],
)
def test_bad_answers_are_typed_errors_never_success(client, dmp, patient, response, error):
    dmp.handlers[ITI18] = lambda req: response
    with pytest.raises(error) as exc:
        client.find_documents(patient)
    assert exc.value.message_fr


def test_answer_to_another_request_is_refused(client, dmp, patient):
    dmp.handlers[ITI18] = lambda req: httpx.Response(
        200, content=envelope(SUCCESS_RR, "urn:uuid:someone-else", ITI18 + "Response")
    )
    with pytest.raises(ProtocolError):
        client.find_documents(patient)


def test_wrong_message_type_is_refused(client, dmp, patient):
    dmp.handlers[ITI18] = lambda req: ok(req, SUCCESS_RR)  # RegistryResponse instead of AdhocQueryResponse
    with pytest.raises(ProtocolError):
        client.find_documents(patient)


def test_soap_fault_with_http_500_is_a_refusal_not_a_network_error(client, dmp, patient):
    fault = (
        '<s:Fault xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Code><s:Value>s:Sender</s:Value></s:Code>'
        "<s:Reason><s:Text>Aucune spécialité dans le vihf</s:Text></s:Reason></s:Fault>"
    )
    dmp.handlers[ITI18] = lambda req: ok(req, fault, status=500)
    with pytest.raises(SoapFault) as exc:
        client.find_documents(patient)
    assert exc.value.code_context == "Aucune spécialité dans le vihf"


def test_td02_status_and_hl7_refusal(client, dmp, patient):
    dmp.handlers[TD02] = lambda req: ok(req, hl7_answer("AA"))
    status = client.status(patient)
    assert status.exists and status.active and status.authorised and status.is_medecin_traitant
    assert status.family_name == "DUPONT"
    detail = (
        '<acknowledgementDetail><code code="DMPInvalidData"/><text>INS inconnu</text></acknowledgementDetail>'
    )
    dmp.handlers[TD02] = lambda req: ok(req, hl7_answer("AE", detail))
    with pytest.raises(Hl7Refusal) as exc:
        client.status(patient)
    assert exc.value.code == "DMPInvalidData" and "INS inconnu" in exc.value.message_fr


def test_td03_status_other_than_dmpok_is_refusal(client, dmp, patient):
    def answer(status: str, ctx: str):
        return lambda req: ok(
            req,
            f'<setAuthorizationResponse xmlns="{HABILITATIONS}"><output><status>{status}</status>'
            f"<context>{ctx}</context></output></setAuthorizationResponse>",
        )

    dmp.handlers[TD03] = answer("DMPOk", "Autorisation déjà présente aucune action effectuée")
    assert client.set_authorization(patient).startswith("Autorisation déjà présente")
    body = dmp.calls[-1].root.find(f".//{q(HABILITATIONS, 'setAuthorization')}")
    assert body.findtext(q(HABILITATIONS, "action")) == "AJOUT"
    dmp.handlers[TD03] = answer("DMPClosed", "DMP fermé")
    with pytest.raises(DmpStatusRefusal) as exc:
        client.set_authorization(patient)
    assert exc.value.code == "DMPClosed" and "pas de DMP actif" in exc.value.message_fr


def test_retrieve_checks_hash(client, dmp, patient):
    good = entry(
        patient,
        entry_uuid="urn:uuid:1",
        status=Status.APPROVED,
        hash=hashlib.sha1(CDA).hexdigest(),  # noqa: S324
        size=len(CDA),
    )

    def iti43(content: bytes):
        def handle(req):
            body = (
                f'<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="{XDSB}">{SUCCESS_RR}<xdsb:DocumentResponse>'
                "<xdsb:RepositoryUniqueId>1.2.250.1.213.4.1.1.1.2</xdsb:RepositoryUniqueId>"
                f"<xdsb:DocumentUniqueId>{good.unique_id}</xdsb:DocumentUniqueId><xdsb:mimeType>text/xml</xdsb:mimeType>"
                '<xdsb:Document><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" '
                'href="cid:d1%40x"/>'
                "</xdsb:Document></xdsb:DocumentResponse></xdsb:RetrieveDocumentSetResponse>"
            )
            from ps_agent.dmp import mtom

            ctype, data = mtom.build(
                envelope(body, req.message_id, ITI43 + "Response"),
                [mtom.Part("d1@x", "text/xml", content)],
                action="x",
            )
            return httpx.Response(200, content=data, headers={"content-type": ctype})

        return handle

    dmp.handlers[ITI43] = iti43(CDA)
    assert client.retrieve(patient, good).content == CDA
    dmp.handlers[ITI43] = iti43(CDA.replace(b"Lettre", b"LETTRE"))
    with pytest.raises(DocumentIntegrityError):
        client.retrieve(patient, good)


def test_ended_session_stops_before_sending(client, dmp, patient):
    client._creds.active = False
    with pytest.raises(AuthError):
        client.find_documents(patient)
    assert dmp.calls == []


def test_submission_set_has_fresh_oids(client, patient):
    a, b = client.submission_set(patient), client.submission_set(patient)
    assert a.unique_id != b.unique_id and len(a.unique_id) <= 64
    assert a.submission_time <= datetime.now(UTC)


def test_requests_as_sent_validate_against_official_schemas(client, dmp, patient, shared_dir):
    """Every request the client puts on the wire (XOP infoset for MTOM) is valid SOAP 1.2 + WS-A + WSS +
    SAML + XDS.b against ../shared/schemas/xds/offline-dmp.xsd."""
    import base64
    import copy

    from lxml import etree

    from ps_agent.dmp.xmlns import XOP

    schema = etree.XMLSchema(file=str(shared_dir / "schemas/xds/offline-dmp.xsd"))
    dmp.handlers[ITI41] = lambda req: ok(req, SUCCESS_RR)
    dmp.handlers[ITI18] = lambda req: ok(req, query_response([]))
    _deposit(client, patient)
    client.find_documents(patient)
    client.get_documents(patient, unique_ids=["1.2.3"])
    assert len(dmp.calls) == 3
    for call in dmp.calls:
        root = copy.deepcopy(call.root)
        for inc in list(root.iter(q(XOP, "Include"))):
            parent = inc.getparent()
            parent.remove(inc)
            cid = inc.get("href")[4:].replace("%40", "@")
            parent.text = base64.b64encode(call.parts[cid].data).decode()
        assert schema.validate(root), (call.action, schema.error_log)
