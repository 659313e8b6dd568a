"""Vaccinations of the open patient (10.1, 10.7): the history table (date, vaccine, diseases, dose, lot,
vaccinator, source) read through the core (cancellable), and « Enregistrer une vaccination »: a one-screen
form that builds and deposits one VAC-NOTE per act (10.2)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QCompleter,
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

from ui import labels as L
from ui.journal_queue import RowsModel

# [I] 10.8: gaps are shown only from this explicit, versioned rule table (no official French algorithm was
# found). Adult rules of the French vaccination calendar, kept deliberately few; each is said « à vérifier »
# because the DMP may not hold every dose the patient received.
GAP_RULES_VERSION = "calendrier des vaccinations 2025, règles adultes retenues par ps-agent (v1)"
TETANUS_INTERVAL_YEARS = ((65, 20), (200, 10))  # (below this age, interval in years): 25/45/65 then every 10
FLU_FROM_AGE = 65
FLU_SEASON_START = (10, 1)  # (month, day): a dose on/after this date counts for the season


def today() -> dt.date:
    """The date the rules are applied on (one seam for the tests)."""
    return dt.date.today()


def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _dose_date(imm: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(imm.date) if len(imm.date) == 10 else None
    except ValueError:
        return None


def vaccination_gaps(birth_date: str, immunizations: list[Any], on: dt.date | None = None) -> list[str]:
    """10.8: what ``GAP_RULES_VERSION`` says is due for this adult on ``on`` (default: today) and is not in
    the history (French)."""
    today_ = on or today()
    try:
        birth = dt.date.fromisoformat(birth_date)
    except ValueError:
        return []
    age = _age(birth, today_)
    if age < 25:
        return []
    given = [(d, imm) for imm in immunizations if imm.given and (d := _dose_date(imm)) is not None]
    out = []
    tetanus = [d for d, imm in given if "tétanos" in imm.antigens]
    interval = next(years for below, years in TETANUS_INTERVAL_YEARS if age < below)
    if not tetanus:
        out.append("Rappel diphtérie-tétanos-poliomyélite : aucune dose enregistrée dans le DMP.")
    else:
        last = max(tetanus)
        if _age(last, today_) >= interval:
            out.append(
                f"Rappel diphtérie-tétanos-poliomyélite : dernière dose le {last.strftime('%d/%m/%Y')}, "
                f"il y a {interval} ans ou plus (rappel tous les {interval} ans à cet âge)."
            )
    if age >= FLU_FROM_AGE:
        month, day = FLU_SEASON_START
        start = dt.date(
            today_.year if (today_.month, today_.day) >= (month, day) else today_.year - 1, month, day
        )
        if not any(d >= start and "grippe" in imm.antigens for d, imm in given):
            out.append(
                f"Grippe : aucune vaccination enregistrée pour la saison {start.year}-{start.year + 1} "
                f"(recommandée chaque année à partir de {FLU_FROM_AGE} ans)."
            )
    return out


def atc_choices() -> list[str]:
    """« J07CA01 — vaccin diphtérie, poliomyélite, tétanos (diphtérie, poliomyélite, tétanos) » for every
    vaccine ATC code of the project table (``cda.vaccinations``), searchable by code, label or disease."""
    from cda.vaccinations import atc_vaccines

    out = []
    for code, (label, antigens) in sorted(atc_vaccines().items()):
        if len(code) > 3:  # not the bare « J07 »
            out.append(f"{code} — {label}" + (f" ({', '.join(antigens)})" if antigens else ""))
    return out


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


RPPS_ID = re.compile(r"8\d{11}")  # PSIdNat of a professional with an RPPS (10.7 fallback)


def immunization_source(imm: Any, patient_authored: Mapping[str, bool]) -> str:
    """10.7: who the dose comes from — the patient (the source document is one the patient added:
    classCode 90 / patient author, ``documents.is_patient_authored``) or a professional; not said when the
    source document is not in the list read (``patient_authored``: uniqueId → added by the patient) and
    the vaccinator has no RPPS ([I] a performer identified by « 8 » + RPPS is a professional)."""
    known = patient_authored.get(imm.document_id)
    if known is None:
        return L.VAC_SOURCE_PS if RPPS_ID.fullmatch(imm.performer_id or "") else L.VAC_SOURCE_UNKNOWN
    return L.VAC_SOURCE_PATIENT if known else L.VAC_SOURCE_PS


def immunization_row(imm: Any, source: str = "") -> tuple[str, ...]:
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
        source,
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
        self.gaps = QLabel("")  # 10.8
        self.gaps.setWordWrap(True)
        self.gaps.setAccessibleName("Vaccinations à vérifier")
        self.gaps.setStyleSheet("background: #fff4e5; padding: 6px;")
        self.gaps.hide()
        lay.addWidget(self.gaps)
        self.model = RowsModel(
            ("Date", "Vaccin", "Maladies", "Rang", "Lot", "Vacciné par", "Statut", "Source")
        )
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
        self.atc.setPlaceholderText("code ATC, ou tapez la maladie (grippe, tétanos…)")
        completer = QCompleter(atc_choices(), self.atc)  # 10.6: the vaccine class, searchable
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.activated.connect(self._atc_chosen)
        self.atc.setCompleter(completer)
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

    def _atc_chosen(self, text: str) -> None:
        """A line of the list: the code goes in the field, the label (if still empty) in « Vaccin »."""
        code, _, rest = text.partition(" — ")
        self.atc.setText(code)
        if not self.label.text().strip():
            self.label.setText(rest.split(" (")[0])

    def set_professional(self, who: str) -> None:
        """The signed-in professional: vaccinator and recorder by default (10.4)."""
        self.vaccinator.setText(who)
        self.recorder.setText(who)

    def show_immunizations(
        self, items: list[Any], birth_date: str = "", patient_authored: Mapping[str, bool] | None = None
    ) -> None:
        """``patient_authored``: per document uniqueId of the list read, whether the patient added it (the
        « Source » column, 10.7)."""
        items = sorted(items, key=lambda i: i.date, reverse=True)
        sources = patient_authored or {}
        self.model.set_rows([immunization_row(i, immunization_source(i, sources)) for i in items], items)
        self.summary.setText(f"{len(items)} vaccination(s)")
        self.table.resizeColumnsToContents()
        gaps = vaccination_gaps(birth_date, items) if birth_date else []
        self.gaps.setText(f"À vérifier ({GAP_RULES_VERSION}) :\n" + "\n".join(gaps) if gaps else "")
        self.gaps.setVisible(bool(gaps))

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
                "atc_code": self.atc.text().partition(" — ")[0].strip().upper(),
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
