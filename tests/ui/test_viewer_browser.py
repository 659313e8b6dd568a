"""« Ouvrir dans le navigateur » (7.2, 7.3): a structured CDA goes to the browser from memory, once, through
the loopback one-shot page; a PDF has no such button."""

from __future__ import annotations

import httpx
from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices

from sandbox import demo
from ui.viewer import OPEN_IN_BROWSER, CdaViewer, browser_page

from .conftest import open_qualified


def test_a_structured_document_opens_in_the_browser_from_memory(
    window_for, qtbot, monkeypatch, wait_idle, tmp_path
):
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()) or True)
    w = window_for("gp")
    assert isinstance(w.viewer, CdaViewer)
    open_qualified(qtbot, w, demo.DEMO_MINOR, monkeypatch, wait_idle)
    if w.minor_box is not None:
        w.minor_box.reject()
    qtbot.waitUntil(lambda: w.doc_model.rowCount() > 0, timeout=20_000)
    row = next(
        r for r in range(w.doc_proxy.rowCount()) if w.doc_proxy.index(r, 1).data() == "Note de vaccination"
    )
    with qtbot.waitSignal(w.document_shown, timeout=20_000):
        w.doc_table.activated.emit(w.doc_proxy.index(row, 0))
    v = w.viewer
    assert v.browser_btn.isVisible() and v.browser_btn.text() == OPEN_IN_BROWSER
    qtbot.mouseClick(v.browser_btn, Qt.MouseButton.LeftButton)
    assert len(opened) == 1 and opened[0].startswith("http://127.0.0.1:")
    with httpx.Client(trust_env=False) as client:
        r = client.get(opened[0])
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        assert "REPEVAX" in r.text and "<table" in r.text  # the narrative
        assert "Note de vaccination" in r.text  # the CDA header beside it (7.1)
        assert "size: A4 portrait" in r.text  # print layout (7.5)
        assert v.shared.wait(10)
        second = None
        try:
            second = client.get(opened[0], timeout=2).status_code
        except httpx.TransportError:
            pass
        assert second in (None, 404)  # answered once only
    assert "rien n'est enregistré" in v.browser_note.text()
    # a level-1 document (the minor's confidential consultation is a PDF) has no browser button
    title = "Consultation confidentielle (secret du mineur)"
    row = next(r for r in range(w.doc_proxy.rowCount()) if w.doc_proxy.index(r, 1).data() == title)
    with qtbot.waitSignal(w.document_shown, timeout=20_000):
        w.doc_table.activated.emit(w.doc_proxy.index(row, 0))
    assert v.doc.is_level1 and not v.structured
    assert v.browser_btn.isHidden() and v.shared is None and v.open_in_browser() == ""
    assert len(opened) == 1


def test_the_browser_page_escapes_the_header_and_carries_the_warnings() -> None:
    class Doc:
        title = "Compte <rendu>"
        code = None
        effective_time = ""
        patient = None
        authors: tuple[object, ...] = ()
        custodian = None
        version_number = 1

    page = browser_page(Doc(), "<html><body><p>Texte</p></body></html>", ["Attention, non visible"])
    assert "<title>Compte &lt;rendu&gt;</title>" in page
    assert '<p class="avertissement">Attention, non visible</p>' in page
    assert page.endswith("<p>Texte</p></body></html>")
    assert page.count("<body>") == 1
