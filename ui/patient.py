"""The open patient: identity (with its RNIV status and « Valider l'identité »), the seam through which a
patient is found (manual entry today; INSi / Vitale / the practice software later), the DMP status banner
with the explicit consent tick, and the ``OpenPatient`` object the pages share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Protocol

from PySide6.QtCore import QObject, QRegularExpression, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ps_agent.access.policy import AccessMode, PatientRef
from ui import labels as L
from ui.labels import IdentityStatus

DEFAULT_INS_OID = "1.2.250.1.213.1.4.8"  # NIR (production); the test/demo OIDs are typed by hand


@dataclass(frozen=True)
class PatientIdentity:
    """A patient as the window knows it: INS + OID, strict traits, RNIV status and where it came from."""

    ins: str
    oid: str
    status: IdentityStatus
    birth_family_name: str
    given_names: str
    birth_date: str  # YYYY-MM-DD
    sex: str  # M | F
    birth_place_code: str
    source: str = "saisie manuelle"
    validated_with: str = ""
    record_id: int | None = None  # the identity desk's record (ps_agent.identities), when it came from INSi

    @property
    def ref(self) -> PatientRef:
        return PatientRef(self.ins, self.oid, self.status.value)

    def is_minor(self, today: dt.date | None = None) -> bool:
        try:
            born = dt.date.fromisoformat(self.birth_date)
        except ValueError:
            return False
        today = today or dt.date.today()
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        return age < L.AGE_OF_MAJORITY

    @property
    def qualified(self) -> bool:
        return self.status is IdentityStatus.QUALIFIEE

    @property
    def display(self) -> str:
        """The strict traits in the reference layout (2.4): nom de naissance, premier prénom de naissance,
        date de naissance, sexe, lieu de naissance."""
        first = self.given_names.split(" ")[0] if self.given_names else ""
        born = self.birth_date
        try:
            born = dt.date.fromisoformat(self.birth_date).strftime("%d/%m/%Y")
        except ValueError:
            pass
        place = f" — né(e) à {self.birth_place_code}" if self.birth_place_code else ""
        return f"{self.birth_family_name} {first} — né(e) le {born} — {self.sex}{place}"

    @property
    def all_traits(self) -> str:
        """« Afficher tous les traits » (2.4): the list of first names, the INS matricule and OID only for a
        qualified identity (2.6), where the identity came from."""
        ins = f"Matricule INS {self.ins} (OID {self.oid})" if self.qualified and self.ins else L.INS_HIDDEN
        validated = f" ; vérifiée sur : {self.validated_with}" if self.validated_with else ""
        return f"Prénoms de naissance : {self.given_names} — {ins} — source : {self.source}{validated}"

    def traits(self) -> Any:
        """The ``cda.build.PatientInput`` of this patient (for documents the window builds)."""
        from cda.build import PatientInput

        return PatientInput(
            ins=self.ins,
            ins_oid=self.oid,
            birth_family_name=self.birth_family_name,
            given_names=self.given_names,
            first_given_name=self.given_names.split(" ")[0] if self.given_names else "",
            birth_date=self.birth_date,
            sex=self.sex,
            birth_place_code=self.birth_place_code,
        )

    def validated(self, document: str) -> PatientIdentity:
        """After « Valider l'identité » with a high-trust document: récupérée → qualifiée,
        provisoire → validée (2.2: qualified = INS from INSi AND identity checked)."""
        new = IdentityStatus.QUALIFIEE if self.status is IdentityStatus.RECUPEREE else IdentityStatus.VALIDEE
        if self.status is IdentityStatus.QUALIFIEE:
            new = IdentityStatus.QUALIFIEE
        return replace(self, status=new, validated_with=document)


class IdentitySource(Protocol):
    """Where a patient comes from. ``find`` runs on a worker thread (it may call INSi, read the Vitale
    card…); it returns the identity with the status the source can vouch for. The INSi / Vitale sources
    plug in here (ps_agent.identity), the local API hands over its own ``PatientIdentity``."""

    name: str

    def find(self, typed: PatientIdentity, ctx: Any) -> PatientIdentity: ...


class ManualEntrySource:
    """Traits typed at the window and no téléservice behind them: the identity stays provisoire (the INS
    was not returned by INSi, 2.1), so DMP actions stay disabled with the reason (2.6)."""

    name = "saisie manuelle"

    def find(self, typed: PatientIdentity, ctx: Any) -> PatientIdentity:
        return replace(typed, status=IdentityStatus.PROVISOIRE, source=self.name)


class OpenPatient(QObject):
    """The patient open in the window and its DMP handle; shared by every page."""

    changed = Signal()

    def __init__(self, identity: PatientIdentity, handle: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.identity = identity
        self.handle = handle
        self.status: Any = None  # DmpStatus after TD0.2
        self.emergency_notice = ""
        self.secret_connection = False  # minor: decided « en concertation avec son patient » (5.1)
        self.last_consultation: Any = None  # 6.6: this PS's previous consultation, fixed at the first list

    @property
    def access(self) -> tuple[str, str]:
        mode, reason = self.handle.access()
        return str(getattr(mode, "value", mode)), reason

    @property
    def in_emergency(self) -> bool:
        return self.access[0] != AccessMode.NORMAL.value

    @property
    def read_only(self) -> bool:
        """Centre 15: consultation only (4.3)."""
        return self.access[0] == AccessMode.CENTRE_15.value

    def may_read(self) -> bool:
        st = self.status
        if not self.identity.qualified or st is None or not st.exists or st.closed or st.opposed:
            return False
        return self.in_emergency or st.authorised

    def set_identity(self, identity: PatientIdentity) -> None:
        self.identity = identity
        self.changed.emit()


def _norm(text: str) -> str:
    """Upper case, no accents, hyphens/apostrophes as spaces, single spaces: how traits are compared."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(plain.upper().replace("-", " ").replace("'", " ").split())


