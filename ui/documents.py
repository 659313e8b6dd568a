"""Documents of the open patient: the nine rubrics with counts, one model/view list with a filter proxy
(date, author, type, state, text), the exact state labels (6.2), patient-authored rows marked (6.3),
local times (6.5), authors with profession and structure (6.13); and the viewer (level-1 PDF with QtPdf
from memory, the CDA header beside it, the visibility warnings on opening)."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import re
import threading
import unicodedata
from dataclasses import dataclass
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
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cda.valuesets import DMP_RUBRICS
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
    v = value.astimezone(PARIS)
    # formatted by hand: strftime imports `time` at each call, through PySide's import hook (2,000 rows)
    return f"{v.day:02d}/{v.month:02d}/{v.year:04d} {v.hour:02d}:{v.minute:02d}"


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


@functools.cache
def _rubric_of() -> Any:
    """``ps_agent.dmp.metadata.rubric_of``, imported at the first listing (not at the window's start-up)."""
    from ps_agent.dmp.metadata import rubric_of

    return rubric_of


def rubric_safe(entry: Any) -> str:
    try:
        return str(_rubric_of()(entry))
    except Exception:
        return ""


_COMBINING_MARKS = re.compile("[\u0300-\u036f]")


def fold(value: str) -> str:
    """``value`` without case or accents, as a French reader compares texts: « École » is « ecole »."""
    return _COMBINING_MARKS.sub("", unicodedata.normalize("NFKD", value.casefold()))


@functools.lru_cache(maxsize=8192)
def text_key(value: str) -> str:
    """Sort key of a text cell (``fold``, cached: cells repeat across documents): « école » beside
    « Ecole », before « Facture »."""
    return fold(value)


# Roles as plain ints: data() is called for every painted and measured cell, and comparing with the Qt
# enum members each time costs more than the answer.
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_FONT = int(Qt.ItemDataRole.FontRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
_BACKGROUND = int(Qt.ItemDataRole.BackgroundRole)
_INITIAL_SORT_ORDER = int(Qt.ItemDataRole.InitialSortOrderRole)


class DocumentTableModel(QAbstractTableModel):
    """The documents of the open patient. ``entries`` keeps the order they were given in; the rows show
    them sorted (``sort``: by a key computed once per document and column, the list reordered in Python —
    no per-comparison call from Qt), so the view's proxy only filters. ``new``: the rows (as now sorted)
    of the documents new since this professional's last consultation (6.6)."""

    HEADERS = ("Date", "Titre", "Type", "État", "Auteur", "Rubrique")
    ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
    SORT_ROLE = Qt.ItemDataRole.UserRole + 2

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.entries: list[Any] = []
        self.new: set[int] = set()  # rows new since this professional's last consultation (6.6)
        self.generation = 0  # bumped at each set_entries (filter caches key on it)
        self.sort_column = COL_DATE
        self.sort_order = Qt.SortOrder.DescendingOrder
        self._cells: list[tuple[str, ...]] = []  # per entry: the six cells
        self._keys: dict[int, list[Any]] = {}  # column -> per entry: its sort key (made when first sorted)
        self._new_entries: set[int] = set()  # entry indexes of the new documents
        self._order: list[int] = []  # row -> entry index
        self._sorted_for: tuple[int, int, Qt.SortOrder] | None = None  # (generation, column, order) of _order
        self._titles: list[str] = []  # per entry: the title cell with its marks
        self._patient: list[bool] = []  # per entry: added by the patient (6.3)
        self._search: list[str] = []  # per entry: the cells without case or accents (free-text filter)
        self._bold = QFont()
        self._bold.setBold(True)
        self._patient_brush = QBrush(QColor("#eef3ff"))

    def set_entries(self, entries: list[Any], new_since: dt.datetime | None = None) -> None:
        """``new_since``: the time of this professional's last consultation of this DMP (None: first
        one, nothing marked)."""
        self.beginResetModel()
        self.entries = list(entries)
        self.generation += 1
        # XDS creation times have second precision: a document of the very second of the last search
        # counts as new (better shown twice than missed)
        mark = new_since.replace(microsecond=0) if new_since is not None else None
        self._new_entries = {
            i
            for i, e in enumerate(self.entries)
            if mark is not None and e.creation_time is not None and e.creation_time >= mark
        }
        self._cells = [
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
        self._patient = [is_patient_authored(e) for e in self.entries]
        self._search = [fold(" ".join(cells)) for cells in self._cells]
        self._titles = []
        for i, cells in enumerate(self._cells):
            title = f"{cells[COL_TITLE]} ({L.PATIENT_AUTHORED})" if self._patient[i] else cells[COL_TITLE]
            self._titles.append(f"{L.NEW_BADGE} {title}" if i in self._new_entries else title)
        self._keys = {}
        self._order = self._sorted_order()
        self._sorted_for = (self.generation, self.sort_column, self.sort_order)
        self._update_new_rows()
        self.endResetModel()

    def sort_keys(self, column: int) -> list[Any]:
        """Per entry, its sort key in ``column``: the creation time for the date (undated ones first in
        ascending order), else the text without case or accents."""
        keys = self._keys.get(column)
        if keys is None:
            if column == COL_DATE:
                keys = [
                    (1, e.creation_time.timestamp()) if e.creation_time else (0, 0.0) for e in self.entries
                ]
            else:
                keys = [text_key(cells[column]) for cells in self._cells]
            self._keys[column] = keys
        return keys

    def _sorted_order(self) -> list[int]:
        order = list(range(len(self.entries)))
        if 0 <= self.sort_column < len(self.HEADERS):
            keys = self.sort_keys(self.sort_column)
            # stable: equal keys keep the DMP's order, in both directions
            order.sort(key=keys.__getitem__, reverse=self.sort_order == Qt.SortOrder.DescendingOrder)
        return order

    def _update_new_rows(self) -> None:
        self.new = {row for row, i in enumerate(self._order) if i in self._new_entries}

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Rows reordered by ``column`` (the view's header click, through the proxy); selections and
        other persistent indexes follow their documents."""
        self.sort_column, self.sort_order = column, order
        if not self.entries or self._sorted_for == (self.generation, column, order):
            return  # already in that order (QTableView.sortByColumn asks twice)
        self._sorted_for = (self.generation, column, order)
        self.layoutAboutToBeChanged.emit()
        old_order = self._order
        self._order = self._sorted_order()
        row_of = {i: row for row, i in enumerate(self._order)}
        persistent = self.persistentIndexList()
        self.changePersistentIndexList(
            persistent,
            [self.index(row_of[old_order[p.row()]], p.column()) for p in persistent],
        )
        self._update_new_rows()
        self.layoutChanged.emit()

    def entry_at(self, row: int) -> Any:
        """The document shown at ``row``."""
        return self.entries[self._order[row]]

    def entry_index(self, row: int) -> int:
        """Index in ``entries`` of the document shown at ``row``."""
        return self._order[row]

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == _DISPLAY:
            return self.HEADERS[section]
        if orientation == Qt.Orientation.Horizontal and role == _INITIAL_SORT_ORDER:
            # a first click on « Date » shows the newest first; texts start from A
            return Qt.SortOrder.DescendingOrder if section == COL_DATE else Qt.SortOrder.AscendingOrder
        return None

    def data(self, index: ModelIndex, role: int = _DISPLAY) -> Any:
        if not index.isValid():
            return None
        i = self._order[index.row()]
        col = index.column()
        role = int(role)
        if role == _DISPLAY:
            return self._titles[i] if col == COL_TITLE else self._cells[i][col]
        if role == _FONT:
            return self._bold if i in self._new_entries else None
        if role == _BACKGROUND:
            return self._patient_brush if self._patient[i] else None
        if role == _TOOLTIP:
            e = self.entries[i]
            if col == COL_DATE and e.creation_time is not None:
                return "UTC : " + e.creation_time.astimezone(dt.UTC).strftime("%d/%m/%Y %H:%M")
            return None
        if role == self.ENTRY_ROLE:
            return self.entries[i]
        if role == self.SORT_ROLE:
            return self.sort_keys(col)[i]
        return None


class DocumentFilter(QSortFilterProxyModel):
    """Filters: rubric, free text, author, type, state, date range, « Nouveaux » (all combined). The proxy
    never sorts (Python comparisons called from Qt cost ~0.3 s for 2,000 documents): ``sort`` reorders the
    source model, whose rows the proxy keeps in order. Which documents pass is computed once per filter
    change over keys the model computed once per listing."""

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
        # 6.1: keep only the documents with these confidentiality codes (labels.ONLY_* [I])
        self.masked_only = False
        self.invisible_patient_only = False
        self.invisible_reps_only = False
        self._accepted: list[bool] = []
        self._accepted_for = (-1, -1, -1)  # (model id, its generation, filters) the cache was made for
        self._filters = 0  # bumped at each set(): the cache is rebuilt
        self._active = False  # any filter set
        self._model: DocumentTableModel | None = None

    def setSourceModel(self, model: Any) -> None:
        # kept on the Python side: QAbstractProxyModel.sourceModel() costs a wrapper lookup per row
        self._model = model if isinstance(model, DocumentTableModel) else None
        super().setSourceModel(model)

    def set(self, **kw: Any) -> None:
        self.beginFilterChange()
        for k, v in kw.items():
            setattr(self, k, v)
        self._filters += 1
        self._active = bool(
            self.rubric or self.text or self.author or self.type_label or self.state or self.only_new
            or self.since or self.until or self.masked_only or self.invisible_patient_only
            or self.invisible_reps_only
        )  # fmt: skip
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if self._model is not None:
            self._model.sort(column, order)
        else:
            super().sort(column, order)

    def _accepts(self, model: DocumentTableModel) -> list[bool]:
        stamp = (id(model), model.generation, self._filters)
        if self._accepted_for != stamp:
            text, author = fold(self.text), fold(self.author)
            self._accepted = [self._match(model, i, text, author) for i in range(len(model.entries))]
            self._accepted_for = stamp
        return self._accepted

    def _match(self, model: DocumentTableModel, i: int, text: str, author: str) -> bool:
        """Whether document ``i`` passes (``text``, ``author``: the filters folded once)."""
        cells = model._cells[i]
        if self.only_new and i not in model._new_entries:
            return False
        if self.rubric and cells[COL_RUBRIC] != self.rubric:
            return False
        if text and text not in model._search[i]:
            return False
        if author and author not in text_key(cells[COL_AUTHOR]):
            return False
        if self.type_label and cells[COL_TYPE] != self.type_label:
            return False
        if self.state and self.state not in cells[COL_STATE]:
            return False
        if self.masked_only or self.invisible_patient_only or self.invisible_reps_only:
            vis = model.entries[i].visibility
            if (
                (self.masked_only and not vis.masked_to_professionals)
                or (self.invisible_patient_only and not vis.invisible_to_patient)
                or (self.invisible_reps_only and not vis.invisible_to_legal_representatives)
            ):
                return False
        if self.since or self.until:
            e = model.entries[i]
            day = e.creation_time.astimezone(PARIS).date() if e.creation_time else None
            if day is None or (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True

    def filterAcceptsRow(self, row: int, parent: ModelIndex) -> bool:
        model = self._model
        if not self._active or model is None:
            return True
        return self._accepts(model)[model._order[row]]


def fit_columns(table: Any, sample_rows: int, max_width: int) -> None:
    """Size the columns of ``table`` (a view over a ``DocumentFilter`` on a ``DocumentTableModel``) to the
    texts of its first ``sample_rows`` rows and its header, at most ``max_width`` pixels each. What
    ``resizeColumnsToContents`` gives, measured here with the font metrics: Qt's version asks the model
    eight roles per cell through Python (~3,000 calls, ~40-60 ms for 60 rows)."""
    proxy = table.model()
    model = proxy.sourceModel() if isinstance(proxy, QSortFilterProxyModel) else proxy
    if not isinstance(model, DocumentTableModel):
        table.resizeColumnsToContents()
        return
    plain = table.fontMetrics()
    bold_font = QFont(table.font())
    bold_font.setBold(True)
    bold = QFontMetrics(bold_font)
    # QStyledItemDelegate: the text margin on each side (focus frame margin + 1) and one more pixel
    pad = 2 * (table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, table) + 1) + 2
    entries = [
        model.entry_index(proxy.mapToSource(proxy.index(r, 0)).row())
        if proxy is not model
        else model.entry_index(r)
        for r in range(min(proxy.rowCount(), sample_rows))
    ]
    header = table.horizontalHeader()
    for col in range(model.columnCount()):
        width = header.sectionSizeHint(col)
        for i in entries:
            text = model._titles[i] if col == COL_TITLE else model._cells[i][col]
            metrics = bold if i in model._new_entries else plain
            width = max(width, metrics.horizontalAdvance(text) + pad)
        table.setColumnWidth(col, min(width, max_width))


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
        checks = QGridLayout()
        checks.setVerticalSpacing(0)
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
        # 6.1: visibility filters (the masked one only for the médecin traitant: set_medecin_traitant)
        self.masked = QCheckBox(L.ONLY_MASKED)
        self.invisible_patient = QCheckBox(L.ONLY_INVISIBLE_PATIENT)
        self.invisible_reps = QCheckBox(L.ONLY_INVISIBLE_REPS)
        for box in (self.masked, self.invisible_patient, self.invisible_reps):
            box.setAccessibleName(box.text())
        self.masked.hide()
        self.text.setMinimumWidth(180)
        self.author.setMinimumWidth(140)
        self.type.setMinimumWidth(200)
        for w in (self.text, self.author, self.type, self.state, self.since):
            lay.addWidget(w)
        # two columns, so the list keeps its width in a 1280-px window and at 150 % (no sideways scrolling)
        boxes = (self.archived, self.old_versions, self.invisible_patient, self.invisible_reps, self.masked)
        for i, box in enumerate(boxes):
            checks.addWidget(box, i // 2, i % 2)
        checks.setColumnStretch(2, 1)
        self.text.textChanged.connect(lambda t: proxy.set(text=t))
        self.author.textChanged.connect(lambda t: proxy.set(author=t))
        self.type.currentIndexChanged.connect(lambda _i: proxy.set(type_label=self.type.currentData() or ""))
        self.state.currentIndexChanged.connect(lambda _i: proxy.set(state=self.state.currentData() or ""))
        self.since.dateChanged.connect(self._since)
        self.masked.toggled.connect(lambda on: proxy.set(masked_only=on))
        self.invisible_patient.toggled.connect(lambda on: proxy.set(invisible_patient_only=on))
        self.invisible_reps.toggled.connect(lambda on: proxy.set(invisible_reps_only=on))

    def set_medecin_traitant(self, yes: bool) -> None:
        """The masked filter (6.1) exists only for the patient's médecin traitant (TD0.2)."""
        self.masked.setVisible(yes)
        if not yes and self.masked.isChecked():
            self.masked.setChecked(False)

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


@dataclass(frozen=True)
class PreparedDocument:
    """A retrieved document ready to show: everything but the widget updates, computed off the GUI thread
    (``prepare_document`` runs on the session's worker). ``content``: the decoded PDF (or text) bytes;
    ``html``: the structured narrative through the stylesheet; ``rows``: the CDA header (7.1);
    ``warnings``: the visibility warnings (7.4)."""

    entry: Any
    doc: Any
    media: str
    content: bytes
    html: str
    rows: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]

    @property
    def is_pdf(self) -> bool:
        return self.media == "application/pdf" and bool(self.content)


def header_rows(doc: Any) -> tuple[tuple[str, str], ...]:
    """The CDA header shown beside the content (7.1): (label, value)."""
    p = doc.patient
    return (
        ("Titre", doc.title or ""),
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
    )


_pdf_warm = threading.Event()


def _warm_up_pdf_once() -> None:
    """pdfium's first render sets up its fonts (≈ 0.1 s, up to 0.2 s under load): done here, on the
    worker, before the first PDF reaches the GUI thread (PySide releases the GIL meanwhile), rather than
    in the ``QPdfView``'s first paint. Not at start-up: it costs ≈ 3 MB a session without PDF never uses."""
    if _pdf_warm.is_set():
        return
    from ui.viewer import warm_up_pdf

    try:
        warm_up_pdf()
    finally:
        _pdf_warm.set()


def prepare_document(entry: Any, cda_bytes: bytes) -> PreparedDocument:
    """Parse, decode and render a retrieved CDA (no widget touched: runs on the worker thread)."""
    doc, content, media = level1_content(cda_bytes)
    warnings = []
    if entry is not None and entry.visibility.invisible_to_patient:
        warnings.append(L.VIEW_WARN_PATIENT)
    if entry is not None and entry.visibility.invisible_to_legal_representatives:
        warnings.append(L.VIEW_WARN_REPS)
    html = render_structured(doc.root) if not doc.is_level1 else ""
    if media == "application/pdf" and content:
        _warm_up_pdf_once()
    return PreparedDocument(entry, doc, media, content, html, header_rows(doc), tuple(warnings))


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
        self._row = row
        self._pdf: Any = None  # QPdfDocument and QPdfView (QtPdf) made when first needed: not at start-up
        self._pdf_view: Any = None
        self.text = QTextBrowser()
        self.text.setAccessibleName("Contenu du document")
        self.text.hide()
        self.placeholder = QLabel(
            "Sélectionnez un document puis appuyez sur Entrée (ou double-cliquez) pour l'ouvrir."
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: #555;")
        self.header.hide()
        row.addWidget(self.placeholder, 1)
        row.addWidget(self.text, 1)
        lay.addLayout(row, 1)
        self._buffer: QBuffer | None = None
        self.prepared: PreparedDocument | None = None
        self.doc: Any = None

    @property
    def pdf(self) -> Any:
        """The ``QPdfDocument`` (created with its view on first use)."""
        if self._pdf is None:
            from PySide6.QtPdf import QPdfDocument
            from PySide6.QtPdfWidgets import QPdfView

            self._pdf = QPdfDocument(self)
            view = QPdfView(self)
            view.setDocument(self._pdf)
            view.setPageMode(QPdfView.PageMode.MultiPage)
            view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
            view.setAccessibleName("Contenu du document (PDF)")
            view.hide()
            self._row.insertWidget(self._row.indexOf(self.text), view, 1)
            self._pdf_view = view
        return self._pdf

    @property
    def pdf_view(self) -> Any:
        """The ``QPdfView`` showing ``pdf``."""
        self.pdf  # noqa: B018 (creates both)
        return self._pdf_view

    def show_document(self, entry: Any, cda_bytes: bytes) -> None:
        """Prepare (on the calling thread) and show; the window prepares on its worker (``show_prepared``)."""
        self.show_prepared(prepare_document(entry, cda_bytes))

    def show_prepared(self, prepared: PreparedDocument) -> None:
        """Only widget updates: the header labels, the warnings, the PDF loaded from memory or the HTML."""
        self.prepared = prepared
        self.doc = prepared.doc
        self.placeholder.hide()
        self.header.show()
        self.warning.setText("\n".join(prepared.warnings))
        self.warning.setVisible(bool(prepared.warnings))
        while self.header_form.rowCount():
            self.header_form.removeRow(0)
        for k, v in prepared.rows:
            label = QLabel(v)
            label.setWordWrap(True)
            label.setAccessibleName(k)
            self.header_form.addRow(k, label)
        if self._pdf is not None:
            self._pdf.close()
        if prepared.is_pdf:
            if self._buffer is not None:
                self._buffer.close()
                self._buffer.deleteLater()
            self._buffer = QBuffer(self)
            self._buffer.setData(QByteArray(prepared.content))
            self._buffer.open(QIODevice.OpenModeFlag.ReadOnly)
            self.pdf.load(self._buffer)
            self.text.hide()
            self.pdf_view.show()
        else:
            if prepared.content:  # level 1, text
                self.text.setPlainText(prepared.content.decode("utf-8", "replace"))
            else:  # structured: the narrative rendered on the worker
                self.text.setHtml(prepared.html)
            if self._pdf_view is not None:
                self._pdf_view.hide()
            self.text.show()
