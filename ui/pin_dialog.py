"""The PIN dialog: digits only, masked, tries left, the final-try confirmation, the blocked card and its
PUK route. It never touches the card: it hands the PIN to ``AgentController.login`` (a background call)
and shows the core's answer."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRegularExpression, Qt
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from ps_agent.auth.errors import PIN_LENGTH, PinBlocked, PinFinalTryError, WrongPin
from ui.labels import (
    PIN_BLOCKED_HELP,
    PIN_FINAL_TRY_CONFIRM,
    PIN_PROMPT,
    PIN_SESSION_ONCE,
    PIN_TITLE,
    CardState,
)


class PinDialog(QDialog):
    def __init__(self, controller: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle(PIN_TITLE)
        self.setAccessibleName(PIN_TITLE)
        self.setModal(True)
        self.setMinimumWidth(440)
        lay = QVBoxLayout(self)
        self.prompt = QLabel(PIN_PROMPT)
        self.prompt.setWordWrap(True)
        self.pin = QLineEdit()
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin.setMaxLength(PIN_LENGTH)
        self.pin.setValidator(QRegularExpressionValidator(QRegularExpression(rf"^\d{{0,{PIN_LENGTH}}}$")))
        self.pin.setAccessibleName("Code porteur")
        self.pin.setInputMethodHints(Qt.InputMethodHint.ImhDigitsOnly | Qt.InputMethodHint.ImhSensitiveData)
        self.prompt.setBuddy(self.pin)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Message de la carte")
        self.message.setStyleSheet("color: #a40000;")
        self.final_try = QCheckBox(PIN_FINAL_TRY_CONFIRM)
        self.final_try.setAccessibleName(PIN_FINAL_TRY_CONFIRM)
        self.final_try.hide()
        self.once = QLabel(PIN_SESSION_ONCE)
        self.once.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Valider")
        self.ok.setAccessibleName("Valider le code porteur")
        cancel = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setText("Annuler")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        for w in (self.prompt, self.pin, self.message, self.final_try, self.once, self.buttons):
            lay.addWidget(w)
        self.pin.textChanged.connect(self._update)
        self.final_try.toggled.connect(self._update)
        controller.login_failed.connect(self._on_failed)
        controller.session_opened.connect(self._on_opened)
        self.tries_left: int | None = None
        self.blocked = False
        self._update()

    def _update(self) -> None:
        complete = len(self.pin.text()) == PIN_LENGTH
        needs_confirm = self.final_try.isVisible() and not self.final_try.isChecked()
        busy = self.controller.state is CardState.LOGGING_IN
        self.ok.setEnabled(complete and not needs_confirm and not self.blocked and not busy)

    def submit(self) -> None:
        if not self.ok.isEnabled():
            return
        pin = self.pin.text()
        self.pin.clear()  # the PIN lives only in the background call
        self.message.setText("Vérification du code porteur…")
        self.ok.setEnabled(False)
        self.controller.login(pin, confirm_final_try=self.final_try.isChecked())

    def _on_failed(self, exc: Any) -> None:
        self.message.setText(exc.message_fr)
        if isinstance(exc, PinBlocked):
            self.blocked = True
            self.message.setText(f"{exc.message_fr}\n\n{PIN_BLOCKED_HELP}")
            self.pin.setEnabled(False)
            self.final_try.hide()
        elif isinstance(exc, PinFinalTryError | WrongPin):
            self.tries_left = exc.tries_left
            if exc.tries_left == 1:
                self.final_try.show()
                self.final_try.setChecked(False)
        self.pin.setFocus()
        self._update()

    def _on_opened(self, _session: Any) -> None:
        self.message.setText("")
        self.accept()
