"""The queue's document files (outside SQLite): each crash point between a file and the row that names it
(a child process ended with ``os._exit`` at that point, as ``kill -9`` would), the recovery at open, a file
missing or altered, a full disk while writing one, another process opening the queue while a file is
written for a row not committed yet, and the move of a former version's documents out of SQLite."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ps_agent.outbox import DepositQueue, DocumentMissing, EntryState, OutboxError

ROOT = Path(__file__).resolve().parents[2]
PATIENT = ("279037505612309", "1.2.250.1.213.1.4.10", "QUAL")
DOC = b"<ClinicalDocument>" + b"x" * 70_000 + b"</ClinicalDocument>"


def add(q: DepositQueue, entry_id: str = "2.25.1", data: bytes = DOC, *, claim: bool = False) -> None:
    q.add(entry_id, PATIENT, (entry_id + ".9",), (data,), (False, False, False), ("",), titles=("Lettre",),
          actor_id_nat="810001", claim=claim)  # fmt: skip


def files(q: DepositQueue) -> list[str]:
    return sorted(os.listdir(q.documents_dir))


def run_child(script: str, path: Path, *, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", script, str(path)], input=stdin, capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip


CHILD = """
import os, sys
from pathlib import Path
from ps_agent.outbox import DepositQueue, _documents
DOC = b"<ClinicalDocument>" + b"x" * 70_000 + b"</ClinicalDocument>"
def die_after(name):
    real = getattr(_documents, name)
    def wrapper(*args):
        out = real(*args)
        os._exit(9)  # the process ends here, as after kill -9: no cleanup, no rollback
    setattr(_documents, name, wrapper)
q = DepositQueue(Path(sys.argv[1]))
"""

KILLED_BETWEEN_FILE_AND_ROW = (
    CHILD
    + """
die_after("write_all")
q.add("2.25.7", ("279037505612309", "1.2.250.1.213.1.4.10", "QUAL"), ("2.25.7.9",), (DOC,),
      (False, False, False), ("",), claim=True)
"""
)


def test_killed_between_the_file_and_its_row_leaves_no_entry_and_no_file(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    DepositQueue(path).close()
    done = run_child(KILLED_BETWEEN_FILE_AND_ROW, path)
    assert done.returncode == 9, done.stderr
    folder = path.with_name(path.name + "-documents")
    assert len(os.listdir(folder)) == 1  # the flushed file of a row never committed
    q = DepositQueue(path)  # the recovery at open
    assert q.entries() == [] and files(q) == []
    add(q, "2.25.8")  # the queue goes on
    assert [e.documents for e in q.entries()] == [(DOC,)]


KILLED_BETWEEN_PURGE_AND_REMOVAL = (
    CHILD
    + """
q.add("2.25.7", ("279037505612309", "1.2.250.1.213.1.4.10", "QUAL"), ("2.25.7.9",), (DOC,),
      (False, False, False), ("",), claim=True)
def die(*args):
    os._exit(9)
