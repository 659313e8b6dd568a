"""Secretary batch deposit (issue 11 §6): many PDFs at once, a table of per-file metadata (type, title,
date, patient), a progress bar, failures kept in the table to fix and resend. In AIR mode (establishment
session, no card) the author is the doctor she deposits for, chosen from a list (:data:`AUTHORS_FILE`).

The rows are plain data (:class:`BatchRow`); sending runs on the session's worker (one operation per
file, progress per file, cancellable) through ``PatientHandle.deposit``. Each row is fixed in place: the
type with the searchable picker of the deposit page (label and code, :class:`ui.pickers.TypePicker`), the
date with a calendar, the patient with a picker of the patients known in this session (« Patient ouvert »
first, then the ones opened before or already assigned), through item delegates."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QDate,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cda.build import AuthorInput
from cda.errors import CdaError
from ui import labels as L
from ui.deposit import DEFAULT_TYPE, dmp_types
from ui.pickers import TypePicker

# [I] The doctors a secretary deposits for in AIR mode: a list kept in the agent's home, one TOML table per
# doctor with the keys of ``cda.build.AuthorInput`` (``[[auteur]] id_nat = "8…" family_name = …``). The
# core's settings have no such key yet; the window reads this file, validates each entry with the CDA
# author rules and shows the ones that pass.
AUTHORS_FILE = "ui-auteurs.toml"

COLUMNS = ("Fichier", "Type", "Titre", "Date de l'acte", "Patient", "État")
COL_FILE, COL_TYPE, COL_TITLE, COL_DATE, COL_PATIENT, COL_STATE = range(6)

STATE_READY = "À envoyer"
STATE_SENDING = "Envoi…"
STATE_DONE = "Enregistré"
STATE_WAITING = "En attente (file d'envoi)"
STATE_FAILED = "Refusé"
OPEN_PATIENT_PREFIX = "Patient ouvert : "


@dataclass
class BatchRow:
    """One file of the batch and its metadata; ``patient`` is the ``OpenPatient`` it is filed for."""

    name: str
    content: bytes
    type_code: str = DEFAULT_TYPE
    title: str = ""
    date: str = ""  # YYYY-MM-DD, date of the act (serviceStartTime)
    patient: Any = None
    state: str = STATE_READY
    message: str = ""
    rubric: str = field(default="", compare=False)

    @property
    def pending(self) -> bool:
        return self.state in (STATE_READY, STATE_FAILED)

    def problems(self) -> list[str]:
        """What must be fixed before sending (French), checked in the window before any network."""
        out = []
        if not self.content.startswith(b"%PDF-"):
            out.append("le fichier n'est pas un PDF")
        if not self.title.strip():
            out.append("titre vide")
        try:
            if dt.date.fromisoformat(self.date) > dt.date.today():
                out.append("date de l'acte dans le futur")
        except ValueError:
            out.append("date de l'acte invalide (AAAA-MM-JJ)")
        if self.patient is None:
            out.append("aucun patient")
        elif not self.patient.identity.qualified:
            out.append("identité du patient non qualifiée")
        return out


def load_authors(home: Path) -> tuple[list[tuple[str, AuthorInput]], list[str]]:
    """(label, author) of each valid entry of ``home/AUTHORS_FILE`` and the French errors of the others."""
    path = home / AUTHORS_FILE
    if not path.is_file():
        return [], []
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return [], [f"{path.name} illisible : {exc}"]
    authors: list[tuple[str, AuthorInput]] = []
    errors: list[str] = []
    for i, entry in enumerate(raw.get("auteur", []), 1):
        try:
            a = AuthorInput.from_dict(entry).checked()
        except (CdaError, TypeError, AttributeError) as exc:
            errors.append(f"{path.name}, auteur n° {i} : {getattr(exc, 'message_fr', exc)}")
            continue
        authors.append((f"Dr {a.given_name.title()} {a.family_name} — {a.organization_name}", a))
    return authors, errors


class BatchModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[BatchRow] = []
        self.type_labels = dict(dmp_types())

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        r, c = self.rows[index.row()], index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            if c == COL_FILE:
                return r.name
            if c == COL_TYPE:
                if role == Qt.ItemDataRole.EditRole:
                    return r.type_code
                return f"{self.type_labels.get(r.type_code, '?')} ({r.type_code})"
            if c == COL_TITLE:
                return r.title
            if c == COL_DATE:
                return r.date
            if c == COL_PATIENT:
                return r.patient.identity.display if r.patient is not None else "—"
            if c == COL_STATE:
                return f"{r.state} : {r.message}" if r.message else r.state
        if role == Qt.ItemDataRole.BackgroundRole and c == COL_STATE:
            if r.state == STATE_FAILED:
                return QColor("#fdecea")
            if r.state == STATE_DONE:
                return QColor("#e6f4ea")
        if role == Qt.ItemDataRole.ToolTipRole and c == COL_STATE:
            return r.message or None
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid() and index.column() in (COL_TYPE, COL_TITLE, COL_DATE, COL_PATIENT):
            if self.rows[index.row()].pending:
                return base | Qt.ItemFlag.ItemIsEditable
        return base

    def setData(self, index: QModelIndex | QPersistentModelIndex, value: Any, role: int = 2) -> bool:
        if not index.isValid() or role != Qt.ItemDataRole.EditRole:
            return False
        r = self.rows[index.row()]
        if index.column() == COL_PATIENT:  # an OpenPatient (from the picker)
            if value is None or not hasattr(value, "identity") or not hasattr(value, "handle"):
                return False
            r.patient = value
            return self._changed(index.row(), r)
        text = str(value).strip()
        if index.column() == COL_TYPE:
            if text not in self.type_labels:
                return False
            r.type_code = text
        elif index.column() == COL_TITLE:
            r.title = text
        elif index.column() == COL_DATE:
            r.date = text
        else:
            return False
        return self._changed(index.row(), r)

    def _changed(self, row: int, r: BatchRow) -> bool:
        if r.state == STATE_FAILED:  # fixed by the user: ready to resend
            r.state, r.message = STATE_READY, ""
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        return True

    def add(self, rows: list[BatchRow]) -> None:
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(rows) - 1)
        self.rows.extend(rows)
        self.endInsertRows()

    def refresh(self) -> None:
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(COLUMNS) - 1))


def patient_key(patient: Any) -> str:
    return str(patient.identity.ins)


class TypeDelegate(QStyledItemDelegate):
    """The type cell edited with the deposit page's searchable picker (label and code)."""

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QWidget:
        picker = TypePicker(parent)
        picker.setAccessibleName("Type de document du fichier")
        return picker

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, TypePicker)
        editor.set_code(str(index.data(Qt.ItemDataRole.EditRole)))

    def setModelData(
        self, editor: QWidget, model: QAbstractItemModel, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        assert isinstance(editor, TypePicker)
        code = editor.code()
        if code is not None:  # a text naming no type leaves the cell as it was
            model.setData(index, code, Qt.ItemDataRole.EditRole)


class DateDelegate(QStyledItemDelegate):
    """The date of the act with a calendar, never after today."""

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QWidget:
        editor = QDateEdit(parent)
        editor.setCalendarPopup(True)
        editor.setDisplayFormat("dd/MM/yyyy")
        editor.setMaximumDate(QDate.currentDate())
        editor.setAccessibleName("Date de l'acte")
        return editor

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QDateEdit)
        d = QDate.fromString(str(index.data(Qt.ItemDataRole.EditRole)), "yyyy-MM-dd")
        editor.setDate(d if d.isValid() else QDate.currentDate())

    def setModelData(
        self, editor: QWidget, model: QAbstractItemModel, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        assert isinstance(editor, QDateEdit)
        model.setData(index, editor.date().toString("yyyy-MM-dd"), Qt.ItemDataRole.EditRole)


class PatientDelegate(QStyledItemDelegate):
    """The patient cell: a picker of the patients ``choices()`` gives ((label, OpenPatient), …)."""

    def __init__(self, choices: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.choices = choices

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QWidget:
        combo = QComboBox(parent)
        combo.setAccessibleName("Patient du fichier")
        for label, patient in self.choices():
            combo.addItem(label, patient)
        return combo

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        model = index.model()
        current = model.rows[index.row()].patient if isinstance(model, BatchModel) else None
        for i in range(editor.count()):
            if current is not None and editor.itemData(i) is current:
                editor.setCurrentIndex(i)
                return

    def setModelData(
        self, editor: QWidget, model: QAbstractItemModel, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        assert isinstance(editor, QComboBox)
        patient = editor.currentData()
        if patient is not None:
            model.setData(index, patient, Qt.ItemDataRole.EditRole)


class BatchPage(QWidget):
    """The secretary's batch. ``send_requested(list[int])``: the rows to send (the window runs them)."""

    send_requested = Signal(list)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Dépôt par lot")
        self.setAcceptDrops(True)
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        self.add_btn = QPushButton("Ajouter des PDF…")
        self.add_btn.setAccessibleName("Ajouter des fichiers PDF au lot")
        self.assign_btn = QPushButton("Affecter au patient ouvert")
        self.assign_btn.setAccessibleName("Affecter les lignes choisies au patient ouvert")
        head.addWidget(self.add_btn)
        head.addWidget(self.assign_btn)
        head.addStretch(1)
        self.author_label = QLabel("Pour le médecin :")
        self.author = QComboBox()
        self.author.setAccessibleName("Médecin pour qui le lot est déposé")
        head.addWidget(self.author_label)
        head.addWidget(self.author)
        lay.addLayout(head)
        self.author_note = QLabel("")
        self.author_note.setWordWrap(True)
        self.author_note.setStyleSheet("color: #a40000;")
        self.author_note.hide()
        lay.addWidget(self.author_note)
        self.model = BatchModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAccessibleName("Fichiers du lot")
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(
            QTableView.EditTrigger.DoubleClicked
            | QTableView.EditTrigger.EditKeyPressed
            | QTableView.EditTrigger.SelectedClicked
        )
        self.type_delegate = TypeDelegate(self.table)
        self.date_delegate = DateDelegate(self.table)
        self.patient_delegate = PatientDelegate(self.patient_choices, self.table)
        self.table.setItemDelegateForColumn(COL_TYPE, self.type_delegate)
        self.table.setItemDelegateForColumn(COL_DATE, self.date_delegate)
        self.table.setItemDelegateForColumn(COL_PATIENT, self.patient_delegate)
        lay.addWidget(self.table, 1)
        self.help = QLabel(
            "Corrigez une ligne sur place (F2 ou double-clic) : type (recherche par libellé ou code), titre, "
            "date, patient ; une ligne refusée corrigée repasse « À envoyer »."
        )
        self.help.setWordWrap(True)
        lay.addWidget(self.help)
        foot = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Progression du lot")
        self.progress.setFormat("%v / %m")
        self.progress.setValue(0)
        self.send = QPushButton("Envoyer le lot")
        self.send.setAccessibleName("Envoyer les fichiers à envoyer et les refusés corrigés")
        self.summary = QLabel("")
        self.summary.setAccessibleName("Bilan du lot")
        foot.addWidget(self.progress, 1)
        foot.addWidget(self.send)
        lay.addLayout(foot)
        lay.addWidget(self.summary)
        self.patient: Any = None
        self.known: list[Any] = []  # the patients opened in this session (OpenPatient), oldest first
        self.add_btn.clicked.connect(self._choose)
        self.assign_btn.clicked.connect(self.assign_selected)
        self.send.clicked.connect(self._send)
        self.set_authors(None)

    # ------------------------------------------------------------------ authors (AIR)
    def set_authors(self, authors: list[tuple[str, AuthorInput]] | None, errors: Sequence[str] = ()) -> None:
        """None: a card session (the author is the card holder, no choice). A list: AIR mode."""
        self.author.clear()
        air = authors is not None
        self.author.setVisible(air)
        self.author_label.setVisible(air)
        for label, a in authors or []:
            self.author.addItem(label, a)
        note = list(errors)
        if air and not authors:
            note.insert(0, L.BATCH_NO_AUTHORS)
        self.author_note.setText("\n".join(note))
        self.author_note.setVisible(bool(note))

    def chosen_author(self) -> AuthorInput | None:
        data = self.author.currentData()
        return data if isinstance(data, AuthorInput) else None

    # ------------------------------------------------------------------ files
    def add_files(self, paths: list[Path]) -> None:
        today = dt.date.today().isoformat()
        rows = []
        for p in paths:
            try:
                content = p.read_bytes()
            except OSError as exc:
                unreadable = f"fichier illisible : {exc.strerror}"
                rows.append(BatchRow(p.name, b"", title=p.stem, date=today, patient=self.patient,
                                     state=STATE_FAILED, message=unreadable))  # fmt: skip
                continue
            rows.append(BatchRow(p.name, content, title=p.stem.replace("_", " "), date=today,
                                 patient=self.patient))  # fmt: skip
        self.model.add(rows)
        self._update_send()

    def _choose(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Choisir des PDF", "", "PDF (*.pdf)")
        self.add_files([Path(n) for n in names])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.add_files([Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()])

    def set_patient(self, patient: Any) -> None:
        """The patient open in the window (qualified, may deposit): new files are filed for it, it joins the
        patients the picker offers; « Affecter » moves selected rows."""
        self.patient = patient
        self.assign_btn.setEnabled(patient is not None)
        if patient is not None:
            self.known = [p for p in self.known if patient_key(p) != patient_key(patient)] + [patient]

    def forget_patients(self) -> None:
        """A new session: the patients (and their DMP handles) of the previous one are no longer offered,
        and the rows still to send lose theirs (to choose again)."""
        self.known = []
        self.patient = None
        for r in self.model.rows:
            if r.pending:
                r.patient = None
        self.model.refresh()

    def patient_choices(self) -> list[tuple[str, Any]]:
        """(label, OpenPatient): « Patient ouvert » first, then the others known or assigned in the table."""
        seen: dict[str, Any] = {}
        assigned = [r.patient for r in self.model.rows if r.pending and r.patient is not None]
        ordered = [*reversed(self.known), *assigned]
        if self.patient is not None:
            ordered.insert(0, self.patient)
        for p in ordered:
            seen.setdefault(patient_key(p), p)
        out = []
        for key, p in seen.items():
            label = f"{p.identity.display} — INS {key}"
            if self.patient is not None and key == patient_key(self.patient):
                label = OPEN_PATIENT_PREFIX + label
            out.append((label, p))
        return out

    def assign_selected(self) -> None:
        rows = {i.row() for i in self.table.selectionModel().selectedRows()}
        for i in rows:
            r = self.model.rows[i]
            if r.pending:
                r.patient = self.patient
                if r.state == STATE_FAILED:
                    r.state, r.message = STATE_READY, ""
        self.model.refresh()

    # ------------------------------------------------------------------ sending
    def pending_rows(self) -> list[int]:
        return [i for i, r in enumerate(self.model.rows) if r.pending]

    def _update_send(self) -> None:
        self.send.setEnabled(bool(self.pending_rows()))

    def _send(self) -> None:
        rows = self.pending_rows()
        if not rows:
            return
        self.progress.setRange(0, len(rows))
        self.progress.setValue(0)
        self.send.setEnabled(False)
        self.send_requested.emit(rows)

    def row_done(self, index: int, state: str, message: str = "") -> None:
        r = self.model.rows[index]
        r.state, r.message = state, message
        self.model.refresh()
        self.progress.setValue(self.progress.value() + 1)

    def finished(self) -> None:
        rows = self.model.rows
        done = sum(r.state == STATE_DONE for r in rows)
        failed = sum(r.state == STATE_FAILED for r in rows)
        waiting = sum(r.state == STATE_WAITING for r in rows)
        self.summary.setText(L.BATCH_SUMMARY.format(done=done, failed=failed, waiting=waiting))
        self._update_send()
