"""Events as plain callbacks, for a UI layer to turn into signals (e.g. Qt ``Signal``s emitted with
``QMetaObject.invokeMethod`` / a queued connection: callbacks run on the thread that caused the event,
never on the UI thread).

Names (``EVENTS``): ``session_closed(reason)``, ``card_changed(reason)``, ``queue_changed(entry)``,
``journal_appended(record)``. A failing listener is logged and never breaks the agent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SESSION_CLOSED = "session_closed"  # (reason: str) card removed/changed, idle, closed
CARD_CHANGED = "card_changed"  # (reason: str) the card left the reader or another card replaced it
QUEUE_CHANGED = "queue_changed"  # (entry: QueuedDeposit) an entry of the deposit queue changed state
JOURNAL_APPENDED = "journal_appended"  # (record: AuditRecord) a record was committed to the journal
EVENTS = (SESSION_CLOSED, CARD_CHANGED, QUEUE_CHANGED, JOURNAL_APPENDED)


class Events:
    """A tiny thread-safe callback hub: ``connect(name, cb)`` → a disconnect function; ``emit(name, ...)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Callable[..., None]]] = {name: [] for name in EVENTS}

    def connect(self, name: str, callback: Callable[..., None]) -> Callable[[], None]:
        if name not in self._listeners:
            raise ValueError(f"unknown event {name!r} (known: {', '.join(EVENTS)})")
        with self._lock:
            self._listeners[name].append(callback)

        def disconnect() -> None:
            with self._lock:
                if callback in self._listeners[name]:
                    self._listeners[name].remove(callback)

        return disconnect

    def emit(self, name: str, *args: Any) -> None:
        with self._lock:
            listeners = list(self._listeners.get(name, ()))
        for cb in listeners:
            try:
                cb(*args)
            except Exception:
                log.exception("event listener for %s failed", name)


__all__ = ["CARD_CHANGED", "EVENTS", "JOURNAL_APPENDED", "QUEUE_CHANGED", "SESSION_CLOSED", "Events"]
