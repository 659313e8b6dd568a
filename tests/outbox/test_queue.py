"""The deposit queue on a real SQLite file: transitions in place, exclusive claims across instances,
leases that expire (injected clock), hand-back only after the documents are durable elsewhere, the
former outbox migrated, private files, bounded backoff with jitter."""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from ps_agent.outbox import (
    BACKOFF_CAP_S,
    DepositQueue,
    EntryBusy,
    EntryState,
    OutboxError,
    backoff_delay,
)
from ps_agent.services import write_documents


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def add(q: DepositQueue, entry_id: str = "2.25.1", *, claim: bool = False) -> None:
    q.add(entry_id, ("279037505612309", "1.2.250.1.213.1.4.10", "QUAL"), ("2.25.9",), (b"<cda/>",),
          (False, False, False), ("",), titles=("Lettre",), actor_id_nat="810001", claim=claim)  # fmt: skip


def test_states_change_in_place_and_registered_purges_the_bytes(tmp_path: Path) -> None:
    q = DepositQueue(tmp_path / "q.sqlite3")
    add(q)
    [e] = q.pending()
    assert e.state is EntryState.PENDING and e.documents == (b"<cda/>",) and e.attempts == 0
    e = q.claim(e.id)
    assert e is not None and e.state is EntryState.SENDING and e.attempts == 1
    e = q.mark_waiting(e.id, "Le DMP est injoignable.", "TRANSPORT", 5.0)
    assert e.state is EntryState.WAITING and e.reason_fr == "Le DMP est injoignable." and e.documents
    assert "prochain essai" in e.summary_fr
    e = q.claim(e.id)
    assert e is not None and e.attempts == 2
    e = q.mark_registered(e.id)
    assert e.state is EntryState.REGISTERED and e.documents == ()
    assert q.pending() == [] and q.claim(e.id) is None  # a settled entry is never sent again
    assert [x.state for x in q.entries()] == [EntryState.REGISTERED]


