"""``kill -9`` of the sandbox process in the middle of deposits, then a restart on the same data folder (what
the fault campaign does): every deposit is registered entirely or not at all, and every deposit answered
Success is there."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox import demo
from sandbox.dmp import build
from sandbox.dmp.store import Store
from sandbox.profiles import PROFILES
from tests.fixtures.sandbox import ACTIONS, VihfSpec, Wire, envelope, mtom_request
from tests.sandbox.server import rawhttp

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 (POSIX)")

PATIENT = demo.DEMO_ADULT
REPOSITORY = "/si-dmp-server/v2/services/repository"


class _Urls:
    def __init__(self, base: str) -> None:
        self.base = base

    def url(self, service: str) -> str:
        return self.base + service


def _deposits(wire: Wire, n: int, size: int) -> list[tuple[str, bytes]]:
    """(uniqueId, complete HTTP request) of ``n`` deposits by the gp, each with its own VIHF."""
    gp = wire.pki.card("gp")
    patient = build.patient_input(
        PATIENT.ins,
        PATIENT.oid,
        PATIENT.family_name,
        PATIENT.given_names,
        PATIENT.birth_date,
        PATIENT.sex,
        PATIENT.birth_place,
    )
    author = build.author_input(PROFILES["gp"])
    text = build.padded_text(size)
    service, action = ACTIONS["TD2.1"]
    spec = VihfSpec(patient_ins=PATIENT.ins, patient_oid=PATIENT.oid)
    out = []
    for i in range(n):
        cda = build.text_document(patient, author, "11488-4", f"Consultation {i}", text)
        dep = build.provide_and_register(
            [build.DepositDocument(cda)], signer=(gp.sign_key, gp.sign_cert, gp.chain)
        )
        env = envelope(action, dep.body, wire.vihf(spec), to=wire.sandbox.url(service))
        content, ctype = mtom_request(env, {k: (v, "text/xml") for k, v in dep.attachments.items()}, action)
        raw = rawhttp.http_request("POST", REPOSITORY, content, {"Content-Type": ctype})
        out.append((dep.unique_ids[0], raw))
    return out


def _check_consistent(data: Path) -> set[str]:
    """Every registered document has its complete bytes; no stray file; returns the registered uniqueIds."""
    with Store(data) as store:  # opening the store removes the files of unfinished deposits
        docs = store.documents(PATIENT.ins)
        for d in docs:
            content = store.content(d.entry_uuid)
            assert (hashlib.sha1(content).hexdigest(), len(content)) == (d.hash, d.size), d.unique_id  # noqa: S324
        with store._db() as db:
            files = {p.name for p in (data / "documents").iterdir()}
            assert files == {r[0] for r in db.execute("SELECT content_uuid FROM documents")}
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            # a submission set is registered with its documents, never alone
            lonely = db.execute(
                "SELECT COUNT(*) FROM submission_sets s WHERE NOT EXISTS"
                " (SELECT 1 FROM documents d WHERE d.submission_uuid = s.entry_uuid)"
            ).fetchone()[0]
            assert lonely == 0
        return {d.unique_id for d in docs}


def test_kill_9_during_deposits_then_restart_is_consistent(tmp_path: Path, test_pki: Any) -> None:
    data = tmp_path / "data"
    ctx = rawhttp.client_context(test_pki)
    registered_ok: set[str] = set()
    proc, base, port = rawhttp.start_subprocess(data, Path(test_pki.directory), "--demo")
    try:
        for _round in range(3):
            wire = Wire(_Urls(base), test_pki)
            pending = _deposits(wire, 24, 400_000)
            answered: list[str] = []
            lock = threading.Lock()

            def client(
                items: list[tuple[str, bytes]],
                port: int = port,
                answered: list[str] = answered,
                lock: threading.Lock = lock,
            ) -> None:
                for uid, raw in items:
                    try:
                        reply = rawhttp.exchange(ctx, port, raw)
                    except OSError:
                        return  # the server died under us
                    if reply.status == 200 and b"ResponseStatusType:Success" in reply.body:
                        with lock:
                            answered.append(uid)

            threads = [threading.Thread(target=client, args=(pending[k::3],)) for k in range(3)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while len(answered) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)  # in the middle of the next deposits
            proc.wait(timeout=30)
            for t in threads:
                t.join()
            assert answered, "no deposit went through before the kill"
            registered_ok.update(answered)
            registered = _check_consistent(data)
            assert registered_ok <= registered  # nothing answered Success is lost
            proc, base, port = rawhttp.start_subprocess(data, Path(test_pki.directory))
        # the restarted sandbox serves deposits again
        wire = Wire(_Urls(base), test_pki)
        uid, raw = _deposits(wire, 1, 10_000)[0]
        reply = rawhttp.exchange(ctx, port, raw)
        assert reply.status == 200 and b"ResponseStatusType:Success" in reply.body
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert uid in _check_consistent(data)


# The server process kills itself (SIGKILL) inside the deposit transaction of its third deposit: the files are
# written and the registry rows inserted, the COMMIT never happens.
CRASH_IN_TRANSACTION = """
import os, signal
from sandbox.dmp import store as _store
_original = _store.Store._insert_submission
_count = [0]
def _insert_then_die(self, *args, **kwargs):
    _original(self, *args, **kwargs)
    _count[0] += 1
    if _count[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
_store.Store._insert_submission = _insert_then_die
"""


def test_kill_9_between_the_files_and_the_commit_leaves_nothing_behind(tmp_path: Path, test_pki: Any) -> None:
    data = tmp_path / "data"
    with Store(data) as store:  # the patient only: the demo data would go through the patched method
        store.create_patient(
            PATIENT.ins,
            PATIENT.oid,
            PATIENT.family_name,
            PATIENT.given_names,
            PATIENT.birth_date,
            PATIENT.sex,
            PATIENT.birth_place,
        )
    ctx = rawhttp.client_context(test_pki)
    proc, base, port = rawhttp.start_subprocess(data, Path(test_pki.directory), prelude=CRASH_IN_TRANSACTION)
    try:
        deposits = _deposits(Wire(_Urls(base), test_pki), 3, 50_000)
        for _uid, raw in deposits[:2]:
            reply = rawhttp.exchange(ctx, port, raw)
            assert reply.status == 200 and b"ResponseStatusType:Success" in reply.body
        with pytest.raises(OSError):
            rawhttp.exchange(ctx, port, deposits[2][1])  # the server dies inside the transaction
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        rows = _check_consistent(data)  # the unfinished deposit's file is removed on opening
        assert {deposits[0][0], deposits[1][0]} <= rows and deposits[2][0] not in rows
        # the same deposit, sent again to the restarted sandbox, is registered (it was not before)
        proc, base, port = rawhttp.start_subprocess(data, Path(test_pki.directory))
        again = _deposits(Wire(_Urls(base), test_pki), 1, 50_000)[0]
        reply = rawhttp.exchange(ctx, port, again[1])
        assert reply.status == 200 and b"ResponseStatusType:Success" in reply.body
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert again[0] in _check_consistent(data)
