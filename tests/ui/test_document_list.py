"""The document list of the open patient: sorted by a header click on each column (dates, titles without
case or accents, types, states, authors, rubrics; the selection follows its document), the sort kept
when a new listing arrives, the filters (free text and author without case or accents) combined with
any order, « Nouveaux » after a sort, and the column widths measured from the texts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from PySide6.QtCore import QItemSelectionModel, QPoint, Qt
from PySide6.QtWidgets import QTableView

from ps_agent.dmp.model import Author, Code, DocumentEntry, PatientId, Visibility
from ui import labels as L
from ui.documents import (
    COL_AUTHOR,
    COL_DATE,
    COL_RUBRIC,
    COL_STATE,
    COL_TITLE,
    COL_TYPE,
    DocumentFilter,
    DocumentTableModel,
    fit_columns,
    text_key,
)

NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
ARCHIVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Archived"


def doc(title: str, *, days: int | None, author: str, type_code: str = "11488-4", type_label: str = "CR",
        status_: str = "", vis: Visibility | None = None) -> DocumentEntry:  # fmt: skip
    e = DocumentEntry(
        unique_id=f"2.25.{uuid.uuid4().int}",
        patient_id=PatientId("279037505612309", "1.2.250.1.213.1.4.10"),
        type_code=Code(type_code, "2.16.840.1.113883.6.1", type_label),
        class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3"),
        healthcare_facility_type=Code("SA07", "x"),
        practice_setting=Code("AMBULATOIRE", "x"),
        creation_time=None if days is None else NOW - dt.timedelta(days=days),
        title=title,
        authors=(Author("899700000013", author, "JEAN", institution_name="CABINET"),),
        status=status_,
    )
    return e.with_visibility(vis) if vis else e


DOCS = [
    doc("facture", days=5, author="Zola"),
    doc("École du dos", days=1, author="émile", type_code="11502-2", type_label="CR de biologie"),
    doc("Bilan", days=30, author="Durand", status_=ARCHIVED),
    doc("ecole primaire", days=400, author="MARTIN", vis=Visibility(invisible_to_patient=True)),
    doc("Sans date", days=None, author="Abel", type_code="34133-9", type_label="Synthèse"),
]


@pytest.fixture
def view(qtbot: Any) -> QTableView:
    model = DocumentTableModel()
    proxy = DocumentFilter()
    proxy.setSourceModel(model)
    table = QTableView()
    table.setModel(proxy)
    table.setSortingEnabled(True)
    table.sortByColumn(COL_DATE, Qt.SortOrder.DescendingOrder)  # what the window does
    table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
    table.resize(900, 400)
    qtbot.addWidget(table)
    table.show()
    model.set_entries(DOCS, new_since=NOW - dt.timedelta(days=10))
    return table


def shown(table: QTableView, col: int) -> list[str]:
    proxy = table.model()
    return [proxy.index(r, col).data() for r in range(proxy.rowCount())]


def titles(table: QTableView) -> list[str]:
    proxy = table.model()
    return [proxy.index(r, 0).data(DocumentTableModel.ENTRY_ROLE).title for r in range(proxy.rowCount())]


def click_header(qtbot: Any, table: QTableView, col: int) -> Qt.SortOrder:
    header = table.horizontalHeader()
    pos = QPoint(header.sectionViewportPosition(col) + header.sectionSize(col) // 2, header.height() // 2)
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert header.sortIndicatorSection() == col
    return header.sortIndicatorOrder()


def test_the_list_opens_newest_first_with_the_undated_last(view: QTableView) -> None:
    assert titles(view) == ["École du dos", "facture", "Bilan", "ecole primaire", "Sans date"]


def test_a_header_click_sorts_the_dates_both_ways(qtbot: Any, view: QTableView) -> None:
    assert click_header(qtbot, view, COL_DATE) == Qt.SortOrder.AscendingOrder  # was newest first
    assert titles(view) == ["Sans date", "ecole primaire", "Bilan", "facture", "École du dos"]
    assert click_header(qtbot, view, COL_DATE) == Qt.SortOrder.DescendingOrder
    assert titles(view) == ["École du dos", "facture", "Bilan", "ecole primaire", "Sans date"]


def test_titles_sort_without_case_or_accents(qtbot: Any, view: QTableView) -> None:
    assert click_header(qtbot, view, COL_TITLE) == Qt.SortOrder.AscendingOrder
    assert titles(view) == ["Bilan", "École du dos", "ecole primaire", "facture", "Sans date"]
    assert click_header(qtbot, view, COL_TITLE) == Qt.SortOrder.DescendingOrder
    assert titles(view) == ["Sans date", "facture", "ecole primaire", "École du dos", "Bilan"]
    assert text_key("École") == text_key("ecole") < text_key("Facture")


@pytest.mark.parametrize("col", [COL_TYPE, COL_STATE, COL_AUTHOR, COL_RUBRIC])
def test_every_text_column_sorts_by_its_shown_text(qtbot: Any, view: QTableView, col: int) -> None:
    first = click_header(qtbot, view, col)
    assert first == Qt.SortOrder.AscendingOrder
    cells = shown(view, col)
    assert cells == sorted(cells, key=text_key) and len(set(cells)) > 1
    assert click_header(qtbot, view, col) == Qt.SortOrder.DescendingOrder
    assert shown(view, col) == sorted(cells, key=text_key, reverse=True)


def test_authors_sort_by_name_whatever_the_case(qtbot: Any, view: QTableView) -> None:
    click_header(qtbot, view, COL_AUTHOR)
    assert [a.split()[1] for a in shown(view, COL_AUTHOR)] == ["Abel", "Durand", "émile", "MARTIN", "Zola"]


def test_the_selection_follows_its_document_through_a_sort(qtbot: Any, view: QTableView) -> None:
    proxy = view.model()
    row = titles(view).index("Bilan")
    view.selectionModel().select(
        proxy.index(row, 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    click_header(qtbot, view, COL_TITLE)
    selected = view.selectionModel().selectedRows()
    assert [i.data(DocumentTableModel.ENTRY_ROLE).title for i in selected] == ["Bilan"]
    assert selected[0].row() == 0


def test_a_new_listing_keeps_the_chosen_order(qtbot: Any, view: QTableView) -> None:
    click_header(qtbot, view, COL_AUTHOR)
    model = view.model().sourceModel()
    model.set_entries([*DOCS, doc("Nouveau", days=0, author="Bernard")], new_since=None)
    assert [a.split()[1] for a in shown(view, COL_AUTHOR)] == ["Abel", "Bernard", "Durand", "émile", "MARTIN",
                                                                "Zola"]  # fmt: skip
    assert model.entries[-1].title == "Nouveau"  # entries keep the order they came in


def test_filters_apply_to_the_sorted_rows(qtbot: Any, view: QTableView) -> None:
    proxy = view.model()
    assert isinstance(proxy, DocumentFilter)
    click_header(qtbot, view, COL_TITLE)
    proxy.set(text="ECOLE")  # free text and author without case or accents, as the sort
    assert titles(view) == ["École du dos", "ecole primaire"]
    proxy.set(text="", author="emile")
    assert titles(view) == ["École du dos"]
    proxy.set(author="MARTIN")
    assert titles(view) == ["ecole primaire"]
    proxy.set(author="", state=L.STATE_ARCHIVED)
    assert titles(view) == ["Bilan"]
    proxy.set(state="", type_label="CR")
    assert titles(view) == ["Bilan", "ecole primaire", "facture"]
    proxy.set(type_label="", since=(NOW - dt.timedelta(days=31)).date())
    assert titles(view) == ["Bilan", "École du dos", "facture"]  # the undated one never passes a date
    proxy.set(since=None, until=(NOW - dt.timedelta(days=29)).date())
    assert titles(view) == ["Bilan", "ecole primaire"]
    proxy.set(until=None, rubric="Analyses de biologie")
    assert titles(view) == ["École du dos"]
    click_header(qtbot, view, COL_TITLE)  # filtered and sorted the other way
    proxy.set(rubric="")
    assert titles(view) == ["Sans date", "facture", "ecole primaire", "École du dos", "Bilan"]


def test_new_documents_stay_marked_and_filtered_after_a_sort(qtbot: Any, view: QTableView) -> None:
    proxy = view.model()
    model = proxy.sourceModel()
    new_titles = {"École du dos", "facture"}  # within the 10 days since the last consultation
    click_header(qtbot, view, COL_AUTHOR)
    assert {model.entry_at(r).title for r in model.new} == new_titles
    for r in range(model.rowCount()):
        title_cell = model.data(model.index(r, COL_TITLE))
        font = model.data(model.index(r, COL_TITLE), Qt.ItemDataRole.FontRole)
        is_new = model.entry_at(r).title in new_titles
        assert title_cell.startswith(L.NEW_BADGE) is is_new and (font is not None and font.bold()) is is_new
    proxy.set(only_new=True)
    assert titles(view) == ["École du dos", "facture"]  # émile < Zola
    click_header(qtbot, view, COL_AUTHOR)
    assert titles(view) == ["facture", "École du dos"]


def test_column_widths_fit_the_sampled_texts(qtbot: Any, view: QTableView) -> None:
    fit_columns(view, sample_rows=60, max_width=320)
    metrics = view.fontMetrics()
    for col in range(view.model().columnCount()):
        width = view.columnWidth(col)
        assert width <= 320
        longest = max(metrics.horizontalAdvance(t) for t in shown(view, col))
        assert width >= min(longest, 320)
    # the same as Qt's own measure, to a few pixels (the window used resizeColumnsToContents before)
    ours = [view.columnWidth(c) for c in range(6)]
    view.resizeColumnsToContents()
    theirs = [min(view.columnWidth(c), 320) for c in range(6)]
    assert all(abs(a - b) <= 3 for a, b in zip(ours, theirs, strict=True)), (ours, theirs)
