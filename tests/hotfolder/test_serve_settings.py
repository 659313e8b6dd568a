"""``ps-agent serve`` reads ``config.toml`` (the window's and ``ps-agent setup``'s settings) and the command
line overrides it. Real processes in AIR mode (establishment PKCS#12 of the test PKI) against the real
sandbox: with everything in the file the service needs no option but ``--config``/``--home`` (as the
systemd unit); the file's port is used, ``--port`` wins; a disabled API does not listen, a disabled hot
folder is not watched; a bad value or nothing to serve exits 2 in French naming the key; SIGTERM stops it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from tests.fixtures.integration import identity_of, pdf
from tests.hotfolder.conftest import sidecar_for

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^ps-agent prêt : (.*)$", re.M)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _user_json(path: Path) -> Path:
    ident = identity_of("secretary")
    data = {k: getattr(ident, k) for k in ("id_nat", "family_name", "given_name", "profession_code",
                                             "specialty_code", "non_ps_role")}  # fmt: skip
    data["activity"] = dataclasses.asdict(ident.activity)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _settings(dmp: Any, pki: Any, base: Path, **over: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A complete ``config.toml`` for an AIR service (sections of ``over`` merged in)."""
    org = pki.establishment
    raw: dict[str, dict[str, Any]] = {
        "dmp": {"environment": dmp.base_url, "ca_file": str(pki.ca_bundle)},
        "establishment": {
            "auth_p12": str(org.auth_p12),
            "sign_p12": str(org.sign_p12),
            "user": str(_user_json(base / "user.json")),
        },
        "hotfolder": {"inbox": str(base / "depot")},
        "api": {"port": _free_port()},
    }
    for section, keys in over.items():
        raw.setdefault(section, {}).update(keys)
    return raw


