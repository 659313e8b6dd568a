"""The main window's pages in scroll areas (issue 11 §11, « readable at 150 % scaling »): on a 1366×768
screen at 150 % the window has 910×512 device-independent pixels, less than some pages' minimum (the
journal's filters and buttons, the document filters); each page then scrolls instead of being cut or
forcing the window past the screen.

``PageTabs`` is a ``QTabWidget`` whose ``addTab`` puts the page in a ``QScrollArea`` (resizable: at a
normal size the page fills it and nothing scrolls); ``currentWidget``, ``setCurrentWidget``, ``indexOf``
and ``widget`` speak of the pages themselves, so callers never see the scroll areas.

Pages built on first use (the window's start-up, ``benchmarks/bench_ui.py``): ``addLazyTab(build, label)``
shows the tab at once (same title, same place) with an empty scroll area; ``build()`` makes the page the
first time the tab becomes current or ``widget(index)`` / ``page(index)`` asks for it (``built(index)``
says whether it exists, without building it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QFrame, QScrollArea, QTabWidget, QWidget


class PageTabs(QTabWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._builders: dict[QScrollArea, Callable[[], QWidget]] = {}
        self._building: set[QScrollArea] = set()
        # connected first: the page exists before any other listener of the tab change runs
        self.currentChanged.connect(self.page)

    @staticmethod
    def _area(name: str) -> QScrollArea:
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setAccessibleName(name)
        return area

    def addTab(self, page: QWidget, label: str) -> int:  # type: ignore[override]
        area = self._area(page.accessibleName() or label)
        area.setWidget(page)
        return super().addTab(area, label)

    def addLazyTab(self, build: Callable[[], QWidget], label: str) -> int:
        """A tab whose page ``build()`` makes on first use (see the module's docstring)."""
        area = self._area(label)
        self._builders[area] = build
        return super().addTab(area, label)

    def built(self, index: int) -> bool:
        area = super().widget(index)
        return area is not None and area not in self._builders

    def page(self, index: int) -> Any:
        """The page at ``index``, built now if it was not yet (None for no such tab)."""
        area = super().widget(index)
        if isinstance(area, QScrollArea) and area in self._builders and area not in self._building:
            self._building.add(area)  # a page that asks for itself while being built gets None
            try:
                page = self._builders[area]()
                if page.accessibleName():
                    area.setAccessibleName(page.accessibleName())
                area.setWidget(page)
                del self._builders[area]
            finally:
                self._building.discard(area)
        return self._page(area)

    @staticmethod
    def _page(area: Any) -> Any:
        return area.widget() if isinstance(area, QScrollArea) else area

    def widget(self, index: int) -> Any:
        return self.page(index)

    def currentWidget(self) -> Any:
        return self.page(self.currentIndex())

    def indexOf(self, page: QWidget) -> int:
        for i in range(self.count()):
            if self._page(super().widget(i)) is page:  # built pages only: none is built by looking
                return i
        return super().indexOf(page)

    def setCurrentWidget(self, page: QWidget) -> None:
        index = self.indexOf(page)
        if index >= 0:
            self.setCurrentIndex(index)
