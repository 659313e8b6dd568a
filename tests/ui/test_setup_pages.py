"""First run and diagnosis in the window: the wizard page detects the readers (pcscd + vpcd) and the
Cryptolib, writes the same config.toml and API token as ``ps-agent setup`` (validated, French error naming
the key), never before « J'ai compris »; the Diagnostic page shows ``ps_agent.doctor.run_checks`` rows."""

from __future__ import annotations

import stat
from pathlib import Path

from PySide6.QtCore import Qt

from ps_agent.settings import load_settings, settings_path
from ps_agent.setup_config import SEGUR_BUTTON_FR
from ui.setup_pages import CHECK_FIX, CHECK_OK


def test_the_first_run_page_writes_the_setup_configuration(window_for, qtbot, tmp_path: Path) -> None:
    folder = tmp_path / "config"
    w = window_for(None, first_run=True, config_folder=folder)
    page = w.setup_page
    assert w.tabs.currentWidget() is page
    qtbot.waitUntil(lambda: page.detection is not None, timeout=20_000)
    assert page.environment.currentData() == "sandbox"  # preselected for a first try
    for r in page.detection.readers:
        assert page.reader.findData(r) >= 0
    assert not page.save.isEnabled() and page.understood.text() == SEGUR_BUTTON_FR
    page.understood.setChecked(True)
    page.auth_p12.setText(str(tmp_path / "absent.p12"))
    page.save.click()
    assert page.result.text().startswith(
        "Certificat d'établissement — Réglage « establishment.auth_p12 » : le fichier"
    )
    assert "a40000" in page.auth_p12.styleSheet()  # the field is marked
    assert not settings_path(folder).exists()  # nothing written on a wrong value
    page.auth_p12.setText("")
    page.inbox.setText(str(tmp_path / "depot"))
    with qtbot.waitSignal(page.saved, timeout=5_000) as saved:
        page.save.click()
    written, token = saved.args
    assert written == settings_path(folder)
    settings = load_settings(written, check_files=False)
    assert settings.dmp_environment == "sandbox" and settings.segur_acknowledged_at
    assert settings.hotfolder_inbox == str(tmp_path / "depot")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600 and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text().strip()) >= 32


def test_the_window_does_not_open_on_the_wizard_once_configured(window_for) -> None:
    w = window_for(None)
    assert w.tabs.currentWidget() is not w.setup_page and w.setup_page.detection is None


def test_the_diagnostic_page_shows_each_check(window_for, qtbot) -> None:
    w = window_for(None)
    page = w.diagnostic_page
    w.tabs.setCurrentWidget(page)
    with qtbot.waitSignal(page.checked, timeout=60_000):
        page.start.click()
        assert not page.start.isEnabled() and page.summary.text() == "Diagnostic en cours…"
    checks = page.checks
    assert page.table.rowCount() == len(checks) > 5
    by_id = {c.id: i for i, c in enumerate(checks)}
    dmp = by_id["dmp_tls"]
    assert checks[dmp].ok and page.table.item(dmp, 0).text() == CHECK_OK
    for i, c in enumerate(checks):
        if not c.ok:
            assert page.table.item(i, 0).text() == CHECK_FIX and page.table.item(i, 2).text() == c.fix_fr
    bad = sum(not c.ok for c in checks)
    assert page.summary.text() == ("Tout est en ordre." if bad == 0 else f"{bad} point(s) à corriger.")
    assert page.start.isEnabled()


def test_the_configuration_tab_edits_existing_settings_and_keeps_the_rest(window_for, tmp_path: Path) -> None:
    from ps_agent.settings import validate
    from ps_agent.setup_config import acknowledge_notice, finish

    folder = tmp_path / "config"
    first = acknowledge_notice(validate({
        "dmp": {"environment": "sandbox"},
        "insi": {"url": "https://insi.example.test/ws"},
        "api": {"port": 9999},
        "hotfolder": {"inbox": str(tmp_path / "in"), "done": str(tmp_path / "done")},
    }))  # fmt: skip
    written, _token = finish(first, folder)
    w = window_for(None, config_folder=folder)
    page = w.setup_page
    assert page.base == load_settings(written, check_files=False)
    assert page.environment.currentData() == "sandbox" and page.inbox.text() == str(tmp_path / "in")
    assert not page.understood.isVisibleTo(w) and page.save.isEnabled()  # acknowledged already
    page.environment.setCurrentIndex(page.environment.findData("formation1"))
    page.inbox.setText("")
    page.save.click()
    after = load_settings(written, check_files=False)
    assert after.dmp_environment == "formation1" and after.hotfolder_inbox == ""
    assert after.insi_url == "https://insi.example.test/ws" and after.api_port == 9999
    assert after.hotfolder_done == str(tmp_path / "done")
    assert after.segur_acknowledged_at == first.segur_acknowledged_at


