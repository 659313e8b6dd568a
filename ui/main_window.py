"""The main window: a permanent header saying who acts (1.1), the red emergency banner (4.1), the patient
banner (identity 2.2 + DMP status 3.1), and the pages (patient documents, deposit, journal, queue). Every
core call goes through the session's ``Worker`` (or the services worker): the GUI thread never waits on
the card, the network or SQLite. A status bar shows what runs, with « Annuler »."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ps_agent.access.policy import AccessMode
from ps_agent.auth.model import AuthMode
from ps_agent.context import Cancelled
from ps_agent.errors import PsAgentError
from ui import labels as L
from ui.controller import AgentController, who_acts
from ui.documents import (
    DocumentFilter,
    DocumentTableModel,
    FilterBar,
    PreparedDocument,
    RubricList,
    fit_columns,
    is_patient_authored,
    prepare_document,
)
from ui.emergency import EmergencyDialog
from ui.identity_source import DeskSource
from ui.idle import IdleGuard
from ui.labels import CardState, IdentityStatus
from ui.pages import PageTabs
from ui.patient import (
    DmpBanner,
    IdentityBar,
    IdentitySource,
    ManualEntrySource,
    OpenPatient,
    OpenPatientForm,
    PatientIdentity,
    dmp_traits_differ,
)
from ui.pin_dialog import PinDialog
from ui.viewer import CdaViewer
from ui.worker import Op, OpHandle, Worker

if TYPE_CHECKING:  # the pages' modules are imported when their page is first built (LAZY_PAGES)
    from ui.batch import BatchPage, BatchRow
    from ui.deposit import DepositPage
    from ui.journal_queue import JournalPage, QueuePage
    from ui.setup_pages import DiagnosticPage, FirstRunPage
    from ui.vaccinations import VaccinationPage

log = logging.getLogger(__name__)
APP_TITLE = "ps-agent — DMP"


def error_text(exc: BaseException) -> str:
    """One place mapping errors to the French the user reads (Anki's ``show_exception``)."""
    from cda.errors import CdaError

    if isinstance(exc, PsAgentError):
        code = f" [{exc.code}]" if exc.code else ""
        hint = f" {L.SEE_DIAGNOSTIC}" if needs_diagnosis(exc) else ""
        return f"{exc.message_fr}{code}{hint}"
    if isinstance(exc, CdaError):
        where = f" (champ : {exc.field})" if getattr(exc, "field", None) else ""
        return f"Document invalide : {exc.message_fr}{where}"
    return f"Erreur inattendue : {exc}"


def needs_diagnosis(exc: BaseException) -> bool:
    """1.6: reader, card, middleware, certificate and network failures point to the Diagnostic page (a PIN
    typo or a closed session does not)."""
    from ps_agent.auth.errors import CertificateError, Pkcs11Error, TlsError
    from ps_agent.dmp.errors import ProtocolError, TransportError
    from ps_agent.errors import CardError

    return isinstance(
        exc, CardError | Pkcs11Error | CertificateError | TlsError | TransportError | ProtocolError
    )


NO_PREVIOUS: Any = object()  # marker: this professional never consulted this DMP before


def last_consultation(journal: Any, id_nat: str, patient_ins: str) -> Any:
    """6.6: when this professional last searched this DMP (the last successful ``dmp.search`` of the
    journal, read before the new search journals itself), as an aware datetime; None if never."""
    import datetime as dt_

    if not id_nat:
        return None
    times = [
        r.timestamp
        for r in journal.records(patient_ins=patient_ins, action="dmp.search")
        if r.event.actor_id_nat == id_nat and r.event.outcome == "success"
    ]
    if not times:
        return None
    when = dt_.datetime.fromisoformat(max(times))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt_.UTC)


def needs_first_run(folder: Path | None) -> bool:
    """No settings file yet (``ps-agent setup`` never ran): the window opens on the wizard page."""
    from ps_agent.settings import settings_path

    try:
        return not settings_path(folder).is_file()
    except OSError:
        return True


def author_for(identity: Any) -> Any:
    """The CDA author of the acting professional (``ps_agent.dmp.metadata.author_input_of``). When the
    card's specialty is not a JDV_J01 code (e.g. a pharmacist's « G15_21/SM » section), fall back to the
    profession alone (« G15_21 ») rather than refuse the act: the work-around lives here, once."""
    from dataclasses import replace as dc_replace

    from cda.errors import CdaError
    from ps_agent.dmp.metadata import author_input_of

    author = author_input_of(identity)
    try:
        author.checked()
    except CdaError:
        fallback = dc_replace(author, specialty_code=f"G15_{identity.profession_code}")
        fallback.checked()
        return fallback
    return author


# Rows the document table measures to size its columns (the visible page and a little more).
COLUMN_SIZE_SAMPLE_ROWS = 60


