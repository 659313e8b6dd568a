"""The real window on a real X server (Xvfb, the xcb platform plugin): installer/test.sh's second stage
runs ``pytest -m x11`` with ``QT_QPA_PLATFORM=xcb`` and ``DISPLAY`` set to its Xvfb. The window is shown,
grabbed from the screen (what the X server really painted) and must not be blank, the header must say the
card state or who acts; the keyboard alone must reach the main actions with a visible focus (11.x).

Without a display these tests skip, except under CI (``CI=true``), where a missing display is a failure of
the CI machine, said loudly."""

from __future__ import annotations

import os
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtWidgets import QAbstractButton, QApplication, QTabBar, QWidget

from ui import labels as L

pytestmark = pytest.mark.x11

HEADER_BACKGROUND = QColor("#1f3b5c")  # ui.main_window.Header's style sheet


@pytest.fixture(autouse=True)
def real_display() -> None:
    under_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if not os.environ.get("DISPLAY"):
        if under_ci:
            pytest.fail("CI: no X display (DISPLAY unset): the Xvfb stage of installer/test.sh must set it")
        pytest.skip("no X display (DISPLAY unset): run under Xvfb, see installer/test.sh")
    platform = QGuiApplication.platformName()
    if platform != "xcb":
        message = f"Qt runs on the {platform!r} platform, not xcb: set QT_QPA_PLATFORM=xcb with DISPLAY"
        if under_ci:
            pytest.fail("CI: " + message)
        pytest.skip(message)


def screen_image(w: QWidget) -> QImage:
    """What the X server shows of the window (the screen's pixels, not a render of the widget tree)."""
    screen = w.screen()
    return screen.grabWindow(w.winId()).toImage()


def colours(img: QImage, step: int = 4) -> set[int]:
    return {img.pixel(x, y) for x in range(0, img.width(), step) for y in range(0, img.height(), step)}


def share_of(img: QImage, colour: QColor, rect: tuple[int, int, int, int]) -> float:
    x0, y0, w, h = rect
    hits = total = 0
    for x in range(x0, x0 + w, 2):
        for y in range(y0, y0 + h, 2):
            total += 1
            c = img.pixelColor(x, y)
            hits += (
                abs(c.red() - colour.red()) + abs(c.green() - colour.green()) + abs(c.blue() - colour.blue())
                < 24
            )
    return hits / max(total, 1)


def shown(qtbot: Any, w: QWidget) -> None:
    w.resize(1200, 800)
    w.show()
    w.raise_()
    w.activateWindow()
    qtbot.waitExposed(w, timeout=10_000)
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=10_000)


def test_the_window_is_painted_and_its_header_says_the_card_state(window_for: Any, qtbot: Any) -> None:
    w = window_for(None)  # no session: the header gives the card state
    shown(qtbot, w)
    state = w.controller.state
    assert w.header.card.isVisible() and w.header.card.text() == L.CARD_STATE_FR[state]
    img = screen_image(w)
    assert img.width() >= 1000 and img.height() >= 700
    assert len(colours(img)) > 20, "the window grabbed from the screen is blank"
    h = w.header.geometry()
    assert share_of(img, HEADER_BACKGROUND, (h.x(), h.y(), h.width(), h.height())) > 0.5
    # the card-state text is painted: the header holds more than its background colour
    card = w.header.card.geometry()
    text_area = img.copy(card.x() + h.x(), card.y() + h.y(), card.width(), card.height())
    assert len(colours(text_area, step=1)) > 3


def test_with_a_session_the_header_says_who_acts_on_screen(window_for: Any, qtbot: Any) -> None:
    w = window_for("gp")
    shown(qtbot, w)
    assert w.header.name.text() == "<b>Dr JEAN MEDECIN-GENERALISTE</b>"
    assert w.header.profession.text() == "Médecin généraliste"
    assert w.header.mode.text() == "Carte CPS"
    assert not w.header.card.isVisible() or w.header.card.text() == ""
    img = screen_image(w)
    name = w.header.name.geometry()
    h = w.header.geometry()
    painted = img.copy(h.x() + name.x(), h.y() + name.y(), name.width(), name.height())
    assert len(colours(painted, step=1)) > 3  # the name is drawn, not an empty header


def focus_chain(qtbot: Any, w: QWidget, presses: int = 60) -> list[QWidget]:
    seen: list[QWidget] = []
    for _ in range(presses):
        focused = QApplication.focusWidget()
        assert focused is not None
        qtbot.keyClick(focused, Qt.Key.Key_Tab)
        now = QApplication.focusWidget()
        if now is not None and now not in seen:
            seen.append(now)
    return seen


def test_tab_reaches_the_main_actions_with_a_visible_focus(window_for: Any, qtbot: Any) -> None:
    w = window_for("gp")
    shown(qtbot, w)
    w.open_form.ins.setFocus()
    qtbot.waitUntil(lambda: w.open_form.ins.hasFocus(), timeout=5000)
    chain = focus_chain(qtbot, w)
    assert w.open_form.open_btn in chain  # open the patient
    assert any(isinstance(x, QTabBar) for x in chain)  # the pages (Dépôt, Journal, File d'envoi…)
    # from the tab bar, the keyboard goes through the pages: Ctrl+Tab to the deposit page, then Tab reaches
    # its actions
    w.tabs.setCurrentWidget(w.deposit_page)
    w.deposit_page.choose.setFocus()
    qtbot.waitUntil(lambda: w.deposit_page.choose.hasFocus(), timeout=5000)
    chain = focus_chain(qtbot, w, 40)
    assert w.deposit_page.type in chain and w.deposit_page.title in chain
    # visible focus: reached with Tab, the button is painted differently from the same button once Tab has
    # moved on (Qt draws the focus frame only after a keyboard focus change, as a user sees it)
    btn = w.open_form.open_btn
    w.tabs.setCurrentWidget(w.patient_page)
    w.open_form.place.setFocus()
    qtbot.waitUntil(w.open_form.place.hasFocus, timeout=5000)
    for _ in range(5):
        if btn.hasFocus():
            break
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    assert btn.hasFocus(), QApplication.focusWidget()
    focused_img = btn.grab().toImage()
    qtbot.keyClick(btn, Qt.Key.Key_Tab)
    assert not btn.hasFocus()
    plain_img = btn.grab().toImage()
    assert isinstance(btn, QAbstractButton)
    assert focused_img != plain_img, "keyboard focus on « Ouvrir le dossier » is not visible"
