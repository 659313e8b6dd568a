"""1.7: whether the agent runs in a remote session (RDP, Citrix, SSH, xrdp, loginctl's answer). A module of
its own so that the desktop window's start-up note (``ui.tray.remote_session_note``) does not import the
doctor's checks (ssl, socket, sqlite3, subprocess…); ``ps_agent.doctor`` re-exports it."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def detect_remote_session(
    environ: Mapping[str, str], platform: str, loginctl: Callable[[], str] | None = None
) -> str:
    """A French description of the remote session the agent runs in, or "" when local."""
    if platform == "win32":
        name = environ.get("SESSIONNAME", "")
        if name.upper().startswith("RDP-"):
            return f"session Bureau à distance Windows ({name})"
        if name.upper().startswith("ICA-"):
            return f"session Citrix ({name})"
        return ""
    if environ.get("SSH_CONNECTION") or environ.get("SSH_CLIENT"):
        return "connexion SSH"
    if environ.get("XRDP_SESSION") or environ.get("XRDP_SOCKET_PATH"):
        return "session xrdp"
    if loginctl is not None:
        remote = loginctl().strip().lower()
        if remote == "yes":
            return "session distante (loginctl)"
    return ""
