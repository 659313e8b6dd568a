"""Issue 3 "Bad input", item by item: each gives its typed exception and French message, and none
consumes a PIN try (the emulated card's counter stays at 3 and, where the fault comes before the
PIN, the card never even receives a VERIFY)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from smartcard import scard

from ps_agent.auth.errors import Pkcs11Error, Pkcs12Error, SessionClosed
from ps_agent.auth.establishment import EstablishmentSession
from ps_agent.auth.model import ProfessionalIdentity
from ps_agent.auth.session import AuthSession
from ps_agent.card import pcsc
from ps_agent.card.errors import CardProtocolError, CardRemoved, NoReader, ReaderGone
from ps_agent.errors import AuthError, CardError
from sandbox.pki import TestPki

VERIFY = 0x20
PSO = 0x2A


def _record_instructions(card) -> list[int]:
    """Wrap the emulated card so the test sees every instruction byte it receives."""
    seen: list[int] = []
    process = card.process

    def recording(apdu: bytes) -> bytes:
        if len(apdu) >= 2:
            seen.append(apdu[1])
        return process(apdu)

    card.process = recording
    return seen


@pytest.fixture
def unplug_at(monkeypatch) -> Iterator:
    """``unplug_at(ins)``: from the first APDU with instruction ``ins`` on, the reader is gone
    (``SCardTransmit`` answers ``SCARD_E_READER_UNAVAILABLE``, as pcscd does for an unplugged reader)."""
    real = scard.SCardTransmit

    def arm(ins: int) -> None:
        state = {"gone": False}

        def transmit(card, protocol, apdu):
            if state["gone"] or (len(apdu) >= 2 and apdu[1] == ins):
                state["gone"] = True
                return scard.SCARD_E_READER_UNAVAILABLE, []
            return real(card, protocol, apdu)

        monkeypatch.setattr(pcsc.scard, "SCardTransmit", transmit)

    yield arm


# ------------------------------------------------------------------------------ no reader
def test_no_reader_at_all_names_the_problem(monkeypatch) -> None:
    import ps_agent.auth.session as session_mod

    monkeypatch.setattr(session_mod, "list_readers", lambda: [])
    with pytest.raises(NoReader) as info:
        AuthSession.open(None, "1234")
    assert isinstance(info.value, CardError) and info.value.code == "no_reader"
    assert info.value.message_fr == "Aucun lecteur de cartes n'est branché. Branchez le lecteur et réessayez."


@pytest.mark.pcsc
def test_no_reader_reaches_no_card(virtual_card, monkeypatch) -> None:
    """Even with a card in the (invisible) reader, nothing is sent to it."""
    import ps_agent.auth.session as session_mod

    virtual_card.insert("gp")
    seen = _record_instructions(virtual_card.card)
    monkeypatch.setattr(session_mod, "list_readers", lambda: [])
    with pytest.raises(NoReader):
        AuthSession.open(None, "1234")
    assert seen == [] and virtual_card.card.pin_tries == 3


# ------------------------------------------------------------------------------ reader unplugged
@pytest.mark.pcsc
@pytest.mark.parametrize("ins", [0xA4, 0xB0, VERIFY], ids=["select", "read-certificate", "verify"])
def test_reader_unplugged_during_login(virtual_card, unplug_at, ins: int) -> None:
    virtual_card.insert("gp")
    seen = _record_instructions(virtual_card.card)
    unplug_at(ins)
    with pytest.raises(ReaderGone) as info:
        AuthSession.open(virtual_card.reader_name, "1234")
    assert info.value.code == "reader_gone"
    assert info.value.message_fr == (
        f"Le lecteur de cartes « {virtual_card.reader_name} » a été débranché pendant l'opération."
    )
    assert VERIFY not in seen  # the PIN never reached the card
    assert virtual_card.card.pin_tries == 3


@pytest.mark.pcsc
def test_reader_unplugged_during_a_signature_closes_the_session(virtual_card, unplug_at) -> None:
    virtual_card.insert("gp")
    session = AuthSession.open(virtual_card.reader_name, "1234")
    assert session.vihf_signer().sign(b"before")
    unplug_at(PSO)
    with pytest.raises(ReaderGone) as info:
        session.vihf_signer().sign(b"payload")
    assert "débranché" in info.value.message_fr
    assert not session.active and session.closed_reason == "reader_gone"
    with pytest.raises(SessionClosed) as closed:
        session.vihf_signer()
    assert closed.value.message_fr == "Le lecteur de cartes a été débranché : la session est fermée."
    assert virtual_card.card.pin_tries == 3


# ------------------------------------------------------------------------------ card removed
@pytest.mark.pcsc
def test_card_removed_during_a_signature(virtual_card) -> None:
    """The card is pulled while signatures run: a typed error in French, the session ends, and the
    card (put back) still has its three tries."""
    virtual_card.insert("gp")
    session = AuthSession.open(virtual_card.reader_name, "1234")
    errors: list[BaseException] = []
    signing = threading.Event()

    def loop() -> None:
        try:
            while True:
                session.vihf_signer().sign(b"payload")
                signing.set()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=loop)
    t.start()
    assert signing.wait(5)
    virtual_card.remove()
    t.join(5)
    assert not t.is_alive()
    error = errors[0]
    assert isinstance(error, (CardRemoved, SessionClosed)), repr(error)
    assert error.message_fr in (
        "La carte a été retirée pendant l'opération. Réinsérez-la et recommencez.",
        SessionClosed.MESSAGES["removed"],
    )
    assert session.closed_reason == "removed"
    virtual_card.insert("gp")
    assert virtual_card.card.pin_tries == 3
    with AuthSession.open(virtual_card.reader_name, "1234") as again:  # a new PIN entry, a new session
        assert again.vihf_signer().sign(b"after")


# ------------------------------------------------------------------------------ garbage answers
@pytest.mark.pcsc
def test_garbage_answers_at_login(virtual_card) -> None:
    virtual_card.insert("gp", garbage=True)
    seen = _record_instructions(virtual_card.card)
    with pytest.raises(CardProtocolError) as info:
        AuthSession.open(virtual_card.reader_name, "1234")
    assert info.value.code == "card_protocol"
    assert info.value.message_fr.startswith("La carte a renvoyé une réponse incompréhensible.")
    assert VERIFY not in seen
    virtual_card.card.garbage = False
    assert virtual_card.card.pin_tries == 3


@pytest.mark.pcsc
def test_garbage_answer_to_a_signature(virtual_card) -> None:
    virtual_card.insert("gp")
    with AuthSession.open(virtual_card.reader_name, "1234") as session:
        virtual_card.card.garbage = True
        with pytest.raises(CardProtocolError) as info:
            session.vihf_signer().sign(b"payload")
        assert "réponse incompréhensible" in info.value.message_fr
        virtual_card.card.garbage = False
    assert virtual_card.card.pin_tries == 3


# ------------------------------------------------------------------------------ PKCS#11 module
@pytest.mark.parametrize("kind", ["missing", "not-a-library", "library-without-pkcs11"])
def test_pkcs11_module_that_is_not_one(tmp_path: Path, kind: str) -> None:
    if kind == "missing":
        module = tmp_path / "libcps3_pkcs11_lux.so"
        expected = "introuvable"
    elif kind == "not-a-library":
        module = tmp_path / "not-pkcs11.so"
        module.write_bytes(b"\x7fELF this is not a library")
        expected = "n'est pas une bibliothèque PKCS#11"
    else:
        module = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")
        if not module.exists():
            pytest.skip("no libz.so.1 to use as a non-PKCS#11 shared library")
        expected = "n'est pas une bibliothèque PKCS#11"
    with pytest.raises(Pkcs11Error) as info:
        AuthSession.open_pkcs11("1234", module=module)
    assert isinstance(info.value, AuthError)
    assert expected in info.value.message_fr and str(module) in info.value.message_fr


def test_cli_pkcs11_module_that_is_not_one(tmp_path: Path) -> None:
    fake = tmp_path / "not-pkcs11.so"
    fake.write_bytes(b"garbage")
    env = dict(os.environ, PS_AGENT_TEST_PIN="1234")
    out = subprocess.run(
        [sys.executable, "-m", "ps_agent", "card", "login", "--pkcs11", str(fake)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert out.returncode == 1
    assert "n'est pas une bibliothèque PKCS#11" in out.stderr
    assert "Traceback" not in out.stderr and "1234" not in out.stdout + out.stderr


# ------------------------------------------------------------------------------ PKCS#12 passphrase
def test_pkcs12_with_the_wrong_passphrase(test_pki: TestPki) -> None:
    org = test_pki.establishment
    user = ProfessionalIdentity("3990000018/SEC00001", "SECRETAIRE", "MARIE", "")
    with pytest.raises(Pkcs12Error) as info:
        EstablishmentSession.from_pkcs12(org.auth_p12, org.sign_p12, "mauvaise-phrase", user=user)
    assert isinstance(info.value, AuthError) and info.value.code == "p12_passphrase"
    assert "mot de passe" in info.value.message_fr and org.auth_p12.name in info.value.message_fr
    assert "mauvaise-phrase" not in info.value.message_fr


# ------------------------------------------------------------------------------ situation number
@pytest.mark.pcsc
def test_situation_numbers_count_from_one(virtual_card) -> None:
    from ps_agent.auth.session import situation_index

    assert situation_index(1) == 0
    with pytest.raises(AuthError) as zero:
        situation_index(0)
    assert zero.value.code == "bad_situation" and "à partir de 1" in zero.value.message_fr
    virtual_card.insert("gp")  # one situation on this card
    seen = _record_instructions(virtual_card.card)
    for index in (1, -1):
        with pytest.raises(AuthError) as info:
            AuthSession.open(virtual_card.reader_name, "1234", situation_index=index)
        assert info.value.code == "bad_situation"
        assert "choisissez un numéro entre 1 et 1" in info.value.message_fr
    assert VERIFY not in seen  # refused before the PIN is presented
    assert virtual_card.card.pin_tries == 3


@pytest.mark.pcsc
def test_cli_situation_numbers_count_from_one(virtual_card) -> None:
    virtual_card.insert("gp")
    env = dict(os.environ, PS_AGENT_TEST_PIN="1234")

    def login(number: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "ps_agent", "card", "login", "--reader", virtual_card.reader_name]
        return subprocess.run(
            [*cmd, "--situation", number, "--json"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

    first = login("1")
    assert first.returncode == 0, first.stderr
    assert '"structure_name": "CABINET MEDICAL DU PARC"' in first.stdout
    zero = login("0")
    assert zero.returncode == 2 and "n'est pas un numéro de situation d'exercice" in zero.stderr
    second = login("2")
    assert second.returncode == 1
    assert "La situation d'exercice n° 2 n'existe pas" in second.stderr
    for out in (zero, second):
        assert "Traceback" not in out.stderr
    assert virtual_card.card.pin_tries == 3


def test_an_unexpected_failure_is_a_french_sentence_not_a_traceback(monkeypatch, capsys) -> None:
    from ps_agent.cli import main

    def broken() -> list[str]:
        raise RuntimeError("bug")

    monkeypatch.setattr(pcsc, "list_readers", broken)
    assert main(["card", "readers"]) == 1
    err = capsys.readouterr().err
    assert "Erreur interne (RuntimeError) : l'opération n'a pas abouti." in err and "Traceback" not in err
