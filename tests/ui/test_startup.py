"""Start-up of ``python -m ui``: what runs after the first paint (``FirstPaint``), the services built
only then (``DeferredServices``), the ``shown`` mark the benchmark reads, and the import weight left
before the window shows (no httpx, cryptography, signxml, QtPdf, DMP session, pyscard, lxml, the journal,
the doctor, nor the modules of the pages built on first use)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QLabel

from ps_agent.config import AgentConfig
from ui.app import DeferredServices, FirstPaint

ROOT = Path(__file__).resolve().parents[2]


def test_first_paint_runs_once_after_the_window_is_painted(qtbot: Any) -> None:
    label = QLabel("Bonjour")
    qtbot.addWidget(label)
    calls: list[bool] = []
    FirstPaint(label, lambda: calls.append(label.isVisible()))
    qtbot.wait(50)  # not shown: nothing painted, nothing run (a bounded wait for a non-event)
    assert calls == []
    label.show()
    qtbot.waitUntil(lambda: calls == [True], timeout=5_000)
    label.update()
    label.repaint()
    qtbot.wait(50)
    assert calls == [True]


def test_deferred_services_open_nothing_until_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    services = DeferredServices(AgentConfig.default("sandbox", home=home))
    assert not (home / "audit.sqlite3").exists()
    services.close()  # never built: nothing to close, nothing created
    assert not (home / "audit.sqlite3").exists()
    real = services.get()
    assert services.get() is real and real.events is services.events  # the bridge's events are the core's
    assert services.journal is real.journal and (home / "audit.sqlite3").exists()
    services.close()


def test_smoke_marks_shown_and_opens_the_services_after(tmp_path: Path) -> None:
    """``python -m ui --smoke --print-shown`` in its own process (``main`` run in this one would leave its
    application state to the next tests)."""
    home = tmp_path / "home"
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen")
    cmd = [sys.executable, "-m", "ui", "--smoke", "--print-shown", "--home", str(home)]
    before = time.time_ns()
    out = subprocess.run(
        [*cmd, "--instance", f"t-{uuid.uuid4().hex}"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    marks = [line.split() for line in out.stdout.splitlines() if line.startswith("shown ")]
    assert len(marks) == 1 and before < int(marks[0][1]) <= time.time_ns() and float(marks[0][2]) > 0
    assert (home / "audit.sqlite3").exists()  # built once the window was painted


def test_the_heavy_modules_are_not_imported_before_the_window_shows(tmp_path: Path) -> None:
    """In a fresh interpreter, at the ``shown`` mark: none of the modules that only a session, a PDF or
    a certificate needs."""
    probe = (
        "import sys, ui.app\n"
        "heavy = ('httpx', 'cryptography.x509', 'signxml', 'PySide6.QtPdf', 'ps_agent.session',\n"
        "         'smartcard', 'ps_agent.dmp.client', 'ps_agent.services', 'ps_agent.identities',\n"
        "         'PyKCS11', 'lxml', 'cda.parser', 'cda.build', 'ps_agent.audit', 'ps_agent.doctor',\n"
        "         'ps_agent.dmp.vihf', 'ui.batch', 'ui.deposit', 'ui.journal_queue', 'ui.vaccinations')\n"
        "def mark():\n"
        "    print('loaded', *sorted(m for m in heavy if m in sys.modules), flush=True)\n"
        "orig = ui.app.FirstPaint.__init__\n"
        "def patched(self, widget, then):\n"
        "    def first():\n"
        "        if getattr(widget, 'tray', None) is not None:\n"
        "            mark()\n"
        "        then()\n"
        "    orig(self, widget, first)\n"
        "ui.app.FirstPaint.__init__ = patched\n"
        f"raise SystemExit(ui.app.main(['--smoke', '--home', {str(tmp_path / 'h')!r},"
        f" '--instance', 'imports-{uuid.uuid4().hex}']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("loaded")]
    assert lines and lines[0] == "loaded", lines
