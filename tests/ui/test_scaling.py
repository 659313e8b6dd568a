"""Readable at 150 % scaling (issue 11 §11): on a 1366×768 screen at 150 % Qt lays the window out on a
logical screen of 910×512 device-independent pixels (Windows' 144 dpi, ``QT_SCALE_FACTOR=1.5``: every
size and font scaled alike), so the window is checked at that logical size: it fits (scrolling where
needed) and no visible button or label cuts its text, on every page a user goes through."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QScrollArea, QWidget

from sandbox import demo

from .conftest import open_qualified

SCALE = 1.5
SCREEN = QSize(int(1366 / SCALE), int(768 / SCALE))  # the logical screen at 150 %: 910×512


def _clipped(root: QWidget) -> list[str]:
    """The visible labels and buttons of ``root`` whose text does not fit their width."""
    out = []
    for w in root.findChildren(QWidget):
        if not w.isVisibleTo(root) or w.window() is not root.window():
            continue
        if isinstance(w, QLabel):
            text = w.text()
            if not text or w.wordWrap() or w.textFormat() == Qt.TextFormat.RichText or "<" in text:
                continue
            if w.pixmap() is not None and not w.pixmap().isNull():
                continue
            need = max(w.fontMetrics().horizontalAdvance(line) for line in text.split("\n"))
            have = w.contentsRect().width() - 2 * max(w.margin(), 0) - max(w.indent(), 0)
            if need > have:
                out.append(f"QLabel({text[:50]!r}) {need} > {have}")
        elif isinstance(w, QAbstractButton) and w.text() and not w.objectName().startswith("qt_"):
            if w.sizeHint().width() > w.width():
                out.append(f"{type(w).__name__}({w.text()!r}) {w.sizeHint().width()} > {w.width()}")
    return out


def _check_page(qtbot: Any, w: Any, page: QWidget | None, what: str) -> None:
    if page is not None:
        w.tabs.setCurrentWidget(page)
    qtbot.waitUntil(lambda: w.size() == SCREEN, timeout=2000)
    QApplication.processEvents()
    hint = w.minimumSizeHint()
    assert hint.width() <= SCREEN.width() and hint.height() <= SCREEN.height(), (what, hint)
    assert _clipped(w) == [], what


def test_every_page_is_readable_on_a_1366x768_screen_at_150_percent(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any
) -> None:
    w = window_for(None)  # no card
    w.resize(SCREEN)
    _check_page(qtbot, w, None, "no card")
    w = window_for("gp")
    w.resize(SCREEN)
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    qtbot.waitUntil(lambda: w.doc_model.rowCount() > 0, timeout=20_000)
    _check_page(qtbot, w, w.patient_page, "patient with rubrics")
    for page, what in (
        (w.deposit_page, "deposit"),
        (w.batch_page, "batch"),
        (w.vaccination_page, "vaccinations"),
        (w.journal_page, "journal"),
        (w.queue_page, "queue"),
        (w.setup_page, "configuration"),
        (w.diagnostic_page, "diagnostic"),
    ):
        _check_page(qtbot, w, page, what)
    scrolled = [a for a in w.findChildren(QScrollArea) if a.isVisibleTo(w)]
    assert scrolled or w.minimumSizeHint().height() <= SCREEN.height()


def test_the_clipping_check_sees_a_cut_label_and_a_cut_button(qtbot: Any) -> None:
    from PySide6.QtWidgets import QHBoxLayout, QPushButton

    root = QWidget()
    qtbot.addWidget(root)
    lay = QHBoxLayout(root)
    label, button = QLabel("Identité qualifiée par l'INSi"), QPushButton("Valider l'identité")
    label.setFixedWidth(40)
    button.setFixedWidth(40)
    lay.addWidget(label)
    lay.addWidget(button)
    root.show()
    assert len(_clipped(root)) == 2
    label.setMinimumWidth(0)
    label.setMaximumWidth(10_000)
    label.setWordWrap(True)  # wrapped: not cut
    assert [c.startswith("QPushButton") for c in _clipped(root)] == [True]
