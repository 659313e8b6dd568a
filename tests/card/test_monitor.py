"""Card events published by ``CardMonitor`` through the real pcscd, and reader listing."""

from __future__ import annotations

import queue

import pytest

from ps_agent.card.monitor import CardEvent, CardEventKind, CardMonitor
from ps_agent.card.pcsc import list_readers

pytestmark = pytest.mark.pcsc


def _next(events: queue.Queue[CardEvent], reader: str, timeout: float = 3.0) -> CardEvent:
    while True:
        event = events.get(timeout=timeout)
        if event.reader == reader:
            return event


def test_list_readers_shows_the_virtual_readers(pcscd_service: str) -> None:
    readers = list_readers()
    assert pcscd_service in readers


def test_insert_remove_and_unknown_card_events(virtual_card) -> None:
    events: queue.Queue[CardEvent] = queue.Queue()
    with CardMonitor() as monitor:
        unsubscribe = monitor.subscribe(events.put)
        virtual_card.insert("gp")
        inserted = _next(events, virtual_card.reader_name)
        assert inserted.kind is CardEventKind.INSERTED
        assert inserted.card is not None and inserted.card.generation == "CPS3"
        virtual_card.remove()
        assert _next(events, virtual_card.reader_name).kind is CardEventKind.REMOVED
        virtual_card.insert("unknown")
        unknown = _next(events, virtual_card.reader_name)
        assert unknown.kind is CardEventKind.UNKNOWN_CARD and unknown.card is None
        virtual_card.remove()
        assert _next(events, virtual_card.reader_name).kind is CardEventKind.REMOVED
        unsubscribe()
        virtual_card.insert("nurse")
        with pytest.raises(queue.Empty):
            _next(events, virtual_card.reader_name, timeout=1.0)


def test_a_failing_subscriber_does_not_stop_the_others(virtual_card) -> None:
    events: queue.Queue[CardEvent] = queue.Queue()

    def broken(event: CardEvent) -> None:
        raise RuntimeError("subscriber bug")

    with CardMonitor() as monitor:
        monitor.subscribe(broken)
        monitor.subscribe(events.put)
        virtual_card.insert("secretary")
        assert _next(events, virtual_card.reader_name).kind is CardEventKind.INSERTED


def test_card_present_at_start_is_reported(virtual_card) -> None:
    virtual_card.insert("gp")
    events: queue.Queue[CardEvent] = queue.Queue()
    monitor = CardMonitor()
    monitor.subscribe(events.put)
    with monitor:
        assert _next(events, virtual_card.reader_name).kind is CardEventKind.INSERTED


def test_reader_unplugged_and_plugged_events(monkeypatch) -> None:
    """A reader leaving the PC/SC list (unplugged) publishes REMOVED for its card, then READER_GONE;
    a new reader publishes READER_ADDED. (vpcd readers cannot be unplugged, so the reader list is
    simulated; the state machine is the monitor's own.)"""
    monitor = CardMonitor()
    events: list[CardEvent] = []
    monitor.subscribe(events.append)
    known = {"Lecteur A 00 00": 0, "Lecteur B 00 00": 0}
    monitor.present["Lecteur A 00 00"] = b"\x3b\x00"
    monkeypatch.setattr(monitor, "_readers", lambda: ["Lecteur B 00 00", "Lecteur C 00 00"])
    monitor._resync(known)
    assert [(e.kind, e.reader) for e in events] == [
        (CardEventKind.REMOVED, "Lecteur A 00 00"),
        (CardEventKind.READER_GONE, "Lecteur A 00 00"),
        (CardEventKind.READER_ADDED, "Lecteur C 00 00"),
    ]
    assert "Lecteur A 00 00" not in monitor.present and set(known) == {"Lecteur B 00 00", "Lecteur C 00 00"}
