"""``ps-agent setup``: interactive first run (stdin), silent install from a TOML file, French errors naming
the key, the API token, and ``AgentConfig`` loaded back from the written file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ps_agent.settings import (
    SettingsError,
    agent_config_from_file,
    load_settings,
    settings_path,
    validate,
)
from ps_agent.setup_config import SEGUR_NOTICE_FR, SEGUR_WARNING_FR, ensure_api_token, token_path

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_AGENT_")}
    env.update(PYTHONPATH=str(ROOT), PS_AGENT_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "ps_agent", "setup", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_interactive_first_run_with_the_sandbox_preselected(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # Enter = sandbox; no CA; no establishment certificate; no hot folder; « oui » to « J'ai compris »
    done = _run([], home, stdin="\n\n\n\n\noui\n")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Lecteurs" in out and "Cryptolib CPS" in out
    assert "1. Bac à sable local" in out and "[1]" in out  # sandbox first and preselected
    assert SEGUR_NOTICE_FR in out and SEGUR_WARNING_FR in out
    written = home / "config.toml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    data = tomllib.loads(written.read_text(encoding="utf-8"))
    assert data["dmp"]["environment"] == "sandbox"
    assert data["notice"]["segur_acknowledged_at"].startswith("20")
    token = home / "api-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 32


def test_interactive_refusing_the_notice_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _run([], home, stdin="3\n\n\n\n\nnon\n")
    assert done.returncode == 1
    assert "J'ai compris" in done.stderr
    assert not (home / "config.toml").exists()


def test_silent_install_from_a_file(tmp_path: Path, test_pki: Any) -> None:
    source = tmp_path / "deploiement.toml"
    inbox = tmp_path / "depot"
    source.write_text(
        f'[dmp]\nenvironment = "formation2"\nca_file = "{test_pki.ca_bundle}"\n'
        f'[hotfolder]\ninbox = "{inbox}"\n[api]\nport = 9990\n'
        '[notice]\nsegur_acknowledged_at = "2026-01-01T00:00:00+00:00"\n',
        encoding="utf-8",
    )
    home = tmp_path / "home"
    done = _run(["--depuis", str(source), "--silencieux"], home)
    assert done.returncode == 0, done.stderr
    settings = load_settings(settings_path(home))
    assert settings.dmp_environment == "formation2" and settings.api_port == 9990
    assert settings.hotfolder_inbox == str(inbox)
    assert settings.segur_acknowledged_at == ""  # never acknowledged on the user's behalf
    assert settings.insi_environment_name == "qualification-cpx"
    config = agent_config_from_file(settings_path(home), home=tmp_path / "data")
    assert config.environment.name == "formation2" and config.environment.ca_file == str(test_pki.ca_bundle)
    assert config.audit_path == tmp_path / "data" / "audit.sqlite3"
    # a second silent run (re-deployment) replaces the settings and keeps the token
    token = (home / "api-token").read_text()
    source.write_text('[dmp]\nenvironment = "production"\n', encoding="utf-8")
    assert _run(["--depuis", str(source), "--silencieux"], home).returncode == 0
    assert load_settings(settings_path(home)).dmp_environment == "production"
    assert (home / "api-token").read_text() == token


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ('[dmp]\nenvironment = "formation9"\n', "dmp.environment", "inconnu"),
        ('[dmp]\nenvironement = "sandbox"\n', "dmp.environement", "clé inconnue"),
        ("[api]\nport = 80\n", "api.port", "entre 1024 et 65535"),
        ("[api]\nport = 9982\n", "api.port", "DmpConnect"),
        ('[api]\nport = "9983"\n', "api.port", "nombre entier"),
        ('[dmp]\nca_file = "/nulle/part/ca.pem"\n', "dmp.ca_file", "introuvable"),
        ('[insi]\nurl = "http://insi.example"\n', "insi.url", "https://"),
        ('[reseau]\nproxy = "x"\n', "reseau", "section inconnue"),
    ],
)
def test_silent_install_errors_name_the_key(tmp_path: Path, toml: str, key: str, words: str) -> None:
    source = tmp_path / "f.toml"
    source.write_text(toml, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(source)
    assert (
        caught.value.key == key
        and f"« {key} »" in caught.value.message_fr
        and words in caught.value.message_fr
    )
    home = tmp_path / "home"
    done = _run(["--depuis", str(source), "--silencieux"], home)
    assert done.returncode == 1 and key in done.stderr and "Traceback" not in done.stderr
    assert not (home / "config.toml").exists()


def test_silent_install_needs_a_file_and_valid_toml(tmp_path: Path) -> None:
    done = _run(["--silencieux"], tmp_path / "h")
    assert done.returncode == 1 and "--depuis" in done.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[dmp\nenvironment=", encoding="utf-8")
    done = _run(["--depuis", str(bad), "--silencieux"], tmp_path / "h")
    assert done.returncode == 1 and "TOML valide" in done.stderr


def test_round_trip_of_every_key(tmp_path: Path) -> None:
    settings = validate(
        {
            "dmp": {"environment": "https://dmp.example/si-dmp-server/v2/services/"},
            "insi": {"environment": "qualification-cpx", "url": "https://insi.example/lps"},
            "card": {"reader": "Lecteur 00"},
            "hotfolder": {"inbox": str(tmp_path / "in"), "done": str(tmp_path / "done")},
            "api": {"port": 9984},
        }
    )
    from ps_agent.setup_config import write_settings

    path = write_settings(settings, tmp_path)
    assert load_settings(path) == settings


def test_token_file_is_the_one_the_local_api_reads(tmp_path: Path) -> None:
    path = ensure_api_token(tmp_path)
    assert path == token_path(tmp_path) and path.name == "api-token"
    first = path.read_text()
    assert ensure_api_token(tmp_path).read_text() == first  # kept
    path.write_text("court\n")
    assert len(ensure_api_token(tmp_path).read_text().strip()) >= 32  # too short: regenerated


def test_machine_wide_settings_for_every_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "deploiement.toml"
    source.write_text('[dmp]\nenvironment = "formation1"\n', encoding="utf-8")
    machine = tmp_path / "programdata"
    done = _run(
        ["--depuis", str(source), "--silencieux", "--machine", "--dossier", str(machine)], tmp_path / "h"
    )
    assert done.returncode == 0, done.stderr
    written = machine / "config.toml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644  # readable by every user, no secret inside
    assert not (machine / "api-token").exists()  # each user's token is made at their first start

    from ps_agent import settings as settings_mod

    monkeypatch.setattr(settings_mod, "machine_settings_path", lambda: written)
    monkeypatch.delenv("PS_AGENT_HOME", raising=False)
    monkeypatch.setattr(settings_mod, "settings_path", lambda folder=None: tmp_path / "user" / "config.toml")
    loaded = settings_mod.load_installed_settings()
    assert loaded is not None and loaded.dmp_environment == "formation1"  # no user file: the machine's
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "isolated"))
    assert settings_mod.load_installed_settings() is None  # an isolated agent home ignores it


def test_interactive_sandbox_suggests_the_demo_ca(tmp_path: Path, test_pki: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_AGENT_")}
    env.update(
        PYTHONPATH=str(ROOT), PS_AGENT_HOME=str(tmp_path / "h"), PS_AGENT_PKI_DIR=str(test_pki.directory)
    )
    done = subprocess.run(
        [sys.executable, "-m", "ps_agent", "setup"],
        env=env,
        input="\n\n\n\n\noui\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert load_settings(tmp_path / "h" / "config.toml").dmp_ca_file == str(
        test_pki.directory / "ca-bundle.pem"
    )


def test_same_token_file_name_as_the_local_api() -> None:
    from ps_agent.api.settings import TOKEN_FILENAME
    from ps_agent.setup_config import API_TOKEN_FILENAME

    assert API_TOKEN_FILENAME == TOKEN_FILENAME
