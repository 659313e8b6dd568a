"""``AgentController``: the window's single link to the core. It owns the long-lived ``Services``, the
current ``Session`` and its ``Worker``, follows the card (``CardMonitor`` events and ``services.events``
through the ``EventBridge``) and publishes a ``CardState`` for the tray and the header.

One PIN per card session: the PIN is asked only in state PIN_NEEDED, i.e. when a card is in the reader
and no session is open on it; the session closes (and the state says so) when the card leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from ps_agent.auth.errors import PinBlocked, SessionClosed
from ps_agent.errors import PsAgentError
from ui.bridge import EventBridge
from ui.labels import (
    AUTH_MODE_FR,
    NON_PS_ROLE_FR,
    PROFESSION_FR,
    SPECIALTY_FR,
    CardState,
)
from ui.worker import Op, OpHandle, Worker

log = logging.getLogger(__name__)

EXPIRED_CODES = frozenset({"cert_expired"})


def profession_of(identity: Any) -> str:
    """« Médecin généraliste », « Pharmacien d'officine », « Secrétariat médical »…"""
    spec = SPECIALTY_FR.get(getattr(identity, "specialty_code", "") or "")
    if spec:
        return spec
    code = getattr(identity, "profession_code", "") or ""
    if code:
        return PROFESSION_FR.get(code) or getattr(identity, "profession_label", "") or code
    role = getattr(identity, "non_ps_role", "") or ""
    return NON_PS_ROLE_FR.get(role, role)


def who_acts(identity: Any) -> str:
    """« Dr Jean MEDECIN-GENERALISTE (Médecin généraliste) » (tray, header)."""
    title = "Dr " if getattr(identity, "profession_code", "") in {"10", "40"} else ""
    return f"{title}{identity.display_name} ({profession_of(identity)})"


