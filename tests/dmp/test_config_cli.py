"""Configuration (environments, data folder) and CLI refusals that need no card."""

from __future__ import annotations

import pytest

from ps_agent.cli import main as cli
from ps_agent.config import ENVIRONMENTS, AgentConfig, data_dir, environment
from ps_agent.errors import ConfigurationError


def test_environments_are_configuration():
    assert (
        ENVIRONMENTS["production"].url("registry")
        == "https://lps2.dmp.gouv.fr/si-dmp-server/v2/services/registry"
    )
    assert ENVIRONMENTS["formation3"].base_url.startswith("https://formation3.lps2.dmp.gouv.fr/")
    custom = environment("https://127.0.0.1:9443/si-dmp-server/v2/services")
    assert custom.url("patients") == "https://127.0.0.1:9443/si-dmp-server/v2/services/patients"
    assert custom.actions["TD2.1"] == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    with pytest.raises(ConfigurationError) as exc:
        environment("staging")
    assert "inconnu" in exc.value.message_fr
    with pytest.raises(ConfigurationError):
        environment("sandbox", ca_file="/nonexistent/ca.pem")


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "agent"))
    assert data_dir() == tmp_path / "agent" and (tmp_path / "agent").is_dir()
    cfg = AgentConfig.default("sandbox")
    assert cfg.audit_path == tmp_path / "agent" / "audit.sqlite3"


def test_cli_refusals_without_card(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path))
    monkeypatch.delenv("PS_AGENT_CA", raising=False)
    assert cli(["dmp", "status", "--ins", "279037505612309"]) == 1
    assert "autorités de certification" in capsys.readouterr().err
    assert cli(["dmp", "consent", "--ins", "279037505612309", "--ca", "/x"]) == 1
    assert "--oui" in capsys.readouterr().err
    assert cli(["dmp", "status", "--ins", "1", "--env", "nulle-part", "--ca", "/x"]) == 1
    assert "Environnement DMP inconnu" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli(["dmp", "deposit", "--ins", "1", "--pin", "1234", "x.xml"])  # no PIN option exists
    assert exc.value.code == 2


def test_public_exports_resolve():
    import ps_agent

    for name in ps_agent.__all__:
        assert getattr(ps_agent, name) is not None
    with pytest.raises(AttributeError):
        _ = ps_agent.NoSuchThing