class Served:
    """``ps-agent serve --config C --home H [extra]`` with ``config.toml`` written in C."""

    def __init__(self, base: Path, raw: dict[str, dict[str, Any]], *extra: str) -> None:
        from sandbox.pki import P12_PASSPHRASE

        self.base = base
        self.config = base / "config"
        self.config.mkdir(parents=True, exist_ok=True)
        (self.config / "config.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
        self.log = base / "serve.log"
        self.cmd = [sys.executable, "-m", "ps_agent", "serve", "--config", str(self.config), *extra]
        env = {k: v for k, v in os.environ.items() if k not in ("PS_AGENT_ENV", "PS_AGENT_CA")}
        self.env = {**env, "PS_AGENT_P12_PASSPHRASE": P12_PASSPHRASE, "PYTHONPATH": str(ROOT),
                    "PS_AGENT_HOME": str(base / "home")}  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd, capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=60)

    def start(self) -> str:
        """Start it; the "prêt" line."""
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT
            )
        end = time.monotonic() + 60
        while time.monotonic() < end:
            found = READY.search(self.text())
            if found:
                return found.group(1)
            assert self.proc.poll() is None, self.text()
            time.sleep(0.05)
        raise AssertionError("service did not start: " + self.text())

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, self.text()
        assert "ps-agent arrêté." in self.text()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def status(self, port: int) -> dict[str, Any]:
        token = (self.config / "api-token").read_text(encoding="ascii").strip()
        r = httpx.get(f"http://127.0.0.1:{port}/v1/status", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


@pytest.fixture
def served() -> Any:
    started: list[Served] = []

    def make(base: Path, raw: dict[str, dict[str, Any]], *extra: str) -> Served:
        s = Served(base, raw, *extra)
        started.append(s)
        return s

    yield make
    for s in started:
        s.kill()


def _drop(inbox: Path, name: str, title: str) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for suffix, data in ((".pdf", pdf(title)), (".json", json.dumps(sidecar_for(title)).encode())):
        tmp = inbox / f".{name}{suffix}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, inbox / f"{name}{suffix}")


def _wait_receipt(svc: Served, done: Path, name: str, timeout: float = 120) -> dict[str, Any]:
    end = time.monotonic() + timeout
    path = done / f"{name}.receipt.json"
    while not path.exists():
        assert svc.proc is not None and svc.proc.poll() is None, svc.text()
        assert time.monotonic() < end, svc.text()
        time.sleep(0.05)
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


posix_only = pytest.mark.skipif(os.name != "posix", reason="SIGTERM sent to a child process (POSIX signals)")


def _unit_command(config: Path) -> list[str]:
    """The options of ``installer/ps-agent.service``'s ExecStart (/etc/ps-agent replaced by ``config``)."""
    unit = (ROOT / "installer" / "ps-agent.service").read_text(encoding="utf-8")
    line = re.search(r"^ExecStart=(.*(?:\\\n.*)*)$", unit, re.M)
    assert line is not None
    argv = shlex.split(line.group(1).replace("\\\n", " "))
    assert Path(argv[0]).name == "ps-agent" and argv[1] == "serve", argv
    assert re.search(r"^Environment=PS_AGENT_HOME=", unit, re.M)  # the data folder: set as in Served
    return [a.replace("/etc/ps-agent", str(config)) for a in argv[2:]]


@posix_only
def test_everything_from_the_file_as_the_systemd_unit_then_sigterm(
    dmp: Any, test_pki: Any, tmp_path: Path, served: Any
) -> None:
    raw = _settings(dmp, test_pki, tmp_path)
    port = raw["api"]["port"]
    svc = served(tmp_path, raw)
    svc.cmd = [*svc.cmd[:4], *_unit_command(svc.config)]  # exactly the unit's options: all from config.toml
    assert svc.cmd[4:] == ["--config", str(svc.config)]
    ready = svc.start()
    assert f"API locale http://127.0.0.1:{port} " in ready
    assert f"dossier de dépôt {tmp_path / 'depot'}" in ready
    assert svc.status(port)["card"]["mode"] == "INDIRECTE_RENFORCEE"
    _drop(tmp_path / "depot" / "inbox", "cr1", f"CR conf {tmp_path.name[-12:]}")
    receipt = _wait_receipt(svc, tmp_path / "depot" / "done", "cr1")
    assert receipt["ACK_RECEPTION_DMP"] == "Y"
    svc.stop()
    assert not _listening(port)


@posix_only
def test_port_option_overrides_the_file(dmp: Any, test_pki: Any, tmp_path: Path, served: Any) -> None:
    raw = _settings(dmp, test_pki, tmp_path)
    file_port, cli_port = raw["api"]["port"], _free_port()
    svc = served(tmp_path, raw, "--port", str(cli_port))
    ready = svc.start()
    assert f"API locale http://127.0.0.1:{cli_port} " in ready
    assert svc.status(cli_port)["card"]["mode"] == "INDIRECTE_RENFORCEE"
    assert not _listening(file_port)
    svc.stop()


@posix_only
def test_api_disabled_does_not_listen_the_hot_folder_still_works(
    dmp: Any, test_pki: Any, tmp_path: Path, served: Any
) -> None:
    raw = _settings(dmp, test_pki, tmp_path, api={"enabled": False})
    port = raw["api"]["port"]
    svc = served(tmp_path, raw)
    ready = svc.start()
    assert "API locale désactivée" in ready and "http://" not in ready
    assert not _listening(port)
    assert not (svc.config / "api-token").exists()  # no API: no token created
    _drop(tmp_path / "depot" / "inbox", "cr2", f"CR sans API {tmp_path.name[-12:]}")
    assert _wait_receipt(svc, tmp_path / "depot" / "done", "cr2")["ACK_RECEPTION_DMP"] == "Y"
    svc.stop()


@posix_only
def test_hotfolder_disabled_is_not_watched(dmp: Any, test_pki: Any, tmp_path: Path, served: Any) -> None:
    raw = _settings(dmp, test_pki, tmp_path, hotfolder={"enabled": False})
    _drop(tmp_path / "depot" / "inbox", "cr3", "CR jamais déposé")
    svc = served(tmp_path, raw)
    ready = svc.start()
    assert "dossier de dépôt désactivé (réglage hotfolder.enabled)" in ready
    assert svc.status(raw["api"]["port"])["queue"] is not None  # the API runs
    # a watched folder gets its done/, rejected/, work/ and ledger at start: none here, the pair untouched
    assert sorted(p.name for p in (tmp_path / "depot").iterdir()) == ["inbox"]
    assert sorted(p.name for p in (tmp_path / "depot" / "inbox").iterdir()) == ["cr3.json", "cr3.pdf"]
    svc.stop()


@posix_only
def test_done_setting_is_honoured(dmp: Any, test_pki: Any, tmp_path: Path, served: Any) -> None:
    done = tmp_path / "traites"
    raw = _settings(dmp, test_pki, tmp_path, hotfolder={"done": str(done)})
    svc = served(tmp_path, raw, "--sans-api")
    ready = svc.start()
    assert f"documents traités rangés dans {done}" in ready
    _drop(tmp_path / "depot" / "inbox", "cr5", f"CR traités {tmp_path.name[-12:]}")
    assert _wait_receipt(svc, done, "cr5")["ACK_RECEPTION_DMP"] == "Y"
    assert stat.S_IMODE(done.stat().st_mode) == 0o700
    assert sorted(p.name for p in done.iterdir()) == ["cr5.json", "cr5.pdf", "cr5.receipt.json"]
    assert not (tmp_path / "depot" / "done").exists()
    svc.stop()


@posix_only
def test_folder_named_inbox_is_the_inbox_itself(dmp: Any, test_pki: Any, tmp_path: Path, served: Any) -> None:
    raw = _settings(dmp, test_pki, tmp_path, hotfolder={"inbox": str(tmp_path / "depot" / "inbox")})
    svc = served(tmp_path, raw, "--sans-api")
    ready = svc.start()
    assert f"dossier de dépôt {tmp_path / 'depot'} " in ready
    assert f"documents à déposer dans {tmp_path / 'depot' / 'inbox'}" in ready
    svc.stop()


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"api": {"port": 9982}}, "api.port"),
        ({"api": {"enabled": "oui"}}, "api.enabled"),
        ({"session": {"idle_timeout_minutes": 0}}, "session.idle_timeout_minutes"),
        ({"establishment": {"user": "/nonexistent/responsable.json"}}, "establishment.user"),
        ({"hotfolder": {"color": "blue"}}, "hotfolder.color"),
        ({"hotfolder": {"done": "traites"}}, "hotfolder.done"),
    ],
)
def test_bad_value_exits_2_naming_the_key(
    dmp: Any, test_pki: Any, tmp_path: Path, served: Any, over: dict[str, Any], key: str
) -> None:
    raw = _settings(dmp, test_pki, tmp_path, **over)
    done = served(tmp_path, raw).run()
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Réglage « {key} »" in done.stderr
    assert "Traceback" not in done.stderr and "prêt" not in done.stdout


def test_nothing_to_serve_exits_2(dmp: Any, test_pki: Any, tmp_path: Path, served: Any) -> None:
    raw = _settings(dmp, test_pki, tmp_path, api={"enabled": False}, hotfolder={"enabled": False})
    done = served(tmp_path, raw).run()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Rien à lancer" in done.stderr and "api.enabled" in done.stderr
    assert "hotfolder.enabled" in done.stderr
    # the reason named is the command line's when it is the one disabling
    only_api = served(tmp_path / "again", raw, "--sans-depot").run()
    assert only_api.returncode == 2 and "--sans-depot" in only_api.stderr


def test_air_without_responsible_user_exits_2(dmp: Any, test_pki: Any, tmp_path: Path, served: Any) -> None:
    raw = _settings(dmp, test_pki, tmp_path)
    del raw["establishment"]["user"]
    done = served(tmp_path, raw).run()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "establishment.user" in done.stderr and "--utilisateur" in done.stderr
