"""The viewer opens a large PDF and a structured CDA without stalling the window (the retrieval, the
parse, the base64 decode, the stylesheet's rendering and pdfium's first render run on the session's worker:
``ui.documents.prepare_document``; asserted by the thread each ran on, the stall figure being measured by
benchmarks/bench_ui.py), and « Imprimer » prints either on A4 portrait (7.5), nothing written unless the
user chooses a file."""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

from pypdf import PdfReader
from PySide6.QtCore import Qt
from PySide6.QtPrintSupport import QPrintDialog, QPrinter

import cda.parser
import ui.documents
import ui.viewer
from ps_agent.session import PatientHandle
from sandbox import demo
from sandbox.dmp.demo_data import _register
from tests.fixtures.gui_thread import GUI_BLOCK_MS, Heartbeat, ThreadLog
from tests.fixtures.viewer_docs import pdf_cda, structured_cda
from ui import main_window
from ui.app import preload_core
from ui.viewer import PRINT, PRINT_PDF_DPI, CdaViewer

from .conftest import open_qualified

A4_PT = (595.3, 841.9)
BIG_TITLE = "Compte rendu volumineux (200 Ko)"


class _Base64:
    """Stands for the ``base64`` module in ``ui.documents`` (its ``b64decode`` wrapped by the test: the
    other users of ``base64`` stay as they are)."""

    def __init__(self, monkeypatch: Any) -> None:
        self.b64decode = base64.b64decode
        monkeypatch.setattr(ui.documents, "base64", self)


