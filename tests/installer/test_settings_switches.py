"""The settings the window's « Configuration » page adds (issue 11 §10): local API and hot folder
switches, the session's idle time (validated range, French errors naming the key), and a new API token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ps_agent.settings import (
    DEFAULT_IDLE_TIMEOUT_MINUTES,
    IDLE_TIMEOUT_RANGE_MINUTES,
    SettingsError,
    load_settings,
    validate,
)
from ps_agent.setup_config import ensure_api_token, regenerate_api_token, write_settings


def test_defaults_when_the_file_names_none() -> None:
    s = validate({})
    assert s.api_enabled and s.hotfolder_enabled
    assert s.idle_timeout_minutes == DEFAULT_IDLE_TIMEOUT_MINUTES == 30 and s.idle_timeout_s == 1800.0
    assert "session" not in s.to_toml_dict() and "api" in s.to_toml_dict()  # the default is not pinned


def test_the_switches_and_the_idle_time_round_trip(tmp_path: Path) -> None:
    s = validate({
        "api": {"port": 9984, "enabled": False},
        "hotfolder": {"inbox": str(tmp_path / "in"), "enabled": False},
        "session": {"idle_timeout_minutes": 10},
    })  # fmt: skip
    assert not s.api_enabled and not s.hotfolder_enabled and s.idle_timeout_s == 600.0
    raw = s.to_toml_dict()
    assert raw["api"] == {"port": 9984, "enabled": False}
    assert raw["hotfolder"]["enabled"] is False and raw["session"] == {"idle_timeout_minutes": 10}
    assert load_settings(write_settings(s, tmp_path)) == s
    back_on = validate({"api": {"enabled": True}, "hotfolder": {"enabled": True}})
    assert back_on.to_toml_dict().get("hotfolder") is None  # on is the default: not written


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"session": {"idle_timeout_minutes": 0}}, "session.idle_timeout_minutes", "entre 1 et 480 minutes"),
        ({"session": {"idle_timeout_minutes": 481}}, "session.idle_timeout_minutes", "reçu 481"),
        ({"session": {"idle_timeout_minutes": "30"}}, "session.idle_timeout_minutes", "nombre entier"),
        ({"session": {"idle_timeout_minutes": True}}, "session.idle_timeout_minutes", "nombre entier"),
        ({"session": {"delai": 3}}, "session.delai", "clé inconnue"),
        ({"api": {"enabled": "oui"}}, "api.enabled", "true ou false"),
        ({"hotfolder": {"enabled": 1}}, "hotfolder.enabled", "true ou false"),
    ],
)
def test_wrong_values_name_their_key_in_french(raw: dict, key: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        validate(raw)
    assert caught.value.key == key and f"« {key} »" in caught.value.message_fr
    assert words in caught.value.message_fr


def test_range_bounds_are_accepted() -> None:
    low, high = IDLE_TIMEOUT_RANGE_MINUTES
    assert validate({"session": {"idle_timeout_minutes": low}}).idle_timeout_minutes == low
    assert validate({"session": {"idle_timeout_minutes": high}}).idle_timeout_minutes == high


def test_a_regenerated_token_replaces_the_old_one(tmp_path: Path) -> None:
    old = ensure_api_token(tmp_path).read_text()
    path = regenerate_api_token(tmp_path)
    new = path.read_text()
    assert new != old and len(new.strip()) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_api_token(tmp_path).read_text() == new  # kept afterwards
