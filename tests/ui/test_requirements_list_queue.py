"""dmp-ui-requirements rows of the second audit: the list's visibility filters (6.1, the masked one for the
médecin traitant only), « Accès au dossier » (11.4 a: the journal of this workstation for the open
patient), the queue rows with the author and the person who deposited (14.4), the details pane (8.6) and
the late rows (8.8), the clock-skew warning (1.4, 15.4)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from ps_agent.dmp.model import Author, Code, DocumentEntry, PatientId, Visibility
from ps_agent.doctor import Check, DoctorOptions, Probe, check_clock
from ps_agent.outbox import EntryState, QueuedDeposit
from sandbox import demo
from ui import labels as L
from ui.documents import DocumentFilter, DocumentTableModel, FilterBar
from ui.journal_queue import QueuePage

from .conftest import minimal_pdf, open_qualified


def _entry(title: str, vis: Visibility) -> DocumentEntry:
    e = DocumentEntry(
        unique_id=f"2.25.{uuid.uuid4().int}",
        patient_id=PatientId("279037505612309", "1.2.250.1.213.1.4.10"),
        type_code=Code("11488-4", "2.16.840.1.113883.6.1", "CR"),
        class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3"),
        healthcare_facility_type=Code("SA07", "x"),
        practice_setting=Code("AMBULATOIRE", "x"),
        creation_time=dt.datetime.now(dt.UTC),
        title=title,
        authors=(Author("899700000013", "MARTIN", "JEAN"),),
        status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved",
    )
    return e.with_visibility(vis)


def test_the_visibility_filters_of_the_list_and_the_masked_one_for_the_medecin_traitant(qtbot: Any) -> None:
    model = DocumentTableModel()
    proxy = DocumentFilter()
    proxy.setSourceModel(model)
    bar = FilterBar(proxy)
    qtbot.addWidget(bar)
    bar.show()
    model.set_entries([
        _entry("Normal", Visibility()),
        _entry("Masqué", Visibility(masked_to_professionals=True)),
        _entry("Caché au patient", Visibility(invisible_to_patient=True)),
        _entry("Caché aux parents", Visibility(invisible_to_legal_representatives=True)),
        _entry("Caché aux deux",
               Visibility(invisible_to_patient=True, invisible_to_legal_representatives=True)),
    ])  # fmt: skip

    def titles() -> list[str]:
        return sorted(proxy.index(r, 1).data() for r in range(proxy.rowCount()))

    # not the médecin traitant: no masked filter; the two invisibility filters are there
    assert bar.masked.isHidden() and bar.invisible_patient.isVisible() and bar.invisible_reps.isVisible()
    bar.invisible_patient.setChecked(True)
    assert titles() == ["Caché au patient", "Caché aux deux"]
    bar.invisible_reps.setChecked(True)
    assert titles() == ["Caché aux deux"]
    bar.invisible_patient.setChecked(False)
    assert titles() == ["Caché aux deux", "Caché aux parents"]
    bar.invisible_reps.setChecked(False)
    assert len(titles()) == 5
    # the médecin traitant: the masked filter appears
    bar.set_medecin_traitant(True)
    assert bar.masked.isVisible() and bar.masked.accessibleName() == L.ONLY_MASKED
    bar.masked.setChecked(True)
    assert titles() == ["Masqué"]
    # no longer the médecin traitant: the box goes away and the filter with it
    bar.set_medecin_traitant(False)
    assert bar.masked.isHidden() and not bar.masked.isChecked() and len(titles()) == 5


def test_the_medecin_traitant_filters_masked_documents_then_opens_the_access_journal(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any
) -> None:
    w = window_for("gp")  # the demo adult's médecin traitant
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    qtbot.waitUntil(lambda: w.doc_model.rowCount() > 0, timeout=20_000)
    assert w.patient.status.is_medecin_traitant
    assert w.filters.masked.isVisible()
    total = w.doc_proxy.rowCount()
    w.filters.masked.setChecked(True)
    masked = [w.doc_proxy.index(r, 3).data() for r in range(w.doc_proxy.rowCount())]
    assert masked and len(masked) < total and all(L.STATE_MASKED in s for s in masked)
    w.filters.masked.setChecked(False)
    w.filters.invisible_patient.setChecked(True)
    hidden = [w.doc_proxy.index(r, 3).data() for r in range(w.doc_proxy.rowCount())]
    assert hidden and all(L.STATE_INVISIBLE_PATIENT in s for s in hidden)
    w.filters.invisible_patient.setChecked(False)
    # « Accès au dossier »: the journal page, filtered on this patient's INS, shows this session's reads
    assert w.access_btn.isVisible() and w.access_btn.text() == L.RECORD_ACCESS
    qtbot.mouseClick(w.access_btn, Qt.MouseButton.LeftButton)
    assert w.tabs.currentWidget() is w.journal_page
    assert w.journal_page.patient.text() == demo.DEMO_ADULT.ins
    assert w.journal_page.current_filter().patient_ins == demo.DEMO_ADULT.ins
    qtbot.waitUntil(lambda: w.journal_page.model.rowCount() > 0, timeout=10_000)
    records = w.journal_page.model.items
    assert {r.event.patient_ins.split("^")[0] for r in records} == {demo.DEMO_ADULT.ins}
    assert {"dmp.status", "dmp.search"} <= {r.event.action for r in records}
    # the core's own count of this patient's records is what the page shows
    journal = w.controller.services.journal
    expected = sum(1 for _ in journal.iter_records(patient_ins=demo.DEMO_ADULT.ins))
    assert w.journal_page.model.rowCount() == expected
    w.close_patient()
    wait_idle(w)
    assert w.access_btn.isHidden()


def _queued(title: str, state: EntryState, created: dt.datetime, *, actor: str, author: str = "",
            reason: str = "", code: str = "") -> QueuedDeposit:  # fmt: skip
    stamp = created.astimezone(dt.UTC).isoformat(timespec="seconds")
    return QueuedDeposit(
        id=f"2.25.{uuid.uuid4().int}", patient_ins="279037505612309", patient_oid="1.2.250.1.213.1.4.10",
        ins_status="QUAL", document_uids=(f"2.25.{uuid.uuid4().int}",), documents=(),
        visibility=(False, False, False), replaces=("",), replaces_entry_uuids=("",), titles=(title,),
        actor_id_nat=actor, on_behalf_of=author, created=stamp, updated=stamp, state=state,
        reason_fr=reason, reason_code=code, attempts=2 if reason else 0,
    )  # fmt: skip


def test_queue_rows_show_author_and_depositor_late_rows_and_the_details(qtbot: Any) -> None:
    from ui.documents import PARIS

    page = QueuePage()
    qtbot.addWidget(page)
    today = dt.date(2026, 12, 3)
    morning = dt.datetime(2026, 12, 3, 8, 30, tzinfo=PARIS)
    two_days_ago = morning - dt.timedelta(days=2)
    entries = [
        _queued("CR du jour (AIR)", EntryState.WAITING, morning, actor="3450000000000000",
                author="899700000013", reason="Le DMP ne répond pas.", code="http_503"),
        _queued("Lettre d'avant-hier", EntryState.PENDING, two_days_ago, actor="899700000013"),
        _queued("Refusé d'avant-hier", EntryState.REFUSED, two_days_ago, actor="899700000013",
                reason="Document refusé par le DMP.", code="DMPInvalidData"),
    ]  # fmt: skip
    page.show_entries(entries, today=today)
    model = page.model
    assert model.headers[-2:] == ("Auteur", "Déposé par")
    air = model.rows[0]
    assert (air[5], air[6]) == ("899700000013", "3450000000000000")  # the author, the one who deposited
    assert (model.rows[1][5], model.rows[1][6]) == ("899700000013", "899700000013")
    assert air[4] == "Le DMP ne répond pas. [http_503]"  # French label + the code (8.6)
    # 8.8: only the one still waiting from an earlier day is highlighted (a refusal is final)
    assert model.late == {1}
    assert model.data(model.index(1, 1), Qt.ItemDataRole.BackgroundRole) is not None
    assert model.data(model.index(0, 1), Qt.ItemDataRole.BackgroundRole) is None
    assert model.data(model.index(2, 1), Qt.ItemDataRole.BackgroundRole) is None
    assert L.QUEUE_LATE in model.data(model.index(1, 1), Qt.ItemDataRole.ToolTipRole)
    assert page.summary.text() == f"2 en attente, 1 refusé(s), 1 {L.QUEUE_LATE_SUMMARY}"
    # 8.6: the details pane keeps what the core keeps of the refusal
    assert page.details.toPlainText() == ""
    page.table.selectRow(2)
    details = page.details.toPlainText()
    assert "Code renvoyé : DMPInvalidData" in details
    assert "Motif : Document refusé par le DMP." in details
    assert f"Lot (identifiant) : {entries[2].id}" in details and entries[2].document_uids[0] in details
    page.table.selectRow(0)
    assert "Déposé par : 3450000000000000" in page.details.toPlainText()
    assert "Essais d'envoi : 2" in page.details.toPlainText()


def test_a_clock_skew_is_warned_in_the_status_bar_and_on_the_first_run_page(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any, tmp_path: Path
) -> None:
    w = window_for("gp")
    assert w.clock_warning.isHidden()
    server = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    env = w.controller.services.config.environment
    threads: list[threading.Thread] = []

    def skewed_by(seconds: int) -> Any:
        def check() -> Check:
            threads.append(threading.current_thread())
            opts = DoctorOptions(
                environment=env, home=tmp_path, now=lambda: server + dt.timedelta(seconds=seconds)
            )
            return check_clock(opts, [("le serveur du DMP", Probe(True, server_date=server))])

        return check

    # 2 min ahead: a warning (status bar + first-run page), deposits still possible
    w.check_clock(skewed_by(120))
    qtbot.waitUntil(lambda: w.clock_warning.isVisible(), timeout=10_000)
    assert threads and threads[0] is not threading.main_thread()  # measured on the services worker
    assert (
        w.clock_warning.text() == "⚠ Horloge du poste décalée de 120 s (écart +120 s avec le serveur du DMP)"
    )
    assert w.clock_warning.toolTip().startswith("Synchronisez l'horloge du poste")
    assert "décalée de 120 s" in w.setup_page.clock_found.text()
    assert w.clock_block == ""
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    assert w.deposit_page.blocked_reason == ""
    # 10 min: gross, deposits blocked with the fix
    w.check_clock(skewed_by(600))
    qtbot.waitUntil(lambda: w.clock_block != "", timeout=10_000)
    assert "le DMP refusera les connexions" in w.clock_block
    assert w.deposit_page.blocked_reason == w.clock_block
    assert w.clock_warning.isVisible()
    assert (
        w.clock_warning.text()
        == f"⚠ Horloge du poste (écart +600 s avec le serveur du DMP){L.CLOCK_DEPOSITS_BLOCKED}"
    )
    # back on time: the warning goes, deposits are allowed again
    w.check_clock(skewed_by(3))
    qtbot.waitUntil(lambda: w.clock_warning.isHidden(), timeout=10_000)
    assert w.deposit_page.blocked_reason == ""
    assert w.clock_block == "" and w.setup_page.clock_found.text().startswith("Horloge du poste à l'heure")


def test_the_vaccination_history_says_the_source_of_each_dose(qtbot: Any) -> None:
    """10.7: « Source » — a dose read from a document the patient added (classCode 90) says « Patient »,
    one from a professional's document « Professionnel de santé »; a document not in the list: not said."""
    from cda.vaccinations import Immunization
    from ui.documents import is_patient_authored
    from ui.vaccinations import VaccinationPage

    def dose(doc: str, date: str) -> Immunization:
        return Immunization(
            date=date, vaccine_code="60234100", vaccine_code_system="1.2.250.1.213.2.3.1",
            vaccine_label="REPEVAX", atc_code="J07CA01", atc_label="", antigens=("tétanos",),
            lot_number="L1", dose_rank=1, kind="IMMUNIZ", given=True, route="", site="", performer="",
            performer_id="", document_id=doc, document_type="87273-9",
        )  # fmt: skip

    by_ps = _entry("Note de vaccination", Visibility())
    by_patient = dataclasses.replace(
        _entry("Mes vaccinations", Visibility()), class_code=Code("90", "1.2.250.1.213.1.1.4.1", "Patient")
    )
    assert is_patient_authored(by_patient) and not is_patient_authored(by_ps)
    authored = {e.unique_id: is_patient_authored(e) for e in (by_ps, by_patient)}
    page = VaccinationPage()
    qtbot.addWidget(page)
    page.show_immunizations(
        [dose(by_ps.unique_id, "2024-01-02"), dose(by_patient.unique_id, "2023-01-02"),
         dose("2.25.1", "2022-01-02"), dataclasses.replace(dose("2.25.2", "2021-01-02"),
                                                           performer_id="899700000039")], "", authored,
    )  # fmt: skip
    assert page.model.headers[-1] == "Source"
    assert [r[-1] for r in page.model.rows] == [
        L.VAC_SOURCE_PS,
        L.VAC_SOURCE_PATIENT,
        L.VAC_SOURCE_UNKNOWN,
        L.VAC_SOURCE_PS,
    ]


