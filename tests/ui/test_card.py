"""The window with the emulated CPS card through pcscd (vpcd): PIN needed when the card goes in, wrong
PIN then right PIN (tries left, final-try confirmation), one PIN per card session, and the session closed
visibly within a second of the card leaving."""

from __future__ import annotations

import time
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit

from ps_agent.auth.errors import SessionClosed
from ui.labels import CARD_STATE_FR, PIN_FINAL_TRY_CONFIRM, CardState

pytestmark = pytest.mark.pcsc

SESSION_CLOSE_S = 1.0  # the promise of issue 11: closed within a second of the card leaving


def card_window(window_for: Any, qtbot: Any, virtual_card: Any) -> Any:
    from ps_agent.card.monitor import CardMonitor

    w = window_for(None, monitor=CardMonitor(poll_s=0.2))
    w.controller.start_card_watch()
    qtbot.waitUntil(lambda: w.controller.state is CardState.NO_CARD, timeout=10_000)
    assert w.header.card.text() == CARD_STATE_FR[CardState.NO_CARD]
    virtual_card.insert("gp")
    qtbot.waitUntil(lambda: w.controller.state is CardState.PIN_NEEDED, timeout=10_000)
    assert w.header.pin_btn.isVisible()
    return w


def type_pin(qtbot: Any, dialog: Any, pin: str) -> None:
    dialog.pin.setFocus()
    qtbot.keyClicks(dialog.pin, pin)
    qtbot.keyClick(dialog.pin, Qt.Key.Key_Return)


def test_wrong_pin_then_right_pin_then_removal_closes_the_session(
    window_for: Any, qtbot: Any, virtual_card: Any
) -> None:
    w = card_window(window_for, qtbot, virtual_card)
    dialog = w.ask_pin()
    assert dialog.pin.echoMode() == QLineEdit.EchoMode.Password
    qtbot.keyClicks(dialog.pin, "12ab3")
    assert dialog.pin.text() == "123"  # digits only
    assert not dialog.ok.isEnabled()  # 4 digits needed
    dialog.pin.clear()
    with qtbot.waitSignal(w.controller.login_failed, timeout=20_000):
        type_pin(qtbot, dialog, "0000")
    assert dialog.message.text() == "Code porteur incorrect. Il reste 2 essais avant le blocage de la carte."
    assert dialog.pin.text() == ""  # never kept in the field
    with qtbot.waitSignal(w.controller.session_opened, timeout=20_000):
        type_pin(qtbot, dialog, "1234")
    assert not dialog.isVisible()
    assert w.controller.state is CardState.READY
    assert w.header.name.text() == "<b>Dr JEAN MEDECIN-GENERALISTE</b>"
    assert w.header.mode.text() == "Carte CPS" and not w.header.pin_btn.isVisible()
    logins = [r.event.outcome for r in w.controller.services.journal.records(action="card.login")]
    assert logins == ["refused", "success"]
    virtual_card.remove()
    seen = time.monotonic()
    qtbot.waitUntil(lambda: w.controller.session is None, timeout=int(SESSION_CLOSE_S * 1000))
    assert time.monotonic() - seen <= SESSION_CLOSE_S
    assert w.session_note.isVisible() and w.session_note.text() == SessionClosed("removed").message_fr
    assert w.controller.state is CardState.NO_CARD
    assert w.header.name.text() == "" and w.header.card.text() == CARD_STATE_FR[CardState.NO_CARD]


def test_final_try_must_be_confirmed(window_for: Any, qtbot: Any, virtual_card: Any) -> None:
    w = card_window(window_for, qtbot, virtual_card)
    dialog = w.ask_pin()
    for _ in range(2):
        with qtbot.waitSignal(w.controller.login_failed, timeout=20_000):
            type_pin(qtbot, dialog, "0000")
    assert "il ne reste qu'un seul essai" in dialog.message.text()
    assert dialog.final_try.isVisible() and dialog.final_try.text() == PIN_FINAL_TRY_CONFIRM
    qtbot.keyClicks(dialog.pin, "1234")
    assert not dialog.ok.isEnabled()  # not without the explicit confirmation
    dialog.final_try.setChecked(True)
    assert dialog.ok.isEnabled()
    with qtbot.waitSignal(w.controller.session_opened, timeout=20_000):
        qtbot.keyClick(dialog.pin, Qt.Key.Key_Return)
    assert w.controller.state is CardState.READY
    assert virtual_card.card is not None


@pytest.mark.parametrize(
    ("profile", "state", "message_part"),
    [
        ("blocked", CardState.BLOCKED, "code de déblocage (PUK, 8 chiffres)"),
        ("expired", CardState.EXPIRED, "expir"),
    ],
)
def test_blocked_and_expired_cards_are_explained(
    window_for: Any, qtbot: Any, virtual_card: Any, profile: str, state: CardState, message_part: str
) -> None:
    from ps_agent.card.monitor import CardMonitor
    from ui.tray import card_line

    w = window_for(None, monitor=CardMonitor(poll_s=0.2))
    w.controller.start_card_watch()
    qtbot.waitUntil(lambda: w.controller.state is CardState.NO_CARD, timeout=10_000)
    virtual_card.insert(profile)
    qtbot.waitUntil(lambda: w.controller.state is CardState.PIN_NEEDED, timeout=10_000)
    dialog = w.ask_pin()
    with qtbot.waitSignal(w.controller.login_failed, timeout=20_000):
        type_pin(qtbot, dialog, "1234")
    assert w.controller.state is state
    assert message_part in dialog.message.text()
    assert card_line(w.controller) == CARD_STATE_FR[state]
    if state is CardState.BLOCKED:
        assert not dialog.pin.isEnabled() and not dialog.ok.isEnabled()
