"""Core callbacks → Qt signals. ``services.events`` and the card monitor call back on the thread that
caused the event (card watcher, worker, queue thread); this bridge re-emits them as signals of a QObject
living in the GUI thread, so receivers get queued deliveries on the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from ps_agent.events import CARD_CHANGED, JOURNAL_APPENDED, QUEUE_CHANGED, SESSION_CLOSED


class EventBridge(QObject):
    session_closed = Signal(str)  # reason: removed / changed / idle / reader_gone / closed
    card_changed = Signal(str)
    queue_changed = Signal(object)  # QueuedDeposit
    journal_appended = Signal(object)  # AuditRecord
    card_event = Signal(object)  # ps_agent.card.monitor.CardEvent

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._disconnects: list[Callable[[], None]] = []

    def attach(self, services: Any) -> None:
        """Listen to ``services.events`` (until ``detach``)."""
        ev = services.events
        self._disconnects += [
            ev.connect(SESSION_CLOSED, lambda reason: self.session_closed.emit(str(reason))),
            ev.connect(CARD_CHANGED, lambda reason: self.card_changed.emit(str(reason))),
            ev.connect(QUEUE_CHANGED, lambda entry: self.queue_changed.emit(entry)),
            ev.connect(JOURNAL_APPENDED, lambda record: self.journal_appended.emit(record)),
        ]

    def attach_monitor(self, monitor: Any) -> None:
        """Listen to a ``ps_agent.card.monitor.CardMonitor`` (``subscribe`` returns an unsubscribe)."""
        self._disconnects.append(monitor.subscribe(lambda event: self.card_event.emit(event)))

    def detach(self) -> None:
        for d in self._disconnects:
            d()
        self._disconnects.clear()


class ApiBridge(QObject):
    """The local API's events (``ps_agent.api.backend.ApiBackend.events``: the practice software asks to
    open a patient or to confirm an emergency access) re-emitted as signals on the GUI thread."""

    open_patient_requested = Signal(object)  # ps_agent.api.backend.OpenPatientRequest
    emergency_confirmation_requested = Signal(object)  # ps_agent.api.backend.EmergencyRequest

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._disconnects: list[Callable[[], None]] = []

    def attach(self, backend: Any) -> None:
        from ps_agent.api.backend import EMERGENCY_CONFIRMATION_REQUESTED, OPEN_PATIENT_REQUESTED

        ev = backend.events
        self._disconnects += [
            ev.connect(OPEN_PATIENT_REQUESTED, lambda req: self.open_patient_requested.emit(req)),
            ev.connect(
                EMERGENCY_CONFIRMATION_REQUESTED, lambda req: self.emergency_confirmation_requested.emit(req)
            ),
        ]

    def detach(self) -> None:
        for d in self._disconnects:
            d()
        self._disconnects.clear()
