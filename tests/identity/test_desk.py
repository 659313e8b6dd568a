"""``ps_agent.identities.IdentityDesk``: the identity operations on a Session, against the INSi sandbox over
TLS and the DMP sandbox (demo data), with software credentials of the test PKI; the Vitale route through
pcscd with the emulated card (marker ``pcsc``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.access.policy import PatientRef
from ps_agent.auth.model import AuthMode
from ps_agent.auth.software import SoftwareCredentials
from ps_agent.config import AgentConfig, Environment
from ps_agent.context import CANCEL_LATENCY_S, Cancelled, CancelToken, Context, DeadlineExceeded
from ps_agent.identities import (
    INSI_ENV_OF_DMP,
    IdentityDesk,
    InsiSettings,
    insi_environment_for,
    open_insi_client,
)
from ps_agent.identity.environments import INSI_ENVIRONMENTS, InsiAuthMode
from ps_agent.identity.errors import InsiConfigurationError
from ps_agent.identity.model import InsNumber, InsTraits, TraitsQuery
from ps_agent.identity.records import NOT_QUALIFIED_MESSAGE, IdentityNotQualified, IdentityStatus
from ps_agent.services import Services
from sandbox import demo
from sandbox.insi.certs import INSI_MANU, insi_certificate
from sandbox.insi.server import RunningInsi
from sandbox.pki import P12_PASSPHRASE, TestPki
from tests.fixtures.card import VirtualCard
from tests.fixtures.integration import identity_of

BILLING_ID = "991130972"
ADULT = demo.DEMO_ADULT
ADULT_QUERY = TraitsQuery(ADULT.family_name, tuple(ADULT.given_names.split()), ADULT.sex, "1979-03-21",
                          ADULT.birth_place)  # fmt: skip
MINOR = demo.DEMO_MINOR
MINOR_QUERY = TraitsQuery(MINOR.family_name, (MINOR.given_names,), MINOR.sex, "2014-06-10", MINOR.birth_place)


def _credentials(pki: TestPki, mode: AuthMode = AuthMode.DIRECTE) -> SoftwareCredentials:
    keys: Any = pki.card("gp") if mode is AuthMode.DIRECTE else pki.establishment
    return SoftwareCredentials(
        identity_of("gp"), mode, keys.auth_cert, keys.auth_key, keys.sign_cert, keys.sign_key, keys.chain
    )


class Steps:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, int]] = []

    def __call__(self, step: str, done: int, total: int) -> None:
        self.items.append((step, done, total))

    def labels(self) -> list[str]:
        return [s for s, _, _ in self.items]


@pytest.fixture
def services(demo_sandbox: Any, test_pki: TestPki, tmp_path: Path) -> Iterator[Services]:
    env = Environment("sandbox", demo_sandbox.base_url, ca_file=str(test_pki.ca_bundle))
    with Services(AgentConfig(env, tmp_path / "home")) as s:
        yield s


@pytest.fixture
def desk_for(
    services: Services, test_pki: TestPki, insi_sandbox: RunningInsi
) -> Iterator[Callable[..., IdentityDesk]]:
    """``desk_for(mode=DIRECTE, **desk_kw)``: a desk on a new session of the gp (card keys, mode B) or
    of the establishment acting for the gp (INSI-MANU certificate, mode A)."""
    made: list[IdentityDesk] = []

    def make(mode: AuthMode = AuthMode.DIRECTE, **kw: Any) -> IdentityDesk:
        session = services.open_session(_credentials(test_pki, mode))
        if "insi" not in kw:
            if mode is AuthMode.DIRECTE:
                kw["insi"] = InsiSettings(url=insi_sandbox.cpx_url, billing_id=BILLING_ID)
            else:
                cert = insi_certificate(test_pki, INSI_MANU)
                kw["insi"] = InsiSettings(url=insi_sandbox.mtls_url, certificate=cert.p12,
                                          passphrase=P12_PASSPHRASE)  # fmt: skip
        desk = IdentityDesk(session, **kw)
        made.append(desk)
        return desk

    yield make
    for d in made:
        d.close()


def _td02_traces(store: Any) -> list[Any]:
    return [t for t in store.traces() if t.transaction == "TD0.2"]


# ----------------------------------------------------------------------------------- the journey


def test_traits_search_validate_open_patient_dmp_status(
    desk_for: Callable[..., IdentityDesk], services: Services, demo_sandbox: Any
) -> None:
    desk = desk_for()
    steps = Steps()
    found = desk.search_traits(ADULT_QUERY, ctx=Context(progress=steps))
    assert found.found and found.identity is not None
    ident = found.identity
    assert ident.status is IdentityStatus.RECUP and ident.ins is not None and ident.ins.value == ADULT.ins
    assert steps.labels() == [
        "Connexion au téléservice INSi",
        "Recherche de l'INS par les traits d'identité (INSi)",
        "Enregistrement de l'identité",
        "Terminé",
    ]
    assert [(d, t) for _, d, t in steps.items] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    with pytest.raises(IdentityNotQualified):  # RECUP: not yet for the DMP
        desk.open_patient(ident.id)
    qual = desk.validate(ident.id, "passeport")
    assert qual.status is IdentityStatus.QUAL and qual.document is not None
    assert qual.document.checked_by.startswith("899700000013")  # the session's professional checked it
    before = len(_td02_traces(demo_sandbox.store))
    handle = desk.open_patient(ident.id)
    assert handle is desk.session.patient(PatientRef(ADULT.ins, ADULT.oid, "QUAL"))
    status = handle.dmp_status().value
    assert status.exists and status.family_name == "DEMO-ADULTE"
    assert len(_td02_traces(demo_sandbox.store)) == before + 1
    # journaled with the session's professional as actor: the INSi call and each status change
    search = services.journal.records(action="insi.search")
    assert [r.event.outcome for r in search] == ["success"]
    assert search[0].event.actor_id_nat == "899700000013" and search[0].event.auth_mode == "DIRECTE"
    assert search[0].event.transaction == "WS_INS2" and search[0].event.patient_ins.startswith(ADULT.ins)
    changes = [r.event.detail for r in services.journal.records(action="identity.status")]
    assert any("∅ → RECUP" in d for d in changes) and any("RECUP → QUAL" in d for d in changes)
    assert (services.config.home / "identities.sqlite3").stat().st_mode & 0o077 == 0


def test_a_non_qualified_identity_never_reaches_the_dmp(
    desk_for: Callable[..., IdentityDesk], demo_sandbox: Any
) -> None:
    desk = desk_for()
    before = _td02_traces(demo_sandbox.store)
    recup = desk.search_traits(MINOR_QUERY).identity
    assert recup is not None and recup.status is IdentityStatus.RECUP
    prov = desk.create("DUPONT", "JEAN", "M", "1980-01-01")
    for ident in (recup, prov):
        with pytest.raises(IdentityNotQualified) as err:
            desk.open_patient(ident.id)
        assert err.value.message_fr.startswith(NOT_QUALIFIED_MESSAGE)
    # a manual edit of a strict trait of a QUAL identity drops it to VALI: refused again
    desk.validate(recup.id, "cni")
    assert desk.get(recup.id).status is IdentityStatus.QUAL
    desk.edit_traits(recup.id, birth_date="2014-06-11")
    assert desk.get(recup.id).status is IdentityStatus.VALI
    with pytest.raises(IdentityNotQualified):
        desk.open_patient(recup.id)
    assert _td02_traces(demo_sandbox.store) == before  # the DMP sandbox received no TD0.2


def test_practice_software_identity_is_checked_by_insi_before_first_use(
    desk_for: Callable[..., IdentityDesk],
) -> None:
    desk = desk_for()
    ins = InsNumber(ADULT.ins[:13], ADULT.ins[13:], ADULT.oid)
    traits = InsTraits(ADULT.family_name, ADULT.given_names, ADULT.sex, "1979-03-21", ADULT.birth_place)
    ext = desk.records.import_external(ins, traits, status="QUAL", document="passeport")
    with pytest.raises(IdentityNotQualified):
        desk.records.qualified_ref(ext.id)  # not usable as received
    steps = Steps()
    handle = desk.open_patient(ext.id, ctx=Context(progress=steps))
    assert handle.ref.ins == ADULT.ins
    assert "Vérification de l'INS auprès de l'INSi" in steps.labels()
    assert desk.get(ext.id).external_verified


def test_establishment_session_uses_the_insi_manu_certificate(
    desk_for: Callable[..., IdentityDesk], services: Services
) -> None:
    desk = desk_for(AuthMode.INDIRECTE_RENFORCEE)
    assert desk.insi_client().environment.mode is InsiAuthMode.CERTIFICATE
    found = desk.search_traits(ADULT_QUERY)
    assert found.found
    (rec,) = services.journal.records(action="insi.search")
    assert rec.event.actor_id_nat == "899700000013" and rec.event.auth_mode == "INDIRECTE_RENFORCEE"


def test_establishment_session_without_insi_certificate_is_refused(
    desk_for: Callable[..., IdentityDesk], insi_sandbox: RunningInsi
) -> None:
    desk = desk_for(AuthMode.INDIRECTE, insi=InsiSettings(url=insi_sandbox.mtls_url))
    with pytest.raises(InsiConfigurationError) as err:
        desk.search_traits(ADULT_QUERY)
    assert err.value.code == "insi_no_certificate" and "INSI-MANU" in err.value.message_fr
    assert desk.list() == []


# ----------------------------------------------------------------------------------- cancellation


class BlockingTransport(httpx.BaseTransport):
    """An INSi that never answers: the request blocks until the test ends."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        self.release.wait(30)
        raise httpx.ReadError("connection dropped (test)", request=request)


