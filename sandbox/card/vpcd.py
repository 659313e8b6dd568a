"""Link an emulated card to the vpcd virtual reader of pcscd (connect = insertion, close = removal).

vpcd protocol (vsmartcard): every message is a 2-byte big-endian length then the payload. A 1-byte
payload is a control from vpcd (``00`` power off, ``01`` power on, ``02`` reset, ``04`` get ATR,
answered with the ATR); a longer one is a C-APDU, answered with the R-APDU.

vpcd writes the length and the APDU with two ``send()`` calls with Nagle on: without an immediate
ACK every APDU costs ~40 ms. We set ``TCP_NODELAY`` once and ``TCP_QUICKACK`` before each ``recv``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Protocol

from sandbox.errors import SandboxError

VPCD_HOST = "127.0.0.1"
VPCD_PORTS = {0: 35963, 1: 35964}  # reader "Virtual PCD 00 00" / "Virtual PCD 00 01"
READER_NAMES = {0: "Virtual PCD 00 00", 1: "Virtual PCD 00 01"}


class VpcdError(SandboxError):
    """vpcd cannot be reached (pcscd not running, or the vpcd driver not installed)."""


class Card(Protocol):
    atr: bytes

    def power_on(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


class VpcdLink:
    """Runs one card on one vpcd reader in a background thread."""

    def __init__(self, card: Card, *, reader: int = 0, host: str = VPCD_HOST) -> None:
        self.card = card
        self.port = VPCD_PORTS.get(reader, reader)
        self.host = host
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def insert(self, timeout_s: float = 5.0) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        except OSError as exc:
            raise VpcdError(
                f"Lecteur virtuel injoignable ({self.host}:{self.port}) : pcscd est-il démarré avec le "
                f"pilote vpcd (paquet vsmartcard-vpcd) ? ({exc})"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"vpcd-card-{self.port}", daemon=True)
        self._thread.start()

    def remove(self) -> None:
        self._stop.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def inserted(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the link ends (vpcd closed it or ``remove`` was called)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            if hasattr(socket, "TCP_QUICKACK"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            buf += chunk
        return buf

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            while not self._stop.is_set():
                (n,) = struct.unpack(">H", self._recv_exact(sock, 2))
                msg = self._recv_exact(sock, n)
                if n == 1:
                    if msg[0] == 0x04:
                        sock.sendall(struct.pack(">H", len(self.card.atr)) + self.card.atr)
                    elif msg[0] in (0x00, 0x01, 0x02):
                        self.card.power_on()  # power off, on and reset all clear the security state
                    continue
                rapdu = self.card.process(msg)
                sock.sendall(struct.pack(">H", len(rapdu)) + rapdu)
        except (OSError, ConnectionError) as exc:
            if not self._stop.is_set():
                self.error = exc