_documents.recycle = die
q.mark_registered("2.25.7")
"""
)


def test_killed_between_the_purge_and_the_files_removal_removes_them_at_open(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    DepositQueue(path).close()
    done = run_child(KILLED_BETWEEN_PURGE_AND_REMOVAL, path)
    assert done.returncode == 9, done.stderr
    folder = path.with_name(path.name + "-documents")
    assert len(os.listdir(folder)) == 1  # registered (committed) but its file still there
    q = DepositQueue(path)
    [entry] = q.entries()
    assert entry.state is EntryState.REGISTERED and entry.documents == () and files(q) == []


def test_a_row_is_committed_only_after_its_file_is_complete(tmp_path: Path, monkeypatch) -> None:
    """The file is flushed before the row is inserted: when the row can be read, so can the whole file."""
    from ps_agent.outbox import _documents

    q = DepositQueue(tmp_path / "q.sqlite3")
    order: list[str] = []
    real_write, real_fsync_dir = _documents._write_one, _documents.fsync_dir

    def write_one(folder: Path, name: str, data: bytes) -> None:
        real_write(folder, name, data)
        order.append("file")

    def fsync_dir(folder: Path) -> None:
        real_fsync_dir(folder)
        order.append("folder")

    monkeypatch.setattr(_documents, "_write_one", write_one)
    monkeypatch.setattr(_documents, "fsync_dir", fsync_dir)
    q._con.set_trace_callback(lambda sql: order.append(sql.split()[0]))
    add(q)
    # written and flushed before the write lock is taken (overlapping other deposits' commits)
    assert order == ["file", "folder", "BEGIN", "INSERT", "COMMIT"]


def test_files_removed_by_another_open_before_the_lock_are_written_again(tmp_path: Path, monkeypatch) -> None:
    """Between a document's write (outside the lock) and its row's transaction, another instance opening
    the queue removes the file as unnamed: the add writes it again under the lock, nothing is lost."""
    from ps_agent.outbox import _documents

    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    real_write_all = _documents.write_all
    opened: list[int] = []

    def write_all(folder: Path, documents, *spare):  # type: ignore[no-untyped-def]
        names = real_write_all(folder, documents, *spare)
        if not opened:  # the first write only: another open's clean-up runs right after it
            opened.append(1)
            DepositQueue(path).close()
            assert not any((folder / n).exists() for n in names)
        return names

    monkeypatch.setattr(_documents, "write_all", write_all)
    add(q)
    assert len(opened) == 1
    again = DepositQueue(path)
    [listed] = again.entries()
    assert listed.id == "2.25.1" and listed.documents == (DOC,) and len(files(again)) == 1


def test_a_missing_or_altered_file_is_a_clear_error_for_that_entry_only(tmp_path: Path, caplog) -> None:
    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    for n in (1, 2, 3):
        add(q, f"2.25.{n}", DOC + str(n).encode())
    names = {e.id: json.loads(f) for e, (f,) in zip(
        q.entries(), q._con.execute("SELECT document_files FROM queue_entry ORDER BY created, rowid"),
        strict=True,
    )}  # fmt: skip
    q.close()
    (q.documents_dir / names["2.25.1"][0]).unlink()
    (q.documents_dir / names["2.25.2"][0]).write_bytes(DOC + b"altered")
    with caplog.at_level(logging.ERROR, logger="ps_agent.outbox"):
        q = DepositQueue(path)
    assert names["2.25.1"][0] in caplog.text  # reported at open
    listed = {e.id: e for e in q.entries()}
    assert len(listed) == 3
    assert listed["2.25.1"].reason_code == "DOCUMENT_MISSING" and listed["2.25.1"].documents == ()
    assert "introuvable" in listed["2.25.1"].reason_fr and "2.25.1" in listed["2.25.1"].reason_fr
    assert listed["2.25.2"].reason_code == "DOCUMENT_MISSING" and "altéré" in listed["2.25.2"].reason_fr
    assert listed["2.25.3"].documents == (DOC + b"3",) and listed["2.25.3"].reason_code == ""
    with pytest.raises(DocumentMissing) as exc:
        q.claim("2.25.1")
    assert exc.value.code == "DOCUMENT_MISSING" and "Déposez à nouveau" in exc.value.message_fr
    with pytest.raises(DocumentMissing):
        q.claim("2.25.2")
    claimed = q.claim("2.25.3")  # the others go on
    assert claimed is not None and claimed.documents == (DOC + b"3",)
    for damaged in ("2.25.1", "2.25.2"):  # the failed claims changed nothing
        entry = q.get(damaged)
        assert entry is not None and entry.state is EntryState.PENDING and entry.attempts == 0


def test_a_full_disk_while_writing_a_file_is_the_same_typed_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    from ps_agent.outbox import _documents

    q = DepositQueue(tmp_path / "q.sqlite3")
    calls = [0]

    def write(fd: int, data: object) -> int:
        calls[0] += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_documents.os, "write", write)
    with pytest.raises(OutboxError) as exc:
        add(q)
    assert calls[0] == 1 and exc.value.code == "OUTBOX" and "n'est pas envoyé" in exc.value.message_fr
    monkeypatch.undo()
    assert q.entries() == [] and files(q) == [] and not q._con.in_transaction
    add(q)  # space is back
    assert [e.documents for e in q.entries()] == [(DOC,)]


WRITER_PAUSED_BEFORE_COMMIT = (
    CHILD
    + """
real = _documents.write_all
calls = []
def paused(*args):
    out = real(*args)
    if not calls:  # the first write (before the write lock): wait until told to go on
        calls.append(1)
        print("written", flush=True)
        sys.stdin.readline()
    return out
_documents.write_all = paused
q.add("2.25.7", ("279037505612309", "1.2.250.1.213.1.4.10", "QUAL"), ("2.25.7.9",), (DOC,),
      (False, False, False), ("",), claim=True)
