"""Pages built on first use (``PageTabs.addLazyTab``, ``MainWindow._build_page``): the window starts with
« Patient » built and every other tab present with its title; a page is built when its tab is shown or the
window needs it, and then shows what the window had pushed meanwhile (the open patient, the session); the
idle guard watches the input once the window is painted (or from the first session)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt

from sandbox import demo
from tests.fixtures.clock import MonotonicClock
from ui.labels import NOT_QUALIFIED_REASON
from ui.main_window import LAZY_PAGES

from .conftest import demo_identity, software_credentials

TITLES = ["Patient", "Dépôt", "Vaccinations", "Journal", "File d'envoi", "Dépôt par lot", "Diagnostic",
          "Configuration"]  # fmt: skip


def lazy_built(w: Any) -> dict[str, bool]:
    return {name: w.tabs.built(i + 1) for i, (name, _label) in enumerate(LAZY_PAGES)}


def test_only_the_first_page_is_built_at_start_and_a_tab_builds_its_page(window_for, wait_idle) -> None:
    w = window_for(None)
    assert [w.tabs.tabText(i) for i in range(w.tabs.count())] == TITLES
    assert w.tabs.built(0) and w.tabs.currentWidget() is w.patient_page
    built = lazy_built(w)
    assert not built["deposit"] and not built["journal"] and not built["batch"], built
    journal = w.tabs.indexOf(w.patient_page) + 3
    w.tabs.setCurrentIndex(journal)  # the user clicks « Journal »
    assert w.tabs.built(journal)
    page = w.tabs.currentWidget()
    assert page is w.journal_page and page.isVisible()
    assert w.tabs.widget(journal) is page and w.tabs.indexOf(page) == journal
    assert w.journal_page is page  # built once
    wait_idle(w)  # the tab change read the journal


def test_a_page_built_late_shows_the_open_patient_and_the_session(window_for, qtbot) -> None:
    w = window_for("gp")
    w.open_form.fill(demo_identity(demo.DEMO_ADULT))
    with qtbot.waitSignal(w.patient_opened, timeout=10_000):
        qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    built = lazy_built(w)
    assert not built["deposit"] and not built["journal"] and not built["vaccination"], built
    # built now: what the window pushed to the pages while they did not exist
    assert w.deposit_page.blocked_reason == NOT_QUALIFIED_REASON and not w.deposit_page.send.isEnabled()
    assert w.journal_page.open_patient_ins == w.patient.identity.ins != ""
    assert w.journal_page.open_patient_btn.isEnabled()
    assert w.batch_page.patient is None  # not qualified: the batch does not file for this patient
    assert w.vaccination_page.vaccinator.text().startswith("Dr ")  # the session's professional
    w.close_patient()
    assert w.deposit_page.blocked_reason == "Ouvrez d'abord le dossier d'un patient."
    assert w.journal_page.open_patient_ins == ""


def test_build_pages_later_builds_every_page_in_idle_turns(window_for, qtbot) -> None:
    w = window_for(None)
    w.build_pages_later()
    qtbot.waitUntil(lambda: all(lazy_built(w).values()), timeout=10_000)
    assert [w.tabs.tabText(i) for i in range(w.tabs.count())] == TITLES
    for i in range(1, w.tabs.count()):  # each page in its tab's scroll area, named for assistive tools
        assert w.tabs.widget(i) is not None and w.tabs.indexOf(w.tabs.widget(i)) == i


def test_the_idle_guard_watches_the_input_once_the_window_is_painted(services, test_pki, qtbot) -> None:
    from ui.app import make_window

    clock = MonotonicClock()
    w = make_window(services, auto_pin_dialog=False, segur_notice=False, idle_clock=clock)
    qtbot.addWidget(w)
    guard = w.idle_guard
    clock.advance(60)
    qtbot.keyClick(w.open_form.family, Qt.Key.Key_A)
    assert not guard.watching and guard.idle_for() == 60  # not painted yet: the start-up is not watched
    w.show()
    qtbot.waitUntil(lambda: guard.watching, timeout=5_000)  # once painted
    qtbot.keyClick(w.open_form.family, Qt.Key.Key_A)
    assert guard.idle_for() == 0
    clock.advance(60)
    w.controller.use_session(services.open_session(software_credentials(test_pki, "gp")))
    assert guard.idle_for() == 0  # the session's opening is activity
    w.controller.close()


def test_a_window_never_painted_watches_the_input_from_its_first_session(services, test_pki, qtbot) -> None:
    from ui.app import make_window

    clock = MonotonicClock()
    w = make_window(services, auto_pin_dialog=False, segur_notice=False, idle_clock=clock)
    qtbot.addWidget(w)
    w.controller.use_session(services.open_session(software_credentials(test_pki, "gp")))
    assert w.idle_guard.watching
    clock.advance(60)
    qtbot.keyClick(w.open_form.family, Qt.Key.Key_A)
    assert w.idle_guard.idle_for() == 0
    w.controller.close()
