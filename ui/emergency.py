"""The bris de glace dialog (4.2): both conditions attested, a mandatory reason, the notice that the
patient and the médecin traitant will be informed, then « Accéder en urgence »."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
)

from ui import labels as L


class EmergencyDialog(QDialog):
    def __init__(self, parent: Any = None, *, centre_15: bool = False) -> None:
        super().__init__(parent)
        self.centre_15 = centre_15
        title = L.C15_ACTION if centre_15 else "Accès en urgence (bris de glace)"
        self.setWindowTitle(title)
        self.setAccessibleName(title)
        lay = QVBoxLayout(self)
        self.cond1 = QCheckBox(L.BDG_CONDITION_1)
        self.cond2 = QCheckBox(L.BDG_CONDITION_2)
        for c in (self.cond1, self.cond2):
            c.setAccessibleName(c.text())
            c.setVisible(not centre_15)  # régulation: the conditions are the regulator's call (URG-06)
            lay.addWidget(c)
        reason_label = QLabel(L.BDG_REASON_LABEL)
        self.reason = QPlainTextEdit()
        self.reason.setAccessibleName(L.BDG_REASON_LABEL)
        self.reason.setTabChangesFocus(True)
        reason_label.setBuddy(self.reason)
        lay.addWidget(reason_label)
        lay.addWidget(self.reason)
        self.hint = QLabel(f"Au moins {L.EMERGENCY_REASON_MIN_CHARS} caractères.")
        lay.addWidget(self.hint)
        self.notice = QLabel(L.BDG_NOTICE)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("font-weight: bold;")
        lay.addWidget(self.notice)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText(L.BDG_CONFIRM)
        self.ok.setAccessibleName(L.BDG_CONFIRM)
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Annuler")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        for c in (self.cond1, self.cond2):
            c.toggled.connect(self._update)
        self.reason.textChanged.connect(self._update)
        self._update()

    def reason_text(self) -> str:
        return " ".join(self.reason.toPlainText().split())

    def complete(self) -> bool:
        conditions = self.centre_15 or (self.cond1.isChecked() and self.cond2.isChecked())
        return conditions and len(self.reason_text()) >= L.EMERGENCY_REASON_MIN_CHARS

    def _update(self) -> None:
        self.ok.setEnabled(self.complete())

    def accept(self) -> None:
        if self.complete():  # the button is disabled otherwise; Enter must not bypass it
            super().accept()
