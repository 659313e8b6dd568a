"""Requirements of dmp-ui-requirements.md the window meets since the audit (docs/ui-requirements.md):
1.2 a test Vitale card refused in production (the dialog the CNDA screenshots), 1.3 the card's end of
validity announced, 1.6 card/network errors point to the Diagnostic page, 1.7 a remote-desktop session
said, 2.5 a qualified identity's traits locked, 8.8 the tray counts the waiting deposits, 10.4 « Vacciné
par » and « Saisi par »."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QMessageBox

from ps_agent.auth.errors import PinBlocked, WrongPin
from ps_agent.card.errors import NoReader
from ps_agent.dmp.errors import TransportError
from ps_agent.identity.errors import InsiConfigurationError
from sandbox import demo
from ui import labels as L
from ui import tray as tray_mod
from ui.controller import who_acts
from ui.main_window import error_text
from ui.tray import card_expiry, expiry_warning, remote_session_note, state_icon

from .conftest import demo_identity, open_qualified

REMOTE_VARS = ("SSH_CONNECTION", "SSH_CLIENT", "XRDP_SESSION", "XRDP_SOCKET_PATH", "SESSIONNAME")


class TestCardInProduction:
    """Stands in for the INSi source with the production INSi client's own refusal of a test Vitale card
    (``InsiClient.check_selection``: raised before anything is sent)."""

    name = "INSi (production)"
    calls = 0

    def find(self, typed: Any, ctx: Any) -> Any:
        self.calls += 1
        raise InsiConfigurationError(
            "Carte Vitale de test ou de démonstration : refusée avec le service INSi de production.",
            code="vitale_test_card",
        )


def test_a_test_vitale_card_in_production_gets_its_own_dialog_and_opens_nothing(
    window_for: Any, qtbot: Any, wait_idle: Any
) -> None:
    source = TestCardInProduction()
    w = window_for("gp", source=source)
    w.open_form.fill(demo_identity(demo.DEMO_ADULT))
    qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.error_box is not None and w.error_box.isVisible(), timeout=10_000)
    box = w.error_box
    assert box is not None
    assert box.text() == "Carte Vitale de test : refusée en production."
    assert box.windowTitle() == L.VITALE_TEST_CARD_TITLE
    assert "refusée avec le service INSi de production" in box.informativeText()
    assert box.icon() is QMessageBox.Icon.Critical
    assert w.patient is None and source.calls == 1
    assert "[vitale_test_card]" in w.status_line.text()
    box.buttons()[0].click()
    assert not box.isVisible()


def test_other_failures_open_no_dialog(window_for: Any, qtbot: Any) -> None:
    class NotFound:
        name = "INSi"

        def find(self, typed: Any, ctx: Any) -> Any:
            raise InsiConfigurationError("Service INSi mal configuré.", code="insi_config")

    w = window_for("gp", source=NotFound())
    w.open_form.fill(demo_identity(demo.DEMO_ADULT))
    qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Service INSi mal configuré." in w.status_line.text(), timeout=10_000)
    assert w.error_box is None


def test_card_and_network_errors_point_to_the_diagnostic_page() -> None:
    assert error_text(NoReader("Aucun lecteur de cartes.")).endswith(L.SEE_DIAGNOSTIC)
    assert L.SEE_DIAGNOSTIC in error_text(TransportError("Le DMP ne répond pas.", code="network"))
    # a PIN typo or a blocked card has its own guidance (the PIN dialog), not the diagnosis
    assert L.SEE_DIAGNOSTIC not in error_text(WrongPin(2))
    assert L.SEE_DIAGNOSTIC not in error_text(PinBlocked())


# ------------------------------------------------------------------ 1.3: the card's end of validity
def test_expiry_warning_thresholds() -> None:
    end = dt.datetime(2027, 3, 31, 22, 59, tzinfo=dt.UTC)
    assert expiry_warning(end, end - dt.timedelta(days=31)) == ""
    assert expiry_warning(end, end - dt.timedelta(days=30)) == L.CPS_EXPIRY_SOON.format(
        date="31/03/2027", days=30
    )
    assert "dans 7 jour(s)" in expiry_warning(end, end - dt.timedelta(days=7))
    assert expiry_warning(end, end - dt.timedelta(hours=2)) == L.CPS_EXPIRY_TODAY.format(date="31/03/2027")
    assert expiry_warning(end, end + dt.timedelta(seconds=1)) == ""  # expired: the core refuses the login
    assert expiry_warning(None, end) == ""


def test_a_card_expiring_in_5_days_is_announced_at_login(
    window_for: Any, services: Any, test_pki: Any, monkeypatch: Any
) -> None:
    for var in REMOTE_VARS:
        monkeypatch.delenv(var, raising=False)
    not_after = test_pki.card("gp").auth_cert.not_valid_after_utc
    notes: list[tuple[str, str]] = []
    monkeypatch.setattr(tray_mod.Tray, "showMessage", lambda self, t, text, *a: notes.append((t, text)))
    monkeypatch.setattr(tray_mod, "now_utc", lambda: not_after - dt.timedelta(days=5))
    w = window_for("gp")
    assert card_expiry(w.controller.session) == not_after
    expected = L.CPS_EXPIRY_SOON.format(date=not_after.strftime("%d/%m/%Y"), days=5)
    assert w.workstation_note.isVisible() and w.workstation_note.text() == expected
    assert ("Carte CPS bientôt expirée", expected) in notes
    assert expected in w.tray.toolTip()


def test_a_card_far_from_expiry_says_nothing(window_for: Any, monkeypatch: Any) -> None:
    for var in REMOTE_VARS:
        monkeypatch.delenv(var, raising=False)
    w = window_for("gp")
    not_after = card_expiry(w.controller.session)
    assert not_after is not None and not_after - tray_mod.now_utc() > dt.timedelta(days=30)
    assert not w.workstation_note.isVisible() and w.workstation_note.text() == ""
    assert "expire" not in w.tray.toolTip()


# ------------------------------------------------------------------ 1.7: remote-desktop session
@pytest.mark.parametrize(
    ("environ", "platform", "what"),
    [
        ({"SESSIONNAME": "RDP-Tcp#3"}, "win32", "session Bureau à distance Windows (RDP-Tcp#3)"),
        ({"SESSIONNAME": "ICA-tcp#1"}, "win32", "session Citrix (ICA-tcp#1)"),
        ({"SESSIONNAME": "Console"}, "win32", ""),
        ({"XRDP_SESSION": "1"}, "linux", "session xrdp"),
        ({}, "linux", ""),
    ],
)
def test_remote_session_note(environ: dict[str, str], platform: str, what: str) -> None:
    note = remote_session_note(environ, platform)
    assert note == (L.REMOTE_SESSION_NOTE.format(what=what) if what else "")


def test_the_window_says_where_the_card_must_be_in_a_remote_session(
    window_for: Any, monkeypatch: Any
) -> None:
    for var in REMOTE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.10 50000 192.0.2.20 22")
    w = window_for(None)
    text = L.REMOTE_SESSION_NOTE.format(what="connexion SSH")
    assert w.workstation_note.isVisible() and w.workstation_note.text() == text
    assert "un lecteur par poste" in text and text in w.tray.toolTip()


# ------------------------------------------------------------------ 2.4-2.6: traits, INS, locked traits
def test_strict_traits_then_all_traits_and_qualified_traits_locked(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any
) -> None:
    p = demo.DEMO_ADULT
    w = window_for("gp")
    w.open_form.fill(demo_identity(p))
    with qtbot.waitSignal(w.patient_opened, timeout=10_000):
        qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    bar = w.identity_bar
    born = f"{p.birth_date[6:]}/{p.birth_date[4:6]}/{p.birth_date[:4]}"
    first = p.given_names.split(" ")[0]
    assert bar.traits.text() == (
        f"<b>{p.family_name} {first} — né(e) le {born} — {p.sex} — né(e) à {p.birth_place}</b>"
    )
    assert p.ins not in bar.traits.text() and not bar.more.isVisible()
    qtbot.mouseClick(bar.show_all, Qt.MouseButton.LeftButton)
    assert bar.more.isVisible() and L.INS_HIDDEN in bar.more.text()  # récupérée: no INS shown (2.6)
    assert p.ins not in bar.more.text() and f"Prénoms de naissance : {p.given_names}" in bar.more.text()
    assert not bar.locked.isVisible()  # récupérée: not locked yet
    wait_idle(w)
    w.close_patient()
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    assert bar.more.isVisible() and f"Matricule INS {p.ins} (OID {p.oid})" in bar.more.text()
    assert "vérifiée sur : Carte nationale d'identité" in bar.more.text()
    lock = w.identity_bar.locked
    assert lock.isVisible() and lock.text() == L.TRAITS_LOCKED
    assert "perdre à l'identité son statut qualifié" in lock.toolTip()
    assert not w.identity_bar.validate_btn.isVisible()
    assert not w.open_form.isVisible()  # the traits form is not offered while the record is open


# ------------------------------------------------------------------ 8.8 tray badge, 10.4 vaccinator
def test_the_tray_icon_counts_waiting_deposits() -> None:
    plain = state_icon("#1e7b34").pixmap(32, 32).toImage()
    badged = state_icon("#1e7b34", 3).pixmap(32, 32).toImage()
    assert plain.pixelColor(28, 3).alpha() == 0
    badge = badged.pixelColor(26, 5)
    assert abs(badge.blue() - QColor("#1565c0").blue()) < 40 and badge.alpha() > 200
    assert tray_mod.queue_line([]) == "File d'envoi vide"


def test_vaccinator_and_recorder_are_both_shown(window_for: Any) -> None:
    w = window_for("pharmacist")
    who = who_acts(w.controller.session.identity)
    page = w.vaccination_page
    assert page.vaccinator.text() == who and page.recorder.text() == who
    assert page.recorder.accessibleName() == "Saisi par"


def test_after_a_vaccination_the_attestation_prints_a4_portrait(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any, tmp_path: Any
) -> None:
    from PySide6.QtGui import QPageLayout, QPageSize
    from PySide6.QtPrintSupport import QPrinter

    w = window_for("pharmacist")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    page = w.vaccination_page
    assert not page.attestation.isEnabled()  # nothing recorded yet
    page.cis.setText("60234100")
    page.label.setText("REPEVAX, suspension injectable")
    page.atc.setText("J07CA01")
    page.lot.setText("ATTEST-7")
    qtbot.mouseClick(page.record, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(page.attestation.isEnabled, timeout=30_000)
    assert page.result.text() == "Vaccination enregistrée dans le DMP (REPEVAX, suspension injectable)."
    html = page.last_attestation
    assert "ATTEST-7" in html and "PAUL PHARMACIEN (Pharmacien d&#x27;officine)" in html
    assert demo.DEMO_ADULT.family_name in html
    printer = QPrinter(QPrinter.PrinterMode.HighResolution)
    printer.setOutputFormat(QPrinter.OutputFormat.PdfFormat)
    out = tmp_path / "attestation.pdf"
    printer.setOutputFileName(str(out))
    page.print_attestation(printer)
    assert out.read_bytes().startswith(b"%PDF-")
    layout = printer.pageLayout()
    assert layout.pageSize().id() == QPageSize.PageSizeId.A4
    assert layout.orientation() == QPageLayout.Orientation.Portrait


# ------------------------------------------------------------------ 5.2: a minor's document visibility
def test_a_minor_without_secret_connection_needs_an_explicit_choice_for_the_legal_representatives(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any, pdf_bytes: bytes
) -> None:
    from PySide6.QtWidgets import QInputDialog

    w = window_for("gp")
    w.open_form.fill(demo_identity(demo.DEMO_MINOR))
    with qtbot.waitSignal(w.patient_opened, timeout=10_000):
        qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    box = w.minor_box
    assert box is not None
    qtbot.mouseClick(next(b for b in box.buttons() if b.text() == "Non"), Qt.MouseButton.LeftButton)
    assert not w.patient.secret_connection
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("Livret de famille", True))
    qtbot.mouseClick(w.identity_bar.validate_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.patient.status is not None, timeout=15_000)
    wait_idle(w)
    page = w.deposit_page
    assert page.reps_choice.isVisibleTo(page) and not page.invisible_reps.isVisibleTo(page)
    assert page.reps_choice.currentText() == L.MINOR_REPS_CHOOSE  # no default
    page.set_pdf(pdf_bytes, "certificat.pdf")
    page.title.setText("Certificat de vaccination — test mineur")
    findings = [page.findings.item(i).text() for i in range(page.findings.count())]
    assert "Erreur : " + L.MINOR_REPS_MISSING in findings
    if page.blocked_reason:  # not authorised on this DMP is no reason to refuse a deposit (3.5)
        pytest.fail(page.blocked_reason)
    assert not page.send.isEnabled()
    page.reps_choice.setCurrentIndex(page.reps_choice.findData(True))
    assert page.send.isEnabled() and page.visibility().invisible_to_legal_representatives
    with qtbot.waitSignal(w.deposit_done, timeout=30_000) as sig:
        qtbot.mouseClick(page.send, Qt.MouseButton.LeftButton)
    assert sig.args[0].document_uids
    assert page.reps_choice.currentText() == L.MINOR_REPS_CHOOSE  # the next document is chosen again
    # the DMP holds it invisible to the legal representatives
    uid = sig.args[0].document_uids[0]
    p = w.patient
    found = p.handle.list_documents().value
    entry = next(e for e in found.entries if e.unique_id == uid)
    assert entry.visibility.invisible_to_legal_representatives


def test_an_adult_has_no_legal_representatives_choice(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any
) -> None:
    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    page = w.deposit_page
    assert not page.reps_choice.isVisibleTo(page) and page.invisible_reps.isVisibleTo(page)
    assert not page.invisible_reps.isChecked()


# ------------------------------------------------------------------ 2.8: DMP traits compared, never shown
def test_dmp_traits_differ_unit() -> None:
    from ps_agent.dmp.hl7 import DmpStatus
    from ui.labels import IdentityStatus
    from ui.patient import dmp_traits_differ

    ident = demo_identity(demo.DEMO_ADULT, IdentityStatus.QUALIFIEE)
    first = ident.given_names.split()[0]
    born = ident.birth_date.replace("-", "")
    same = DmpStatus(True, True, "VALIDE", False, ident.birth_family_name.lower(), first, born, ident.sex)
    assert dmp_traits_differ(ident, same) == []
    assert dmp_traits_differ(ident, DmpStatus(True, True, "VALIDE", False, "NON RENSEIGNE")) == []
    other = DmpStatus(
        True, True, "VALIDE", False, "AUTRE-NOM", first, "19000101", "M" if ident.sex == "F" else "F"
    )
    assert dmp_traits_differ(ident, other) == ["nom de naissance", "date de naissance", "sexe"]
    assert dmp_traits_differ(ident, DmpStatus(False, False, "NON_EXISTE", False)) == []


class WrongBirthDate:
    """An identity source whose answer carries another birth date than the DMP's own traits for this INS."""

    name = "INSi (bac à sable)"

    def find(self, typed: Any, ctx: Any) -> Any:
        from dataclasses import replace

        from ui.labels import IdentityStatus

        return replace(demo_identity(demo.DEMO_ADULT, IdentityStatus.RECUPEREE), birth_date="1980-01-01")


