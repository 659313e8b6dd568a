"""The journal's group commit: appenders from several threads share one transaction and one anchor fsync,
yet each returns only once its own record is durable, the chain stays in commit order, and a failure of
the group's transaction or anchor reaches every caller of that group."""

from __future__ import annotations

import errno
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ps_agent.audit.errors import AuditWriteError
from ps_agent.audit.journal import AuditJournal, AuditRecord, read_anchor
from tests.audit.conftest import make_event

DEADLINE_S = 20.0


def _poll(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def _read_back(path: Path, seq: int) -> str | None:
    """The record's hash as a second connection (another reader of the file) sees it."""
    con = sqlite3.connect(path)
    try:
        row = con.execute("SELECT hash FROM audit_records WHERE seq = ?", (seq,)).fetchone()
    finally:
        con.close()
    return None if row is None else str(row[0])


class _HeldAnchor:
    """Wraps the anchor's write: the first write waits until the test releases it (the leader of the first
    group is held after its commit, so the other appenders queue up behind it); counts the writes; can make
    the writes after the first fail like a full disk."""

    def __init__(self, real: Callable[[bytes], None]) -> None:
        self.real = real
        self.release = threading.Event()
        self.entered = threading.Event()
        self.writes = 0
        self.fail_after_first = False
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self._lock:
            self.writes += 1
            n = self.writes
        if n == 1:
            self.entered.set()
            assert self.release.wait(DEADLINE_S)
        elif self.fail_after_first:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(data)


@pytest.fixture
def held(journal: AuditJournal, monkeypatch: pytest.MonkeyPatch) -> Iterator[_HeldAnchor]:
    assert journal.append(make_event(0)).seq == 1  # anchor file exists, same size from now on
    wrapper = _HeldAnchor(journal._anchor.write)
    monkeypatch.setattr(journal._anchor, "write", wrapper)
    yield wrapper
    wrapper.release.set()


def _start_appenders(
    journal: AuditJournal,
    count: int,
    results: dict[int, AuditRecord | BaseException],
    seen: dict[int, str],
    *,
    big: bool = False,
) -> list[threading.Thread]:
    words = " ".join(f"mot{i}" for i in range(400))  # varied text (a repeated one is shortened)
    extra = {"detail": words, "reason": words} if big else {}

    def work(k: int) -> None:
        try:
            record = journal.append(make_event(100 + k, **extra))
        except BaseException as exc:  # recorded for the assertions
            results[k] = exc
            return
        results[k] = record
        seen[k] = _read_back(journal.path, record.seq) or ""  # durable and visible when append returns

    threads = [threading.Thread(target=work, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    return threads


def test_concurrent_appenders_form_one_group_and_each_record_is_durable_on_return(
    journal: AuditJournal, held: _HeldAnchor
) -> None:
    results: dict[int, AuditRecord | BaseException] = {}
    seen: dict[int, str] = {}
    first = _start_appenders(journal, 1, results, seen)
    assert held.entered.wait(DEADLINE_S)  # the first group's leader is inside its anchor write
    group_results: dict[int, AuditRecord | BaseException] = {}
    group_seen: dict[int, str] = {}
    others = _start_appenders(journal, 5, group_results, group_seen)
    _poll(lambda: len(journal._waiting) == 5, "the five appenders to queue up")
    assert group_results == {}  # queued behind the held leader: none has returned
    held.release.set()
    for t in first + others:
        t.join(DEADLINE_S)
        assert not t.is_alive()
    # two groups after the fixture's record: the first appender alone, then the five together
    assert held.writes == 2
    result = journal.verify()
    assert result.ok, result.message_fr
    assert result.count == 7
    anchor = read_anchor(journal.anchor_path)
    assert anchor is not None and anchor[0] == 7
    # the five share one transaction: consecutive seqs, chained in commit order
    records = list(journal.iter_records())
    assert [r.seq for r in records] == list(range(1, 8))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert sorted(r.seq for r in group_results.values() if isinstance(r, AuditRecord)) == [3, 4, 5, 6, 7]
    for k, record in group_results.items():
        assert isinstance(record, AuditRecord)
        assert group_seen[k] == record.hash


def test_every_caller_sees_its_own_record_committed_when_append_returns(journal: AuditJournal) -> None:
    results: dict[int, AuditRecord | BaseException] = {}
    seen: dict[int, str] = {}
    threads = _start_appenders(journal, 8, results, seen)
    for t in threads:
        t.join(DEADLINE_S)
        assert not t.is_alive()
    records = [r for r in results.values() if isinstance(r, AuditRecord)]
    assert len(records) == 8, [r for r in results.values() if not isinstance(r, AuditRecord)]
    for k, record in results.items():
        assert isinstance(record, AuditRecord)
        assert seen[k] == record.hash  # read back from another connection right after its return
        assert record.event.document_ids == (f"1.2.250.1.999.1.{100 + k}",)  # its own event, not another's
    assert sorted(r.seq for r in records) == list(range(1, 9))
    assert journal.verify().ok


def test_many_threads_many_appends_chain_verifies(journal: AuditJournal) -> None:
    returned: list[AuditRecord] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for n in range(30):
            record = journal.append(make_event(k * 1000 + n))
            with lock:
                returned.append(record)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S * 3)
        assert not t.is_alive()
    result = journal.verify()
    assert result.ok, result.message_fr
    assert result.count == 180
    stored = {r.seq: r.hash for r in journal.iter_records()}
    assert {r.seq: r.hash for r in returned} == stored


def test_an_anchor_failure_reaches_every_caller_of_the_group(
    journal: AuditJournal, held: _HeldAnchor
) -> None:
    leader_results: dict[int, AuditRecord | BaseException] = {}
    first = _start_appenders(journal, 1, leader_results, {})
    assert held.entered.wait(DEADLINE_S)
    results: dict[int, AuditRecord | BaseException] = {}
    group = _start_appenders(journal, 4, results, {})
    _poll(lambda: len(journal._waiting) == 4, "the four appenders to queue up")
    held.fail_after_first = True  # the second group's anchor fsync fails (disk full)
    held.release.set()
    for t in first + group:
        t.join(DEADLINE_S)
        assert not t.is_alive()
    assert isinstance(leader_results[0], AuditRecord)  # the first group was not affected
    assert len(results) == 4
    for error in results.values():
        assert isinstance(error, AuditWriteError)
        assert error.code == "AUDIT_ANCHOR"
    # records committed, anchor lagging: verify accepts a lagging anchor, never a leading one
    assert journal.verify().ok


def test_a_full_database_fails_the_whole_group_and_writes_nothing(
    journal: AuditJournal, held: _HeldAnchor
) -> None:
    leader_results: dict[int, AuditRecord | BaseException] = {}
    first = _start_appenders(journal, 1, leader_results, {})
    assert held.entered.wait(DEADLINE_S)
    results: dict[int, AuditRecord | BaseException] = {}
    group = _start_appenders(journal, 4, results, {}, big=True)  # ≈ 12 KB: new pages are needed
    _poll(lambda: len(journal._waiting) == 4, "the four appenders to queue up")
    # SQLite's own "database or disk is full" for the next transaction (the file may not grow)
    with journal._lock:
        pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
        journal._conn.execute(f"PRAGMA max_page_count = {pages}")
    held.release.set()
    for t in first + group:
        t.join(DEADLINE_S)
        assert not t.is_alive()
    assert isinstance(leader_results[0], AuditRecord)
    assert len(results) == 4
    for error in results.values():
        assert isinstance(error, AuditWriteError)
        assert error.code == "AUDIT_WRITE"
        assert "full" in str(error.__cause__)
    assert (
        journal.verify().count == 2
    )  # the fixture's record and the first group's: nothing of the failed one
    with journal._lock:
        journal._conn.execute("PRAGMA max_page_count = 1073741823")
    assert journal.append(make_event(7)).seq == 3  # space back: the chain goes on
    assert journal.verify().ok


def test_a_closed_journal_refuses_queued_appenders(journal: AuditJournal, held: _HeldAnchor) -> None:
    leader_results: dict[int, AuditRecord | BaseException] = {}
    first = _start_appenders(journal, 1, leader_results, {})
    assert held.entered.wait(DEADLINE_S)
    results: dict[int, AuditRecord | BaseException] = {}
    group = _start_appenders(journal, 3, results, {})
    _poll(lambda: len(journal._waiting) == 3, "the three appenders to queue up")
    closer = threading.Thread(target=journal.close)
    closer.start()
    held.release.set()
    for t in [*first, *group, closer]:
        t.join(DEADLINE_S)
        assert not t.is_alive()
    assert isinstance(leader_results[0], AuditRecord)
    for outcome in results.values():  # either written before the close or refused with the typed error
        assert isinstance(outcome, AuditRecord) or (
            isinstance(outcome, AuditWriteError) and outcome.code == "AUDIT_CLOSED"
        )
