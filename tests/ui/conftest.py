"""UI test fixtures: offscreen Qt, a sandbox DMP with the demo data (one per test module), ``Services``
on it, the main window over a session with software keys of a card profile, and an identity source
standing in for INSi (the INS comes back « récupérée », as INSi would give it)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ps_agent.config import AgentConfig, Environment
from tests.fixtures.insi import insi_sandbox
from tests.fixtures.integration import identity_of
from tests.fixtures.ui_session import INSI_BILLING_ID, InsiStandIn, demo_identity, software_credentials
from ui.labels import NOT_QUALIFIED_REASON, IdentityStatus

__all__ = [
    "INSI_BILLING_ID",
    "InsiStandIn",
    "demo_identity",
    "identity_of",
    "insi_sandbox",
    "software_credentials",
]


@pytest.fixture(scope="module")
def ui_sandbox(tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    from sandbox.demo import seed
    from sandbox.server import start

    running = start(tmp_path_factory.mktemp("ui-sandbox"), test_pki)
    try:
        seed(running.store)
        yield running
    finally:
        running.stop()


@pytest.fixture
def sandbox_faults(ui_sandbox: Any) -> Iterator[Callable[..., None]]:
    from sandbox.server.faults import FaultConfig

    def set_(**kw: Any) -> None:
        ui_sandbox.faults.configure(FaultConfig(seed=1, **kw))

    yield set_
    ui_sandbox.faults.clear()


@pytest.fixture
def services(ui_sandbox: Any, test_pki: Any, tmp_path: Path) -> Iterator[Any]:
    from ps_agent.services import Services

    env = Environment("sandbox", ui_sandbox.base_url, ca_file=str(test_pki.ca_bundle))
    s = Services(AgentConfig(env, tmp_path / "home", deposit_retries=0))
    yield s
    s.close()


@pytest.fixture
def window_for(qtbot: Any, services: Any, test_pki: Any) -> Iterator[Callable[..., Any]]:
    """``window_for(profile=None, source=InsiStandIn())``: the main window (+ tray); with a profile, a
    session with that card profile's software keys is already open."""
    from ui.app import make_window

    made: list[Any] = []

    def make(
        profile: str | None = "gp",
        *,
        source: Any = None,
        monitor: Any = None,
        segur_notice: bool = False,
        api_backend: Any = None,
        **kw: Any,
    ) -> Any:
        w = make_window(
            services,
            api_backend=api_backend,
            **kw,
            card_monitor=monitor,
            identity_source=source or InsiStandIn(),
            auto_pin_dialog=False,
            segur_notice=segur_notice,
        )
        qtbot.addWidget(w)
        made.append(w)
        w.show()
        if profile is not None:
            w.controller.use_session(services.open_session(software_credentials(test_pki, profile)))
        return w

    yield make
    for w in made:
        w.controller.close()


def idle(qtbot: Any, window: Any, timeout: int = 20_000) -> None:
    """Wait until no background operation runs (session and services workers)."""
    c = window.controller

    def done() -> bool:
        return (c.worker is None or c.worker.pending == 0) and c.services_worker.pending == 0

    qtbot.waitUntil(done, timeout=timeout)


@pytest.fixture
def wait_idle(qtbot: Any) -> Callable[..., None]:
    return lambda window, timeout=20_000: idle(qtbot, window, timeout)


def minimal_pdf(text: str = "Compte rendu de test") -> bytes:
    """A one-page PDF written by hand (valid xref), enough for QtPdf and the CDA builder."""
    from ui.viewer import one_line_pdf

    return one_line_pdf(text)


@pytest.fixture
def pdf_bytes() -> bytes:
    return minimal_pdf()


def open_qualified(qtbot: Any, w: Any, patient: Any, monkeypatch: Any, wait_idle: Any) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QInputDialog

    """Open ``patient`` through the INSi stand-in (récupérée) then « Valider l'identité » (CNI)."""
    w.open_form.fill(demo_identity(patient))
    with qtbot.waitSignal(w.patient_opened, timeout=10_000):
        qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    assert w.patient.identity.status is IdentityStatus.RECUPEREE
    assert w.identity_bar.chip.text() == "Identité récupérée"
    assert w.dmp_banner.reason.text() == NOT_QUALIFIED_REASON
    assert not w.deposit_page.send.isEnabled()
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("Carte nationale d'identité", True))
    qtbot.mouseClick(w.identity_bar.validate_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.patient is not None and w.patient.status is not None, timeout=15_000)
    wait_idle(w)
    assert w.identity_bar.chip.text() == "Identité qualifiée"
    assert w.patient.handle.ref.ins_status == "QUAL"


@pytest.fixture
def desk_source(insi_sandbox: Any) -> Iterator[Any]:
    """The window's real identity source: ``IdentityDesk`` on the INSi sandbox over TLS (mode B, the
    session's card keys sign the PS assertion)."""
    from ps_agent.identities import IdentityDesk, InsiSettings
    from ui.identity_source import DeskSource

    settings = InsiSettings(url=insi_sandbox.cpx_url, billing_id=INSI_BILLING_ID)
    source = DeskSource(lambda session: IdentityDesk(session, insi=settings))
    yield source
    source.close()
