"""The shell: single instance, the worker (off the GUI thread, results by signal, cancel), the events
bridge, the header and the tray saying who acts."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from PySide6.QtCore import Qt

from ps_agent.context import Cancelled
from ps_agent.events import Events
from ui.bridge import EventBridge
from ui.labels import CARD_STATE_FR, CardState
from ui.single_instance import SingleInstance
from ui.tray import card_line
from ui.worker import Op, Worker


def test_second_launch_brings_the_first_window_forward(qtbot: Any) -> None:
    name = f"ps-agent-ui-test-{uuid.uuid4().hex[:8]}"
    first = SingleInstance(name)
    try:
        assert first.is_primary
        with qtbot.waitSignal(first.activate_requested, timeout=5000):
            second = SingleInstance(name)
            assert not second.is_primary
    finally:
        first.close()


def test_worker_runs_off_the_gui_thread_and_delivers_on_it(qtbot: Any) -> None:
    worker = Worker("test")
    gui = threading.get_ident()
    seen: dict[str, Any] = {}

    def fn(ctx: Any) -> int:
        seen["thread"] = threading.get_ident()
        ctx.report("Étape", 1, 2)
        return 42

    def ok(value: int) -> None:
        seen["value"] = value
        seen["callback_thread"] = threading.get_ident()

    with qtbot.waitSignal(worker.idle, timeout=5000):
        worker.run(Op(None, fn, label="test").success(ok))
    assert seen["value"] == 42
    assert seen["thread"] != gui and seen["callback_thread"] == gui
    worker.close()


def test_cancel_reaches_the_core_call_through_its_token(qtbot: Any) -> None:
    worker = Worker("test")
    started = threading.Event()
    failures: list[BaseException] = []

    def fn(ctx: Any) -> None:
        started.set()
        assert ctx.cancel is not None
        if ctx.cancel.wait(10):  # as the core waits on the token instead of sleeping
            ctx.check()

    handle = worker.run(Op(None, fn, label="long").failure(failures.append))
    assert started.wait(5)
    with qtbot.waitSignal(worker.idle, timeout=2000):
        handle.cancel()
    assert len(failures) == 1 and isinstance(failures[0], Cancelled)
    worker.close()


def test_events_from_another_thread_arrive_as_queued_signals(qtbot: Any) -> None:
    events = Events()

    class FakeServices:
        pass

    svc = FakeServices()
    svc.events = events  # type: ignore[attr-defined]
    bridge = EventBridge()
    bridge.attach(svc)
    got: list[tuple[str, int]] = []
    bridge.session_closed.connect(lambda r: got.append((r, threading.get_ident())))
    t = threading.Thread(target=lambda: events.emit("session_closed", "removed"))
    with qtbot.waitSignal(bridge.session_closed, timeout=2000):
        t.start()
    t.join()
    assert got == [("removed", threading.get_ident())]
    bridge.detach()


def test_header_and_tray_say_who_acts(window_for: Any) -> None:
    w = window_for("gp")
    c = w.controller
    assert c.state is CardState.READY
    assert card_line(c) == "Dr JEAN MEDECIN-GENERALISTE (Médecin généraliste)"
    assert w.header.name.text() == "<b>Dr JEAN MEDECIN-GENERALISTE</b>"
    assert w.header.profession.text() == "Médecin généraliste"
    assert w.header.structure.text() and w.header.mode.text() == "Carte CPS"
    assert "Dr JEAN MEDECIN-GENERALISTE (Médecin généraliste)" in w.tray.toolTip()
    w.tray.rebuild()
    texts = [a.text() for a in w.tray.menu.actions()]
    assert texts[0] == "Dr JEAN MEDECIN-GENERALISTE (Médecin généraliste)"
    assert texts[1] == "File d'envoi vide"


def test_without_a_session_the_tray_gives_the_card_state(window_for: Any) -> None:
    w = window_for(None)
    w.controller._set_state(CardState.NO_CARD)
    assert (
        card_line(w.controller)
        == CARD_STATE_FR[CardState.NO_CARD]
        == "Aucune carte : insérez votre carte CPS."
    )
    assert w.header.card.text() == CARD_STATE_FR[CardState.NO_CARD]
    w.open_form.ins.setText("279037505612309")
    w.open_patient(w.open_form.typed())
    assert w.patient is None and w.status_line.text() == CARD_STATE_FR[CardState.NO_CARD]


@pytest.mark.parametrize("state", list(CardState))
def test_every_card_state_has_a_french_label(state: CardState) -> None:
    assert CARD_STATE_FR[state]


def test_segur_notice_at_first_use_then_not_again_within_180_days(
    window_for: Any, qtbot: Any, services: Any, test_pki: Any
) -> None:
    import datetime as dt

    from ui.segur_notice import NOTICE_ACTION, NOTICE_TEXT, notice_due

    from .conftest import software_credentials

    w = window_for("gp", segur_notice=True)
    qtbot.waitUntil(lambda: w.notice_dialog is not None and w.notice_dialog.isVisible(), timeout=10_000)
    dialog = w.notice_dialog
    assert dialog.ok.text() == "J'ai compris"
    labels = [lbl.text() for lbl in dialog.findChildren(type(w.status_line))]
    assert NOTICE_TEXT in labels
    dialog.reject()  # Escape does not dismiss it
    assert dialog.isVisible()
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(services.journal.records(action=NOTICE_ACTION)) == 1, timeout=10_000)
    [rec] = services.journal.records(action=NOTICE_ACTION)
    assert rec.event.actor_id_nat == w.controller.session.identity.id_nat
    assert not notice_due(services.journal, rec.event.actor_id_nat)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=181)
    assert notice_due(services.journal, rec.event.actor_id_nat, now=later)  # every 180 days
    assert notice_due(services.journal, "899700000021")  # per user: another user still sees it
    # a new session of the same user: not shown again
    w.controller.use_session(services.open_session(software_credentials(test_pki, "gp")))
    qtbot.waitUntil(lambda: w.controller.services_worker.pending == 0, timeout=10_000)
    assert w.notice_dialog is dialog and not dialog.isVisible()  # no new notice for this user


def test_tray_menu_follows_the_card_state(window_for: Any) -> None:
    w = window_for(None)
    w.controller._set_state(CardState.PIN_NEEDED)
    w.tray.rebuild()
    texts = [a.text() for a in w.tray.menu.actions() if a.text()]
    assert texts[0] == "Carte insérée : saisissez votre code porteur."
    assert "Saisir le code porteur…" in texts and texts[-1] == "Quitter"
    w.controller._set_state(CardState.BLOCKED)
    w.tray.rebuild()
    texts = [a.text() for a in w.tray.menu.actions() if a.text()]
    assert texts[0] == CARD_STATE_FR[CardState.BLOCKED] and "Saisir le code porteur…" not in texts
