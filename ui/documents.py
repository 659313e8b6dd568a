"""Documents of the open patient: the nine rubrics with counts, one model/view list with a filter proxy
(date, author, type, state, text), the exact state labels (6.2), patient-authored rows marked (6.3),
local times (6.5), authors with profession and structure (6.13); and the viewer (level-1 PDF with QtPdf
from memory, the CDA header beside it, the visibility warnings on opening)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from PySide6.QtCore import (
    QAbstractTableModel,
    QBuffer,
    QByteArray,
    QDate,
    QIODevice,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cda.valuesets import DMP_RUBRICS
from ps_agent.dmp.metadata import rubric_of
from ui import labels as L

PARIS = ZoneInfo(L.DISPLAY_TZ)
PATIENT_CLASS_CODES = frozenset({"90"})  # [I] 6.3: classCode 90 = documents the patient adds
ModelIndex = QModelIndex | QPersistentModelIndex
COL_DATE, COL_TITLE, COL_TYPE, COL_STATE, COL_AUTHOR, COL_RUBRIC = range(6)


def state_labels(entry: Any) -> list[str]:
    """The exact labels of 6.2 that apply to an entry (« actif » when none)."""
    out = []
    vis = entry.visibility
    if vis.masked_to_professionals:
        out.append(L.STATE_MASKED)
    if vis.invisible_to_patient:
        out.append(L.STATE_INVISIBLE_PATIENT)
    if vis.invisible_to_legal_representatives:
        out.append(L.STATE_INVISIBLE_REPS)
    status = (entry.status or "").rsplit(":", 1)[-1]
    if status == "Archived":
        out.append(L.STATE_ARCHIVED)
    elif status == "Deprecated":
        out.append(L.STATE_OBSOLETE)
    return out or [L.STATE_ACTIVE]


def author_label(author: Any) -> str:
    """« Dr X — Cardiologue — CH Y » (6.13)."""
    parts = [f"{author.given_name} {author.family_name}".strip()]
    if author.specialty is not None and author.specialty.display:
        parts.append(author.specialty.display)
    if author.institution_name:
        parts.append(author.institution_name)
    return " — ".join(p for p in parts if p)


def is_patient_authored(entry: Any) -> bool:
    return entry.class_code.code in PATIENT_CLASS_CODES


def local_time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def hl7_local(ts: str) -> str:
    """An HL7 TS (« 20261203101158+0100 », « 19790321 ») in local French form."""
    from cda.model import parse_ts

    try:
        value = parse_ts(ts)
    except Exception:
        return ts
    if isinstance(value, dt.datetime):
        return local_time(value)
    return value.strftime("%d/%m/%Y")


def rubric_safe(entry: Any) -> str:
    try:
        return rubric_of(entry)
    except Exception:
        return ""


class DocumentTableModel(QAbstractTableModel):
    HEADERS = ("Date", "Titre", "Type", "État", "Auteur", "Rubrique")
    ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
    SORT_ROLE = Qt.ItemDataRole.UserRole + 2

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.entries: list[Any] = []
        self._rows: list[tuple[str, ...]] = []
        self.new: set[int] = set()  # rows new since this professional's last consultation (6.6)

    def set_entries(self, entries: list[Any], new_since: dt.datetime | None = None) -> None:
        """``new_since``: the time of this professional's last consultation of this DMP (None: first
        one, nothing marked)."""
        self.beginResetModel()
        self.entries = list(entries)
        # XDS creation times have second precision: a document of the very second of the last search
        # counts as new (better shown twice than missed)
        mark = new_since.replace(microsecond=0) if new_since is not None else None
        self.new = {
            i
            for i, e in enumerate(self.entries)
            if mark is not None and e.creation_time is not None and e.creation_time >= mark
        }
        self._rows = [
            (
                local_time(e.creation_time),
                e.title,
                e.type_code.display or e.type_code.code,
                ", ".join(state_labels(e)),
                "; ".join(author_label(a) for a in e.authors),
                rubric_safe(e),
            )
            for e in self.entries
        ]
        self.endResetModel()

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e = self.entries[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            text = self._rows[index.row()][col]
            if col == 1 and is_patient_authored(e):
                text = f"👤 {text} ({L.PATIENT_AUTHORED})"
            if col == 1 and index.row() in self.new:
                text = f"{L.NEW_BADGE} {text}"
            return text
        if role == Qt.ItemDataRole.FontRole and index.row() in self.new:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole and col == 0 and e.creation_time is not None:
            return "UTC : " + e.creation_time.astimezone(dt.UTC).strftime("%d/%m/%Y %H:%M")
        if role == Qt.ItemDataRole.BackgroundRole and is_patient_authored(e):
            return QBrush(QColor("#eef3ff"))
        if role == self.ENTRY_ROLE:
            return e
        if role == self.SORT_ROLE:
            return (
                e.creation_time.timestamp() if col == 0 and e.creation_time else self._rows[index.row()][col]
            )
        return None


class DocumentFilter(QSortFilterProxyModel):
    """Filters: rubric, free text, author, type, state, date range (all combined)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(DocumentTableModel.SORT_ROLE)
        self.rubric = ""
        self.text = ""
        self.author = ""
        self.type_label = ""
        self.state = ""
        self.since: dt.date | None = None
        self.until: dt.date | None = None
        self.only_new = False

    def set(self, **kw: Any) -> None:
        self.beginFilterChange()
        for k, v in kw.items():
            setattr(self, k, v)
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, row: int, parent: ModelIndex) -> bool:
        model = self.sourceModel()
        assert isinstance(model, DocumentTableModel)
        cells = model._rows[row]
        e = model.entries[row]
        if self.only_new and row not in model.new:
            return False
        if self.rubric and cells[COL_RUBRIC] != self.rubric:
            return False
        if self.text and self.text.casefold() not in " ".join(cells).casefold():
            return False
        if self.author and self.author.casefold() not in cells[COL_AUTHOR].casefold():
            return False
        if self.type_label and cells[COL_TYPE] != self.type_label:
            return False
        if self.state and self.state not in cells[COL_STATE]:
            return False
        if self.since or self.until:
            day = e.creation_time.astimezone(PARIS).date() if e.creation_time else None
            if day is None or (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True


class RubricList(QListWidget):
    """« Tous les documents (n) » then the nine rubrics with their counts."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Rubriques du DMP")
        self.setMinimumWidth(250)
        self.counts: dict[str, int] = {}
        self.set_counts([])

    def set_counts(self, entries: list[Any]) -> None:
        counts = {r: 0 for r in DMP_RUBRICS}
        for e in entries:
            r = rubric_safe(e)
            if r in counts:
                counts[r] += 1
        self.counts = counts
        current = self.current_rubric()
        # Rebuilt without signals: a listener refilters (and re-sorts) the document table on each change,
        # ~0.3 s for 2,000 documents, twice per listing; it is told once, only if the rubric changed.
        self.blockSignals(True)
        try:
            self.clear()
            all_item = QListWidgetItem(f"{L.ALL_DOCUMENTS} ({len(entries)})")
            all_item.setData(Qt.ItemDataRole.UserRole, "")
            self.addItem(all_item)
            for r in DMP_RUBRICS:
                item = QListWidgetItem(f"{r} ({counts[r]})")
                item.setData(Qt.ItemDataRole.UserRole, r)
                self.addItem(item)
            for i in range(self.count()):
                if self.item(i).data(Qt.ItemDataRole.UserRole) == current:
                    self.setCurrentRow(i)
                    break
            else:
                self.setCurrentRow(0)
        finally:
            self.blockSignals(False)
        if self.current_rubric() != current:
            self.currentRowChanged.emit(self.currentRow())

    def current_rubric(self) -> str:
        item = self.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""


class FilterBar(QWidget):
    def __init__(self, proxy: DocumentFilter, parent: Any = None) -> None:
        super().__init__(parent)
        self.proxy = proxy
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        lay = QHBoxLayout()
        checks = QHBoxLayout()
        outer.addLayout(lay)
        outer.addLayout(checks)
        self.text = QLineEdit()
        self.text.setPlaceholderText("Rechercher…")
        self.text.setAccessibleName("Rechercher dans les documents")
        self.author = QLineEdit()
        self.author.setPlaceholderText("Auteur")
        self.author.setAccessibleName("Filtrer par auteur")
        self.type = QComboBox()
        self.type.setAccessibleName("Filtrer par type")
        self.state = QComboBox()
        self.state.setAccessibleName("Filtrer par état")
        self.state.addItem("Tous les états", "")
        for s in (L.STATE_ACTIVE, L.STATE_MASKED, L.STATE_INVISIBLE_PATIENT, L.STATE_INVISIBLE_REPS,
                  L.STATE_ARCHIVED, L.STATE_OBSOLETE):  # fmt: skip
            self.state.addItem(s, s)
        self.since = QDateEdit()
        self.since.setCalendarPopup(True)
        self.since.setDisplayFormat("dd/MM/yyyy")
        self.since.setAccessibleName("Depuis le")
        self.since.setSpecialValueText("Depuis : —")
        self.since.setMinimumDate(QDate(1900, 1, 1))
        self.since.setDate(self.since.minimumDate())
        self.archived = QCheckBox(L.SHOW_ARCHIVED)
        self.archived.setAccessibleName(L.SHOW_ARCHIVED)
        self.old_versions = QCheckBox(L.SHOW_OLD_VERSIONS)
        self.old_versions.setAccessibleName(L.SHOW_OLD_VERSIONS)
        self.text.setMinimumWidth(180)
        self.author.setMinimumWidth(140)
        self.type.setMinimumWidth(200)
        for w in (self.text, self.author, self.type, self.state, self.since):
            lay.addWidget(w)
        checks.addWidget(self.archived)
        checks.addWidget(self.old_versions)
        checks.addStretch(1)
        self.text.textChanged.connect(lambda t: proxy.set(text=t))
        self.author.textChanged.connect(lambda t: proxy.set(author=t))
        self.type.currentIndexChanged.connect(lambda _i: proxy.set(type_label=self.type.currentData() or ""))
        self.state.currentIndexChanged.connect(lambda _i: proxy.set(state=self.state.currentData() or ""))
        self.since.dateChanged.connect(self._since)

    def _since(self, d: QDate) -> None:
        self.proxy.set(since=None if d == self.since.minimumDate() else d.toPython())

    def set_types(self, entries: list[Any]) -> None:
        current = self.type.currentData()
        self.type.blockSignals(True)
        self.type.clear()
        self.type.addItem("Tous les types", "")
        for t in sorted({e.type_code.display or e.type_code.code for e in entries}):
            self.type.addItem(t, t)
        self.type.setCurrentIndex(max(0, self.type.findData(current)))
        self.type.blockSignals(False)


STYLESHEET = Path(__file__).with_name("data") / "cda-narrative.xsl"
_transform: Any = None


def render_structured(root: Any) -> str:
    """HTML of a structured CDA's narrative through the shipped, read-only stylesheet (7.2); the XSLT may
    read and write nothing (access control DENY_ALL)."""
    global _transform
    from lxml import etree

    if _transform is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        xslt = etree.parse(str(STYLESHEET), parser)
        _transform = etree.XSLT(xslt, access_control=etree.XSLTAccessControl.DENY_ALL)
    return str(_transform(root))


def level1_content(cda_bytes: bytes) -> tuple[Any, bytes, str]:
    """(parsed CdaDocument, embedded bytes, media type) of a level-1 CDA; bytes empty when structured."""
    from cda.parser import parse

    doc = parse(cda_bytes)
    if not doc.is_level1:
        return doc, b"", ""
    text = doc.root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody/{urn:hl7-org:v3}text")
    payload = "".join((text.text or "").split()) if text is not None else ""
    return doc, base64.b64decode(payload) if payload else b"", doc.media_type


class DocumentViewer(QWidget):
    """Warnings on top (7.4), the CDA header (7.1) beside the content; a PDF rendered by QtPdf from memory
    (nothing written to disk, 7.3)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Visionneuse de document")
        lay = QVBoxLayout(self)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("background: #fff3b0; padding: 6px;")
        self.warning.setAccessibleName("Avertissement de visibilité")
        self.warning.hide()
        lay.addWidget(self.warning)
        row = QHBoxLayout()
        self.header = QWidget()
        self.header.setAccessibleName("En-tête du document")
        self.header_form = QFormLayout(self.header)
        self.header.setMaximumWidth(340)
        row.addWidget(self.header)
        from PySide6.QtPdf import QPdfDocument
        from PySide6.QtPdfWidgets import QPdfView

        self.pdf = QPdfDocument(self)
        self.pdf_view = QPdfView(self)
        self.pdf_view.setDocument(self.pdf)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.pdf_view.setAccessibleName("Contenu du document (PDF)")
        self.text = QTextBrowser()
        self.text.setAccessibleName("Contenu du document")
        self.text.hide()
        self.placeholder = QLabel(
            "Sélectionnez un document puis appuyez sur Entrée (ou double-cliquez) pour l'ouvrir."
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: #555;")
        self.pdf_view.hide()
        self.header.hide()
        row.addWidget(self.placeholder, 1)
        row.addWidget(self.pdf_view, 1)
        row.addWidget(self.text, 1)
        lay.addLayout(row, 1)
        self._buffer: QBuffer | None = None
        self.doc: Any = None

    def show_document(self, entry: Any, cda_bytes: bytes) -> None:
        doc, content, media = level1_content(cda_bytes)
        self.doc = doc
        self.placeholder.hide()
        self.header.show()
        warnings = []
        if entry is not None and entry.visibility.invisible_to_patient:
            warnings.append(L.VIEW_WARN_PATIENT)
        if entry is not None and entry.visibility.invisible_to_legal_representatives:
            warnings.append(L.VIEW_WARN_REPS)
        self.warning.setText("\n".join(warnings))
        self.warning.setVisible(bool(warnings))
        while self.header_form.rowCount():
            self.header_form.removeRow(0)
        p = doc.patient
        rows = [
            ("Titre", doc.title),
            ("Type", f"{doc.code.display_name} ({doc.code.code})" if doc.code else ""),
            ("Date", hl7_local(doc.effective_time)),
            (
                "Patient",
                f"{p.birth_family_name} {p.given_names} — né(e) le {hl7_local(p.birth_time)}" if p else "",
            ),
            ("Auteur", "; ".join(str(a.name) for a in doc.authors if a.name)),
            ("Structure", "; ".join(a.organization.name for a in doc.authors if a.organization)),
            ("Responsable", doc.custodian.name if doc.custodian else ""),
            ("Version", str(doc.version_number or "")),
        ]
        for k, v in rows:
            label = QLabel(v)
            label.setWordWrap(True)
            label.setAccessibleName(k)
            self.header_form.addRow(k, label)
        self.pdf.close()
        if media == "application/pdf" and content:
            self._buffer = QBuffer(self)
            self._buffer.setData(QByteArray(content))
            self._buffer.open(QIODevice.OpenModeFlag.ReadOnly)
            self.pdf.load(self._buffer)
            self.text.hide()
            self.pdf_view.show()
        else:
            if content:  # level 1, text
                self.text.setPlainText(content.decode("utf-8", "replace"))
            else:  # structured: the narrative through the stylesheet
                self.text.setHtml(render_structured(doc.root))
            self.pdf_view.hide()
            self.text.show()
