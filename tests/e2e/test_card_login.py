"""Card and PIN refusals opened through the services are journaled (issue 8 item 4): wrong PIN with tries
left, expired card, no card; never the PIN. The session then owns the card session it opened."""

from __future__ import annotations

import threading
import time

import pytest

from ps_agent.auth.errors import CertificateError, WrongPin
from ps_agent.card.errors import NoCard
from ps_agent.events import CARD_CHANGED, SESSION_CLOSED

pytestmark = [pytest.mark.pcsc]


def test_card_refusals_are_journaled_never_the_pin(virtual_card, services_for):
    from sandbox.profiles import PROFILES

    services = services_for()
    reader = virtual_card.reader_name
    good = PROFILES["gp"].pin
    wrong = "9876" if good != "9876" else "6789"
    virtual_card.insert("gp")
    with pytest.raises(WrongPin):
        services.open_card_session(reader, wrong)
    session = services.open_card_session(reader, good)  # the right PIN (resets the counter)
    serial = session.identity.extra["card_serial"]
    assert serial and PROFILES["gp"].serial.endswith(serial)
    seen: list[tuple[str, str]] = []
    services.events.connect(SESSION_CLOSED, lambda r: seen.append(("session_closed", r)))
    services.events.connect(CARD_CHANGED, lambda r: seen.append(("card_changed", r)))
    virtual_card.remove()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        threading.Event().wait(0.02)
    assert seen == [("session_closed", "removed"), ("card_changed", "removed")]
    session.close()
    assert not session.credentials.active
    virtual_card.insert("gp")
    other = services.open_card_session(reader, good)
    other.close()
    assert not other.credentials.active  # the card session opened by the services is closed with it
    virtual_card.remove()
    virtual_card.insert("expired")
    with pytest.raises(CertificateError):
        services.open_card_session(reader, PROFILES["expired"].pin)
    virtual_card.remove()
    with pytest.raises(NoCard):
        services.open_card_session(reader, good)
    recs = [r.event for r in services.journal.records(action="card.login")]
    assert [(e.outcome, e.error_code) for e in recs] == [
        ("refused", "pin_wrong"),
        ("success", ""),
        ("success", ""),
        ("refused", "cert_expired"),
        ("refused", "no_card"),
    ]
    assert "essais restants" in recs[0].detail or "essai" in recs[0].detail
    for e in recs:
        assert wrong not in repr(e) and good not in repr(e)
