"""``python -m ui`` / ``ps-agent-ui``: the tray agent and its window.

    python -m ui [--env sandbox|formation1|…|https://…] [--ca bundle.pem] [--home DIR] [--hidden]
                 [--identite insi|manuelle] [--insi-url URL] [--instance NAME] [--smoke]

Single instance: a second launch brings the running window forward and exits (code 0).
``--smoke`` builds everything, shows the window and quits once it has been painted (headless check);
``--print-shown`` (for ``benchmarks/bench_ui.py``) prints ``shown <time.time_ns()> <CPU seconds>`` then.

Start-up order: only what the first paint needs is imported and built before ``show()`` (the core's
heavy modules — cryptography, httpx, signxml, pyscard, QtPdf — are imported where they are first used);
the tray icon, the card watch, the services (``DeferredServices``: journal, queue) with the preload of the
first session's modules, the queue read and the pages not shown at start (``MainWindow.build_pages_later``)
start once the window is on screen.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ps-agent-ui", description="Agent DMP : fenêtre et icône de notification"
    )
    p.add_argument(
        "--env", default="sandbox", help="environnement DMP (sandbox, formation1…, ou URL https://)"
    )
    p.add_argument("--ca", default=None, help="fichier des autorités de certification (PEM)")
    p.add_argument("--home", default=None, help="dossier des données (journal, file d'envoi)")
    p.add_argument("--hidden", action="store_true", help="démarrer dans la zone de notification seulement")
    p.add_argument("--instance", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--identite",
        choices=("insi", "manuelle"),
        default="insi",
        help="ouverture des patients : INSi (traits, carte Vitale) ou saisie manuelle (identité provisoire)",
    )
    p.add_argument("--insi-url", default=os.environ.get("PS_AGENT_INSI_URL"), help="adresse du service INSi")
    p.add_argument("--smoke", action="store_true", help="démarrer puis quitter aussitôt (contrôle)")
    p.add_argument("--print-shown", action="store_true", help=argparse.SUPPRESS)
    return p


class FirstPaint(QObject):
    """Calls ``then()`` once, on the event loop right after ``widget``'s first paint (the window is on
    screen: what ``--smoke`` waits for and ``--print-shown`` marks)."""

    def __init__(self, widget: Any, then: Callable[[], Any]) -> None:
        super().__init__(widget)
        self._then: Callable[[], Any] | None = then
        self._widget = widget
        widget.installEventFilter(self)

    def eventFilter(self, obj: Any, event: Any) -> bool:
        if obj is self._widget and event.type() == QEvent.Type.Paint and self._then is not None:
            then, self._then = self._then, None
            self._widget.removeEventFilter(self)
            QTimer.singleShot(0, then)  # after this paint has been done and flushed
        return False


# What the first card session and consultation import (httpx, cryptography, the DMP and INSi clients,
# the CDA parser, QtPdf): imported on a background thread once the window is painted, so neither the start-up
# nor the first consultation waits for them (and no import competes with the GUI thread then).
PRELOAD_MODULES = (
    "ps_agent.auth.session",
    "ps_agent.session",
    "ps_agent.identities",
    "cda.parser",
    "PySide6.QtPdf",  # the viewer's first PDF then only creates its objects on the GUI thread
    "PySide6.QtPdfWidgets",
)


def preload_core(first: Callable[[], Any] | None = None) -> threading.Thread:
    """On a daemon thread: ``first()`` (``main``: build the services), then import ``PRELOAD_MODULES``.
    A failure is left to the first real use to report, in French, where it matters."""

    def run() -> None:
        if first is not None:
            try:
                first()
            except Exception:
                log.debug("préparation en arrière-plan impossible", exc_info=True)
        for name in PRELOAD_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # the real use reports it, in French, where it matters
                log.debug("préchargement de %s impossible", name, exc_info=True)

    thread = threading.Thread(target=run, name="ps-agent-preload", daemon=True)
    thread.start()
    return thread


class DeferredServices:
    """``ps_agent.services.Services`` built on first use, for ``main``: the window is painted before the
    journal and the queue are opened (``ps_agent.services`` with the audit journal, the queue and the
    access rules, and their SQLite files: ~0.1 s). ``main`` builds it right after the first paint; a use
    before that (any thread) builds it then. ``events`` exists from the start (the window's event bridge
    listens to it) and is the one the services get."""

    def __init__(self, config: Any) -> None:
        from ps_agent.events import Events

        self.config = config
        self.events = Events()
        self._real: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The ``Services`` (built now if not yet)."""
        with self._lock:
            if self._real is None:
                from ps_agent.services import Services

                self._real = Services(self.config, events=self.events)
            return self._real

    def open_card_session(self, *args: Any, **kw: Any) -> Any:  # the controller keeps this bound method
        return self.get().open_card_session(*args, **kw)

    def close(self) -> None:
        with self._lock:
            real = self._real
        if real is not None:
            real.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # own state not set yet (never the services' private parts)
            raise AttributeError(name)
        return getattr(self.get(), name)


