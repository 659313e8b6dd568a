"""The journal: chaining, durability, filters, clock guard, concurrency, content hygiene."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ps_agent.audit.errors import AuditEventError, AuditIntegrityError, AuditWriteError
from ps_agent.audit.journal import (
    GENESIS_HASH,
    AuditJournal,
    canonical_bytes,
    record_hash,
)
from tests.audit.conftest import FakeClock, make_event

ROOT = Path(__file__).resolve().parents[2]


def test_append_chains_records(journal: AuditJournal, clock: FakeClock) -> None:
    first = journal.append(make_event(1))
    clock.advance(milliseconds=1500)
    second = journal.append(
        make_event(2, action="dmp.deposit", outcome="refused", error_code="XDSRegistryError")
    )
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.timestamp == "2026-11-25T10:00:00.000Z"
    assert second.timestamp == "2026-11-25T10:00:01.500Z"
    expected = hashlib.sha256(canonical_bytes(2, second.timestamp, "", second.event, first.hash)).hexdigest()
    assert second.hash == expected == record_hash(2, second.timestamp, "", second.event, first.hash)
    assert journal.verify().ok


def test_canonical_form_is_stable_json(journal: AuditJournal) -> None:
    rec = journal.append(make_event(1, reason="Patient inconscient, détresse respiratoire"))
    data = json.loads(canonical_bytes(rec.seq, rec.timestamp, rec.clock_note, rec.event, rec.prev_hash))
    assert data["seq"] == 1 and data["v"] == 1
    assert data["event"]["reason"] == "Patient inconscient, détresse respiratoire"
    assert data["event"]["document_ids"] == ["1.2.250.1.999.1.1"]


def test_append_is_committed_before_it_returns(journal: AuditJournal, journal_path: Path) -> None:
    rec = journal.append(make_event(7))
    # A separate connection (another process would see the same) finds the record at once.
    other = sqlite3.connect(journal_path)
    try:
        row = other.execute("SELECT seq, hash FROM audit_records").fetchone()
        assert row == (1, rec.hash)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reopen_continues_the_chain(journal_path: Path, clock: FakeClock) -> None:
    with AuditJournal(journal_path, clock=clock) as j:
        a = j.append(make_event(1))
    clock.advance(seconds=1)
    with AuditJournal(journal_path, clock=clock) as j:
        b = j.append(make_event(2))
        assert b.seq == 2 and b.prev_hash == a.hash
        assert j.verify().ok and j.verify().count == 2


def test_filters(filled: AuditJournal, clock: FakeClock) -> None:
    filled.append(make_event(99, patient_ins="186017512345678^1.2.250.1.213.1.4.10", action="dmp.deposit"))
    assert len(filled.records()) == 11
    assert len(filled.records(patient_ins="186017512345678")) == 1
    assert len(filled.records(patient_ins="186017512345678^1.2.250.1.213.1.4.10")) == 1
    assert len(filled.records(patient_ins="279035121518989")) == 10
    assert [r.seq for r in filled.records(action="dmp.deposit")] == [11]
    assert len(filled.records(action="dmp.")) == 11
    assert [r.seq for r in filled.records(since="2026-11-25T10:00:08.000Z")] == [9, 10, 11]
    assert [r.seq for r in filled.records(until="2026-11-25T10:00:02.000Z")] == [1, 2]
    assert len(filled.records(until="2026-11-25")) == 11  # a bare date includes the whole day
    assert filled.records(since="2026-11-26") == []
    with pytest.raises(AuditEventError, match="Date de filtre invalide"):
        filled.records(since="hier")


def test_clock_set_back_is_followed_and_declared(journal: AuditJournal, clock: FakeClock) -> None:
    journal.append(make_event(1))
    clock.jump(seconds=-90)  # NTP step or a user changing the clock
    rec = journal.append(make_event(2))
    assert rec.timestamp == "2026-11-25T09:58:30.000Z"  # the true (wall) time, not a pinned one
    assert "reculée de 90.000 s" in rec.clock_note and "lue 2026-11-25T09:58:30.000Z" in rec.clock_note
    clock.advance(seconds=1)
    later = journal.append(make_event(3))
    assert later.timestamp == "2026-11-25T09:58:31.000Z" and later.clock_note == ""
    assert journal.verify().ok


def test_clock_jump_forward_does_not_pin_later_timestamps(journal: AuditJournal, clock: FakeClock) -> None:
    """A wall clock set to 2030 then put back: the records after the correction carry the true time
    (on main every later record stayed pinned to 2030)."""
    journal.append(make_event(1))
    clock.advance(seconds=1)
    clock.jump(days=4 * 365)
    wrong = journal.append(make_event(2))
    assert wrong.timestamp.startswith("2030-") and "avancée de" in wrong.clock_note
    clock.advance(seconds=1)
    clock.jump(days=-4 * 365)  # corrected
    back = journal.append(make_event(3))
    clock.advance(seconds=5)
    after = journal.append(make_event(4))
    assert back.timestamp == "2026-11-25T10:00:02.000Z" and "reculée de" in back.clock_note
    assert after.timestamp == "2026-11-25T10:00:07.000Z" and after.clock_note == ""
    assert journal.verify().ok


def test_clock_back_in_a_new_process_is_declared(journal_path: Path, clock: FakeClock) -> None:
    """Without a monotonic reference (another process wrote the last record) a clock earlier than the last
    record is still declared; an undeclared step back is reported as reordering."""
    with AuditJournal(journal_path, clock=clock) as j:
        j.append(make_event(1))
    clock.jump(seconds=-30)
    with AuditJournal(journal_path, clock=clock) as j:
        rec = j.append(make_event(2))
        assert rec.timestamp == "2026-11-25T09:59:30.000Z"
        assert "antérieure de 30000 ms" in rec.clock_note
        assert j.verify().ok


def test_naive_clock_is_taken_as_utc(journal_path: Path) -> None:
    from datetime import datetime

    with AuditJournal(journal_path, clock=lambda: datetime(2026, 1, 2, 3, 4, 5, 678000)) as j:
        assert j.append(make_event()).timestamp == "2026-01-02T03:04:05.678Z"


def test_triggers_refuse_update_and_delete(filled: AuditJournal, journal_path: Path) -> None:
    raw = sqlite3.connect(journal_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE audit_records SET outcome = 'success' WHERE seq = 3")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM audit_records WHERE seq = 3")
    finally:
        raw.close()
    assert filled.verify().ok


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("outcome", "ok", "Résultat d'audit invalide"),
        ("action", "", "Action d'audit invalide"),
        ("action", "DMP Deposit", "Action d'audit invalide"),
        ("access_mode", "urgence", "Mode d'accès invalide"),
        ("document_ids", "1.2.3", "document_ids"),
    ],
)
def test_malformed_events_are_refused(journal: AuditJournal, field: str, value: str, message: str) -> None:
    with pytest.raises(AuditEventError, match=message):
        journal.append(make_event(**{field: value}))
    assert journal.count() == 0


def test_unwritable_location_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(AuditWriteError, match="Impossible d'ouvrir le journal d'audit"):
        AuditJournal(blocker / "audit.sqlite3")


def test_check_raises_on_a_broken_journal(filled: AuditJournal, journal_path: Path) -> None:
    raw = sqlite3.connect(journal_path)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit_records SET actor_name = 'X' WHERE seq = 4")
    raw.commit()
    raw.close()
    with pytest.raises(AuditIntegrityError) as info:
        filled.check()
    assert info.value.first_bad_seq == 4


def test_threads_append_safely(journal: AuditJournal) -> None:
    def work(k: int) -> None:
        for n in range(25):
            journal.append(make_event(k * 100 + n))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = journal.verify()
    assert result.ok, result.message_fr
    assert result.count == 100


def test_two_processes_append_to_one_journal(journal_path: Path) -> None:
    code = (
        "import sys\n"
        "from tests.audit.conftest import make_event\n"
        "from ps_agent.audit.journal import AuditJournal\n"
        "j = AuditJournal(__import__('pathlib').Path(sys.argv[1]))\n"
        "[j.append(make_event(i)) for i in range(40)]\n"
        "j.close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(journal_path)], cwd=ROOT) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    with AuditJournal(journal_path) as j:
        result = j.verify()
        assert result.ok, result.message_fr
        assert result.count == 80


SECRETS = {
    "pin": "code PIN : 482913",
    "pin2": "pin=482913",
    "passphrase": "passphrase: test-passphrase",
    "key": (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
        "-----END PRIVATE KEY-----"
    ),
    "cda": (
        '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Compte rendu confidentiel</title></ClinicalDocument>'
    ),
    "blob": (
        "JVBERi0xLjcKJeLjz9MKMSAwIG9iago8PC9UeXBlL0NhdGFsb2cvUGFnZXMgMiAwIFI+PgplbmRvYmoKMiAwIG9iago8PC9UeXBl"
        "L1BhZ2VzL0tpZHNbMyAwIFJdL0NvdW50IDE+Pg=="
    ),
    "pdf": "%PDF-1.7 contenu du compte rendu",
}
FORBIDDEN_FRAGMENTS = (
    b"482913",
    b"test-passphrase",
    b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
    b"Compte rendu confidentiel",
    b"JVBERi0xLjcKJeLjz9MK",
    b"contenu du compte rendu",
)


def test_secrets_and_contents_never_reach_the_file(journal_path: Path, clock: FakeClock) -> None:
    with AuditJournal(journal_path, clock=clock) as j:
        for name, secret in SECRETS.items():
            rec = j.append(make_event(0, reason=secret, detail=f"erreur {name}: {secret}", error_code=name))
            assert all(frag.decode() not in rec.event.reason for frag in FORBIDDEN_FRAGMENTS)
        assert j.verify().ok
    blob = b"".join(p.read_bytes() for p in journal_path.parent.iterdir() if p.is_file())
    for fragment in FORBIDDEN_FRAGMENTS:
        assert fragment not in blob, fragment


def test_long_fields_are_trimmed_and_plain_text_kept(journal: AuditJournal) -> None:
    reason = "Patient inconscient, détresse respiratoire aiguë, " * 40
    rec = journal.append(make_event(reason=reason, detail="Carte bloquée : PIN bloqué après 3 essais"))
    assert len(rec.event.reason) == 1000 and rec.event.reason.endswith("…")
    assert rec.event.detail == "Carte bloquée : PIN bloqué après 3 essais"  # no digits to hide, kept
    many = tuple(f"1.2.3.{i}" for i in range(600))
    rec = journal.append(make_event(document_ids=many))
    assert len(rec.event.document_ids) == 501 and "100 autres" in rec.event.document_ids[-1]
    assert journal.verify().ok


def test_journal_files_are_owner_only(journal: AuditJournal, journal_path: Path) -> None:
    journal.append(make_event())
    for path in (journal_path, journal_path.with_name(journal_path.name + ".anchor")):
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)


def test_verify_while_another_thread_appends(journal: AuditJournal) -> None:
    """verify reads a snapshot: concurrent appends never make an intact journal look broken."""
    journal.append(make_event(0))
    stop = threading.Event()

    def writer() -> None:
        n = 1
        while not stop.is_set():
            journal.append(make_event(n))
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        results = [journal.verify() for _ in range(15)]
    finally:
        stop.set()
        t.join()
    assert all(r.ok for r in results), [r.message_fr for r in results if not r.ok]
    assert journal.verify().count == journal.count()
