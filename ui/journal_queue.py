"""The journal page (audit trail: local times, French labels beside codes, who acted for whom,
« Vérifier l'intégrité ») and the queue page (deposit queue: states, reasons, resend, hand back).
Data come from the core through the services worker, never read from SQLite here."""

from __future__ import annotations

import datetime as dt
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QDate, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QHideEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ps_agent.audit.export import RecordFilter
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
    "auth.login": "Connexion",
    "dmp.deposit_batch": "Dépôt par lot",
    "dmp.vaccination": "Enregistrement d'une vaccination",
    "dmp.consent_remove": "Retrait de l'accord du patient",
    "identity.create": "Création d'une identité",
    "identity.edit": "Modification d'une identité",
    "identity.status": "Statut d'une identité",
    "insi.search": "Recherche INSi (traits)",
    "insi.vitale": "Recherche INSi (carte Vitale)",
    "insi.verify": "Vérification INSi",
}
# Families offered in the action filter beside the single actions (prefix match, RecordFilter.action).
ACTION_FAMILIES_FR = {
    "dmp.": "Toutes les actions sur le DMP",
    "identity.": "Toutes les actions sur l'identité",
    "insi.": "Tous les appels INSi",
}
ALL_ACTIONS = "Toutes les actions"
ALL_OUTCOMES = "Tous les résultats"
# [I] Rows shown on the journal page: the last 2,000 matching the filters (the export writes all of them).
JOURNAL_DISPLAY_LIMIT = 2000
# [I] Default period of the filter: none (the whole journal); ticking « Période » proposes the last 30 days.
DEFAULT_PERIOD_DAYS = 30
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


def read_journal(
    journal: Any, selection: RecordFilter, limit: int = JOURNAL_DISPLAY_LIMIT
) -> tuple[list[Any], int]:
    """(the last ``limit`` records the filter selects, how many it selects): worker side, streamed."""
    from collections import deque

    last: deque[Any] = deque(maxlen=limit)
    total = 0
    for record in journal.iter_records(**selection.query()):
        if selection.matches(record):
            last.append(record)
            total += 1
    return list(last), total


def export_journal_file(journal: Any, fmt: str, path: str, selection: RecordFilter | None) -> int:
    """Write the journal (or the selection) as FHIR or CSV to ``path``, created 0600 (it names patients);
    worker side. Returns the number of records written."""
    import os

    kw: dict[str, Any] = {} if selection is None else {"where": selection.matches, **selection.query()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        if fmt == "fhir":
            return int(journal.export_fhir(out, **kw))
        return int(journal.export_csv(out, **kw))


def read_for_pdf(journal: Any, selection: RecordFilter | None) -> tuple[list[Any], Any]:
    """(every record of the selection, or of the journal, in order; the chain verification): worker side."""
    kw: dict[str, Any] = {} if selection is None else selection.query()
    records = [r for r in journal.iter_records(**kw) if selection is None or selection.matches(r)]
    return records, journal.verify()


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=False)


def filter_description(selection: RecordFilter | None) -> str:
    """The selection in French, for the PDF's heading."""
    if selection is None or selection.empty:
        return "tout le journal"
    parts = []
    if selection.since is not None or selection.until is not None:
        start = selection.since.astimezone(PARIS).strftime("%d/%m/%Y") if selection.since else "…"
        end = (
            (selection.until.astimezone(PARIS) - dt.timedelta(days=1)).strftime("%d/%m/%Y")
            if selection.until
            else "…"
        )
        parts.append(f"période du {start} au {end}")
    if selection.text:
        parts.append(f"texte (professionnel, RPPS…) « {selection.text} »")
    if selection.action:
        parts.append(f"action {ACTION_FR.get(selection.action, ACTION_FAMILIES_FR.get(selection.action, ''))}"
                     f" [{selection.action}]")  # fmt: skip
    if selection.patient_ins:
        parts.append(f"patient (INS) {selection.patient_ins}")
    if selection.outcome:
        parts.append(f"résultat {OUTCOME_FR.get(selection.outcome, selection.outcome)}")
    return ", ".join(parts)


