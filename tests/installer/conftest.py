"""Installer-area fixtures: an agent home with a journal and a queue, the INSi sandbox, a free port."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ps_agent.audit.journal import AuditEvent, AuditJournal
from ps_agent.outbox import DepositQueue


def free_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill_journal(path: Path, count: int = 3) -> None:
    journal = AuditJournal(path)
    try:
        for n in range(count):
            journal.append(
                AuditEvent(
                    action="dmp.search",
                    outcome="success",
                    actor_id_nat="899700000013",
                    actor_name="JEAN MEDECIN-GENERALISTE",
                    actor_profession="10",
                    auth_mode="DIRECTE",
                    transaction="TD3.1",
                    document_ids=(f"1.2.250.1.999.1.{n}",),
                )
            )
    finally:
        journal.close()


def tamper_journal(path: Path) -> None:
    """What an attacker with the file would do: drop the append-only trigger and rewrite a record."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("UPDATE audit_records SET outcome = 'refused' WHERE seq = 2")
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def agent_home(tmp_path: Path) -> Path:
    """An agent data folder holding a 3-record journal and an empty deposit queue."""
    home = tmp_path / "agent"
    fill_journal(home / "audit.sqlite3")
    DepositQueue(home / "outbox.sqlite3").close()
    return home


@pytest.fixture
def insi_running(test_pki: Any) -> Iterator[Any]:
    from sandbox.insi.server import start_insi

    with start_insi(test_pki) as running:
        yield running
