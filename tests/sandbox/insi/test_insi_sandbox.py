"""The INSi sandbox driven with hand-written requests (the spec's examples), independently of the client."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from lxml import etree

from sandbox.insi.certs import INSI_MANU, WRONG_NAME, insi_certificate
from sandbox.insi.server import RunningInsi
from sandbox.insi.service import SANDBOX_IDAM, InsiSettings
from sandbox.pki import TestPki
from sandbox.profiles import ESTABLISHMENT
from tests.fixtures.insi import SIRAM, SOAP, validate_answer, validate_request

CT = "application/soap+xml; charset=utf-8"

TRAITS = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"
               xmlns:wsa="http://www.w3.org/2005/08/addressing"
               xmlns:ctxbam="urn:siram:bam:ctxbam"
               xmlns:ctxlps="urn:siram:lps:ctxlps"
               xmlns:ins="http://www.cnamts.fr/INSiRecSans">
  <soap:Header>
    <ctxbam:ContexteBAM Version="01_02">
      <ctxbam:Id>0c5b7d1e-3f4a-4b8e-9a51-6d2f0e7c9b13</ctxbam:Id>
      <ctxbam:Temps>{temps}</ctxbam:Temps>
      <ctxbam:Emetteur>{emetteur}</ctxbam:Emetteur>
      <ctxbam:COUVERTURE/>
    </ctxbam:ContexteBAM>
    <ctxlps:ContexteLPS Nature="CTXLPS" {lps_version}>
      <ctxlps:Id>7e2d9c40-5a1b-4f6e-8c3d-2b9a1f0e4d57</ctxlps:Id>
      <ctxlps:Temps>{temps}</ctxlps:Temps>
      <ctxlps:Emetteur>{emetteur}</ctxlps:Emetteur>
      <ctxlps:LPS>
        <ctxlps:IDAM R="4">{idam}</ctxlps:IDAM>
        <ctxlps:Version>0.4.0</ctxlps:Version>
        <ctxlps:Instance>3f8e6a2c-1d7b-4c9e-a5f0-8b2d4e6c1a90</ctxlps:Instance>
        <ctxlps:Nom>urn:lps:PS-AGENT:0.4.0</ctxlps:Nom>
      </ctxlps:LPS>
    </ctxlps:ContexteLPS>
    <wsa:Action>{action}</wsa:Action>
    <wsa:MessageID>{message_id}</wsa:MessageID>{security}
  </soap:Header>
  <soap:Body>
    <ins:RECSANSVITALE>
      <ins:NomNaissance>{nom}</ins:NomNaissance>
      {prenoms}
      <ins:Sexe>M</ins:Sexe>
      <ins:DateNaissance>1960-01-01</ins:DateNaissance>
      <ins:LieuNaissance>2B020</ins:LieuNaissance>
    </ins:RECSANSVITALE>
  </soap:Body>
</soap:Envelope>"""

# insi.md §3.1, byte for byte as returned by the qualification service (after the XML declaration)
REAL_ANSWER = (
    b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:env="http://www.w3.org/2003/05/'
    b'soap-envelope"><env:Header/><env:Body xmlns:S="http://www.w3.org/2003/05/soap-envelope">'
    b'<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat" xmlns:ns0="http://www.cnamts.fr/INSiRecVit" xmlns:ns1="http://www.cna'
    b'mts.fr/INSiRecSans"><CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU><INSACTIF><IdIndividu>'
    b"<NumIdentifiant>160012B020777</NumIdentifiant><Cle>13</Cle></IdIndividu><OID>1.2.250.1.213.1.4.8</OID>"
    b"</INSACTIF><TIQ><NomNaissance>ADRTROIS</NomNaissance><ListePrenom>TOUSSAINT</ListePrenom><Sexe>M</Sexe>"
    b"<DateNaissance>1960-01-01</DateNaissance><LieuNaissance>2B020</LieuNaissance></TIQ></INDIVIDU></RESULTAT>"
    b"</env:Body></soap:Envelope>"
)

