"""Deposit a PDF: drop it on the page (or choose it), pick the document type (searchable: label and
code), see where it lands (DMP rubric and Mon espace santé) before sending, title prefilled and editable,
visibility choices with their exclusion explained, the validation findings in French, then the result."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cda import valuesets as vs
from cda.classify import classify_type
from ui import labels as L

DEFAULT_TYPE = (
    "11488-4"  # [I] preselected type: « CR ou fiche de consultation ou de visite », a GP's commonest letter
)


def dmp_types() -> list[tuple[str, str]]:
    """(code, label) of every type the DMP accepts, sorted by label."""
    return sorted(
        ((c, r.label) for c, r in vs.document_types().items() if r.dmp_accepted), key=lambda x: x[1]
    )


class DepositPage(QWidget):
    send_requested = Signal(bytes, str, str, object)  # pdf, type code, title, Visibility

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Dépôt d'un document")
        self.setAcceptDrops(True)
        self.pdf: bytes = b""
        lay = QVBoxLayout(self)
        self.replacing: Any = None  # the DocumentEntry a new version replaces (9.4), None for a new document
        replace_row = QHBoxLayout()
        self.replacing_note = QLabel("")
        self.replacing_note.setWordWrap(True)
        self.replacing_note.setAccessibleName("Remplacement d'un document")
        self.replacing_note.setStyleSheet("background: #e8f0fe; padding: 6px;")
        self.cancel_replace = QPushButton(L.REPLACE_CANCEL)
        self.cancel_replace.setAccessibleName(L.REPLACE_CANCEL)
        replace_row.addWidget(self.replacing_note, 1)
        replace_row.addWidget(self.cancel_replace)
        lay.addLayout(replace_row)
        self.replacing_note.hide()
        self.cancel_replace.hide()
        self.drop = QLabel("Déposez un PDF ici, ou choisissez un fichier.")
        self.drop.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.drop.setMinimumHeight(60)
        self.drop.setStyleSheet("border: 2px dashed #888; padding: 12px;")
        self.drop.setAccessibleName("Zone de dépôt du fichier")
        lay.addWidget(self.drop)
        self.choose = QPushButton("Choisir un fichier…")
        self.choose.setAccessibleName("Choisir un fichier PDF")
        lay.addWidget(self.choose)
        form = QFormLayout()
        self.type = QComboBox()
        self.type.setEditable(True)
        self.type.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.type.setAccessibleName("Type de document")
        for code, label in dmp_types():
            self.type.addItem(f"{label} ({code})", code)
        completer = QCompleter(self.type.model(), self.type)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.type.setCompleter(completer)
        form.addRow("Type de document", self.type)
        self.rubric = QLabel("")
        self.rubric.setAccessibleName("Rubrique de destination")
        self.rubric.setWordWrap(True)
        form.addRow("Classé dans", self.rubric)
        self.title = QLineEdit()
        self.title.setAccessibleName("Titre du document")
        form.addRow("Titre", self.title)
        self.author = QComboBox()  # establishment mode only: the doctor the document is deposited for
        self.author.setAccessibleName(L.DEPOSIT_FOR)
        self.author_label = QLabel(L.DEPOSIT_FOR)
        form.addRow(self.author_label, self.author)
        self.author.hide()
        self.author_label.hide()
        self.air = False
        self.masked = QCheckBox(L.VIS_MASKED)
        self.invisible_patient = QCheckBox(L.VIS_INVISIBLE_PATIENT)
        self.invisible_reps = QCheckBox(L.VIS_INVISIBLE_REPS)
        for c in (self.masked, self.invisible_patient, self.invisible_reps):
            c.setAccessibleName(c.text())
            form.addRow("", c)
        # 5.2: for a minor without the secret connection, an explicit choice replaces the checkbox
        self.reps_choice = QComboBox()
        self.reps_choice.setAccessibleName(L.MINOR_REPS_LABEL)
        self.reps_choice.addItem(L.MINOR_REPS_CHOOSE, None)
        self.reps_choice.addItem(L.MINOR_REPS_VISIBLE, False)
        self.reps_choice.addItem(L.VIS_INVISIBLE_REPS, True)
        self.reps_label = QLabel(L.MINOR_REPS_LABEL)
        form.addRow(self.reps_label, self.reps_choice)
        self.reps_label.hide()
        self.reps_choice.hide()
        self.minor = False
        self.secret = False
        self.vis_note = QLabel(L.VIS_EXCLUSION)
        self.vis_note.setWordWrap(True)
        form.addRow("", self.vis_note)
        lay.addLayout(form)
        self.findings = QListWidget()
        self.findings.setAccessibleName("Vérifications avant envoi")
        lay.addWidget(QLabel("Vérifications"))
        lay.addWidget(self.findings)
        self.notified = QLabel(L.DEPOSIT_NOTIFIED)
        lay.addWidget(self.notified)
        row = QHBoxLayout()
        self.send = QPushButton(L.DEPOSIT_SEND)
        self.send.setAccessibleName(L.DEPOSIT_SEND)
        self.disabled_reason = QLabel("")
        self.disabled_reason.setWordWrap(True)
        self.disabled_reason.setStyleSheet("color: #9a5b00;")
        row.addWidget(self.send)
        row.addWidget(self.disabled_reason, 1)
        lay.addLayout(row)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setAccessibleName("Résultat du dépôt")
        lay.addWidget(self.result)
        self.type.currentIndexChanged.connect(self._type_changed)
        self.masked.toggled.connect(self._exclusive)
        self.invisible_patient.toggled.connect(self._exclusive)
        self.reps_choice.currentIndexChanged.connect(self._reps_chosen)
        self.choose.clicked.connect(self._choose)
        self.cancel_replace.clicked.connect(lambda: self.set_replacing(None))
        self.send.clicked.connect(self._send)
        self.blocked_reason = ""
        self.type.setCurrentIndex(max(0, self.type.findData(DEFAULT_TYPE)))
        self._type_changed()

    # ------------------------------------------------------------------ inputs
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].toLocalFile().lower().endswith(".pdf"):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.load_file(Path(urls[0].toLocalFile()))

    def _choose(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Choisir un PDF", "", "Documents PDF (*.pdf)")
        if name:
            self.load_file(Path(name))

    def load_file(self, path: Path) -> None:
        data = path.read_bytes()
        self.set_pdf(data, path.name)

    def set_pdf(self, data: bytes, name: str) -> None:
        self.pdf = data
        self.drop.setText(f"{name} — {len(data) // 1024 + 1} Ko")
        self.result.setText("")
        self.refresh()

    def type_code(self) -> str:
        return str(self.type.currentData() or "")

    def _type_changed(self, *_a: Any) -> None:
        code = self.type_code()
        if not code:
            return
        c = classify_type(code)
        mes = c.mes_rubric_label or "non affiché dans Mon espace santé"
        self.rubric.setText(f"DMP : « {c.dmp_rubric} » — Mon espace santé : « {mes} »")
        self.title.setText(f"{c.type_label} du {dt.date.today().strftime('%d/%m/%Y')}")
        self.refresh()

    def _exclusive(self, _checked: bool) -> None:
        # MASQUE_PS and INVISIBLE_PATIENT together are refused by the DMP (8.4)
        self.invisible_patient.setEnabled(not self.masked.isChecked())
        self.masked.setEnabled(not self.invisible_patient.isChecked())
        self.vis_note.setText(
            L.VIS_EXCLUSION + ("\n" + L.VIS_PATIENT_LATER if self.invisible_patient.isChecked() else "")
        )

    def visibility(self) -> Any:
        from ps_agent.dmp.model import Visibility

        return Visibility(
            masked_to_professionals=self.masked.isChecked(),
            invisible_to_patient=self.invisible_patient.isChecked(),
            invisible_to_legal_representatives=self.invisible_reps.isChecked(),
        )

    # ------------------------------------------------------------------ checks and sending
    def set_secret_connection(self, secret: bool) -> None:
        """Under a minor's secret connection only documents invisible to the legal representatives (5.2)."""
        self.secret = secret
        if secret:
            self.invisible_reps.setChecked(True)
        self.invisible_reps.setEnabled(not secret)
        self.invisible_reps.setToolTip(L.MINOR_CONFIDENTIAL_FORCED if secret else "")
        self.vis_note.setText(L.MINOR_CONFIDENTIAL_FORCED if secret else L.VIS_EXCLUSION)
        self._show_reps_choice()

    def set_minor(self, minor: bool) -> None:
        """A minor's record: without the secret connection, the visibility to the legal representatives must
        be chosen for each document (no default, 5.2)."""
        if minor != self.minor:
            self.minor = minor
            self.reps_choice.setCurrentIndex(0)
        self._show_reps_choice()

    def _show_reps_choice(self) -> None:
        choose = self.minor and not self.secret
        self.reps_label.setVisible(choose)
        self.reps_choice.setVisible(choose)
        self.invisible_reps.setVisible(not choose)
        self.refresh()

    def _reps_chosen(self, _index: int) -> None:
        value = self.reps_choice.currentData()
        if value is not None:
            self.invisible_reps.setChecked(bool(value))
        self.refresh()

    def set_authors(self, authors: list[tuple[str, Any]] | None) -> None:
        """None: a card session (the author is the card holder). A list of (label, AuthorInput): an
        establishment session, the author is chosen (``batch.load_authors``)."""
        self.air = authors is not None
        self.author.clear()
        for label, a in authors or []:
            self.author.addItem(label, a)
        self.author.setVisible(self.air)
        self.author_label.setVisible(self.air)
        self.refresh()

    def chosen_author(self) -> Any:
        return self.author.currentData() if self.air else None

    def set_replacing(self, entry: Any) -> None:
        """Prepare a new version of ``entry`` (same type, its title to edit), or go back to a new document."""
        self.replacing = entry
        self.replacing_note.setVisible(entry is not None)
        self.cancel_replace.setVisible(entry is not None)
        if entry is None:
            self.replacing_note.setText("")
            self._type_changed()
            return
        self.replacing_note.setText(L.REPLACING_NOTE.format(title=entry.title))
        index = self.type.findData(entry.type_code.code)
        if index >= 0:
            self.type.setCurrentIndex(index)
        self.title.setText(entry.title)
        self.result.setText("")
        self.refresh()

    def set_blocked(self, reason: str) -> None:
        """A reason why nothing may be sent (identity not qualified, DMP closed/opposed, centre 15)."""
        self.blocked_reason = reason
        self.refresh()

    def findings_list(self) -> list[tuple[str, str]]:
        """(severity, French message) found before sending."""
        out: list[tuple[str, str]] = []
        if not self.pdf:
            out.append(("error", "Aucun fichier : déposez un PDF ou choisissez-en un."))
        elif not self.pdf.startswith(b"%PDF-"):
            out.append(("error", "Le fichier n'est pas un PDF."))
        if not self.title.text().strip():
            out.append(("error", "Le titre est obligatoire : il doit refléter le contenu médical."))
        if not self.type_code():
            out.append(("error", "Choisissez un type de document dans la liste."))
        if self.air and self.chosen_author() is None:
            out.append(("error", L.DEPOSIT_NO_AUTHOR))
        if self.minor and not self.secret and self.reps_choice.currentData() is None:
            out.append(("error", L.MINOR_REPS_MISSING))
        return out

    def refresh(self) -> None:
        self.findings.clear()
        found = self.findings_list()
        for sev, msg in found:
            self.findings.addItem(("Erreur : " if sev == "error" else "Attention : ") + msg)
        if not found:
            self.findings.addItem("Aucune anomalie : prêt à envoyer.")
        errors = [f for f in found if f[0] == "error"]
        self.send.setEnabled(not errors and not self.blocked_reason)
        self.disabled_reason.setText(self.blocked_reason)

    def _send(self) -> None:
        if self.findings_list() or self.blocked_reason:
            self.refresh()
            return
        self.send.setEnabled(False)
        self.result.setText("Envoi en cours…")
        if self.minor and not self.secret:  # the next document gets its own choice
            self.reps_choice.blockSignals(True)
            self.reps_choice.setCurrentIndex(0)
            self.reps_choice.blockSignals(False)
        self.send_requested.emit(self.pdf, self.type_code(), self.title.text().strip(), self.visibility())

    def show_findings(self, messages: list[str]) -> None:
        """Findings of the full CDA check (built document) returned by the core/cda."""
        self.findings.clear()
        for m in messages:
            self.findings.addItem(m)

    def show_result(self, text: str, *, ok: bool) -> None:
        self.result.setText(text)
        self.result.setStyleSheet("color: #1e7b34;" if ok else "color: #a40000;")
        self.refresh()
