"""AuthSession over the real PC/SC stack (pcscd + vpcd + emulated card)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ps_agent.auth.errors import (
    CertificateError,
    PinBlocked,
    PinFinalTryError,
    PinFormatError,
    SessionClosed,
    WrongPin,
)
from ps_agent.auth.model import AuthMode, Credentials, KeyUse
from ps_agent.auth.session import AuthSession
from ps_agent.card.cps import CpsSession
from ps_agent.card.errors import CardBusy, CardProtocolError, CardRemoved, NoCard, NoReader, UnknownCard
from ps_agent.card.pcsc import PcscConnection
from sandbox.pki import TestPki
from sandbox.profiles import PROFILES
from tests.auth.tls_server import mtls_server
from tests.fixtures.clock import MonotonicClock

pytestmark = pytest.mark.pcsc


def _open(virtual_card, pin: str = "1234", **kw) -> AuthSession:
    return AuthSession.open(virtual_card.reader_name, pin, **kw)


def test_pin_ok_reads_identity_and_situation(virtual_card, test_pki: TestPki) -> None:
    virtual_card.insert("gp")
    with _open(virtual_card, ca_file=test_pki.ca_bundle) as session:
        assert isinstance(session, Credentials)
        ident = session.identity
        p = PROFILES["gp"]
        assert (ident.id_nat, ident.family_name, ident.given_name) == (p.id_nat, p.family_name, p.given_name)
        assert (ident.profession_code, ident.specialty_code, ident.card_type) == ("10", "SM26", "CPS")
        assert ident.activity is not None
        assert ident.activity.structure_id == p.situations[0].structure_id
        assert ident.activity.sector == "SA07"
        assert session.mode is AuthMode.DIRECTE
        assert session.holder.serial == "101"
        assert ident.extra["subject_dn"] == test_pki.card("gp").sign_cert.subject.rfc4514_string()
        assert virtual_card.card.pin_tries == 3


def test_signatures_verify_with_the_card_certificates(virtual_card, test_pki: TestPki) -> None:
    virtual_card.insert("pharmacist")
    with _open(virtual_card, ca_file=test_pki.ca_bundle) as session:
        signer = session.vihf_signer()
        sig = signer.sign(b"<saml2:Assertion/>")
        holder = test_pki.card("pharmacist")
        assert signer.certificate == holder.sign_cert
        holder.sign_cert.public_key().verify(sig, b"<saml2:Assertion/>", padding.PKCS1v15(), hashes.SHA256())
        auth_sig = session.auth_signer().sign(b"challenge")
        holder.auth_cert.public_key().verify(auth_sig, b"challenge", padding.PKCS1v15(), hashes.SHA256())
        assert signer.chain == holder.chain  # verified against the test PKI bundle


def test_wrong_pin_counts_down_then_blocks_and_puk_unblocks(virtual_card) -> None:
    virtual_card.insert("gp")
    with pytest.raises(WrongPin) as first:
        _open(virtual_card, "0000")
    assert first.value.tries_left == 2 and "2 essais" in first.value.message_fr
    with pytest.raises(WrongPin) as second:
        _open(virtual_card, "0000")
    assert second.value.tries_left == 1
    with pytest.raises(PinFinalTryError):  # last try needs an explicit confirmation
        _open(virtual_card, "0000")
    assert virtual_card.card.pin_tries == 1  # nothing consumed
    with pytest.raises(PinBlocked):
        _open(virtual_card, "0000", confirm_final_try=True)
    with pytest.raises(PinBlocked) as blocked:
        _open(virtual_card, "1234")
    assert "déblocage" in blocked.value.message_fr
    with PcscConnection(virtual_card.reader_name) as conn:
        CpsSession(conn).unblock_pin("12345678", "4321")
    with _open(virtual_card, "4321") as session:
        assert session.active


@pytest.mark.parametrize("pin", ["123", "12345", "12a4", "", " 1234", "１２３４", "12.4"])
def test_badly_formatted_pin_never_reaches_the_card(virtual_card, pin: str) -> None:
    virtual_card.insert("gp")
    before = virtual_card.card.apdu_count
    with pytest.raises(PinFormatError) as info:
        _open(virtual_card, pin)
    assert "4 chiffres" in info.value.message_fr and "aucun essai" in info.value.message_fr
    assert virtual_card.card.apdu_count == before
    assert virtual_card.card.pin_tries == 3


def test_blocked_card_is_refused_without_presenting_the_pin(virtual_card) -> None:
    virtual_card.insert("blocked")
    with pytest.raises(PinBlocked):
        _open(virtual_card)
    assert virtual_card.card.pin_tries == 0


def test_expired_certificate_is_refused_before_the_pin(virtual_card) -> None:
    virtual_card.insert("expired")
    with pytest.raises(CertificateError) as info:
        _open(virtual_card, "9999")
    assert "a expiré le" in info.value.message_fr
    assert virtual_card.card.pin_tries == 3  # the (wrong) PIN was never presented


def test_card_from_another_pki_is_untrusted(virtual_card, foreign_pki: TestPki) -> None:
    virtual_card.insert("gp")
    with pytest.raises(CertificateError) as info:
        _open(virtual_card, ca_file=foreign_pki.ca_bundle)
    assert "autorité reconnue" in info.value.message_fr


def test_removal_closes_the_session_within_one_second(virtual_card) -> None:
    virtual_card.insert("gp")
    session = _open(virtual_card)
    closed = threading.Event()
    reasons: list[str] = []
    session.on_closed(lambda reason: (reasons.append(reason), closed.set()))
    signer = session.vihf_signer()
    start = time.monotonic()
    virtual_card._link.remove()  # pull the card (without waiting for pcscd like remove() does)
    assert closed.wait(1.0), "session still open 1 s after the card was removed"
    assert time.monotonic() - start < 1.0
    assert reasons == ["removed"]
    with pytest.raises(SessionClosed) as info:
        signer.sign(b"x")
    assert "retirée" in info.value.message_fr
    virtual_card._link = None


def test_card_change_ends_the_old_session_and_nothing_carries_over(virtual_card) -> None:
    virtual_card.insert("gp")
    old = _open(virtual_card)
    old_signer = old.vihf_signer()
    virtual_card.remove()
    virtual_card.insert("specialist")
    deadline = time.monotonic() + 2
    while old.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not old.active
    with pytest.raises(SessionClosed):
        old_signer.sign(b"x")
    with pytest.raises(SessionClosed):
        old.ensure_active()
    with _open(virtual_card) as new:
        assert new.identity.id_nat == PROFILES["specialist"].id_nat
        assert new.identity.activity and new.identity.activity.sector == "SA01"


def test_idle_timeout_closes_the_session(virtual_card) -> None:
    clock = MonotonicClock()
    virtual_card.insert("nurse")
    session = _open(virtual_card, idle_timeout_s=60, clock=clock)
    closed = threading.Event()
    session.on_closed(lambda reason: closed.set())
    clock.advance(59)
    session.ensure_active()  # 59 s without use: still open
    assert session.active
    clock.advance(2)
    assert closed.wait(2.0), "the watch thread did not close the idle session"  # it polls every 200 ms
    assert session.closed_reason == "idle"
    with pytest.raises(SessionClosed) as info:
        session.ensure_active()
    assert "inactivité" in info.value.message_fr


def test_idle_rule_is_checked_at_use_even_before_the_watcher_runs(virtual_card) -> None:
    clock = MonotonicClock()
    virtual_card.insert("gp")
    session = _open(virtual_card, idle_timeout_s=60, clock=clock)
    session._stop.set()  # the watch thread stops polling: only the check at use remains
    clock.advance(61)
    with pytest.raises(SessionClosed) as info:
        session.vihf_signer()
    assert info.value.reason == "idle" and session.closed_reason == "idle"


def test_unknown_card_is_named_as_such(virtual_card) -> None:
    virtual_card.insert("unknown")
    with pytest.raises(UnknownCard) as info:
        _open(virtual_card)
    assert "n'est pas une carte de professionnel de santé" in info.value.message_fr
    with pytest.raises(UnknownCard):  # auto-detection too
        AuthSession.open(None, "1234")


def test_garbage_answers_are_a_protocol_error(virtual_card) -> None:
    virtual_card.insert("gp", garbage=True)
    with pytest.raises((CardProtocolError, UnknownCard)):
        _open(virtual_card)


def test_no_card_and_no_such_reader(virtual_card) -> None:
    with pytest.raises(NoCard):
        _open(virtual_card)
    with pytest.raises(NoReader) as info:
        AuthSession.open("Lecteur fantôme 00 00", "1234")
    assert "Lecteur fantôme" in info.value.message_fr


def test_another_program_holding_the_card_exclusively(virtual_card) -> None:
    virtual_card.insert("gp")
    with PcscConnection(virtual_card.reader_name) as other:
        assert other.share_mode == "exclusive"
        with pytest.raises(CardBusy) as info:
            _open(virtual_card)
        assert "exclusivité" in info.value.message_fr
    assert virtual_card.card.pin_tries == 3


def test_shared_fallback_when_another_program_shares_the_card(virtual_card) -> None:
    virtual_card.insert("gp")
    with PcscConnection(virtual_card.reader_name, exclusive=False) as other:
        assert other.share_mode == "shared"
        with _open(virtual_card) as session:
            assert session._conn.share_mode == "shared"
            assert session.vihf_signer().sign(b"x")


def test_card_removed_during_signatures(virtual_card) -> None:
    virtual_card.insert("gp")
    session = _open(virtual_card)
    errors: list[BaseException] = []
    signing = threading.Event()

    def loop() -> None:
        try:
            while True:
                session.vihf_signer().sign(b"payload")
                signing.set()
        except BaseException as exc:
            errors.append(exc)
            signing.set()

    t = threading.Thread(target=loop)
    t.start()
    assert signing.wait(5.0)  # the card is removed while signatures are under way
    virtual_card.remove()
    t.join(3)
    assert errors and isinstance(errors[0], (CardRemoved, SessionClosed)), getattr(errors[0], "detail", "")
    assert not session.active


def test_tls_client_auth_with_the_card_key(virtual_card, test_pki: TestPki) -> None:
    """A loopback TLS server requiring a client certificate sees the card's one; the key stays on the card."""
    virtual_card.insert("gp")
    holder = test_pki.card("gp")
    full = test_pki.directory / "server" / "server.fullchain.pem"
    with mtls_server(test_pki.server_cert, test_pki.server_key, test_pki.ca_bundle, cert_chain=full) as url:
        session = _open(virtual_card, ca_file=test_pki.ca_bundle)
        before = virtual_card.card.apdu_count
        transport = session.tls_transport(ca_file=str(test_pki.ca_bundle))
        with httpx.Client(transport=transport) as client:
            seen = client.post(f"{url}/si-dmp-server/v2/services/registry", content=b"<soap/>").json()
            assert "899700000013" in seen["client_subject"]
            assert seen["version"] == "TLSv1.2"
            assert virtual_card.card.apdu_count > before  # the handshake signature was made by the card
            virtual_card.remove()  # returns once pcscd sees the reader empty
            deadline = time.monotonic() + 2
            while session.active and time.monotonic() < deadline:  # the watcher polls every 200 ms
                time.sleep(0.02)
            assert not session.active
            with pytest.raises(SessionClosed):  # even over the kept-alive connection
                client.get(url)
    assert holder.auth_cert.subject.rfc4514_string() == seen["client_subject"]


