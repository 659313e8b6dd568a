"""Secretary batch deposit against the sandbox: many PDFs at once, per-file metadata in a table, a
progress bar, the bad files kept in the table to fix and resend; in AIR mode the author is chosen from
the list of doctors (ui-auteurs.toml)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from PySide6.QtCore import Qt

from ps_agent.auth.model import AuthMode
from ps_agent.auth.software import SoftwareCredentials
from sandbox import demo
from ui import labels as L
from ui.batch import AUTHORS_FILE, COL_DATE, STATE_DONE, STATE_FAILED, STATE_READY, load_authors

from .conftest import identity_of, minimal_pdf, open_qualified


def _files(tmp_path: Path) -> list[Path]:
    out = []
    for name, content in (
        ("CR_consultation_dupont.pdf", minimal_pdf("Consultation")),
        ("Courrier_cardiologue.pdf", minimal_pdf("Courrier")),
        ("Biologie_mars.pdf", minimal_pdf("Biologie")),
        ("scan_illisible.pdf", b"JPEG? not a pdf"),
    ):
        p = tmp_path / name
        p.write_bytes(content)
        out.append(p)
    return out


def test_a_batch_with_bad_files_kept_in_the_table_then_fixed_and_resent(
    window_for, qtbot, monkeypatch, wait_idle, tmp_path
):
    w = window_for("gp")
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    page = w.batch_page
    assert not page.author.isVisible()  # card session: the author is the card holder
    before = w.doc_model.rowCount()
    page.add_files(_files(tmp_path))
    m = page.model
    assert m.rowCount() == 4 and [r.patient for r in m.rows] == [w.patient] * 4
    assert m.rows[0].title == "CR consultation dupont"
    assert m.setData(m.index(2, COL_DATE), "2026-13-45")  # a typing error in the table
    w.tabs.setCurrentWidget(page)
    page.send.click()
    qtbot.waitUntil(lambda: page.summary.text() != "", timeout=60_000)
    wait_idle(w)
    states = [r.state for r in m.rows]
    assert states == [STATE_DONE, STATE_DONE, STATE_FAILED, STATE_FAILED]
    assert "date de l'acte invalide" in m.rows[2].message
    assert "n'est pas un PDF" in m.rows[3].message
    assert page.progress.value() == page.progress.maximum() == 4
    assert page.summary.text() == L.BATCH_SUMMARY.format(done=2, failed=2, waiting=0)
    assert m.rows[0].rubric == "Comptes rendus"
    # fix the date: the row is ready again, the registered ones are no longer editable
    assert not m.flags(m.index(0, COL_DATE)) & Qt.ItemFlag.ItemIsEditable
    assert m.flags(m.index(2, COL_DATE)) & Qt.ItemFlag.ItemIsEditable
    assert m.setData(m.index(2, COL_DATE), "2026-03-02") and m.rows[2].state == STATE_READY
    assert page.pending_rows() == [2, 3] and page.send.isEnabled()
    page.send.click()
    qtbot.waitUntil(lambda: m.rows[2].state == STATE_DONE and m.rows[3].state == STATE_FAILED, timeout=60_000)
    wait_idle(w)
    assert page.progress.maximum() == 2 and page.progress.value() == 2
    # the three documents are in the patient's DMP
    w.list_documents()
    qtbot.waitUntil(lambda: w.doc_model.rowCount() == before + 3, timeout=20_000)
    wait_idle(w)


def test_air_mode_the_author_is_chosen_from_the_list(window_for, services, test_pki, qtbot) -> None:
    home = Path(services.config.home)
    home.mkdir(parents=True, exist_ok=True)
    (home / AUTHORS_FILE).write_text(
        "[[auteur]]\n"
        'id_nat = "899700000013"\nfamily_name = "MEDECIN"\ngiven_name = "MARIE"\n'
        'specialty_code = "G15_10/SM54"\norganization_id = "3999999990001"\n'
        'organization_name = "CABINET DU CENTRE"\nfacility_type_code = "SA07"\n'
        "[[auteur]]\n"
        'id_nat = "123"\nfamily_name = ""\n',
        encoding="utf-8",
    )
    authors, errors = load_authors(home)
    assert [a.id_nat for _, a in authors] == ["899700000013"] and len(errors) == 1 and "n° 2" in errors[0]
    w = window_for(None)
    org = test_pki.establishment
    creds = SoftwareCredentials(identity_of("secretary"), AuthMode.INDIRECTE_RENFORCEE, org.auth_cert,
                                org.auth_key, org.sign_cert, org.sign_key, org.chain)  # fmt: skip
    w.controller.use_session(services.open_session(creds))
    w.tabs.setCurrentWidget(w.batch_page)
    page = w.batch_page
    qtbot.waitUntil(lambda: page.author.isVisible(), timeout=10_000)
    assert page.author.count() == 1 and page.author.currentText().startswith("Dr Marie MEDECIN")
    assert page.chosen_author().id_nat == "899700000013"
    assert "n° 2" in page.author_note.text()
    (home / AUTHORS_FILE).unlink()
    page.set_authors(*load_authors(home))
    assert page.chosen_author() is None and L.BATCH_NO_AUTHORS in page.author_note.text()


def test_rows_are_fixed_in_place_with_the_type_and_patient_pickers(
    window_for, qtbot, monkeypatch, wait_idle, tmp_path
) -> None:
    from PySide6.QtWidgets import QComboBox, QDateEdit

    from ui.batch import COL_PATIENT, COL_TYPE, OPEN_PATIENT_PREFIX, STATE_SENDING
    from ui.pickers import TypePicker

    w = window_for("gp")
    page = w.batch_page
    w.tabs.setCurrentWidget(page)
    page.add_files(_files(tmp_path)[:2])  # no patient open yet: the rows have none
    m = page.model
    assert [r.patient for r in m.rows] == [None, None]
    page.send.click()
    qtbot.waitUntil(lambda: page.summary.text() != "", timeout=20_000)
    assert [r.state for r in m.rows] == [STATE_FAILED, STATE_FAILED]
    assert "aucun patient" in m.rows[0].message  # kept in the table to fix
    open_qualified(qtbot, w, demo.DEMO_ADULT, monkeypatch, wait_idle)
    adult = w.patient
    w.tabs.setCurrentWidget(page)

    def edit(row: int, col: int, cls: type) -> object:
        index = m.index(row, col)
        page.table.setCurrentIndex(index)
        page.table.edit(index)
        editor = page.table.findChild(cls)
        assert editor is not None and editor.isVisible()
        return editor

    def commit(editor: object) -> None:
        qtbot.keyClick(editor, Qt.Key.Key_Return)
        qtbot.waitUntil(
            lambda: page.table.findChild(QComboBox) is None and page.table.findChild(QDateEdit) is None
        )

    # the patient picker: « Patient ouvert » offered, chosen → the row is ready again
    combo = edit(0, COL_PATIENT, QComboBox)
    assert combo.count() == 1 and combo.itemText(0).startswith(OPEN_PATIENT_PREFIX + "DEMO-ADULTE")
    combo.setCurrentIndex(0)
    commit(combo)
    assert m.rows[0].patient is adult and m.rows[0].state == STATE_READY
    # the type picker (searchable, label and code): a code typed in it
    picker = edit(0, COL_TYPE, TypePicker)
    assert picker.currentData() == m.rows[0].type_code  # starts on the row's type
    assert picker.completer().filterMode() == Qt.MatchFlag.MatchContains
    picker.setEditText("11502-2")
    commit(picker)
    assert m.rows[0].type_code == "11502-2"
    assert m.index(0, COL_TYPE).data() == "CR d'examens biologiques (11502-2)"
    # text naming no type: the cell keeps its type
    picker = edit(0, COL_TYPE, TypePicker)
    picker.setEditText("n'existe pas")
    commit(picker)
    assert m.rows[0].type_code == "11502-2"
    # a date picked in the calendar editor, never after today
    dated = edit(0, COL_DATE, QDateEdit)
    assert dated.maximumDate() == dated.maximumDate().currentDate()
    dated.setDate(dated.date().addDays(-3))
    commit(dated)
    assert m.rows[0].date == dt.date.fromordinal(dt.date.today().toordinal() - 3).isoformat()
    page.send.click()
    qtbot.waitUntil(lambda: m.rows[0].state not in (STATE_READY, STATE_SENDING), timeout=60_000)
    wait_idle(w)
    assert m.rows[0].state == STATE_DONE and m.rows[0].rubric == "Analyses de biologie"
    assert m.rows[1].state == STATE_FAILED  # still without a patient
    # a second patient: the picker offers the open one first, then the one opened before
    open_qualified(qtbot, w, demo.DEMO_MINOR, monkeypatch, wait_idle)
    if w.minor_box is not None:
        w.minor_box.reject()
    w.tabs.setCurrentWidget(page)
    choices = [label for label, _ in page.patient_choices()]
    assert choices[0].startswith(OPEN_PATIENT_PREFIX + "DEMO-MINEUR") and choices[1].startswith("DEMO-ADULTE")
    combo = edit(1, COL_PATIENT, QComboBox)
    combo.setCurrentIndex(1)
    commit(combo)
    assert m.rows[1].patient is adult and m.rows[1].state == STATE_READY
    # a registered row is no longer editable
    assert not m.flags(m.index(0, COL_PATIENT)) & Qt.ItemFlag.ItemIsEditable
    # a new session: the previous session's patients are not offered any more
    page.forget_patients()
    assert page.patient_choices() == [] and m.rows[1].patient is None and m.rows[0].patient is adult


def test_the_type_picker_reads_the_typed_text() -> None:
    from ui.pickers import code_from_text

    known = {"11502-2": "CR d'examens biologiques", "11488-4": "CR ou fiche de consultation ou de visite"}
    assert code_from_text("CR d'examens biologiques (11502-2)", known) == "11502-2"
    assert code_from_text(" 11488-4 ", known) == "11488-4"
    assert code_from_text("cr d'examens BIOLOGIQUES", known) == "11502-2"
    assert code_from_text("CR d'examens biologiques (11488-4)", known) is None  # label and code disagree
    assert code_from_text("biolo", known) is None and code_from_text("", known) is None