class AgentController(QObject):
    state_changed = Signal(str)  # CardState value
    session_opened = Signal(object)  # Session
    session_ended = Signal(str)  # French message: why the session closed
    login_failed = Signal(object)  # PsAgentError (WrongPin, PinFinalTryError, PinBlocked, CertificateError…)

    def __init__(
        self,
        services: Any,
        *,
        card_monitor: Any = None,
        card_opener: Callable[..., Any] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.services = services
        self.bridge = EventBridge(self)
        self.bridge.attach(services)
        self.services_worker = Worker("services", self)  # journal, queue: never on the GUI thread
        self.session: Any = None
        self.worker: Worker | None = None  # the session's worker
        self.state = CardState.STARTING
        self.reader: str | None = None
        self.last_login_error: PsAgentError | None = None
        self._monitor = card_monitor
        self._card_opener = card_opener or services.open_card_session
        self.idle_timeout_s: float | None = None  # settings' session.idle_timeout_minutes (None: the core's)
        self.bridge.session_closed.connect(self._on_session_closed, Qt.ConnectionType.QueuedConnection)
        self.bridge.card_event.connect(self._on_card_event, Qt.ConnectionType.QueuedConnection)
        if card_monitor is not None:
            self.bridge.attach_monitor(card_monitor)

    # ------------------------------------------------------------------ card
    def start_card_watch(self) -> None:
        """Start the card monitor and learn whether a reader exists (off the GUI thread)."""
        if self._monitor is None:
            return
        from ps_agent.card.pcsc import list_readers

        def probe(_ctx: Any) -> list[str] | None:
            try:
                return list_readers()
            except PsAgentError:
                return None

        def seen(readers: list[str] | None) -> None:
            if self.state is not CardState.STARTING:
                return
            if readers is None:
                self._set_state(CardState.NO_SERVICE)
            else:
                self._set_state(CardState.NO_CARD if readers else CardState.NO_READER)

        self._monitor.start()
        self.services_worker.run(Op(self, probe, label="Recherche du lecteur").success(seen))

    def _on_card_event(self, event: Any) -> None:
        kind = str(event.kind)
        if kind == "inserted":
            if self.session is None:
                self.reader = event.reader
                self._set_state(CardState.PIN_NEEDED)
        elif kind == "unknown_card":
            if self.session is None:
                self._set_state(CardState.UNKNOWN_CARD)
        elif kind == "removed":
            if self.session is None or event.reader == self.reader:
                self._set_state(CardState.NO_CARD)
        elif kind == "reader_gone":
            self._set_state(CardState.NO_READER)
        elif kind == "reader_added":
            if self.state in (CardState.NO_READER, CardState.STARTING, CardState.NO_SERVICE):
                self._set_state(CardState.NO_CARD)
        elif kind == "service_gone":
            self._set_state(CardState.NO_SERVICE)

    def _set_state(self, state: CardState) -> None:
        if state is not self.state:
            self.state = state
            self.state_changed.emit(state.value)

    # ------------------------------------------------------------------ login
    def login(self, pin: str, *, confirm_final_try: bool = False) -> OpHandle:
        """Open the card session with ``pin`` in the background; ``session_opened`` or ``login_failed``."""
        previous = self.state
        self._set_state(CardState.LOGGING_IN)
        reader, idle_s = self.reader, self.idle_timeout_s

        def open_(_ctx: Any) -> Any:
            kw = {} if idle_s is None else {"idle_timeout_s": idle_s}  # the card session's own idle rule
            return self._card_opener(reader, pin, confirm_final_try=confirm_final_try, **kw)

        def failed(exc: BaseException) -> None:
            if not isinstance(exc, PsAgentError):
                log.error("card login failed", exc_info=exc)
                exc = PsAgentError(f"Erreur inattendue à l'ouverture de la carte : {exc}", code="internal")
            self.last_login_error = exc
            if isinstance(exc, PinBlocked):
                self._set_state(CardState.BLOCKED)
            elif exc.code in EXPIRED_CODES:
                self._set_state(CardState.EXPIRED)
            elif exc.code in {"no_card", "NoCard"}:
                self._set_state(CardState.NO_CARD)
            else:
                self._set_state(previous if previous is not CardState.LOGGING_IN else CardState.PIN_NEEDED)
            self.login_failed.emit(exc)

        op = Op(self, open_, label="Ouverture de la session carte").success(self.use_session).failure(failed)
        return self.services_worker.run(op)

    def use_session(self, session: Any) -> None:
        """Adopt an open ``Session`` (card login, or an establishment/software session)."""
        if self.session is not None and self.session is not session:
            self.end_session("closed")
        self.session = session
        self.worker = Worker("session", self)
        self.reader = getattr(session.credentials, "reader", self.reader)
        mode = getattr(session.mode, "value", str(session.mode))
        self._set_state(CardState.READY if mode == "DIRECTE" else CardState.ESTABLISHMENT)
        self.session_opened.emit(session)

    def _on_session_closed(self, reason: str) -> None:
        if self.session is None:
            return
        self.end_session(reason)

    def end_session(self, reason: str = "closed") -> None:
        """Forget the session (its worker cancels what runs), close it off the GUI thread, say why."""
        session, worker = self.session, self.worker
        self.session, self.worker = None, None
        if worker is not None:
            worker.close()
        if session is not None:
            self.services_worker.run(Op(None, lambda _ctx: session.close(), label="Fermeture de la session"))
        if reason in ("removed",):
            self._set_state(CardState.NO_CARD)
        elif reason == "reader_gone":
            self._set_state(CardState.NO_READER)
        elif self._monitor is not None and reason in ("idle", "changed"):
            self._set_state(CardState.PIN_NEEDED)
        else:
            self._set_state(CardState.NO_CARD if self._monitor is not None else CardState.STARTING)
        self.session_ended.emit(SessionClosed(reason).message_fr)

    # ------------------------------------------------------------------ who acts
    def header_parts(self) -> tuple[str, str, str, str]:
        """(name, profession, structure, authentication mode) of who acts, or empty strings."""
        if self.session is None:
            return "", "", "", ""
        ident = self.session.identity
        structure = ident.activity.structure_name if ident.activity else ""
        mode = getattr(self.session.mode, "value", str(self.session.mode))
        title = "Dr " if ident.profession_code in {"10", "40"} else ""
        return f"{title}{ident.display_name}", profession_of(ident), structure, AUTH_MODE_FR.get(mode, mode)

    def close(self) -> None:
        """At exit: stop listening, cancel what runs, close the session (waits for it), stop the monitor."""
        self.bridge.detach()
        session, self.session = self.session, None
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        if session is not None:
            self.services_worker.run(Op(None, lambda _ctx: session.close(), label="Fermeture de la session"))
        self.services_worker.close(wait=True)
        if self._monitor is not None:
            self._monitor.stop()