def test_signer_identifies_its_key_use(virtual_card) -> None:
    virtual_card.insert("regulator")
    with _open(virtual_card) as session:
        assert session.vihf_signer().use is KeyUse.SIGNATURE
        assert session.auth_signer().use is KeyUse.AUTHENTICATION
        assert session.identity.is_regulator


def test_requests_count_as_activity_for_the_idle_timer(virtual_card, test_pki: TestPki) -> None:
    clock = MonotonicClock()
    virtual_card.insert("gp")
    full = test_pki.directory / "server" / "server.fullchain.pem"
    with mtls_server(test_pki.server_cert, test_pki.server_key, test_pki.ca_bundle, cert_chain=full) as url:
        session = _open(virtual_card, idle_timeout_s=60, clock=clock)
        with httpx.Client(transport=session.tls_transport(ca_file=str(test_pki.ca_bundle))) as client:
            for _ in range(4):  # 4 x 40 s = 160 s in all, never 60 s without a request
                clock.advance(40)
                assert client.get(url).status_code == 200
            assert session.active
            clock.advance(61)
            with pytest.raises(SessionClosed):
                client.get(url)
            assert not session.active and session.closed_reason == "idle"


def test_after_login_the_card_is_shared_with_other_programs(virtual_card) -> None:
    virtual_card.insert("gp")
    with _open(virtual_card) as session:
        assert session._conn.share_mode == "shared"
        with PcscConnection(virtual_card.reader_name, exclusive=False) as other:  # e.g. the Cryptolib
            assert other.share_mode == "shared"
            assert session.vihf_signer().sign(b"still logged in")  # PIN state kept, no reset
        with PcscConnection(virtual_card.reader_name) as third:  # exclusive refused while we hold it
            assert third.share_mode == "shared"
        assert session.vihf_signer().sign(b"again")


