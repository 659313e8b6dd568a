"""Searchable pickers shared by the pages: the DMP document type (label and code, « contains » search, as
on the deposit page) and its lookup from typed text."""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QCompleter, QWidget

from ui.deposit import dmp_types


def type_text(code: str, label: str) -> str:
    return f"{label} ({code})"


def code_from_text(text: str, known: dict[str, str]) -> str | None:
    """The type code a typed text names: an item's exact text, a bare code, or a label (case-insensitive);
    None when it names none or several."""
    text = text.strip()
    if not text:
        return None
    if text in known:
        return text
    m = re.search(r"\(([^()]+)\)\s*$", text)
    if m and m.group(1) in known and type_text(m.group(1), known[m.group(1)]) == text:
        return m.group(1)
    by_label = [c for c, label in known.items() if label.casefold() == text.casefold()]
    return by_label[0] if len(by_label) == 1 else None


class TypePicker(QComboBox):
    """Editable combo of the DMP's document types (« label (code) »), searched by any part of the text."""

    def __init__(self, parent: QWidget | None = None, types: list[tuple[str, str]] | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setAccessibleName("Type de document")
        self.types = dict(types if types is not None else dmp_types())
        for code, label in self.types.items():
            self.addItem(type_text(code, label), code)
        completer = QCompleter(self.model(), self)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setCompleter(completer)

    def set_code(self, code: str) -> None:
        self.setCurrentIndex(max(0, self.findData(code)))

    def code(self) -> str | None:
        """The chosen type: the typed text decides (a stale current index never does)."""
        found = code_from_text(self.currentText(), self.types)
        if found is not None:
            return found
        data: Any = self.currentData()
        if isinstance(data, str) and self.currentText() == self.itemText(self.currentIndex()):
            return data
        return None
