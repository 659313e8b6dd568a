"""The README's first command, `bash installer/demo.sh`, in its non-interactive `--smoke` form.

It must start the sandbox DMP with the demo data and the sandbox INSi, insert the emulated card through
pcscd/vpcd, and let the agent's CLI read the demo patient's DMP status with the card, then go carte Vitale
→ INSi → validated identity → DMP status of the demo patient, and verify the audit journal.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.card import LOCK_PATH

pytestmark = pytest.mark.pcsc


def _free_port() -> int:
    """A port P with P, P+1 and P+2 free: the demo puts the sandbox DMP on P, the INSi on the next two."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + 2 > 65535:
            continue
        try:
            for port in (base + 1, base + 2):
                with socket.socket() as t:
                    t.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no three consecutive free ports on 127.0.0.1")


def test_demo_smoke(repo_root: Path, tmp_path: Path, pcscd_service: str) -> None:
    env = dict(os.environ, PS_AGENT_DEMO_HOME=str(tmp_path / "demo"), PS_AGENT_DEMO_PORT=str(_free_port()))
    env.pop("PS_AGENT_TEST_PIN", None)
    with open(LOCK_PATH, "a") as lock:  # the single virtual reader: wait for other test processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(
            ["bash", str(repo_root / "installer" / "demo.sh"), "--smoke"],
            env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("DMP actif") == 2, out[-3000:]  # by INS, then by the qualified local identity
    # the identity journey: the Vitale card read, INSi answered (RECUP), the passport made it QUAL
    assert "Carte Vitale n° 000000000105 (1 bénéficiaire(s))" in out
    assert "Identité n° 1 — Identité récupérée (RECUP)" in out
    assert "INS : 279037505612309 (OID 1.2.250.1.213.1.4.10)" in out
    assert "Identité n° 1 — Identité qualifiée (QUAL)" in out and "Pièce vérifiée : passeport" in out
    assert "Utilisable pour le DMP : oui" in out
    assert "Journal d'audit intègre" in out
    assert "demo.sh: smoke check passed" in out
    assert "Traceback" not in out
    # The agent's log files of that full demo run hold no patient data (issue 13, logs): names, INS, NIR.
    from sandbox.demo import DEMO_PATIENTS

    logs = sorted((tmp_path / "demo").rglob("*.log*"))
    agent_logs = [p for p in logs if "ps-agent.log" in p.name]
    assert agent_logs, f"no agent log written under {tmp_path / 'demo'}: {logs}"
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in agent_logs)
    for patient in DEMO_PATIENTS:
        for secret in (patient.ins, patient.family_name, patient.ins[:13]):
            assert secret not in text, f"{secret!r} found in the agent's logs"
