"""The journal page (audit trail: local times, French labels beside codes, who acted for whom,
« Vérifier l'intégrité ») and the queue page (deposit queue: states, reasons, resend, hand back).
Data come from the core through the services worker, never read from SQLite here."""

from __future__ import annotations

import datetime as dt
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ui import labels as L
from ui.documents import PARIS

ModelIndex = QModelIndex | QPersistentModelIndex

ACTION_FR = {
    "card.login": "Connexion carte",
    "dmp.status": "Statut du DMP",
    "dmp.consent": "Accord du patient",
    "dmp.search": "Recherche de documents",
    "dmp.retrieve": "Lecture d'un document",
    "dmp.deposit": "Dépôt",
    "dmp.emergency": "Accès en urgence",
    "dmp.emergency_end": "Fin de l'accès en urgence",
    "dmp.update": "Modification d'un document",
    "dmp.patient_list": "Liste des patients",
    "dmp.authorisations": "Professionnels autorisés",
    "dmp.mask": "Masquage d'un document",
    "dmp.unmask": "Démasquage d'un document",
    "dmp.make_visible": "Document rendu visible",
    "dmp.archive": "Archivage d'un document",
    "dmp.unarchive": "Désarchivage d'un document",
    "dmp.delete": "Suppression d'un document",
    "dmp.vaccination_status": "Lecture des vaccinations",
    "identity.validate": "Validation de l'identité",
    "segur.notice": "Information Ségur acceptée",
}
# What « Vérifier l'intégrité » proves (ps_agent.audit.journal: each record holds the SHA-256 of the previous
# one, and an anchor keeps the last hash, so a removed, changed or truncated record is detected).
JOURNAL_GUARANTEE = (
    "chaînage SHA-256 (chaque entrée scelle la précédente) et ancre de la dernière entrée : "
    "une entrée modifiée, supprimée ou retirée en fin de journal est détectée"
)
OUTCOME_FR = {"success": "réussi", "refused": "refusé", "error": "erreur", "pending": "en cours"}


def local_ts(value: str) -> str:
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S")


class RowsModel(QAbstractTableModel):
    """A read-only table of string rows; ``items`` keeps the object behind each row."""

    def __init__(self, headers: tuple[str, ...], parent: Any = None) -> None:
        super().__init__(parent)
        self.headers = headers
        self.rows: list[tuple[str, ...]] = []
        self.items: list[Any] = []

    def set_rows(self, rows: list[tuple[str, ...]], items: list[Any]) -> None:
        self.beginResetModel()
        self.rows, self.items = rows, items
        self.endResetModel()

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.headers[section]
        return None

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if index.isValid() and role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self.rows[index.row()][index.column()]
        return None


def journal_row(record: Any) -> tuple[str, ...]:
    e = record.event
    action = ACTION_FR.get(e.action, e.action)
    who = e.actor_name or e.actor_id_nat
    if e.on_behalf_of:
        who += f" pour {e.on_behalf_of}"
    outcome = OUTCOME_FR.get(e.outcome, e.outcome)
    if e.error_code:
        outcome += f" ({e.error_code})"
    mode = "" if e.access_mode == "normal" else e.access_mode.replace("_", " ")
    return (
        local_ts(record.timestamp),
        f"{action} [{e.action}]",
        who,
        e.patient_ins.split("^")[0],
        outcome,
        " ".join(p for p in (mode, e.rule_id, e.detail) if p),
    )