def test_a_search_in_flight_is_cancelled_within_200_ms(
    desk_for: Callable[..., IdentityDesk], services: Services
) -> None:
    transport = BlockingTransport()
    desk = desk_for(transport=transport)
    token = CancelToken()
    steps = Steps()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            desk.search_traits(ADULT_QUERY, ctx=Context(cancel=token, progress=steps))
        except BaseException as exc:
            box["error"] = exc
        box["at"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert transport.entered.wait(10), "the INSi request was never sent"
        cancelled_at = time.monotonic()
        token.cancel()
        worker.join(5)
        assert not worker.is_alive()
    finally:
        transport.release.set()
    assert isinstance(box["error"], Cancelled)
    assert box["at"] - cancelled_at < CANCEL_LATENCY_S
    assert "Recherche de l'INS par les traits d'identité (INSi)" in steps.labels()
    assert "Terminé" not in steps.labels()
    assert desk.list() == []  # the abandoned call records nothing
    (rec,) = services.journal.records(action="insi.search")
    assert rec.event.outcome == "error" and rec.event.error_code == "CANCELLED"


def test_the_deadline_stops_a_search_in_flight(
    desk_for: Callable[..., IdentityDesk], services: Services
) -> None:
    transport = BlockingTransport()
    desk = desk_for(transport=transport)
    ctx = Context.with_timeout(0.5)
    try:
        with pytest.raises(DeadlineExceeded):
            desk.search_traits(ADULT_QUERY, ctx=ctx)
        late = time.monotonic() - (ctx.deadline or 0.0)
    finally:
        transport.release.set()
    assert transport.entered.is_set() and late < CANCEL_LATENCY_S
    assert desk.list() == []
    (rec,) = services.journal.records(action="insi.search")
    assert rec.event.error_code == "DEADLINE"


def test_a_cancelled_token_stops_before_any_call(desk_for: Callable[..., IdentityDesk]) -> None:
    transport = BlockingTransport()
    desk = desk_for(transport=transport)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        desk.search_traits(ADULT_QUERY, ctx=Context(cancel=token))
    assert not transport.entered.is_set()


# ----------------------------------------------------------------------------------- environments


def test_insi_environment_follows_the_dmp_environment(test_pki: TestPki) -> None:
    cpx, cert = InsiAuthMode.CPX, InsiAuthMode.CERTIFICATE
    assert insi_environment_for("sandbox", cpx).name == "sandbox-cpx"
    assert insi_environment_for("formation2", cert).url == INSI_ENVIRONMENTS["qualification-certificat"].url
    assert insi_environment_for("production", cpx).production
    assert insi_environment_for("qualification-cpx", cpx).name == "qualification-cpx"
    assert set(INSI_ENV_OF_DMP.values()) <= {"sandbox", "qualification", "production"}
    with pytest.raises(InsiConfigurationError) as err:
        insi_environment_for("https://dmp.example/si-dmp-server/v2/services/", cpx)
    assert err.value.code == "insi_url"
    custom = insi_environment_for("https://dmp.example/x/", cpx, url="https://insi.example/lps")
    assert custom.url == "https://insi.example/lps" and not custom.production
    with pytest.raises(InsiConfigurationError) as err:
        insi_environment_for("ailleurs", cpx)
    assert err.value.code == "insi_environment"


def test_one_builder_card_and_certificate(
    test_pki: TestPki, tmp_path: Path, insi_sandbox: RunningInsi
) -> None:
    card = _credentials(test_pki)
    settings = InsiSettings(ca_file=str(test_pki.ca_bundle), billing_id=BILLING_ID, url=insi_sandbox.cpx_url)
    with open_insi_client(card, "sandbox", settings, tmp_path) as client:
        assert client.environment.mode is InsiAuthMode.CPX and client.environment.url == insi_sandbox.cpx_url
        assert client.find_by_traits(ADULT_QUERY).found
    with pytest.raises(InsiConfigurationError) as err:  # the PS assertion needs the billing number
        open_insi_client(card, "sandbox", InsiSettings(ca_file=str(test_pki.ca_bundle)), tmp_path)
    assert err.value.code == "insi_billing_id"
    wrong = insi_certificate(test_pki, "INSI-AUTRE")
    bad = InsiSettings(ca_file=str(test_pki.ca_bundle), certificate=wrong.p12, passphrase=P12_PASSPHRASE)
    with pytest.raises(InsiConfigurationError) as err:
        open_insi_client(None, "sandbox", bad, tmp_path)
    assert err.value.code == "insi_certificate_name"


# ----------------------------------------------------------------------------------- Vitale (pcscd)


@pytest.mark.pcsc
def test_vitale_card_insi_validated_identity_dmp_status(
    desk_for: Callable[..., IdentityDesk], virtual_card: VirtualCard
) -> None:
    """The demo of issue 10 through the API: Vitale card → INSi → validated identity → DMP status."""
    virtual_card.insert("vitale-adulte")
    desk = desk_for()
    steps = Steps()
    reading = desk.read_vitale(virtual_card.reader_name, ctx=Context(progress=steps))
    assert [b.usual_name for b in reading.beneficiaries] == ["DEMO-ADULTE"]
    assert steps.labels() == ["Lecture de la carte Vitale", "Terminé"]
    desk.choose(1)
    steps = Steps()
    found = desk.search_vitale(ctx=Context(progress=steps))
    assert found.identity is not None and found.identity.source == "vitale"
    assert steps.labels()[:4] == [
        "Contrôle de la carte Vitale et du bénéficiaire choisi",
        "Connexion au téléservice INSi",
        "Recherche de l'INS avec la carte Vitale (INSi)",
        "Enregistrement de l'identité",
    ]
    qual = desk.validate(found.identity.id, "cni")
    assert qual.qualified
    status = desk.open_patient(qual.id).dmp_status().value
    assert status.exists and status.family_name == "DEMO-ADULTE"


@pytest.mark.pcsc
def test_family_card_child_with_a_lunar_birth_date(
    desk_for: Callable[..., IdentityDesk], virtual_card: VirtualCard
) -> None:
    virtual_card.insert("vitale-famille")
    desk = desk_for()
    reading = desk.read_vitale(virtual_card.reader_name)
    lunar = [(i, b) for i, b in enumerate(reading.beneficiaries, 1) if b.birth_date.endswith("-00-00")]
    assert len(lunar) == 1
    number, child = lunar[0]
    assert child.birth_date == "2019-00-00" and not child.holder
    desk.choose(number)
    found = desk.search_vitale()
    assert found.identity is not None
    assert found.identity.birth_date == "2019-00-00" and found.identity.first_names == child.first_name
    assert found.identity.ins is not None and found.identity.ins.matricule == "1192099350041"


# ----------------------------------------------------------------------------------- the local API route


def test_local_api_identity_search_goes_through_the_desk(desk_for: Callable[..., IdentityDesk]) -> None:
    """``POST /v1/identity/search`` (ps-agent serve): WS_INS2 through the session's desk, recorded as a local
    identity whose status is RECUP (never claimed qualified before a document is checked)."""
    from fastapi.testclient import TestClient

    from ps_agent.api import ApiBackend, create_app
    from ps_agent.api.identity import identity_lookup_for

    desk = desk_for()
    backend = ApiBackend(desk.session.services, lambda: desk.session, environment_name="sandbox")
    token = "t" * 43
    client = TestClient(create_app(backend, token, identity_lookup=identity_lookup_for(desk)))
    h = {"Authorization": "Bearer " + token}
    body = {"birth_family_name": ADULT.family_name, "given_names": ADULT.given_names, "sex": ADULT.sex,
            "birth_date": "1979-03-21", "birth_place_code": ADULT.birth_place}  # fmt: skip
    r = client.post("/v1/identity/search", json=body, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["found"] and out["ins"] == ADULT.ins and out["status"] == "RECUP"
    assert desk.get(out["identity_id"]).status is IdentityStatus.RECUP
    r = client.post(
        "/v1/identity/search", json=body | {"birth_family_name": "INCONNU-DU-REFERENTIEL"}, headers=h
    )
    assert r.status_code == 200 and r.json()["found"] is False and r.json()["identity_id"] is None