def test_only_one_of_several_instances_claims_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    add(DepositQueue(path))
    queues = [DepositQueue(path) for _ in range(6)]
    wins: list[str] = []
    start = threading.Barrier(len(queues))

    def grab(q: DepositQueue) -> None:
        start.wait()
        if q.claim("2.25.1") is not None:
            wins.append(q.owner)

    threads = [threading.Thread(target=grab, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1


def test_a_dead_owners_claim_expires(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "q.sqlite3"
    crashed = DepositQueue(path, clock=clock, lease_s=60)
    add(crashed, claim=True)  # claimed, then the process "dies"
    other = DepositQueue(path, clock=clock, lease_s=60)
    assert other.claim("2.25.1") is None and other.due() == []
    clock.now += 61
    assert [e.id for e in other.due()] == ["2.25.1"]
    claimed = other.claim("2.25.1")
    assert claimed is not None and claimed.owner == other.owner
    assert crashed.claim_again("2.25.1") is None  # the old owner lost it


def test_waiting_entries_are_due_at_their_time(tmp_path: Path) -> None:
    clock = Clock()
    q = DepositQueue(tmp_path / "q.sqlite3", clock=clock)
    add(q)
    q.claim("2.25.1")
    q.mark_waiting("2.25.1", "Réessai", "TRANSPORT", clock.now + 30)
    assert q.due() == []
    clock.now += 30
    assert [e.id for e in q.due()] == ["2.25.1"]


def test_hand_back_removes_nothing_before_the_documents_are_durable(tmp_path: Path) -> None:
    q = DepositQueue(tmp_path / "q.sqlite3")
    add(q)

    def broken(entry: object) -> None:
        raise OSError("disque plein")

    with pytest.raises(OSError):
        q.hand_back("2.25.1", broken)
    [e] = q.pending()
    assert e.state is EntryState.PENDING and e.documents == (b"<cda/>",) and e.attempts == 0
    out = tmp_path / "rendus"
    written: list[Path] = []
    done = q.hand_back("2.25.1", lambda entry: written.extend(write_documents(entry, out)))
    assert done.state is EntryState.HANDED_BACK and done.documents == ()
    assert written == [out / "2.25.9.xml"] and written[0].read_bytes() == b"<cda/>"
    assert (written[0].stat().st_mode & 0o777) == 0o600 and (out.stat().st_mode & 0o777) == 0o700
    with pytest.raises(OutboxError):
        q.hand_back("2.25.1", lambda entry: None)  # already settled


def test_an_entry_being_sent_cannot_be_handed_back(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    sender = DepositQueue(path)
    add(sender, claim=True)
    with pytest.raises(EntryBusy):
        DepositQueue(path).hand_back("2.25.1", lambda entry: None)


def test_former_outbox_entries_become_pending(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(
        """CREATE TABLE pending (submission_set_uid TEXT PRIMARY KEY, patient_ins TEXT NOT NULL,
        patient_oid TEXT NOT NULL, ins_status TEXT NOT NULL, document_uids TEXT NOT NULL,
        visibility TEXT NOT NULL, replaces TEXT NOT NULL, created TEXT NOT NULL, attempts INTEGER NOT NULL);
        CREATE TABLE pending_document (submission_set_uid TEXT NOT NULL, position INTEGER NOT NULL,
        content BLOB NOT NULL, PRIMARY KEY (submission_set_uid, position));
        INSERT INTO pending VALUES ('2.25.7', '279037505612309', '1.2.250.1.213.1.4.10', 'QUAL',
          '["2.25.8"]', '[false, false, false]', '[""]', '2026-11-01T10:00:00+00:00', 1);
        INSERT INTO pending_document VALUES ('2.25.7', 0, X'3C6364612F3E');"""
    )
    con.commit()
    con.close()
    [e] = DepositQueue(path).pending()
    assert (e.id, e.state, e.document_uids, e.documents) == (
        "2.25.7",
        EntryState.PENDING,
        ("2.25.8",),
        (b"<cda/>",),
    )


@pytest.mark.skipif(os.name != "posix", reason="POSIX mode bits")
def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        q = DepositQueue(tmp_path / "home" / "q.sqlite3")
        add(q)
    finally:
        os.umask(old)
    assert ((tmp_path / "home").stat().st_mode & 0o777) == 0o700
    assert q.documents_dir.parent == tmp_path / "home" and len(list(q.documents_dir.iterdir())) == 1
    for p in (tmp_path / "home").rglob("*"):
        assert (p.stat().st_mode & 0o777) == (0o700 if p.is_dir() else 0o600), p


def test_backoff_is_bounded_exponential_with_jitter() -> None:
    assert backoff_delay(1, lambda: 0.0) == 1.0 and backoff_delay(1, lambda: 1.0) == 2.0
    assert backoff_delay(3, lambda: 1.0) == 8.0
    assert backoff_delay(50, lambda: 1.0) == BACKOFF_CAP_S
    assert backoff_delay(50, lambda: 0.0) == BACKOFF_CAP_S / 2


CLAIMER = """
import sys
from pathlib import Path
from ps_agent.outbox import DepositQueue
q = DepositQueue(Path(sys.argv[1]))
sys.stdin.readline()  # start together
won = [e.id for e in q.pending() if q.claim(e.id) is not None]
print(",".join(won), flush=True)
sys.stdin.readline()  # stay alive (a live owner) until both have claimed: a dead owner's claim is taken over
"""


def test_two_processes_never_claim_the_same_entry(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    ids = [f"2.25.{n}" for n in range(1, 41)]
    for i in ids:
        add(q, i)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        assert p.stdout is not None
        outs.append(p.stdout.readline().strip())
    for p in procs:
        p.communicate("end\n", timeout=60)
    won = [set(filter(None, o.split(","))) for o in outs]
    assert not (won[0] & won[1])
    assert won[0] | won[1] == set(ids)


DEAD_CLAIMER = """
import sys
from pathlib import Path
from ps_agent.outbox import DepositQueue
q = DepositQueue(Path(sys.argv[1]), lease_s=3600)
assert q.claim("2.25.1") is not None
print(q.owner, flush=True)
"""


def test_a_claim_whose_owner_process_ended_is_taken_over_at_once(tmp_path: Path) -> None:
    """A process that claimed then died (as after ``kill -9``): its hour-long lease is not waited for."""
    import subprocess
    import sys

    from ps_agent.outbox.owner import new_owner_id, owner_dead

    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path, lease_s=3600)
    add(q)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", DEAD_CLAIMER, str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    dead_owner = done.stdout.strip()
    entry = q.get("2.25.1")
    assert entry is not None and entry.state is EntryState.SENDING and entry.owner == dead_owner
    assert owner_dead(dead_owner) and not owner_dead(new_owner_id()) and not owner_dead(q.owner)
    assert [e.id for e in q.due()] == ["2.25.1"]
    claimed = q.claim("2.25.1")
    assert claimed is not None and claimed.owner == q.owner
    # a live owner (another instance in a live process) keeps its claim until its lease expires
    other = DepositQueue(path, lease_s=3600)
    assert other.claim("2.25.1") is None and other.due() == []


def test_owner_ids_of_other_hosts_or_former_formats_are_never_judged_dead() -> None:
    from ps_agent.outbox.owner import owner_dead

    assert not owner_dead("elsewhere.example:1:123:abcdef")
    assert not owner_dead("12345-abcdef")  # former "pid-token" ids: only the lease tells
    assert not owner_dead("")


def _fail_writes(monkeypatch: pytest.MonkeyPatch, q: DepositQueue) -> list[bool]:
    """Make the queue file refuse writes as a full disk does (SQLITE_FULL) until the flag is cleared."""
    full = [True]
    real = DepositQueue._write

    def write(
        con: sqlite3.Connection, entry_id: str, sets: dict[str, object], purge: bool
    ) -> tuple[str, ...]:
        if full[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return real(con, entry_id, sets, purge)

    monkeypatch.setattr(DepositQueue, "_write", staticmethod(write))
    return full


def test_an_outcome_a_full_disk_refuses_is_kept_then_written(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    add(q, claim=True)
    full = _fail_writes(monkeypatch, q)
    done = q.mark_registered("2.25.1")  # the DMP holds it: the outcome must not be lost nor raised
    # its owner is kept until the record is written (``record_in_flight``)
    assert done.state is EntryState.REGISTERED and done.owner == q.owner and done.documents == ()
    assert q.deferred == ("2.25.1",)
    q.mark_journaled("2.25.1")
    # this instance reports it registered and never sends it again
    seen = q.get("2.25.1")
    assert seen is not None and seen.state is EntryState.REGISTERED and seen.journaled
    assert q.pending() == [] and q.due() == [] and q.claim("2.25.1") is None
    # the file still says sending (another process would take it over when this one dies)
    other = DepositQueue(path)
    raw = other.get("2.25.1")
    assert raw is not None and raw.state is EntryState.SENDING
    with pytest.raises(OutboxError):
        q.flush_deferred()
    full[0] = False  # space is back: the next access writes it
    assert [e.state for e in q.entries()] == [EntryState.REGISTERED]
    assert q.deferred == ()
    written = other.get("2.25.1")
    assert written is not None and written.state is EntryState.REGISTERED and written.journaled
    assert written.owner == "" and written.documents == ()


def test_a_failed_commit_never_leaves_the_connection_in_a_transaction(tmp_path: Path) -> None:
    """A COMMIT that fails (SQLITE_FULL on a full disk; here a deferred foreign key) is rolled back: the
    queue goes on working in this process (main's queue stayed inside the failed transaction for good)."""
    q = DepositQueue(tmp_path / "q.sqlite3")
    add(q, claim=True)
    q._con.execute("PRAGMA foreign_keys = ON")
    q._con.execute("PRAGMA defer_foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError), q._tx() as con:
        con.execute("INSERT INTO queue_document VALUES ('2.25.404', 0, x'00')")  # fails at COMMIT only
    assert not q._con.in_transaction
    waiting = q.mark_waiting("2.25.1", "réseau", "NET", 0.0)  # the queue still works
    assert waiting.state is EntryState.WAITING and waiting.attempts == 1


def test_a_kept_waiting_outcome_never_overwrites_another_owners_claim(tmp_path: Path, monkeypatch) -> None:
    clock = Clock()
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path, clock=clock, lease_s=60)
    add(q, claim=True)
    full = _fail_writes(monkeypatch, q)
    kept = q.mark_waiting("2.25.1", "réseau", "NET", 0.0)
    assert kept.state is EntryState.WAITING and q.deferred == ("2.25.1",)
    full[0] = False
    clock.now += 61  # this instance's claim expired meanwhile: another process took the entry over
    other = DepositQueue(path, clock=clock, lease_s=60)
    monkeypatch.undo()
    assert other.claim("2.25.1") is not None
    q.flush_deferred()
    row = other.get("2.25.1")
    assert row is not None and row.state is EntryState.SENDING and row.owner == other.owner
    assert q.deferred == ()


def test_find_same_matches_uniqueids_and_content_and_old_files_get_the_column(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    add(q)
    assert q.find_same(("2.25.9",), (b"<cda/>",)) is not None
    assert q.find_same(("2.25.9",), (b"<cda>autre</cda>",)) is None  # same id, other content
    assert q.find_same(("2.25.8",), (b"<cda/>",)) is None
    q.claim("2.25.1")
    q.mark_registered("2.25.1")  # bytes purged, the digest stays
    found = q.find_same(("2.25.9",), (b"<cda/>",))
    assert found is not None and found.state is EntryState.REGISTERED and found.documents == ()
    q.close()
    con = sqlite3.connect(path)  # a queue file of the first version: no digest column
    con.execute("ALTER TABLE queue_entry DROP COLUMN document_sha1")
    con.commit()
    con.close()
    again = DepositQueue(path)
    [entry] = again.entries()
    assert entry.document_sha1 == () and again.find_same(("2.25.9",), (b"<cda/>",)) is None


@pytest.mark.skipif(os.name != "posix", reason="POSIX mode bits")
def test_hand_back_into_an_existing_folder_keeps_its_permissions(tmp_path: Path) -> None:
    """A folder the user already has (a shared « Documents ») is not made private behind their back; the
    handed-back files themselves are 0600."""
    q = DepositQueue(tmp_path / "q.sqlite3")
    add(q)
    out = tmp_path / "partage"
    out.mkdir(mode=0o755)
    os.chmod(out, 0o755)  # noqa: S103 - a shared folder is the case under test
    written: list[Path] = []
    q.hand_back("2.25.1", lambda entry: written.extend(write_documents(entry, out)))
    assert (out.stat().st_mode & 0o777) == 0o755
    assert (written[0].stat().st_mode & 0o777) == 0o600


def test_a_journaled_flag_not_durable_rides_in_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    other = DepositQueue(path)  # another process's view of the file
    add(q, claim=True)
    q.mark_registered("2.25.1")
    q.mark_journaled("2.25.1", durable=False)
    mine = q.get("2.25.1")
    assert mine is not None and mine.journaled  # this instance sees it at once
    assert q.unjournaled() == []
    on_disk = other.get("2.25.1")
    assert on_disk is not None and on_disk.state is EntryState.REGISTERED and not on_disk.journaled
    add(q, "2.25.2", claim=True)  # the next write transaction carries it
    on_disk = other.get("2.25.1")
    assert on_disk is not None and on_disk.journaled
    fresh = other.get("2.25.2")
    assert fresh is not None and not fresh.journaled
    q.mark_registered("2.25.2")
    q.mark_journaled("2.25.2", durable=False)
    assert [e.id for e in other.unjournaled()] == ["2.25.2"]
    q.close()  # closing writes what is left
    assert other.unjournaled() == []
    other.close()


def test_a_journaled_flag_waits_behind_an_outcome_kept_in_memory(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    add(q, claim=True)
    full = _fail_writes(monkeypatch, q)
    q.mark_registered("2.25.1")  # kept in memory (full disk)
    q.mark_journaled("2.25.1", durable=False)  # must not reach the file before the outcome
    other = DepositQueue(path)
    full[0] = False
    add(q, "2.25.2")  # a write transaction: the flag of 2.25.1 is not in it (the outcome is not yet)
    raw = other.get("2.25.1")
    assert raw is not None and raw.state is EntryState.SENDING and not raw.journaled
    q.flush_deferred()
    raw = other.get("2.25.1")
    assert raw is not None and raw.state is EntryState.REGISTERED and raw.journaled


def test_a_registered_entry_whose_record_may_still_be_written_is_in_flight(tmp_path: Path) -> None:
    """Registered, not journaled: its depositor (this instance, or a live process within its lease) may be
    writing the record: a recovery leaves it alone; once the lease passed or the flag is set, it does not."""
    clock = Clock()
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path, clock=clock, lease_s=60)
    other = DepositQueue(path, clock=clock, lease_s=60)  # another process's view (its owner is alive)
    add(q, claim=True)
    q.mark_registered("2.25.1")
    mine, seen = q.get("2.25.1"), other.get("2.25.1")
    assert mine is not None and seen is not None and seen.owner == q.owner
    assert q.record_in_flight(mine) and other.record_in_flight(seen)
    clock.now += 61  # the lease passed, but its process lives (its record may wait for a full disk)
    assert other.record_in_flight(seen)
    elsewhere = replace(seen, owner="elsewhere.example:1:123:abcdef")  # a process this machine cannot judge
    assert not other.record_in_flight(elsewhere)  # ... its lease passed: taken for gone
    clock.now -= 61
    assert other.record_in_flight(elsewhere)
    q.mark_journaled("2.25.1")
    done = other.get("2.25.1")
    assert done is not None and done.journaled and not other.record_in_flight(done)
    add(q, "2.25.2", claim=True)
    registered = q.mark_registered("2.25.2", journaled=True)  # journaled at once: owner released
    assert registered.owner == "" and not q.record_in_flight(registered)


def test_journal_once_writes_the_record_once_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    other = DepositQueue(path)
    add(q, claim=True)
    q.mark_registered("2.25.1")
    calls: list[str] = []

    def failing() -> None:
        calls.append("failing")
        raise OSError("disque plein")

    with pytest.raises(OSError):
        q.journal_once("2.25.1", failing)
    still = other.get("2.25.1")
    assert still is not None and not still.journaled  # a failed record never sets the flag
    assert q.journal_once("2.25.1", lambda: calls.append("q")) is True
    assert other.journal_once("2.25.1", lambda: calls.append("other")) is False  # flag seen: no 2nd record
    assert calls == ["failing", "q"]
    assert other.unjournaled() == [] and q.unjournaled() == []


def test_journal_once_counts_a_flag_riding_in_memory_as_set(tmp_path: Path) -> None:
    q = DepositQueue(tmp_path / "q.sqlite3")
    add(q, claim=True)
    q.mark_registered("2.25.1")
    q.mark_journaled("2.25.1", durable=False)
    assert q.journal_once("2.25.1", lambda: pytest.fail("the record exists")) is False
