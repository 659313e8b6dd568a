"""The Debian package, end to end on this machine: build it (installer/build-deb.sh), install it
(``dpkg -i``), run the INSTALLED ``ps-agent`` (cwd in a temp dir, no PYTHONPATH, the user's own folders)
against the sandbox DMP/INSi started from the checkout and the emulated card, upgrade it over itself with
a deposit queue in the previous schema, then remove and purge it: the audit journal stays."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ps_agent.audit.journal import AuditJournal
from sandbox.demo import DEMO_ADULT

ROOT = Path(__file__).resolve().parents[2]
LOCK = "/tmp/ps-agent-deb.lock"
INSTALLED = Path("/usr/bin/ps-agent")

pytestmark = [pytest.mark.slow]

# The deposit queue as main wrote it before the queue states (git show 4fefc2b:ps_agent/outbox/__init__.py).
OLD_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    submission_set_uid TEXT PRIMARY KEY,
    patient_ins TEXT NOT NULL, patient_oid TEXT NOT NULL, ins_status TEXT NOT NULL,
    document_uids TEXT NOT NULL, visibility TEXT NOT NULL, replaces TEXT NOT NULL,
    created TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS pending_document (
    submission_set_uid TEXT NOT NULL REFERENCES pending(submission_set_uid) ON DELETE CASCADE,
    position INTEGER NOT NULL, content BLOB NOT NULL, PRIMARY KEY (submission_set_uid, position)
);
"""
OLD_UID = "1.2.250.1.999.1.1.20260101.42"


def _dpkg_or_skip() -> None:
    if shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg is not available on this machine (not Debian/Ubuntu)")
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root (CI runs as root)")
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "ps-agent"], capture_output=True, text=True, check=False
    ).stdout
    if "ok installed" in status:
        pytest.skip(
            "a ps-agent package is already installed here and the test would remove it "
            "(`dpkg --purge ps-agent` first to run it)"
        )


def _sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, **kw)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done


