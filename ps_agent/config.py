"""Agent configuration: data, configuration and log folders, software identity, environments.

Environments (``Environment``, ``ENVIRONMENTS``, ``environment()``) live next to the DMP client in
``ps_agent.dmp.environment`` and are re-exported here for compatibility.
Folders come from ``platformdirs`` (Windows: ``%LOCALAPPDATA%\\ps-agent``; Linux: ``~/.local/share/ps-agent``;
macOS: ``~/Library/Application Support/ps-agent``), or ``$PS_AGENT_HOME`` for all three. Every folder the
agent creates is made 0700 and every data file 0600, whoever created them (``ensure_private_dir``,
``make_private_file``; on Windows these mode bits are a no-op and the profile's ACLs apply).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from ps_agent.dmp.environment import DEFAULT_ACTIONS, ENVIRONMENTS, Environment, environment
from ps_agent.dmp.lps import LpsInfo
from ps_agent.errors import ConfigurationError

APP_NAME = "ps-agent"
HOME_ENV = "PS_AGENT_HOME"
QUEUE_LEASE_ENV = "PS_AGENT_QUEUE_LEASE_S"
# [I] How long a claim protects a deposit-queue entry being sent: longer than one attempt (client timeout
# + signature), short enough that an entry whose process was killed is sent again within minutes. The
# services never use less than the client timeout + 5 s. ``$PS_AGENT_QUEUE_LEASE_S`` overrides it.
DEFAULT_QUEUE_LEASE_S = 120.0


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(
            f"{name} doit être un nombre de secondes (reçu « {raw} »).", code="CONFIG"
        ) from exc
    if value <= 0:
        raise ConfigurationError(f"{name} doit être positif (reçu « {raw} »).", code="CONFIG")
    return value


# The software's identity as declared in every VIHF. The homologation number is given by ANS/CNDA
# at homologation (open point 7): "NON_HOMOLOGUE" until then (a French professional would expect
# the training servers, not production, to accept it).
LPS = LpsInfo(
    name="ps-agent",
    version="0.1.0",
    homologation_id=os.environ.get("PS_AGENT_HOMOLOGATION_ID", "NON_HOMOLOGUE"),
    lps_id="ps-agent",
    oid="1.2.250.1.999.1.1",  # fictitious root OID for sourceId and generated uniqueIds (change per vendor)
)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700, whoever created it. Returns it."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if stat.S_IMODE(path.stat().st_mode) != 0o700:
            os.chmod(path, 0o700)  # no-op for these bits on Windows (ACLs of the profile apply)
    except OSError as exc:
        raise ConfigurationError(
            f"Impossible de créer le dossier de l'agent : {path} ({exc.strerror or exc})", code="DATA_DIR"
        ) from exc
    return path


def make_private_file(path: Path) -> None:
    """Make an existing data file (and its SQLite companions ``-wal``/``-shm``) 0600."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(p.stat().st_mode) != 0o600:
                os.chmod(p, 0o600)


def _folder(kind: str) -> Path:
    raw = os.environ.get(HOME_ENV)
    if raw:
        return Path(raw).expanduser()
    if kind == "config":
        return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    if kind == "log":
        return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """``$PS_AGENT_HOME`` or the platform's user data folder (created on first use, mode 0700)."""
    return ensure_private_dir(_folder("data"))


def config_dir() -> Path:
    """``$PS_AGENT_HOME`` or the platform's user configuration folder (created, mode 0700)."""
    return ensure_private_dir(_folder("config"))


def log_dir() -> Path:
    """``$PS_AGENT_HOME`` or the platform's user log folder (created, mode 0700)."""
    return ensure_private_dir(_folder("log"))


@dataclass(frozen=True)
class AgentConfig:
    environment: Environment
    home: Path
    lps: LpsInfo = LPS
    frame_log: bool = False  # raw SOAP exchanges (minus document bytes) as homologation evidence
    deposit_retries: int = 2  # immediate resends of the same submission after a transient failure
    # how long a claimed deposit-queue entry is protected (a killed process's entries are sent again after)
    queue_lease_s: float = field(default_factory=lambda: _float_env(QUEUE_LEASE_ENV, DEFAULT_QUEUE_LEASE_S))

    @classmethod
    def default(
        cls, env: str = "sandbox", *, ca_file: str | None = None, home: Path | None = None
    ) -> AgentConfig:
        return cls(environment(env, ca_file=ca_file), home or data_dir())

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.sqlite3"

    @property
    def outbox_path(self) -> Path:
        return self.home / "outbox.sqlite3"


__all__ = [
    "DEFAULT_ACTIONS",
    "ENVIRONMENTS",
    "LPS",
    "AgentConfig",
    "Environment",
    "config_dir",
    "data_dir",
    "ensure_private_dir",
    "environment",
    "log_dir",
    "make_private_file",
]
