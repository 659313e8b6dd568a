"""The tray agent (Vorta's shape): an icon whose colour follows the card, a menu rebuilt from the current
state each time it opens (card state, who acts, queue state, emergency access), notifications for
deposits registered or refused."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from ui import labels as L
from ui.controller import who_acts
from ui.labels import CardState

STATE_COLOURS = {
    CardState.READY: "#1e7b34",
    CardState.ESTABLISHMENT: "#1e7b34",
    CardState.PIN_NEEDED: "#e08a00",
    CardState.LOGGING_IN: "#e08a00",
    CardState.BLOCKED: "#c00000",
    CardState.EXPIRED: "#c00000",
}


def state_icon(colour: str) -> QIcon:
    pix = QPixmap(32, 32)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(colour))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(2, 6, 28, 20, 4, 4)
    p.setBrush(QColor("#f5d76e"))
    p.drawRect(7, 12, 8, 7)
    p.end()
    return QIcon(pix)


def card_line(controller: Any) -> str:
    """« Dr … (Médecin généraliste) » when ready, else the card state in French."""
    if controller.state in (CardState.READY, CardState.ESTABLISHMENT) and controller.session is not None:
        return who_acts(controller.session.identity)
    return L.CARD_STATE_FR[controller.state]


def queue_line(entries: list[Any]) -> str:
    states = [str(getattr(e.state, "value", e.state)) for e in entries]
    waiting = sum(s in ("pending", "sending", "waiting") for s in states)
    refused = states.count("refused")
    if not waiting and not refused:
        return "File d'envoi vide"
    return f"File d'envoi : {waiting} en attente, {refused} refusé(s)"


class Tray(QSystemTrayIcon):
    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.queue: list[Any] = []
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild)
        self.setContextMenu(self.menu)
        self.activated.connect(self._activated)
        self.controller.state_changed.connect(lambda _s: self.refresh())
        self.controller.bridge.queue_changed.connect(self._queue_changed)
        window.queue_page.model.modelReset.connect(self._queue_listed)
        window.patient_opened.connect(lambda _p: self.refresh())
        window.message.connect(lambda _m: self.refresh())
        self.rebuild()
        self.refresh()

    def tooltip_text(self) -> str:
        lines = ["ps-agent", card_line(self.controller), queue_line(self.queue)]
        p = self.window.patient
        if p is not None and p.in_emergency:
            lines.append(L.emergency_banner(*p.access))  # 4.1: also in the tray tooltip
        return "\n".join(lines)

    def refresh(self) -> None:
        p = self.window.patient
        colour = (
            "#c00000"
            if p is not None and p.in_emergency
            else STATE_COLOURS.get(self.controller.state, "#777777")
        )
        self.setIcon(state_icon(colour))
        self.setToolTip(self.tooltip_text())

    def rebuild(self) -> None:
        m = self.menu
        m.clear()
        head = QAction(card_line(self.controller), m)
        head.setEnabled(False)
        m.addAction(head)
        q = QAction(queue_line(self.queue), m)
        q.setEnabled(False)
        m.addAction(q)
        m.addSeparator()
        if self.controller.state is CardState.PIN_NEEDED:
            m.addAction("Saisir le code porteur…", self._pin)
        m.addAction("Ouvrir la fenêtre", self.show_window)
        m.addAction("File d'envoi", self._queue_page)
        m.addSeparator()
        m.addAction("Quitter", self._quit)

    def show_window(self) -> None:
        w = self.window
        w.show()
        w.setWindowState((w.windowState() & ~Qt.WindowState.WindowMinimized) | Qt.WindowState.WindowActive)
        w.raise_()
        w.activateWindow()

    def _pin(self) -> None:
        self.show_window()
        self.window.ask_pin()

    def _queue_page(self) -> None:
        self.show_window()
        self.window.tabs.setCurrentWidget(self.window.queue_page)

    def _quit(self) -> None:
        from PySide6.QtWidgets import QApplication

        QApplication.quit()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.show_window()

    def _queue_listed(self) -> None:
        self.queue = list(self.window.queue_page.model.items)
        self.refresh()

    def _queue_changed(self, entry: Any) -> None:
        state = str(getattr(entry.state, "value", entry.state))
        title = ", ".join(entry.titles) or "Document"
        if state == "registered":
            self.showMessage(
                "Dépôt enregistré",
                f"{title} : enregistré dans le DMP.",
                QSystemTrayIcon.MessageIcon.Information,
            )
        elif state == "refused":
            self.showMessage(
                "Dépôt refusé", f"{title} : {entry.reason_fr}", QSystemTrayIcon.MessageIcon.Warning
            )
