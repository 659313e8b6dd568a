"""First run and diagnosis in the window: the wizard page detects the readers (pcscd + vpcd) and the
Cryptolib, writes the same config.toml and API token as ``ps-agent setup`` (validated, French error naming
the key), never before « J'ai compris »; the Diagnostic page shows ``ps_agent.doctor.run_checks`` rows."""

from __future__ import annotations

import stat
from pathlib import Path

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
    assert page.result.text().startswith("Réglage « establishment.auth_p12 » : le fichier")
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
