"""``ps-agent serve`` as a real process in AIR mode (establishment PKCS#12 of the test PKI) against the
real sandbox: a ``kill -9`` mid-batch and a restart neither lose nor repeat an item; SIGTERM stops cleanly;
the API answers with the token from the config folder."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.access.policy import PatientRef
from ps_agent.auth.model import AuthMode
from ps_agent.services import Services
from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import agent_config, credentials, identity_of, pdf
from tests.hotfolder.conftest import sidecar_for

ROOT = Path(__file__).resolve().parents[2]
N_ITEMS = 12

pytestmark = pytest.mark.skipif(os.name != "posix", reason="kill -9 of a child process (POSIX signals)")


def _user_json(path: Path) -> Path:
    ident = identity_of("secretary")
    data = {k: getattr(ident, k) for k in ("id_nat", "family_name", "given_name", "profession_code",
                                             "specialty_code", "non_ps_role")}  # fmt: skip
    data["activity"] = dataclasses.asdict(ident.activity)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


class Service:
    def __init__(self, dmp: Any, pki: Any, base: Path) -> None:
        from sandbox.pki import P12_PASSPHRASE

        self.base = base
        self.depot = base / "depot"
        self.log = base / "serve.log"
        org = pki.establishment
        self.cmd = [
            sys.executable, "-m", "ps_agent", "serve", "--env", dmp.base_url, "--ca", str(pki.ca_bundle),
            "--home", str(base / "home"), "--config", str(base / "config"), "--port", "0",
            "--etablissement", str(org.auth_p12), "--signature-etablissement", str(org.sign_p12),
            "--utilisateur", str(_user_json(base / "user.json")), "--depot", str(self.depot),
        ]  # fmt: skip
        # the shortest lease the agent allows (client timeout + 5 s): entries the killed process had
        # claimed are taken over once it expires, never before (another process might still be sending)
        self.env = {**os.environ, "PS_AGENT_P12_PASSPHRASE": P12_PASSPHRASE, "PYTHONPATH": str(ROOT),
                    "PS_AGENT_QUEUE_LEASE_S": "1"}  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> str:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            found = re.findall(r"API locale (http://127\.0\.0\.1:\d+)", self.log.read_text(encoding="utf-8"))
            if len(found) > self.starts:
                self.starts += 1
                return str(found[-1])
            assert self.proc.poll() is None, self.log.read_text(encoding="utf-8")
            time.sleep(0.05)
        raise AssertionError("service did not start: " + self.log.read_text(encoding="utf-8"))

    def receipts(self) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_text(encoding="utf-8")) for p in (self.depot / "done").glob("*.receipt.json")
        ]

    def wait_receipts(self, n: int, timeout: float = 120) -> None:
        """Until ``n`` items have their receipt (duplicates not counted)."""
        end = time.monotonic() + timeout
        while len([r for r in self.receipts() if not r.get("doublon")]) < n:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text(encoding="utf-8")
            assert time.monotonic() < end, f"{len(self.receipts())}/{n}: " + self.log.read_text(
                encoding="utf-8"
            )
            time.sleep(0.02)


def _drop(inbox: Path, name: str, title: str) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f".{name}.pdf.tmp"
    tmp.write_bytes(pdf(title))
    os.replace(tmp, inbox / f"{name}.pdf")
    tmp = inbox / f".{name}.json.tmp"
    tmp.write_text(json.dumps(sidecar_for(title)), encoding="utf-8")
    os.replace(tmp, inbox / f"{name}.json")


def test_kill_9_mid_batch_then_restart_neither_loses_nor_repeats(
    dmp: Any, test_pki: Any, tmp_path: Path
) -> None:
    svc = Service(dmp, test_pki, tmp_path)
    run_id = tmp_path.name[-12:]
    titles = [f"CR kill {run_id} {i}" for i in range(N_ITEMS)]
    for i, t in enumerate(titles):
        _drop(svc.depot / "inbox", f"k{i}", t)
    url = svc.start()
    token = (tmp_path / "config" / "api-token").read_text(encoding="ascii").strip()
    status = httpx.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {token}"}).json()
    assert status["card"]["mode"] == "INDIRECTE_RENFORCEE"
    svc.wait_receipts(1)
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGKILL)  # mid-batch: other items are in flight
    svc.proc.wait(timeout=30)
    assert len(svc.receipts()) < N_ITEMS
    svc.start()  # the service starts again on the same folder and home
    svc.wait_receipts(N_ITEMS, timeout=240)
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=60) == 0
    assert "ps-agent arrêté." in svc.log.read_text(encoding="utf-8")

    receipts = svc.receipts()
    assert len(receipts) == N_ITEMS and not any(r.get("doublon") for r in receipts)
    assert all(r["ACK_RECEPTION_DMP"] == "Y" for r in receipts)
    uids = {r["uniqueId"] for r in receipts}
    assert len(uids) == N_ITEMS
    assert list((svc.depot / "inbox").iterdir()) == []
    # the DMP holds each document exactly once (read by the GP, who may read)
    with Services(agent_config(dmp, test_pki, tmp_path / "gp-home")) as services:
        session = services.open_session(credentials(test_pki, "gp", AuthMode.DIRECTE))
        patient = session.patient(PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid, "QUAL"))
        patient.record_consent(how="oral")
        entries = patient.list_documents().value.entries
        session.close()
    mine = [e for e in entries if e.title in titles]
    assert sorted(e.title for e in mine) == sorted(titles)
    assert {e.unique_id for e in mine} == uids
    # and the service's queue has one registered entry per item
    with Services(agent_config(dmp, test_pki, tmp_path / "home")) as services:
        q = services.queue_entries()
    assert len(q) == N_ITEMS and all(e.state.value == "registered" for e in q)


def _in_flight(ledger: Path) -> int:
    """Items the running service has taken and not finished (its ledger, read beside it)."""
    import sqlite3

    if not ledger.exists():
        return 0
    con = sqlite3.connect(ledger, timeout=5)
    try:
        return int(
            con.execute("SELECT count(*) FROM item WHERE state IN ('building','queued')").fetchone()[0]
        )
    finally:
        con.close()


def test_kill_9_with_several_deposits_in_flight(dmp: Any, test_pki: Any, tmp_path: Path) -> None:
    """The DMP answers 300 ms late, so the service's workers hold several deposits at once; a ``kill -9``
    then, and a restart: none lost, none repeated (the sandbox's own listing and the queue say so)."""
    from sandbox.server.faults import FaultConfig

    n = 20
    svc = Service(dmp, test_pki, tmp_path)
    run_id = tmp_path.name[-12:]
    titles = [f"CR vol {run_id} {i}" for i in range(n)]
    for i, t in enumerate(titles):
        _drop(svc.depot / "inbox", f"v{i:02d}", t)
    action = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    dmp.faults.configure(FaultConfig(seed=5, latency_ms=300, latency_rate=1.0, actions=(action,)))
    try:
        svc.start()
        end = time.monotonic() + 120
        while not (_in_flight(svc.depot / "ledger.sqlite3") >= 2 and svc.receipts()):
            assert svc.proc is not None and svc.proc.poll() is None, svc.log.read_text(encoding="utf-8")
            assert time.monotonic() < end, "never two items in flight"
            time.sleep(0.01)
        assert svc.proc is not None
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait(timeout=30)
    finally:
        dmp.faults.clear()
    assert len(svc.receipts()) < n
    svc.start()
    svc.wait_receipts(n, timeout=240)
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=60) == 0
    receipts = svc.receipts()
    assert len(receipts) == n and not any(r.get("doublon") for r in receipts)
    uids = {r["uniqueId"] for r in receipts}
    assert len(uids) == n and list((svc.depot / "inbox").iterdir()) == []
    with Services(agent_config(dmp, test_pki, tmp_path / "gp-home")) as services:
        session = services.open_session(credentials(test_pki, "gp", AuthMode.DIRECTE))
        patient = session.patient(PatientRef(DEMO_ADULT.ins, DEMO_ADULT.oid, "QUAL"))
        patient.record_consent(how="oral")
        entries = patient.list_documents().value.entries
        session.close()
    mine = [e for e in entries if e.title in titles]
    assert sorted(e.title for e in mine) == sorted(titles)
    assert {e.unique_id for e in mine} == uids
    with Services(agent_config(dmp, test_pki, tmp_path / "home")) as services:
        q = services.queue_entries()
    assert len(q) == n and all(e.state.value == "registered" for e in q)
