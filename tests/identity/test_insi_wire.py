"""Answer parsing (malformed, hostile, CNDA-shaped answers), NIR keys, traits rules, interim verification."""

from __future__ import annotations

from pathlib import Path

import pytest

from ps_agent.identity import traits as tr
from ps_agent.identity.errors import InsiProtocolError, InsiRequestRefused, InsiUnavailable
from ps_agent.identity.model import (
    CodeCR,
    InsNumber,
    InsTraits,
    Operation,
    TraitsQuery,
    VerificationStatus,
    key_is_valid,
    nir_key,
)
from ps_agent.identity.wire import parse_answer
from tests.fixtures.insi import ClientFactory

ENV = b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>%s</soap:Body></soap:Envelope>'
R = b'<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat">%s</RESULTAT>'


def parse(body: bytes, status: int = 200):
    return parse_answer(ENV % body, operation=Operation.WS_INS2, message_id="uuid:x", http_status=status)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"", "XML"),
        (b"not xml at all", "XML"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "XML"),
        (b'<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"/>', "enveloppe SOAP 1.2"),
        (ENV % b"", "vide"),
        (ENV % b"<other/>", "RESULTAT attendu"),
        (ENV % (R % b"<CR><CodeCR>03</CodeCR><LibelleCR>?</LibelleCR></CR>"), "« 03 »"),
        (ENV % (R % b"<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR>"), "sans identité"),
        (ENV % (R % b""), "compte rendu"),
        (
            ENV
            % (
                R % b"<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU><INSACTIF><IdIndividu>"
                b"<NumIdentifiant>12345</NumIdentifiant></IdIndividu><OID>1.2.250.1.213.1.4.8</OID></INSACTIF>"
                b"<TIQ><NomNaissance>A</NomNaissance><Sexe>M</Sexe><DateNaissance>2000-01-01</DateNaissance></TIQ>"
                b"</INDIVIDU>"
            ),
            "matricule INS mal formé",
        ),
        (
            ENV
            % (
                R % b"<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU><INSACTIF><IdIndividu>"
                b"<NumIdentifiant>2751263220749</NumIdentifiant><Cle>74</Cle></IdIndividu></INSACTIF>"
                b"<TIQ><NomNaissance>A</NomNaissance><Sexe>M</Sexe><DateNaissance>2000-01-01</DateNaissance></TIQ>"
                b"</INDIVIDU>"
            ),
            "sans OID",
        ),
        (ENV % (R % b"<CR><CodeCR>01</CodeCR><LibelleCR>x</LibelleCR></CR><INDIVIDU/>"), "incohérente"),
    ],
)
def test_malformed_answers_are_protocol_errors(data: bytes, detail: str) -> None:
    with pytest.raises(InsiProtocolError) as info:
        parse_answer(data, operation=Operation.WS_INS2, message_id="uuid:x", http_status=200)
    assert detail in info.value.message_fr
    assert info.value.message_fr.startswith(("La réponse", "Réponse", "Le corps", "L'INSi"))


def test_cnda_test_2_04_order_and_prefixes_are_tolerated() -> None:
    """TEST_2.04 puts DateDeb/DateFin before IdIndividu (schema-invalid); children may be prefixed."""
    body = (
        b'<ns2:RESULTAT xmlns:ns2="http://www.cnamts.fr/INSiResultat" xmlns="urn:unrelated">'
        b"<ns2:CR><ns2:CodeCR>00</ns2:CodeCR><ns2:LibelleCR>OK</ns2:LibelleCR></ns2:CR><ns2:INDIVIDU>"
        b"<ns2:INSACTIF><ns2:IdIndividu><ns2:NumIdentifiant>1090763220834</ns2:NumIdentifiant><ns2:Cle>89"
        b"</ns2:Cle></ns2:IdIndividu><ns2:OID>1.2.250.1.213.1.4.9</ns2:OID></ns2:INSACTIF>"
        b"<ns2:INSHISTO><ns2:DateDeb>2019-03-01</ns2:DateDeb><ns2:DateFin>2019-02-28</ns2:DateFin>"
        b"<ns2:IdIndividu><ns2:NumIdentifiant>2090663220123</ns2:NumIdentifiant><ns2:Cle>55</ns2:Cle>"
        b"</ns2:IdIndividu><ns2:OID>1.2.250.1.213.1.4.8</ns2:OID><ns2:Extra>x</ns2:Extra></ns2:INSHISTO>"
        b"<ns2:TIQ><ns2:NomNaissance>ECETINSI</ns2:NomNaissance><ns2:Prenom>PIERRE-ALAIN</ns2:Prenom>"
        b"<ns2:ListePrenom>PIERRE-ALAIN MURIEL FLORIANT</ns2:ListePrenom><ns2:Sexe>M</ns2:Sexe>"
        b"<ns2:DateNaissance>2009-07-14</ns2:DateNaissance><ns2:LieuNaissance>63220</ns2:LieuNaissance>"
        b"</ns2:TIQ></ns2:INDIVIDU></ns2:RESULTAT>"
    )
    result = parse(body)
    assert result.code is CodeCR.FOUND and result.identity is not None
    assert result.identity.ins.oid == "1.2.250.1.213.1.4.9"
    (h,) = result.identity.history
    assert (h.value, h.date_start, h.date_end) == ("209066322012355", "2019-03-01", "2019-02-28")
    assert result.identity.traits.first_given_name == "PIERRE-ALAIN"


