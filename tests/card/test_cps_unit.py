"""CPS session logic without pcscd: the emulator applet in-process behind the same chaining code.

These run everywhere (no reader needed) and cover parsing and status-word handling; the PC/SC
tests cover the same paths through the real stack.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ps_agent.auth.errors import PinBlocked, PinFinalTryError, PinFormatError, WrongPin
from ps_agent.auth.model import KeyUse
from ps_agent.card.cps import CpsSession, PinRequired, identify_atr, parse_holder_record, parse_tlv
from ps_agent.card.errors import CardProtocolError, UnknownCard
from ps_agent.card.pcsc import chained_exchange
from sandbox.card import CPS3_ATR, UNKNOWN_ATR, make_card
from sandbox.pki import TestPki


class AppletConnection:
    """In-process connection to the emulator applet, through the production chaining code."""

    def __init__(self, applet) -> None:
        self.applet = applet
        self.atr = applet.atr
        applet.power_on()
        self.sent: list[bytes] = []

    def _transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        r = self.applet.process(apdu)
        if len(r) < 2:
            raise CardProtocolError("short")
        return r[:-2], int.from_bytes(r[-2:], "big")

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        return chained_exchange(self._transmit, apdu)


@pytest.fixture(params=[True, False], ids=["T=0", "T=1"])
def gp(request, test_pki: TestPki) -> AppletConnection:
    return AppletConnection(make_card(test_pki, "gp", t0=request.param))


def test_atr_table() -> None:
    assert identify_atr(CPS3_ATR).generation == "CPS3"
    assert identify_atr(bytes.fromhex("3B9B188001001225006480040100009044")).generation == "CPS4"
    # masked bytes of the CPS3 ATR may vary
    varied = bytearray(CPS3_ATR)
    varied[2] ^= 0xFF
    assert identify_atr(bytes(varied)) is not None
    assert identify_atr(UNKNOWN_ATR) is None
    assert identify_atr(b"") is None


def test_holder_certificates_and_signatures_both_protocols(gp: AppletConnection, test_pki: TestPki) -> None:
    cps = CpsSession(gp)
    holder = cps.read_holder()
    assert (holder.id_nat, holder.card_type, holder.situation_count) == ("899700000013", "CPS", 1)
    assert cps.read_certificate(KeyUse.SIGNATURE) == test_pki.card("gp").sign_cert
    with pytest.raises(PinRequired):
        cps.read_situations(1)
    with pytest.raises(PinRequired):
        cps.sign(KeyUse.SIGNATURE, b"x")
    cps.verify_pin("1234")
    assert cps.read_situations(1)[0].sector == "SA07"
    sig = cps.sign(KeyUse.AUTHENTICATION, b"tls")
    test_pki.card("gp").auth_cert.public_key().verify(sig, b"tls", padding.PKCS1v15(), hashes.SHA256())


def test_pin_sequence_and_format(gp: AppletConnection) -> None:
    cps = CpsSession(gp)
    sent = len(gp.sent)
    for bad in ("", "123", "abcd", "12345", "12 4"):
        with pytest.raises(PinFormatError):
            cps.verify_pin(bad)
    assert len(gp.sent) == sent
    with pytest.raises(WrongPin):
        cps.verify_pin("1111")
    with pytest.raises(WrongPin):
        cps.verify_pin("1111")
    with pytest.raises(PinFinalTryError):
        cps.verify_pin("1111")
    with pytest.raises(PinBlocked):
        cps.verify_pin("1111", confirm_final_try=True)
    with pytest.raises(PinBlocked):
        cps.verify_pin("1234", confirm_final_try=True)
    with pytest.raises(PinFormatError):
        cps.unblock_pin("1234", "1234")  # PUK has 8 digits
    cps.unblock_pin("12345678", "2468")
    assert cps.pin_status().tries_left == 3
    cps.verify_pin("2468")


def test_unknown_and_garbage_cards(test_pki: TestPki) -> None:
    with pytest.raises(UnknownCard):
        CpsSession(AppletConnection(make_card(test_pki, "unknown")))
    garbage = make_card(test_pki, "gp", garbage=True)
    with pytest.raises((CardProtocolError, UnknownCard)):
        CpsSession(AppletConnection(garbage)).read_holder()


def test_chaining_handles_6c_and_61() -> None:
    replies = iter([(b"", 0x6C05), (b"", 0x6103), (b"abc", 0x6102), (b"de", 0x9000)])
    seen: list[bytes] = []

    def transmit(apdu: bytes) -> tuple[bytes, int]:
        seen.append(apdu)
        return next(replies)

    assert chained_exchange(transmit, bytes.fromhex("00B0000010")) == (b"abcde", 0x9000)
    assert seen[1] == bytes.fromhex("00B0000005")
    assert seen[2] == bytes.fromhex("00C0000003")

    def endless(apdu: bytes) -> tuple[bytes, int]:
        return b"x", 0x6101

    with pytest.raises(CardProtocolError):
        chained_exchange(endless, bytes.fromhex("00B0000010"))


@pytest.mark.parametrize(
    "record",
    [
        b"",
        b"\xe0",
        b"\xe0\x05\x80\x01",
        b"\xe0\x02\x80\x00",
        b"\xe1\x00",
        b"\xe0\x04\x80\x01C\x81",
        b"\xe0\x83\x00\x00",
    ],
)
def test_malformed_holder_records_are_protocol_errors(record: bytes) -> None:
    with pytest.raises(CardProtocolError):
        parse_holder_record(record)


def test_tlv_long_lengths() -> None:
    assert parse_tlv(b"\x80\x81\x80" + b"a" * 0x80) == [(0x80, b"a" * 0x80)]
    assert parse_tlv(b"\x80\x82\x01\x00" + b"b" * 256) == [(0x80, b"b" * 256)]


@pytest.mark.pcsc
def test_pin_never_appears_in_traffic_logs(virtual_card, caplog) -> None:
    """APDU traffic logging (level 5) masks VERIFY data."""
    from ps_agent.card.pcsc import TRAFFIC, PcscConnection

    virtual_card.insert("gp")
    caplog.set_level(TRAFFIC, logger="ps_agent.card.pcsc")
    with PcscConnection(virtual_card.reader_name) as conn:
        CpsSession(conn).verify_pin("1234")
    text = caplog.text
    assert "0020008108" in text and "masqué" in text
    assert "31323334" not in text  # the PIN digits in ASCII hex


def test_pcsc_return_codes_map_to_typed_errors(monkeypatch) -> None:
    """Reader unplugged, card pulled, service down: each PC/SC code becomes its own French error."""
    from smartcard import scard

    from ps_agent.card import pcsc
    from ps_agent.card.errors import CardRemoved, NoCard, NoReader, PcscUnavailable, ReaderGone

    conn = object.__new__(pcsc.PcscConnection)
    conn.reader = "Lecteur X"
    cases = [
        (scard.SCARD_E_READER_UNAVAILABLE, False, ReaderGone),
        (scard.SCARD_E_READER_UNAVAILABLE, True, NoReader),
        (scard.SCARD_W_REMOVED_CARD, False, CardRemoved),
        (scard.SCARD_E_NO_SMARTCARD, True, NoCard),
        (scard.SCARD_W_RESET_CARD, False, CardRemoved),
        (scard.SCARD_E_NO_SERVICE, False, PcscUnavailable),
        (scard.SCARD_W_UNRESPONSIVE_CARD, False, CardProtocolError),
    ]
    for hr, connecting, expected in cases:
        with pytest.raises(expected) as info:
            conn._raise_for(hr, connecting=connecting)
        assert info.value.message_fr
    with pytest.raises(ReaderGone) as gone:
        conn._raise_for(scard.SCARD_E_READER_UNAVAILABLE)
    assert "débranché" in gone.value.message_fr

    monkeypatch.setattr(pcsc.scard, "SCardEstablishContext", lambda scope: (scard.SCARD_E_NO_SERVICE, 0))
    with pytest.raises(PcscUnavailable) as down:
        pcsc.list_readers()
    assert "pcscd" in down.value.message_fr


def test_no_reader_at_all(monkeypatch) -> None:
    import ps_agent.auth.session as session_mod
    from ps_agent.card.errors import NoReader

    monkeypatch.setattr(session_mod, "list_readers", lambda: [])
    with pytest.raises(NoReader) as info:
        session_mod.AuthSession.open(None, "1234")
    assert "Aucun lecteur" in info.value.message_fr
