"""The main window's pages in scroll areas (issue 11 §11, « readable at 150 % scaling »): on a 1366×768
screen at 150 % the window has 910×512 device-independent pixels, less than some pages' minimum (the
journal's filters and buttons, the document filters); each page then scrolls instead of being cut or
forcing the window past the screen.

``PageTabs`` is a ``QTabWidget`` whose ``addTab`` puts the page in a ``QScrollArea`` (resizable: at a
normal size the page fills it and nothing scrolls); ``currentWidget``, ``setCurrentWidget``, ``indexOf``
and ``widget`` speak of the pages themselves, so callers never see the scroll areas."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QFrame, QScrollArea, QTabWidget, QWidget


class PageTabs(QTabWidget):
    def addTab(self, page: QWidget, label: str) -> int:  # type: ignore[override]
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setAccessibleName(page.accessibleName() or label)
        area.setWidget(page)
        return super().addTab(area, label)

    @staticmethod
    def _page(area: Any) -> Any:
        return area.widget() if isinstance(area, QScrollArea) else area

    def widget(self, index: int) -> Any:
        return self._page(super().widget(index))

    def currentWidget(self) -> Any:
        return self._page(super().currentWidget())

    def indexOf(self, page: QWidget) -> int:
        for i in range(self.count()):
            if self.widget(i) is page:
                return i
        return super().indexOf(page)

    def setCurrentWidget(self, page: QWidget) -> None:
        index = self.indexOf(page)
        if index >= 0:
            self.setCurrentIndex(index)
