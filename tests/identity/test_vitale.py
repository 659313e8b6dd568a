"""The carte Vitale reader through the real PC/SC stack (pcscd + vpcd + the emulated Vitale card), and the
WS_INS1 route against the INSi sandbox over TLS: adult, child of a family card, 20-minute freshness, card
swap, unreadable / expired / real cards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ps_agent.identity.errors import InsiInputError, VitaleSelectionExpired
from ps_agent.identity.model import CodeCR
from ps_agent.identity.vitale import (
    SESAM_VITALE_MESSAGE,
    NotAVitaleCard,
    VitaleCardChanged,
    VitaleCardInvalid,
    VitaleReader,
    VitaleUnreadable,
    VitaleUnsupported,
    card_date,
    read_vitale,
)
from tests.fixtures.card import VirtualCard


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_adult_card_read_through_pcscd(virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-adulte")
    reading = read_vitale(virtual_card.reader_name)
    assert reading.card.serial == "000000000105"
    assert reading.card.nature == "T" and reading.card.card_type == "V2"
    assert (reading.card.regime, reading.card.caisse, reading.card.centre) == ("01", "751", "0001")
    (ben,) = reading.beneficiaries
    assert (ben.usual_name, ben.first_name, ben.birth_date, ben.rank, ben.holder) == (
        "DEMO-ADULTE",
        "CAMILLE",
        "1979-03-21",
        1,
        True,
    )
    assert len(ben.nir) == 13 and len(ben.nir_key) == 2
    assert virtual_card.card is not None and virtual_card.card.apdu_count > 0


def test_family_card_lists_beneficiaries_with_ranks(virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-famille")
    reading = read_vitale()  # first reader holding a Vitale card
    names = [(b.first_name, b.birth_date, b.rank, bool(b.nir)) for b in reading.beneficiaries]
    assert names == [
        ("CLAIRE", "1985-09-12", 1, True),
        ("LEA", "2018-05-04", 1, False),
        ("LOU", "2018-05-04", 2, False),
        ("NOE", "2019-00-00", 1, False),  # lunar birth date kept as read
    ]
    with pytest.raises(InsiInputError) as err:
        reading.select(5)
    assert err.value.code == "vitale_beneficiary"
    assert "entre 1 et 4" in err.value.message_fr


def test_lunar_birth_date_kept(virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-lunaire")
    (ben,) = read_vitale(virtual_card.reader_name).beneficiaries
    assert ben.birth_date == "1962-00-00"


def test_six_digit_dates_century() -> None:
    today = datetime(2026, 1, 1).date()
    assert card_date("601020", today) == "1960-10-20"
    assert card_date("200102", today) == "2020-01-02"
    with pytest.raises(VitaleUnreadable):
        card_date("19A01020", today)


def test_expired_and_invalidated_card_refused(virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-expiree")
    with pytest.raises(VitaleCardInvalid) as err:
        read_vitale(virtual_card.reader_name)
    assert err.value.code == "vitale_invalidated"
    assert "opposition" in err.value.message_fr


def test_real_card_refused_with_the_sesam_vitale_route(virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-reelle")
    with pytest.raises(VitaleUnsupported) as err:
        read_vitale(virtual_card.reader_name)
    assert err.value.message_fr == SESAM_VITALE_MESSAGE
    assert "SESAM-Vitale" in err.value.message_fr and "apCV" in err.value.message_fr


def test_garbage_answers_are_unreadable(virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-adulte", garbage=True)
    with pytest.raises(VitaleUnreadable) as err:
        read_vitale(virtual_card.reader_name)
    assert err.value.code == "vitale_unreadable"


def test_cps_card_is_not_a_vitale_card(virtual_card: VirtualCard) -> None:
    virtual_card.insert("gp")
    with pytest.raises(NotAVitaleCard) as err:
        read_vitale(virtual_card.reader_name)
    assert "n'est pas une carte Vitale" in err.value.message_fr


# ------------------------------------------------------------------------------------ WS_INS1 route


def test_adult_found_by_ws_ins1(virtual_card: VirtualCard, insi_client) -> None:  # type: ignore[no-untyped-def]
    virtual_card.insert("vitale-adulte")
    reader = VitaleReader(virtual_card.reader_name)
    reader.read()
    selection = reader.choose(1)
    client, frames = insi_client("cpx")
    result = client.search_with_vitale(reader.current(), confirm_card=reader.confirm_card)
    assert result.code is CodeCR.FOUND and result.identity is not None
    assert result.identity.traits.birth_name == "DEMO-ADULTE"
    assert result.identity.ins.matricule == selection.beneficiary.nir
    assert len(frames.out()) == 1
    # the emulated card signed the Vitale assertion (sandbox-only HMAC) and the sandbox verified it
    assert b"urn:ps-agent:sandbox:vitale-hmac-sha256" in frames.out()[0]
    assert virtual_card.card is not None and virtual_card.card.signatures == 1  # type: ignore[attr-defined]


def test_unsigned_assertion_when_signing_is_off(virtual_card: VirtualCard, insi_client) -> None:  # type: ignore[no-untyped-def]
    virtual_card.insert("vitale-zoe")
    reader = VitaleReader(virtual_card.reader_name, sign=False)
    reader.read()
    client, frames = insi_client("certificat")
    result = client.search_with_vitale(reader.choose(1), confirm_card=reader.confirm_card)
    assert result.found and result.identity is not None and result.identity.traits.birth_name == "ADRUN"
    assert b"SignatureValue" not in frames.out()[0]


def test_child_of_family_card_gets_his_own_ins(virtual_card: VirtualCard, insi_client) -> None:  # type: ignore[no-untyped-def]
    virtual_card.insert("vitale-famille")
    reader = VitaleReader(virtual_card.reader_name)
    reader.read()
    reader.choose(3)  # LOU, twin of rank 2, no certified NIR on the card
    client, _ = insi_client("certificat")
    result = client.search_with_vitale(reader.current(), confirm_card=reader.confirm_card)
    assert result.found and result.identity is not None
    assert result.identity.traits.first_names == "LOU"
    assert result.identity.ins.matricule == "2180563220902"  # the child's INS, not the parent's


def test_selection_older_than_20_minutes_refused(virtual_card: VirtualCard, insi_client) -> None:  # type: ignore[no-untyped-def]
    virtual_card.insert("vitale-adulte")
    clock = Clock()
    reader = VitaleReader(virtual_card.reader_name, clock=clock)
    reader.read()
    selection = reader.choose(1)
    clock.now += timedelta(minutes=20, seconds=1)
    with pytest.raises(VitaleSelectionExpired) as err:
        reader.current()
    assert err.value.code == "vitale_expired"
    assert reader.selection is None  # the choice is dropped: read the card again
    # the INSi client refuses the stale selection on its own too, before sending anything
    client, frames = insi_client("cpx", clock=clock)
    with pytest.raises(VitaleSelectionExpired):
        client.search_with_vitale(selection)
    assert frames.out() == []


def test_card_swap_forces_a_new_choice(virtual_card: VirtualCard, insi_client) -> None:  # type: ignore[no-untyped-def]
    virtual_card.insert("vitale-famille")
    reader = VitaleReader(virtual_card.reader_name)
    reader.read()
    selection = reader.choose(2)
    virtual_card.remove()
    virtual_card.insert("vitale-adulte")
    client, frames = insi_client("cpx")
    with pytest.raises(VitaleCardChanged) as err:
        client.search_with_vitale(selection, confirm_card=reader.confirm_card)
    assert err.value.code == "vitale_card_changed"
    assert "choisissez à nouveau" in err.value.message_fr
    assert frames.out() == []  # nothing sent
    assert reader.selection is None and reader.reading is None


def test_card_removed_forces_a_new_choice(virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-adulte")
    reader = VitaleReader(virtual_card.reader_name)
    reader.read()
    selection = reader.choose(1)
    virtual_card.remove()
    with pytest.raises(VitaleCardChanged):
        reader.confirm_card(selection)
    assert reader.selection is None


def test_monitor_event_drops_the_choice() -> None:
    from ps_agent.card.monitor import CardEvent, CardEventKind
    from ps_agent.identity.model import VitaleBeneficiary, VitaleCard
    from ps_agent.identity.vitale import VitaleReading

    card = VitaleCard("000000000101", "2751263220749", "74", beneficiaries=(VitaleBeneficiary("1975-12-31"),))
    reader = VitaleReader("R0")
    reader.reading = VitaleReading(card, datetime.now(UTC), "R0")
    reader.choose(1)
    reader.on_card_event(CardEvent(CardEventKind.REMOVED, "R1"))  # another reader: kept
    assert reader.selection is not None
    reader.on_card_event(CardEvent(CardEventKind.REMOVED, "R0"))
    assert reader.selection is None


class _Direct:
    """In-process connection to the emulator (parser cases the profiles do not cover; the PC/SC route is
    tested above)."""

    def __init__(self, applet: object) -> None:
        from ps_agent.card.pcsc import chained_exchange

        self.atr = applet.atr  # type: ignore[attr-defined]
        self._applet = applet
        self._chain = chained_exchange

    def _transmit(self, apdu: bytes) -> tuple[bytes, int]:
        r = self._applet.process(apdu)  # type: ignore[attr-defined]
        return r[:-2], int.from_bytes(r[-2:], "big")

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        return self._chain(self._transmit, apdu)


def test_expired_card_refused_with_its_date() -> None:
    from dataclasses import replace

    from ps_agent.identity.vitale import VitaleSession
    from sandbox.card.vitale import VitaleApplet, vitale_profile

    data = replace(vitale_profile("vitale-zoe"), valid_to="20240630")
    with pytest.raises(VitaleCardInvalid) as err:
        VitaleSession(_Direct(VitaleApplet(data))).read(now=datetime(2025, 1, 1, tzinfo=UTC))
    assert err.value.code == "vitale_card_expired" and "30/06/2024" in err.value.message_fr
    card, _, valid_to = VitaleSession(_Direct(VitaleApplet(data))).read(now=datetime(2024, 6, 30, tzinfo=UTC))
    assert valid_to == "2024-06-30" and card.serial == "000000000101"


def test_vitale1_atr_is_sesam_vitale_only() -> None:
    from ps_agent.identity.vitale import VitaleSession
    from sandbox.card.vitale import VitaleApplet, vitale_profile

    applet = VitaleApplet(vitale_profile("vitale-zoe"))
    applet.atr = bytes.fromhex("3F6525000209 6A9000".replace(" ", ""))
    with pytest.raises(VitaleUnsupported):
        VitaleSession(_Direct(applet))


def test_long_family_file_read_in_chunks() -> None:
    """More than 256 bytes in the identity file: READ BINARY continues at the offset on the current EF."""
    from dataclasses import replace

    from ps_agent.identity.vitale import VitaleSession
    from sandbox.card.vitale import VitaleApplet, VitaleBeneficiaryData, vitale_profile

    base = vitale_profile("vitale-famille")
    kids = tuple(
        VitaleBeneficiaryData("GEMEAU", f"ENFANT{'ABCDEFGHIJ'[i]}", f"20{10 + i}0000", rank=1)
        for i in range(8)
    )
    data = replace(base, beneficiaries=base.beneficiaries + kids)
    applet = VitaleApplet(data)
    card, _, _ = VitaleSession(_Direct(applet)).read(now=datetime.now(UTC))
    assert len(card.beneficiaries) == 12
    assert card.beneficiaries[-1].birth_date == "2017-00-00"  # lunar, kept


def test_sandbox_card_command_inserts_a_vitale_profile(virtual_card: VirtualCard) -> None:
    """`python -m sandbox.card insert --profile vitale-famille` (the fixture only holds the vpcd lock)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}

    def card(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sandbox.card", *argv], env=env, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    inserted = card("insert", "--profile", "vitale-famille")
    try:
        assert inserted.returncode == 0, inserted.stderr
        assert "vitale-famille" in inserted.stdout
        reading = read_vitale(virtual_card.reader_name)
        assert [b.first_name for b in reading.beneficiaries] == ["CLAIRE", "LEA", "LOU", "NOE"]
    finally:
        removed = card("remove")
    assert removed.returncode == 0
    unknown = card("insert", "--profile", "vitale-inconnue")
    assert unknown.returncode == 2 and "Profil inconnu" in unknown.stderr
