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