UNFILLED = {"", "NON RENSEIGNE"}  # REC_0.2-1120: a DMP trait « NON RENSEIGNE » is no trait


def dmp_traits_differ(identity: PatientIdentity, status: Any) -> list[str]:
    """2.8: the traits of the TD0.2 answer that contradict the INS traits (names of the traits, French);
    empty when they agree or the DMP gave none. The DMP's traits themselves are never shown (RG_0320)."""
    if status is None or not getattr(status, "exists", False):
        return []
    out = []
    family = _norm(getattr(status, "family_name", "") or "")
    if family not in UNFILLED and family != _norm(identity.birth_family_name):
        out.append("nom de naissance")
    given = _norm(getattr(status, "given_name", "") or "")
    if given not in UNFILLED and given not in (
        _norm(identity.given_names),
        *_norm(identity.given_names).split(),
    ):
        out.append("prénom")
    birth = "".join(ch for ch in (getattr(status, "birth_date", "") or "") if ch.isdigit())[:8]
    if len(birth) == 8 and birth != identity.birth_date.replace("-", ""):
        out.append("date de naissance")
    gender = (getattr(status, "gender", "") or "").strip().upper()
    if gender in ("M", "F") and identity.sex in ("M", "F") and gender != identity.sex:
        out.append("sexe")
    return out


def dmp_banner(status: Any) -> tuple[str, str]:
    """(kind, French text) of the DMP status banner (3.1). kind: none / closed / opposed / authorised /
    not_authorised / expired / blocked."""
    if status is None:
        return "unknown", "Statut du DMP non lu"
    if not status.exists:
        return "none", L.BANNER_NO_DMP
    if status.opposed:
        return "opposed", L.BANNER_OPPOSED
    if status.closed:
        return "closed", L.BANNER_CLOSED
    mt = f" — {L.BANNER_MT}" if status.is_medecin_traitant else ""
    if status.blocked:
        return "blocked", L.BANNER_BLOCKED + mt
    if status.authorised:
        return "authorised", L.BANNER_AUTHORISED + mt
    if status.authorisation == "EXPIRE":
        return "expired", L.BANNER_EXPIRED + mt
    return "not_authorised", L.BANNER_NOT_AUTHORISED + mt


BANNER_COLOURS = {
    "authorised": "#e6f4ea",
    "not_authorised": "#fff4e5",
    "expired": "#fff4e5",
    "blocked": "#fdecea",
    "none": "#eeeeee",
    "closed": "#eeeeee",
    "opposed": "#fdecea",
    "unknown": "#eeeeee",
}