def test_pending_work_can_wait_for_the_card_to_come_back(virtual_card) -> None:
    from ps_agent.auth.session import wait_for_card

    assert wait_for_card(virtual_card.reader_name, 0.3) is False
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(wait_for_card(virtual_card.reader_name, 5.0)))
    waiter.start()
    time.sleep(0.2)
    virtual_card.insert("gp")
    waiter.join(6)
    assert result == [True]


def test_card_reset_by_another_program_ends_the_session(virtual_card) -> None:
    """Another program resetting the card wipes its PIN state: the session must not go on."""
    from smartcard import scard

    virtual_card.insert("gp")
    session = _open(virtual_card)
    other = PcscConnection(virtual_card.reader_name, exclusive=False)
    card, other._card = other._card, 0
    scard.SCardDisconnect(card, scard.SCARD_RESET_CARD)
    other.close()
    with pytest.raises((CardRemoved, SessionClosed)):
        for _ in range(20):  # the watcher may notice first; either way no signature goes out
            session.vihf_signer().sign(b"x")
            time.sleep(0.05)
    assert not session.active


def test_fast_swap_closes_the_old_session(virtual_card) -> None:
    virtual_card.insert("gp")
    session = _open(virtual_card)
    virtual_card._link.remove()
    virtual_card._link = None
    virtual_card.insert("pharmacist")  # no wait for pcscd to see the removal
    deadline = time.monotonic() + 1.5
    while session.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.closed_reason in ("removed", "changed")


def test_cpe_card_of_a_secretary(virtual_card) -> None:
    virtual_card.insert("secretary")
    with _open(virtual_card) as session:
        ident = session.identity
        assert ident.card_type == "CPE"
        assert ident.profession_code == "" and ident.non_ps_role == "SECRETARIAT_MEDICAL"
        assert ident.id_nat == PROFILES["secretary"].id_nat
        assert (
            ident.activity and ident.activity.structure_id == PROFILES["secretary"].situations[0].structure_id
        )


def test_real_card_layout_points_to_the_cryptolib(virtual_card) -> None:
    """A CPx card without the emulator's holder file (as a real CPS3 would be): clear advice."""
    from ps_agent.card.errors import UnsupportedCardLayout

    virtual_card.insert("gp")
    del virtual_card.card._files[(0x3F00, 0x0001, 0x7001)]
    with pytest.raises(UnsupportedCardLayout) as info:
        _open(virtual_card)
    assert "Cryptolib" in info.value.message_fr
    assert virtual_card.card.pin_tries == 3
