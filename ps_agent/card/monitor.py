"""Watch readers continuously and publish card events to subscribers (no Qt: plain callbacks).

``CardMonitor`` runs one thread blocked in ``SCardGetStatusChange`` (woken by ``SCardCancel`` on
stop), also watching the PnP pseudo-reader so readers plugged/unplugged are seen. Events:
``INSERTED`` (a CPx card), ``UNKNOWN_CARD`` (a card whose ATR is not a CPx one), ``REMOVED``,
``READER_ADDED``, ``READER_GONE``, ``SERVICE_GONE`` (pcscd stopped; the monitor retries every second).
Subscribers are called from the monitor thread: keep them short (the UI posts to its own thread).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ps_agent.card.cps import AtrMatch

# pyscard and the card modules are imported by the methods that use them (on the monitor's thread once
# started): importing this module costs a window's start-up nothing.

log = logging.getLogger(__name__)

PNP = "\\\\?PnP?\\Notification"


class CardEventKind(enum.StrEnum):
    INSERTED = "inserted"
    UNKNOWN_CARD = "unknown_card"
    REMOVED = "removed"
    READER_ADDED = "reader_added"
    READER_GONE = "reader_gone"
    SERVICE_GONE = "service_gone"


@dataclass(frozen=True)
class CardEvent:
    kind: CardEventKind
    reader: str
    atr: bytes = b""
    card: AtrMatch | None = None
    at: float = field(default_factory=time.monotonic)  # monotonic clock of detection


Subscriber = Callable[[CardEvent], None]


class CardMonitor:
    """Publishes ``CardEvent``s. ``start()`` / ``stop()``; ``subscribe(cb)`` returns an unsubscribe function.

    At start, cards already present are reported as ``INSERTED``/``UNKNOWN_CARD`` events.
    """

    def __init__(self, *, poll_s: float = 1.0) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx = 0
        self._poll_ms = int(poll_s * 1000)
        self.present: dict[str, bytes] = {}  # reader -> ATR of the card in it

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def start(self) -> CardMonitor:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="card-monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        ctx = self._ctx
        if ctx:
            from smartcard import scard

            with contextlib.suppress(Exception):
                scard.SCardCancel(ctx)
        if self._thread is not None:
            self._thread.join(3)
            self._thread = None

    def __enter__(self) -> CardMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------
    def _publish(self, event: CardEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not stop the monitor
                log.exception("card event subscriber failed")

    def _card_event(self, reader: str, atr: bytes) -> None:
        from ps_agent.card.cps import identify_atr

        match = identify_atr(atr)
        kind = CardEventKind.INSERTED if match else CardEventKind.UNKNOWN_CARD
        self._publish(CardEvent(kind, reader, atr, match))

    def _run(self) -> None:
        from ps_agent.card.pcsc import establish_context, release_context

        service_up = True
        while not self._stop.is_set():
            try:
                self._ctx = establish_context()
            except Exception:
                if service_up:
                    service_up = False
                    self._publish(CardEvent(CardEventKind.SERVICE_GONE, ""))
                self._stop.wait(1.0)
                continue
            service_up = True
            try:
                self._watch()
            finally:
                ctx, self._ctx = self._ctx, 0
                release_context(ctx)

    def _readers(self) -> list[str] | None:
        from smartcard import scard

        from ps_agent.card.pcsc import _is

        hr, names = scard.SCardListReaders(self._ctx, [])
        if hr == scard.SCARD_S_SUCCESS:
            return list(names)
        if _is(hr, "SCARD_E_NO_READERS_AVAILABLE"):
            return []
        return None  # service problem: re-establish

    def _watch(self) -> None:
        from smartcard import scard

        from ps_agent.card.pcsc import _is

        known: dict[str, int] = {}
        readers = self._readers()
        if readers is None:
            return
        for r in readers:
            known[r] = scard.SCARD_STATE_UNAWARE
        pnp_state = scard.SCARD_STATE_UNAWARE
        first = True
        while not self._stop.is_set():
            states = [(r, s) for r, s in known.items()] + [(PNP, pnp_state)]
            hr, result = scard.SCardGetStatusChange(self._ctx, self._poll_ms, states)
            if self._stop.is_set():
                return
            if _is(hr, "SCARD_E_TIMEOUT"):
                continue
            if _is(hr, "SCARD_E_CANCELLED"):
                return
            if hr != scard.SCARD_S_SUCCESS:
                if _is(hr, "SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED", "SCARD_E_INVALID_HANDLE"):
                    for r in list(self.present):
                        self._publish(CardEvent(CardEventKind.REMOVED, r))
                    self.present.clear()
                    self._publish(CardEvent(CardEventKind.SERVICE_GONE, ""))
                    self._stop.wait(1.0)
                    return
                # unknown reader in the list (unplugged between calls): rebuild the list
                self._resync(known)
                continue
            reader_change = False
            for name, flags, atr in result:
                if name == PNP:
                    if flags & scard.SCARD_STATE_CHANGED:
                        reader_change = True
                    pnp_state = flags & ~scard.SCARD_STATE_CHANGED
                    continue
                if flags & scard.SCARD_STATE_UNKNOWN or flags & scard.SCARD_STATE_UNAVAILABLE:
                    reader_change = True
                    continue
                if not (flags & scard.SCARD_STATE_CHANGED) and not first:
                    continue
                prev = known.get(name, scard.SCARD_STATE_UNAWARE)
                known[name] = flags & ~scard.SCARD_STATE_CHANGED
                present = bool(flags & scard.SCARD_STATE_PRESENT) and not (flags & scard.SCARD_STATE_MUTE)
                atr_b = bytes(atr or b"")
                if present:
                    # pcscd counts card events in the high word: a changed count with a card still
                    # present means it was swapped (or re-inserted) between two notifications.
                    counted = prev != scard.SCARD_STATE_UNAWARE and (flags >> 16) != (prev >> 16)
                    swapped = name in self.present and (
                        self.present[name] != atr_b or (counted and not first)
                    )
                    if name not in self.present or swapped:
                        if swapped:
                            self._publish(CardEvent(CardEventKind.REMOVED, name))
                        self.present[name] = atr_b
                        self._card_event(name, atr_b)
                elif name in self.present:
                    del self.present[name]
                    self._publish(CardEvent(CardEventKind.REMOVED, name))
            first = False
            if reader_change:
                self._resync(known)

    def _resync(self, known: dict[str, int]) -> None:
        from smartcard import scard

        readers = self._readers()
        if readers is None:
            return
        for gone in [r for r in known if r not in readers]:
            del known[gone]
            if gone in self.present:
                del self.present[gone]
                self._publish(CardEvent(CardEventKind.REMOVED, gone))
            self._publish(CardEvent(CardEventKind.READER_GONE, gone))
        for new in [r for r in readers if r not in known]:
            known[new] = scard.SCARD_STATE_UNAWARE
            self._publish(CardEvent(CardEventKind.READER_ADDED, new))
