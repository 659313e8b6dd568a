"""Rotating log files in the platform's log folder (``ps_agent.config.log_dir()``).

The rule is that the code never logs patient data, PINs or keys; ``RedactingFilter`` is a second line of
defence that masks what looks like an INS/NIR (13 or 15 digits) in every record before it is written.
The folder is 0700 and the files 0600 (patient-adjacent data: request ids, error texts).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from pathlib import Path

from ps_agent.config import LPS, ensure_private_dir, log_dir

LOG_FILENAME = "ps-agent.log"
LOG_LEVEL_ENV = "PS_AGENT_LOG_LEVEL"
# [I] 5 files of 1 MiB: weeks of normal use on a GP's workstation, bounded on disk.
MAX_BYTES = 1024 * 1024
BACKUP_COUNT = 5
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"

# An INS/NIR: sex digit 1-4 or 7-8, 12 more digits (a 2A/2B Corsican department allowed), optional key.
_NIR = re.compile(
    r"(?<![0-9])[12478]\s?\d{2}\s?\d{2}\s?(?:\d{2}|2[AB])\s?\d{3}\s?\d{3}(?:\s?\d{2})?(?![0-9])"
)


def redact(text: str) -> str:
    """``text`` with every INS/NIR-looking number replaced by ``[INS masqué]``."""
    return _NIR.sub("[INS masqué]", text)


class RedactingFilter(logging.Filter):
    """Masks INS/NIR-looking numbers in the formatted message (args included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Every file it opens (the first and each rotated one) is 0600."""

    def _open(self):  # type: ignore[no-untyped-def]  # stdlib signature
        path = Path(self.baseFilename)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
        try:
            os.chmod(path, 0o600)
        except OSError:  # pragma: no cover - not the owner: the folder's 0700 still protects it
            pass
        return super()._open()

    def doRollover(self) -> None:
        # Windows refuses to rename a file another process (the service, the window) has open: keep
        # writing to the current file rather than failing; the next rollover tries again.
        try:
            super().doRollover()
        except OSError:
            if self.stream is None:
                self.stream = self._open()

    def handleError(self, record: logging.LogRecord) -> None:
        # A log line that cannot be written must never reach the user's console nor stop the agent.
        pass


_installed: logging.Handler | None = None


def setup_logging(
    folder: Path | None = None, *, level: int | str | None = None, command: str = ""
) -> Path | None:
    """Attach the rotating file handler to the root logger (idempotent). Returns the log file, or None
    when the folder cannot be created (the agent still works; nothing is printed on the console)."""
    global _installed
    try:
        target = ensure_private_dir(folder) if folder else log_dir()
    except Exception:
        return None
    path = target / LOG_FILENAME
    if _installed is not None:
        if Path(getattr(_installed, "baseFilename", "")) == path:
            return path
        logging.getLogger().removeHandler(_installed)
        _installed.close()
        _installed = None
    try:
        handler = _PrivateRotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
        )
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    wanted = level if level is not None else os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    try:
        handler.setLevel(wanted)
    except (TypeError, ValueError):
        handler.setLevel(logging.INFO)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)
    _installed = handler
    if command:  # the command group only: arguments may hold an INS
        logging.getLogger("ps_agent").info("ps-agent %s : démarrage (version %s)", command, LPS.version)
    return path


__all__ = ["LOG_FILENAME", "RedactingFilter", "redact", "setup_logging"]
