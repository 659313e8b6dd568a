"""The queue page and the tray: a deposit the DMP cannot take now waits in the queue (shown with why),
« Renvoyer maintenant » registers it (tray notification), another is taken back into a folder."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from sandbox import demo
from ui.tray import Tray

from .conftest import open_qualified

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"


def deposit(qtbot: Any, w: Any, pdf: bytes, title: str) -> Any:
    page = w.deposit_page
    page.set_pdf(pdf, "lettre.pdf")
    page.title.setText(title)
    with qtbot.waitSignal(w.deposit_done, timeout=30_000) as sig:
        qtbot.mouseClick(page.send, Qt.MouseButton.LeftButton)
    return sig.args[0]


def state_of(w: Any, title: str) -> str:
    for row in w.queue_page.model.rows:
        if row[1] == title:
            return str(row[3])
    return ""


def test_waiting_deposit_resend_and_hand_back(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any, pdf_bytes: bytes, sandbox_faults: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    notes: list[tuple[str, str]] = []
    monkeypatch.setattr(Tray, "showMessage", lambda self, title, text, *a: notes.append((title, text)))
    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    sandbox_faults(http_503_rate=1.0, actions=(ITI41,))
    deferred = deposit(qtbot, w, pdf_bytes, "Lettre en attente A")
    assert deferred.entry.state.value == "waiting"
    assert w.deposit_page.result.text().startswith(
        "Le DMP ne répond pas : le document attend dans la file d'envoi."
    )
    deposit(qtbot, w, pdf_bytes, "Lettre en attente B")
    w.tabs.setCurrentWidget(w.queue_page)
    qtbot.waitUntil(
        lambda: state_of(w, "Lettre en attente B").startswith("nouvel essai prévu"), timeout=10_000
    )
    row = next(r for r in w.queue_page.model.rows if r[1] == "Lettre en attente A")
    assert row[4]  # why it waits, in French
    assert "2 en attente" in w.queue_page.summary.text()
    assert "File d'envoi : 2 en attente, 0 refusé(s)" in w.tray.toolTip()
    # hand B back into a folder
    b_row = [r[1] for r in w.queue_page.model.rows].index("Lettre en attente B")
    entry_b = w.queue_page.model.items[b_row]
    w.hand_back(entry_b.id, folder=str(tmp_path / "repris"))
    qtbot.waitUntil(lambda: state_of(w, "Lettre en attente B") == "rendu à l'utilisateur", timeout=10_000)
    files = list((tmp_path / "repris").iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    # the DMP is back: « Renvoyer maintenant » registers A, and the tray says so
    sandbox_faults()
    qtbot.mouseClick(w.queue_page.resend, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: state_of(w, "Lettre en attente A") == "enregistré dans le DMP", timeout=20_000)
    qtbot.waitUntil(
        lambda: ("Dépôt enregistré", "Lettre en attente A : enregistré dans le DMP.") in notes, timeout=5000
    )
    qtbot.waitUntil(
        lambda: w.status_line.text() == "1 dépôt(s) enregistré(s) sur 1 renvoyé(s).", timeout=10_000
    )