def _purge() -> None:
    subprocess.run(["dpkg", "--purge", "ps-agent"], capture_output=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the package, the same one as a newer version), built once; the lock serialises concurrent runs."""
    _dpkg_or_skip()
    out = tmp_path_factory.mktemp("deb")
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = {**os.environ, "DEB_GZIP_LEVEL": "1"}
        if (ROOT / ".venv/bin/python").exists() is False:
            env["BUILD_PY"] = os.environ.get("BUILD_PY", "/usr/bin/python3")
        # [I] the test builds the headless variant (no PySide6: 3x smaller, same agent); the window's
        # files are checked by test_deb_full_has_the_desktop_entries when PS_AGENT_DEB_FULL=1.
        built = _sh(["bash", str(ROOT / "installer/build-deb.sh"), "--sans-ui", "--out", str(out)], env=env)
        deb = Path(built.stdout.strip().splitlines()[-1])
        assert deb.is_file()
        # the "next release": same tree, higher version
        tree = out / "tree"
        _sh(["dpkg-deb", "-R", str(deb), str(tree)])
        control = tree / "DEBIAN/control"
        version = next(x for x in control.read_text().splitlines() if x.startswith("Version:")).split()[1]
        control.write_text(control.read_text().replace(f"Version: {version}", f"Version: {version}+1"))
        newer = out / "newer.deb"
        _sh(["dpkg-deb", "--build", "--root-owner-group", "-Zgzip", "-z1", str(tree), str(newer)])
        _purge()
        try:
            yield deb, newer
        finally:
            _purge()


def _old_outbox(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    con = sqlite3.connect(path)
    con.executescript(OLD_OUTBOX_SCHEMA)
    con.execute(
        "INSERT INTO pending VALUES (?,?,?,?,?,?,?,?,?)",
        (
            OLD_UID,
            DEMO_ADULT.ins,
            DEMO_ADULT.oid,
            "QUALIFIE",
            '["1.2.3.4"]',
            "[false, false, false]",  # visibility: the 3 booleans the old Outbox.add wrote
            "[]",
            "2026-01-01T10:00:00+00:00",
            2,
        ),
    )
    con.execute("INSERT INTO pending_document VALUES (?,?,?)", (OLD_UID, 0, b"<ClinicalDocument/>"))
    con.commit()
    con.close()
    os.chmod(path, 0o600)


@pytest.mark.pcsc
def test_install_run_upgrade_remove_keeps_the_journal(
    debs: tuple[Path, Path],
    demo_sandbox: Any,
    insi_running: Any,
    test_pki: Any,
    virtual_card: Any,
    tmp_path: Path,
) -> None:
    deb, newer = debs
    user = tmp_path / "dupont"  # the professional's home: the agent's data go there, never under /opt
    user.mkdir(mode=0o700)
    work = tmp_path / "cwd"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PS_AGENT_", "XDG_", "PYTHON", "VIRTUAL_ENV", "SSH_"))
    }
    env.update(
        HOME=str(user),
        PATH="/usr/bin:/bin",
        PS_AGENT_ENV=demo_sandbox.base_url,
        PS_AGENT_CA=str(test_pki.ca_bundle),
        PS_AGENT_INSI_URL=insi_running.cpx_url,
        PS_AGENT_READER=virtual_card.reader_name,
        PS_AGENT_TEST_PIN="1234",
    )

    def agent(*argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(INSTALLED), *argv],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode in ok, (
            f"ps-agent {' '.join(argv)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done

    # --- install
    _sh(["dpkg", "-i", str(deb)])
    assert INSTALLED.is_file()
    assert Path("/lib/systemd/system/ps-agent@.service").is_file()
    assert Path("/usr/lib/systemd/user/ps-agent.service").is_file()
    assert "ExecStart=/usr/bin/ps-agent serve" in Path("/usr/lib/systemd/user/ps-agent.service").read_text()
    if (ROOT / "installer/ps-agent.service").is_file():  # the server unit, adapted to /usr/bin/ps-agent
        unit = Path("/lib/systemd/system/ps-agent.service").read_text()
        assert "ExecStart=/usr/bin/ps-agent serve" in unit and "/opt/ps-agent/.venv" not in unit
    where = subprocess.run(
        ["/opt/ps-agent/venv/bin/python", "-c", "import ps_agent, sys; print(ps_agent.__file__, sys.prefix)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith("/opt/ps-agent/venv/lib/") and str(ROOT) not in where  # not the checkout
    version = agent("--version").stdout.strip()
    assert version.startswith("ps-agent ")

    # --- the user's data: a deposit queue in the previous schema, settings from a silent install
    data = user / ".local/share/ps-agent"
    _old_outbox(data / "outbox.sqlite3")
    deployment = tmp_path / "deploiement.toml"
    deployment.write_text(
        f'[dmp]\nenvironment = "{demo_sandbox.base_url}"\nca_file = "{test_pki.ca_bundle}"\n',
        encoding="utf-8",
    )
    agent("setup", "--depuis", str(deployment), "--silencieux")
    settings = user / ".config/ps-agent/config.toml"
    assert settings.is_file()
    settings_bytes = settings.read_bytes()

    # --- headless smoke journey from the installed files
    virtual_card.insert("gp")
    agent("card", "status")
    agent("dmp", "status", "--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid)
    agent("dmp", "search", "--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid, "--rubrique", "Comptes rendus")
    agent("audit", "verify")
    report = json.loads(agent("doctor", "--json").stdout)
    assert report["ok"] is True, [c for c in report["checks"] if not c["ok"]]
    journal = data / "audit.sqlite3"
    assert journal.is_file() and not any(Path("/opt/ps-agent").rglob("audit.sqlite3"))
    count_before = _verify(journal)
    assert count_before >= 2
    assert list((user / ".local/state/ps-agent/log").glob("ps-agent.log*"))  # logs in the user's log folder

    # --- upgrade over it: settings, queue and journal kept, the old queue migrated on open
    _sh(["dpkg", "-i", str(newer)])
    assert agent("--version").stdout.strip() == version  # same code, newer package
    assert settings.read_bytes() == settings_bytes
    listed = agent("outbox", "list", "--json", ok=(0, 1))
    assert OLD_UID in listed.stdout, listed.stdout
    con = sqlite3.connect(data / "outbox.sqlite3")
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert "pending" not in tables and "queue_entry" in tables
    agent("dmp", "status", "--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid)
    count_after_upgrade = _verify(journal)
    assert count_after_upgrade > count_before

    # --- remove, then purge: the program goes, the journal stays intact
    journal_bytes = journal.read_bytes()
    _sh(["dpkg", "-r", "ps-agent"])
    assert not INSTALLED.exists() and not Path("/opt/ps-agent").exists()
    assert journal.read_bytes() == journal_bytes and settings.is_file()
    _sh(["dpkg", "--purge", "ps-agent"])
    assert journal.read_bytes() == journal_bytes
    assert (data / "outbox.sqlite3").is_file()
    assert _verify(journal) == count_after_upgrade


def _verify(path: Path) -> int:
    journal = AuditJournal(path)
    try:
        result = journal.verify()
    finally:
        journal.close()
    assert result.ok, result.message_fr
    return result.count


@pytest.mark.skipif(
    os.environ.get("PS_AGENT_DEB_FULL") != "1" and os.environ.get("CI") != "true",
    reason="the full package (PySide6 in) is built in CI or with PS_AGENT_DEB_FULL=1",
)
def test_deb_full_has_the_desktop_entries(tmp_path: Path) -> None:
    _dpkg_or_skip()
    built = _sh(
        ["bash", str(ROOT / "installer/build-deb.sh"), "--out", str(tmp_path)],
        env={**os.environ, "DEB_GZIP_LEVEL": "1"},
    )
    deb = built.stdout.strip().splitlines()[-1]
    listing = _sh(["dpkg-deb", "-c", deb]).stdout
    for path in (
        "./usr/share/applications/ps-agent.desktop",
        "./etc/xdg/autostart/ps-agent.desktop",
        "./usr/lib/ps-agent/ps-agent-window",
        "site-packages/PySide6/",
    ):
        assert path in listing, path
    control = _sh(["dpkg-deb", "-f", deb, "Depends"]).stdout
    assert "libxcb-cursor0" in control and "pcscd" in control
    # the packaged window starts (offscreen) from the extracted tree, not from the checkout
    tree = tmp_path / "x"
    _sh(["dpkg-deb", "-x", deb, str(tree)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PS_AGENT_", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path / "home"))
    _sh(
        [
            str(tree / "opt/ps-agent/venv/bin/python"),
            "-m",
            "ui",
            "--smoke",
            "--home",
            str(tmp_path / "agent"),
        ],
        cwd=tmp_path,
        env=env,
    )