def test_one_professionals_traces_over_a_period_are_exported_in_pdf_with_the_chain_check(
    window_for: Any, qtbot: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    """11.2: the traces of one professional (RPPS in the filter) over a period, as a PDF that carries the
    integrity check and the chain hash; the file is 0600."""
    import stat

    from PySide6.QtCore import QDate
    from PySide6.QtPdf import QPdfDocument
    from PySide6.QtWidgets import QFileDialog

    from ps_agent.audit.journal import AuditEvent
    from ui.documents import PARIS

    w = window_for("gp")
    services = w.controller.services
    for actor, name, action in (
        ("899700000013", "MEDECIN MARIE", "dmp.search"),
        ("899700000013", "MEDECIN MARIE", "dmp.deposit"),
        ("899700000039", "PHARMACIEN PAUL", "dmp.vaccination"),
    ):
        services.record(AuditEvent(action=action, outcome="success", actor_id_nat=actor, actor_name=name,
                                   actor_profession="10", auth_mode="DIRECTE",
                                   patient_ins="279037505612309^1.2.250.1.213.1.4.10"))  # fmt: skip
    page = w.journal_page
    w.tabs.setCurrentWidget(page)
    today = dt.datetime.now(PARIS).date()
    page.period.setChecked(True)
    page.date_from.setDate(QDate(today.year, today.month, today.day))
    page.date_to.setDate(QDate(today.year, today.month, today.day))
    page.text.setText("899700000013")
    expected = [r for r in services.journal.iter_records() if page.current_filter().matches(r)]
    assert {r.event.actor_id_nat for r in expected} == {"899700000013"} and len(expected) >= 2
    qtbot.waitUntil(lambda: page.model.rowCount() == len(expected), timeout=10_000)
    target = tmp_path / "traces.pdf"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "PDF (*.pdf)"))
    with qtbot.waitSignal(w.message, timeout=10_000, check_params_cb=lambda m: "(PDF)" in m):
        page.export_pdf.click()
    assert page.result.text().startswith(f"Sélection du journal exportée (PDF) : {len(expected)} entrée(s)")
    assert target.read_bytes().startswith(b"%PDF-") and stat.S_IMODE(target.stat().st_mode) == 0o600
    pdf = QPdfDocument()
    assert pdf.load(str(target)) == QPdfDocument.Error.None_
    text = " ".join(" ".join(pdf.getAllText(i).text().split()) for i in range(pdf.pageCount()))
    assert L.JOURNAL_PDF_TITLE in text
    assert f"{len(expected)} entrée(s)" in text and "899700000013" in text
    assert "Vérification de l'intégrité" in text and services.journal.verify().message_fr in text
    assert "PHARMACIEN PAUL" not in text  # another professional's traces are not in it
    assert expected[-1].hash[:16] in text.replace(" ", "")
    pdf.close()


