"""What the cheaper append (issue 9 item 7) must not change: the canonical bytes of a record (pinned hashes
computed by the previous version, and ``json.dumps`` as the outside reference), ``sanitize_event``'s
output, and the anchor advanced per group on the file its path names, under a lock on the lock file its
path names, though both descriptors now stay open between groups."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from ps_agent.audit.errors import AuditWriteError
from ps_agent.audit.journal import (
    AuditEvent,
    AuditJournal,
    canonical_bytes,
    read_anchor,
    record_hash,
    sanitize_event,
)
from tests.audit.conftest import FakeClock, append_events, make_event

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX modes and flock")

ODD = AuditEvent(
    action="dmp.deposit",
    outcome="refused",
    actor_id_nat="899700000013",
    actor_name='Éloïse "Dr" O\'Brien\\Ç',
    actor_profession="10",
    auth_mode="DIRECTE",
    patient_ins="279035121518989^1.2.250.1.213.1.4.10",
    transaction="TD2.1",
    document_ids=("1.2.250.1.999.1.7", "ü\u2028\t/</x>", "😷"),
    access_mode="bris_de_glace",
    reason="détresse\nrespiratoire\x01 \x7f",
    error_code="XDSRegistryError",
    rule_id="URG-01",
)
PLAIN = AuditEvent(
    action="auth.login", outcome="success", actor_id_nat="", actor_name="", actor_profession="", auth_mode=""
)


def _reference(seq: int, timestamp: str, clock_note: str, event: AuditEvent, prev_hash: str) -> bytes:
    """The canonical form as documented, written with json.dumps (what the previous version did)."""
    payload = {
        "v": 1,
        "seq": seq,
        "timestamp": timestamp,
        "clock_note": clock_note,
        "prev_hash": prev_hash,
        "event": {k: list(v) if isinstance(v, tuple) else v for k, v in event.__dict__.items()},
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_record_hashes_are_those_of_the_previous_version() -> None:
    """Hashes computed by the previous version's code (json.dumps): journals written by it verify."""
    note = "saut d'horloge : « reculée » de 2,5 s"
    assert (
        record_hash(42, "2026-12-03T14:00:00.123Z", note, ODD, "ab" * 32)
        == "20bd11e68a87b46393a0843717a243ee20f8190cf3290f383fbb587ba2d15891"
    )
    assert (
        record_hash(1, "2026-12-03T14:00:00.000Z", "", PLAIN, "0" * 64)
        == "cdd058d713adb427ce2de8b86596610bea6b31fcf26d0318d994f83cd4c283bb"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        '"',
        "\\",
        "\x00\x1f\x7f",
        "\u2028\u2029",
        "é€😷",
        "</script>",
        "\ud7ff\ue000\uffff",
        "x" * 3000,
    ],
)
def test_canonical_bytes_equal_json_dumps(text: str) -> None:
    for event in (
        replace(ODD, detail=text),
        replace(PLAIN, reason=text, document_ids=(text, text)),
        replace(PLAIN, document_ids=[text]),  # type: ignore[arg-type]  # a list from a caller
    ):
        for seq in (1, 2**40):
            got = canonical_bytes(seq, "2026-12-03T14:00:00.123Z", text, event, "f" * 64)
            assert got == _reference(seq, "2026-12-03T14:00:00.123Z", text, event, "f" * 64)


def test_canonical_bytes_of_unusual_values_still_follow_json_dumps() -> None:
    """Values no sanitised event holds (an int, None, a str subclass) take json.dumps itself."""

    class Name(str):
        pass

    odd_values: list[dict[str, object]] = [
        {"detail": None},
        {"actor_name": Name("X")},
        {"document_ids": (1, "a")},
        {"rule_id": 3},
    ]
    for changes in odd_values:
        event = replace(PLAIN, **changes)  # type: ignore[arg-type]
        assert canonical_bytes(7, "t", "", event, "p") == _reference(7, "t", "", event, "p")
    assert canonical_bytes(True, "t", "", PLAIN, "p") == _reference(True, "t", "", PLAIN, "p")
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate cannot be hashed, as before
        canonical_bytes(1, "t", "", replace(PLAIN, detail="\ud800"), "p")


def test_sanitize_returns_the_event_itself_when_nothing_needs_cleaning() -> None:
    event = make_event(3, detail="rubrique : comptes rendus")
    assert sanitize_event(event) is event
    dirty = make_event(3, detail="code PIN : 482913", reason=None, card_serial=12)  # type: ignore[arg-type]
    clean = sanitize_event(dirty)
    assert clean.detail == "code PIN=[secret masqué]"
    assert clean.reason == "" and clean.card_serial == "12"
    listed = sanitize_event(make_event(3, document_ids=["a", "", "b"]))
    assert listed.document_ids == ("a", "b")  # a list becomes a tuple, empty ids dropped