class OpenPatientForm(QFrame):
    """INS + OID + strict traits; « Ouvrir le dossier »; the Vitale / INSi seam (disabled until wired)."""

    submitted = Signal(object)  # PatientIdentity as typed
    vitale_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Ouvrir un patient")
        self.setMaximumWidth(760)
        form = QFormLayout(self)
        self.ins = QLineEdit()
        self.ins.setValidator(QRegularExpressionValidator(QRegularExpression(r"^\d{0,15}$")))
        self.oid = QLineEdit(DEFAULT_INS_OID)
        self.family = QLineEdit()
        self.given = QLineEdit()
        self.birth = QLineEdit()
        self.birth.setPlaceholderText("AAAA-MM-JJ")
        self.sex = QComboBox()
        self.sex.addItem("Féminin", "F")
        self.sex.addItem("Masculin", "M")
        self.place = QLineEdit()
        self.place.setPlaceholderText("code INSEE de la commune (99xxx à l'étranger)")
        rows = [
            ("Matricule INS", self.ins),
            ("OID de l'INS", self.oid),
            ("Nom de naissance", self.family),
            ("Prénoms de naissance", self.given),
            ("Date de naissance", self.birth),
            ("Sexe", self.sex),
            ("Lieu de naissance", self.place),
        ]
        for text, w in rows:
            w.setAccessibleName(text)
            form.addRow(text, w)
        buttons = QHBoxLayout()
        self.open_btn = QPushButton("Ouvrir le dossier")
        self.open_btn.setAccessibleName("Ouvrir le dossier du patient")
        self.vitale_btn = QPushButton("Lire la carte Vitale (INSi)")
        self.vitale_btn.setAccessibleName("Lire la carte Vitale")
        self.vitale_btn.setEnabled(False)
        self.vitale_btn.setToolTip("Lecture de la carte Vitale et appel INSi : service INSi non configuré.")
        self.ins_required = True
        buttons.addWidget(self.open_btn)
        buttons.addWidget(self.vitale_btn)
        form.addRow(buttons)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #a40000;")
        form.addRow(self.error)
        self.open_btn.clicked.connect(self._submit)
        self.vitale_btn.clicked.connect(self.vitale_requested)

    def use_insi(self, available: bool) -> None:
        """With INSi behind the window: the patient is searched by the strict traits (the INS comes from
        INSi, never typed) and the Vitale card can be read."""
        self.ins_required = not available
        self.vitale_btn.setEnabled(available)
        self.vitale_btn.setToolTip(L.VITALE_TOOLTIP if available else self.vitale_btn.toolTip())
        self.open_btn.setText(L.SEARCH_INSI if available else "Ouvrir le dossier")
        self.open_btn.setAccessibleName(self.open_btn.text())
        self.ins.setPlaceholderText(L.INS_FROM_INSI if available else "")

    def fill(self, identity: PatientIdentity) -> None:
        self.ins.setText(identity.ins)
        self.oid.setText(identity.oid)
        self.family.setText(identity.birth_family_name)
        self.given.setText(identity.given_names)
        self.birth.setText(identity.birth_date)
        self.sex.setCurrentIndex(max(0, self.sex.findData(identity.sex)))
        self.place.setText(identity.birth_place_code)

    def typed(self) -> PatientIdentity:
        return PatientIdentity(
            ins=self.ins.text().strip(),
            oid=self.oid.text().strip(),
            status=IdentityStatus.PROVISOIRE,
            birth_family_name=self.family.text().strip().upper(),
            given_names=self.given.text().strip().upper(),
            birth_date=self.birth.text().strip(),
            sex=str(self.sex.currentData()),
            birth_place_code=self.place.text().strip(),
        )

    def _submit(self) -> None:
        t = self.typed()
        missing = [
            name
            for name, value in (
                ("matricule INS (15 chiffres)", len(t.ins) == 15 or not self.ins_required),
                ("OID", bool(t.oid) or not self.ins_required),
                ("nom de naissance", bool(t.birth_family_name)),
                ("prénoms", bool(t.given_names)),
                ("lieu de naissance", bool(t.birth_place_code)),
            )
            if not value
        ]
        try:
            dt.date.fromisoformat(t.birth_date)
        except ValueError:
            missing.append("date de naissance (AAAA-MM-JJ)")
        if missing:
            self.error.setText("À compléter : " + ", ".join(missing) + ".")
            return
        self.error.setText("")
        self.submitted.emit(t)