VITALE = """<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"
    xmlns:wsa="http://www.w3.org/2005/08/addressing"
    xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    xmlns:ctxbam="urn:siram:bam:ctxbam" xmlns:ctxlps="urn:siram:lps:ctxlps" xmlns:vit="http://www.cnamts.fr/INSiRecVit">
  <soap:Header>
    <ctxbam:ContexteBAM Version="01_02">
      <ctxbam:Id>b7f3a2c9-4e1d-4a68-9c05-3d8e6f1a2b70</ctxbam:Id><ctxbam:Temps>{temps}</ctxbam:Temps>
      <ctxbam:Emetteur>{emetteur}</ctxbam:Emetteur>
      <ctxbam:COUVERTURE><ctxbam:GrandRegime>01</ctxbam:GrandRegime><ctxbam:Organisme>631</ctxbam:Organisme>
        <ctxbam:CodeCentre>9881</ctxbam:CodeCentre>
        <ctxbam:ASSURE><ctxbam:Id><ctxbam:Num>{od}</ctxbam:Num><ctxbam:Cle>74</ctxbam:Cle></ctxbam:Id></ctxbam:ASSURE>
        <ctxbam:BENEFICIAIRE><ctxbam:DateNai>1975-12-31</ctxbam:DateNai><ctxbam:Rang>1</ctxbam:Rang></ctxbam:BENEFICIAIRE>
      </ctxbam:COUVERTURE>
    </ctxbam:ContexteBAM>
    <ctxlps:ContexteLPS Nature="CTXLPS" Version="01_00">
      <ctxlps:Id>c1d9e5f3-7a2b-4c86-b0e4-9f2a6d8c3e15</ctxlps:Id><ctxlps:Temps>{temps}</ctxlps:Temps>
      <ctxlps:Emetteur>{emetteur}</ctxlps:Emetteur>
      <ctxlps:LPS><ctxlps:IDAM R="4">{idam}</ctxlps:IDAM><ctxlps:Version>0.4.0</ctxlps:Version>
        <ctxlps:Instance>3f8e6a2c-1d7b-4c9e-a5f0-8b2d4e6c1a90</ctxlps:Instance><ctxlps:Nom>urn:lps:PS-AGENT:0.4.0</ctxlps:Nom>
      </ctxlps:LPS>
    </ctxlps:ContexteLPS>
    <wsa:Action>urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale</wsa:Action>
    <wsa:MessageID>uuid:{mid}</wsa:MessageID>
    <wsse:Security>
      <Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="_4f7a1c93-e2d8-4b65-a0f9-6c3e5d2b8a14"
                 IssueInstant="{issued}" Version="2.0">
        <Issuer>{emetteur}</Issuer>
        <Subject><NameID NameQualifier="VITALE">{serial}</NameID></Subject>
      </Assertion>
    </wsse:Security>
  </soap:Header>
  <soap:Body>
    <vit:RECVITALE>
      <vit:MatriculeOD><vit:NumIdentifiant>{od}</vit:NumIdentifiant></vit:MatriculeOD>
      <vit:NomNaissance>ADRUN</vit:NomNaissance>
      <vit:DateNaissance>1975-12-31</vit:DateNaissance>
      <vit:RangNaissance>1</vit:RangNaissance>
    </vit:RECVITALE>
  </soap:Body>
</soap:Envelope>"""

ACTION = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"


