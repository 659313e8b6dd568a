"""The document viewer with « Ouvrir dans le navigateur » (issue 11 §5, dmp-ui-requirements 7.2, 7.3).

``CdaViewer`` is ``ui.documents.DocumentViewer`` plus one action: for a structured CDA (rendered by the
shipped stylesheet in a ``QTextBrowser``, whose HTML/CSS subset falls short for wide tables, print
layout, …) the same narrative, with the CDA header, goes to the system's browser. Nothing is written to
disk: the page is served from memory by ``ps_agent.viewer_share`` (loopback, random port, unguessable
token, answered once, ``no-store``) and opened with ``QDesktopServices.openUrl``.

The server lives in ``ps_agent`` (Qt-free, standard library only) so it is tested without Qt and any
front-end can use it; this module only composes the page and opens the URL."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import QMarginsF, QRectF, QSize, QUrl
from PySide6.QtGui import QDesktopServices, QPageLayout, QPageSize, QPainter, QTextDocument
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from ui.documents import DocumentViewer, PreparedDocument, header_rows

OPEN_IN_BROWSER = "Ouvrir dans le navigateur"
PRINT = "Imprimer"
PRINT_NOTE = (
    "Imprime le document au format A4 portrait (aucun fichier n'est créé sauf si vous en choisissez un)."
)
# 7.5: what the viewer prints on (a PDF page is scaled to fit it, keeping its proportions). [I] the
# margins: 10 mm, inside what office printers can reach, a PDF page shrunk by ~7 % at most.
PRINT_PAGE = QPageSize.PageSizeId.A4
PRINT_ORIENTATION = QPageLayout.Orientation.Portrait
PRINT_MARGINS_MM = 10.0
PRINT_PDF_DPI = 300  # a PDF page is rasterised at this resolution at most, then scaled onto the printer
BROWSER_NOTE = (
    "Le document est transmis une seule fois au navigateur depuis la mémoire (rien n'est enregistré "
    "sur le disque) ; pour le rouvrir, cliquez de nouveau."
)
# 7.5: printing from the browser uses A4 portrait.
_PAGE_STYLE = (
    "@page { size: A4 portrait; margin: 15mm; } "
    "body { font-family: sans-serif; font-size: 11pt; margin: 1.5em; } "
    "table { border-collapse: collapse; } th, td { border: 1px solid #999; padding: 3px 6px; } "
    "th { background: #eee; } .entete { border: none; margin-bottom: 1em; } "
    ".entete th, .entete td { border: none; text-align: left; vertical-align: top; background: none; } "
    ".avertissement { background: #fff3b0; padding: 6px; }"
)


def one_line_pdf(text: str = "ps-agent") -> bytes:
    """A one-page PDF with one line of Helvetica (valid xref): what ``warm_up_pdf`` renders."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def warm_up_pdf() -> bool:
    """Load and render a one-line PDF with QtPdf (any thread): pdfium's first load sets up its fonts
    (≈ 0.1 s on the GUI thread otherwise, in the first paint of the first PDF a user opens).
    ``ui.documents.prepare_document`` calls it once, on the worker, before the first PDF is shown.
    True when the page rendered."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtPdf import QPdfDocument

    buffer = QBuffer()
    buffer.setData(QByteArray(one_line_pdf()))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    doc = QPdfDocument()
    try:
        doc.load(buffer)
        return doc.pageCount() == 1 and not doc.render(0, QSize(60, 85)).isNull()
    finally:
        doc.close()
        buffer.close()


def _body_of(html: str) -> str:
    """The content of ``<body>`` of the stylesheet's output (the whole text when it has none)."""
    low = html.lower()
    start = low.find("<body")
    if start < 0:
        return html
    start = low.find(">", start) + 1
    end = low.rfind("</body>")
    return html[start : end if end >= 0 else len(html)]


def browser_page(doc: Any, narrative_html: str, warnings: list[str] | None = None) -> str:
    """A complete HTML page: the visibility warnings (7.4), the CDA header (7.1) and the narrative."""
    rows = [row for row in header_rows(doc) if row[0] != "Titre"]  # the title heads the page
    head = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows if v)
    warn = "".join(f'<p class="avertissement">{escape(w)}</p>' for w in warnings or [])
    title = escape(doc.title or "Document")
    return (
        '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_PAGE_STYLE}</style></head><body>"
        f'{warn}<table class="entete">{head}</table>{_body_of(narrative_html)}</body></html>'
    )