@posix_only  # Windows: a file open in another handle cannot be replaced (the anchor stays put)
def test_anchor_replaced_while_the_journal_is_open_is_written_through_its_path(
    journal: AuditJournal,
) -> None:
    """The anchor's descriptor stays open between groups: a file put in its place (here an older copy,
    a rollback) must be the one the next group advances, not the inode the descriptor still names."""
    append_events(journal, 2)
    older = journal.anchor_path.with_name("older.anchor")
    shutil.copyfile(journal.anchor_path, older)
    append_events(journal, 1)
    os.replace(older, journal.anchor_path)
    assert read_anchor(journal.anchor_path)[:1] == (2,)  # type: ignore[index]
    last = journal.append(make_event(9))
    assert read_anchor(journal.anchor_path) == (4, last.hash, journal.journal_id)
    assert journal.verify().ok


@posix_only
def test_anchor_deleted_while_the_journal_is_open_is_created_again_owner_only(
    journal: AuditJournal,
) -> None:
    append_events(journal, 2)
    journal.anchor_path.unlink()
    old = os.umask(0)
    try:
        last = journal.append(make_event(9))
    finally:
        os.umask(old)
    assert read_anchor(journal.anchor_path) == (3, last.hash, journal.journal_id)
    assert stat.S_IMODE(journal.anchor_path.stat().st_mode) == 0o600
    assert journal.verify().ok


@posix_only
def test_lock_file_replaced_while_open_is_locked_again_by_its_path(journal: AuditJournal) -> None:
    """Another process opening the lock file anew must be excluded while this journal holds the lock,
    even after the lock file was deleted and recreated (the kept descriptor would lock a file no one
    else sees)."""
    try:
        import fcntl
    except ImportError:  # blocked by tests/test_portability.py's child run (as on Windows)
        pytest.skip("fcntl absent")
    append_events(journal, 1)
    lock_path = journal.anchor_path.with_name(journal.anchor_path.name + ".lock")
    lock_path.unlink()
    lock_path.touch()  # recreated by another process meanwhile
    with journal._anchor.locked():
        fd = os.open(lock_path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    append_events(journal, 1)
    assert read_anchor(journal.anchor_path)[0] == 2  # type: ignore[index]


def test_anchor_moves_forward_only_with_two_journals_on_one_file(
    journal_path: Path, clock: FakeClock
) -> None:
    """Two handles (as two processes) keep their own descriptors: each group reads the anchor again
    under the lock, so neither writes it back over the other's newer value."""
    with AuditJournal(journal_path, clock=clock) as a, AuditJournal(journal_path, clock=clock) as b:
        a.append(make_event(1))
        b.append(make_event(2))
        b.append(make_event(3))
        assert read_anchor(journal_path.with_name(journal_path.name + ".anchor"))[0] == 3  # type: ignore[index]
        a._advance_anchor(1, a.records()[0].hash)  # a late writer with an older head
        assert read_anchor(a.anchor_path)[0] == 3  # type: ignore[index]
        last = a.append(make_event(4))
        assert read_anchor(a.anchor_path) == (4, last.hash, a.journal_id)
        assert b.verify().ok


def test_close_releases_the_anchor_descriptors(journal_path: Path, clock: FakeClock) -> None:
    j = AuditJournal(journal_path, clock=clock)
    j.append(make_event(1))
    assert j._anchor._fd is not None
    # no lock descriptor where neither fcntl nor msvcrt exists (a process-local lock then)
    fds = [fd for fd in (j._anchor._fd, j._anchor._lock_fd) if fd is not None]
    j.close()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert j.verify().ok  # verify after close opens what it needs for its own duration
    assert j._anchor._fd is None and j._anchor._lock_fd is None


def test_a_failed_anchor_sync_fails_the_append_and_the_next_append_recovers(
    journal: AuditJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    append_events(journal, 1)
    name = "fdatasync" if hasattr(os, "fdatasync") else "fsync"
    real = getattr(os, name)
    calls = {"n": 0}

    def failing(fd: int) -> None:  # only the anchor's syncs come through os (SQLite syncs in C)
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, name, failing)
    journal.append(make_event(2))
    with pytest.raises(AuditWriteError) as info:
        journal.append(make_event(3))
    assert info.value.code == "AUDIT_ANCHOR"
    last = journal.append(make_event(4))
    assert read_anchor(journal.anchor_path) == (4, last.hash, journal.journal_id)
    assert journal.verify().ok
