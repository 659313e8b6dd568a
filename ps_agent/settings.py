"""The installation's settings file: ``config.toml`` in the configuration folder (``ps_agent.config``).

Written by ``ps-agent setup`` (interactive or ``--depuis FICHIER.toml --silencieux``), read with the
standard library's ``tomllib``. Every key is validated; a wrong one raises ``SettingsError`` whose French
message names the key (``dmp.environment``), so an IT provider deploying silently sees what to fix.

Shape (every section and key optional; defaults in brackets)::

    [dmp]
    environment = "sandbox"        # sandbox | formation1..5 | production | https://… [sandbox]
    ca_file = "/chemin/ca.pem"     # PEM bundle of the DMP server's authorities [none: built-in/system]
    [insi]
    environment = "sandbox-cpx"    # a name of ps_agent.identity.environments [derived from dmp.environment]
    url = ""                       # overrides the environment's address
    [card]
    reader = ""                    # PC/SC reader name [first reader holding a CPS card]
    pkcs11_module = ""             # Cryptolib path [standard paths]
    [establishment]
    auth_p12 = ""                  # establishment certificate (TLS), optional
    sign_p12 = ""                  # establishment signature certificate, optional
    user = ""                      # JSON file of the local user responsible for AIR deposits (ps-agent serve)
    [hotfolder]
    inbox = ""                     # folder watched for documents to deposit, optional
    done = ""                      # where handled files go: an absolute path [DEPOSIT_FOLDER/done]
    enabled = true                 # false: the folder is kept but not watched [true]
    [api]
    port = 9983                    # local API port (loopback only)
    enabled = true                 # false: no local API for the practice software [true]
    [session]
    idle_timeout_minutes = 30      # the card session closes after this much inactivity (1..480) [30]
    [notice]
    segur_acknowledged_at = ""     # ISO date-time of « J'ai compris » (set by the setup)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from ps_agent.config import APP_NAME, HOME_ENV, AgentConfig, config_dir, data_dir, environment
from ps_agent.dmp.environment import ENVIRONMENTS
from ps_agent.errors import ConfigurationError

CONFIG_FILENAME = "config.toml"
# [I] Default local API port, as the api helper's ps_agent.api.settings.DEFAULT_PORT (not 9982: DmpConnect).
DEFAULT_API_PORT = 9983
# [I] INSi environment matching each DMP environment when the file names none.
INSI_FOR_DMP: dict[str, str] = {
    "sandbox": "sandbox-cpx",
    "production": "production-cpx",
    **{name: "qualification-cpx" for name in ENVIRONMENTS if name.startswith("formation")},
}
# [I] Idle time after which the window closes the card session: 30 minutes by default, as the core's
# card session (ps_agent.auth.session.DEFAULT_IDLE_TIMEOUT_S: what practice software commonly uses for a
# locked workstation); 1 minute to 8 hours (a working half-day) accepted. No DMP rule fixes it.
DEFAULT_IDLE_TIMEOUT_MINUTES = 30
IDLE_TIMEOUT_RANGE_MINUTES = (1, 480)

_KNOWN: dict[str, dict[str, type]] = {
    "dmp": {"environment": str, "ca_file": str},
    "insi": {"environment": str, "url": str},
    "card": {"reader": str, "pkcs11_module": str},
    "establishment": {"auth_p12": str, "sign_p12": str, "user": str},
    "hotfolder": {"inbox": str, "done": str, "enabled": bool},
    "api": {"port": int, "enabled": bool},
    "session": {"idle_timeout_minutes": int},
    "notice": {"segur_acknowledged_at": str},
}
_TYPE_FR = {str: "un texte entre guillemets", int: "un nombre entier", bool: "true ou false (vrai ou faux)"}


class SettingsError(ConfigurationError):
    """The settings file is unreadable or holds a wrong key/value. ``key`` names it (``dmp.environment``)."""

    def __init__(self, message_fr: str, *, key: str = "", code: str = "SETTINGS") -> None:
        super().__init__(message_fr, code=code)
        self.key = key


@dataclass(frozen=True)
class AgentSettings:
    """The validated content of ``config.toml`` (paths as given; empty string = not set)."""

    dmp_environment: str = "sandbox"
    dmp_ca_file: str = ""
    insi_environment: str = ""
    insi_url: str = ""
    card_reader: str = ""
    pkcs11_module: str = ""
    establishment_auth_p12: str = ""
    establishment_sign_p12: str = ""
    establishment_user: str = ""
    hotfolder_inbox: str = ""
    hotfolder_done: str = ""
    hotfolder_enabled: bool = True
    api_port: int = DEFAULT_API_PORT
    api_enabled: bool = True
    idle_timeout_minutes: int = DEFAULT_IDLE_TIMEOUT_MINUTES
    segur_acknowledged_at: str = ""
    source: str = field(default="", compare=False)

    @property
    def idle_timeout_s(self) -> float:
        return 60.0 * self.idle_timeout_minutes

    @property
    def insi_environment_name(self) -> str:
        return self.insi_environment or INSI_FOR_DMP.get(self.dmp_environment, "")

    def agent_config(self, home: Path | None = None) -> AgentConfig:
        """The core's ``AgentConfig`` for these settings (data folder: ``home`` or the platform's)."""
        env = environment(self.dmp_environment, ca_file=self.dmp_ca_file or None)
        return AgentConfig(env, home or data_dir())

    def to_toml_dict(self) -> dict[str, dict[str, Any]]:
        """The TOML document (only the keys that are set, so defaults can evolve; a switch only when off)."""
        raw: dict[str, dict[str, Any]] = {
            "dmp": {"environment": self.dmp_environment, "ca_file": self.dmp_ca_file},
            "insi": {"environment": self.insi_environment, "url": self.insi_url},
            "card": {"reader": self.card_reader, "pkcs11_module": self.pkcs11_module},
            "establishment": {
                "auth_p12": self.establishment_auth_p12,
                "sign_p12": self.establishment_sign_p12,
                "user": self.establishment_user,
            },
            "hotfolder": {
                "inbox": self.hotfolder_inbox,
                "done": self.hotfolder_done,
                "enabled": None if self.hotfolder_enabled else False,
            },
            "api": {"port": self.api_port, "enabled": None if self.api_enabled else False},
            "session": {
                "idle_timeout_minutes": None
                if self.idle_timeout_minutes == DEFAULT_IDLE_TIMEOUT_MINUTES
                else self.idle_timeout_minutes
            },
            "notice": {"segur_acknowledged_at": self.segur_acknowledged_at},
        }
        out: dict[str, dict[str, Any]] = {}
        for section, keys in raw.items():
            kept = {k: v for k, v in keys.items() if v not in ("", None)}
            if kept:
                out[section] = kept
        return out


def settings_path(folder: Path | None = None) -> Path:
    """``config.toml`` in ``folder`` or the platform's configuration folder."""
    return (folder or config_dir()) / CONFIG_FILENAME


