"""PC/SC access with pyscard: readers, one card connection, APDU transport (yubikit's seam).

``PcscConnection`` is the small connection interface the card session (``ps_agent.card.cps``)
talks to: ``send_and_receive(apdu) -> (data, sw)`` handles T=0 ``61xx`` (GET RESPONSE) and ``6Cxx``
(resend with the right Le), which pyscard does not do. PC/SC return codes are turned into the typed
errors of ``ps_agent.card.errors`` here, once.

Raw APDUs are logged at level ``TRAFFIC`` (5, below DEBUG, opt-in); the data of VERIFY and RESET
RETRY COUNTER (PIN, PUK) is never logged.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

from smartcard import scard

from ps_agent.card.errors import (
    CardBusy,
    CardProtocolError,
    CardRemoved,
    NoCard,
    NoReader,
    PcscUnavailable,
    ReaderGone,
)
from ps_agent.errors import CardError

log = logging.getLogger(__name__)
TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")

_SECRET_INS = {0x20, 0x24, 0x2C}  # VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER: data is a PIN/PUK


def _code(hr: int) -> int:
    return hr & 0xFFFFFFFF


def _is(hr: int, *names: str) -> bool:
    return any(_code(hr) == _code(getattr(scard, n, -1)) for n in names)


_SERVICE_DOWN = ("SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED")
_CARD_GONE = ("SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_UNPOWERED_CARD")
_MAYBE_REMOVED = (  # transmit failures that mostly mean "the card was pulled during the command"
    "SCARD_E_NOT_TRANSACTED",
    "SCARD_F_COMM_ERROR",
    "SCARD_E_COMM_DATA_LOST",
    "SCARD_W_UNRESPONSIVE_CARD",
)
_READER_GONE = ("SCARD_E_READER_UNAVAILABLE", "SCARD_E_UNKNOWN_READER")


def _message(hr: int) -> str:
    try:
        return f"{scard.SCardGetErrorMessage(hr)} (0x{_code(hr):08X})"
    except Exception:  # pragma: no cover - defensive
        return f"0x{_code(hr):08X}"


def establish_context() -> int:
    try:
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    except scard.error as exc:
        raise PcscUnavailable(str(exc)) from exc
    if hr != scard.SCARD_S_SUCCESS:
        raise PcscUnavailable(_message(hr))
    return int(ctx)


def release_context(ctx: int) -> None:
    with contextlib.suppress(Exception):
        scard.SCardReleaseContext(ctx)


def list_readers() -> list[str]:
    """Names of the connected readers ([] when none). Raises ``PcscUnavailable`` if pcscd is down."""
    for _attempt in range(2):  # a stale context right after pcscd restarts: retry once
        ctx = establish_context()
        try:
            hr, names = scard.SCardListReaders(ctx, [])
        finally:
            release_context(ctx)
        if hr == scard.SCARD_S_SUCCESS:
            return list(names)
        if _is(hr, "SCARD_E_NO_READERS_AVAILABLE"):
            return []
        if not _is(hr, *_SERVICE_DOWN, "SCARD_E_INVALID_HANDLE"):
            raise CardError(f"Erreur du service de cartes à puce : {_message(hr)}", code="pcsc_error")
    raise PcscUnavailable(_message(hr))


class PcscConnection:
    """One connection to the card in ``reader``.

    Opens **exclusive first** (nobody may interleave APDUs during our identification and PIN
    sequence), falls back to **shared** when another program (e.g. the Cryptolib) already has the
    card open in shared mode, and raises ``CardBusy`` naming the contention when another program
    holds it exclusively. ``exclusive=False`` skips the first attempt.
    """

    def __init__(self, reader: str, *, exclusive: bool = True) -> None:
        self.reader = reader
        self._lock = threading.RLock()
        self._ctx = establish_context()
        self._card = 0
        self.share_mode = ""
        try:
            self._connect(exclusive)
            self.atr = self._status_atr()
        except BaseException:
            release_context(self._ctx)
            raise

    def _connect(self, exclusive: bool) -> None:
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        modes = [("exclusive", scard.SCARD_SHARE_EXCLUSIVE)] if exclusive else []
        modes.append(("shared", scard.SCARD_SHARE_SHARED))
        hr = scard.SCARD_S_SUCCESS
        for name, mode in modes:
            hr, card, protocol = scard.SCardConnect(self._ctx, self.reader, mode, protocols)
            if hr == scard.SCARD_S_SUCCESS:
                self._card, self._protocol, self.share_mode = card, protocol, name
                return
            if not _is(hr, "SCARD_E_SHARING_VIOLATION"):
                break
        if _is(hr, "SCARD_E_SHARING_VIOLATION"):
            raise CardBusy(self.reader)
        self._raise_for(hr, connecting=True)

    def share(self) -> None:
        """Switch an exclusive connection to shared mode without resetting the card (the PIN stays
        verified), so the Cryptolib or billing software can use the card between our operations.

        pcsc-lite 1.9 keeps the exclusive lock after ``SCardReconnect(SHARED)`` (other programs then
        block in ``SCardConnect``), so we disconnect with ``SCARD_LEAVE_CARD`` and connect again shared.
        """
        with self._lock:
            if self.share_mode != "exclusive" or not self._card:
                return
            card, self._card = self._card, 0
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
            self._connect(exclusive=False)

    def _status_atr(self) -> bytes:
        hr, _reader, _state, _protocol, atr = scard.SCardStatus(self._card)
        if hr != scard.SCARD_S_SUCCESS:
            self._raise_for(hr)
        return bytes(atr)

    def _raise_for(self, hr: int, *, connecting: bool = False) -> None:
        if _is(hr, *_SERVICE_DOWN):
            raise PcscUnavailable(_message(hr))
        if _is(hr, *_READER_GONE):
            raise NoReader(self.reader) if connecting else ReaderGone(self.reader)
        if _is(hr, *_CARD_GONE):
            raise NoCard(self.reader) if connecting else CardRemoved(self.reader)
        if _is(hr, "SCARD_W_RESET_CARD"):
            raise CardRemoved(self.reader, reset=True)
        if _is(hr, "SCARD_W_UNRESPONSIVE_CARD", "SCARD_E_PROTO_MISMATCH", *_MAYBE_REMOVED):
            raise CardProtocolError(_message(hr))
        if _is(hr, "SCARD_E_INVALID_HANDLE"):
            raise CardRemoved(self.reader)
        raise CardError(f"Erreur du lecteur de cartes : {_message(hr)}", code="pcsc_error")

    def _raise_if_card_gone(self, wait_s: float = 0.8) -> None:
        """Raise ``CardRemoved``/``ReaderGone`` if the card left (pcscd notices within ~0.4 s)."""
        deadline = time.monotonic() + wait_s
        while True:
            hr, _reader, state, _protocol, _atr = scard.SCardStatus(self._card)
            if hr != scard.SCARD_S_SUCCESS:
                self._raise_for(hr)
            if (state == 1) if sys.platform == "win32" else (state & 0x0002):  # SCARD_ABSENT
                raise CardRemoved(self.reader)
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    # ------------------------------------------------------------------------------ transport
    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """One exchange; returns (data, sw)."""
        if not self._card:
            raise CardRemoved(self.reader)
        with self._lock:
            if log.isEnabledFor(TRAFFIC):
                shown = apdu[:5].hex() + (
                    "…(masqué)" if apdu[1] in _SECRET_INS and len(apdu) > 5 else apdu[5:].hex()
                )
                log.log(TRAFFIC, "SEND %s", shown)
            hr, response = scard.SCardTransmit(self._card, self._protocol, list(apdu))
            if hr != scard.SCARD_S_SUCCESS:
                if _is(hr, *_MAYBE_REMOVED):
                    self._raise_if_card_gone()
                self._raise_for(hr)
            data = bytes(response)
            if len(data) < 2:
                # vpcd/readers answer "nothing" when the card is pulled mid-command: tell them apart
                self._raise_if_card_gone()
                raise CardProtocolError(f"response too short ({len(data)} bytes) to {apdu[:4].hex()}")
            log.log(TRAFFIC, "RECV %s", data.hex())
            return data[:-2], int.from_bytes(data[-2:], "big")

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        """Exchange with T=0 response chaining: ``61xx`` → GET RESPONSE, ``6Cxx`` → resend with Le=xx."""
        with self._lock:
            return chained_exchange(self.transmit, apdu)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several APDUs so no other program interleaves its own (shared mode)."""
        with self._lock:
            hr = scard.SCardBeginTransaction(self._card)
            if hr != scard.SCARD_S_SUCCESS:
                self._raise_for(hr)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    scard.SCardEndTransaction(self._card, scard.SCARD_LEAVE_CARD)

    def close(self) -> None:
        with self._lock:
            card, self._card = self._card, 0
            if card:
                with contextlib.suppress(Exception):
                    scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
            if self._ctx:
                release_context(self._ctx)
                self._ctx = 0

    @property
    def closed(self) -> bool:
        return not self._card

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chained_exchange(transmit: Callable[[bytes], tuple[bytes, int]], apdu: bytes) -> tuple[bytes, int]:
    """One logical exchange over ``transmit``: resend on ``6Cxx``, collect ``61xx`` GET RESPONSE chains."""
    data, sw = transmit(apdu)
    if sw >> 8 == 0x6C:
        data, sw = transmit(apdu[:4] + _with_le(apdu, sw & 0xFF))
    collected = data
    for _ in range(64):
        if sw >> 8 != 0x61:
            return collected, sw
        more, sw = transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
        collected += more
    raise CardProtocolError("endless GET RESPONSE chain")


def _with_le(apdu: bytes, le: int) -> bytes:
    """``apdu`` body rewritten with a new Le (case 2: replace the last byte; case 4: replace/append)."""
    body = apdu[4:]
    if len(body) <= 1:  # case 1/2
        return bytes([le])
    lc = body[0]
    return body[: 1 + lc] + bytes([le])
