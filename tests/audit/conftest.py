"""Fixtures of the audit tests: a journal in a temporary folder, a controllable clock, sample events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ps_agent.audit.journal import AuditEvent, AuditJournal


class FakeClock:
    """A wall clock and a monotonic clock the test moves by hand.

    ``advance`` is time passing (both move); ``jump`` is the wall clock being set (only it moves)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, **kwargs: float) -> None:
        step = timedelta(**kwargs)
        self.now += step
        self.mono += step.total_seconds()

    def jump(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def make_event(n: int = 0, **overrides: object) -> AuditEvent:
    base: dict[str, object] = {
        "action": "dmp.retrieve",
        "outcome": "success",
        "actor_id_nat": "899700000013",
        "actor_name": "JEAN MEDECIN-GENERALISTE",
        "actor_profession": "10",
        "auth_mode": "DIRECTE",
        "card_serial": "0000000101",
        "structure_id": "380000000100017",
        "patient_ins": "279035121518989^1.2.250.1.213.1.4.10",
        "transaction": "TD3.2",
        "document_ids": (f"1.2.250.1.999.1.{n}",),
    }
    base.update(overrides)
    return AuditEvent(**base)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.sqlite3"


@pytest.fixture
def journal(journal_path: Path, clock: FakeClock) -> Iterator[AuditJournal]:
    j = AuditJournal(journal_path, clock=clock, monotonic=clock.monotonic)
    yield j
    j.close()


@pytest.fixture
def filled(journal: AuditJournal, clock: FakeClock) -> AuditJournal:
    """A journal with 10 records, one second apart."""
    for n in range(10):
        journal.append(make_event(n))
        clock.advance(seconds=1)
    return journal