def test_dmp_traits_that_differ_from_the_ins_are_flagged_not_shown(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any
) -> None:
    from PySide6.QtWidgets import QInputDialog

    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    assert not w.dmp_banner.traits_warning.isVisible()  # the sandbox DMP agrees with the INS traits
    w.close_patient()
    w.identity_source = WrongBirthDate()
    w.open_form.fill(demo_identity(demo.DEMO_ADULT))
    with qtbot.waitSignal(w.patient_opened, timeout=10_000):
        qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("Passeport", True))
    qtbot.mouseClick(w.identity_bar.validate_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.patient.status is not None, timeout=15_000)
    assert w.dmp_banner.traits_warning.isVisible()
    assert w.dmp_banner.traits_warning.text() == L.DMP_TRAITS_DIFFER
    dmp_birth = w.patient.status.birth_date
    shown = " ".join(x.text() for x in (w.dmp_banner.text, w.identity_bar.traits, w.identity_bar.more))
    assert dmp_birth and dmp_birth not in shown  # RG_0320: the DMP's own traits are not displayed


# ------------------------------------------------------------------ 6.3, 6.5, 6.13 on the sandbox's demo list
def test_the_list_marks_patient_documents_local_times_and_authors(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any
) -> None:
    from zoneinfo import ZoneInfo

    from PySide6.QtGui import QBrush

    from ui.documents import DocumentTableModel

    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    qtbot.waitUntil(lambda: w.doc_model.rowCount() > 0, timeout=20_000)
    m = w.doc_model
    entries = m.entries
    patient_rows = [i for i, e in enumerate(entries) if e.title == "Mon carnet de tension"]
    assert patient_rows, [e.title for e in entries]
    i = patient_rows[0]
    assert L.PATIENT_AUTHORED in m.index(i, 1).data()  # 6.3
    assert isinstance(m.data(m.index(i, 1), Qt.ItemDataRole.BackgroundRole), QBrush)
    gp_doc = next(k for k, e in enumerate(entries) if e.authors and e.authors[0].institution_name)
    e = entries[gp_doc]
    paris = e.creation_time.astimezone(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
    assert m.index(gp_doc, 0).data() == paris  # 6.5: local time
    utc = e.creation_time.astimezone(dt.UTC).strftime("%d/%m/%Y %H:%M")
    assert m.data(m.index(gp_doc, 0), Qt.ItemDataRole.ToolTipRole) == f"UTC : {utc}"
    author = m.index(gp_doc, 4).data()  # 6.13: « Prénom NOM — spécialité — structure »
    assert author.endswith(" — " + e.authors[0].institution_name) and e.authors[0].family_name in author
    assert m.data(m.index(gp_doc, 0), DocumentTableModel.ENTRY_ROLE) is e


# ------------------------------------------------------------------ 9.4: replace one's own document
def test_the_author_replaces_a_document_and_the_old_one_becomes_obsolete(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any, pdf_bytes: bytes
) -> None:
    from ui.doc_actions import actions_for

    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    page = w.deposit_page
    page.set_pdf(pdf_bytes, "v1.pdf")
    page.title.setText("Lettre de liaison — version 1")
    with qtbot.waitSignal(w.deposit_done, timeout=30_000) as first:
        qtbot.mouseClick(page.send, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(w.documents_listed, timeout=20_000):
        w.list_documents()
    entries = w.doc_model.entries
    mine = next(e for e in entries if e.unique_id in first.args[0].document_uids)
    others = next(
        e for e in entries if e.authors and e.authors[0].id_nat != w.controller.session.identity.id_nat
    )
    identity = w.controller.session.identity
    assert L.REPLACE_ACTION in [a.label for a in actions_for(mine, identity, medecin_traitant=True)]
    assert L.REPLACE_ACTION not in [a.label for a in actions_for(others, identity, medecin_traitant=True)]
    w.start_replacement(mine)
    assert w.tabs.currentWidget() is page and page.replacing is mine
    assert page.replacing_note.text() == L.REPLACING_NOTE.format(title="Lettre de liaison — version 1")
    assert page.type_code() == mine.type_code.code and page.title.text() == mine.title
    page.set_pdf(pdf_bytes, "v2.pdf")
    page.title.setText("Lettre de liaison — version 2")
    with qtbot.waitSignal(w.deposit_done, timeout=30_000) as second:
        qtbot.mouseClick(page.send, Qt.MouseButton.LeftButton)
    assert page.result.text().startswith(L.REPLACED_RESULT.format(rubric="Comptes rendus").split(" ;")[0])
    assert page.replacing is None and not page.replacing_note.isVisible()
    # the DMP: the first version is now deprecated, the new one active
    found = w.patient.handle.list_documents(include_deprecated=True).value
    by_uid = {e.unique_id: e for e in found.entries}
    old = by_uid[mine.unique_id]
    new = by_uid[second.args[0].document_uids[0]]
    assert old.status.endswith("Deprecated") and new.status.endswith("Approved")
    assert new.title == "Lettre de liaison — version 2"
    with qtbot.waitSignal(w.documents_listed, timeout=20_000):
        w.filters.old_versions.setChecked(True)  # « Afficher les anciennes versions » lists again
    row = next(i for i, e in enumerate(w.doc_model.entries) if e.unique_id == mine.unique_id)
    assert L.STATE_OBSOLETE in w.doc_model.index(row, 3).data()


# ------------------------------------------------------------------ 1.1: establishment certificate, no AIR
def test_establishment_certificate_without_air_says_consultation_is_locked_and_still_deposits(
    window_for: Any,
    services: Any,
    test_pki: Any,
    qtbot: Any,
    monkeypatch: Any,
    wait_idle: Any,
    pdf_bytes: bytes,
) -> None:
    from pathlib import Path

    from ps_agent.access.policy import MSG_AIR_CONSULT
    from ps_agent.auth.model import AuthMode
    from ps_agent.auth.software import SoftwareCredentials
    from ui.batch import AUTHORS_FILE

    from .conftest import identity_of

    home = Path(services.config.home)
    home.mkdir(parents=True, exist_ok=True)
    (home / AUTHORS_FILE).write_text(AUTHORS_TOML, encoding="utf-8")  # the doctors deposited for
    w = window_for(None)
    org = test_pki.establishment
    creds = SoftwareCredentials(identity_of("secretary"), AuthMode.INDIRECTE, org.auth_cert, org.auth_key,
                                org.sign_cert, org.sign_key, org.chain)  # fmt: skip
    w.controller.use_session(services.open_session(creds))
    assert w.header.mode.text() == "Certificat d'établissement"
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    wait_idle(w)
    assert w.dmp_banner.reason.isVisible() and w.dmp_banner.reason.text() == MSG_AIR_CONSULT
    assert not w.dmp_banner.tick.isVisible() and not w.bdg_btn.isVisible()
    assert w.doc_model.rowCount() == 0  # no search was attempted
    searches = list(services.journal.records(action="dmp.search"))
    assert searches == []
    page = w.deposit_page
    page.set_pdf(pdf_bytes, "lettre.pdf")
    assert page.send.isEnabled() and page.disabled_reason.text() == ""  # deposits stay possible


# ------------------------------------------------------------------ issue 11 §6: AIR, the doctor chosen
AUTHORS_TOML = (
    "[[auteur]]\n"
    'id_nat = "899700000013"\nfamily_name = "MEDECIN"\ngiven_name = "MARIE"\n'
    'specialty_code = "G15_10/SM54"\norganization_id = "3999999990001"\n'
    'organization_name = "CABINET DU CENTRE"\nfacility_type_code = "SA07"\n'
)


def test_a_secretary_in_air_mode_deposits_for_the_doctor_chosen(
    window_for: Any,
    services: Any,
    test_pki: Any,
    qtbot: Any,
    monkeypatch: Any,
    wait_idle: Any,
    pdf_bytes: bytes,
) -> None:
    from pathlib import Path

    from ps_agent.auth.model import AuthMode
    from ps_agent.auth.software import SoftwareCredentials
    from ui.batch import AUTHORS_FILE

    from .conftest import identity_of

    home = Path(services.config.home)
    home.mkdir(parents=True, exist_ok=True)
    w = window_for(None)
    org = test_pki.establishment
    creds = SoftwareCredentials(identity_of("secretary"), AuthMode.INDIRECTE_RENFORCEE, org.auth_cert,
                                org.auth_key, org.sign_cert, org.sign_key, org.chain)  # fmt: skip
    w.controller.use_session(services.open_session(creds))  # no ui-auteurs.toml yet
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    page = w.deposit_page
    page.set_pdf(pdf_bytes, "cr.pdf")
    page.title.setText("Compte rendu déposé par le secrétariat")
    assert page.author.isVisibleTo(page) and page.author.count() == 0
    assert "Erreur : " + L.DEPOSIT_NO_AUTHOR in [
        page.findings.item(i).text() for i in range(page.findings.count())
    ]
    assert not page.send.isEnabled()
    (home / AUTHORS_FILE).write_text(AUTHORS_TOML, encoding="utf-8")
    w.controller.use_session(services.open_session(creds))  # the list is read at each session opening
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    page.set_pdf(pdf_bytes, "cr.pdf")
    page.title.setText("Compte rendu déposé par le secrétariat")
    assert page.author.currentText().startswith("Dr Marie MEDECIN") and page.send.isEnabled()
    from ps_agent.access.policy import MSG_NON_PS  # a secretary: no search attempted, the reason said

    assert (
        w.dmp_banner.reason.text() == MSG_NON_PS and list(services.journal.records(action="dmp.search")) == []
    )
    assert "Consultation" not in w.status_line.text()
    with qtbot.waitSignal(w.deposit_done, timeout=30_000) as sig:
        qtbot.mouseClick(page.send, Qt.MouseButton.LeftButton)
    uid = sig.args[0].document_uids[0]
    # the DMP, read by the GP (the secretary may not consult): the document's author is the doctor chosen
    from .conftest import software_credentials

    gp = services.open_session(software_credentials(test_pki, "gp"))
    try:
        found = gp.patient(w.patient.identity.ref).list_documents().value
    finally:
        gp.close()
    entry = next(e for e in found.entries if e.unique_id == uid)
    assert [a.id_nat for a in entry.authors] == ["899700000013"]


# ------------------------------------------------------------------ 2.7: stale Vitale reading, swapped card
@pytest.mark.parametrize("stale", [True, False])
def test_a_stale_vitale_reading_or_a_swapped_card_asks_to_read_it_again(
    window_for: Any, qtbot: Any, stale: bool
) -> None:
    from ps_agent.identity.errors import VitaleSelectionExpired
    from ps_agent.identity.vitale import VitaleCardChanged

    class Stale:
        name = "INSi"

        def find(self, typed: Any, ctx: Any) -> Any:
            if stale:  # the core's own refusal (InsiClient.check_selection)
                raise VitaleSelectionExpired(
                    "La lecture de la carte Vitale date de plus de 20 minutes : relisez la carte et "
                    "choisissez à nouveau le bénéficiaire.",
                    code="vitale_expired",
                    field="read_at",
                )
            raise VitaleCardChanged("Une autre carte Vitale a été insérée depuis le choix du bénéficiaire")

    w = window_for("gp", source=Stale())
    reads: list[int] = []
    w.read_vitale = lambda: reads.append(1)  # the real one needs the INSi desk and a Vitale card
    w.open_form.fill(demo_identity(demo.DEMO_ADULT))
    qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.error_box is not None and w.error_box.isVisible(), timeout=10_000)
    box = w.error_box
    assert box.windowTitle() == L.VITALE_REREAD_TITLE and "relisez la carte" in box.text()
    assert w.patient is None
    again = next(b for b in box.buttons() if b.text() == L.VITALE_REREAD)
    qtbot.mouseClick(again, Qt.MouseButton.LeftButton)
    assert reads == [1]


# ------------------------------------------------------------------ 10.8: gaps from the versioned rule table
def _imm(date: str, atc: str, given: bool = True) -> Any:
    from cda.vaccinations import Immunization, atc_info

    label, antigens = atc_info(atc)
    return Immunization(date, "", "", label, atc, label, antigens, "LOT", None, "IMMUNIZ", given, "", "", "",
                        "", "", "")  # fmt: skip


def test_vaccination_gaps_rules() -> None:
    from ui.vaccinations import vaccination_gaps

    today = dt.date(2026, 12, 3)
    assert vaccination_gaps("2010-05-01", [], today) == []  # a child: no adult rule applies
    adult = vaccination_gaps("1979-03-21", [], today)
    assert adult == ["Rappel diphtérie-tétanos-poliomyélite : aucune dose enregistrée dans le DMP."]
    assert vaccination_gaps("1979-03-21", [_imm("2010-06-01", "J07CA01")], today) == []  # 16 years < 20
    old = vaccination_gaps("1979-03-21", [_imm("2004-06-01", "J07CA01")], today)
    assert old == [
        "Rappel diphtérie-tétanos-poliomyélite : dernière dose le 01/06/2004, il y a 20 ans ou plus "
        "(rappel tous les 20 ans à cet âge)."
    ]
    assert vaccination_gaps("1979-03-21", [_imm("2020-06-01", "J07CA01", given=False)], today) == adult
    # 70 years old: every 10 years, and the flu each season from 1 October
    senior = [_imm("2019-01-10", "J07AM01"), _imm("2025-11-02", "J07BB02")]
    gaps = vaccination_gaps("1956-02-01", senior, today)
    assert gaps == [
        "Grippe : aucune vaccination enregistrée pour la saison 2026-2027 (recommandée chaque année à partir "
        "de 65 ans)."
    ]
    assert vaccination_gaps("1956-02-01", [*senior, _imm("2026-10-20", "J07BB02")], today) == []
    assert len(vaccination_gaps("1956-02-01", [_imm("2014-01-10", "J07AM01")], today)) == 2


def test_the_vaccination_page_shows_the_gaps_of_the_history_read(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any
) -> None:
    from ui import vaccinations
    from ui.vaccinations import GAP_RULES_VERSION

    class Senior:
        """The demo adult's DMP (last dTP booster and flu dose in 2026) for a patient born in 1950."""

        name = "INSi (bac à sable)"

        def find(self, typed: Any, ctx: Any) -> Any:
            from dataclasses import replace

            from ui.labels import IdentityStatus

            return replace(demo_identity(demo.DEMO_ADULT, IdentityStatus.RECUPEREE), birth_date="1950-01-01")

    w = window_for("pharmacist", source=Senior())
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    page = w.vaccination_page
    w.tabs.setCurrentWidget(page)
    with qtbot.waitSignal(w.vaccinations_listed, timeout=30_000):
        qtbot.mouseClick(page.refresh, Qt.MouseButton.LeftButton)
    # today: whatever the rules say of this history (the demo doses are dated relative to today)
    now_due = vaccinations.vaccination_gaps("1950-01-01", page.model.items)
    assert page.model.rowCount() > 0 and page.gaps.isVisible() == bool(now_due)
    last_tetanus = max(i.date for i in page.model.items if "tétanos" in i.antigens)
    later = dt.date.today() + dt.timedelta(days=11 * 366)  # eleven years on: over 85, the flu season passed
    monkeypatch.setattr(vaccinations, "today", lambda: later)
    with qtbot.waitSignal(w.vaccinations_listed, timeout=30_000):
        qtbot.mouseClick(page.refresh, Qt.MouseButton.LeftButton)
    last = dt.date.fromisoformat(last_tetanus).strftime("%d/%m/%Y")
    season = later.year if (later.month, later.day) >= (10, 1) else later.year - 1
    assert page.gaps.isVisible() and page.gaps.text() == (
        f"À vérifier ({GAP_RULES_VERSION}) :\n"
        f"Rappel diphtérie-tétanos-poliomyélite : dernière dose le {last}, il y a 10 ans ou plus "
        "(rappel tous les 10 ans à cet âge).\n"
        f"Grippe : aucune vaccination enregistrée pour la saison {season}-{season + 1} (recommandée chaque "
        "année à partir de 65 ans)."
    )


# ------------------------------------------------------------------ 10.6: the vaccine class, searchable
def test_the_vaccine_atc_is_searchable_by_disease(window_for: Any) -> None:
    w = window_for("pharmacist")
    page = w.vaccination_page
    completer = page.atc.completer()
    completer.setCompletionPrefix("grippe")
    assert completer.completionCount() == 1
    choice = completer.currentCompletion()
    assert choice == "J07BB — vaccins grippaux (grippe)"
    completer.activated.emit(choice)
    assert page.atc.text() == "J07BB" and page.label.text() == "vaccins grippaux"
    page.label.setText("VAXIGRIPTETRA, suspension injectable")
    completer.setCompletionPrefix("tétanos")
    assert completer.completionCount() >= 3  # every vaccine that covers tetanus
    completer.activated.emit(
        "J07CA01 — vaccin diphtérie, poliomyélite, tétanos (diphtérie, poliomyélite, tétanos)"
    )
    assert page.atc.text() == "J07CA01" and page.label.text() == "VAXIGRIPTETRA, suspension injectable"
