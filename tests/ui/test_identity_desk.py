"""The window's real identity source (``ui.identity_source.DeskSource`` over ``IdentityDesk``) against the
INSi sandbox over TLS and the DMP sandbox: traits → INSi (récupérée) → « Valider l'identité »
(``desk.validate``, qualifiée) → the DMP opened through ``desk.open_patient`` → rubrics."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog

from sandbox import demo
from ui import labels as L
from ui.labels import IdentityStatus

from .conftest import INSI_BILLING_ID, demo_identity


def test_traits_search_then_validate_then_rubrics(window_for, desk_source, qtbot, monkeypatch, wait_idle):
    w = window_for("gp", source=desk_source)
    assert w.open_form.vitale_btn.isEnabled() and w.open_form.open_btn.text() == L.SEARCH_INSI
    # the INS is never typed: INSi gives it from the strict traits
    w.open_form.fill(replace(demo_identity(demo.DEMO_ADULT), ins="", oid=""))
    with qtbot.waitSignal(w.patient_opened, timeout=20_000):
        qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    wait_idle(w)
    p = w.patient
    assert p.identity.status is IdentityStatus.RECUPEREE and p.identity.ins == demo.DEMO_ADULT.ins
    assert p.identity.record_id is not None and p.identity.source == "INSi (traits)"
    assert w.identity_bar.chip.text() == "Identité récupérée" and w.identity_bar.validate_btn.isVisible()
    assert w.dmp_banner.reason.text() == L.NOT_QUALIFIED_REASON and not w.deposit_page.send.isEnabled()
    assert p.status is None  # nothing reached the DMP
    desk = desk_source.desk(w.controller.session)
    assert desk.get(p.identity.record_id).status.value == "RECUP"

    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("Passeport", True))
    with qtbot.waitSignal(w.documents_listed, timeout=30_000):
        qtbot.mouseClick(w.identity_bar.validate_btn, Qt.MouseButton.LeftButton)
    wait_idle(w)
    assert w.identity_bar.chip.text() == "Identité qualifiée" and not w.identity_bar.validate_btn.isVisible()
    record = desk.get(p.identity.record_id)
    assert record.status.value == "QUAL" and record.document is not None
    assert record.document.kind == "passeport"
    assert p.handle.ref.ins_status == "QUAL" and p.status is not None and p.status.exists
    assert w.rubrics.count() == 10 and w.rubrics.item(0).text().startswith("Tous les documents (")
    assert w.doc_model.rowCount() > 0
    journal = w.controller.services.journal
    assert [r.event.outcome for r in journal.records(action="insi.search")] == ["success"]
    changes = [r.event.detail for r in journal.records(action="identity.status")]
    assert any("RECUP → QUAL" in d for d in changes)
    # the session ends (card removed, idle…): the desk of that session is closed with it
    w.controller.end_session("removed")
    qtbot.waitUntil(lambda: desk.closed and w.patient is None, timeout=10_000)


def test_insi_not_found_is_said_in_french_and_nothing_opens(window_for, desk_source, qtbot, wait_idle):
    w = window_for("gp", source=desk_source)
    unknown = replace(demo_identity(demo.DEMO_ADULT), ins="", oid="", birth_family_name="INCONNU-ZZZ")
    w.open_form.fill(unknown)
    with qtbot.waitSignal(w.message, timeout=20_000, check_params_cb=lambda m: "INSi" in m or "INS" in m):
        qtbot.mouseClick(w.open_form.open_btn, Qt.MouseButton.LeftButton)
    wait_idle(w)
    assert w.patient is None and w.open_form.isVisible()


def test_without_an_insi_source_the_vitale_button_says_why(window_for) -> None:
    from ui.patient import ManualEntrySource

    w = window_for("gp", source=ManualEntrySource())
    assert not w.open_form.vitale_btn.isEnabled() and "INSi" in w.open_form.vitale_btn.toolTip()


@pytest.mark.pcsc
def test_vitale_card_choose_the_beneficiary_then_open(
    window_for, insi_sandbox, virtual_card, qtbot, monkeypatch, wait_idle
) -> None:
    from ps_agent.identities import IdentityDesk, InsiSettings
    from ui.identity_source import DeskSource

    virtual_card.insert("vitale-famille")
    settings = InsiSettings(url=insi_sandbox.cpx_url, billing_id=INSI_BILLING_ID)
    source = DeskSource(lambda s: IdentityDesk(s, insi=settings, vitale_reader=virtual_card.reader_name))
    try:
        w = window_for("gp", source=source)
        offered: list[list[str]] = []

        def pick(_parent, _title, label, items, *_a, **_k):
            assert label == L.CHOOSE_BENEFICIARY
            offered.append(list(items))
            return next(i for i in items if "2019-00-00" in i), True

        monkeypatch.setattr(QInputDialog, "getItem", pick)
        with qtbot.waitSignal(w.patient_opened, timeout=30_000):
            qtbot.mouseClick(w.open_form.vitale_btn, Qt.MouseButton.LeftButton)
        wait_idle(w)
        assert len(offered) == 1 and len(offered[0]) > 1  # several beneficiaries: the user chose
        ident = w.patient.identity
        assert ident.birth_date == "2019-00-00" and ident.source == "INSi (carte Vitale)"
        assert ident.status is IdentityStatus.RECUPEREE and ident.ins.startswith("1192099350041")
        assert w.identity_bar.chip.text() == "Identité récupérée" and w.patient.status is None
    finally:
        source.close()
