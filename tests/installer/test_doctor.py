"""``ps-agent doctor`` against the real parts: pcscd + vpcd + the emulated card, the sandbox DMP and INSi
over TLS with the test PKI, real journal and queue files; then each usual failure, one at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ps_agent.config import environment
from ps_agent.doctor import (
    CLOCK_FAIL_S,
    CLOCK_WARN_S,
    Check,
    DoctorOptions,
    Probe,
    all_ok,
    check_clock,
    detect_remote_session,
    probe_https,
    run_checks,
)
from tests.installer.conftest import free_port, tamper_journal

ROOT = Path(__file__).resolve().parents[2]
SOFTHSM = Path("/usr/lib/softhsm/libsofthsm2.so")


def _options(sandbox: Any, pki: Any, home: Path, **over: Any) -> DoctorOptions:
    base: dict[str, Any] = {
        "environment": environment(sandbox.base_url, ca_file=pki.ca_bundle),
        "home": home,
        "insi_url": "",
        "reader": "",
        "pkcs11_module": str(SOFTHSM) if SOFTHSM.is_file() else "",
        "environ": {},
        "platform": "linux",
    }
    base.update(over)
    return DoctorOptions(**base)


def _by_id(checks: list[Check]) -> dict[str, Check]:
    return {c.id: c for c in checks}


@pytest.mark.pcsc
def test_everything_holds_on_a_working_workstation(
    demo_sandbox: Any, insi_running: Any, test_pki: Any, virtual_card: Any, agent_home: Path
) -> None:
    virtual_card.insert("gp")
    checks = run_checks(
        _options(
            demo_sandbox, test_pki, agent_home, insi_url=insi_running.cpx_url, reader=virtual_card.reader_name
        )
    )
    by_id = _by_id(checks)
    assert all_ok(checks), [c for c in checks if not c.ok]
    assert list(by_id) == [
        "pcscd", "readers", "card", "middleware", "dmp_tls", "insi_tls",
        "clock", "remote_session", "queue", "journal", "journal_chain",
    ]  # fmt: skip
    assert "CPS" in by_id["card"].label_fr and virtual_card.reader_name in by_id["card"].detail
    assert "écart" in by_id["clock"].detail  # the clock was compared with a real server Date
    assert not by_id["clock"].warning
    assert "3 trace(s)" in by_id["journal"].detail
    if SOFTHSM.is_file():
        assert not by_id["middleware"].warning and str(SOFTHSM) in by_id["middleware"].detail
        assert "SoftHSM" in by_id["middleware"].detail  # the module's maker and version are shown


@pytest.mark.pcsc
def test_cli_json_exit_0_then_1_when_the_card_is_out(
    demo_sandbox: Any, insi_running: Any, test_pki: Any, virtual_card: Any, agent_home: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "XRDP"))}
    env.update(
        PYTHONPATH=str(ROOT),
        PS_AGENT_HOME=str(agent_home),
        PS_AGENT_ENV=demo_sandbox.base_url,
        PS_AGENT_CA=str(test_pki.ca_bundle),
        PS_AGENT_INSI_URL=insi_running.cpx_url,
        PS_AGENT_READER=virtual_card.reader_name,
    )
    cmd = [sys.executable, "-m", "ps_agent", "doctor", "--json"]
    virtual_card.insert("gp")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and {c["id"] for c in report["checks"]} >= {"card", "clock", "journal_chain"}
    virtual_card.remove()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    card = next(c for c in json.loads(done.stdout)["checks"] if c["id"] == "card")
    assert card["ok"] is False and "Insérez votre carte CPS" in card["fix_fr"]
    # the same failure, in text: the fix in French under the line
    done = subprocess.run(cmd[:-1], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert (
        done.returncode == 1 and "[ÉCHEC] Carte CPS" in done.stdout and "→ Insérez votre carte" in done.stdout
    )


@pytest.mark.pcsc
def test_a_reader_that_does_not_exist(
    pcscd_service: str, demo_sandbox: Any, test_pki: Any, tmp_path: Path
) -> None:
    by_id = _by_id(run_checks(_options(demo_sandbox, test_pki, tmp_path, reader="Lecteur inexistant 99 00")))
    assert by_id["pcscd"].ok
    assert not by_id["readers"].ok and "introuvable" in by_id["readers"].label_fr
    assert pcscd_service in by_id["readers"].fix_fr  # names the readers that are there
    assert not by_id["card"].ok and "Corrigez d'abord le lecteur" in by_id["card"].fix_fr


def test_wrong_ca_is_a_certificate_failure(demo_sandbox: Any, foreign_pki: Any) -> None:
    probe = probe_https(demo_sandbox.base_url, str(foreign_pki.ca_bundle), timeout_s=5)
    assert not probe.handshake and probe.error == "cert", probe


def test_wrong_ca_in_the_report(demo_sandbox: Any, foreign_pki: Any, test_pki: Any, tmp_path: Path) -> None:
    opts = _options(demo_sandbox, test_pki, tmp_path)
    opts = DoctorOptions(**{**opts.__dict__, "environment": opts.environment.with_ca(foreign_pki.ca_bundle)})
    dmp = _by_id(run_checks(opts))["dmp_tls"]
    assert not dmp.ok and "n'est pas reconnu" in dmp.fix_fr and str(foreign_pki.ca_bundle) in dmp.fix_fr


def test_right_ca_verifies_the_server_that_wants_a_client_certificate(
    demo_sandbox: Any, test_pki: Any
) -> None:
    probe = probe_https(demo_sandbox.base_url, str(test_pki.ca_bundle), timeout_s=5)
    assert probe.handshake and probe.error == "", probe


def test_unreachable_port(test_pki: Any, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}/si-dmp-server/v2/services/"
    opts = DoctorOptions(environment(url, ca_file=test_pki.ca_bundle), tmp_path, environ={}, platform="linux")
    by_id = _by_id(run_checks(opts))
    assert not by_id["dmp_tls"].ok and "ne répond pas" in by_id["dmp_tls"].fix_fr
    assert by_id["clock"].warning and "non vérifiée" in by_id["clock"].label_fr
    assert not all_ok(by_id.values())


def test_clock_skew_against_the_insi_server_date(insi_running: Any, test_pki: Any, tmp_path: Path) -> None:
    probe = probe_https(insi_running.cpx_url, str(test_pki.ca_bundle), timeout_s=5)
    assert probe.handshake and probe.server_date is not None, probe
    assert abs((datetime.now(UTC) - probe.server_date).total_seconds()) < 5
    real = probe.server_date
    env = environment("sandbox")

    def at(offset_s: float) -> Check:
        opts = DoctorOptions(env, tmp_path, now=lambda: real + timedelta(seconds=offset_s))
        return check_clock(opts, [("INSi", probe)])

    assert at(0).ok and not at(0).warning
    late = at(CLOCK_WARN_S + 30)
    assert late.ok and late.warning and "w32tm /resync" in late.fix_fr
    early = at(-(CLOCK_FAIL_S + 1))
    assert not early.ok and "refusera" in early.fix_fr and "-301" in early.detail


def test_clock_without_any_server_date_is_a_warning(tmp_path: Path) -> None:
    check = check_clock(DoctorOptions(environment("sandbox"), tmp_path), [("DMP", Probe(True))])
    assert check.ok and check.warning


def test_tampered_journal(agent_home: Path, demo_sandbox: Any, test_pki: Any) -> None:
    tamper_journal(agent_home / "audit.sqlite3")
    by_id = _by_id(run_checks(_options(demo_sandbox, test_pki, agent_home)))
    assert by_id["journal"].ok  # readable
    chain = by_id["journal_chain"]
    assert not chain.ok and "ne le supprimez pas" in chain.fix_fr and "2" in chain.detail


def test_unreadable_queue(tmp_path: Path, demo_sandbox: Any, test_pki: Any) -> None:
    tmp_path.joinpath("outbox.sqlite3").write_bytes(b"not a database" * 100)
    queue = _by_id(run_checks(_options(demo_sandbox, test_pki, tmp_path)))["queue"]
    assert not queue.ok and "ne supprimez pas" in queue.fix_fr


def test_doctor_writes_nothing_in_an_empty_home(tmp_path: Path, demo_sandbox: Any, test_pki: Any) -> None:
    home = tmp_path / "agent"
    home.mkdir()
    by_id = _by_id(run_checks(_options(demo_sandbox, test_pki, home)))
    assert by_id["queue"].ok and by_id["journal"].ok and "pas encore" in by_id["journal"].label_fr
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("environ", "platform", "loginctl", "expected"),
    [
        ({"SESSIONNAME": "RDP-Tcp#3"}, "win32", None, "Bureau à distance Windows"),
        ({"SESSIONNAME": "Console"}, "win32", None, ""),
        ({"SESSIONNAME": "ICA-tcp#1"}, "win32", None, "Citrix"),
        ({"SSH_CONNECTION": "10.0.0.2 5022 10.0.0.1 22"}, "linux", None, "SSH"),
        ({"XRDP_SESSION": "1"}, "linux", None, "xrdp"),
        ({}, "linux", lambda: "yes\n", "loginctl"),
        ({}, "linux", lambda: "no\n", ""),
        ({}, "linux", None, ""),
    ],
)
def test_remote_session_detection(
    environ: dict[str, str], platform: str, loginctl: Any, expected: str
) -> None:
    found = detect_remote_session(environ, platform, loginctl)
    assert (expected in found) if expected else found == ""


def test_remote_session_is_a_warning_with_the_one_reader_rule(tmp_path: Path) -> None:
    from ps_agent.doctor import check_remote_session

    check = check_remote_session(
        DoctorOptions(
            environment("sandbox"), tmp_path, environ={"SESSIONNAME": "RDP-Tcp#0"}, platform="win32"
        )
    )
    assert check.ok and check.warning and "machine où tourne l'agent" in check.fix_fr


def test_configured_middleware_that_is_not_a_module(tmp_path: Path) -> None:
    from ps_agent.doctor import check_middleware

    fake = tmp_path / "libcps3_pkcs11_lux.so"
    fake.write_bytes(b"not an ELF")
    check = check_middleware(
        DoctorOptions(environment("sandbox"), tmp_path, pkcs11_module=str(fake), environ={})
    )
    assert not check.ok and "Cryptolib" in check.fix_fr
    missing = check_middleware(DoctorOptions(environment("sandbox"), tmp_path, environ={}, platform="win32"))
    assert missing.ok and missing.warning  # no Cryptolib at the Windows paths on this machine


@pytest.mark.pcsc
def test_a_card_held_by_another_program(
    virtual_card: Any, demo_sandbox: Any, test_pki: Any, tmp_path: Path
) -> None:
    from ps_agent.card.pcsc import PcscConnection
    from ps_agent.doctor import check_card

    virtual_card.insert("gp")
    holder = PcscConnection(virtual_card.reader_name, exclusive=True)
    try:
        assert holder.share_mode == "exclusive"
        opts = _options(demo_sandbox, test_pki, tmp_path, reader=virtual_card.reader_name)
        check = check_card(opts, [virtual_card.reader_name])
    finally:
        holder.close()
    assert check.ok and check.warning and "autre programme" in check.label_fr
    assert check_card(opts, [virtual_card.reader_name]).warning is False  # released: read normally
