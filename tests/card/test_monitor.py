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
