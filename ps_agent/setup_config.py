"""First-run configuration, shared by ``ps-agent setup`` and the window's wizard.

The steps, each a pure function the two front-ends call: detect the PC/SC readers and the Cryptolib,
choose the environment (sandbox preselected for a first try), optional establishment certificates and
hot-folder paths, generate the local API token, show the Ségur notice (« J'ai compris »), write
``config.toml`` (0600, in the 0700 configuration folder). A silent install reads the same settings from a
file (``ps_agent.settings.load_settings``: French errors naming the key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from ps_agent.config import config_dir, ensure_private_dir
from ps_agent.dmp.environment import ENVIRONMENTS
from ps_agent.settings import AgentSettings, settings_path

# The same file the local API reads (ps_agent.api.settings.TOKEN_FILENAME): one token per install.
API_TOKEN_FILENAME = "api-token"  # noqa: S105 - a file name, not a secret

# Ségur referencing notice (dmp-ui-requirements.md 3.6, SEG-CONF11), shown with « J'ai compris ».
SEGUR_NOTICE_FR = (
    "Le logiciel peut effectuer des requêtes de recherche de document au nom de l'utilisateur sur les "
    "DMP/MES et permet d'en consulter, sur action manuelle, les documents d'intérêt. Ces interactions sont "
    "tracées avec l'identifiant national de l'utilisateur et le patient est notifié de ces interactions."
)
SEGUR_WARNING_FR = (
    "Toute consultation de ma part d'un DMP/MES pour lequel le patient (ou son représentant légal) n'a pas "
    "donné son consentement m'expose à des poursuites."
)
SEGUR_BUTTON_FR = "J'ai compris"

DEFAULT_ENVIRONMENT = "sandbox"  # preselected for a first try (issue 13)
ENVIRONMENT_LABELS_FR: dict[str, str] = {
    "sandbox": "Bac à sable local (essai, sans données réelles)",
    **{n: f"Formation ANS ({n})" for n in ENVIRONMENTS if n.startswith("formation")},
    "production": "Production (DMP réel, patients réels)",
}


@dataclass(frozen=True)
class Detection:
    readers: tuple[str, ...]
    readers_error_fr: str  # "" when the PC/SC service answered
    cryptolib: str  # "" when not found


def detect() -> Detection:
    """What the workstation already has: readers (PC/SC) and the Cryptolib module."""
    from ps_agent.auth.pkcs11 import find_cryptolib
    from ps_agent.card.pcsc import list_readers
    from ps_agent.errors import CardError

    try:
        readers, error = tuple(list_readers()), ""
    except CardError as exc:
        readers, error = (), exc.message_fr
    found = find_cryptolib()
    return Detection(readers, error, str(found) if found else "")


def token_path(folder: Path | None = None) -> Path:
    return (folder or config_dir()) / API_TOKEN_FILENAME


def ensure_api_token(folder: Path | None = None) -> Path:
    """The local API token file (0600), generated when missing or too short; an existing one is kept."""
    path = token_path(folder)
    ensure_private_dir(path.parent)
    try:
        if len(path.read_text(encoding="ascii").strip()) >= 32:
            os.chmod(path, 0o600)
            return path
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    _write_private(path, (_new_token() + "\n").encode("ascii"))
    return path


def regenerate_api_token(folder: Path | None = None) -> Path:
    """A new local API token (0600) replacing the old one: the practice software must be given it, and the
    running API accepts it from its next start (it reads the file at start)."""
    path = token_path(folder)
    ensure_private_dir(path.parent)
    _write_private(path, (_new_token() + "\n").encode("ascii"))
    return path


def _new_token() -> str:
    """32 random bytes, URL-safe. ``secrets`` (hmac, OpenSSL's hashlib: ≈ 8 ms) imported here, not with the
    module: the desktop window's first-run page imports this module before its first paint."""
    import secrets

    return secrets.token_urlsafe(32)


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    os.chmod(path, mode)


def acknowledge_notice(settings: AgentSettings, now: datetime | None = None) -> AgentSettings:
    """The settings with the Ségur notice acknowledged at ``now`` (UTC)."""
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return replace(settings, segur_acknowledged_at=when.isoformat())


def write_settings(settings: AgentSettings, folder: Path | None = None, *, shared: bool = False) -> Path:
    """Write ``config.toml`` atomically (0600 in a 0700 folder; ``shared``: the machine-wide file, 0644 in
    a 0755 folder, readable by every user and holding no secret); returns its path."""
    path = settings_path(folder)
    if shared:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    else:
        ensure_private_dir(path.parent)
    header = b"# ps-agent settings, written by `ps-agent setup` (see docs/installation.md)\n"
    data = header + tomli_w.dumps(settings.to_toml_dict()).encode("utf-8")
    _write_private(path, data, 0o644 if shared else 0o600)
    return path


def finish(settings: AgentSettings, folder: Path | None = None) -> tuple[Path, Path]:
    """Last step of both front-ends: the API token and the settings file. Returns both paths."""
    token = ensure_api_token(folder)
    return write_settings(settings, folder), token


__all__ = [
    "API_TOKEN_FILENAME",
    "DEFAULT_ENVIRONMENT",
    "ENVIRONMENT_LABELS_FR",
    "SEGUR_BUTTON_FR",
    "SEGUR_NOTICE_FR",
    "SEGUR_WARNING_FR",
    "Detection",
    "acknowledge_notice",
    "detect",
    "ensure_api_token",
    "finish",
    "regenerate_api_token",
    "token_path",
    "write_settings",
]
