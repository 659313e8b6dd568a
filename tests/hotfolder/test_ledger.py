"""The hot folder's ledger on a real SQLite file: durable claims, later states committed without fsync by a
writer of their own, and both surviving the process's sudden end."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from ps_agent.hotfolder.ledger import BUILDING, DONE, QUEUED, Ledger


def test_claims_are_fsynced_and_later_states_are_not(tmp_path: Path) -> None:
    """Each commit runs at the level it needs on the ledger's one writer connection: a claim at
    synchronous=FULL (2: the WAL fsync'd), the later states at NORMAL (1), whatever came before."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    statements: list[str] = []
    ledger._con.set_trace_callback(statements.append)
    try:
        assert ledger.claim_new("k1", "cr1", "2.25.1") is not None
        assert ledger.claim_new("k1", "cr1", "2.25.1") is None  # never twice
        ledger.set_state("k1", QUEUED, entry_id="e1", durable=False)
        ledger.set_state("k1", DONE, outcome="{}", durable=False)
        assert ledger.claim_new("k2", "cr2", "2.25.2") is not None
        ledger.set_state("k2", DONE, outcome="{}", durable=False)
        level, at_commit = 2, []
        for sql in statements:
            if sql.startswith("PRAGMA synchronous="):
                level = {"FULL": 2, "NORMAL": 1}[sql.split("=", 1)[1]]
            elif sql == "COMMIT":
                at_commit.append(level)
        assert at_commit == [2, 2, 1, 1, 2, 1]
        ledger._con.set_trace_callback(None)
        assert ledger._con.execute("PRAGMA synchronous").fetchone()[0] == 1  # as the last commit left it
        assert ledger.claim_new("k3", "cr3", "2.25.3") is not None
        assert ledger._con.execute("PRAGMA synchronous").fetchone()[0] == 2
        item = ledger.get("k1")
        assert item is not None and (item.state, item.entry_id) == (DONE, "e1")
        assert ledger.by_entry("e1") == item and ledger.count(DONE) == 2
    finally:
        ledger.close()


def test_states_survive_a_sudden_end_of_the_process(tmp_path: Path) -> None:
    """``os._exit`` right after the commits (no close, no checkpoint: as a ``kill -9``): all are there."""
    path = tmp_path / "ledger.sqlite3"
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from ps_agent.hotfolder.ledger import QUEUED, DONE, Ledger
        ledger = Ledger(Path({str(path)!r}))
        ledger.claim_new("a", "cra", "2.25.1")
        ledger.claim_new("b", "crb", "2.25.2")
        ledger.set_state("a", DONE, entry_id="ea", outcome="{{}}", durable=False)
        ledger.set_state("b", QUEUED, entry_id="eb", durable=False)
        os._exit(0)
    """)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
    ledger = Ledger(path)
    try:
        a, b = ledger.get("a"), ledger.get("b")
        assert a is not None and (a.state, a.entry_id) == (DONE, "ea")
        assert b is not None and (b.state, b.entry_id) == (QUEUED, "eb")
        assert [i.key for i in ledger.unfinished()] == ["b"] and ledger.count(BUILDING) == 0
    finally:
        ledger.close()