class Header(QFrame):
    """Who acts: name, profession, structure, authentication mode; the card state otherwise."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Professionnel connecté")
        self.setStyleSheet("Header { background: #1f3b5c; } QLabel { color: white; }")
        lay = QHBoxLayout(self)
        self.name = QLabel("")
        self.name.setAccessibleName("Nom")
        self.profession = QLabel("")
        self.profession.setAccessibleName("Profession")
        self.structure = QLabel("")
        self.structure.setAccessibleName("Structure")
        self.mode = QLabel("")
        self.mode.setAccessibleName("Mode d'authentification")
        self.card = QLabel("")
        self.card.setAccessibleName("État de la carte")
        self.pin_btn = QPushButton("Saisir le code porteur…")
        self.pin_btn.setAccessibleName("Saisir le code porteur")
        self.separators: list[QLabel] = []
        for i, w in enumerate((self.name, self.profession, self.structure, self.mode)):
            if i:
                sep = QLabel("·")
                self.separators.append(sep)
                lay.addWidget(sep)
            lay.addWidget(w)
        lay.addStretch(1)
        lay.addWidget(self.card)
        lay.addWidget(self.pin_btn)

    def show_state(self, controller: AgentController) -> None:
        name, profession, structure, mode = controller.header_parts()
        self.name.setText(f"<b>{name}</b>" if name else "")
        self.profession.setText(profession)
        self.structure.setText(structure)
        self.mode.setText(mode)
        for sep in self.separators:
            sep.setVisible(bool(name))
        state = controller.state
        self.card.setText(
            "" if state in (CardState.READY, CardState.ESTABLISHMENT) else L.CARD_STATE_FR[state]
        )
        self.pin_btn.setVisible(state is CardState.PIN_NEEDED)


# The pages built on first use (ui/pages.py), in their tabs' order after « Patient »: name, tab title.
LAZY_PAGES = (
    ("deposit", "Dépôt"),
    ("vaccination", "Vaccinations"),
    ("journal", "Journal"),
    ("queue", "File d'envoi"),
    ("batch", "Dépôt par lot"),
    ("diagnostic", "Diagnostic"),
    ("setup", "Configuration"),
)


class MainWindow(QMainWindow):
    queue_listed = Signal()  # the queue page's list was (re)filled (the tray follows it)
    patient_opened = Signal(object)  # OpenPatient
    documents_listed = Signal(object)  # DocumentList
    document_shown = Signal(object)  # DocumentEntry
    deposit_done = Signal(object)  # DepositResult (or DepositDeferred)
    vaccinations_listed = Signal(object)  # list of cda.vaccinations.Immunization
    message = Signal(str)  # any user message shown (status line)

    def __init__(
        self,
        controller: AgentController,
        *,
        identity_source: IdentitySource | None = None,
        auto_pin_dialog: bool = True,
        segur_notice: bool = True,
        config_folder: Path | None = None,
        first_run: bool = False,
        idle_clock: Any = None,
    ) -> None:
        super().__init__()
        self.controller = controller
        self.identity_source: IdentitySource = identity_source or ManualEntrySource()
        self.auto_pin_dialog = auto_pin_dialog
        self.segur_notice = segur_notice
        self.notice_dialog: Any = None
        self.minor_box: QMessageBox | None = None
        self.confirm_box: QMessageBox | None = None
        self.patient: OpenPatient | None = None
        self.api_bridge: Any = None
        self.emergency_dialog: EmergencyDialog | None = None
        self.pin_dialog: PinDialog | None = None
        self.setWindowTitle(APP_TITLE)
        self.setAccessibleName("Fenêtre principale")
        self.resize(1200, 800)
        central = QWidget()
        root = QVBoxLayout(central)
        root.setContentsMargins(0, 0, 0, 0)
        self.header = Header()
        root.addWidget(self.header)
        self.session_note = QLabel("")
        self.session_note.setWordWrap(True)
        self.session_note.setStyleSheet("background: #fdecea; padding: 6px;")
        self.session_note.setAccessibleName("Session")
        self.session_note.hide()
        root.addWidget(self.session_note)
        # 1.3 / 1.7: what the workstation and the card need (card expiring, remote-desktop session)
        self.workstation_note = QLabel("")
        self.workstation_note.setWordWrap(True)
        self.workstation_note.setStyleSheet("background: #fff4e5; color: #5a3a00; padding: 6px;")
        self.workstation_note.setAccessibleName("Avertissements du poste")
        self.workstation_note.hide()
        root.addWidget(self.workstation_note)
        self.error_box: QMessageBox | None = None
        self.expiry_note = ""  # 1.3: the card's end of validity, when near (computed at login)
        self.emergency_banner = QLabel("")
        self.emergency_banner.setStyleSheet(
            "background: #c00000; color: white; font-weight: bold; padding: 8px;"
        )
        self.emergency_banner.setAccessibleName("Accès en urgence")
        self.emergency_banner.hide()
        root.addWidget(self.emergency_banner)
        self.identity_bar = IdentityBar()
        root.addWidget(self.identity_bar)
        self.dmp_banner = DmpBanner()
        root.addWidget(self.dmp_banner)
        actions = QHBoxLayout()
        self.bdg_btn = QPushButton(L.BDG_ACTION)
        self.bdg_btn.setAccessibleName(L.BDG_ACTION)
        self.c15_btn = QPushButton(L.C15_ACTION)
        self.c15_btn.setAccessibleName(L.C15_ACTION)
        self.close_btn = QPushButton("Fermer le dossier")
        self.close_btn.setAccessibleName("Fermer le dossier du patient")
        # 11.4(a): this workstation's journal for the open patient, in one click
        self.access_btn = QPushButton(L.RECORD_ACCESS)
        self.access_btn.setAccessibleName(L.RECORD_ACCESS_TIP)
        self.access_btn.setToolTip(L.RECORD_ACCESS_TIP)
        for b in (self.bdg_btn, self.c15_btn, self.access_btn, self.close_btn):
            actions.addWidget(b)
            b.hide()
        actions.addStretch(1)
        root.addLayout(actions)
        self.tabs = PageTabs()  # each page in a scroll area: readable at 150 % (ui/pages.py)
        self.tabs.setAccessibleName("Pages")
        root.addWidget(self.tabs, 1)
        # patient page
        self.patient_page = QWidget()
        pl = QVBoxLayout(self.patient_page)
        self.open_form = OpenPatientForm()
        pl.addWidget(self.open_form)
        self.docs_area = QSplitter(Qt.Orientation.Horizontal)
        self.rubrics = RubricList()
        self.docs_area.addWidget(self.rubrics)
        right = QWidget()
        rl = QVBoxLayout(right)
        self.doc_model = DocumentTableModel(self)
        self.doc_proxy = DocumentFilter(self)
        self.doc_proxy.setSourceModel(self.doc_model)
        self.filters = FilterBar(self.doc_proxy)
        rl.addWidget(self.filters)
        self.doc_table = QTableView()
        self.doc_table.setModel(self.doc_proxy)
        self.doc_table.setSortingEnabled(True)
        self.doc_table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.doc_table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.doc_table.setAccessibleName("Documents du patient")
        self.doc_table.horizontalHeader().setStretchLastSection(True)
        # Column widths from the first rows only: measuring 2,000 rows cost ~0.4 s per listing.
        self.doc_table.horizontalHeader().setResizeContentsPrecision(COLUMN_SIZE_SAMPLE_ROWS)
        rl.addWidget(self.doc_table, 1)
        new_row = QHBoxLayout()
        self.new_note = QLabel("")
        self.new_note.setAccessibleName("Nouveaux documents depuis votre dernière consultation")
        self.new_only = QCheckBox(L.NEW_FILTER)
        self.new_only.setAccessibleName("Afficher seulement les nouveaux documents")
        self.new_only.toggled.connect(lambda on: self.doc_proxy.set(only_new=on))
        new_row.addWidget(self.new_note, 1)
        new_row.addWidget(self.new_only)
        rl.addLayout(new_row)
        self.hidden_note = QLabel("")
        self.hidden_note.setWordWrap(True)
        self.hidden_note.setAccessibleName("Documents non accessibles à votre profession")
        rl.addWidget(self.hidden_note)
        self.viewer = CdaViewer()  # DocumentViewer + « Ouvrir dans le navigateur » (ui/viewer.py)
        splitter2 = QSplitter(Qt.Orientation.Vertical)
        splitter2.addWidget(right)
        splitter2.addWidget(self.viewer)
        self.docs_area.addWidget(splitter2)
        self.docs_area.setStretchFactor(1, 1)
        pl.addWidget(self.docs_area, 1)
        self.docs_area.hide()
        self.tabs.addTab(self.patient_page, "Patient")
        # The other pages are built on first use (ui/pages.py: when their tab is first shown or the window
        # first needs them; ``build_pages_later`` builds them in the event loop's idle turns once painted).
        self._page_index: dict[str, int] = {}
        for name, label in LAZY_PAGES:
            self._page_index[name] = self.tabs.addLazyTab(partial(self._build_page, name), label)
        services = controller.services
        self._config_folder = config_folder

        def doctor_options() -> Any:
            from ps_agent.doctor import DoctorOptions

            return DoctorOptions(environment=services.config.environment, home=Path(services.config.home))

        self.doctor_options = doctor_options
        self.first_run = first_run
        self.idle_guard = IdleGuard(controller, clock=idle_clock or time.monotonic, parent=self)
        from ui.app import FirstPaint

        FirstPaint(self, self.idle_guard.watch)  # the input watch once painted (ui/idle.py)
        self._settings: Any = None  # the settings file read at start (the Configuration page edits it)
        self._settings_error = ""
        self._authors_of: Any = None  # the session whose authors list _session_authors read
        self._authors: tuple[Any, Any] = (None, ())
        self._clock_check: Any = None  # the workstation clock's check, once done (show_clock)
        self._load_settings(config_folder)
        if first_run:  # no configuration yet: the wizard page comes first
            self.tabs.setCurrentWidget(self.setup_page)
            # the detection (readers, PKCS#11 module: PyKCS11, httpx) starts once the window is painted
            FirstPaint(self, self.setup_page.detect)
        # status bar: what runs, progress, cancel
        self.busy_label = QLabel("")
        self.busy_label.setAccessibleName("Opération en cours")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.setAccessibleName("Progression")
        self.progress.hide()
        self.cancel_btn = QPushButton("Annuler")
        self.cancel_btn.setAccessibleName("Annuler l'opération en cours")
        self.cancel_btn.hide()
        self.status_line = QLabel("")
        self.status_line.setAccessibleName("Message")
        self.status_line.setWordWrap(True)
        # 1.4: the workstation clock, checked once after the first paint (check_clock)
        self.clock_warning = QLabel("")
        self.clock_warning.setAccessibleName("Horloge du poste")
        self.clock_warning.setStyleSheet("color: #a40000; font-weight: bold;")
        self.clock_warning.hide()
        self.clock_block = ""  # the reason deposits are blocked for (gross skew), "" when none
        sb = self.statusBar()
        sb.addWidget(self.status_line, 1)
        sb.addPermanentWidget(self.clock_warning)
        sb.addPermanentWidget(self.busy_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_btn)
        self.setCentralWidget(central)
        self._current_op: OpHandle | None = None
        # wiring
        c = controller
        c.state_changed.connect(self._on_state)
        c.session_opened.connect(self._on_session_opened)
        c.session_ended.connect(self._on_session_ended)
        c.bridge.queue_changed.connect(lambda _e: self.refresh_queue())
        self._watch_worker(c.services_worker)
        self.header.pin_btn.clicked.connect(self.ask_pin)
        self.open_form.submitted.connect(self.open_patient)
        self.open_form.vitale_requested.connect(self.read_vitale)
        self.open_form.use_insi(isinstance(self.identity_source, DeskSource))
        self.identity_bar.validated.connect(self.validate_identity)
        self.dmp_banner.consent.connect(self.record_consent)
        self.bdg_btn.clicked.connect(lambda: self.ask_emergency(centre_15=False))
        self.c15_btn.clicked.connect(lambda: self.ask_emergency(centre_15=True))
        self.close_btn.clicked.connect(self.close_patient)
        self.access_btn.clicked.connect(self.show_record_access)
        self.rubrics.currentRowChanged.connect(
            lambda _r: self.doc_proxy.set(rubric=self.rubrics.current_rubric())
        )
        self.doc_table.activated.connect(self._open_row)
        self.doc_table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.doc_table.customContextMenuRequested.connect(self._doc_menu)
        self.filters.archived.toggled.connect(lambda _c: self.list_documents())
        self.filters.old_versions.toggled.connect(lambda _c: self.list_documents())
        self.tabs.currentChanged.connect(self._tab_changed)
        self.cancel_btn.clicked.connect(self.cancel_current)
        QShortcut(QKeySequence("Escape"), self, self.cancel_current)
        self._on_state(c.state.value)
        self._update_workstation_note()
        self._update_patient_ui()
        from ui.app import DeferredServices

        if not isinstance(controller.services, DeferredServices):  # that one: `main` once painted
            self.refresh_queue()  # the tray shows the queue from the start, session or not

    # ------------------------------------------------------------------ pages built on first use
    def _lazy_page(self, name: str) -> Any:
        return self.tabs.page(self._page_index[name])

    def _page_built(self, name: str) -> bool:
        return self.tabs.built(self._page_index[name])

    @property
    def deposit_page(self) -> DepositPage:
        return self._lazy_page("deposit")  # type: ignore[no-any-return]

    @property
    def vaccination_page(self) -> VaccinationPage:
        return self._lazy_page("vaccination")  # type: ignore[no-any-return]

    @property
    def journal_page(self) -> JournalPage:
        return self._lazy_page("journal")  # type: ignore[no-any-return]

    @property
    def queue_page(self) -> QueuePage:
        return self._lazy_page("queue")  # type: ignore[no-any-return]

    @property
    def batch_page(self) -> BatchPage:
        return self._lazy_page("batch")  # type: ignore[no-any-return]

    @property
    def diagnostic_page(self) -> DiagnosticPage:
        return self._lazy_page("diagnostic")  # type: ignore[no-any-return]

    @property
    def setup_page(self) -> FirstRunPage:
        return self._lazy_page("setup")  # type: ignore[no-any-return]

    def _build_page(self, name: str) -> QWidget:
        """Build, wire and bring up to date the page ``name`` of ``LAZY_PAGES`` (``PageTabs`` calls it
        once): what the window had pushed to it meanwhile is pushed now (session, patient, settings)."""
        session = self.controller.session
        page: QWidget
        if name == "deposit":
            from ui.deposit import DepositPage

            deposit = DepositPage()
            deposit.send_requested.connect(self.deposit)
            if session is not None:
                deposit.set_authors(self._session_authors(session)[0])
            page = deposit
        elif name == "vaccination":
            from ui.vaccinations import VaccinationPage

            vaccination = VaccinationPage()
            vaccination.refresh_requested.connect(self.read_vaccinations)
            vaccination.record_requested.connect(self.record_vaccination)
            if session is not None:
                vaccination.set_professional(who_acts(session.identity))
            page = vaccination
        elif name == "journal":
            from ui.journal_queue import JournalPage

            journal = JournalPage()
            journal.export_requested.connect(self.export_journal)
            journal.refresh_requested.connect(self.refresh_journal)
            journal.verify_requested.connect(self.verify_journal)
            page = journal
        elif name == "queue":
            from ui.journal_queue import QueuePage

            queue = QueuePage()
            queue.refresh_requested.connect(self.refresh_queue)
            queue.resend_requested.connect(self.resend_queue)
            queue.hand_back_requested.connect(self.hand_back)
            queue.model.modelReset.connect(self.queue_listed)
            page = queue
        elif name == "batch":
            from ui.batch import BatchPage

            batch = BatchPage()
            batch.send_requested.connect(self.send_batch)
            if session is not None:
                batch.set_authors(*self._session_authors(session))
            page = batch
        elif name == "diagnostic":
            from ui.setup_pages import DiagnosticPage

            page = DiagnosticPage(self.controller.services_worker.run, self.doctor_options)
        elif name == "setup":
            from ui.setup_pages import FirstRunPage

            setup = FirstRunPage(self.controller.services_worker.run, self._config_folder)
            setup.saved.connect(lambda *_: self.apply_settings(setup.base))
            if self._settings is not None:  # read (and its errors kept) by _load_settings
                setup.load(self._settings)
            if self._settings_error:
                setup.result.setText(self._settings_error)
            if self._clock_check is not None:
                setup.show_clock(self._clock_check)
            page = setup
        else:  # pragma: no cover - LAZY_PAGES names only
            raise ValueError(name)
        self._update_pages((name, page))  # up to date with the open patient (none: the pages' first state)
        return page

    def build_pages_later(self) -> None:
        """Build the pages not built yet, one per turn of the event loop (``main``, once painted): a tab
        then opens at once, and the window never stops answering for more than one page's build."""
        for name, _label in LAZY_PAGES:
            if not self._page_built(name):
                self._lazy_page(name)
                QTimer.singleShot(0, self.build_pages_later)
                return

    def _session_authors(self, session: Any) -> tuple[Any, Any]:
        """The authors a deposit may name in this session: None in card mode (the card's holder); in
        AIR mode the doctors of ``batch.AUTHORS_FILE`` (and the errors of that list)."""
        if session.mode is AuthMode.DIRECTE:
            return None, ()
        if self._authors_of is not session:  # read once per session, whichever page asks first
            from ui.batch import load_authors

            self._authors_of, self._authors = session, load_authors(Path(session.services.config.home))
        return self._authors

    # ------------------------------------------------------------------ plumbing
    def _watch_worker(self, worker: Worker) -> None:
        worker.busy.connect(self._on_busy)
        worker.idle.connect(self._on_idle)
        worker.progress.connect(self._on_progress)
        worker.failed.connect(lambda exc: self.say(error_text(exc), error=True))

    def _on_busy(self, label: str, handle: OpHandle) -> None:
        self._current_op = handle
        self.busy_label.setText(label + "…")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_btn.show()

    def _on_idle(self) -> None:
        self._current_op = None
        self.busy_label.setText("")
        self.progress.hide()
        self.cancel_btn.hide()

    def _on_progress(self, step: str, done: int, total: int) -> None:
        self.busy_label.setText(step + "…")
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def cancel_current(self) -> None:
        if self._current_op is not None:
            self._current_op.cancel()

    def say(self, text: str, *, error: bool = False) -> None:
        self.status_line.setText(text)
        self.status_line.setStyleSheet("color: #a40000;" if error else "")
        self.message.emit(text)

    def run(self, op: Op[Any]) -> OpHandle | None:
        """Run ``op`` on the session's worker (refused without a session)."""
        worker = self.controller.worker
        if worker is None:
            self.say(L.CARD_STATE_FR[self.controller.state], error=True)
            return None
        return worker.run(op)

    # ------------------------------------------------------------------ card and session
    def _on_state(self, _state: str) -> None:
        self.header.show_state(self.controller)
        if self.controller.state is CardState.PIN_NEEDED and self.auto_pin_dialog and self.isVisible():
            self.ask_pin()

    def ask_pin(self) -> PinDialog:
        if self.pin_dialog is None or not self.pin_dialog.isVisible():
            self.pin_dialog = PinDialog(self.controller, self)
            self.pin_dialog.open()
        return self.pin_dialog

    def _on_session_opened(self, session: Any) -> None:
        assert self.controller.worker is not None
        self._watch_worker(self.controller.worker)
        self.session_note.hide()
        self.header.show_state(self.controller)
        self.c15_btn.setVisible(False)
        self.say(f"Session ouverte : {who_acts(session.identity)}")
        # pages not built yet get all this when they are (_build_page)
        if self._page_built("vaccination"):
            self.vaccination_page.set_professional(who_acts(session.identity))
        if self._page_built("batch") or self._page_built("deposit"):
            # AIR: the doctor she deposits for, from the list (batch.AUTHORS_FILE); card mode: None
            authors, errors = self._session_authors(session)
            if self._page_built("batch"):
                self.batch_page.forget_patients()  # the previous session's DMP handles are not offered
                self.batch_page.set_authors(authors, errors)
            if self._page_built("deposit"):
                self.deposit_page.set_authors(authors)
        self.refresh_queue()
        from ui.tray import card_expiry, expiry_warning, now_utc

        self.expiry_note = expiry_warning(card_expiry(session), now_utc())
        self._update_workstation_note()
        if self.segur_notice:
            self.check_segur_notice(session)

    def _update_workstation_note(self) -> None:
        from ui.tray import remote_session_note

        lines = [self.expiry_note if self.controller.session is not None else "", remote_session_note()]
        text = "\n".join(line for line in lines if line)
        self.workstation_note.setText(text)
        self.workstation_note.setVisible(bool(text))

    def check_segur_notice(self, session: Any) -> None:
        """Show the Ségur notice when due for this user (3.6); its acknowledgement is journaled."""
        from ui.segur_notice import SegurNotice, acknowledge, notice_due

        services = self.controller.services

        def due(_ctx: Any) -> bool:
            return notice_due(services.journal, session.identity.id_nat)

        def show(is_due: bool) -> None:
            if not is_due or self.controller.session is not session:
                return
            self.notice_dialog = SegurNotice(self)
            self.notice_dialog.accepted.connect(
                lambda: self.controller.services_worker.run(
                    Op(None, lambda _c: acknowledge(services, session), label="Information Ségur")
                )
            )
            self.notice_dialog.open()

        self.controller.services_worker.run(Op(self, due, label="Information Ségur").success(show))

    def _on_session_ended(self, message: str) -> None:
        source = self.identity_source
        if isinstance(source, DeskSource):  # the desk (INSi client, Vitale choice) was the session's
            self.controller.services_worker.run(Op(None, lambda _ctx: source.close(), label="Fermeture INSi"))
        self._drop_patient()
        self.session_note.setText(message)
        self.session_note.show()
        self.expiry_note = ""
        self._update_workstation_note()
        self.header.show_state(self.controller)
        self._on_idle()
        self.say(message)

    # ------------------------------------------------------------------ patient
    def open_patient(self, typed: PatientIdentity) -> None:
        session = self.controller.session
        if session is None:
            self.say(L.CARD_STATE_FR[self.controller.state], error=True)
            return
        source = self.identity_source

        def find(ctx: Any) -> tuple[PatientIdentity, Any]:
            if isinstance(source, DeskSource):
                identity = source.find_for(session, typed, ctx)
                return identity, source.open_handle(session, identity, ctx)
            identity = source.find(typed, ctx)
            return identity, session.patient(identity.ref)

        self._open_with(session, find, "Recherche du patient")

    def read_vitale(self) -> None:
        """Read the Vitale card, choose the beneficiary, WS_INS1, open (récupérée)."""
        session, source = self.controller.session, self.identity_source
        if session is None or not isinstance(source, DeskSource):
            self.say(L.CARD_STATE_FR[self.controller.state], error=True)
            return

        def chosen(beneficiaries: list[Any]) -> None:
            if not beneficiaries:
                self.say(L.NO_BENEFICIARY, error=True)
                return
            number = self.choose_beneficiary(beneficiaries)
            if number is None:
                return

            def find(ctx: Any) -> tuple[PatientIdentity, Any]:
                identity = source.search_vitale(session, number, ctx)
                return identity, source.open_handle(session, identity, ctx)

            self._open_with(session, find, "Recherche de l'INS (carte Vitale)")

        read = Op(self, lambda ctx: source.read_vitale(session, ctx), label="Lecture de la carte Vitale")
        self.run(read.success(chosen).failure(self._failed))

    def choose_beneficiary(self, beneficiaries: list[Any]) -> int | None:
        """The beneficiary number (from 1) picked by the user, None when cancelled."""
        if len(beneficiaries) == 1:
            return int(beneficiaries[0].number)
        labels = [b.label for b in beneficiaries]
        text, ok = QInputDialog.getItem(self, "Carte Vitale", L.CHOOSE_BENEFICIARY, labels, 0, False)
        if not ok or text not in labels:
            return None
        return int(beneficiaries[labels.index(text)].number)

    def _open_with(self, session: Any, find: Any, label: str) -> None:
        def found(result: tuple[PatientIdentity, Any]) -> None:
            if self.controller.session is not session:
                return
            identity, handle = result
            self._drop_patient()
            self.patient = OpenPatient(identity, handle, self)
            self.patient_opened.emit(self.patient)
            self._update_patient_ui()
            if identity.is_minor():
                self.propose_secret_connection()
            if identity.qualified:
                self.fetch_status()

        self.run(Op(self, find, label=label).success(found).failure(self._failed))

    def open_from_practice_software(self, typed: PatientIdentity) -> None:
        """The seam of the local API (13.2): open a patient the practice software names, bringing the
        window forward. The identity goes through ``identity_source`` again (INSi re-run), never trusted."""
        self.show()
        self.raise_()
        self.activateWindow()
        self.open_form.fill(typed)
        self.open_patient(typed)

    def _load_settings(self, folder: Path | None) -> None:
        """An existing ``config.toml``: the Configuration tab edits it (settings page)."""
        from ps_agent.settings import load_settings, settings_path

        try:
            path = settings_path(folder)
            if path.is_file():
                self._settings = load_settings(path, check_files=False)
                self.apply_settings(self._settings)
        except (PsAgentError, OSError) as exc:
            self._settings_error = f"Réglages actuels illisibles : {error_text(exc)}"

    def apply_settings(self, settings: Any) -> None:
        """What the window itself follows of the settings: the idle time of the session (its own input
        watch and the next card session's rule)."""
        if settings is None:
            return
        self.idle_guard.set_timeout_minutes(settings.idle_timeout_minutes)
        self.controller.idle_timeout_s = settings.idle_timeout_s

    # ------------------------------------------------------------------ local API (practice software)
    def listen_to_api(self, backend: Any) -> None:
        """Answer the local API's window events (13.2): open a patient, confirm an emergency access."""
        from ui.bridge import ApiBridge

        bridge = self.api_bridge = ApiBridge(self)
        bridge.open_patient_requested.connect(self.on_api_open_patient)
        bridge.emergency_confirmation_requested.connect(self.on_api_emergency)
        bridge.attach(backend)
        self.destroyed.connect(lambda *_: bridge.detach())

    def on_api_open_patient(self, request: Any) -> None:
        t = request.traits
        typed = PatientIdentity(
            ins=request.ins,
            oid=request.oid,
            status=IdentityStatus.PROVISOIRE,  # never trusted as given: the identity source decides
            birth_family_name=t.get("birth_family_name", "").upper(),
            given_names=t.get("given_names", "").upper(),
            birth_date=t.get("birth_date", ""),
            sex=t.get("sex", ""),
            birth_place_code=t.get("birth_place_code", ""),
            source=f"{L.FROM_PRACTICE_SOFTWARE} ({request.source})",
        )
        self.say(f"{L.FROM_PRACTICE_SOFTWARE} ({request.source}) : ouverture du patient demandée.")
        self.open_from_practice_software(typed)

    def on_api_emergency(self, request: Any) -> EmergencyDialog | None:
        """The practice software asks for an emergency access: only the professional confirms it here,
        for the patient open in the window, and centre 15 only for a regulator (4.3)."""
        self.show()
        self.raise_()
        self.activateWindow()
        p, session = self.patient, self.controller.session
        if p is None or session is None or p.identity.ins != request.ins:
            self.say(L.API_EMERGENCY_NOT_OPEN, error=True)
            return None
        centre_15 = request.mode == "centre_15"
        if centre_15 and not session.identity.is_regulator:
            self.say(L.API_CENTRE_15_REFUSED, error=True)
            return None
        dialog = self.ask_emergency(centre_15=centre_15)
        if dialog is not None and request.reason:
            dialog.reason.setPlainText(request.reason)
        self.emergency_dialog = dialog
        return dialog

    def propose_secret_connection(self) -> QMessageBox:
        """5.1: a minor's record: propose the secret connection (non-blocking box)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Patient mineur", L.MINOR_PROPOSAL, parent=self)
        yes = box.addButton("Utiliser la connexion secrète", QMessageBox.ButtonRole.YesRole)
        box.addButton("Non", QMessageBox.ButtonRole.NoRole)
        p = self.patient

        def answered(_button: Any) -> None:
            if p is not None and self.patient is p:
                p.secret_connection = box.clickedButton() is yes
                self._update_patient_ui()

        box.buttonClicked.connect(answered)
        self.minor_box = box
        box.open()
        return box

    def validate_identity(self, document: str) -> None:
        p, session = self.patient, self.controller.session
        if p is None or session is None:
            return
        source = self.identity_source
        if isinstance(source, DeskSource) and p.identity.record_id is not None:

            def through_desk(ctx: Any) -> tuple[PatientIdentity, Any]:
                ident = source.validate(session, p.identity, document, ctx)
                return ident, source.open_handle(session, ident, ctx)

            def validated(result: tuple[PatientIdentity, Any]) -> None:
                if self.patient is p:
                    p.handle = result[1]
                    p.set_identity(result[0])
                    self._update_patient_ui()
                    if result[0].qualified:
                        self.fetch_status()

            op = Op(self, through_desk, label="Validation de l'identité")
            self.run(op.success(validated).failure(self._failed))
            return
        new = p.identity.validated(document)

        def record(_ctx: Any) -> Any:
            from ps_agent.audit.journal import AuditEvent

            ident = session.identity
            session.services.record(
                AuditEvent(
                    action="identity.validate",
                    outcome="success",
                    actor_id_nat=ident.id_nat,
                    actor_name=ident.display_name,
                    actor_profession=ident.profession_code or ident.non_ps_role,
                    auth_mode=session.mode.value,
                    patient_ins=f"{new.ins}^{new.oid}",
                    detail=f"{L.IDENTITY_STATUS_FR[new.status]} sur présentation : {document}",
                )
            )
            return session.patient(new.ref)

        def done(handle: Any) -> None:
            if self.patient is p:
                p.handle = handle
                p.set_identity(new)
                self._update_patient_ui()
                if new.qualified:
                    self.fetch_status()

        self.run(Op(self, record, label="Validation de l'identité").success(done).failure(self._failed))

    def fetch_status(self) -> None:
        p = self.patient
        if p is None:
            return

        def got(status: Any) -> None:
            if self.patient is p:
                p.status = status
                self._update_patient_ui()
                if p.may_read() and not self.consultation_locked():
                    self.list_documents()

        self.run(
            Op(self, lambda ctx: p.handle.dmp_status(ctx=ctx).value, label="Lecture du statut du DMP")
            .success(got)
            .failure(self._failed)
        )

    def consultation_locked(self) -> str:
        """1.1 (EX_AIR-085, AUTH-03, AUTH-04): the reason why this session may not consult (establishment
        certificate without reinforced user authentication; non-PS staff such as a secretary), "" when it
        may. The core's own rules and messages; deposits stay possible."""
        from ps_agent.access.policy import CONSULTATION_MODES, MSG_AIR_CONSULT, MSG_NON_PS, is_non_ps

        session = self.controller.session
        if session is None:
            return ""
        if session.mode not in CONSULTATION_MODES:
            return MSG_AIR_CONSULT
        return MSG_NON_PS if is_non_ps(session.identity) else ""

    def record_consent(self) -> None:
        p = self.patient
        if p is None:
            return

        def done(status: Any) -> None:
            if self.patient is p:
                p.status = status
                self.say("Accord du patient enregistré.")
                self._update_patient_ui()
                if p.may_read():
                    self.list_documents()

        def fn(ctx: Any) -> Any:
            return p.handle.record_consent(how="oral", ctx=ctx).value

        self.run(Op(self, fn, label="Enregistrement de l'accord").success(done).failure(self._failed))

    def ask_emergency(self, *, centre_15: bool) -> EmergencyDialog | None:
        p = self.patient
        if p is None:
            return None
        if p.handle.snapshot().emergency_opposed:  # refusal first, never the "will be informed" notice
            self.say(L.BDG_OPPOSED, error=True)
            return None
        dialog = EmergencyDialog(self, centre_15=centre_15)
        dialog.accepted.connect(lambda: self.emergency_access(dialog.reason_text(), centre_15=centre_15))
        dialog.open()
        return dialog

    def emergency_access(self, reason: str, *, centre_15: bool) -> None:
        p = self.patient
        if p is None:
            return
        mode = AccessMode.CENTRE_15 if centre_15 else AccessMode.BRIS_DE_GLACE

        def done(access: Any) -> None:
            if self.patient is p:
                p.status = access.status
                # the "will be informed" notice waits for the DMP's answer to the first read: an opposition
                # is only known then, and its refusal must come first (URG-01)
                p.emergency_notice = access.notice_fr or L.BDG_NOTICE
                self._update_patient_ui()
                self.list_documents()

        fn = lambda ctx: p.handle.emergency_access(mode, reason, ctx=ctx).value  # noqa: E731
        self.run(Op(self, fn, label="Ouverture de l'accès en urgence").success(done).failure(self._failed))

    def close_patient(self) -> None:
        p = self.patient
        if p is not None and p.in_emergency:
            self.run(
                Op(
                    None,
                    lambda ctx: p.handle.end_emergency_access(ctx=ctx),
                    label="Fin de l'accès en urgence",
                )
            )
        self._drop_patient()

    def _drop_patient(self) -> None:
        self.patient = None
        self.doc_model.set_entries([])
        self.rubrics.set_counts([])
        self.hidden_note.setText("")
        self._update_patient_ui()

    def show_error_dialog(self, title: str, text: str, detail: str = "") -> QMessageBox:
        """A modal-less error box (the window keeps answering); kept in ``error_box``."""
        box = QMessageBox(QMessageBox.Icon.Critical, title, text, parent=self)
        if detail:
            box.setInformativeText(detail)
        box.setAccessibleName(title)
        box.addButton("Fermer", QMessageBox.ButtonRole.AcceptRole)
        self.error_box = box
        box.open()
        return box

    def ask_vitale_reread(self, message: str) -> QMessageBox:
        """2.7: the Vitale reading is too old or the card changed: « Relire la carte Vitale » reads it again
        and re-opens the beneficiary choice (nothing is reused)."""
        box = QMessageBox(QMessageBox.Icon.Warning, L.VITALE_REREAD_TITLE, message, parent=self)
        box.setAccessibleName(L.VITALE_REREAD_TITLE)
        again = box.addButton(L.VITALE_REREAD, QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Annuler", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(again)
        box.buttonClicked.connect(lambda b: self.read_vitale() if b is again else None)
        self.error_box = box
        box.open()
        return box

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):  # the user asked for it: not an error
            self.say(exc.message_fr)
            self._update_patient_ui()
            return
        self.say(error_text(exc), error=True)
        if isinstance(exc, PsAgentError) and exc.code == "vitale_test_card":  # 1.2: no call was made
            self.show_error_dialog(L.VITALE_TEST_CARD_TITLE, L.VITALE_TEST_CARD, exc.message_fr)
        elif isinstance(exc, PsAgentError) and exc.code in L.VITALE_REREAD_CODES:
            self.ask_vitale_reread(exc.message_fr)
        p = self.patient
        if p is not None and p.in_emergency and p.handle.snapshot().emergency_opposed:
            # the DMP refused the emergency access (patient's opposition): leave that mode, visibly
            p.emergency_notice = ""
            end = Op(
                self, lambda ctx: p.handle.end_emergency_access(ctx=ctx), label="Fin de l'accès en urgence"
            )
            self.run(end.success(lambda _r: self._update_patient_ui()))
        self._update_patient_ui()

    def _update_patient_ui(self) -> None:
        p = self.patient
        session = self.controller.session
        regulator = bool(session is not None and session.identity.is_regulator)
        self.identity_bar.show_identity(p.identity if p else None, secret=bool(p and p.secret_connection))
        self.filters.set_medecin_traitant(bool(p and p.status and p.status.is_medecin_traitant))
        self.open_form.setVisible(p is None)
        self.docs_area.setVisible(p is not None)
        self.close_btn.setVisible(p is not None)
        self.access_btn.setVisible(p is not None and bool(p.identity.ins))
        if p is None:
            self.dmp_banner.hide()
            self.emergency_banner.hide()
            self.bdg_btn.hide()
            self.c15_btn.hide()
            self.setWindowTitle(APP_TITLE)
            self.tabs.setTabVisible(1, True)
            self._update_pages()
            return
        reason = "" if p.identity.qualified else L.NOT_QUALIFIED_REASON
        locked = self.consultation_locked()
        mode, why = p.access
        emergency = p.in_emergency
        self.dmp_banner.show_status(
            p.status,
            disabled_reason=reason or locked,
            emergency=emergency,
            traits_differ=bool(dmp_traits_differ(p.identity, p.status)),
        )
        if emergency:
            text = L.emergency_banner(mode, why)
            self.emergency_banner.setText(text)
            self.setWindowTitle(f"{APP_TITLE} — {text}")
        else:
            self.setWindowTitle(f"{APP_TITLE} — {p.identity.birth_family_name}")
        self.emergency_banner.setVisible(emergency)
        qualified_dmp = p.identity.qualified and p.status is not None and p.status.exists
        usable = qualified_dmp and not p.status.closed and not p.status.opposed
        usable = usable and not locked  # 1.1: no consultation of any kind without a PS signed in (AIR)
        self.bdg_btn.setVisible(usable and not emergency and not p.status.authorised and not regulator)
        self.c15_btn.setVisible(usable and not emergency and regulator)  # 4.3: regulators only
        self.tabs.setTabVisible(1, not p.read_only)  # centre 15: consultation only
        self._update_pages()

    def _deposit_block(self) -> str:
        """Why a deposit is impossible now (in French), "" when it is possible."""
        p = self.patient
        if p is None:
            return "Ouvrez d'abord le dossier d'un patient."
        block = "" if p.identity.qualified else L.NOT_QUALIFIED_REASON
        if not block and p.status is not None:
            kind = self.dmp_banner.kind
            if kind in ("none", "closed", "opposed"):
                block = self.dmp_banner.text.text().replace("<b>", "").replace("</b>", "")
        if not block and self.clock_block:
            block = self.clock_block  # 1.4: a gross clock skew blocks deposits
        return block

    def _update_pages(self, new: tuple[str, Any] | None = None) -> None:
        """What the deposit, batch and journal pages show of the open patient: the pages built so far, or
        only ``new`` (name, page: a page being built, ``_build_page``)."""
        p = self.patient

        def target(name: str) -> Any:
            if new is None:
                return self._lazy_page(name) if self._page_built(name) else None
            return new[1] if new[0] == name else None

        page = target("deposit")
        if page is not None:
            page.set_secret_connection(bool(p and p.secret_connection))
            page.set_minor(bool(p and p.identity.is_minor()))
            page.set_blocked(self._deposit_block())
            if p is None and page.replacing is not None:  # a new version belongs to the closed record
                page.set_replacing(None)
        page = target("batch")
        if page is not None:
            page.set_patient(p if p is not None and p.identity.qualified and not p.read_only else None)
        page = target("journal")
        if page is not None:
            page.set_open_patient(p.identity.ins if p is not None else "")

    # ------------------------------------------------------------------ documents
    def list_documents(self) -> None:
        p = self.patient
        if p is None:
            return
        archived = self.filters.archived.isChecked()
        old = self.filters.old_versions.isChecked()

        session = self.controller.session
        journal = self.controller.services.journal
        actor = session.identity.id_nat if session is not None else ""

        def fn(ctx: Any) -> Any:
            last = last_consultation(journal, actor, p.handle.ref.ins_with_oid)  # before this search
            return p.handle.list_documents(
                include_archived=archived, include_deprecated=old, ctx=ctx
            ).value, last

        def done(result: Any) -> None:
            docs, last = result
            if self.patient is not p:
                return
            if p.last_consultation is None:  # the window's first listing of this patient sets the mark
                p.last_consultation = last or NO_PREVIOUS
            since = None if p.last_consultation is NO_PREVIOUS else p.last_consultation
            entries = list(docs.entries)
            self.doc_model.set_entries(entries, new_since=since)
            n = len(self.doc_model.new)
            if since is None:
                self.new_note.setText(L.FIRST_CONSULTATION)
            else:
                when = since.astimezone(ZoneInfo(L.DISPLAY_TZ)).strftime("%d/%m/%Y à %H:%M")
                self.new_note.setText(L.NEW_SINCE.format(n=n, when=when))
            self.new_only.setEnabled(n > 0)
            self.rubrics.set_counts(entries)
            self.filters.set_types(entries)
            hidden = list(docs.hidden_explanations)
            self.hidden_note.setText(L.HIDDEN_TYPES_FOOTER + " : " + " ".join(hidden) if hidden else "")
            if p.emergency_notice:
                self.say(p.emergency_notice)
                p.emergency_notice = ""
            fit_columns(self.doc_table, COLUMN_SIZE_SAMPLE_ROWS, 320)
            self.documents_listed.emit(docs)

        self.run(Op(self, fn, label="Recherche des documents").success(done).failure(self._failed))

    def _open_row(self, index: Any) -> None:
        entry = self.doc_proxy.data(index, DocumentTableModel.ENTRY_ROLE)
        if entry is not None:
            self.open_document(entry)

    def open_document(self, entry: Any) -> None:
        p = self.patient
        if p is None:
            return

        def done(prepared: PreparedDocument) -> None:
            if self.patient is p:
                self.viewer.show_prepared(prepared)  # widget updates only
                self.document_shown.emit(entry)

        def fn(ctx: Any) -> PreparedDocument:
            # the CDA parse, the PDF's base64 decode and the stylesheet's rendering run here, on the worker
            return prepare_document(entry, p.handle.retrieve(entry, ctx=ctx).value.content)

        self.run(Op(self, fn, label="Lecture du document").success(done).failure(self._failed))

    def _doc_menu(self, pos: Any) -> None:
        index = self.doc_table.indexAt(pos)
        entry = self.doc_proxy.data(index, DocumentTableModel.ENTRY_ROLE) if index.isValid() else None
        session = self.controller.session
        if entry is None or session is None or self.patient is None:
            return
        from PySide6.QtWidgets import QMenu

        from ui.doc_actions import actions_for

        menu = QMenu(self)
        menu.addAction("Ouvrir", lambda: self.open_document(entry))
        if not self.patient.read_only:
            mt = bool(self.patient.status and self.patient.status.is_medecin_traitant)
            for action in actions_for(entry, session.identity, medecin_traitant=mt):
                if action.key == "replace":  # a new version goes through the deposit page (9.4)
                    menu.addAction(action.label, partial(self.start_replacement, entry))
                    continue
                menu.addAction(action.label, partial(self.confirm_document_action, entry, action))
        menu.popup(self.doc_table.viewport().mapToGlobal(pos))

    def start_replacement(self, entry: Any) -> None:
        """9.4: the deposit page prepared for a new version of ``entry`` (same type, title to edit)."""
        if self.patient is None or self.patient.read_only:
            return
        self.deposit_page.set_replacing(entry)
        self.tabs.setCurrentWidget(self.deposit_page)

    def confirm_document_action(self, entry: Any, action: Any) -> QMessageBox:
        """9.1-9.3: the consequence stated, then « Confirmer »; irreversible ones say so."""
        icon = QMessageBox.Icon.Warning if action.irreversible else QMessageBox.Icon.Question
        box = QMessageBox(icon, action.label.rstrip("…"), action.confirm, parent=self)
        yes = box.addButton("Confirmer", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton("Annuler", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(cancel)  # Enter never confirms by accident
        box.setEscapeButton(cancel)
        box.buttonClicked.connect(lambda b: self.document_action(entry, action) if b is yes else None)
        self.confirm_box = box
        box.open()
        return box

    def document_action(self, entry: Any, action: Any) -> None:
        p = self.patient
        if p is None:
            return

        def fn(ctx: Any) -> Any:
            return getattr(p.handle, action.key)(entry, ctx=ctx, **dict(action.kwargs))

        def done(_r: Any) -> None:
            self.say(f"{action.label.rstrip('…')} : fait.")
            self.list_documents()

        self.run(Op(self, fn, label=action.label.rstrip("…")).success(done).failure(self._failed))

    # ------------------------------------------------------------------ deposit
    def deposit(self, pdf: bytes, type_code: str, title: str, visibility: Any) -> None:
        p, session = self.patient, self.controller.session
        if p is None or session is None:
            self.deposit_page.show_result("Ouvrez d'abord le dossier d'un patient.", ok=False)
            return
        from cda.classify import classify_type

        rubric = classify_type(type_code).dmp_rubric
        replacing = self.deposit_page.replacing
        chosen = self.deposit_page.chosen_author()  # establishment mode: the doctor deposited for

        def fn(ctx: Any) -> Any:
            from cda import build
            from cda.validate import check_deposit_ready, errors

            replacement = None
            if replacing is not None:  # same setId, version + 1 (read from the current version, TD3.2)
                from cda.parser import parse

                previous = parse(p.handle.retrieve(replacing, ctx=ctx).value.content)
                replacement = build.Replacement.of(previous)
            data = build.level1(
                type_code=type_code, content=pdf, title=title, patient=p.identity.traits(),
                author=chosen or author_for(session.identity), media_type="application/pdf",
                replaces=replacement,
            )  # fmt: skip
            findings = check_deposit_ready(data)
            if errors(findings):
                return findings
            return p.handle.deposit(data, visibility=visibility, replaces=replacing, ctx=ctx).value

        def done(result: Any) -> None:
            if isinstance(result, list):
                self.deposit_page.show_findings([str(f) for f in result])
                self.deposit_page.show_result(
                    "Document non envoyé : corrigez les erreurs ci-dessus.", ok=False
                )
                return
            if replacing is not None:
                self.deposit_page.set_replacing(None)
                text = L.REPLACED_RESULT.format(rubric=rubric)
            else:
                text = f"Document enregistré dans le DMP, rubrique « {rubric} »."
            self.deposit_page.show_result(f"{text} {L.DEPOSIT_NOTIFIED}", ok=True)
            self.deposit_done.emit(result)

        def failed(exc: BaseException) -> None:
            from ps_agent.session import DepositDeferred

            if isinstance(exc, DepositDeferred):
                self.deposit_page.show_result(
                    f"Le DMP ne répond pas : le document attend dans la file d'envoi. {exc.message_fr}",
                    ok=False,
                )
                self.deposit_done.emit(exc)
            else:
                self.deposit_page.show_result(error_text(exc), ok=False)
            self.refresh_queue()

        self.run(Op(self, fn, label="Envoi au DMP").success(done).failure(failed))

    # ------------------------------------------------------------------ secretary batch
    def send_batch(self, rows: list[int]) -> None:
        """Send the batch's rows one after the other (one operation per file on the session's worker:
        the table and the progress bar follow each file; a failure stays in the table to fix)."""
        from ui.batch import STATE_DONE, STATE_FAILED, STATE_READY, STATE_SENDING, STATE_WAITING

        session = self.controller.session
        page = self.batch_page
        if session is None:
            for i in rows:
                page.row_done(i, STATE_FAILED, L.CARD_STATE_FR[self.controller.state])
            page.finished()
            return
        author: Any = (
            author_for(session.identity) if session.mode is AuthMode.DIRECTE else page.chosen_author()
        )
        todo = list(rows)

        def next_row() -> None:
            if not todo or self.controller.session is not session:
                for i in todo:
                    page.row_done(i, STATE_FAILED, "session fermée")
                page.finished()
                self.refresh_queue()
                return
            i = todo.pop(0)
            row = page.model.rows[i]
            problems = row.problems() + ([] if author is not None else [L.BATCH_NO_AUTHORS])
            if row.patient is not None and row.patient.identity.is_minor():
                problems.append(L.BATCH_MINOR)  # 5.2: the visibility to the legal representatives is chosen
            if problems:
                page.row_done(i, STATE_FAILED, "; ".join(problems))
                next_row()
                return
            row.state = STATE_SENDING
            page.model.refresh()
            send_one(i, row)

        def send_one(i: int, row: BatchRow) -> None:
            import datetime as dt_

            from cda.classify import classify_type

            rubric = classify_type(row.type_code).dmp_rubric
            handle = row.patient.handle
            traits = row.patient.identity.traits()

            def fn(ctx: Any) -> Any:
                from cda import build
                from cda.validate import check_deposit_ready, errors

                data = build.level1(
                    type_code=row.type_code, content=row.content, title=row.title, patient=traits,
                    author=author, media_type="application/pdf",
                    service_start=dt_.date.fromisoformat(row.date),
                )  # fmt: skip
                bad = errors(check_deposit_ready(data))
                if bad:
                    return [str(f) for f in bad]
                return handle.deposit(data, ctx=ctx).value

            def done(result: Any) -> None:
                if isinstance(result, list):
                    page.row_done(i, STATE_FAILED, "; ".join(result))
                else:
                    row.rubric = rubric
                    page.row_done(i, STATE_DONE, f"rubrique « {rubric} »")
                    self.deposit_done.emit(result)
                next_row()

            def failed(exc: BaseException) -> None:
                from ps_agent.session import DepositDeferred

                if isinstance(exc, Cancelled):  # the user stopped the batch: the rest stays to send
                    for j in [i, *todo]:
                        page.row_done(j, STATE_READY, "envoi annulé")
                    todo.clear()
                    page.finished()
                    return
                if isinstance(exc, DepositDeferred):
                    page.row_done(i, STATE_WAITING, exc.message_fr)
                else:
                    page.row_done(i, STATE_FAILED, error_text(exc))
                next_row()

            label = f"Lot : {row.name} ({len(rows) - len(todo)}/{len(rows)})"
            if self.run(Op(self, fn, label=label).success(done).failure(failed)) is None:
                page.row_done(i, STATE_FAILED, "envoi impossible (aucune session)")
                next_row()

        next_row()

    # ------------------------------------------------------------------ vaccinations
    def read_vaccinations(self) -> None:
        p = self.patient
        if p is None:
            self.say("Ouvrez d'abord le dossier d'un patient.", error=True)
            return

        def done(items: Any) -> None:
            if self.patient is p:
                authored = {e.unique_id: is_patient_authored(e) for e in self.doc_model.entries}
                self.vaccination_page.show_immunizations(list(items), p.identity.birth_date, authored)
                self.vaccinations_listed.emit(items)

        fn = lambda ctx: p.handle.vaccination_status(ctx=ctx).value  # noqa: E731
        self.run(Op(self, fn, label="Lecture des vaccinations").success(done).failure(self._failed))

    def record_vaccination(self, fields: dict[str, Any]) -> None:
        p, session = self.patient, self.controller.session
        page = self.vaccination_page
        if p is None or session is None:
            page.show_result("Ouvrez d'abord le dossier d'un patient.", ok=False)
            return

        def fn(ctx: Any) -> Any:
            from cda.build import VaccinationInput

            return p.handle.record_vaccination(
                patient=p.identity.traits(), author=author_for(session.identity),
                vaccination=VaccinationInput(**fields), ctx=ctx,
            ).value  # fmt: skip

        def done(_result: Any) -> None:
            page.show_result(f"Vaccination enregistrée dans le DMP ({fields['vaccine_label']}).", ok=True)
            act = session.identity.activity
            page.recorded(p.identity.display, fields, act.structure_name if act else "")
            self.read_vaccinations()

        def failed(exc: BaseException) -> None:
            page.show_result(error_text(exc), ok=False)

        self.run(Op(self, fn, label="Enregistrement de la vaccination").success(done).failure(failed))

    # ------------------------------------------------------------------ workstation clock (1.4, 15.4)
    def check_clock(self, check: Callable[[], Any] | None = None) -> None:
        """Check the workstation's clock once, on the services worker (the HTTPS probes of the doctor):
        ``check`` gives a ``ps_agent.doctor.Check`` (default: ``setup_pages.clock_check``)."""
        from ui.setup_pages import clock_check

        options = self.doctor_options
        fn = check or (lambda: clock_check(options()))
        op = Op(self, lambda _ctx: fn(), label="Vérification de l'horloge du poste")
        op.success(self.show_clock).failure(lambda exc: log.info("horloge non vérifiée : %s", exc))
        self.controller.services_worker.run(op)

    def show_clock(self, check: Any) -> None:
        """A skew: the warning in the status bar (and on the first-run page); a gross one (the doctor's
        check fails) also blocks deposits with the fix."""
        from ui.setup_pages import clock_skewed

        self._clock_check = check
        if self._page_built("setup"):  # else the page shows it when built
            self.setup_page.show_clock(check)
        skewed = clock_skewed(check)
        text = f"⚠ {check.label_fr} ({check.detail})" + ("" if check.ok else L.CLOCK_DEPOSITS_BLOCKED)
        self.clock_warning.setText(text if skewed else "")
        self.clock_warning.setToolTip(check.fix_fr if skewed else "")
        self.clock_warning.setVisible(skewed)
        self.clock_block = "" if check.ok else check.fix_fr
        self._update_patient_ui()

    # ------------------------------------------------------------------ journal and queue
    def _tab_changed(self, index: int) -> None:
        if index == self._page_index["journal"]:
            self.refresh_journal()
        elif index == self._page_index["queue"]:
            self.refresh_queue()

    def show_record_access(self) -> None:
        """« Accès au dossier » (11.4 a): the journal page filtered on the open patient's INS."""
        if self.patient is None or not self.patient.identity.ins:
            return
        self.journal_page.filter_patient(self.patient.identity.ins)
        if self.tabs.currentWidget() is self.journal_page:
            self.refresh_journal()
        else:
            self.tabs.setCurrentWidget(self.journal_page)  # the tab change reads the journal

    def refresh_journal(self) -> None:
        """The journal page's selection (its filters), the most recent first (journal_queue.read_journal)."""
        from ui.journal_queue import read_journal

        journal, selection = self.controller.services.journal, self.journal_page.current_filter()
        op = Op(self, lambda _c: read_journal(journal, selection), label="Lecture du journal")
        self.controller.services_worker.run(
            op.success(lambda got: self.journal_page.show_records(*got)).failure(self._failed)
        )

    def verify_journal(self) -> None:
        services = self.controller.services
        op = Op(self, lambda _c: services.journal.verify(), label="Vérification du journal")
        self.controller.services_worker.run(
            op.success(self.journal_page.show_verification).failure(self._failed)
        )

    def export_journal(self, fmt: str, path: str) -> None:
        """Export the journal, or the selection of the page's filters (« Exporter la sélection »), as a
        FHIR AuditEvent bundle or CSV to ``path`` (0600: it names patients), on the services' worker."""
        from ui.journal_queue import export_journal_file

        journal, selection = self.controller.services.journal, self.journal_page.export_filter()
        if fmt == "pdf":
            self._export_journal_pdf(journal, selection, path)
            return

        def done(count: int) -> None:
            what = "Sélection du journal exportée" if selection is not None else "Journal exporté"
            text = f"{what} ({'FHIR' if fmt == 'fhir' else 'CSV'}) : {count} entrée(s) dans {path}."
            self.journal_page.result.setText(text)
            self.journal_page.result.setStyleSheet("")
            self.say(text)

        fn = lambda _ctx: export_journal_file(journal, fmt, path, selection)  # noqa: E731
        op = Op(self, fn, label="Export du journal")
        self.controller.services_worker.run(op.success(done).failure(self._failed))

    def _export_journal_pdf(self, journal: Any, selection: Any, path: str) -> None:
        """11.2: the records read and the chain verified on the services' worker, the PDF laid out here."""
        import datetime as dt

        from ui.documents import PARIS
        from ui.journal_queue import journal_pdf_html, read_for_pdf, write_pdf

        def done(got: tuple[list[Any], Any]) -> None:
            records, verification = got
            made = dt.datetime.now(PARIS).strftime("%d/%m/%Y %H:%M")
            try:
                write_pdf(journal_pdf_html(records, verification, selection, made), path)
            except OSError as exc:
                self.say(f"Export impossible : {exc}", error=True)
                return
            what = "Sélection du journal exportée" if selection is not None else "Journal exporté"
            text = f"{what} (PDF) : {len(records)} entrée(s) dans {path}."
            self.journal_page.result.setText(text)
            self.journal_page.result.setStyleSheet("")
            self.say(text)

        op = Op(self, lambda _ctx: read_for_pdf(journal, selection), label="Export du journal (PDF)")
        self.controller.services_worker.run(op.success(done).failure(self._failed))

    def refresh_queue(self) -> None:
        services = self.controller.services
        op = Op(self, lambda _c: services.queue_entries(), label="Lecture de la file d'envoi")
        # the queue page (built on first use) is built when the entries arrive
        self.controller.services_worker.run(
            op.success(lambda entries: self.queue_page.show_entries(entries)).failure(self._failed)
        )

    def resend_queue(self) -> None:
        session = self.controller.session
        if session is None:
            self.say(L.CARD_STATE_FR[self.controller.state], error=True)
            return

        def done(outcomes: Any) -> None:
            ok = sum(1 for o in outcomes if o.registered)
            self.say(f"{ok} dépôt(s) enregistré(s) sur {len(outcomes)} renvoyé(s).")
            self.refresh_queue()

        fn = lambda ctx: session.resume(ctx=ctx, all_entries=True)  # noqa: E731 - the user asked: now
        self.run(Op(self, fn, label="Renvoi des dépôts en attente").success(done).failure(self._failed))

    def hand_back(self, entry_id: str, folder: str | None = None) -> None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Dossier où reprendre les documents")
        if not folder:
            return
        services = self.controller.services
        target = Path(folder)
        actor = self.controller.session.identity if self.controller.session is not None else None

        def fn(_ctx: Any) -> Any:
            from ps_agent.services import write_documents

            return services.hand_back(entry_id, lambda e: write_documents(e, target), actor=actor)

        def done(_entry: Any) -> None:
            self.say(f"Documents repris dans {target}.")
            self.refresh_queue()

        self.controller.services_worker.run(
            Op(self, fn, label="Reprise des documents").success(done).failure(self._failed)
        )
