"""« Exporter (FHIR) » / « Exporter (CSV) » of the journal page: the whole journal written 0600 through the
core's exports (FHIR AuditEvent bundle, CSV), on the services' worker."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

from PySide6.QtWidgets import QFileDialog


def test_the_journal_is_exported_in_fhir_and_csv(window_for, qtbot, monkeypatch, tmp_path: Path) -> None:
    from ps_agent.audit.journal import AuditEvent

    w = window_for("gp")
    services = w.controller.services
    for action in ("identity.validate", "dmp.status"):
        services.record(AuditEvent(action=action, outcome="success", actor_id_nat="899700000013",
                                   actor_name="MEDECIN MARIE", actor_profession="10", auth_mode="DIRECTE",
                                   patient_ins="279037505612309^1.2.250.1.213.1.4.10"))  # fmt: skip
    count = len(list(services.journal.records(limit=10_000)))
    assert count >= 2
    target = tmp_path / "journal.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "FHIR (*.json)"))
    with qtbot.waitSignal(
        w.message, timeout=10_000, check_params_cb=lambda m: m.startswith("Journal exporté")
    ):
        w.journal_page.export_fhir.click()
    bundle = json.loads(target.read_text(encoding="utf-8"))
    assert bundle["resourceType"] == "Bundle"
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"AuditEvent"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    n = len(bundle["entry"])
    assert n == count
    assert w.journal_page.result.text().startswith(f"Journal exporté (FHIR) : {n} entrée(s)")
    target = tmp_path / "journal.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "CSV (*.csv)"))
    with qtbot.waitSignal(w.message, timeout=10_000, check_params_cb=lambda m: "(CSV)" in m):
        w.journal_page.export_csv.click()
    rows = list(csv.reader(target.open(encoding="utf-8")))
    assert len(rows) == count + 1 and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_journal_filters_and_the_export_of_the_selection(
    window_for, qtbot, monkeypatch, tmp_path: Path
) -> None:
    import datetime as dt

    from PySide6.QtCore import QDate

    from ps_agent.audit.journal import AuditEvent
    from ui.documents import PARIS
    from ui.journal_queue import ACTION_FR

    w = window_for("gp")
    services = w.controller.services
    other_ins = "186017512345678^1.2.250.1.213.1.4.10"
    for action, outcome, ins, detail in (
        ("identity.validate", "success", "279037505612309^1.2.250.1.213.1.4.10", ""),
        ("dmp.status", "success", "279037505612309^1.2.250.1.213.1.4.10", ""),
        ("dmp.search", "refused", other_ins, "Consentement absent"),
        ("dmp.delete", "error", other_ins, "panne du registre"),
    ):
        services.record(AuditEvent(action=action, outcome=outcome, actor_id_nat="899700000013",
                                   actor_name="MEDECIN MARIE", actor_profession="10", auth_mode="DIRECTE",
                                   patient_ins=ins, detail=detail))  # fmt: skip
    page = w.journal_page
    w.tabs.setCurrentWidget(page)
    everything = services.journal.count()
    qtbot.waitUntil(lambda: page.model.rowCount() == everything, timeout=10_000)
    assert not page.selection_only.isEnabled()  # no filter: the whole journal is exported

    def shown() -> list[str]:
        return [r.event.action for r in page.model.items]

    # outcome
    page.outcome.setCurrentIndex(page.outcome.findData("refused"))
    qtbot.waitUntil(lambda: shown() == ["dmp.search"], timeout=10_000)
    assert page.model.rows[0][4] == "refusé"  # French label
    assert page.selection_only.isEnabled() and page.selection_only.isChecked()
    assert "1 entrée(s) correspondant aux filtres" in page.count.text()
    page.reset_filters()
    qtbot.waitUntil(lambda: page.model.rowCount() == everything, timeout=10_000)
    # patient (typed INS, the OID optional) and action family
    page.patient.setText("186017512345678")
    qtbot.waitUntil(lambda: sorted(shown()) == ["dmp.delete", "dmp.search"], timeout=10_000)
    page.action.setCurrentIndex(page.action.findData("dmp.delete"))
    qtbot.waitUntil(lambda: shown() == ["dmp.delete"], timeout=10_000)
    assert page.action.currentText() == f"{ACTION_FR['dmp.delete']} [dmp.delete]"
    page.reset_filters()
    # « Patient ouvert »: the INS of the patient open in the window
    assert not page.open_patient_btn.isEnabled()
    page.set_open_patient("279037505612309")
    page.open_patient_btn.click()
    qtbot.waitUntil(lambda: sorted(shown()) == ["dmp.status", "identity.validate"], timeout=10_000)
    page.reset_filters()
    # free text (the detail, case-insensitive)
    page.text.setText("PANNE du")
    qtbot.waitUntil(lambda: shown() == ["dmp.delete"], timeout=10_000)
    # period: yesterday only → nothing; today → the records again
    today = dt.datetime.now(PARIS).date()
    page.text.clear()
    page.period.setChecked(True)
    yesterday = QDate(today.year, today.month, today.day).addDays(-1)
    page.date_from.setDate(yesterday)
    page.date_to.setDate(yesterday)
    qtbot.waitUntil(lambda: page.model.rowCount() == 0, timeout=10_000)
    page.date_to.setDate(QDate(today.year, today.month, today.day))
    qtbot.waitUntil(lambda: page.model.rowCount() == everything, timeout=10_000)
    # export of the selection (action family + patient)
    page.period.setChecked(False)
    page.action.setCurrentIndex(page.action.findData("dmp."))
    page.patient.setText(other_ins)
    qtbot.waitUntil(lambda: sorted(shown()) == ["dmp.delete", "dmp.search"], timeout=10_000)
    target = tmp_path / "selection.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "CSV (*.csv)"))
    with qtbot.waitSignal(w.message, timeout=10_000, check_params_cb=lambda m: "(CSV)" in m):
        page.export_csv.click()
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert sorted(r["action"] for r in rows) == ["dmp.delete", "dmp.search"]
    assert page.result.text().startswith("Sélection du journal exportée (CSV) : 2 entrée(s)")
    # the same filters, « Exporter la sélection » unticked: the whole journal
    page.selection_only.setChecked(False)
    target = tmp_path / "tout.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "FHIR (*.json)"))
    with qtbot.waitSignal(w.message, timeout=10_000, check_params_cb=lambda m: "(FHIR)" in m):
        page.export_fhir.click()
    assert len(json.loads(target.read_text(encoding="utf-8"))["entry"]) == services.journal.count()