def _now(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def traits_request(**kw: str) -> bytes:
    values = {
        "temps": _now(),
        "emetteur": ESTABLISHMENT.structure_id,
        "idam": SANDBOX_IDAM,
        "action": ACTION,
        "message_id": f"uuid:{uuid.uuid4()}",
        "nom": "ADRTROIS",
        "prenoms": "<ins:Prenom>TOUSSAINT</ins:Prenom>",
        "lps_version": 'Version="01_00"',
        "security": "",
    }
    values.update(kw)
    return TRAITS.format(**values).encode()


def vitale_request(**kw: str) -> bytes:
    values = {
        "temps": _now(),
        "issued": _now(),
        "emetteur": ESTABLISHMENT.structure_id,
        "idam": SANDBOX_IDAM,
        "od": "2751263220749",
        "serial": "000000000101",
        "mid": str(uuid.uuid4()),
    }
    values.update(kw)
    return VITALE.format(**values).encode()


def _client(pki: TestPki, cn: str | None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(pki.ca_bundle))
    if cn is not None:
        c = insi_certificate(pki, cn)
        ctx.load_cert_chain(str(c.cert_path), str(c.key_path))
    return httpx.Client(verify=ctx, timeout=10)


@pytest.fixture
def mtls(test_pki: TestPki) -> Iterator[httpx.Client]:
    with _client(test_pki, INSI_MANU) as c:
        yield c


def post(client: httpx.Client, url: str, data: bytes, ctype: str = CT) -> httpx.Response:
    validate = data.strip().startswith(b"<")
    response = client.post(url, content=data, headers={"Content-Type": ctype})
    if validate and response.headers.get("content-type", "").startswith("application/soap+xml"):
        validate_answer(response.content)  # every answer against the official schemas
    return response


def fault_of(response: httpx.Response) -> tuple[str, str, str, str, str]:
    assert response.status_code == 500
    root = etree.fromstring(response.content)
    values = [v.text for v in root.iter(f"{{{SOAP}}}Value")]
    erreur = root.find(f".//{{{SIRAM}}}Erreur")
    assert erreur is not None
    reason = root.findtext(f".//{{{SOAP}}}Text") or ""
    return values[0] or "", values[1] or "", erreur.get("code", ""), reason, erreur.get("messageID", "")


def test_the_spec_example_gets_the_real_answer_byte_for_byte(
    insi_sandbox: RunningInsi, mtls: httpx.Client
) -> None:
    request = traits_request()
    validate_request(request)
    response = post(mtls, insi_sandbox.mtls_url, request)
    assert response.status_code == 200
    assert response.content.split(b"?>", 1)[1] == REAL_ANSWER


def test_empty_security_header_is_accepted_in_mode_a(insi_sandbox: RunningInsi, mtls: httpx.Client) -> None:
    """The JAX-WS client of S4 sends an empty wsse:Security (schema-invalid, accepted by the service)."""
    sec = '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/>'
    assert post(mtls, insi_sandbox.mtls_url, traits_request(security=sec)).status_code == 200


def test_no_client_certificate_fails_the_handshake(insi_sandbox: RunningInsi, test_pki: TestPki) -> None:
    with _client(test_pki, None) as c, pytest.raises(httpx.TransportError):
        c.post(insi_sandbox.mtls_url, content=traits_request(), headers={"Content-Type": CT})


def test_other_certificate_name_is_desir_560(insi_sandbox: RunningInsi, test_pki: TestPki) -> None:
    with _client(test_pki, WRONG_NAME) as c:
        code, sub, detail, reason, _ = fault_of(post(c, insi_sandbox.mtls_url, traits_request()))
    assert (code, sub, detail, reason) == (
        "S:Sender",
        "S:siram_100",
        "DESIR_560",
        "Niveau d'accès insuffisant",
    )


def test_unknown_idam_is_desir_550_with_the_real_texts(insi_sandbox: RunningInsi, mtls: httpx.Client) -> None:
    mid = f"uuid:{uuid.uuid4()}"
    code, sub, detail, reason, echoed = fault_of(
        post(mtls, insi_sandbox.mtls_url, traits_request(idam="XXX00XX00XX0", message_id=mid))
    )
    assert (code, sub, detail, echoed) == ("S:Sender", "S:siram_100", "desir_550", mid)
    assert reason == (
        "L'accès par ce progiciel au service n'est pas autorisé. Contactez l'éditeur du progiciel ou votre "
        "responsable informatique."
    )


def test_several_prenom_is_the_observed_technical_fault(
    insi_sandbox: RunningInsi, mtls: httpx.Client
) -> None:
    two = "<ins:Prenom>TOUSSAINT</ins:Prenom><ins:Prenom>JEAN</ins:Prenom>"
    code, sub, detail, _, _ = fault_of(post(mtls, insi_sandbox.mtls_url, traits_request(prenoms=two)))
    assert (code, sub, detail) == ("S:Receiver", "S:siram_40", "insi_102")
    insi_sandbox.configure(InsiSettings(several_prenom_fault=False))
    assert post(mtls, insi_sandbox.mtls_url, traits_request(prenoms=two)).status_code == 200


@pytest.mark.parametrize(
    ("kw", "detail_code"),
    [
        ({"nom": "Adrtrois"}, "sandbox_traits"),
        ({"nom": "ADRTROÏS"}, "sandbox_traits"),
        ({"nom": "ADRTROIS3"}, "sandbox_traits"),
        ({"prenoms": "<ins:Prenom>TOUSSAINT-</ins:Prenom>"}, "sandbox_traits"),
        ({"action": "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"}, "sandbox_action"),
        ({"message_id": "urn:uuid:5d1f2a8b-9c3e-4f70-b6a4-0e8d7c2b1f36"}, "sandbox_messageid"),
        ({"temps": _now(timedelta(minutes=-10))}, "sandbox_context"),
        ({"lps_version": ""}, "sandbox_context"),  # Version is required by CTXLPS_V01_00
        ({"emetteur": "10B0152872"}, "sandbox_emetteur"),
    ],
)
def test_sender_checks(
    insi_sandbox: RunningInsi, mtls: httpx.Client, kw: dict[str, str], detail_code: str
) -> None:
    code, sub, detail, reason, _ = fault_of(post(mtls, insi_sandbox.mtls_url, traits_request(**kw)))
    assert (code, sub, detail) == ("S:Sender", "S:siram_100", detail_code)
    assert reason


def test_lenient_emetteur_reproduces_the_real_service(insi_sandbox: RunningInsi, mtls: httpx.Client) -> None:
    insi_sandbox.configure(InsiSettings(strict_emetteur=False))
    assert post(mtls, insi_sandbox.mtls_url, traits_request(emetteur="texte libre")).status_code == 200


def test_hostile_xml_is_refused(insi_sandbox: RunningInsi, mtls: httpx.Client) -> None:
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    _, _, detail, _, _ = fault_of(post(mtls, insi_sandbox.mtls_url, evil))
    assert detail == "sandbox_xml"


def test_http_outside_the_protocol(insi_sandbox: RunningInsi, mtls: httpx.Client) -> None:
    assert (
        mtls.post(
            insi_sandbox.mtls_url, content=traits_request(), headers={"Content-Type": "text/xml"}
        ).status_code
        == 415
    )
    assert mtls.get(insi_sandbox.mtls_url).status_code == 405
    post(mtls, insi_sandbox.mtls_url, traits_request())
    state = mtls.get(insi_sandbox.mtls_url.replace("/lps", "/_sandbox/state")).json()
    assert state["calls"] == 1 and state["outcomes"] == {"00": 1}


def test_cpx_endpoint_requires_a_signed_ps_assertion(insi_sandbox: RunningInsi, test_pki: TestPki) -> None:
    unsigned = (
        '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
        '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_1" IssueInstant="'
        + _now()
        + '" Version="2.0"><saml:Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName">'
        'CN=x</saml:Issuer><saml:Subject><saml:NameID NameQualifier="CPS">899700000013</saml:NameID>'
        "</saml:Subject>"
        "</saml:Assertion></wsse:Security>"
    )
    with _client(test_pki, None) as c:
        for security in ("", unsigned):
            _, _, detail, _, _ = fault_of(
                post(c, insi_sandbox.cpx_url, traits_request(security=security, emetteur="899700000013"))
            )
            assert detail == "sandbox_assertion"


def test_vitale_search_mode_a(insi_sandbox: RunningInsi, mtls: httpx.Client) -> None:
    request = vitale_request()
    validate_request(request)
    response = post(mtls, insi_sandbox.mtls_url, request)
    assert response.status_code == 200
    assert b"<NumIdentifiant>2751263220749</NumIdentifiant><Cle>74</Cle>" in response.content


@pytest.mark.parametrize(
    ("kw", "reason_part"),
    [
        ({"issued": _now(timedelta(minutes=-21))}, "périmée"),
        ({"serial": "000000000999"}, "inconnue"),
        ({"serial": "000000000102"}, "MatriculeOD"),  # card of another assuré
        ({"od": "2751263220740"}, "MatriculeOD"),
    ],
)
def test_vitale_checks(
    insi_sandbox: RunningInsi, mtls: httpx.Client, kw: dict[str, str], reason_part: str
) -> None:
    _, _, detail, reason, _ = fault_of(post(mtls, insi_sandbox.mtls_url, vitale_request(**kw)))
    assert detail == "sandbox_vitale" and reason_part in reason


def test_schema_validation_of_answers_can_fail() -> None:
    """The validation helper used everywhere really rejects a schema-invalid RESULTAT."""
    bad = REAL_ANSWER.replace(b"<Cle>13</Cle>", b"<Cle>1X</Cle>")
    with pytest.raises(AssertionError):
        validate_answer(bad)


def test_store_json_round_trip(tmp_path: Path) -> None:
    from sandbox.insi.data import InsiStore, StoreError

    store = InsiStore.default()
    path = tmp_path / "insi.json"
    path.write_text(store.to_json(), encoding="utf-8")
    again = InsiStore.from_json(path)
    assert again.persons == store.persons and again.cards == store.cards
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(StoreError, match="illisible"):
        InsiStore.from_json(path)


def test_demo_patients_are_insi_persons_with_the_dmp_ins() -> None:
    from sandbox.demo import DEMO_PATIENTS
    from sandbox.insi.data import InsiStore

    store = InsiStore.default()
    for d in DEMO_PATIENTS:
        p = store.person(d.ins[:13])
        assert p is not None and p.ins.matricule + p.ins.key == d.ins and p.ins.oid == d.oid
    for card in store.cards:  # every beneficiary of the Vitale registry is a person of the store
        assert store.person(card.assure) is not None
        assert all(store.person(b.ins) is not None for b in card.beneficiaries)


def test_serve_starts_insi_next_to_the_dmp(tmp_path: Path, test_pki: TestPki) -> None:
    import os
    import re
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--pki",
            str(test_pki.directory),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Arrêt"):
                break
        text = "".join(lines)
        m = re.search(r"INSi local : (https://\S+/lps) .* et (https://\S+/lps)", text)
        assert m, text
        with _client(test_pki, INSI_MANU) as c:
            response = c.post(m.group(1), content=traits_request(), headers={"Content-Type": CT})
        assert response.status_code == 200 and b"<CodeCR>00</CodeCR>" in response.content
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tampered_signed_vitale_assertion_is_refused(insi_sandbox: RunningInsi, mtls: httpx.Client) -> None:
    import base64
    import hashlib
    import hmac

    from sandbox.insi.data import vitale_card_secret

    root = etree.fromstring(vitale_request())
    assertion = root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}Assertion")
    assert assertion is not None
    ds = "http://www.w3.org/2000/09/xmldsig#"

    def c14n(el: etree._Element) -> bytes:
        return bytes(etree.tostring(el, method="c14n", exclusive=True))

    digest = base64.b64encode(hashlib.sha256(c14n(assertion)).digest()).decode()
    sig = etree.fromstring(
        f'<ds:Signature xmlns:ds="{ds}"><ds:SignedInfo>'
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        '<ds:SignatureMethod Algorithm="urn:ps-agent:sandbox:vitale-hmac-sha256"/>'
        f'<ds:Reference URI="#{assertion.get("ID")}"><ds:Transforms>'
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>'
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        f"<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo></ds:Signature>"
    )
    assertion[0].addnext(sig)
    info = sig[0]
    value = hmac.new(vitale_card_secret("000000000101"), c14n(info), hashlib.sha256).digest()
    etree.SubElement(sig, f"{{{ds}}}SignatureValue").text = base64.b64encode(value).decode()
    good = etree.tostring(root)
    assert post(mtls, insi_sandbox.mtls_url, good).status_code == 200
    name_id = assertion.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}NameID")
    assert name_id is not None
    name_id.text = "000000000102"  # another card, signature kept
    _, _, detail, reason, _ = fault_of(post(mtls, insi_sandbox.mtls_url, etree.tostring(root)))
    assert detail == "sandbox_vitale" and "empreinte" in reason


def test_fixed_clock_of_the_sandbox(test_pki: TestPki) -> None:
    """Deterministic runs: the sandbox clock is injectable; a request stamped 'now' is then out of range."""
    from sandbox.insi.server import start_insi

    with (
        start_insi(test_pki, clock=lambda: datetime(2025, 5, 12, 8, 41, tzinfo=UTC)) as running,
        _client(test_pki, INSI_MANU) as c,
    ):
        _, _, detail, _, _ = fault_of(post(c, running.mtls_url, traits_request()))
        assert detail == "sandbox_context"
        ok = post(c, running.mtls_url, traits_request(temps="2025-05-12T08:41:07.123Z"))
        assert ok.status_code == 200