def machine_settings_path() -> Path:
    """The machine-wide settings an IT provider deploys (Windows ``%PROGRAMDATA%\\ps-agent``, Linux
    ``/etc/xdg/ps-agent``): used by every user who has no ``config.toml`` of their own."""
    return Path(platformdirs.site_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILENAME


def _bad(key: str, message: str) -> SettingsError:
    return SettingsError(f"Réglage « {key} » : {message}", key=key)


def hotfolder_done_path(raw: str) -> Path:
    """The ``hotfolder.done`` value as a path: absolute (``~`` expanded), else ``SettingsError`` naming the
    key (a relative path would depend on the folder the service happens to be started in)."""
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise _bad("hotfolder.done", f"indiquez un chemin absolu (reçu « {raw} »).")
    return path


def validate(raw: dict[str, Any], *, source: str = "", check_files: bool = True) -> AgentSettings:
    """Check a parsed TOML document; the first problem raises ``SettingsError`` naming its key."""
    values: dict[str, Any] = {}
    for section, content in raw.items():
        if section not in _KNOWN:
            raise _bad(section, f"section inconnue (sections possibles : {', '.join(_KNOWN)}).")
        if not isinstance(content, dict):
            raise _bad(section, "doit être une section [" + section + "].")
        for key, value in content.items():
            name = f"{section}.{key}"
            expected = _KNOWN[section].get(key)
            if expected is None:
                raise _bad(name, f"clé inconnue (clés possibles : {', '.join(_KNOWN[section])}).")
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise _bad(name, f"doit être {_TYPE_FR[expected]} (reçu : {value!r}).")
            values[name] = value.strip() if isinstance(value, str) else value

    env = values.get("dmp.environment", "sandbox")
    if env not in ENVIRONMENTS and not env.startswith("https://"):
        raise _bad(
            "dmp.environment",
            f"environnement inconnu « {env} » (choisissez parmi {', '.join(ENVIRONMENTS)} "
            "ou une adresse https://).",
        )
    insi_env = values.get("insi.environment", "")
    if insi_env:
        from ps_agent.identity.environments import INSI_ENVIRONMENTS

        if insi_env not in INSI_ENVIRONMENTS:
            raise _bad(
                "insi.environment",
                f"environnement INSi inconnu « {insi_env} » "
                f"(choisissez parmi {', '.join(INSI_ENVIRONMENTS)}).",
            )
    url = values.get("insi.url", "")
    if url and not url.startswith("https://"):
        raise _bad("insi.url", f"doit être une adresse https:// (reçu « {url} »).")
    port = values.get("api.port", DEFAULT_API_PORT)
    if not 1024 <= port <= 65535:
        raise _bad("api.port", f"doit être un port entre 1024 et 65535 (reçu {port}).")
    if port == 9982:
        raise _bad(
            "api.port", "9982 est le port de DmpConnect-JS ; choisissez-en un autre (9983 par défaut)."
        )
    idle = values.get("session.idle_timeout_minutes", DEFAULT_IDLE_TIMEOUT_MINUTES)
    low, high = IDLE_TIMEOUT_RANGE_MINUTES
    if not low <= idle <= high:
        raise _bad(
            "session.idle_timeout_minutes",
            f"doit être une durée entre {low} et {high} minutes (reçu {idle}).",
        )
    if values.get("hotfolder.done"):
        hotfolder_done_path(values["hotfolder.done"])
    if check_files:
        for name in ("dmp.ca_file", "card.pkcs11_module", "establishment.auth_p12", "establishment.sign_p12",
                     "establishment.user"):  # fmt: skip
            path = values.get(name, "")
            if path and not Path(path).expanduser().is_file():
                raise _bad(name, f"le fichier « {path} » est introuvable.")
        for name in ("hotfolder.inbox", "hotfolder.done"):
            path = values.get(name, "")
            if path and Path(path).expanduser().exists() and not Path(path).expanduser().is_dir():
                raise _bad(name, f"« {path} » existe mais n'est pas un dossier.")
    return AgentSettings(
        dmp_environment=env,
        dmp_ca_file=values.get("dmp.ca_file", ""),
        insi_environment=insi_env,
        insi_url=url,
        card_reader=values.get("card.reader", ""),
        pkcs11_module=values.get("card.pkcs11_module", ""),
        establishment_auth_p12=values.get("establishment.auth_p12", ""),
        establishment_sign_p12=values.get("establishment.sign_p12", ""),
        establishment_user=values.get("establishment.user", ""),
        hotfolder_inbox=values.get("hotfolder.inbox", ""),
        hotfolder_done=values.get("hotfolder.done", ""),
        hotfolder_enabled=values.get("hotfolder.enabled", True),
        api_port=port,
        api_enabled=values.get("api.enabled", True),
        idle_timeout_minutes=idle,
        segur_acknowledged_at=values.get("notice.segur_acknowledged_at", ""),
        source=source,
    )


def load_settings(path: Path, *, check_files: bool = True) -> AgentSettings:
    """Read and validate a settings file (French errors naming the key or the line)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError as exc:
        raise SettingsError(f"Fichier de réglages introuvable : {path}", code="SETTINGS_MISSING") from exc
    except OSError as exc:
        raise SettingsError(
            f"Fichier de réglages illisible : {path} ({exc.strerror or exc})", code="SETTINGS_UNREADABLE"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(
            f"Le fichier de réglages {path} n'est pas un TOML valide : {exc}", code="SETTINGS_SYNTAX"
        ) from exc
    return validate(raw, source=str(path), check_files=check_files)


def load_installed_settings() -> AgentSettings | None:
    """The user's ``config.toml``, else the machine-wide one (not with ``$PS_AGENT_HOME``, which isolates an
    agent home), validated; None when there is none (first run)."""
    path = settings_path()
    if not path.is_file():
        if os.environ.get(HOME_ENV):
            return None
        path = machine_settings_path()
        if not path.is_file():
            return None
    return load_settings(path, check_files=False)


def agent_config_from_file(path: Path, *, home: Path | None = None) -> AgentConfig:
    """``AgentConfig`` from a settings file (the core's config, loadable from the TOML)."""
    return load_settings(path).agent_config(home)


__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_API_PORT",
    "DEFAULT_IDLE_TIMEOUT_MINUTES",
    "IDLE_TIMEOUT_RANGE_MINUTES",
    "INSI_FOR_DMP",
    "AgentSettings",
    "SettingsError",
    "agent_config_from_file",
    "hotfolder_done_path",
    "load_installed_settings",
    "load_settings",
    "machine_settings_path",
    "settings_path",
    "validate",
]
