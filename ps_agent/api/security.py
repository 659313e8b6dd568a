"""The per-install bearer token and the checks of every request (token, Origin)."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from ps_agent.api.settings import TOKEN_FILENAME
from ps_agent.config import config_dir, ensure_private_dir


def token_path(folder: Path | None = None) -> Path:
    return (folder or config_dir()) / TOKEN_FILENAME


def load_or_create_token(folder: Path | None = None) -> str:
    """The install's token: read from the config folder, or generated at first start (file 0600)."""
    path = token_path(folder)
    ensure_private_dir(path.parent)
    try:
        text = path.read_text(encoding="ascii").strip()
        if len(text) >= 32:
            os.chmod(path, 0o600)
            return text
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    os.chmod(path, 0o600)
    return token


def token_matches(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>`` compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """No ``Origin`` (not a browser) or one listed in the configuration."""
    if origin is None:
        return True
    return origin.rstrip("/") in {a.rstrip("/") for a in allowed}