def test_unknown_fault_keeps_the_service_text() -> None:
    fault = (
        b'<S:Fault xmlns:S="http://www.w3.org/2003/05/soap-envelope"><S:Code><S:Value>S:Sender</S:Value>'
        b"<S:Subcode><S:Value>S:siram_7</S:Value></S:Subcode></S:Code><S:Reason><S:Text>Requete refusee"
        b'</S:Text></S:Reason><S:Detail><siram:Erreur xmlns:siram="urn:siram" code="insi_999" '
        b'severite="erreur">x</siram:Erreur></S:Detail></S:Fault>'
    )
    with pytest.raises(InsiRequestRefused) as info:
        parse(fault, 500)
    assert info.value.code == "insi_999" and "Requete refusee" in info.value.message_fr
    with pytest.raises(InsiUnavailable):  # an unknown Receiver fault may be retried
        parse(fault.replace(b"S:Sender", b"S:Receiver"), 500)


def test_nir_keys() -> None:
    assert nir_key("297022A020778") == 78 and nir_key("160012B020777") == 13
    assert key_is_valid("2751263220749", "74") and not key_is_valid("1810363220456", "60")
    assert not key_is_valid("2751263220749", "7")


def test_traits_normalisation_and_coherence() -> None:
    assert tr.normalise_name("  Lætitia  Œdipe ", "first_name") == "LAETITIA OEDIPE"
    assert tr.normalise_name("l’Hérault", "birth_name") == "L'HERAULT"
    assert tr.name_for_request("MARTIN--DUPONT", "birth_name") == "MARTIN--DUPONT"
    assert tr.first_names_coherent("JEAN-CHRISTOPHE", "JEAN CHRISTOPHE PIERRE")
    assert not tr.first_names_coherent("CHRISTOPHE", "JEAN CHRISTOPHE PIERRE")
    assert tr.check_date("1962-00-00") == "1962-00-00"  # lunar dates are valid


# ------------------------------------------------------------------------ interim verification


ADRTROIS = InsTraits("ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")


def test_verify_valid(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    v = client.verify_ins(InsNumber("160012B020777", "13", "1.2.250.1.213.1.4.8"), ADRTROIS)
    assert v.status is VerificationStatus.VALID and v.valid and v.interim
    assert v.result.operation is Operation.WS_INS2  # interim: a traits search, not WS_INS3


def test_verify_matricule_changed(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    stored = InsTraits("ECETINSI", "PIERRE-ALAIN MURIEL FLORIANT", "M", "2009-07-14", "63220")
    v = client.verify_ins(InsNumber("2090763220834", "39", "1.2.250.1.213.1.4.8"), stored)
    assert v.status is VerificationStatus.MATRICULE_CHANGED and "a changé" in v.message_fr


def test_verify_traits_differ_and_other_ins(insi_client: ClientFactory) -> None:
    client, _ = insi_client("cpx")
    partial = InsTraits("ECETINSI", "PIERRE-ALAIN", "M", "2009-07-14", "63220")
    v = client.verify_ins(InsNumber("1090763220834", "89", "1.2.250.1.213.1.4.8"), partial)
    assert v.status is VerificationStatus.TRAITS_DIFFER and v.differences == ("first_names",)
    other = client.verify_ins(InsNumber("1090763220888", "35", "1.2.250.1.213.1.4.8"), ADRTROIS)
    assert other.status is VerificationStatus.INS_DIFFERS


def test_verify_not_found_and_ambiguous(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    gone = client.verify_ins(
        InsNumber("160012B020777", "13", "1.2.250.1.213.1.4.8"),
        InsTraits("ADRTROIS", "TOUSSAINT", "M", "1960-01-02", "2B020"),
    )
    assert gone.status is VerificationStatus.NOT_FOUND
    amb = client.verify_ins(
        InsNumber("1140263220833", "56", "1.2.250.1.213.1.4.8"),
        InsTraits("DE VINCI", "LEONARDO", "M", "2014-02-01", ""),
    )
    assert amb.status is VerificationStatus.AMBIGUOUS


def test_query_keeps_user_text() -> None:
    q = TraitsQuery("d'Artagnan", ("Zoé",), "f", "1975-12-31")
    assert tr.for_request(q).birth_name == "D'ARTAGNAN" and q.birth_name == "d'Artagnan"


def test_installation_instance_is_stable(tmp_path: Path) -> None:
    import uuid

    from ps_agent.identity.environments import INSTANCE_FILE, installation_instance
    from ps_agent.identity.errors import InsiConfigurationError

    first = installation_instance(tmp_path)
    assert str(uuid.UUID(first)) == first and installation_instance(tmp_path) == first
    (tmp_path / INSTANCE_FILE).write_text("pas un uuid", encoding="ascii")
    with pytest.raises(InsiConfigurationError) as info:
        installation_instance(tmp_path)
    assert info.value.code == "insi_instance"
