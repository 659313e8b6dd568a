"""WS_INS2 and WS_INS1 against the INSi sandbox over real TLS, in both authentication modes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from ps_agent.identity.model import (
    CodeCR,
    Operation,
    TraitsQuery,
    VitaleBeneficiary,
    VitaleCard,
    VitaleSelection,
)
from sandbox.demo import DEMO_ADULT, DEMO_MINOR
from sandbox.insi.data import DEMO_PERSONS, QUALIFICATION_PERSONS, Person
from sandbox.pki import TestPki
from sandbox.profiles import ESTABLISHMENT
from tests.fixtures.insi import CTXBAM, CTXLPS, RECSANS, RECVIT, SAML, SOAP, WSA, WSSE, ClientFactory

MODES = ("certificat", "cpx")


def _query(p: Person, *, with_place: bool = True) -> TraitsQuery:
    return TraitsQuery(
        p.birth_name, tuple(p.first_names.split()), p.sex, p.birth_date, p.birth_place if with_place else None
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "person", QUALIFICATION_PERSONS + DEMO_PERSONS, ids=lambda p: f"{p.birth_name}-{p.first_names}"
)
def test_each_test_identity_is_found_by_traits(insi_client: ClientFactory, person: Person, mode: str) -> None:
    client, _ = insi_client(mode)
    outcome = client.find_by_traits(_query(person))
    result = outcome.result
    assert result.code is CodeCR.FOUND and result.label == "OK"
    assert result.operation is Operation.WS_INS2
    assert result.identity is not None
    ins = result.identity.ins
    assert (ins.matricule, ins.key, ins.oid) == (person.ins.matricule, person.ins.key, person.ins.oid)
    t = result.identity.traits
    assert (t.birth_name, t.first_names, t.sex, t.birth_date, t.birth_place) == (
        person.birth_name,
        person.first_names,
        person.sex,
        person.birth_date,
        person.birth_place,
    )
    assert [(h.matricule, h.key, h.date_start, h.date_end) for h in result.identity.history] == [
        (h.matricule, h.key, h.date_start, h.date_end) for h in person.history
    ]
    assert outcome.attempts[0][0] == person.first_names.split()[0]  # the first name alone comes first


def test_demo_patient_found_by_insi_has_the_dmp_sandbox_ins(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    result = client.search_by_traits(TraitsQuery("DEMO-ADULTE", ("CAMILLE",), "F", "1979-03-21", "75056"))
    assert result.identity is not None
    assert result.identity.ins.value == DEMO_ADULT.ins
    assert result.identity.ins.cx == DEMO_ADULT.cx  # what the DMP client sends as the patient id


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "query",
    [
        TraitsQuery("TCHITCHI", ("OLA",), "F", "1936-06-21"),  # CNDA: absent first name
        TraitsQuery("HOUILLES", ("PIERRE", "PAUL", "JACQUES"), "M", "1993-01-27"),
        TraitsQuery("ADRUN", ("ZOE",), "F", "1975-12-30"),  # one day off
        TraitsQuery("ADRUN", ("ZOE",), "F", "1975-12-31", "75056"),  # other birth place
    ],
    ids=["tchitchi-ola", "houilles", "wrong-date", "wrong-place"],
)
def test_not_found_is_cr_01(insi_client: ClientFactory, query: TraitsQuery, mode: str) -> None:
    client, frames = insi_client(mode)
    outcome = client.find_by_traits(query)
    assert outcome.result.code is CodeCR.NOT_FOUND
    assert outcome.result.identity is None
    assert outcome.result.label == "Aucune identite trouvee"
    assert "Aucune identité INS trouvée" in outcome.result.message_fr
    sent = [p for p, _ in outcome.attempts]
    names = list(query.first_names)
    assert sent == ([*names, " ".join(names)] if len(names) > 1 else names)
    assert len(frames.out()) == len(sent)


@pytest.mark.parametrize("mode", MODES)
def test_ambiguous_is_cr_02_and_the_birth_place_resolves_it(insi_client: ClientFactory, mode: str) -> None:
    client, _ = insi_client(mode)
    query = TraitsQuery("DE VINCI", ("LEONARDO",), "M", "2014-02-01")
    result = client.find_by_traits(query).result
    assert result.code is CodeCR.AMBIGUOUS and result.identity is None
    assert result.label == "Plusieurs identites trouvees"
    found = client.find_by_traits(replace(query, birth_place="63220")).result
    assert found.code is CodeCR.FOUND and found.identity is not None
    assert found.identity.ins.matricule == "1140263220833"


def test_second_first_name_and_whole_list_strategy(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    # MURIEL is the second word of the list: found at the first call
    out = client.find_by_traits(TraitsQuery("ECETINSI", ("MURIEL",), "M", "2009-07-14"))
    assert out.found and len(out.attempts) == 1
    # the whole list in one Prenom also matches (insi.md §7.4)
    whole = client.search_by_traits(
        TraitsQuery("ECETINSI", ("PIERRE-ALAIN", "MURIEL", "FLORIANT"), "M", "2009-07-14")
    )
    assert whole.found


def test_traits_are_normalised_for_the_request_only(insi_client: ClientFactory) -> None:
    client, frames = insi_client()
    result = client.search_by_traits(
        TraitsQuery("d'Artagnan de l’Hérault", ("Pierre-Alain",), "m", "2001-06-17")
    )
    assert result.found and result.identity is not None
    assert result.identity.traits.birth_name == "D'ARTAGNAN DE L'HERAULT"
    sent = etree.fromstring(frames.out()[0])
    assert sent.findtext(f".//{{{RECSANS}}}NomNaissance") == "D'ARTAGNAN DE L'HERAULT"
    assert sent.findtext(f".//{{{RECSANS}}}Prenom") == "PIERRE-ALAIN"


def test_nia_identity_and_tiq_prenom(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    result = client.search_by_traits(TraitsQuery("PROVISOIRE", ("MATRICULE",), "M", "2009-07-01"))
    assert result.identity is not None
    assert result.identity.ins.is_nia and result.identity.ins.oid == "1.2.250.1.213.1.4.9"
    assert result.identity.traits.first_name == "MATRICULE"
    assert result.identity.traits.first_given_name == "MATRICULE"


def test_key_failing_mod97_is_kept_as_returned(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    result = client.search_by_traits(TraitsQuery("HERMANN", ("GATIEN",), "M", "1981-03-24"))
    assert result.identity is not None
    assert result.identity.ins.key == "60" and not result.identity.ins.key_valid
    assert [h.value for h in result.identity.history] == ["181036322045660", "281036322045610"]


# ----------------------------------------------------------------------------------- headers


def test_mode_a_request_headers_field_by_field(insi_client: ClientFactory) -> None:
    client, frames = insi_client("certificat")
    client.search_by_traits(TraitsQuery("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01", "2B020"))
    root = etree.fromstring(frames.out()[0])
    header = root.find(f"{{{SOAP}}}Header")
    assert header is not None
    assert [etree.QName(c).localname for c in header] == ["ContexteBAM", "ContexteLPS", "Action", "MessageID"]
    bam, lps = header.find(f"{{{CTXBAM}}}ContexteBAM"), header.find(f"{{{CTXLPS}}}ContexteLPS")
    assert bam is not None and lps is not None
    assert bam.get("Version") == "01_02" and bam.get("Nature") is None
    assert lps.get("Version") == "01_00" and lps.get("Nature") == "CTXLPS"
    assert bam.findtext(f"{{{CTXBAM}}}Id") != lps.findtext(f"{{{CTXLPS}}}Id")
    # Emetteur: the OU of the INSI-MANU certificate (structure id), the same in both contexts
    assert bam.findtext(f"{{{CTXBAM}}}Emetteur") == lps.findtext(f"{{{CTXLPS}}}Emetteur")
    assert lps.findtext(f"{{{CTXLPS}}}Emetteur") == ESTABLISHMENT.structure_id
    cov = bam.find(f"{{{CTXBAM}}}COUVERTURE")
    assert cov is not None and len(cov) == 0  # empty for WS_INS2
    idam = lps.find(f"{{{CTXLPS}}}LPS/{{{CTXLPS}}}IDAM")
    assert idam is not None and idam.get("R") == "4" and idam.text == "PSAGENTSBX01"
    assert lps.findtext(f"{{{CTXLPS}}}LPS/{{{CTXLPS}}}Nom") == "urn:lps:PS-AGENT:0.1.0"
    assert (lps.findtext(f"{{{CTXLPS}}}Temps") or "").endswith("Z")
    assert (
        header.findtext(f"{{{WSA}}}Action")
        == "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    )
    assert (header.findtext(f"{{{WSA}}}MessageID") or "").startswith("uuid:")
    assert header.find(f"{{{WSSE}}}Security") is None  # mode A: no assertion
    assert client.last.message_id == header.findtext(f"{{{WSA}}}MessageID")
    assert client.last.lps_id == lps.findtext(f"{{{CTXLPS}}}Id") and client.last.outcome == "00"


def test_mode_b_ps_assertion_is_signed_by_the_card_key(insi_client: ClientFactory, test_pki: TestPki) -> None:
    client, frames = insi_client("cpx")
    client.search_by_traits(TraitsQuery("ADRUN", ("ZOE",), "F", "1975-12-31"))
    root = etree.fromstring(frames.out()[0])
    sec = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
    assert sec is not None
    (assertion,) = sec.findall(f"{{{SAML}}}Assertion")
    name_id = assertion.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    gp = test_pki.card("gp")
    assert name_id is not None and name_id.get("NameQualifier") == "CPS" and name_id.text == "899700000013"
    assert assertion.findtext(f"{{{SAML}}}Issuer") == gp.sign_cert.subject.rfc4514_string()
    attrs = {
        a.get("Name"): a.findtext(f"{{{SAML}}}AttributeValue") for a in assertion.iter(f"{{{SAML}}}Attribute")
    }
    assert attrs == {
        "identifiantFacturation": "991130972",
        "codeSpecialiteAMO": "01",
        "secteurActivite": "SA07",
    }
    lps = root.find(f"{{{SOAP}}}Header/{{{CTXLPS}}}ContexteLPS")
    assert lps is not None and lps.findtext(f"{{{CTXLPS}}}Emetteur") == "899700000013"


def test_mode_b_signature_verifies_with_xmlsec1(insi_client: ClientFactory, test_pki, tmp_path: Path) -> None:
    """Outside reference: xmlsec1 (libxmlsec) verifies the PS assertion signature made through the Signer."""
    import shutil
    import subprocess

    if shutil.which("xmlsec1") is None:
        pytest.skip("xmlsec1 not installed")
    client, frames = insi_client("cpx")
    client.search_by_traits(TraitsQuery("ADRUN", ("ZOE",), "F", "1975-12-31"))
    root = etree.fromstring(frames.out()[0])
    assertion = root.find(f".//{{{SAML}}}Assertion")
    assert assertion is not None
    path = tmp_path / "assertion.xml"
    path.write_bytes(etree.tostring(assertion))
    cert = test_pki.card("gp").sign_cert_path
    proc = subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--pubkey-cert-pem",
            str(cert),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------ Vitale


def _now() -> datetime:
    return datetime.now(UTC)


ADRUN_CARD = VitaleCard("000000000101", "2751263220749", "74", "ADRUN", "01", "631", "9881")
NESSI_CARD = VitaleCard("000000000102", "2770763220829", "10", "NESSI", "01", "631", "9881")
TWINS_CARD = VitaleCard("000000000103", "2850963220321", "61", "GEMEAU", "01", "631", "9881")
LUNAR_CARD = VitaleCard("000000000104", "1622099352123", "75", "BENALI", "01", "751", "0001")
DEMO_MOTHER_CARD = VitaleCard("000000000106", "2840269123456", "89", "DEMO-MINEUR", "01", "691", "0001")


@pytest.mark.parametrize("mode", MODES)
def test_vitale_adult(insi_client: ClientFactory, mode: str) -> None:
    client, frames = insi_client(mode)
    ben = VitaleBeneficiary("1975-12-31", 1, "ADRUN", "ZOE", nir="2751263220749", nir_key="74", holder=True)
    result = client.search_with_vitale(VitaleSelection(ADRUN_CARD, ben, _now()))
    assert result.operation is Operation.WS_INS1 and result.found and result.identity is not None
    assert result.identity.ins.value == "275126322074974"
    root = etree.fromstring(frames.out()[0])
    header = root.find(f"{{{SOAP}}}Header")
    assert header is not None
    assert (
        header.findtext(f"{{{WSA}}}Action")
        == "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
    )
    cov = header.find(f"{{{CTXBAM}}}ContexteBAM/{{{CTXBAM}}}COUVERTURE")
    assert cov is not None
    assert [etree.QName(c).localname for c in cov] == [
        "GrandRegime",
        "Organisme",
        "CodeCentre",
        "ASSURE",
        "BENEFICIAIRE",
    ]
    assert cov.findtext(f"{{{CTXBAM}}}BENEFICIAIRE/{{{CTXBAM}}}Nir/{{{CTXBAM}}}Num") == "2751263220749"
    assertions = header.findall(f"{{{WSSE}}}Security/{{{SAML}}}Assertion")
    vitale = assertions[-1]
    name_id = vitale.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    assert name_id is not None and name_id.get("NameQualifier") == "VITALE" and name_id.text == "000000000101"
    assert len(assertions) == (2 if mode == "cpx" else 1)  # PS assertion first in mode B
    body = root.find(f"{{{SOAP}}}Body/{{{RECVIT}}}RECVITALE")
    assert body is not None
    assert [etree.QName(c).localname for c in body] == [
        "MatriculeIndividu",
        "MatriculeOD",
        "NomNaissance",
        "DateNaissance",
        "RangNaissance",
    ]


@pytest.mark.parametrize("mode", MODES)
def test_vitale_child_of_a_family_card_gets_his_own_ins(insi_client: ClientFactory, mode: str) -> None:
    client, _ = insi_client(mode)
    child = VitaleBeneficiary("2010-08-07", 1, "NESSI", "MICHELANGELO")  # no certified NIR on the card
    result = client.search_with_vitale(VitaleSelection(NESSI_CARD, child, _now()))
    assert result.identity is not None
    assert result.identity.ins.value == "110086322083060"  # the child's INS, not the assuré's
    assert result.identity.traits.first_names == "MICHELANGELO ANTHONY"


def test_vitale_twins_are_told_apart_by_rank(insi_client: ClientFactory) -> None:
    client, _ = insi_client("cpx")
    lou = client.search_with_vitale(VitaleSelection(TWINS_CARD, VitaleBeneficiary("2018-05-04", 2), _now()))
    lea = client.search_with_vitale(VitaleSelection(TWINS_CARD, VitaleBeneficiary("2018-05-04", 1), _now()))
    assert lou.identity is not None and lou.identity.traits.first_names == "LOU"
    assert lea.identity is not None and lea.identity.traits.first_names == "LEA"
    third = client.search_with_vitale(VitaleSelection(TWINS_CARD, VitaleBeneficiary("2018-05-04", 3), _now()))
    assert third.code is CodeCR.NOT_FOUND


def test_vitale_lunar_birth_date(insi_client: ClientFactory) -> None:
    client, frames = insi_client()
    result = client.search_with_vitale(
        VitaleSelection(LUNAR_CARD, VitaleBeneficiary("1962-00-00", 1), _now())
    )
    assert result.identity is not None and result.identity.traits.birth_date == "1962-00-00"
    assert b"<ctxbam:DateNai>1962-00-00</ctxbam:DateNai>" in frames.out()[0]


def test_vitale_demo_minor_then_dmp_ins(insi_client: ClientFactory) -> None:
    client, _ = insi_client("cpx")
    result = client.search_with_vitale(
        VitaleSelection(DEMO_MOTHER_CARD, VitaleBeneficiary("2014-06-10", 1, "DEMO-MINEUR", "LUCAS"), _now())
    )
    assert result.identity is not None and result.identity.ins.cx == DEMO_MINOR.cx


def test_vitale_beneficiary_not_on_the_card_is_cr_01(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    result = client.search_with_vitale(
        VitaleSelection(NESSI_CARD, VitaleBeneficiary("2011-01-01", 1), _now())
    )
    assert result.code is CodeCR.NOT_FOUND


def test_vitale_data_older_than_20_minutes_are_refused_before_sending(
    insi_client: ClientFactory, insi_sandbox
) -> None:
    from ps_agent.identity.errors import VitaleSelectionExpired

    client, frames = insi_client("cpx")
    old = VitaleSelection(ADRUN_CARD, VitaleBeneficiary("1975-12-31", 1), _now() - timedelta(minutes=21))
    with pytest.raises(VitaleSelectionExpired) as info:
        client.search_with_vitale(old)
    assert info.value.code == "vitale_expired" and "relisez la carte" in info.value.message_fr
    assert frames.out() == [] and insi_sandbox.service.calls == 0


def test_vitale_assertion_signed_by_the_emulated_card(insi_client: ClientFactory) -> None:
    """The sandbox-only card signature (HMAC-SHA256 over the exc-c14n SignedInfo, per-card secret)."""
    import hashlib
    import hmac

    from sandbox.insi.data import vitale_card_secret

    secret = vitale_card_secret("000000000101")
    client, frames = insi_client("cpx")
    sel = VitaleSelection(
        ADRUN_CARD,
        VitaleBeneficiary("1975-12-31", 1, nir="2751263220749", nir_key="74"),
        _now(),
        sign=lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    assert client.search_with_vitale(sel).found
    sent = etree.fromstring(frames.out()[0])
    vitale = sent.findall(f".//{{{SAML}}}Assertion")[-1]
    method = vitale.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureMethod")
    assert method is not None and method.get("Algorithm") == "urn:ps-agent:sandbox:vitale-hmac-sha256"


SPEC_WS_INS2_MODE_A = b"""<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"
               xmlns:wsa="http://www.w3.org/2005/08/addressing"
               xmlns:ctxbam="urn:siram:bam:ctxbam"
               xmlns:ctxlps="urn:siram:lps:ctxlps"
               xmlns:ins="http://www.cnamts.fr/INSiRecSans">
  <soap:Header>
    <ctxbam:ContexteBAM Version="01_02">
      <ctxbam:Id>0c5b7d1e-3f4a-4b8e-9a51-6d2f0e7c9b13</ctxbam:Id>
      <ctxbam:Temps>2025-05-12T08:41:07.123Z</ctxbam:Temps>
      <ctxbam:Emetteur>10B0152872</ctxbam:Emetteur>
      <ctxbam:COUVERTURE/>
    </ctxbam:ContexteBAM>
    <ctxlps:ContexteLPS Nature="CTXLPS" Version="01_00">
      <ctxlps:Id>7e2d9c40-5a1b-4f6e-8c3d-2b9a1f0e4d57</ctxlps:Id>
      <ctxlps:Temps>2025-05-12T08:41:07.123Z</ctxlps:Temps>
      <ctxlps:Emetteur>10B0152872</ctxlps:Emetteur>
      <ctxlps:LPS>
        <ctxlps:IDAM R="4">XXX00XX00XX0</ctxlps:IDAM>
        <ctxlps:Version>0.4.0</ctxlps:Version>
        <ctxlps:Instance>3f8e6a2c-1d7b-4c9e-a5f0-8b2d4e6c1a90</ctxlps:Instance>
        <ctxlps:Nom>urn:lps:PS-AGENT:0.4.0</ctxlps:Nom>
      </ctxlps:LPS>
    </ctxlps:ContexteLPS>
    <wsa:Action>urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite</wsa:Action>
    <wsa:MessageID>uuid:5d1f2a8b-9c3e-4f70-b6a4-0e8d7c2b1f36</wsa:MessageID>
  </soap:Header>
  <soap:Body>
    <ins:RECSANSVITALE>
      <ins:NomNaissance>ADRTROIS</ins:NomNaissance>
      <ins:Prenom>TOUSSAINT</ins:Prenom>
      <ins:Sexe>M</ins:Sexe>
      <ins:DateNaissance>1960-01-01</ins:DateNaissance>
      <ins:LieuNaissance>2B020</ins:LieuNaissance>
    </ins:RECSANSVITALE>
  </soap:Body>
