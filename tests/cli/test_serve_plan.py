"""How ``ps-agent serve`` merges ``config.toml`` and its command line (``serve_cmd.plan_serve``): the command
line wins, then the environment variables, then the file; the settings found where the rest of the agent
looks (``--config DOSSIER``, else ``$PS_AGENT_HOME``/the user's folder). Real files, the real parser."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from ps_agent.cli import build_parser
from ps_agent.cli.common import UsageError
from ps_agent.cli.serve_cmd import ServeSettingsError, hotfolder_root, load_serve_settings, plan_serve
from ps_agent.settings import AgentSettings, validate

ROOT = Path(__file__).resolve().parents[2]


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PS_AGENT_ENV", "PS_AGENT_CA", "PS_AGENT_PKCS11_MODULE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "home"))


def _file(folder: Path, raw: dict[str, dict[str, object]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
    return folder


def test_environment_command_line_then_variable_then_file(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = validate({"dmp": {"environment": "formation2"}}, check_files=False)
    assert plan_serve(_args(), settings).env_name == "formation2"
    monkeypatch.setenv("PS_AGENT_ENV", "formation3")
    assert plan_serve(_args(), settings).env_name == "formation3"
    assert plan_serve(_args("--env", "formation1"), settings).env_name == "formation1"


def test_port_and_switches() -> None:
    settings = validate({"api": {"port": 9990, "enabled": False}, "hotfolder": {"inbox": "/srv/d"}},
                        check_files=False)  # fmt: skip
    plan = plan_serve(_args(), settings)
    assert (plan.api, plan.port, plan.hotfolder) == (False, 9990, Path("/srv/d"))
    plan = plan_serve(_args("--port", "9991"), settings)  # an explicit port starts the API
    assert (plan.api, plan.port) == (True, 9991)
    assert plan_serve(_args("--api"), settings).port == 9990
    plan = plan_serve(_args("--sans-depot", "--api"), settings)
    assert plan.hotfolder is None and "--sans-depot" in plan.hotfolder_off_fr
    off = validate({"hotfolder": {"inbox": "/srv/d", "enabled": False}}, check_files=False)
    assert plan_serve(_args(), off).hotfolder is None
    assert plan_serve(_args("--depot", "/srv/autre"), off).hotfolder == Path("/srv/autre")
    with pytest.raises(UsageError, match="Rien à lancer") as info:
        plan_serve(_args("--sans-api"), off)
    assert info.value.exit_code == 2


def test_defaults_without_file_serve_the_api_only() -> None:
    plan = plan_serve(_args(), AgentSettings())
    assert (plan.api, plan.port, plan.hotfolder) == (True, 9983, None)
    assert "hotfolder.inbox" in plan.hotfolder_off_fr


def test_hotfolder_root_and_done_folder() -> None:
    assert hotfolder_root(Path("/srv/depot")) == Path("/srv/depot")
    assert hotfolder_root(Path("/srv/depot/inbox")) == Path("/srv/depot")
    settings = validate({"hotfolder": {"inbox": "/srv/depot", "done": "/srv/traites"}}, check_files=False)
    plan = plan_serve(_args(), settings)
    assert (plan.hotfolder, plan.hotfolder_done) == (Path("/srv/depot"), Path("/srv/traites"))
    assert plan.warnings == ()
    default = validate({"hotfolder": {"inbox": "/srv/depot"}}, check_files=False)
    assert plan_serve(_args(), default).hotfolder_done == Path("/srv/depot/done")
    # [I] the command line's folder is another deposit folder: its own done/
    assert plan_serve(_args("--depot", "/srv/autre"), settings).hotfolder_done == Path("/srv/autre/done")
    inside = validate({"hotfolder": {"inbox": "/srv/depot", "done": "/srv/depot/inbox"}}, check_files=False)
    with pytest.raises(ServeSettingsError, match=r"« hotfolder\.done »") as info:
        plan_serve(_args(), inside)
    assert info.value.exit_code == 2 and info.value.key == "hotfolder.done"


def test_establishment_from_the_file_command_line_wins(tmp_path: Path) -> None:
    auth, sign, user = (tmp_path / n for n in ("auth.p12", "sign.p12", "user.json"))
    settings = validate({"establishment": {"auth_p12": str(auth), "sign_p12": str(sign), "user": str(user)}},
                        check_files=False)  # fmt: skip
    args = _args()
    plan_serve(args, settings)
    assert (args.etablissement, args.signature_etablissement, args.utilisateur) == (auth, sign, str(user))
    other = tmp_path / "other.p12"
    args = _args("--etablissement", str(other))
    plan_serve(args, settings)  # the file's signature certificate goes with the file's, not this one
    assert (args.etablissement, args.signature_etablissement) == (other, None)
    no_user = validate({"establishment": {"auth_p12": str(auth)}}, check_files=False)
    with pytest.raises(UsageError, match=r"establishment\.user"):
        plan_serve(_args(), no_user)


def test_idle_timeout_file_and_option() -> None:
    settings = validate({"session": {"idle_timeout_minutes": 12}}, check_files=False)
    assert plan_serve(_args(), settings).idle_timeout_minutes == 12
    assert plan_serve(_args("--inactivite", "45"), settings).idle_timeout_minutes == 45
    with pytest.raises(UsageError, match="--inactivite"):
        plan_serve(_args("--inactivite", "0"), settings)


def test_settings_found_where_the_agent_looks(tmp_path: Path) -> None:
    folder = _file(tmp_path / "etc", {"api": {"port": 9995}})
    assert load_serve_settings(folder).api_port == 9995
    assert load_serve_settings(tmp_path / "empty") == AgentSettings()  # no file: the defaults
    _file(tmp_path / "home", {"api": {"port": 9996}})  # $PS_AGENT_HOME: the user's folder
    assert load_serve_settings(None).api_port == 9996
    _file(folder, {"dmp": {"ca_file": str(tmp_path / "absent.pem")}})
    with pytest.raises(ServeSettingsError) as info:
        load_serve_settings(folder)
    assert info.value.exit_code == 2 and info.value.key == "dmp.ca_file"
    assert "« dmp.ca_file »" in info.value.message_fr


def test_no_authorities_anywhere_exits_2_naming_the_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_AGENT_")}
    env.update(PS_AGENT_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "ps_agent", "serve", "--config", str(tmp_path / "etc")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "dmp.ca_file" in done.stderr and "--ca" in done.stderr and "Traceback" not in done.stderr