def test_the_configuration_tab_exposes_the_settings_of_issue_11(
    window_for, qtbot, monkeypatch, tmp_path: Path
) -> None:
    """§10: environment, card middleware, AIR credentials, local API (on/off, port, new token), hot folder
    (folder, on/off), idle time; written by the core, a wrong value named in French, the field focused."""
    from PySide6.QtWidgets import QMessageBox

    from ps_agent.settings import validate
    from ps_agent.setup_config import acknowledge_notice, finish, token_path
    from ui.setup_pages import FIELD_LABELS, REGENERATE_TOKEN

    def focused(page):  # the field setFocus went to (the window need not be the active one offscreen)
        f = page.focusWidget()
        return f.parent() if f is not None and f.parent() in page.fields.values() else f

    folder = tmp_path / "config"
    finish(acknowledge_notice(validate({"dmp": {"environment": "sandbox"}})), folder)
    w = window_for(None, config_folder=folder)
    page = w.setup_page
    w.tabs.setCurrentWidget(page)
    assert page.api_enabled.isChecked() and page.api_port.value() == 9983  # the defaults
    assert page.hotfolder_enabled.isChecked() and page.idle.value() == 30
    for key in FIELD_LABELS:  # every key has a field, reachable with an accessible name
        assert page.fields[key].accessibleName()
    # a wrong port: the core's message, with the field's label, the field focused
    page.api_port.setValue(9982)
    page.save.click()
    assert page.result.text().startswith("Port de l'API locale — Réglage « api.port »")
    assert "DmpConnect" in page.result.text() and focused(page) is page.api_port
    page.api_port.setValue(9990)
    page.idle.setValue(0)
    page.save.click()
    assert page.result.text().startswith("Fermer la session après (inactivité) — Réglage « session.idle")
    assert "entre 1 et 480 minutes" in page.result.text() and focused(page) is page.idle
    assert load_settings(settings_path(folder), check_files=False).api_port == 9983  # nothing written
    # right values: saved through the core, the window follows the idle time
    page.idle.setValue(12)
    page.api_enabled.setChecked(False)
    assert not page.api_port.isEnabled()
    page.inbox.setText(str(tmp_path / "depot"))
    page.hotfolder_enabled.setChecked(False)
    page.pkcs11.setText("")
    with qtbot.waitSignal(page.saved, timeout=5_000):
        page.save.click()
    after = load_settings(settings_path(folder), check_files=False)
    assert (after.api_port, after.api_enabled, after.idle_timeout_minutes) == (9990, False, 12)
    assert after.hotfolder_inbox == str(tmp_path / "depot") and not after.hotfolder_enabled
    assert "a40000" not in page.api_port.styleSheet()
    assert w.idle_guard.timeout_s == 720.0 and w.controller.idle_timeout_s == 720.0
    # a new API token, after a confirmation stating the consequence
    old = token_path(folder).read_text()
    monkeypatch.setattr(
        QMessageBox, "open", lambda *a, **k: None
    )  # the box is driven below, never shown modal
    qtbot.mouseClick(page.regenerate, Qt.MouseButton.LeftButton)
    box = page.confirm_box
    assert box is not None and box.windowTitle() == REGENERATE_TOKEN and "ne sera plus accepté" in box.text()
    assert box.defaultButton().text() == "Annuler"
    with qtbot.waitSignal(page.token_regenerated, timeout=5_000):
        next(b for b in box.buttons() if b.text() == "Régénérer").click()
    new = token_path(folder).read_text()
    assert new != old and len(new.strip()) >= 32
    assert page.result.text().startswith("Nouveau jeton de l'API locale")