class JournalPage(QWidget):
    refresh_requested = Signal()
    verify_requested = Signal()
    export_requested = Signal(str, str)  # "fhir" | "csv", destination path

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Journal d'audit")
        lay = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.refresh = QPushButton("Actualiser")
        self.refresh.setAccessibleName("Actualiser le journal")
        self.verify = QPushButton("Vérifier l'intégrité")
        self.verify.setAccessibleName("Vérifier l'intégrité du journal")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setAccessibleName("Résultat de la vérification")
        self.export_fhir = QPushButton("Exporter (FHIR)")
        self.export_fhir.setAccessibleName("Exporter le journal au format FHIR AuditEvent")
        self.export_csv = QPushButton("Exporter (CSV)")
        self.export_csv.setAccessibleName("Exporter le journal au format CSV")
        bar.addWidget(self.refresh)
        bar.addWidget(self.verify)
        bar.addWidget(self.export_fhir)
        bar.addWidget(self.export_csv)
        bar.addWidget(self.result, 1)
        lay.addLayout(bar)
        self.model = RowsModel(
            ("Date (heure locale)", "Action", "Qui", "Patient (INS)", "Résultat", "Détail")
        )
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAccessibleName("Entrées du journal")
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(self.table)
        self.refresh.clicked.connect(self.refresh_requested)
        self.verify.clicked.connect(self.verify_requested)
        self.export_fhir.clicked.connect(lambda: self._ask_export("fhir"))
        self.export_csv.clicked.connect(lambda: self._ask_export("csv"))

    def _ask_export(self, fmt: str) -> None:
        from PySide6.QtWidgets import QFileDialog

        suffix, filt = (".json", "FHIR (*.json)") if fmt == "fhir" else (".csv", "CSV (*.csv)")
        path, _ = QFileDialog.getSaveFileName(self, "Exporter le journal", f"journal-ps-agent{suffix}", filt)
        if path:
            self.export_requested.emit(fmt, path)

    def show_records(self, records: list[Any]) -> None:
        records = sorted(records, key=lambda r: r.seq, reverse=True)
        self.model.set_rows([journal_row(r) for r in records], records)
        self.table.resizeColumnsToContents()

    def show_verification(self, result: Any) -> None:
        if result.ok:
            text = f"{result.message_fr} Garantie : {JOURNAL_GUARANTEE}."
        else:
            text = f"Journal altéré à partir de l'entrée n° {result.first_bad_seq} : {result.message_fr}"
        self.result.setText(text)
        self.result.setStyleSheet("color: #1e7b34;" if result.ok else "color: #a40000;")


def queue_row(entry: Any) -> tuple[str, ...]:
    state = str(getattr(entry.state, "value", entry.state))
    label = L.QUEUE_STATE_FR.get(state, state)
    when = ""
    if state == "waiting" and entry.next_try:
        when = dt.datetime.fromtimestamp(entry.next_try, PARIS).strftime("%H:%M:%S")
    return (
        local_ts(entry.updated),
        ", ".join(entry.titles),
        entry.patient_ins,
        label + (f" ({when})" if when else ""),
        entry.reason_fr,
        entry.on_behalf_of or entry.actor_id_nat,
    )


class QueuePage(QWidget):
    refresh_requested = Signal()
    resend_requested = Signal()
    hand_back_requested = Signal(str)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("File d'envoi")
        lay = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.refresh = QPushButton("Actualiser")
        self.refresh.setAccessibleName("Actualiser la file d'envoi")
        self.resend = QPushButton("Renvoyer maintenant")
        self.resend.setAccessibleName("Renvoyer les dépôts en attente")
        self.hand_back = QPushButton("Reprendre le document…")
        self.hand_back.setAccessibleName("Reprendre le document sélectionné")
        self.summary = QLabel("")
        for w in (self.refresh, self.resend, self.hand_back):
            bar.addWidget(w)
        bar.addWidget(self.summary, 1)
        lay.addLayout(bar)
        self.model = RowsModel(("Mis à jour", "Titre", "Patient (INS)", "État", "Pourquoi", "Auteur"))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAccessibleName("Dépôts de la file")
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(self.table)
        self.refresh.clicked.connect(self.refresh_requested)
        self.resend.clicked.connect(self.resend_requested)
        self.hand_back.clicked.connect(self._hand_back)

    def show_entries(self, entries: list[Any]) -> None:
        self.model.set_rows([queue_row(e) for e in entries], entries)
        active = [
            e for e in entries if str(getattr(e.state, "value", e.state)) in ("pending", "sending", "waiting")
        ]
        refused = [e for e in entries if str(getattr(e.state, "value", e.state)) == "refused"]
        self.summary.setText(f"{len(active)} en attente, {len(refused)} refusé(s)")
        self.table.resizeColumnsToContents()

    def _hand_back(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.hand_back_requested.emit(self.model.items[rows[0].row()].id)