def journal_pdf_html(records: list[Any], verification: Any, selection: RecordFilter | None, made: str) -> str:
    """11.2: the traces of a selection (one professional over a period) as a printable page: the rows, each
    with its sequence number and its chain hash, and the integrity check of the whole journal."""
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{_esc(c)}</td>" for c in (str(r.seq), *journal_row(r)[:5], r.hash[:16]))
        + "</tr>"
        for r in records
    )
    if verification.ok:
        check = f"{verification.message_fr} Garantie : {JOURNAL_GUARANTEE}."
    else:
        check = (
            f"Journal altéré à partir de l'entrée n° {verification.first_bad_seq} : {verification.message_fr}"
        )
    last = records[-1] if records else None
    chain = (
        f"Dernière entrée exportée : n° {last.seq}, empreinte SHA-256 {last.hash}."
        if last
        else "Aucune entrée."
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("N°", "Date (heure locale)", "Action", "Qui", "Patient (INS)", "Résultat", "Empreinte")
    )
    return (
        f"<h2>{L.JOURNAL_PDF_TITLE}</h2>"
        f"<p>Sélection : {_esc(filter_description(selection))}. {len(records)} entrée(s). "
        f"Édité le {_esc(made)}.</p>"
        f"<p><b>Vérification de l'intégrité :</b> {_esc(check)}</p><p>{_esc(chain)}</p>"
        f'<table border="1" cellspacing="0" cellpadding="2"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def write_pdf(html_text: str, path: str) -> None:
    """The page as an A4 PDF at ``path``, created 0600 (it names patients). GUI thread (QTextDocument)."""
    import os

    from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument

    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    writer = QPdfWriter(path)
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageOrientation(QPageLayout.Orientation.Portrait)
    writer.setTitle(L.JOURNAL_PDF_TITLE)
    doc = QTextDocument()
    doc.setDefaultStyleSheet("body { font-size: 8pt; } td, th { font-size: 7pt; }")
    doc.setHtml(html_text)
    doc.print_(writer)
    os.chmod(path, 0o600)


class JournalPage(QWidget):
    """The journal with its filters (period in local days, action, patient, outcome, text). A change of
    filter asks the window to read again (``refresh_requested``; the text after a short pause); the
    export writes the selection (« Exporter la sélection ») or the whole journal."""

    refresh_requested = Signal()
    verify_requested = Signal()
    export_requested = Signal(
        str, str
    )  # "fhir" | "csv" | "pdf", destination path (selection: export_filter())

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
        self.export_pdf = QPushButton("Exporter (PDF)")
        self.export_pdf.setAccessibleName("Exporter le journal en PDF avec la vérification de l'intégrité")
        self.selection_only = QCheckBox("Exporter la sélection")
        self.selection_only.setAccessibleName("Exporter seulement les entrées filtrées")
        self.selection_only.setToolTip("Décoché : tout le journal est exporté.")
        bar.addWidget(self.refresh)
        bar.addWidget(self.verify)
        bar.addWidget(self.export_fhir)
        bar.addWidget(self.export_csv)
        bar.addWidget(self.export_pdf)
        bar.addWidget(self.selection_only)
        bar.addWidget(self.result, 1)
        lay.addLayout(bar)
        lay.addLayout(self._filter_bar())
        self.count = QLabel("")
        self.count.setAccessibleName("Nombre d'entrées affichées")
        lay.addWidget(self.count)
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
        self.export_pdf.clicked.connect(lambda: self._ask_export("pdf"))
        self.selection_only.setEnabled(False)

    def _filter_bar(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.period = QCheckBox("Période du")
        self.period.setAccessibleName("Filtrer par période")
        today = QDate.currentDate()
        self.date_from = QDateEdit(today.addDays(-DEFAULT_PERIOD_DAYS))
        self.date_to = QDateEdit(today)
        for w, name in ((self.date_from, "Début de la période"), (self.date_to, "Fin de la période")):
            w.setCalendarPopup(True)
            w.setDisplayFormat("dd/MM/yyyy")
            w.setAccessibleName(name)
            w.setEnabled(False)
        self.action = QComboBox()
        self.action.setAccessibleName("Filtrer par action")
        self.action.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.action.setMinimumContentsLength(24)  # long labels are read in the open list, not squeezed here
        self.action.addItem(ALL_ACTIONS, "")
        for code, label in ACTION_FAMILIES_FR.items():
            self.action.addItem(label, code)
        for code, label in sorted(ACTION_FR.items(), key=lambda kv: kv[1]):
            self.action.addItem(f"{label} [{code}]", code)
        self.patient = QLineEdit()
        self.patient.setPlaceholderText("INS du patient")
        self.patient.setAccessibleName("Filtrer par patient (INS)")
        self.patient.setMaximumWidth(170)
        self.open_patient_btn = QPushButton("Patient ouvert")
        self.open_patient_btn.setAccessibleName("Filtrer sur le patient ouvert")
        self.open_patient_btn.setEnabled(False)
        self.open_patient_ins = ""
        self.outcome = QComboBox()
        self.outcome.setAccessibleName("Filtrer par résultat")
        self.outcome.addItem(ALL_OUTCOMES, "")
        for code, label in OUTCOME_FR.items():
            self.outcome.addItem(label, code)
        self.text = QLineEdit()
        self.text.setPlaceholderText("Rechercher (nom, RPPS, motif, code, document…)")
        self.text.setAccessibleName("Filtrer par texte")
        self.clear_filters = QPushButton("Effacer les filtres")
        self.clear_filters.setAccessibleName("Effacer les filtres du journal")
        parts: tuple[QWidget, ...] = (
            self.period, self.date_from, QLabel("au"), self.date_to, self.action, self.patient,
            self.open_patient_btn, self.outcome, self.text,
        )  # fmt: skip
        for part in parts:
            row.addWidget(part)
        row.setStretchFactor(self.text, 1)
        row.addWidget(self.clear_filters)
        # a typed text or INS: read again after a pause; a choice: at once
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(300)
        self._debounce.timeout.connect(self._filters_changed)
        self.text.textChanged.connect(lambda _t: self._typed())
        self.patient.textChanged.connect(lambda _t: self._typed())
        self.period.toggled.connect(self._period_toggled)
        self.date_from.dateChanged.connect(lambda _d: self._filters_changed())
        self.date_to.dateChanged.connect(lambda _d: self._filters_changed())
        self.action.currentIndexChanged.connect(lambda _i: self._filters_changed())
        self.outcome.currentIndexChanged.connect(lambda _i: self._filters_changed())
        self.clear_filters.clicked.connect(self.reset_filters)
        self.open_patient_btn.clicked.connect(self._filter_open_patient)
        return row

    def set_open_patient(self, ins: str) -> None:
        """The patient open in the window: « Patient ouvert » fills the INS filter with it."""
        self.open_patient_ins = ins
        self.open_patient_btn.setEnabled(bool(ins))

    def _filter_open_patient(self) -> None:
        if self.open_patient_ins:
            self.filter_patient(self.open_patient_ins)
            self._filters_changed()

    def filter_patient(self, ins: str) -> None:
        """Set the patient filter to ``ins`` (the caller reads the journal again)."""
        self._debounce.stop()
        self.patient.blockSignals(True)
        self.patient.setText(ins.split("^", 1)[0])
        self.patient.blockSignals(False)
        self._update_selection_box()

    def _typed(self) -> None:
        if self.isVisible():  # hidden, the page is read again when shown (the window's tab change)
            self._debounce.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self._debounce.stop()
        super().hideEvent(event)

    def _period_toggled(self, on: bool) -> None:
        self.date_from.setEnabled(on)
        self.date_to.setEnabled(on)
        self._filters_changed()

    def _filters_changed(self) -> None:
        self._debounce.stop()
        self._update_selection_box()
        self.refresh_requested.emit()

    def _update_selection_box(self) -> None:
        """« Exporter la sélection » is offered (and ticked) as soon as a filter is active."""
        active = not self.current_filter().empty
        if active != self.selection_only.isEnabled():
            self.selection_only.setChecked(active)
        self.selection_only.setEnabled(active)

    def reset_filters(self) -> None:
        widgets = (self.period, self.action, self.outcome, self.text, self.patient, self.date_from,
                   self.date_to)  # fmt: skip
        for w in widgets:
            w.blockSignals(True)
        self.period.setChecked(False)
        self.date_from.setEnabled(False)
        self.date_to.setEnabled(False)
        self.action.setCurrentIndex(0)
        self.outcome.setCurrentIndex(0)
        self.text.clear()
        self.patient.clear()
        for w in widgets:
            w.blockSignals(False)
        self._filters_changed()

    def current_filter(self) -> RecordFilter:
        """The filters as the core's ``RecordFilter`` (local days → instants, ``until`` exclusive)."""
        since = until = None
        if self.period.isChecked():
            start, end = self.date_from.date(), self.date_to.date()
            if end < start:
                start, end = end, start
            since = dt.datetime(start.year(), start.month(), start.day(), tzinfo=PARIS)
            last = dt.date(end.year(), end.month(), end.day()) + dt.timedelta(days=1)
            until = dt.datetime(last.year, last.month, last.day, tzinfo=PARIS)
        return RecordFilter(
            since=since,
            until=until,
            action=str(self.action.currentData() or ""),
            patient_ins="".join(self.patient.text().split()),
            outcome=str(self.outcome.currentData() or ""),
            text=self.text.text().strip(),
        )

    def export_filter(self) -> RecordFilter | None:
        """The selection to export, None for the whole journal."""
        f = self.current_filter()
        return f if self.selection_only.isChecked() and not f.empty else None

    def _ask_export(self, fmt: str) -> None:
        from PySide6.QtWidgets import QFileDialog

        suffix, filt = {"fhir": (".json", "FHIR (*.json)"), "pdf": (".pdf", "PDF (*.pdf)")}.get(
            fmt, (".csv", "CSV (*.csv)")
        )
        name = "journal-ps-agent" + ("-selection" if self.export_filter() is not None else "") + suffix
        title = (
            "Exporter la sélection du journal" if self.export_filter() is not None else "Exporter le journal"
        )
        path, _ = QFileDialog.getSaveFileName(self, title, name, filt)
        if path:
            self.export_requested.emit(fmt, path)

    def show_records(self, records: list[Any], total: int | None = None) -> None:
        """The records to show (newest first); ``total``: how many matched when only the last are given."""
        records = sorted(records, key=lambda r: r.seq, reverse=True)
        self.model.set_rows([journal_row(r) for r in records], records)
        self.table.resizeColumnsToContents()
        total = len(records) if total is None else total
        filtered = not self.current_filter().empty
        text = f"{total} entrée(s)" + (" correspondant aux filtres" if filtered else "")
        if total > len(records):
            text += f" ; les {len(records)} plus récentes sont affichées (l'export les contient toutes)"
        self.count.setText(text + ".")

    def show_verification(self, result: Any) -> None:
        if result.ok:
            text = f"{result.message_fr} Garantie : {JOURNAL_GUARANTEE}."
        else:
            text = f"Journal altéré à partir de l'entrée n° {result.first_bad_seq} : {result.message_fr}"
        self.result.setText(text)
        self.result.setStyleSheet("color: #1e7b34;" if result.ok else "color: #a40000;")


def queue_state(entry: Any) -> str:
    return str(getattr(entry.state, "value", entry.state))


def queue_row(entry: Any) -> tuple[str, ...]:
    """Updated, titles, patient, state, why (French label + DMP code, 8.6), author, deposited by (14.4:
    the author professional and the person who deposited — the same one outside AIR/indirect mode)."""
    state = queue_state(entry)
    label = L.QUEUE_STATE_FR.get(state, state)
    when = ""
    if state == "waiting" and entry.next_try:
        when = dt.datetime.fromtimestamp(entry.next_try, PARIS).strftime("%H:%M:%S")
    why = entry.reason_fr
    code = getattr(entry, "reason_code", "")
    if code and code not in why:
        why = f"{why} [{code}]" if why else f"[{code}]"
    return (
        local_ts(entry.updated),
        ", ".join(entry.titles),
        entry.patient_ins,
        label + (f" ({when})" if when else ""),
        why,
        entry.on_behalf_of or entry.actor_id_nat,
        entry.actor_id_nat,
    )


def queue_late(entry: Any, today: dt.date) -> bool:
    """8.8: a deposit still waiting (pending / sending / waiting) that was queued before ``today``
    (local day): the data should reach the DMP the day of the consultation."""
    if queue_state(entry) not in ("pending", "sending", "waiting"):
        return False
    try:
        created = dt.datetime.fromisoformat(entry.created.replace("Z", "+00:00"))
    except ValueError:
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return created.astimezone(PARIS).date() < today


def queue_details(entry: Any) -> str:
    """8.6: everything the core keeps about one queue entry, for support (plain text)."""
    state = queue_state(entry)
    lines = [
        f"État : {L.QUEUE_STATE_FR.get(state, state)} [{state}]",
        f"Motif : {entry.reason_fr or '—'}",
        f"Code renvoyé : {getattr(entry, 'reason_code', '') or '—'}",
        f"Essais d'envoi : {entry.attempts}",
        f"Auteur : {entry.on_behalf_of or entry.actor_id_nat}",
        f"Déposé par : {entry.actor_id_nat}",
        f"Mis en file le : {local_ts(entry.created)}",
        f"Mis à jour le : {local_ts(entry.updated)}",
        f"Lot (identifiant) : {entry.id}",
        "Documents : " + (", ".join(entry.document_uids) or "—"),
    ]
    return "\n".join(lines)


class QueueModel(RowsModel):
    """The queue rows; the late ones (8.8) on a tinted background, said in their tooltip."""

    LATE_BRUSH = QBrush(QColor("#fde7c8"))

    def __init__(self, parent: Any = None) -> None:
        super().__init__(L.QUEUE_HEADERS, parent)
        self.late: set[int] = set()

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if index.isValid() and index.row() in self.late:
            if role == Qt.ItemDataRole.BackgroundRole:
                return self.LATE_BRUSH
            if role == Qt.ItemDataRole.ToolTipRole:
                return f"{self.rows[index.row()][index.column()]} — {L.QUEUE_LATE}"
        return super().data(index, role)


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
        self.model = QueueModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAccessibleName("Dépôts de la file")
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(self.table, 3)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setAccessibleName(L.QUEUE_DETAILS)
        self.details.setPlaceholderText(L.QUEUE_DETAILS_HINT)
        self.details.setMaximumHeight(self.fontMetrics().lineSpacing() * 12)
        lay.addWidget(QLabel(L.QUEUE_DETAILS))
        lay.addWidget(self.details, 1)
        self.refresh.clicked.connect(self.refresh_requested)
        self.resend.clicked.connect(self.resend_requested)
        self.hand_back.clicked.connect(self._hand_back)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_details())

    def show_entries(self, entries: list[Any], today: dt.date | None = None) -> None:
        """``today``: the local day the late rows are measured against (default: now in Paris)."""
        day = today or dt.datetime.now(PARIS).date()
        self.model.late = {i for i, e in enumerate(entries) if queue_late(e, day)}
        self.model.set_rows([queue_row(e) for e in entries], entries)
        active = [e for e in entries if queue_state(e) in ("pending", "sending", "waiting")]
        refused = [e for e in entries if queue_state(e) == "refused"]
        text = f"{len(active)} en attente, {len(refused)} refusé(s)"
        if self.model.late:
            text += f", {len(self.model.late)} {L.QUEUE_LATE_SUMMARY}"
        self.summary.setText(text)
        self.table.resizeColumnsToContents()
        self._show_details()

    def _show_details(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        self.details.setPlainText(queue_details(self.model.items[rows[0].row()]) if rows else "")

    def _hand_back(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.hand_back_requested.emit(self.model.items[rows[0].row()].id)
