"""First run and self-diagnosis in the window (issue 13 §3, §4).

``FirstRunPage``: what the workstation has (PC/SC readers, the Cryptolib module: detected on a worker),
the environment (sandbox preselected), the reader, optionally the establishment certificates and the hot
folder, the Ségur notice with « J'ai compris »; « Enregistrer » writes the same ``config.toml`` and API
token as ``ps-agent setup`` (``ps_agent.setup_config``: ``validate`` → ``acknowledge_notice`` →
``finish``), the French error naming the key when a value is wrong.

Once configured, the same page is the « Configuration » tab (issue 11 §10): environment, card middleware
(PC/SC reader, PKCS#11 library), establishment credentials for AIR, local API (enabled, port, « Régénérer
le jeton »), hot folder (folder, enabled), idle time of the session. Everything is checked and written by
the core (``ps_agent.settings.validate``, ``ps_agent.setup_config``), never as TOML here; a wrong value
is said in French with the field's label and its key, and the field gets the focus.

``DiagnosticPage``: ``ps_agent.doctor.run_checks(default_options())`` on a worker, one row per check:
OK, or the fix in French."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ps_agent.settings import DEFAULT_API_PORT, DEFAULT_IDLE_TIMEOUT_MINUTES, IDLE_TIMEOUT_RANGE_MINUTES
from ps_agent.setup_config import (
    DEFAULT_ENVIRONMENT,
    ENVIRONMENT_LABELS_FR,
    SEGUR_BUTTON_FR,
    SEGUR_NOTICE_FR,
    SEGUR_WARNING_FR,
)
from ui.worker import Op

ANY_READER = "(le premier lecteur qui contient une carte CPS)"
CHECK_OK = "OK"
CHECK_WARN = "Attention"
CHECK_FIX = "À corriger"

Runner = Callable[[Op[Any]], Any]

# The config.toml keys the page shows; the others of an existing file are kept as they are.
OWN_KEYS: dict[str, tuple[str, ...]] = {
    "dmp": ("environment", "ca_file"),
    "card": ("reader", "pkcs11_module"),
    "establishment": ("auth_p12", "sign_p12"),
    "hotfolder": ("inbox", "enabled"),
    "api": ("port", "enabled"),
    "session": ("idle_timeout_minutes",),
}
# The field label of each key, for the French error (the core's message names the key).
FIELD_LABELS: dict[str, str] = {
    "dmp.environment": "Environnement",
    "dmp.ca_file": "Autorités du serveur DMP",
    "card.reader": "Lecteur",
    "card.pkcs11_module": "Module PKCS#11",
    "establishment.auth_p12": "Certificat d'établissement",
    "establishment.sign_p12": "Certificat de signature",
    "hotfolder.inbox": "Dossier de dépôt automatique",
    "hotfolder.enabled": "Surveiller le dossier de dépôt",
    "api.port": "Port de l'API locale",
    "api.enabled": "Activer l'API locale",
    "session.idle_timeout_minutes": "Fermer la session après (inactivité)",
}
REGENERATE_TOKEN = "Régénérer le jeton"  # noqa: S105 - a button label
REGENERATE_CONFIRM = (
    "Un nouveau jeton remplace l'ancien : le logiciel métier devra utiliser le nouveau (copiez-le depuis "
    "le fichier indiqué) et l'API locale en cours le prendra en compte à son prochain démarrage. "
    "L'ancien jeton ne sera plus accepté."
)


def clock_check(options: Any) -> Any:
    """The doctor's clock check alone (1.4): the DMP's (and INSi's, when configured) HTTPS ``Date``
    against the workstation's time; worker side (network). Returns a ``ps_agent.doctor.Check``."""
    from ps_agent.doctor import check_clock, probe_https

    env = options.environment
    probes = [
        (
            "le serveur du DMP",
            probe_https(env.base_url, env.ca_file, verify_host=env.verify_host, timeout_s=options.timeout_s),
        )
    ]
    if options.insi_url:
        ca = options.insi_ca_file or env.ca_file
        probes.append(("le serveur INSi", probe_https(options.insi_url, ca, timeout_s=options.timeout_s)))
    return check_clock(options, probes)


def clock_skewed(check: Any) -> bool:
    """Whether the clock check measured a skew beyond the doctor's warning threshold (an unchecked clock,
    no server having given its date, is not a skew: the Diagnostic page says it)."""
    return bool(check.detail) and (not check.ok or check.warning)


class FirstRunPage(QWidget):
    """The first-run wizard as one page. ``run`` runs an ``Op`` on a worker; ``folder``: the configuration
    folder (None = the platform's, as ``ps-agent setup``)."""

    saved = Signal(object, object)  # settings path, token path
    token_regenerated = Signal(object)  # token path

    def __init__(self, run: Runner, folder: Path | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Première configuration")
        self._run = run
        self.folder = folder
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()  # readable at 150 % scaling: the page scrolls rather than squeezes
        scroll.setWidgetResizable(True)
        inner = QWidget()
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        lay = QVBoxLayout(inner)
        found = QGroupBox("Ce poste")
        fl = QFormLayout(found)
        self.readers_found = QLabel("Recherche…")
        self.readers_found.setAccessibleName("Lecteurs détectés")
        self.readers_found.setWordWrap(True)
        self.cryptolib_found = QLabel("Recherche…")
        self.cryptolib_found.setAccessibleName("Cryptolib détectée")
        self.cryptolib_found.setWordWrap(True)
        fl.addRow("Lecteurs de cartes", self.readers_found)
        fl.addRow("Cryptolib CPS", self.cryptolib_found)
        self.clock_found = QLabel("Vérification…")  # 15.4: the time-sync check (show_clock)
        self.clock_found.setAccessibleName("Horloge du poste")
        self.clock_found.setWordWrap(True)
        fl.addRow("Horloge du poste", self.clock_found)
        lay.addWidget(found)
        self.environment = QComboBox()
        for name, label in ENVIRONMENT_LABELS_FR.items():
            self.environment.addItem(label, name)
        self.environment.setCurrentIndex(max(0, self.environment.findData(DEFAULT_ENVIRONMENT)))
        self.ca_file = QLineEdit()
        self.ca_file.setPlaceholderText("vide : autorités intégrées")
        self.reader = QComboBox()
        self.reader.addItem(ANY_READER, "")
        self.pkcs11 = QLineEdit()
        self.pkcs11.setPlaceholderText("vide : recherche automatique")
        self.auth_p12 = QLineEdit()
        self.auth_p12.setPlaceholderText("facultatif (mode AIR, sans carte)")
        self.sign_p12 = QLineEdit()
        self.sign_p12.setPlaceholderText("facultatif : le même que l'authentification")
        self.api_enabled = QCheckBox("Activer l'API locale (logiciel métier, 127.0.0.1)")
        self.api_enabled.setChecked(True)
        self.api_port = QSpinBox()
        self.api_port.setRange(1, 65535)  # the core says what it accepts (1024–65535, not 9982)
        self.api_port.setValue(DEFAULT_API_PORT)
        self.regenerate = QPushButton(REGENERATE_TOKEN)
        self.inbox = QLineEdit()
        self.inbox.setPlaceholderText("facultatif")
        self.hotfolder_enabled = QCheckBox("Surveiller le dossier de dépôt")
        self.hotfolder_enabled.setChecked(True)
        self.idle = QSpinBox()
        self.idle.setRange(0, 10_000)  # the core checks the range (session.idle_timeout_minutes)
        self.idle.setSuffix(" min")
        self.idle.setValue(DEFAULT_IDLE_TIMEOUT_MINUTES)
        low, high = IDLE_TIMEOUT_RANGE_MINUTES
        self.idle.setToolTip(f"Entre {low} et {high} minutes sans action : la session carte se ferme.")
        browse_pkcs11 = self._browse(
            self.pkcs11, "Module PKCS#11 (Cryptolib)", "Bibliothèque (*.dll *.so *.dylib)"
        )
        browse_auth = self._browse(self.auth_p12, "Certificat d'établissement", "PKCS#12 (*.p12 *.pfx)")
        browse_sign = self._browse(self.sign_p12, "Certificat de signature", "PKCS#12 (*.p12 *.pfx)")
        browse_inbox = self._browse(self.inbox, "Dossier de dépôt automatique", "", folder=True)
        groups: tuple[tuple[str, tuple[tuple[str, QWidget, QWidget | None], ...]], ...] = (
            ("Environnement", (
                ("Environnement", self.environment, None),
                ("Autorités du serveur DMP", self.ca_file, None),
            )),
            ("Carte CPS (lecteur et Cryptolib)", (
                ("Lecteur", self.reader, None),
                ("Module PKCS#11", self.pkcs11, browse_pkcs11),
            )),
            ("Établissement (mode AIR, sans carte)", (
                ("Certificat d'établissement", self.auth_p12, browse_auth),
                ("Certificat de signature", self.sign_p12, browse_sign),
            )),
            ("API locale (logiciel métier)", (
                ("", self.api_enabled, None),
                ("Port de l'API locale", self.api_port, None),
                ("Jeton d'accès", self.regenerate, None),
            )),
            ("Dossier de dépôt", (
                ("Dossier de dépôt automatique", self.inbox, browse_inbox),
                ("", self.hotfolder_enabled, None),
            )),
            ("Session", (
                ("Fermer la session après (inactivité)", self.idle, None),
            )),
        )  # fmt: skip
        self.fields: dict[str, QWidget] = {}
        for title, rows in groups:
            box = QGroupBox(title)
            form = QFormLayout(box)
            for text, w, extra in rows:
                w.setAccessibleName(text or (w.text() if isinstance(w, QCheckBox) else title))
                if extra is None:
                    form.addRow(text, w)
                else:
                    line = QHBoxLayout()
                    line.addWidget(w, 1)
                    line.addWidget(extra)
                    form.addRow(text, line)
            lay.addWidget(box)
        self.regenerate.setAccessibleName("Régénérer le jeton de l'API locale")
        self.fields = {
            "dmp.environment": self.environment,
            "dmp.ca_file": self.ca_file,
            "card.reader": self.reader,
            "card.pkcs11_module": self.pkcs11,
            "establishment.auth_p12": self.auth_p12,
            "establishment.sign_p12": self.sign_p12,
            "api.enabled": self.api_enabled,
            "api.port": self.api_port,
            "hotfolder.inbox": self.inbox,
            "hotfolder.enabled": self.hotfolder_enabled,
            "session.idle_timeout_minutes": self.idle,
        }
        self.api_enabled.toggled.connect(self.api_port.setEnabled)
        self.regenerate.clicked.connect(self.ask_regenerate)
        self.notice = notice = QLabel(f"{SEGUR_NOTICE_FR}\n\n{SEGUR_WARNING_FR}")
        notice.setWordWrap(True)
        notice.setAccessibleName("Notice Ségur")
        lay.addWidget(notice)
        self.understood = QCheckBox(SEGUR_BUTTON_FR)
        self.understood.setAccessibleName(SEGUR_BUTTON_FR)
        lay.addWidget(self.understood)
        row = QHBoxLayout()
        self.save = QPushButton("Enregistrer la configuration")
        self.save.setAccessibleName("Enregistrer la configuration")
        self.save.setEnabled(False)
        row.addWidget(self.save)
        row.addStretch(1)
        lay.addLayout(row)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setAccessibleName("Résultat de la configuration")
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.result)
        lay.addStretch(1)
        self.confirm_box: QMessageBox | None = None
        self.understood.toggled.connect(self.save.setEnabled)  # never saved before the notice is accepted
        self.save.clicked.connect(self.write)
        self.detection: Any = None
        self.base: Any = None  # the settings already written (the page then edits them)

    def load(self, settings: Any) -> None:
        """Settings page: the fields filled from an existing ``config.toml``. When the Ségur notice was
        already acknowledged it is not asked again here (the window shows it per user every 180 days)."""
        self.base = settings
        self.environment.setCurrentIndex(max(0, self.environment.findData(settings.dmp_environment)))
        self.ca_file.setText(settings.dmp_ca_file)
        if settings.card_reader and self.reader.findData(settings.card_reader) < 0:
            self.reader.addItem(settings.card_reader, settings.card_reader)
        self.reader.setCurrentIndex(max(0, self.reader.findData(settings.card_reader)))
        self.pkcs11.setText(settings.pkcs11_module)
        self.auth_p12.setText(settings.establishment_auth_p12)
        self.sign_p12.setText(settings.establishment_sign_p12)
        self.inbox.setText(settings.hotfolder_inbox)
        self.hotfolder_enabled.setChecked(settings.hotfolder_enabled)
        self.api_enabled.setChecked(settings.api_enabled)
        self.api_port.setValue(settings.api_port)
        self.api_port.setEnabled(settings.api_enabled)
        self.idle.setValue(settings.idle_timeout_minutes)
        acknowledged = bool(settings.segur_acknowledged_at)
        self.notice.setVisible(not acknowledged)
        self.understood.setVisible(not acknowledged)
        self.save.setEnabled(acknowledged or self.understood.isChecked())
        self.save.setText("Enregistrer les réglages")
        self.save.setAccessibleName(self.save.text())

    def detect(self) -> None:
        from ps_agent.setup_config import detect

        op = Op(self, lambda _ctx: detect(), label="Détection des lecteurs et de la Cryptolib")
        self._run(op.success(self.show_detection).failure(lambda exc: self.readers_found.setText(str(exc))))

    def show_detection(self, d: Any) -> None:
        self.detection = d
        if d.readers_error_fr:
            self.readers_found.setText(d.readers_error_fr)
        elif not d.readers:
            self.readers_found.setText("Aucun lecteur : branchez le lecteur de cartes.")
        else:
            self.readers_found.setText(", ".join(d.readers))
        for r in d.readers:
            if self.reader.findData(r) < 0:
                self.reader.addItem(r, r)
        self.cryptolib_found.setText(d.cryptolib or "Non trouvée : installez la Cryptolib CPS (ANS).")
        if d.cryptolib and not self.pkcs11.text():
            self.pkcs11.setText(d.cryptolib)

    def show_clock(self, check: Any) -> None:
        """The clock check's result (15.4): the label, and the fix when the clock is off."""
        text = check.label_fr + (f" ({check.detail})" if check.detail else "")
        if clock_skewed(check) or not check.ok:
            text += f" — {check.fix_fr}"
        self.clock_found.setText(text)
        self.clock_found.setStyleSheet("color: #a40000;" if clock_skewed(check) else "")

    def raw(self) -> dict[str, dict[str, object]]:
        """The TOML document typed (same keys as ``ps-agent setup``)."""
        raw: dict[str, dict[str, object]] = {"dmp": {"environment": str(self.environment.currentData())}}
        if self.ca_file.text().strip():
            raw["dmp"]["ca_file"] = self.ca_file.text().strip()
        card = {"reader": str(self.reader.currentData() or ""), "pkcs11_module": self.pkcs11.text().strip()}
        card = {k: v for k, v in card.items() if v}
        if card:
            raw["card"] = dict(card)
        auth = self.auth_p12.text().strip()
        if auth:
            raw["establishment"] = {"auth_p12": auth, "sign_p12": self.sign_p12.text().strip() or auth}
        hotfolder: dict[str, object] = {}
        if self.inbox.text().strip():
            hotfolder["inbox"] = self.inbox.text().strip()
        if not self.hotfolder_enabled.isChecked():
            hotfolder["enabled"] = False
        if hotfolder:
            raw["hotfolder"] = hotfolder
        raw["api"] = {"port": self.api_port.value()}
        if not self.api_enabled.isChecked():
            raw["api"]["enabled"] = False
        raw["session"] = {"idle_timeout_minutes": self.idle.value()}
        return raw

    def write(self) -> None:
        from dataclasses import replace

        from ps_agent.errors import PsAgentError
        from ps_agent.settings import validate
        from ps_agent.setup_config import acknowledge_notice, finish

        acknowledged = self.base is not None and bool(self.base.segur_acknowledged_at)
        if not (self.understood.isChecked() or acknowledged):
            return
        raw: dict[str, dict[str, object]] = {}
        if self.base is not None:  # keep what this page does not show (INSi, API port, done folder…)
            for section, keys in self.base.to_toml_dict().items():
                kept = {k: v for k, v in keys.items() if k not in OWN_KEYS.get(section, ())}
                if kept and section != "notice":
                    raw[section] = kept
        for section, keys in self.raw().items():
            raw.setdefault(section, {}).update(keys)
        try:
            settings = validate(raw)
            if self.understood.isChecked():
                settings = acknowledge_notice(settings)
            else:
                settings = replace(settings, segur_acknowledged_at=self.base.segur_acknowledged_at)
            written, token = finish(settings, self.folder)
        except PsAgentError as exc:
            self.show_error(exc)
            return
        except OSError as exc:
            self.result.setStyleSheet("color: #a40000;")
            self.result.setText(f"Écriture impossible : {exc.strerror} ({exc.filename}).")
            return
        self.base = settings
        self._mark_field(None)
        self.result.setStyleSheet("")
        self.result.setText(
            f"Configuration enregistrée : {written}\nJeton de l'API locale : {token}\n"
            "Vérifiez le poste dans l'onglet « Diagnostic »."
        )
        self.saved.emit(written, token)

    def show_error(self, exc: Any) -> None:
        """The core's French message with the field's label; the field gets the focus and a red frame."""
        key = str(getattr(exc, "key", "") or "")
        label = FIELD_LABELS.get(key, "")
        self.result.setStyleSheet("color: #a40000;")
        self.result.setText(f"{label} — {exc.message_fr}" if label else exc.message_fr)
        self._mark_field(self.fields.get(key))

    def _mark_field(self, widget: QWidget | None) -> None:
        for w in self.fields.values():
            w.setStyleSheet("")
        if widget is not None:
            widget.setStyleSheet("border: 2px solid #a40000;")
            widget.setFocus()

    def _browse(self, target: QLineEdit, title: str, filt: str, *, folder: bool = False) -> QPushButton:
        button = QPushButton("Parcourir…")
        button.setAccessibleName(f"Parcourir : {title}")

        def choose() -> None:
            if folder:
                path = QFileDialog.getExistingDirectory(self, title, target.text())
            else:
                path, _ = QFileDialog.getOpenFileName(self, title, target.text(), filt)
            if path:
                target.setText(path)

        button.clicked.connect(choose)
        return button

    def ask_regenerate(self) -> QMessageBox:
        """« Régénérer le jeton »: the consequence stated, then « Régénérer »; Enter never confirms."""
        box = QMessageBox(QMessageBox.Icon.Warning, REGENERATE_TOKEN, REGENERATE_CONFIRM, parent=self)
        yes = box.addButton("Régénérer", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton("Annuler", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(cancel)
        box.setEscapeButton(cancel)
        box.buttonClicked.connect(lambda b: self.regenerate_token() if b is yes else None)
        self.confirm_box = box
        box.open()
        return box

    def regenerate_token(self) -> None:
        from ps_agent.setup_config import regenerate_api_token

        try:
            path = regenerate_api_token(self.folder)
        except OSError as exc:
            self.result.setStyleSheet("color: #a40000;")
            self.result.setText(f"Jeton non régénéré : {exc.strerror} ({exc.filename}).")
            return
        self.result.setStyleSheet("")
        self.result.setText(
            f"Nouveau jeton de l'API locale : {path}\nDonnez-le au logiciel métier ; l'API locale l'utilise "
            "à son prochain démarrage."
        )
        self.token_regenerated.emit(path)


class DiagnosticPage(QWidget):
    """``ps-agent doctor`` as a page. ``options``: a callable giving the ``DoctorOptions`` (worker side)."""

    checked = Signal(list)  # list[ps_agent.doctor.Check]

    def __init__(self, run: Runner, options: Callable[[], Any] | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Diagnostic du poste")
        self._run = run
        self._options = options
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.start = QPushButton("Lancer le diagnostic")
        self.start.setAccessibleName("Lancer le diagnostic du poste")
        row.addWidget(self.start)
        self.summary = QLabel("")
        self.summary.setAccessibleName("Bilan du diagnostic")
        row.addWidget(self.summary, 1)
        lay.addLayout(row)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["État", "Contrôle", "Que faire"])
        self.table.setAccessibleName("Résultats du diagnostic")
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(True)
        lay.addWidget(self.table, 1)
        self.start.clicked.connect(self.run_checks)
        self.checks: list[Any] = []

    def run_checks(self) -> None:
        from ps_agent.doctor import default_options, run_checks

        make = self._options or default_options
        self.start.setEnabled(False)
        self.summary.setText("Diagnostic en cours…")

        def failed(exc: BaseException) -> None:
            self.start.setEnabled(True)
            self.summary.setText(f"Diagnostic impossible : {getattr(exc, 'message_fr', exc)}")

        self._run(Op(self, lambda _ctx: run_checks(make()), label="Diagnostic du poste")
                  .success(self.show_checks).failure(failed))  # fmt: skip

    def show_checks(self, checks: list[Any]) -> None:
        self.checks = list(checks)
        self.table.setRowCount(len(checks))
        for i, c in enumerate(checks):
            state = CHECK_OK if c.ok and not c.warning else CHECK_WARN if c.ok else CHECK_FIX
            cells = [state, c.label_fr + (f" — {c.detail}" if c.detail else ""), "" if c.ok else c.fix_fr]
            if c.ok and c.warning:
                cells[2] = c.fix_fr
            colour = {"OK": "#e6f4ea", CHECK_WARN: "#fff4e5", CHECK_FIX: "#fdecea"}[state]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                if j == 0:
                    item.setBackground(QColor(colour))
                self.table.setItem(i, j, item)
        self.table.resizeRowsToContents()
        bad = sum(not c.ok for c in checks)
        self.summary.setText("Tout est en ordre." if bad == 0 else f"{bad} point(s) à corriger.")
        self.start.setEnabled(True)
        self.checked.emit(self.checks)
