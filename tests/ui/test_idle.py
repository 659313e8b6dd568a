"""The session closes after the configured idle time (settings ``session.idle_timeout_minutes``): the
user's input keeps it, silence closes it visibly; the card session is opened with the same rule. Time is
an injected clock, the check runs on the guard's timer."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt

from ps_agent.auth.errors import SessionClosed
from ps_agent.errors import PsAgentError
from tests.fixtures.clock import MonotonicClock


def test_no_input_for_the_idle_time_closes_the_session(window_for, qtbot) -> None:
    clock = MonotonicClock()
    w = window_for("gp", idle_clock=clock)
    guard = w.idle_guard
    assert guard.timeout_s == 30 * 60  # the settings' default
    guard.set_timeout_minutes(10)
    guard.timer.setInterval(10)  # the check runs often; the time is the clock's
    clock.advance(9 * 60)
    qtbot.keyClick(w.journal_page.text, Qt.Key.Key_A)  # the user types: activity
    assert guard.idle_for() == 0
    clock.advance(9 * 60)
    assert w.controller.session is not None and not guard.check()  # 9 min since the last input
    with qtbot.waitSignal(guard.expired, timeout=5_000):
        clock.advance(2 * 60)
    assert w.controller.session is None
    assert w.session_note.text() == SessionClosed("idle").message_fr
    assert not guard.check()  # no session: nothing more to close


def test_an_establishment_session_is_not_closed_by_the_window(window_for, services, test_pki, qtbot) -> None:
    from ps_agent.auth.model import AuthMode
    from ps_agent.auth.software import SoftwareCredentials

    from .conftest import identity_of

    clock = MonotonicClock()
    w = window_for(None, idle_clock=clock)
    org = test_pki.establishment
    creds = SoftwareCredentials(identity_of("secretary"), AuthMode.INDIRECTE_RENFORCEE, org.auth_cert,
                                org.auth_key, org.sign_cert, org.sign_key, org.chain)  # fmt: skip
    w.controller.use_session(services.open_session(creds))
    clock.advance(24 * 3600)
    assert not w.idle_guard.check() and w.controller.session is not None


def test_the_card_session_is_opened_with_the_idle_time(qtbot, services) -> None:
    from ui.controller import AgentController

    calls: list[dict[str, Any]] = []

    def opener(reader: Any, pin: str, **kw: Any) -> Any:
        calls.append(kw)
        raise PsAgentError("Code porteur erroné.", code="WRONG_PIN")

    c = AgentController(services, card_opener=opener)
    try:
        with qtbot.waitSignal(c.login_failed, timeout=10_000):
            c.login("1234")
        assert calls[-1] == {"confirm_final_try": False}  # no setting: the core's own default
        c.idle_timeout_s = 600.0
        with qtbot.waitSignal(c.login_failed, timeout=10_000):
            c.login("1234")
        assert calls[-1] == {"confirm_final_try": False, "idle_timeout_s": 600.0}
    finally:
        c.close()