def make_window(services: Any, *, card_monitor: Any = None, api_backend: Any = None, **kw: Any) -> Any:
    """The controller + main window + tray over ``services`` (used by ``main`` and the tests). With
    ``api_backend`` (``ps_agent.api.backend.ApiBackend``) the window answers the local API's requests:
    open a patient (through the identity source), confirm an emergency access (the dialog)."""
    from ui.controller import AgentController
    from ui.main_window import MainWindow
    from ui.tray import Tray

    controller = AgentController(services, card_monitor=card_monitor)
    window = MainWindow(controller, **kw)
    window.tray = Tray(window)  # type: ignore[attr-defined]
    if api_backend is not None:
        window.listen_to_api(api_backend)
    return window


def insi_settings(insi_url: str | None) -> Any:
    """The INSi environment and address from the installed settings (else the DMP environment's), the
    billing number of the PS assertion (card mode) from the environment, as for ``ps-agent patient``."""
    from ps_agent.errors import PsAgentError
    from ps_agent.identities import InsiSettings
    from ps_agent.settings import load_installed_settings

    try:
        installed = load_installed_settings()
    except PsAgentError:  # a bad settings file is reported by `ps-agent doctor`; INSi defaults here
        log.warning("paramètres installés illisibles : INSi par défaut")
        installed = None
    env = (installed.insi_environment if installed else "") or None
    url = insi_url or (installed.insi_url if installed else "") or None
    return InsiSettings(environment=env, url=url, billing_id=os.environ.get("PS_AGENT_BILLING_ID", ""))


def identity_source(args: argparse.Namespace) -> Any:
    """The window's identity source: ``IdentityDesk`` (INSi by traits and the Vitale card; the INSi
    environment and address from the installed settings, else the DMP environment's), or manual entry.
    The INSi client (httpx, the signed assertions) is imported and its settings read when a session opens
    its desk, not at start-up."""
    from ui.patient import ManualEntrySource

    if args.identite == "manuelle":
        return ManualEntrySource()
    from ui.identity_source import DeskSource

    insi_url = args.insi_url

    def desk(session: Any) -> Any:
        from ps_agent.identities import IdentityDesk

        return IdentityDesk(session, insi=insi_settings(insi_url))

    return DeskSource(desk)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("ps-agent")
    app.setApplicationDisplayName("ps-agent — DMP")
    app.setQuitOnLastWindowClosed(False)  # the tray agent lives on without a window
    from PySide6.QtCore import QLocale

    QLocale.setDefault(QLocale(QLocale.Language.French, QLocale.Country.France))  # dates, numbers, calendar
    from ui.single_instance import SingleInstance

    single = SingleInstance(args.instance)
    if not single.is_primary:
        print("ps-agent est déjà ouvert : sa fenêtre a été ramenée au premier plan.")
        return 0
    from ps_agent.card.monitor import CardMonitor
    from ps_agent.config import AgentConfig

    config = AgentConfig.default(args.env, ca_file=args.ca, home=Path(args.home) if args.home else None)
    services = DeferredServices(config)
    monitor = CardMonitor(poll_s=0.5)
    from ui.main_window import needs_first_run

    window = make_window(
        services, card_monitor=monitor, identity_source=identity_source(args), first_run=needs_first_run(None)
    )
    single.activate_requested.connect(window.tray.show_window)
    from PySide6.QtWidgets import QSystemTrayIcon

    if not QSystemTrayIcon.isSystemTrayAvailable():
        # no tray on this desktop: closing the window must end the program, never leave it invisible
        app.setQuitOnLastWindowClosed(True)
        args.hidden = False

    def after_first_paint() -> None:
        """What the first paint does not need: the tray icon, the card watch (its thread and the
        reader probe on the services worker), the services and the queue read."""
        if args.print_shown:
            print(f"shown {time.time_ns()} {time.process_time():.4f}", flush=True)
        if args.smoke:
            services.get()
        else:  # the journal and the queue opened off the GUI thread (a use meanwhile waits for them);
            # never while quitting: an import cut by the interpreter's exit would print errors
            preload_core(services.get)
        window.refresh_queue()  # the tray shows the queue from the start, session or not
        if not args.smoke:
            window.check_clock()  # 1.4 / 15.4: once, on the services worker
        if QSystemTrayIcon.isSystemTrayAvailable():
            window.tray.show()
        window.controller.start_card_watch()
        if args.smoke:
            QTimer.singleShot(0, app.quit)
        else:  # the other pages (built on first use), one per idle turn: their tabs then open at once
            QTimer.singleShot(0, window.build_pages_later)

    if args.hidden:
        QTimer.singleShot(0, after_first_paint)
    else:
        FirstPaint(window, after_first_paint)
        window.show()
        if args.smoke:  # a window never painted (no screen) must not hang the check
            QTimer.singleShot(30_000, app.quit)
    code = app.exec()
    window.controller.close()
    services.close()
    single.close()
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