print("committed", flush=True)
"""
)


def test_a_row_another_process_is_adding_keeps_its_file_when_the_queue_is_opened(tmp_path: Path) -> None:
    """The adder writes its file before taking the write lock; an open meanwhile removes it as unnamed;
    the adder, under the lock, sees it gone and writes it again: the committed row has its document."""
    path = tmp_path / "q.sqlite3"
    DepositQueue(path).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_PAUSED_BEFORE_COMMIT, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "written"
        opened: list[DepositQueue] = []
        opener = threading.Thread(target=lambda: opened.append(DepositQueue(path)))
        opener.start()  # the writer holds no transaction yet: its recovery removes the unnamed file
        opener.join(60)
        assert opened and files(opened[0]) == []
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "committed"
        entry = opened[0].get("2.25.7")
        assert entry is not None and entry.documents == (DOC,) and entry.reason_code == ""
    finally:
        child.communicate(timeout=60)


def _former_version_file(path: Path) -> None:
    """A queue file as the previous version wrote it: documents as blobs, no ``document_files``."""
    con = sqlite3.connect(path)
    cols = (
        "id TEXT PRIMARY KEY, patient_ins TEXT NOT NULL, patient_oid TEXT NOT NULL, "
        "ins_status TEXT NOT NULL, "
        "document_uids TEXT NOT NULL, visibility TEXT NOT NULL, replaces TEXT NOT NULL, "
        "replaces_entry_uuids TEXT NOT NULL DEFAULT '[]', titles TEXT NOT NULL DEFAULT '[]', "
        "actor_id_nat TEXT NOT NULL DEFAULT '', on_behalf_of TEXT NOT NULL DEFAULT '', "
        "created TEXT NOT NULL, "
        "updated TEXT NOT NULL, state TEXT NOT NULL, reason_fr TEXT NOT NULL DEFAULT '', "
        "reason_code TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0, "
        "next_try REAL NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '', "
        "lease_until REAL NOT NULL DEFAULT 0, "
        "journaled INTEGER NOT NULL DEFAULT 0, document_sha1 TEXT NOT NULL DEFAULT '[]'"
    )
    con.executescript(
        f"PRAGMA journal_mode=WAL; CREATE TABLE queue_entry ({cols}); "
        "CREATE TABLE queue_document (entry_id TEXT NOT NULL REFERENCES queue_entry(id), "
        "position INTEGER NOT NULL, content BLOB NOT NULL, PRIMARY KEY (entry_id, position));"
    )
    rows = [
        ("2.25.1", "waiting", [DOC + b"1", DOC + b"1b"], True),
        ("2.25.2", "pending", [DOC + b"2"], False),  # a first-version row: no digest
        ("2.25.3", "registered", [], True),
    ]
    for n, (entry_id, state, docs, digests) in enumerate(rows):
        sha1s = [hashlib.sha1(d).hexdigest() for d in docs] if digests else []  # noqa: S324
        uids = [f"{entry_id}.{i}" for i in range(max(1, len(docs)))]
        con.execute(
            "INSERT INTO queue_entry (id, patient_ins, patient_oid, ins_status, document_uids, visibility, "
            "replaces, created, updated, state, document_sha1) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (entry_id, *PATIENT, json.dumps(uids), "[false, false, false]", json.dumps([""] * len(uids)),
             f"2026-11-01T10:00:0{n}+00:00", "2026-11-01T10:00:00+00:00", state, json.dumps(sha1s)),
        )  # fmt: skip
        for i, d in enumerate(docs):
            con.execute("INSERT INTO queue_document VALUES (?,?,?)", (entry_id, i, d))
    con.commit()
    con.close()


def test_a_former_version_queue_keeps_its_documents_moved_to_files(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    _former_version_file(path)
    q = DepositQueue(path)
    listed = {e.id: e for e in q.entries()}
    assert (
        listed["2.25.1"].documents == (DOC + b"1", DOC + b"1b")
        and listed["2.25.1"].state is EntryState.WAITING
    )
    assert listed["2.25.2"].documents == (DOC + b"2",) and listed["2.25.3"].documents == ()
    assert listed["2.25.2"].document_sha1 == (hashlib.sha1(DOC + b"2").hexdigest(),)  # noqa: S324
    assert len(files(q)) == 3
    assert q._con.execute("SELECT count(*) FROM queue_document").fetchone()[0] == 0
    assert q.find_same(("2.25.2.0",), (DOC + b"2",)) is not None
    q.close()
    again = DepositQueue(path)  # opening again changes nothing
    assert [e.documents for e in again.entries()] == [e.documents for e in listed.values()]
    claimed = again.claim("2.25.1")
    assert claimed is not None and claimed.documents == (DOC + b"1", DOC + b"1b")
    again.mark_registered("2.25.1")
    # its two files are emptied (this instance's spares: zeros) and removed when it closes
    contents = sorted((again.documents_dir / n).read_bytes() for n in files(again))
    assert contents == sorted([bytes(len(DOC) + 1), bytes(len(DOC) + 2), DOC + b"2"])
    again.close()
    assert len(files(again)) == 1


KILLED_DURING_THE_MOVE = """
import os, sys
from pathlib import Path
from ps_agent.outbox import DepositQueue, _documents
real = _documents.write_all
def wrapper(*args):
    real(*args)
    os._exit(9)  # the first entry's files are written, the move is not committed
