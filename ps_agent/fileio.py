"""Durable file writes shared by the journal, the deposit queue, the hot folder and the hand-back: every
byte of a buffer written to a descriptor, and a folder's entries (creations, renames) flushed where the OS
can. Portable: ``os.open``/``os.write``/``os.fsync`` exist on Windows too; a folder is flushed only where
the OS gives a handle on it (POSIX), NTFS journals its own metadata."""

from __future__ import annotations

import errno
import os
from pathlib import Path

IS_WINDOWS = os.name == "nt"
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


__all__ = ["fsync_dir", "write_all"]