</soap:Envelope>"""


def test_mode_a_request_is_the_spec_example_once_fresh_values_are_aligned(insi_client: ClientFactory) -> None:
    """insi.md §3.1, mode A: same elements, order, attributes, prefixes and fixed values; only the per-call
    values (ids, instants, Emetteur) differ, and they are replaced by the example's before comparing."""
    from ps_agent.identity.errors import InsiSoftwareNotAuthorised
    from ps_agent.identity.wire import LpsContext

    lps = LpsContext(
        "XXX00XX00XX0", "urn:lps:PS-AGENT:0.4.0", "0.4.0", "3f8e6a2c-1d7b-4c9e-a5f0-8b2d4e6c1a90"
    )
    client, frames = insi_client(lps=lps)
    with pytest.raises(InsiSoftwareNotAuthorised):  # the example's IDAM is not a real CNDA number
        client.search_by_traits(TraitsQuery("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01", "2B020"))
    ours = etree.fromstring(frames.out()[0])
    spec = etree.fromstring(SPEC_WS_INS2_MODE_A, etree.XMLParser(remove_blank_text=True))
    fresh = {
        f"{{{CTXBAM}}}Id": "0c5b7d1e-3f4a-4b8e-9a51-6d2f0e7c9b13",
        f"{{{CTXLPS}}}Id": "7e2d9c40-5a1b-4f6e-8c3d-2b9a1f0e4d57",
        f"{{{CTXBAM}}}Temps": "2025-05-12T08:41:07.123Z",
        f"{{{CTXLPS}}}Temps": "2025-05-12T08:41:07.123Z",
        f"{{{CTXBAM}}}Emetteur": "10B0152872",
        f"{{{CTXLPS}}}Emetteur": "10B0152872",
        f"{{{WSA}}}MessageID": "uuid:5d1f2a8b-9c3e-4f70-b6a4-0e8d7c2b1f36",
    }
    for el in ours.iter():
        if el.tag in fresh:
            el.text = fresh[el.tag]
    assert etree.tostring(ours, method="c14n") == etree.tostring(spec, method="c14n")
