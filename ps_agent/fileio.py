"""Durable file writes shared by the journal, the deposit queue, the hot folder and the hand-back: every
byte of a buffer written to a descriptor, and a folder's entries (creations, renames) flushed where the OS
can. Portable: ``os.open``/``os.write``/``os.fsync`` exist on Windows too; a folder is flushed only where
the OS gives a handle on it (POSIX), NTFS journals its own metadata."""

from __future__ import annotations

import errno
import os
from pathlib import Path

IS_WINDOWS = os.name == "nt"
O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows: no newline translation (0 elsewhere)
# errors of a folder fsync that mean "this file system cannot do it" (not "the data is not on disk")
_NO_DIR_FSYNC = frozenset(
    getattr(errno, name)
    for name in ("EINVAL", "ENOTSUP", "EOPNOTSUPP", "EBADF", "EACCES")
    if hasattr(errno, name)
)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_file(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Create (0600) or replace the content of ``path`` with all of ``data``, flushed to disk with ``fsync``.
    A file that existed keeps its mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_BINARY, 0o600)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path, *, strict: bool = False) -> None:
    """Make the creations and renames in ``directory`` durable (POSIX; nothing to do on Windows).

    ``strict``: a failing flush raises ``OSError``, unless its error only says that this file system cannot
    flush a folder; otherwise every error is ignored (best effort)."""
    if IS_WINDOWS:
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if strict and exc.errno not in _NO_DIR_FSYNC:
            raise
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if strict and exc.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


__all__ = ["IS_WINDOWS", "O_BINARY", "fsync_dir", "write_all", "write_file"]
