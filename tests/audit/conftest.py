"""Fixtures of the audit tests: a journal in a temporary folder, a controllable clock, sample events."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ps_agent.audit.journal import _COLUMNS, TRIGGERS, AuditEvent, AuditJournal, _row_to_record, record_hash


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


def append_events(journal: AuditJournal, n: int) -> None:
    """``n`` events (``make_event(0)`` … ``make_event(n - 1)``) appended one by one."""
    for i in range(n):
        journal.append(make_event(i))


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


# ----------------------------------------------------------------------- what a tamperer does with sqlite3


def raw_connection(path: Path) -> sqlite3.Connection:
    """The journal opened as an attacker would, append-only triggers dropped."""
    conn = sqlite3.connect(path)
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return conn


def finish(conn: sqlite3.Connection) -> None:
    """A careful attacker puts the original triggers back, so that only the hashes can tell."""
    for sql in TRIGGERS.values():
        conn.execute(sql)
    conn.commit()
    conn.close()


def rechain(conn: sqlite3.Connection, from_seq: int) -> str:
    """Recompute prev_hash/hash from ``from_seq`` to the end (the triggers must be dropped); the new head."""
    row = conn.execute("SELECT hash FROM audit_records WHERE seq = ?", (from_seq - 1,)).fetchone()
    prev = row[0] if row else "0" * 64
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM audit_records WHERE seq >= ? ORDER BY seq",  # noqa: S608
        (from_seq,),
    ).fetchall()
    for raw in rows:
        rec = _row_to_record(raw)
        digest = record_hash(rec.seq, rec.timestamp, rec.clock_note, rec.event, prev)
        conn.execute(
            "UPDATE audit_records SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, rec.seq)
        )
        prev = digest
    return prev


def write_anchor(journal_path: Path, seq: int, digest: str) -> None:
    journal_path.with_name(journal_path.name + ".anchor").write_text(json.dumps({"seq": seq, "hash": digest}))


def do_nothing_triggers(conn: sqlite3.Connection) -> None:
    """Same names, no protection."""
    for name, sql in TRIGGERS.items():
        conn.execute(f"DROP TRIGGER {name}")
        table = sql.split(" ON ")[1].split()[0]
        event = "UPDATE" if "UPDATE" in name.upper() else "DELETE"
        conn.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} BEGIN SELECT 1; END")
