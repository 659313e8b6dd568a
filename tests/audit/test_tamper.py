"""Tampering with the SQLite file directly (sqlite3 module, as an attacker would) is caught by
``AuditJournal.verify`` and by ``ps-agent audit verify`` (exit 1, naming the first bad record)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ps_agent.audit.journal import AuditJournal, record_hash
from tests.audit.conftest import FakeClock, make_event

ROOT = Path(__file__).resolve().parents[2]


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return conn


def _restore_triggers(conn: sqlite3.Connection) -> None:
    """A careful attacker puts the triggers back so that only the hashes can tell."""
    conn.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_records "
        "BEGIN SELECT RAISE(ABORT, 'audit journal is append-only'); END"
    )
    conn.execute(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_records "
        "BEGIN SELECT RAISE(ABORT, 'audit journal is append-only'); END"
    )


def edit_field(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_records SET outcome = 'success', error_code = '' WHERE seq = 4")


def edit_reason(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_records SET reason = 'motif réécrit après coup' WHERE seq = 4")


def edit_timestamp(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_records SET timestamp = '2026-11-25T10:00:03.500Z' WHERE seq = 4")


def edit_documents(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_records SET document_ids = '[]' WHERE seq = 4")


def delete_row(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM audit_records WHERE seq = 4")


def delete_two_rows(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM audit_records WHERE seq IN (4, 5)")


def swap_rows(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_records SET seq = -1 WHERE seq = 4")
    conn.execute("UPDATE audit_records SET seq = 4 WHERE seq = 5")
    conn.execute("UPDATE audit_records SET seq = 5 WHERE seq = -1")


def insert_row_in_the_middle(conn: sqlite3.Connection) -> None:
    # Shift 4..10 up by one and slip a forged record in at 4, with a correctly computed hash.
    for seq in range(10, 3, -1):
        conn.execute("UPDATE audit_records SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = conn.execute("SELECT hash FROM audit_records WHERE seq = 3").fetchone()[0]
    ev = make_event(42, action="dmp.consent")
    ts = "2026-11-25T10:00:03.100Z"
    digest = record_hash(4, ts, "", ev, prev)
    conn.execute(
        "INSERT INTO audit_records VALUES (4, ?, '', 'dmp.consent', 'success', ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "'normal', '', '', '', '', '', ?, ?)",
        (
            ts,
            ev.actor_id_nat,
            ev.actor_name,
            ev.actor_profession,
            ev.auth_mode,
            ev.card_serial,
            ev.structure_id,
            ev.patient_ins,
            ev.transaction,
            json.dumps(list(ev.document_ids)),
            prev,
            digest,
        ),
    )


def delete_last_row(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM audit_records WHERE seq = 10")


def drop_triggers_only(conn: sqlite3.Connection) -> None:
    pass  # _raw() dropped them; nothing else changes


CASES: list[tuple[Callable[[sqlite3.Connection], None], bool, int | None, str]] = [
    (edit_field, True, 4, "Enregistrement n° 4 : contenu modifié"),
    (edit_reason, True, 4, "Enregistrement n° 4 : contenu modifié"),
    (edit_timestamp, True, 4, "Enregistrement n° 4 : contenu modifié"),
    (edit_documents, True, 4, "Enregistrement n° 4 : contenu modifié"),
    (delete_row, True, 4, "Enregistrement n° 4 manquant (supprimé)"),
    (delete_two_rows, True, 4, "Enregistrement n° 4 à 5 manquant"),
    (swap_rows, True, 4, "Enregistrement n° 4 : le chaînage est rompu"),
    (insert_row_in_the_middle, True, 5, "Enregistrement n° 5 : le chaînage est rompu"),
    (delete_last_row, True, 10, "Enregistrement n° 10 manquant (supprimé)"),
    (edit_field, False, 4, "Enregistrement n° 4 : contenu modifié"),
    (drop_triggers_only, False, None, "protections du journal"),
]


@pytest.fixture
def ten(journal_path: Path, clock: FakeClock) -> Path:
    with AuditJournal(journal_path, clock=clock) as j:
        for n in range(10):
            outcome = "refused" if n == 3 else "success"
            j.append(
                make_event(n, outcome=outcome, error_code="PAT-01" if n == 3 else "", reason=f"motif {n}")
            )
            clock.advance(seconds=1)
    return journal_path


@pytest.mark.parametrize(
    ("tamper", "restore", "bad_seq", "message"), CASES, ids=lambda c: getattr(c, "__name__", None)
)
def test_tampering_is_caught(
    ten: Path, tamper: Callable[[sqlite3.Connection], None], restore: bool, bad_seq: int | None, message: str
) -> None:
    conn = _raw(ten)
    tamper(conn)
    if restore:
        _restore_triggers(conn)
    conn.commit()
    conn.close()
    with AuditJournal(ten) as j:
        result = j.verify()
    assert not result.ok
    assert result.first_bad_seq == bad_seq
    assert message in result.message_fr, result.message_fr


def test_cli_verify_ok_then_names_the_edited_record(ten: Path) -> None:
    cmd = [sys.executable, "-m", "ps_agent", "audit", "verify", "--journal", str(ten)]
    ok = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "10 enregistrement(s) vérifié(s)" in ok.stdout
    conn = _raw(ten)
    edit_reason(conn)
    _restore_triggers(conn)
    conn.commit()
    conn.close()
    bad = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "Enregistrement n° 4 : contenu modifié" in bad.stderr
    assert "Premier enregistrement en cause : n° 4" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_verify_catches_a_deleted_row(ten: Path) -> None:
    conn = _raw(ten)
    delete_row(conn)
    conn.commit()
    conn.close()
    from ps_agent.cli import main

    assert main(["audit", "verify", "--journal", str(ten)]) == 1


def test_rolled_back_copy_of_the_journal_is_caught(ten: Path, clock: FakeClock, tmp_path: Path) -> None:
    copy = tmp_path / "old.sqlite3"
    shutil.copy(ten, copy)  # after 10 records (WAL checkpointed at close)
    with AuditJournal(ten, clock=clock) as j:
        j.append(make_event(11))
        j.append(make_event(12))
    for suffix in ("-wal", "-shm"):
        Path(str(ten) + suffix).unlink(missing_ok=True)
    shutil.copy(copy, ten)  # the attacker restores the old file to hide records 11 and 12
    with AuditJournal(ten) as j:
        result = j.verify()
    assert not result.ok and result.first_bad_seq == 11
    assert "l'ancre du journal indique 12" in result.message_fr


def test_edited_anchor_is_caught(ten: Path) -> None:
    anchor = ten.with_name(ten.name + ".anchor")
    data = json.loads(anchor.read_text())
    data["hash"] = "f" * 64
    anchor.write_text(json.dumps(data))
    with AuditJournal(ten) as j:
        result = j.verify()
    assert not result.ok and result.first_bad_seq == 10
    assert "ne correspond pas à l'ancre" in result.message_fr


def test_missing_anchor_is_reported(ten: Path) -> None:
    ten.with_name(ten.name + ".anchor").unlink()
    with AuditJournal(ten) as j:
        result = j.verify()
    assert not result.ok and "ancre du journal" in result.message_fr


def test_anchor_one_behind_after_a_crash_is_accepted(ten: Path) -> None:
    """A crash between the commit and the anchor write leaves the anchor one record behind."""
    anchor = ten.with_name(ten.name + ".anchor")
    conn = sqlite3.connect(ten)
    h9 = conn.execute("SELECT hash FROM audit_records WHERE seq = 9").fetchone()[0]
    conn.close()
    anchor.write_text(json.dumps({"seq": 9, "hash": h9}))
    with AuditJournal(ten) as j:
        assert j.verify().ok


def test_garbage_in_a_row_is_reported_not_raised(ten: Path) -> None:
    conn = _raw(ten)
    conn.execute("UPDATE audit_records SET document_ids = '{not json' WHERE seq = 2")
    conn.commit()
    conn.close()
    with AuditJournal(ten) as j:
        result = j.verify()
    assert not result.ok and result.first_bad_seq == 2 and "illisible" in result.message_fr


def test_cli_verify_reports_dropped_triggers(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _raw(ten).close()  # drops both triggers, changes nothing else
    from ps_agent.cli import main

    assert main(["audit", "verify", "--journal", str(ten)]) == 1
    err = capsys.readouterr().err
    assert "audit_no_update, audit_no_delete" in err and "modifié en dehors de l'agent" in err
    # Opening the journal again does not silently put them back.
    with AuditJournal(ten) as j:
        assert not j.verify().ok


def test_anchor_is_overwritten_in_place_and_follows_each_append(tmp_path: Path) -> None:
    """The anchor is one fixed-size record rewritten in place (no rename per append); an anchor left
    longer by an older writer is cut to size; a truncated tail is still caught afterwards."""
    path = tmp_path / "audit.sqlite3"
    anchor = path.with_name(path.name + ".anchor")
    with AuditJournal(path) as j:
        j.append(make_event(1))
        inode = anchor.stat().st_ino
        anchor.write_text(json.dumps({"seq": 1, "hash": j.records()[0].hash}) + " " * 500)
        last = j.append(make_event(2))
        assert anchor.stat().st_ino == inode
        assert anchor.stat().st_size == 256
        assert json.loads(anchor.read_text()) == {"seq": 2, "hash": last.hash, "journal": j.journal_id}
        assert j.verify().ok
    conn = _raw(path)
    conn.execute("DELETE FROM audit_records WHERE seq = 2")
    _restore_triggers(conn)
    conn.commit()
    conn.close()
    with AuditJournal(path) as j:
        result = j.verify()
    assert not result.ok and result.first_bad_seq == 2 and "l'ancre du journal indique 2" in result.message_fr


def test_replaced_journal_is_caught_by_the_anchor_left_behind(ten: Path, clock: FakeClock) -> None:
    """Without any checkpoint: the database deleted and recreated; the old anchor is kept as evidence
    (on main, the new journal's appends simply overwrote it)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(ten) + suffix).unlink(missing_ok=True)
    with AuditJournal(ten, clock=clock) as j:
        for n in range(12):
            j.append(make_event(n))
        result = j.verify()
    assert not result.ok and "appartient à un autre journal" in result.message_fr


def test_journal_of_the_previous_format_is_upgraded_and_verifies(ten: Path, clock: FakeClock) -> None:
    """A journal written before checkpoints and journal ids (no table, no id, 128-byte anchor)."""
    conn = sqlite3.connect(ten)
    conn.execute("DROP TABLE audit_checkpoints")
    conn.execute("DELETE FROM audit_meta WHERE key = 'journal_id'")
    h10 = conn.execute("SELECT hash FROM audit_records WHERE seq = 10").fetchone()[0]
    conn.commit()
    conn.close()
    ten.with_name(ten.name + ".anchor").write_text(json.dumps({"seq": 10, "hash": h10}).ljust(128))
    with AuditJournal(ten, clock=clock) as j:
        assert j.journal_id and j.checkpoints() == []
        assert j.verify().ok
        j.append(make_event(11))
        result = j.verify()
    assert result.ok and result.count == 11, result.message_fr