def test_the_real_clock_check_probes_the_sandbox_off_the_gui_thread(window_for: Any, qtbot: Any) -> None:
    """1.4 with the real probe: the sandbox runs on this machine, so its clock is ours — no warning, and
    the first-run page says what was found (checked, or not checked when no date could be read)."""
    w = window_for("gp")
    w.check_clock()
    qtbot.waitUntil(lambda: w.setup_page.clock_found.text() != "Vérification…", timeout=20_000)
    assert w.setup_page.clock_found.text().startswith("Horloge du poste")
    assert w.clock_warning.isHidden() and w.clock_block == ""


def test_a_minors_document_is_kept_in_the_batch_table_for_the_deposit_page(
    window_for: Any, qtbot: Any, monkeypatch: Any, wait_idle: Any, tmp_path: Path
) -> None:
    """5.2: the batch has no choice of the visibility to the legal representatives, so a minor's row is
    never sent with a default: it stays in the table with the reason, and nothing reaches the queue."""
    from ui.batch import STATE_FAILED

    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_MINOR, monkeypatch, wait_idle)
    if w.minor_box is not None:
        w.minor_box.reject()
    wait_idle(w)
    assert w.patient.identity.is_minor()
    queued = len(w.controller.services.queue_entries())
    pdf = tmp_path / "CR_mineur.pdf"
    pdf.write_bytes(minimal_pdf("Consultation"))
    page = w.batch_page
    page.add_files([pdf])
    assert page.model.rows[0].patient is w.patient
    w.tabs.setCurrentWidget(page)
    page.send.click()
    qtbot.waitUntil(lambda: page.model.rows[0].state == STATE_FAILED, timeout=20_000)
    wait_idle(w)
    assert L.BATCH_MINOR in page.model.rows[0].message
    assert len(w.controller.services.queue_entries()) == queued
