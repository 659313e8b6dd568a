"""6.6 « Nouveau depuis votre dernière consultation »: the mark is this professional's previous successful
search of this DMP (read from the audit journal); documents created since are marked, counted and
filterable (« Nouveaux »)."""

from __future__ import annotations

from cda import build
from sandbox import demo
from ui import labels as L
from ui.main_window import author_for

from .conftest import minimal_pdf, open_qualified


def _deposit_one(w, title: str) -> None:
    p, session = w.patient, w.controller.session
    data = build.level1(
        type_code="11488-4", content=minimal_pdf(title), title=title, patient=p.identity.traits(),
        author=author_for(session.identity), media_type="application/pdf",
    )  # fmt: skip
    p.handle.deposit(data)


def test_documents_new_since_the_last_consultation(window_for, qtbot, monkeypatch, wait_idle) -> None:
    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    assert w.new_note.text() == L.FIRST_CONSULTATION and not w.doc_model.new
    assert not w.new_only.isEnabled()
    before = w.doc_model.rowCount()
    _deposit_one(w, "Courrier arrivé entre-temps")  # another professional's letter, say
    w.close_patient()
    wait_idle(w)
    # the next consultation: the new letter is marked, counted, and the filter shows it alone
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    qtbot.waitUntil(lambda: w.doc_model.rowCount() == before + 1, timeout=20_000)
    assert len(w.doc_model.new) == 1
    assert w.new_note.text().startswith("1 nouveau(x) document(s) depuis votre dernière consultation (le ")
    row = next(iter(w.doc_model.new))
    title = w.doc_model.data(w.doc_model.index(row, 1))
    assert title == f"{L.NEW_BADGE} Courrier arrivé entre-temps"
    assert w.new_only.isEnabled()
    w.new_only.setChecked(True)
    assert w.doc_proxy.rowCount() == 1
    w.new_only.setChecked(False)
    assert w.doc_proxy.rowCount() == before + 1
