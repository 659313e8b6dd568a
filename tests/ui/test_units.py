"""Pure pieces of the window: the DMP banner for every TD0.2 answer, the document filter (date, author,
type, state, text, rubric), the state labels, the drop of a PDF on the deposit page, and `python -m ui
--smoke`."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from ps_agent.dmp.hl7 import DmpStatus
from ps_agent.dmp.model import Author, Code, DocumentEntry, PatientId, Visibility
from ui import labels as L
from ui.documents import DocumentFilter, DocumentTableModel, state_labels
from ui.patient import dmp_banner


def status(**kw: Any) -> DmpStatus:
    base: dict[str, Any] = {"exists": True, "active": True, "authorisation": "", "is_medecin_traitant": False}
    base.update(kw)
    return DmpStatus(**base)


@pytest.mark.parametrize(
    ("st", "kind", "text"),
    [
        (status(exists=False, active=False), "none", "Pas de DMP"),
        (status(active=False, status_code="terminated"), "closed", "DMP fermé"),
        (status(active=False, status_code="nullified"), "opposed", L.BANNER_OPPOSED),
        (status(authorisation="VALIDE"), "authorised", "Accès autorisé"),
        (status(authorisation="VALIDE", is_medecin_traitant=True), "authorised",
         "Accès autorisé — Vous êtes le médecin traitant DMP"),
        (status(authorisation="NON_EXISTE"), "not_authorised", "Accès non autorisé"),
        (status(authorisation="EXPIRE"), "expired", "Autorisation expirée"),
        (status(authorisation="INTERDIT"), "blocked", L.BANNER_BLOCKED),
    ],
)  # fmt: skip
def test_dmp_banner(st: DmpStatus, kind: str, text: str) -> None:
    assert dmp_banner(st) == (kind, text)


def test_expired_authorisation_offers_the_renewal_tick(qtbot: Any) -> None:
    from ui.patient import DmpBanner

    banner = DmpBanner()
    qtbot.addWidget(banner)
    banner.show_status(status(authorisation="EXPIRE"))
    assert banner.tick.text() == "Le patient renouvelle son accord" and not banner.tick.isChecked()
    banner.show_status(status(authorisation="VALIDE"))
    assert banner.tick.isHidden() and banner.button.isHidden()


def entry(title: str, *, days: int, author: str, type_code: str = "11488-4", type_label: str = "CR",
          status_: str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved",
          vis: Visibility | None = None) -> DocumentEntry:  # fmt: skip
    e = DocumentEntry(
        unique_id=f"2.25.{uuid.uuid4().int}",
        patient_id=PatientId("279037505612309", "1.2.250.1.213.1.4.10"),
        type_code=Code(type_code, "2.16.840.1.113883.6.1", type_label),
        class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3"),
        healthcare_facility_type=Code("SA07", "x"),
        practice_setting=Code("AMBULATOIRE", "x"),
        creation_time=dt.datetime.now(dt.UTC) - dt.timedelta(days=days),
        title=title,
        authors=(Author("899700000013", author, "JEAN", institution_name="CABINET"),),
        status=status_,
    )
    return e.with_visibility(vis) if vis else e


def test_document_filter_by_text_author_type_state_date_and_rubric(qtbot: Any) -> None:
    model = DocumentTableModel()
    proxy = DocumentFilter()
    proxy.setSourceModel(model)
    model.set_entries([
        entry("Lettre A", days=1, author="MARTIN"),
        entry("Lettre B", days=400, author="DURAND", vis=Visibility(invisible_to_patient=True)),
        entry("Bilan", days=10, author="MARTIN", type_code="11502-2", type_label="CR de biologie",
              status_="urn:oasis:names:tc:ebxml-regrep:StatusType:Archived"),
    ])  # fmt: skip

    def titles() -> list[str]:
        return sorted(proxy.index(r, 1).data() for r in range(proxy.rowCount()))

    assert titles() == ["Bilan", "Lettre A", "Lettre B"]
    proxy.set(text="lettre")
    assert titles() == ["Lettre A", "Lettre B"]
    proxy.set(text="", author="durand")
    assert titles() == ["Lettre B"]
    proxy.set(author="", type_label="CR de biologie")
    assert titles() == ["Bilan"]
    proxy.set(type_label="", state=L.STATE_INVISIBLE_PATIENT)
    assert titles() == ["Lettre B"]
    proxy.set(state=L.STATE_ARCHIVED)
    assert titles() == ["Bilan"]
    proxy.set(state="", since=dt.date.today() - dt.timedelta(days=30))
    assert titles() == ["Bilan", "Lettre A"]
    proxy.set(since=None, rubric="Analyses de biologie")
    assert titles() == ["Bilan"]
    assert state_labels(model.entries[1]) == [L.STATE_INVISIBLE_PATIENT]
    assert state_labels(model.entries[0]) == [L.STATE_ACTIVE]


def test_dropping_a_pdf_on_the_deposit_page(qtbot: Any, tmp_path: Path, pdf_bytes: bytes) -> None:
    from ui.deposit import DepositPage

    page = DepositPage()
    qtbot.addWidget(page)
    path = tmp_path / "courrier.pdf"
    path.write_bytes(pdf_bytes)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)  # fmt: skip
    page.dropEvent(event)
    assert page.pdf == pdf_bytes and page.drop.text().startswith("courrier.pdf")
    assert page.findings.item(0).text() == "Aucune anomalie : prêt à envoyer."
    page.set_pdf(b"not a pdf", "x.pdf")
    assert page.findings.item(0).text() == "Erreur : Le fichier n'est pas un PDF."
    assert not page.send.isEnabled()


def test_type_picker_is_searchable_by_label_and_code(qtbot: Any) -> None:
    from ui.deposit import DepositPage

    page = DepositPage()
    qtbot.addWidget(page)
    completer = page.type.completer()
    completer.setCompletionPrefix("11502-2")
    assert completer.completionCount() >= 1 and "(11502-2)" in completer.currentCompletion()
    completer.setCompletionPrefix("ordonnance")
    assert completer.completionCount() >= 1


def test_python_m_ui_smoke(tmp_path: Path) -> None:
    """``python -m ui --smoke`` in its own process: ``app.exec()`` returning leaves this process's Qt
    unable to deliver queued signals to slots (seen with PySide6 6.x), which broke every later window."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "ui", "--smoke", "--home", str(tmp_path / "home"),
         "--instance", f"ps-agent-ui-{uuid.uuid4().hex}"],
        env=env, cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / "audit.sqlite3").exists()
