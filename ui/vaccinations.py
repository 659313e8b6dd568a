"""Vaccinations of the open patient (10.1, 10.7): the history table (date, vaccine, diseases, dose, lot,
vaccinator, source) read through the core (cancellable), and « Enregistrer une vaccination »: a one-screen
form that builds and deposits one VAC-NOTE per act (10.2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QDateEdit,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ui.journal_queue import RowsModel

ATTESTATION_BUTTON = "Imprimer l'attestation"
ATTESTATION_TITLE = "Attestation de vaccination"


def attestation_html(patient: str, fields: dict[str, Any], vaccinator: str, structure: str) -> str:
    """10.6 (R5125-33-9): the vaccination certificate handed to the patient: vaccine, lot, date, dose, who
    vaccinated, where. Plain HTML for ``QTextDocument`` (printed A4 portrait, 7.5)."""
    from html import escape

    date = fields["date"]
    when = date.strftime("%d/%m/%Y") if isinstance(date, dt.date) else str(date)
    rows = [
        ("Patient", patient),
        ("Vaccin", f"{fields['vaccine_label']} (CIS {fields['cis_code']}, ATC {fields['atc_code']})"),
        ("Numéro de lot", fields["lot_number"]),
        ("Date de vaccination", when),
        ("Rang de la dose", str(fields.get("dose_rank") or "—")),
        ("Vacciné par", vaccinator),
        ("Lieu", structure),
    ]
    body = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return (
        f"<h2>{ATTESTATION_TITLE}</h2><table cellpadding='4'>{body}</table>"
        "<p>Vaccination enregistrée dans le Dossier Médical Partagé (Mon espace santé) du patient.</p>"
        "<p>Signature et cachet :</p>"
    )


def immunization_row(imm: Any) -> tuple[str, ...]:
    date = imm.date
    try:
        date = dt.date.fromisoformat(imm.date).strftime("%d/%m/%Y")
    except ValueError:
        pass
    return (
        date,
        imm.vaccine_label or imm.atc_label,
        ", ".join(imm.antigens),
        str(imm.dose_rank or ""),
        imm.lot_number,
        imm.performer,
        "administré" if imm.given else "non administré",
    )


class VaccinationPage(QWidget):
    refresh_requested = Signal()
    record_requested = Signal(dict)  # VaccinationInput fields

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Vaccinations")
        lay = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.refresh = QPushButton("Lire l'historique de vaccination")
        self.refresh.setAccessibleName("Lire l'historique de vaccination")
        self.summary = QLabel("")
        bar.addWidget(self.refresh)
        bar.addWidget(self.summary, 1)
        lay.addLayout(bar)
        self.model = RowsModel(("Date", "Vaccin", "Maladies", "Rang", "Lot", "Vacciné par", "Statut"))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAccessibleName("Historique de vaccination")
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(self.table, 1)
        box = QGroupBox("Enregistrer une vaccination")
        form = QFormLayout(box)
        self.cis = QLineEdit()
        self.label = QLineEdit()
        self.atc = QLineEdit()
        self.lot = QLineEdit()
        self.date = QDateEdit(QDate.currentDate())
        self.date.setCalendarPopup(True)
        self.date.setDisplayFormat("dd/MM/yyyy")
        self.date.setMaximumDate(QDate.currentDate())
        self.rank = QSpinBox()
        self.rank.setRange(0, 10)
        self.rank.setSpecialValueText("—")
        for text, w in (
            ("Code CIS du vaccin", self.cis),
            ("Vaccin", self.label),
            ("Code ATC", self.atc),
            ("Numéro de lot", self.lot),
            ("Date de vaccination", self.date),
            ("Rang de la dose", self.rank),
        ):
            w.setAccessibleName(text)
            form.addRow(text, w)
        # 10.4: the vaccinator and who records are both authors of the note; the core signs with the card
        # in the reader, so both are the signed-in professional (no one else can be named here).
        self.vaccinator = QLabel("")
        self.vaccinator.setAccessibleName("Vacciné par")
        form.addRow("Vacciné par", self.vaccinator)
        self.recorder = QLabel("")
        self.recorder.setAccessibleName("Saisi par")
        form.addRow("Saisi par", self.recorder)
        self.record = QPushButton("Enregistrer une vaccination")
        self.record.setAccessibleName("Enregistrer la vaccination dans le DMP")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setAccessibleName("Résultat de l'enregistrement")
        self.attestation = QPushButton(ATTESTATION_BUTTON)
        self.attestation.setAccessibleName(ATTESTATION_BUTTON)
        self.attestation.setEnabled(False)  # after a vaccination was recorded
        self.last_attestation = ""
        row = QHBoxLayout()
        row.addWidget(self.record)
        row.addWidget(self.attestation)
        form.addRow(row)
        form.addRow(self.result)
        lay.addWidget(box)
        self.refresh.clicked.connect(self.refresh_requested)
        self.record.clicked.connect(self._record)
        self.attestation.clicked.connect(self._print_dialog)

    def set_professional(self, who: str) -> None:
        """The signed-in professional: vaccinator and recorder by default (10.4)."""
        self.vaccinator.setText(who)
        self.recorder.setText(who)

    def show_immunizations(self, items: list[Any]) -> None:
        items = sorted(items, key=lambda i: i.date, reverse=True)
        self.model.set_rows([immunization_row(i) for i in items], items)
        self.summary.setText(f"{len(items)} vaccination(s)")
        self.table.resizeColumnsToContents()

    def missing(self) -> list[str]:
        return [
            name
            for name, w in (
                ("code CIS", self.cis),
                ("vaccin", self.label),
                ("code ATC", self.atc),
                ("lot", self.lot),
            )
            if not w.text().strip()
        ]

    def _record(self) -> None:
        missing = self.missing()
        if missing:
            self.show_result("À compléter : " + ", ".join(missing) + ".", ok=False)
            return
        self.record.setEnabled(False)
        self.result.setText("Enregistrement en cours…")
        self.record_requested.emit(
            {
                "cis_code": self.cis.text().strip(),
                "vaccine_label": self.label.text().strip(),
                "atc_code": self.atc.text().strip().upper(),
                "lot_number": self.lot.text().strip(),
                "date": self.date.date().toPython(),
                "dose_rank": self.rank.value() or None,
            }
        )

    def recorded(self, patient: str, fields: dict[str, Any], structure: str) -> None:
        """A vaccination was recorded: its attestation can be printed (10.6)."""
        self.last_attestation = attestation_html(patient, fields, self.vaccinator.text(), structure)
        self.attestation.setEnabled(True)

    def print_attestation(self, printer: Any) -> None:
        """Print the last attestation on ``printer`` (A4 portrait)."""
        from PySide6.QtGui import QPageLayout, QPageSize, QTextDocument

        printer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
        printer.setPageOrientation(QPageLayout.Orientation.Portrait)
        doc = QTextDocument()
        doc.setHtml(self.last_attestation)
        doc.print_(printer)

    def _print_dialog(self) -> None:
        from PySide6.QtPrintSupport import QPrintDialog, QPrinter

        printer = QPrinter(QPrinter.PrinterMode.HighResolution)
        dialog = QPrintDialog(printer, self)
        dialog.setWindowTitle(ATTESTATION_TITLE)
        if dialog.exec() == QPrintDialog.DialogCode.Accepted:
            self.print_attestation(printer)

    def show_result(self, text: str, *, ok: bool) -> None:
        self.record.setEnabled(True)
        self.result.setText(text)
        self.result.setStyleSheet("color: #1e7b34;" if ok else "color: #a40000;")