def _a4_portrait_pages(data: bytes) -> list[tuple[float, float]]:
    reader = PdfReader(io.BytesIO(data))
    return [(float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages]


def _is_a4_portrait(size: tuple[float, float]) -> bool:
    return abs(size[0] - A4_PT[0]) < 2 and abs(size[1] - A4_PT[1]) < 2


def test_a_200_kb_pdf_and_a_structured_cda_open_without_stalling_the_window(
    window_for, qtbot, monkeypatch, wait_idle, ui_sandbox
) -> None:
    big = pdf_cda(200_000, 8, BIG_TITLE)
    assert len(big) > 200_000
    _register(ui_sandbox.store, demo.DEMO_ADULT, big, ())
    _register(ui_sandbox.store, demo.DEMO_ADULT, structured_cda(), ())
    w = window_for("gp")
    preload_core().join()  # what `python -m ui` does once its window is painted (QtPdf's libraries loaded)
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    qtbot.waitUntil(lambda: w.doc_model.rowCount() > 0, timeout=20_000)
    rows = {w.doc_proxy.index(r, 1).data(): r for r in range(w.doc_proxy.rowCount())}
    v = w.viewer
    log = ThreadLog(monkeypatch)
    base64_of_documents = _Base64(monkeypatch)
    steps = {
        "network: PatientHandle.retrieve": (PatientHandle, "retrieve"),
        "prepare_document": (main_window, "prepare_document"),
        "CDA parse": (cda.parser, "parse"),
        "base64 decode": (base64_of_documents, "b64decode"),
        "stylesheet (XSLT)": (ui.documents, "render_structured"),
        "pdfium's first render": (ui.viewer, "warm_up_pdf"),
    }
    for label, (owner, name) in steps.items():
        log.wrap(owner, name, label)
    monkeypatch.setattr(ui.documents, "_pdf_warm", threading.Event())  # the first PDF warms pdfium up again
    for title in (BIG_TITLE, "Note de vaccination", BIG_TITLE):
        with Heartbeat() as beat:
            with qtbot.waitSignal(w.document_shown, timeout=20_000):
                w.doc_table.activated.emit(w.doc_proxy.index(rows[title], 0))
            shown = beat.beats
            qtbot.waitUntil(lambda b=beat, n=shown + 3: b.beats >= n, timeout=2000)  # posted events ran
        print(f"{title}: longest gap {beat.longest} ms over {beat.beats} beats (not asserted)")
        assert beat.longest < GUI_BLOCK_MS, f"{title}: the GUI thread blocked {beat.longest} ms"  # a hang
        if title == BIG_TITLE:
            assert v.pdf.pageCount() == 8 and v.pdf_view.isVisible() and not v.text.isVisible()
            assert "page 8" in v.pdf.getAllText(7).text()
        else:
            assert v.structured and v.text.isVisible() and "Lot" in v.text.toPlainText()  # the narrative
        assert v.print_btn.isVisible() and v.print_btn.text() == PRINT
    log.assert_off_gui_thread(*steps)


def _print_to_file(v: CdaViewer, path: Any) -> bytes:
    printer = v.new_printer()
    printer.setOutputFormat(QPrinter.OutputFormat.PdfFormat)
    printer.setOutputFileName(str(path))
    assert v.print_to(printer)
    return path.read_bytes()


def test_the_viewer_prints_a_pdf_and_a_structured_cda_on_a4_portrait(qtbot, tmp_path) -> None:
    v = CdaViewer()
    qtbot.addWidget(v)
    v.show_document(None, pdf_cda(200_000, 8))
    qtbot.waitUntil(lambda: v.pdf.pageCount() == 8, timeout=5000)
    printed = _print_to_file(v, tmp_path / "pdf.pdf")
    pages = _a4_portrait_pages(printed)
    assert len(pages) == 8 and all(_is_a4_portrait(p) for p in pages), pages
    # each page carries the PDF page as an image of at most PRINT_PDF_DPI (≈ 2,480 px wide on A4)
    xobjects = PdfReader(io.BytesIO(printed)).pages[0]["/Resources"]["/XObject"]
    images = [o.get_object() for o in xobjects.values() if o.get_object()["/Subtype"] == "/Image"]
    assert len(images) == 1
    width, height = int(images[0]["/Width"]), int(images[0]["/Height"])
    assert 1000 < width <= 2480 * PRINT_PDF_DPI / 300 and height > width, (width, height)
    v.show_document(None, structured_cda())
    out = _print_to_file(v, tmp_path / "cda.pdf")
    pages = _a4_portrait_pages(out)
    assert len(pages) == 1 and _is_a4_portrait(pages[0]), pages
    text = " ".join(PdfReader(io.BytesIO(out)).pages[0].extract_text().split())
    assert "COMIRNATY" in text and "Note de vaccination" in text  # the narrative and the header


def test_imprimer_goes_through_the_print_dialog_and_writes_nothing_unless_chosen(
    qtbot, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    v = CdaViewer()
    qtbot.addWidget(v)
    v.show()
    v.show_document(None, structured_cda())
    assert v.print_btn.isVisible()
    seen: list[QPrinter] = []

    def cancel(dialog: QPrintDialog) -> int:
        seen.append(dialog.printer())
        return int(QPrintDialog.DialogCode.Rejected)

    monkeypatch.setattr(QPrintDialog, "exec", cancel)
    qtbot.mouseClick(v.print_btn, Qt.MouseButton.LeftButton)
    assert len(seen) == 1 and list(tmp_path.iterdir()) == []  # cancelled: nothing written
    layout = seen[0].pageLayout()
    assert layout.pageSize().id() == layout.pageSize().PageSizeId.A4
    assert layout.orientation() == layout.Orientation.Portrait
    chosen = tmp_path / "choisi.pdf"

    def to_file(dialog: QPrintDialog) -> int:
        dialog.printer().setOutputFormat(QPrinter.OutputFormat.PdfFormat)
        dialog.printer().setOutputFileName(str(chosen))
        return int(QPrintDialog.DialogCode.Accepted)

    monkeypatch.setattr(QPrintDialog, "exec", to_file)
    qtbot.mouseClick(v.print_btn, Qt.MouseButton.LeftButton)
    assert [p.name for p in tmp_path.iterdir()] == ["choisi.pdf"]
    assert _is_a4_portrait(_a4_portrait_pages(chosen.read_bytes())[0])