class IdentityBar(QFrame):
    """Patient banner: traits, the status chip and « Valider l'identité » (2.2, 2.4)."""

    validated = Signal(str)  # the high-trust document seen

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Identité du patient")
        lay = QHBoxLayout(self)
        self.traits = QLabel("")
        self.traits.setAccessibleName("Traits d'identité")
        self.more = QLabel("")
        self.more.setAccessibleName("Autres traits d'identité")
        self.more.setWordWrap(True)
        self.more.hide()
        self.show_all = QCheckBox(L.SHOW_ALL_TRAITS)
        self.show_all.setAccessibleName(L.SHOW_ALL_TRAITS)
        self.chip = QLabel("")
        self.chip.setAccessibleName("Statut de l'identité")
        self.secret = QLabel(L.MINOR_CONFIDENTIAL_BADGE)
        self.secret.setAccessibleName(L.MINOR_CONFIDENTIAL_BADGE)
        self.secret.setStyleSheet("color: white; background: #6a1b9a; padding: 2px 8px; border-radius: 8px;")
        self.secret.hide()
        self.locked = QLabel(L.TRAITS_LOCKED)  # 2.5: qualified traits are read-only
        self.locked.setAccessibleName(L.TRAITS_LOCKED)
        self.locked.setToolTip(L.TRAITS_LOCKED_TIP)
        self.locked.setAccessibleDescription(L.TRAITS_LOCKED_TIP)
        self.locked.setStyleSheet("color: #1e7b34;")
        self.locked.hide()
        self.validate_btn = QPushButton(L.VALIDATE_IDENTITY)
        self.validate_btn.setAccessibleName(L.VALIDATE_IDENTITY)
        col = QVBoxLayout()
        col.addWidget(self.traits)
        col.addWidget(self.more)
        lay.addLayout(col, 1)
        lay.addWidget(self.show_all)
        lay.addWidget(self.secret)
        lay.addWidget(self.locked)
        lay.addWidget(self.chip)
        lay.addWidget(self.validate_btn)
        self.validate_btn.clicked.connect(self._ask_document)
        self.show_all.toggled.connect(self.more.setVisible)
        self.hide()

    def show_identity(self, identity: PatientIdentity | None, *, secret: bool = False) -> None:
        self.secret.setVisible(secret)
        if identity is None:
            self.hide()
            return
        self.traits.setText(f"<b>{identity.display}</b>")
        self.more.setText(identity.all_traits)
        self.more.setVisible(self.show_all.isChecked())
        self.chip.setText(L.IDENTITY_STATUS_FR[identity.status])
        colour = "#1e7b34" if identity.qualified else "#9a5b00"
        self.chip.setStyleSheet(f"color: white; background: {colour}; padding: 2px 8px; border-radius: 8px;")
        self.validate_btn.setVisible(not identity.qualified)
        self.locked.setVisible(identity.qualified)
        self.show()

    def _ask_document(self) -> None:
        doc, ok = QInputDialog.getItem(
            self,
            L.VALIDATE_IDENTITY,
            "Pièce d'identité à haut niveau de confiance présentée par le patient :",
            list(L.HIGH_TRUST_DOCUMENTS),
            0,
            False,
        )
        if ok and doc:
            self.validated.emit(doc)


class DmpBanner(QFrame):
    """One line: the DMP status (3.1); when not authorised, the explicit tick and the button (3.2, 3.3)."""

    consent = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Statut du DMP")
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.text = QLabel("")
        self.text.setAccessibleName("Statut du DMP")
        row.addWidget(self.text, 1)
        lay.addLayout(row)
        consent_row = QHBoxLayout()
        self.tick = QCheckBox(L.CONSENT_TICK)
        self.tick.setAccessibleName(L.CONSENT_TICK)
        self.button = QPushButton(L.CONSENT_BUTTON)
        self.button.setAccessibleName(L.CONSENT_BUTTON)
        self.button.setEnabled(False)
        consent_row.addWidget(self.tick, 1)
        consent_row.addWidget(self.button)
        lay.addLayout(consent_row)
        self.reason = QLabel("")
        self.reason.setWordWrap(True)
        self.reason.setAccessibleName("Actions DMP indisponibles")
        lay.addWidget(self.reason)
        self.traits_warning = QLabel(L.DMP_TRAITS_DIFFER)  # 2.8
        self.traits_warning.setWordWrap(True)
        self.traits_warning.setAccessibleName("Traits du DMP différents")
        self.traits_warning.setStyleSheet("color: #a40000; font-weight: bold;")
        self.traits_warning.hide()
        lay.addWidget(self.traits_warning)
        self.tick.toggled.connect(self.button.setEnabled)
        self.button.clicked.connect(self._consent)
        self.kind = "unknown"
        self.hide()

    def show_status(
        self, status: Any, *, disabled_reason: str = "", emergency: bool = False, traits_differ: bool = False
    ) -> None:
        self.kind, text = dmp_banner(status)
        self.traits_warning.setVisible(traits_differ)
        self.text.setText(f"<b>{text}</b>")
        self.setStyleSheet(f"DmpBanner {{ background: {BANNER_COLOURS[self.kind]}; }}")
        needs_consent = self.kind in ("not_authorised", "expired") and not disabled_reason and not emergency
        self.tick.setText(L.RENEW_TICK if self.kind == "expired" else L.CONSENT_TICK)
        self.tick.setAccessibleName(self.tick.text())
        self.tick.setChecked(False)  # never pre-ticked (3.2)
        self.tick.setVisible(needs_consent)
        self.button.setVisible(needs_consent)
        self.button.setEnabled(False)
        self.reason.setText(disabled_reason)
        self.reason.setVisible(bool(disabled_reason))
        self.show()

    def _consent(self) -> None:
        if self.tick.isChecked():
            self.button.setEnabled(False)
            self.consent.emit()