_documents.write_all = wrapper
DepositQueue(Path(sys.argv[1]))
"""


def test_killed_while_moving_a_former_version_documents_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    _former_version_file(path)
    done = run_child(KILLED_DURING_THE_MOVE, path)
    assert done.returncode == 9, done.stderr
    q = DepositQueue(path)
    listed = {e.id: e for e in q.entries()}
    assert listed["2.25.1"].documents == (DOC + b"1", DOC + b"1b") and listed["2.25.2"].documents == (
        DOC + b"2",
    )
    assert len(files(q)) == 3  # the first attempt's files are gone, only the rows' own remain


def test_a_purged_file_is_emptied_and_written_again_for_the_next_one(tmp_path: Path, monkeypatch) -> None:
    """Spare files: the purge empties the registered document's file (its bytes are gone at once) and the
    same instance writes its next document into it, flushed, without creating a file nor flushing the
    folder; a spare another open removed meanwhile is created again; closing removes the spares; another
    instance never writes into them."""
    from ps_agent.outbox import _documents

    path = tmp_path / "q.sqlite3"
    q = DepositQueue(path)
    add(q, "2.25.1", claim=True)
    [name] = files(q)
    q.mark_registered("2.25.1")
    emptied = (q.documents_dir / name).read_bytes()
    assert files(q) == [name] and emptied == bytes(len(emptied)) and DOC not in emptied  # the bytes are gone
    other = DepositQueue(path.with_name("other.sqlite3"))
    assert other._take_spare() is None  # another instance's spares are not its own
    other.close()
    created: list[str] = []
    folder_flushes: list[Path] = []
    real_write_one, real_fsync_dir = _documents._write_one, _documents.fsync_dir
    monkeypatch.setattr(
        _documents, "_write_one", lambda f, n, d: (created.append(n), real_write_one(f, n, d))
    )
    monkeypatch.setattr(_documents, "fsync_dir", lambda f: (folder_flushes.append(f), real_fsync_dir(f)))
    syncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(_documents.os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd))[1])
    add(q, "2.25.2", DOC + b"2", claim=True)
    assert files(q) == [name] and created == [] and folder_flushes == [] and len(syncs) == 1
    assert (q.documents_dir / name).read_bytes() == DOC + b"2"  # cut to its length: no zeros left after it
    assert [e.documents for e in q.entries() if e.id == "2.25.2"] == [(DOC + b"2",)]
    q.mark_registered("2.25.2")
    DepositQueue(path).close()  # another open removes the unnamed spare
    assert files(q) == []
    add(q, "2.25.3", DOC + b"3")
    assert len(created) == 1 and files(q) == created and folder_flushes == [q.documents_dir]
    assert [e.documents for e in DepositQueue(path).entries() if e.id == "2.25.3"] == [(DOC + b"3",)]
    q.hand_back("2.25.3", lambda entry: None)
    assert [(q.documents_dir / n).read_bytes() for n in files(q)] == [bytes(len(DOC) + 1)]
    q.close()
    assert files(q) == []


def test_a_shorter_document_written_into_a_spare_leaves_nothing_of_the_zeros(tmp_path: Path) -> None:
    q = DepositQueue(tmp_path / "q.sqlite3")
    add(q, "2.25.1", DOC + b"long" * 1000, claim=True)
    [name] = files(q)
    q.mark_registered("2.25.1")
    assert (q.documents_dir / name).read_bytes() == bytes(len(DOC) + 4000)
    short = b"<ClinicalDocument>court</ClinicalDocument>"
    add(q, "2.25.2", short, claim=True)
    assert files(q) == [name] and (q.documents_dir / name).read_bytes() == short
    assert [e.documents for e in DepositQueue(q.path).entries() if e.id == "2.25.2"] == [(short,)]
    q.close()


def test_a_spare_above_the_zeroing_limit_is_truncated(tmp_path: Path, monkeypatch) -> None:
    from ps_agent.outbox import _documents

    monkeypatch.setattr(_documents, "ZERO_MAX_BYTES", 1000)
    q = DepositQueue(tmp_path / "q.sqlite3")
    add(q, "2.25.1", claim=True)
    [name] = files(q)
    q.mark_registered("2.25.1")
    assert (q.documents_dir / name).stat().st_size == 0
    q.close()
