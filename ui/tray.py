"""The tray agent (Vorta's shape): an icon whose colour follows the card, a menu rebuilt from the current
state each time it opens (card state, who acts, queue state, emergency access), notifications for
deposits registered or refused."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Mapping
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


def state_icon(colour: str, waiting: int = 0) -> QIcon:
    """The card in the card state's colour; with ``waiting`` deposits, a badge with their count (8.8)."""
    pix = QPixmap(32, 32)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(colour))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(2, 6, 28, 20, 4, 4)
    p.setBrush(QColor("#f5d76e"))
    p.drawRect(7, 12, 8, 7)
    if waiting:
        p.setBrush(QColor("#1565c0"))
        p.drawEllipse(16, 0, 16, 16)
        p.setPen(QColor("white"))
        font = p.font()
        font.setPixelSize(11)
        font.setBold(True)
        p.setFont(font)
        p.drawText(16, 0, 16, 16, Qt.AlignmentFlag.AlignCenter, str(waiting) if waiting < 10 else "9+")
    p.end()
    return QIcon(pix)


def now_utc() -> dt.datetime:
    """The clock of the expiry check (one seam for the tests)."""
    return dt.datetime.now(dt.UTC)


def card_expiry(session: Any) -> dt.datetime | None:
    """End of validity of the authentication certificate of the card (or establishment credentials) the
    session acts with, if known. Asking for the signer counts as card activity: call it at login only."""
    creds = getattr(session, "credentials", None)
    for name in ("auth_signer", "vihf_signer"):
        get = getattr(creds, name, None)
        if not callable(get):
            continue
        try:
            when = getattr(getattr(get(), "certificate", None), "not_valid_after_utc", None)
        except Exception:  # a closed session: nothing to announce
            return None
        if isinstance(when, dt.datetime):
            return when
    return None


def expiry_warning(not_after: dt.datetime | None, now: dt.datetime) -> str:
    """1.3: the French warning when the card expires within the largest of ``CPS_EXPIRY_WARN_DAYS``, else
    "" (an already expired card never opens a session: the core refuses it before the PIN)."""
    if not_after is None or not_after <= now:
        return ""
    days = (not_after.date() - now.date()).days
    if days > max(L.CPS_EXPIRY_WARN_DAYS):
        return ""
    date = not_after.astimezone(dt.UTC).strftime("%d/%m/%Y")
    return (
        L.CPS_EXPIRY_TODAY.format(date=date) if days <= 0 else L.CPS_EXPIRY_SOON.format(date=date, days=days)
    )


def remote_session_note(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """1.7: « Bureau à distance détecté (…) : … » when the agent runs in a remote session, else "". From
    the environment only (the Diagnostic page also asks loginctl, a subprocess kept off the GUI thread)."""
    from ps_agent.remote_session import detect_remote_session

    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    what = detect_remote_session(environ, platform)
    return L.REMOTE_SESSION_NOTE.format(what=what) if what else ""


def card_line(controller: Any) -> str:
    """« Dr … (Médecin généraliste) » when ready, else the card state in French."""
    if controller.state in (CardState.READY, CardState.ESTABLISHMENT) and controller.session is not None:
        return who_acts(controller.session.identity)
    return L.CARD_STATE_FR[controller.state]


def waiting_count(entries: list[Any]) -> int:
    states = [str(getattr(e.state, "value", e.state)) for e in entries]
    return sum(s in ("pending", "sending", "waiting") for s in states)


def queue_line(entries: list[Any]) -> str:
    states = [str(getattr(e.state, "value", e.state)) for e in entries]
    waiting = waiting_count(entries)
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
        self.notes: list[tuple[str, str]] = []  # every notification shown (title, text), newest last
        self.remote_note = remote_session_note()
        self.expiry_note = ""  # 1.3, computed once per session opening
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild)
        self.setContextMenu(self.menu)
        self.activated.connect(self._activated)
        self.controller.state_changed.connect(lambda _s: self.refresh())
        self.controller.session_opened.connect(self.check_expiry)
        self.controller.session_ended.connect(self._session_ended)
        self.controller.bridge.queue_changed.connect(self._queue_changed)
        window.queue_listed.connect(self._queue_listed)  # the queue page is built on first use
        window.patient_opened.connect(lambda _p: self.refresh())
        window.message.connect(lambda _m: self.refresh())
        self.rebuild()
        self.refresh()

    def tooltip_text(self) -> str:
        lines = ["ps-agent", card_line(self.controller), queue_line(self.queue)]
        if self.expiry_note and self.controller.session is not None:
            lines.append(self.expiry_note)
        if self.remote_note:
            lines.append(self.remote_note)
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
        self.setIcon(state_icon(colour, waiting_count(self.queue)))
        self.setToolTip(self.tooltip_text())

    def notify(self, title: str, text: str, icon: QSystemTrayIcon.MessageIcon) -> None:
        self.notes.append((title, text))
        self.showMessage(title, text, icon)

    def check_expiry(self, session: Any) -> str:
        """1.3: at each session opening, a notification when the card expires within 30 days."""
        self.expiry_note = text = expiry_warning(card_expiry(session), now_utc())
        if text:
            self.notify("Carte CPS bientôt expirée", text, QSystemTrayIcon.MessageIcon.Warning)
        self.refresh()
        return text

    def _session_ended(self, _message: str) -> None:
        self.expiry_note = ""
        self.refresh()

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
            self.notify(
                "Dépôt enregistré",
                f"{title} : enregistré dans le DMP.",
                QSystemTrayIcon.MessageIcon.Information,
            )
        elif state == "refused":
            self.notify("Dépôt refusé", f"{title} : {entry.reason_fr}", QSystemTrayIcon.MessageIcon.Warning)
