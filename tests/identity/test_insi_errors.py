"""Every INSi fault of the spec mapped to its typed error, transport failures, bad inputs, configuration."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ps_agent.errors import PsAgentError
from ps_agent.identity.environments import insi_environment
from ps_agent.identity.errors import (
    IdentityError,
    InsiAccessDenied,
    InsiConfigurationError,
    InsiInputError,
    InsiProtocolError,
    InsiRequestRefused,
    InsiSoftwareNotAuthorised,
    InsiTimeout,
    InsiTransportError,
    InsiUnavailable,
)
from ps_agent.identity.insi import InsiClient
from ps_agent.identity.model import TraitsQuery, VitaleBeneficiary, VitaleCard, VitaleSelection
from sandbox.insi.certs import INSI_AUTO, WRONG_NAME
from sandbox.insi.server import RunningInsi
from sandbox.insi.service import InsiSettings
from sandbox.pki import TestPki
from sandbox.server.faults import FaultConfig
from tests.fixtures.insi import LPS, ClientFactory, certificate_auth, cpx_auth

ZOE = TraitsQuery("ADRUN", ("ZOE",), "F", "1975-12-31")


def test_error_tree() -> None:
    for cls in (
        InsiUnavailable,
        InsiSoftwareNotAuthorised,
        InsiAccessDenied,
        InsiRequestRefused,
        InsiInputError,
    ):
        assert issubclass(cls, IdentityError) and issubclass(cls, PsAgentError)
    assert InsiUnavailable.retryable and InsiTransportError.retryable
    assert not InsiSoftwareNotAuthorised.retryable and not InsiRequestRefused.retryable


@pytest.mark.parametrize("mode", ["certificat", "cpx"])
def test_siram_40_insi_102_on_the_nth_call(
    insi_client: ClientFactory, insi_sandbox: RunningInsi, mode: str
) -> None:
    insi_sandbox.configure(InsiSettings(fault_on_calls=(2,)))
    client, _ = insi_client(mode)
    assert client.search_by_traits(ZOE).found
    with pytest.raises(InsiUnavailable) as info:
        client.search_by_traits(ZOE)
    err = info.value
    assert (err.code, err.fault_code, err.subcode, err.detail_code) == (
        "insi_102",
        "Receiver",
        "siram_40",
        "insi_102",
    )
    assert err.severity == "fatal" and err.http_status == 500 and err.retryable
    assert err.reason.startswith("Le service est temporairement inaccessible")
    assert (
        err.detail
        == "L'appel au service de recherche avec les traits d'identité renvoie une erreur technique."
    )
    assert err.message_id == client.last.message_id  # echoed by siram:Erreur/@messageID
    assert "temporairement inaccessible" in err.message_fr and "n'a pas été modifiée" in err.message_fr
    assert client.last.outcome == "insi_102"
    assert client.search_by_traits(ZOE).found  # the third call works again


def test_siram_40_for_chosen_traits_stops_the_strategy(
    insi_client: ClientFactory, insi_sandbox: RunningInsi
) -> None:
    insi_sandbox.configure(InsiSettings(fault_birth_names=("HOUILLES",)))
    client, frames = insi_client()
    with pytest.raises(InsiUnavailable):
        client.find_by_traits(TraitsQuery("HOUILLES", ("PIERRE", "PAUL"), "M", "1993-01-27"))
    assert len(frames.out()) == 1  # a fault stops the loop


def test_seeded_soap_fault_injection_is_the_real_insi_fault(
    insi_client: ClientFactory, insi_sandbox: RunningInsi
) -> None:
    insi_sandbox.faults.configure(FaultConfig(seed=7, soap_fault_rate=1.0))
    client, _ = insi_client("cpx")
    with pytest.raises(InsiUnavailable) as info:
        client.search_by_traits(ZOE)
    assert info.value.subcode == "siram_40"
    assert insi_sandbox.faults.counts() == {"soap_fault": 1}


def test_unknown_idam_is_desir_550(insi_client: ClientFactory) -> None:
    client, _ = insi_client(lps=replace(LPS, idam="XXX00XX00XX0"))
    with pytest.raises(InsiSoftwareNotAuthorised) as info:
        client.search_by_traits(ZOE)
    err = info.value
    assert (err.code, err.subcode, err.fault_code, err.severity) == (
        "desir_550",
        "siram_100",
        "Sender",
        "erreur",
    )
    assert err.reason.startswith("L'accès par ce progiciel au service n'est pas autorisé")
    assert err.detail == "Numéro d'autorisation du logiciel inconnu."
    assert "numéro d'autorisation CNDA inconnu" in err.message_fr


def test_wrong_certificate_name_refused_locally(test_pki: TestPki) -> None:
    with pytest.raises(InsiConfigurationError) as info:
        certificate_auth(test_pki, WRONG_NAME)
    assert info.value.code == "insi_certificate_name"
    assert "INSI-MANU ou INSI-AUTO" in info.value.message_fr and WRONG_NAME in info.value.message_fr


def test_wrong_certificate_name_is_desir_560_at_the_service(
    insi_client: ClientFactory, test_pki: TestPki
) -> None:
    client, _ = insi_client(auth=certificate_auth(test_pki, WRONG_NAME, check_name=False))
    with pytest.raises(InsiAccessDenied) as info:
        client.search_by_traits(ZOE)
    assert info.value.code == "DESIR_560" and info.value.reason == "Niveau d'accès insuffisant"
    assert "INSI-MANU ou INSI-AUTO" in info.value.message_fr


def test_insi_auto_certificate_is_accepted(insi_client: ClientFactory, test_pki: TestPki) -> None:
    client, _ = insi_client(auth=certificate_auth(test_pki, INSI_AUTO))
    assert client.search_by_traits(ZOE).found


def test_stale_ps_assertion_is_refused_with_a_sandbox_code(insi_client: ClientFactory) -> None:
    client, _ = insi_client("cpx", clock=lambda: datetime.now(UTC) - timedelta(seconds=90))
    with pytest.raises(InsiRequestRefused) as info:
        client.search_by_traits(ZOE)
    assert info.value.code == "sandbox_assertion" and "périmée" in info.value.message_fr


def test_ps_assertion_from_an_unknown_pki_is_refused(
    insi_client: ClientFactory, foreign_pki: TestPki
) -> None:
    client, _ = insi_client("cpx", auth=cpx_auth(foreign_pki))
    with pytest.raises(InsiRequestRefused) as info:
        client.search_by_traits(ZOE)
    assert (
        info.value.code == "sandbox_assertion" and "certificat de signature refusé" in info.value.message_fr
    )


def test_physician_without_amo_specialty_is_refused(insi_client: ClientFactory, test_pki: TestPki) -> None:
    client, _ = insi_client("cpx", auth=cpx_auth(test_pki, specialty=""))
    with pytest.raises(InsiRequestRefused, match="spécialité"):
        client.search_by_traits(ZOE)


def test_pharmacist_needs_no_specialty(insi_client: ClientFactory, test_pki: TestPki) -> None:
    client, _ = insi_client("cpx", auth=cpx_auth(test_pki, "pharmacist", specialty="", sector="SA33"))
    assert client.search_by_traits(ZOE).found


def test_client_certificate_of_another_pki_fails_the_handshake(
    insi_client: ClientFactory, foreign_pki
) -> None:
    from sandbox.insi.certs import insi_certificate

    c = insi_certificate(foreign_pki)
    from ps_agent.identity.auth import CertificateAuth

    client, _ = insi_client(auth=CertificateAuth(c.cert, private_key=c.key, chain=c.chain))
    with pytest.raises(InsiTransportError) as info:
        client.search_by_traits(ZOE)
    assert info.value.code == "insi_transport" and "injoignable" in info.value.message_fr


def test_untrusted_server_is_a_transport_error(
    insi_client: ClientFactory, insi_sandbox: RunningInsi, foreign_pki
) -> None:
    env = insi_environment("sandbox-cpx", ca_file=foreign_pki.ca_bundle).with_url(insi_sandbox.cpx_url)
    client, _ = insi_client("cpx", env=env)
    with pytest.raises(InsiTransportError):
        client.search_by_traits(ZOE)


@pytest.mark.parametrize("status", [500, 503])
def test_http_error_without_fault_is_a_transport_error(
    insi_client: ClientFactory, insi_sandbox: RunningInsi, status: int
) -> None:
    insi_sandbox.faults.configure(FaultConfig.from_dict({"seed": 1, f"http_{status}_rate": 1.0}))
    client, _ = insi_client()
    with pytest.raises(InsiTransportError) as info:
        client.search_by_traits(ZOE)
    assert info.value.code == f"HTTP_{status}" and str(status) in info.value.message_fr


def test_connection_reset_is_a_transport_error(insi_client: ClientFactory, insi_sandbox: RunningInsi) -> None:
    insi_sandbox.faults.configure(FaultConfig(seed=1, reset_before_commit_rate=1.0))
    client, _ = insi_client()
    with pytest.raises(InsiTransportError):
        client.search_by_traits(ZOE)


def test_timeout(insi_client: ClientFactory, insi_sandbox: RunningInsi, test_pki: TestPki) -> None:
    insi_sandbox.faults.configure(FaultConfig(seed=1, latency_ms=1500, latency_rate=1.0))
    env = replace(
        insi_environment("sandbox-certificat", ca_file=test_pki.ca_bundle).with_url(insi_sandbox.mtls_url),
        timeout_s=0.3,
    )
    client, _ = insi_client(env=env)
    with pytest.raises(InsiTimeout) as info:
        client.search_by_traits(ZOE)
    assert info.value.code == "insi_timeout" and info.value.retryable


# ---------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        (TraitsQuery("ADRUN2", ("ZOE",), "F", "1975-12-31"), "traits_characters", "birth_name"),
        (TraitsQuery("ADRUN", ("ZOE_",), "F", "1975-12-31"), "traits_characters", "first_name"),
        (TraitsQuery("AD@RUN", ("ZOE",), "F", "1975-12-31"), "traits_characters", "birth_name"),
        (TraitsQuery("ИВАНОВ", ("ZOE",), "F", "1975-12-31"), "traits_characters", "birth_name"),
        (TraitsQuery("-ADRUN", ("ZOE",), "F", "1975-12-31"), "traits_syntax", "birth_name"),
        (TraitsQuery("ADRUN", ("ZOE-",), "F", "1975-12-31"), "traits_syntax", "first_name"),
        (TraitsQuery("ADRUN", ("JEAN--PIERRE",), "F", "1975-12-31"), "traits_syntax", "first_name"),
        (TraitsQuery("D''ARTAGNAN", ("ZOE",), "F", "1975-12-31"), "traits_syntax", "birth_name"),
        (TraitsQuery("ADRUN", (), "F", "1975-12-31"), "traits_missing", "first_name"),
        (TraitsQuery("", ("ZOE",), "F", "1975-12-31"), "traits_missing", "birth_name"),
        (TraitsQuery("ADRUN", ("ZOE",), "I", "1975-12-31"), "traits_sex", "sex"),
        (TraitsQuery("ADRUN", ("ZOE",), "F", "31/12/1975"), "traits_date", "birth_date"),
        (TraitsQuery("ADRUN", ("ZOE",), "F", "1975-12-31", "6322"), "traits_cog", "birth_place"),
    ],
)
def test_bad_traits_give_a_specific_french_error_and_send_nothing(
    insi_client: ClientFactory, insi_sandbox: RunningInsi, query: TraitsQuery, code: str, field: str
) -> None:
    client, frames = insi_client()
    with pytest.raises(InsiInputError) as info:
        client.find_by_traits(query)
    assert info.value.code == code and info.value.field == field
    assert info.value.message_fr and info.value.message_fr[0].isupper()
    assert frames.out() == [] and insi_sandbox.service.calls == 0


def test_forbidden_character_is_named_in_the_message(insi_client: ClientFactory) -> None:
    client, _ = insi_client()
    with pytest.raises(InsiInputError) as info:
        client.search_by_traits(TraitsQuery("ADRUN", ("ZO3",), "F", "1975-12-31"))
    assert "« 3 »" in info.value.message_fr and "prénom" in info.value.message_fr


VCARD = VitaleCard("000000000101", "2751263220749", "74", "ADRUN")


@pytest.mark.parametrize(
    ("selection", "code"),
    [
        (
            VitaleSelection(
                replace(VCARD, serial="12AB"), VitaleBeneficiary("1975-12-31"), datetime.now(UTC)
            ),
            "vitale_serial",
        ),
        (
            VitaleSelection(
                replace(VCARD, assure_nir="27512632207"), VitaleBeneficiary("1975-12-31"), datetime.now(UTC)
            ),
            "vitale_nir",
        ),
        (VitaleSelection(VCARD, VitaleBeneficiary("31121975"), datetime.now(UTC)), "traits_date"),
        (VitaleSelection(VCARD, VitaleBeneficiary("1975-12-31", rank=0), datetime.now(UTC)), "vitale_rank"),
    ],
)
def test_bad_vitale_data(insi_client: ClientFactory, selection: VitaleSelection, code: str) -> None:
    client, frames = insi_client()
    with pytest.raises(InsiInputError) as info:
        client.search_with_vitale(selection)
    assert info.value.code == code and frames.out() == []


def test_test_vitale_card_refused_in_production(test_pki: TestPki) -> None:
    env = insi_environment("production-certificat", ca_file=test_pki.ca_bundle)
    with InsiClient(env, certificate_auth(test_pki), LPS) as client:
        sel = VitaleSelection(VCARD, VitaleBeneficiary("1975-12-31"), datetime.now(UTC))
        with pytest.raises(InsiConfigurationError) as info:
            client.search_with_vitale(sel)
    assert info.value.code == "vitale_test_card" and "production" in info.value.message_fr


def test_configuration_errors(test_pki: TestPki) -> None:
    with pytest.raises(InsiConfigurationError) as info:
        InsiClient(
            insi_environment("sandbox-cpx", ca_file=test_pki.ca_bundle), certificate_auth(test_pki), LPS
        )
    assert info.value.code == "insi_mode_mismatch"
    with pytest.raises(InsiConfigurationError) as info:
        InsiClient(
            insi_environment("sandbox-certificat", ca_file=test_pki.ca_bundle),
            certificate_auth(test_pki),
            replace(LPS, idam=" "),
        )
    assert info.value.code == "insi_idam"
    with pytest.raises(InsiConfigurationError) as info:
        insi_environment("recette")
    assert info.value.code == "insi_environment" and "recette" in info.value.message_fr


def test_cpx_auth_from_a_card_session_and_mode_a_through_a_signer(
    insi_client: ClientFactory, test_pki
) -> None:
    """Mode B from ``Credentials`` (the DMP client's seam); mode A with a non-exportable key (tlslite)."""
    from ps_agent.auth.model import Activity, AuthMode, ProfessionalIdentity
    from ps_agent.auth.software import SoftwareCredentials, SoftwareSigner
    from ps_agent.identity.auth import CertificateAuth, CpxAuth
    from sandbox.insi.certs import insi_certificate

    gp = test_pki.card("gp")
    ident = ProfessionalIdentity(
        "899700000013",
        "MEDECIN-GENERALISTE",
        "JEAN",
        "10",
        "Médecin",
        "SM26",
        "CPS",
        activity=Activity("380000000100017", "CABINET MEDICAL DU PARC", "SA07"),
    )
    creds = SoftwareCredentials(
        ident, AuthMode.DIRECTE, gp.auth_cert, gp.auth_key, gp.sign_cert, gp.sign_key, gp.chain
    )
    client, _ = insi_client("cpx", auth=CpxAuth.from_credentials(creds, billing_id="991130972"))
    assert client.search_by_traits(ZOE).found
    c = insi_certificate(test_pki)
    client, _ = insi_client(
        auth=CertificateAuth(c.cert, signer=SoftwareSigner(c.key, c.cert, c.chain), chain=c.chain)
    )
    assert client.search_by_traits(ZOE).found


def test_bounded_retry_with_backoff_for_ws_ins2(insi_sandbox: RunningInsi, test_pki: TestPki) -> None:
    insi_sandbox.configure(InsiSettings(fault_on_calls=(1, 2)))
    env = insi_environment("sandbox-certificat", ca_file=test_pki.ca_bundle).with_url(insi_sandbox.mtls_url)
    delays: list[float] = []
    with InsiClient(env, certificate_auth(test_pki), LPS, retries=2, backoff_s=0.5, sleep=delays.append) as c:
        assert c.search_by_traits(ZOE).found
    assert delays == [0.5, 1.0] and insi_sandbox.service.calls == 3
    insi_sandbox.configure(InsiSettings(fault_on_calls=(1, 2)))
    with InsiClient(env, certificate_auth(test_pki), LPS, retries=1, sleep=delays.append) as c:
        with pytest.raises(InsiUnavailable):
            c.search_by_traits(ZOE)
        # WS_INS1 is never retried automatically (a Vitale assertion is not reused)
        insi_sandbox.configure(InsiSettings(fault_on_calls=(1,)))
        sel = VitaleSelection(VCARD, VitaleBeneficiary("1975-12-31"), datetime.now(UTC))
        with pytest.raises(InsiUnavailable):
            c.search_with_vitale(sel)
        assert insi_sandbox.service.calls == 1


def test_bad_vitale_card_signature_is_refused(insi_client: ClientFactory) -> None:
    client, _ = insi_client("cpx")
    sel = VitaleSelection(
        VCARD, VitaleBeneficiary("1975-12-31"), datetime.now(UTC), sign=lambda data: b"\0" * 32
    )
    with pytest.raises(InsiRequestRefused) as info:
        client.search_with_vitale(sel)
    assert info.value.code == "sandbox_vitale" and "signature de la carte invalide" in info.value.message_fr


def test_sandbox_internal_error_is_a_receiver_fault(
    insi_client: ClientFactory, insi_sandbox: RunningInsi, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(insi_sandbox.service, "_traits", boom)
    client, _ = insi_client()
    with pytest.raises(InsiUnavailable) as info:
        client.search_by_traits(ZOE)
    assert info.value.code == "sandbox_internal"
    monkeypatch.undo()
    assert client.search_by_traits(ZOE).found  # the server keeps serving


def test_card_swap_check_runs_before_anything_is_sent(
    insi_client: ClientFactory, insi_sandbox: RunningInsi
) -> None:
    from ps_agent.errors import CardError

    seen: list[str] = []

    def swapped(selection: VitaleSelection) -> None:
        seen.append(selection.card.serial)
        raise CardError(
            "La carte Vitale a été changée : choisissez à nouveau le bénéficiaire.", code="vitale_swap"
        )

    client, frames = insi_client()
    sel = VitaleSelection(VCARD, VitaleBeneficiary("1975-12-31", nir="2751263220749"), datetime.now(UTC))
    with pytest.raises(CardError):
        client.search_with_vitale(sel, confirm_card=swapped)
    assert seen == ["000000000101"] and frames.out() == [] and insi_sandbox.service.calls == 0
    assert client.search_with_vitale(sel, confirm_card=lambda s: None).found


def test_test_ins_from_a_production_environment_is_refused(
    insi_sandbox: RunningInsi, test_pki: TestPki
) -> None:
    """INS-R10: a production configuration never accepts a test OID (here the sandbox plays production)."""
    env = replace(
        insi_environment("production-certificat", ca_file=test_pki.ca_bundle),
        url=insi_sandbox.mtls_url,
    )
    with InsiClient(env, certificate_auth(test_pki), LPS) as client:
        with pytest.raises(InsiProtocolError) as info:
            client.search_by_traits(TraitsQuery("DEMO-ADULTE", ("CAMILLE",), "F", "1979-03-21"))
        assert info.value.code == "insi_test_oid"
        assert client.search_by_traits(ZOE).found  # a .8 INS is accepted
