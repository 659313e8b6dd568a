"""Single instance (Vorta's ``QtSingleApplication`` shape): the first launch listens on a local socket;
a second launch connects, asks it to bring its window forward, and exits."""

from __future__ import annotations

import getpass
import re

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

CONNECT_TIMEOUT_MS = 500
MESSAGE_SHOW = b"show\n"


def default_name() -> str:
    """One instance per user session (the name is a pipe on Windows, a socket file elsewhere)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "user"
    return "ps-agent-ui-" + re.sub(r"[^A-Za-z0-9_.-]", "_", user)


class SingleInstance(QObject):
    """``is_primary`` tells whether this process owns the instance; ``activate_requested`` fires in the
    primary when another launch asks for the window."""

    activate_requested = Signal()

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or default_name()
        self.server: QLocalServer | None = None
        self.is_primary = not self._notify_running()
        if self.is_primary:
            self._listen()

    def _notify_running(self) -> bool:
        sock = QLocalSocket()
        sock.connectToServer(self.name)
        if not sock.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        sock.write(MESSAGE_SHOW)
        sock.flush()
        sock.waitForBytesWritten(CONNECT_TIMEOUT_MS)
        sock.disconnectFromServer()
        return True

    def _listen(self) -> None:
        QLocalServer.removeServer(self.name)  # a stale socket left by a crashed instance
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._on_connection)
        self.server.listen(self.name)

    def _on_connection(self) -> None:
        assert self.server is not None
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            sock.readyRead.connect(self._ready)
            sock.disconnected.connect(sock.deleteLater)
            if sock.bytesAvailable():
                self._read(sock)

    def _ready(self) -> None:
        sock = self.sender()
        if isinstance(sock, QLocalSocket):
            self._read(sock)

    def _read(self, sock: QLocalSocket) -> None:
        data = bytes(sock.readAll().data())
        if MESSAGE_SHOW.strip() in data:
            self.activate_requested.emit()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server.deleteLater()
            self.server = None
