"""Close the session after the configured idle time (issue 11 §10, settings ``session.idle_timeout_minutes``).

What counts as activity: the user's input anywhere in the application (keys, clicks, wheel) and the work
the session does (a card or DMP operation keeps it alive through the core's own timer). The window's rule
is the user's: with no input for the idle time, the session closes visibly (« La session a été fermée
après une période d'inactivité… », the core's ``SessionClosed("idle")`` message) and the PIN is asked again.
The user's input also counts for the core's card session (``credentials.touch()``, at most once per
:data:`TOUCH_EVERY_S`), so a professional reading a document does not lose the card session underneath.

Time comes from ``clock`` (monotonic seconds), injected by tests; ``check()`` is what the timer calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from ps_agent.settings import DEFAULT_IDLE_TIMEOUT_MINUTES

CHECK_EVERY_MS = 5_000  # how often the idle time is compared (the close happens within 5 s of the limit)
TOUCH_EVERY_S = 30.0  # the core's session is told of the user's activity at most this often
_INPUT = {
    QEvent.Type.KeyPress,
    QEvent.Type.MouseButtonPress,
    QEvent.Type.Wheel,
    QEvent.Type.TouchBegin,
    QEvent.Type.ShortcutOverride,
}


def _touch(touch: Callable[[], None]) -> None:
    from ps_agent.errors import PsAgentError

    try:
        touch()
    except PsAgentError:
        pass  # already closed: the core's callback ends the session in the window


class IdleGuard(QObject):
    """Watches the user's input; ``expired`` when none came for ``timeout_s`` while a card session is open."""

    expired = Signal()

    def __init__(
        self,
        controller: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self.clock = clock
        self.timeout_s = 60.0 * DEFAULT_IDLE_TIMEOUT_MINUTES
        self.last_input = clock()
        self._last_touch = self.last_input
        self.timer = QTimer(self)
        self.timer.setInterval(CHECK_EVERY_MS)
        self.timer.timeout.connect(self.check)
        self.timer.start()
        self.watching = False
        controller.session_opened.connect(self._session_opened)

    def watch(self) -> None:
        """Start the input watch: an application-wide event filter. The window calls it once painted
        (``MainWindow``, ``ui.app.FirstPaint``), not before: every event of the start-up would go through
        this filter in Python, and the first objects of Qt's private classes it sees make PySide6 create
        the Python types and enums of ~40 more Qt classes (≈ 0.1 s, once per process: better in an idle
        turn after the paint than in the first paint's way or in the middle of a consultation)."""
        if not self.watching:
            app = QApplication.instance()
            if app is not None:
                app.installEventFilter(self)
                self.watching = True

    def _session_opened(self, _session: Any) -> None:
        self.watch()  # a window never painted (tests, hidden start) watches from its first session
        self.activity()

    def set_timeout_minutes(self, minutes: int) -> None:
        self.timeout_s = 60.0 * minutes

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in _INPUT:
            self.activity()
        return False

    def activity(self) -> None:
        now = self.clock()
        self.last_input = now
        session = self.controller.session
        if session is not None and now - self._last_touch >= TOUCH_EVERY_S:
            self._last_touch = now
            touch = getattr(session.credentials, "touch", None)
            if touch is not None:  # off the GUI thread: an already expired card session closes its reader
                threading.Thread(target=_touch, args=(touch,), name="idle-touch", daemon=True).start()

    def idle_for(self) -> float:
        return self.clock() - self.last_input

    def check(self) -> bool:
        """Close the session when the idle time is reached; True when it did."""
        session = self.controller.session
        if session is None or self.idle_for() < self.timeout_s:
            return False
        if getattr(session.mode, "value", session.mode) != "DIRECTE":
            return False  # [I] an establishment (AIR) session: no card to log in again, the window keeps it
        self.controller.end_session("idle")
        self.expired.emit()
        return True