class CdaViewer(DocumentViewer):
    """``DocumentViewer`` with « Ouvrir dans le navigateur » for structured documents."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        bar = QHBoxLayout()
        self.browser_btn = QPushButton(OPEN_IN_BROWSER)
        self.browser_btn.setAccessibleName(OPEN_IN_BROWSER)
        self.browser_btn.setToolTip(BROWSER_NOTE)
        self.browser_btn.hide()
        self.browser_note = QLabel("")
        self.browser_note.setWordWrap(True)
        self.browser_note.setAccessibleName("Ouverture dans le navigateur")
        self.print_btn = QPushButton(PRINT)
        self.print_btn.setAccessibleName(PRINT)
        self.print_btn.setToolTip(PRINT_NOTE)
        self.print_btn.hide()
        bar.addWidget(self.print_btn)
        bar.addWidget(self.browser_btn)
        bar.addWidget(self.browser_note, 1)
        lay = self.layout()
        assert isinstance(lay, QVBoxLayout)
        lay.insertLayout(1, bar)  # under the visibility warning, above the header and the content
        self.browser_btn.clicked.connect(self.open_in_browser)
        self.print_btn.clicked.connect(self.print_document)
        self._warnings: list[str] = []
        self.shared: Any = None  # the running ps_agent.viewer_share.OneShotPage

    def show_prepared(self, prepared: PreparedDocument) -> None:
        self._stop_sharing()
        self.browser_note.setText("")
        super().show_prepared(prepared)
        self._warnings = list(prepared.warnings)
        self.browser_btn.setVisible(self.structured)
        self.print_btn.setVisible(self.printable)

    @property
    def structured(self) -> bool:
        return self.doc is not None and not self.doc.is_level1

    def page_html(self) -> str:
        """The browser page of the structured document shown ("" for a PDF or a text)."""
        if not self.structured or self.prepared is None:
            return ""
        return browser_page(self.doc, self.prepared.html, self._warnings)

    def open_in_browser(self) -> str:
        """Serve the page once from memory and open it in the system's browser; returns the URL."""
        from ps_agent.errors import PsAgentError
        from ps_agent.viewer_share import share_html

        html = self.page_html()
        if not html:
            return ""
        self._stop_sharing()
        try:
            self.shared = share_html(html)
        except PsAgentError as exc:
            self.browser_note.setText(exc.message_fr)
            return ""
        if not QDesktopServices.openUrl(QUrl(self.shared.url)):
            self._stop_sharing()
            self.browser_note.setText("Aucun navigateur n'a pu être ouvert sur ce poste.")
            return ""
        self.browser_note.setText(BROWSER_NOTE)
        return str(self.shared.url)

    def _stop_sharing(self) -> None:
        if self.shared is not None:
            self.shared.close(wait=False)
            self.shared = None

    # ------------------------------------------------------------------ print (7.5)
    @property
    def printable(self) -> bool:
        p = self.prepared
        return p is not None and (p.is_pdf or bool(p.html) or bool(p.content))

    def new_printer(self) -> Any:
        """A printer set to A4 portrait (the dialog may still change the printer, not the layout we ask)."""
        from PySide6.QtPrintSupport import QPrinter

        printer = QPrinter(QPrinter.PrinterMode.HighResolution)
        printer.setPageLayout(
            QPageLayout(
                QPageSize(PRINT_PAGE),
                PRINT_ORIENTATION,
                QMarginsF(PRINT_MARGINS_MM, PRINT_MARGINS_MM, PRINT_MARGINS_MM, PRINT_MARGINS_MM),
                QPageLayout.Unit.Millimeter,
            )
        )
        printer.setDocName(self.doc.title if self.doc is not None and self.doc.title else "Document")
        return printer

    def print_document(self) -> bool:
        """« Imprimer »: the system's print dialog, then the document on A4 portrait. Nothing is written to
        disk unless the user chooses to print to a file."""
        from PySide6.QtPrintSupport import QPrintDialog

        if not self.printable:
            return False
        printer = self.new_printer()
        dialog = QPrintDialog(printer, self)
        dialog.setWindowTitle("Imprimer le document")
        if dialog.exec() != QPrintDialog.DialogCode.Accepted:
            return False
        return self.print_to(printer)

    def print_to(self, printer: Any) -> bool:
        """Print the document shown on ``printer``: a PDF page by page (each rendered at the printer's
        resolution and scaled to fit), a structured CDA or a text through ``QTextDocument``."""
        prepared = self.prepared
        if prepared is None:
            return False
        if prepared.is_pdf:
            return self._print_pdf(printer)
        doc = QTextDocument()
        if prepared.html:
            doc.setHtml(browser_page(self.doc, prepared.html, self._warnings))
        else:
            doc.setPlainText(prepared.content.decode("utf-8", "replace"))
        doc.print_(printer)
        return True

    def _print_pdf(self, printer: Any) -> bool:
        pdf = self.pdf
        pages = pdf.pageCount()
        if pages <= 0:
            return False
        painter = QPainter()
        if not painter.begin(printer):
            return False
        try:
            area = printer.pageLayout().paintRectPixels(printer.resolution())
            # a page image at most PRINT_PDF_DPI (a 1,200 dpi printer would ask ~0.5 GB per A4 page)
            raster = min(1.0, PRINT_PDF_DPI / max(printer.resolution(), 1))
            for n in range(pages):
                if n:
                    printer.newPage()
                size_pt = pdf.pagePointSize(n)
                scale = min(area.width() / size_pt.width(), area.height() / size_pt.height())
                w, h = size_pt.width() * scale, size_pt.height() * scale
                image = pdf.render(n, QSize(int(w * raster), int(h * raster)))
                painter.drawImage(QRectF(0, 0, w, h), image)
        finally:
            painter.end()
        return True
