"""Accessibility: every control has an accessible name (or its own text), takes keyboard focus, and the
patient form is usable with the keyboard alone."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDateEdit,
    QHeaderView,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)

from sandbox import demo

from .conftest import demo_identity

CONTROLS = (QAbstractButton, QLineEdit, QComboBox, QDateEdit, QPlainTextEdit, QAbstractItemView)


def controls(root: QWidget) -> list[QWidget]:
    out = []
    for w in root.findChildren(QWidget):
        if isinstance(w, QHeaderView) or w.window() is not root:  # headers; popups of combos/completers
            continue
        if isinstance(w, CONTROLS) and not isinstance(w.parent(), QComboBox | QDateEdit):
            if w.objectName().startswith("qt_"):  # Qt's own internal widgets (scroll buttons…)
                continue
            out.append(w)
    return out


def test_every_control_is_named_and_focusable(window_for: Any, qtbot: Any) -> None:
    w = window_for("gp")
    w.open_from_practice_software(demo_identity(demo.DEMO_ADULT))
    qtbot.waitUntil(lambda: w.patient is not None, timeout=10_000)
    found = controls(w)
    assert len(found) > 30
    unnamed = [
        f"{type(c).__name__}({getattr(c, 'text', lambda: '')()!r})"
        for c in found
        if not c.accessibleName() and not (isinstance(c, QAbstractButton) and c.text())
    ]
    assert unnamed == []
    unfocusable = [
        f"{type(c).__name__}({c.accessibleName()!r})"
        for c in found
        if not (c.focusPolicy() & Qt.FocusPolicy.TabFocus)
    ]
    assert unfocusable == []


def test_the_patient_form_works_with_the_keyboard_alone(window_for: Any, qtbot: Any) -> None:
    w = window_for("gp")
    form = w.open_form
    p = demo_identity(demo.DEMO_ADULT)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    form.ins.setFocus()
    form.oid.clear()
    for widget, text in (
        (form.ins, p.ins),
        (form.oid, p.oid),
        (form.family, p.birth_family_name),
        (form.given, p.given_names),
        (form.birth, p.birth_date),
    ):
        focused = QApplication.focusWidget()
        assert widget.hasFocus(), focused.accessibleName() if focused else None
        qtbot.keyClicks(widget, text)
        qtbot.keyClick(widget, Qt.Key.Key_Tab)
    assert form.sex.hasFocus()
    qtbot.keyClick(form.sex, Qt.Key.Key_Tab)
    assert form.place.hasFocus()
    qtbot.keyClicks(form.place, p.birth_place_code)
    qtbot.keyClick(form.place, Qt.Key.Key_Tab)
    assert form.open_btn.hasFocus()
    with qtbot.waitSignal(w.patient_opened, timeout=10_000):
        qtbot.keyClick(form.open_btn, Qt.Key.Key_Space)
    assert w.patient.identity.ins == p.ins


def test_the_deposit_and_batch_pages_are_walked_with_tab(window_for: Any, qtbot: Any) -> None:
    """Tab from the page's first control reaches every visible, enabled control of the page."""
    w = window_for("gp")
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    for page in (w.deposit_page, w.batch_page):
        w.tabs.setCurrentWidget(page)
        qtbot.waitUntil(lambda p=page: p.isVisible(), timeout=2000)
        wanted = [c for c in controls(w) if page.isAncestorOf(c) and c.isVisible() and c.isEnabled()]
        assert len(wanted) >= 3, [c.accessibleName() for c in wanted]
        wanted[0].setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.waitUntil(lambda c=wanted[0]: c.hasFocus(), timeout=2000)
        reached: list[QWidget] = []
        for _ in range(4 * len(wanted) + 10):
            focused = QApplication.focusWidget()
            if focused is not None and focused not in reached:
                reached.append(focused)
            qtbot.keyClick(focused or w, Qt.Key.Key_Tab)
        missing = [f"{type(c).__name__}({c.accessibleName()!r})" for c in wanted if c not in reached]
        assert missing == [], (type(page).__name__, missing)
