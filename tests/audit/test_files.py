"""Files of the audit trail: owner-only modes whoever created them, close() releases everything, the
module imports and works with POSIX-only modules unavailable (Windows)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ps_agent.audit.errors import AuditWriteError
from ps_agent.audit.framelog import FrameLog
from ps_agent.audit.journal import AuditJournal
from tests.audit.conftest import FakeClock, make_event

ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_journal_files_and_folder_are_owner_only_whoever_created_them(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A folder and a journal made by someone else with 0755/0644 (on main they stayed so)."""
    folder = tmp_path / "home"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # noqa: S103 - a folder made by someone else
    path = folder / "audit.sqlite3"
    path.touch()
    os.chmod(path, 0o644)
    old = os.umask(0)
    try:
        with AuditJournal(path, clock=clock) as j:
            j.set_checkpoint_signer(None)
            j.append(make_event(1))
            files = [path, j.anchor_path, Path(str(path) + "-wal"), Path(str(path) + "-shm")]
            assert _mode(folder) == 0o700
            for f in files:
                assert _mode(f) == 0o600, (f.name, oct(_mode(f)))
    finally:
        os.umask(old)


@posix_only
def test_checkpoint_copy_is_owner_only(tmp_path: Path, clock: FakeClock, test_pki: object) -> None:
    from ps_agent.auth.software import SoftwareSigner

    card = test_pki.card("gp")  # type: ignore[attr-defined]
    old = os.umask(0)
    try:
        with AuditJournal(tmp_path / "audit.sqlite3", clock=clock) as j:
            j.append(make_event(1))
            j.set_checkpoint_signer(SoftwareSigner(card.sign_key, card.sign_cert, card.chain))
            assert _mode(j.checkpoint_path) == 0o600
    finally:
        os.umask(old)


@posix_only
def test_frame_log_is_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # noqa: S103 - a folder made by someone else
    old = os.umask(0)
    try:
        log = FrameLog(folder / "frames.jsonl", enabled=True)
        log.record("out", "TD0.2", b"<Envelope/>")
    finally:
        os.umask(old)
    assert _mode(folder) == 0o700
    assert _mode(folder / "frames.jsonl") == 0o600


def test_close_releases_the_database_and_the_forwarder(journal_path: Path, clock: FakeClock) -> None:
    class Fwd:
        closed = 0

        def attach(self, journal: AuditJournal) -> None:
            pass

        def notify(self, record: object) -> None:
            pass

        def close(self) -> None:
            self.closed += 1

    fwd = Fwd()
    j = AuditJournal(journal_path, clock=clock, forwarder=fwd)
    j.append(make_event(1))
    conn = j._conn
    j.close()
    j.close()  # idempotent
    assert fwd.closed == 1 and j.closed
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    with pytest.raises(AuditWriteError, match="fermé"):
        j.append(make_event(2))


def test_journal_works_without_posix_only_modules(journal_path: Path) -> None:
    """Issue 9 item 5: ``fcntl`` (and ``os.pwrite``) unavailable, as on Windows."""
    code = (
        "import os, sys\n"
        "sys.modules['fcntl'] = None\n"
        "del os.pwrite\n"
        "from pathlib import Path\n"
        "from ps_agent.audit.journal import AuditJournal\n"
        "from tests.audit.conftest import make_event\n"
        "with AuditJournal(Path(sys.argv[1])) as j:\n"
        "    j.append(make_event(1)); j.append(make_event(2))\n"
        "    r = j.verify()\n"
        "    assert r.ok, r.message_fr\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(journal_path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
