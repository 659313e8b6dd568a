"""The document files of the deposit queue: one file per document, outside SQLite.

A document is written under a new random name, fsync'd, and its folder fsync'd (``write_all``) BEFORE the
queue row that names it is committed; it is removed (``remove``) only after the row stopped naming it was
committed. The row's commit is what publishes the file: no reader looks at a file no committed row names,
so a temporary name and a rename would add a metadata operation (and, on Windows, a rename that an
antivirus scan of the new file can make fail for a moment) without protecting anything. A crash between
the two steps leaves a file no row names (complete or not): the queue removes such files when it opens
(``DepositQueue``), under its write lock, so that a file another process wrote for a row it has not
committed yet is never taken for one.

Portable: ``os.open``/``os.write``/``os.fsync`` exist on Windows too (``O_BINARY`` where it exists); a
folder is fsync'd only where the OS gives a handle on it (POSIX); NTFS journals its own metadata. Files
are created 0600 (the umask can only narrow it) in a folder the queue keeps 0700.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from ps_agent import fileio

FILE_SUFFIX = ".doc"
# The names this module makes (and the only ones the recovery at open may remove): a random token, so that
# a name is never reused and a write for a row that failed can never touch a committed row's file.
NAME_PATTERN = re.compile(r"^[0-9a-f]{32}\.doc$")
_BINARY = getattr(os, "O_BINARY", 0)


def new_name() -> str:
    return uuid.uuid4().hex + FILE_SUFFIX


def fsync_dir(folder: Path) -> None:
    """Make the creations and renames in ``folder`` durable where the OS can (POSIX); raises ``OSError``
    when the flush itself fails."""
    fileio.fsync_dir(folder, strict=True)


def _write_one(folder: Path, name: str, data: bytes) -> None:
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o600)
    try:
        try:
            fileio.write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def write_all(folder: Path, documents: Iterable[bytes]) -> tuple[str, ...]:
    """Write each document durably under a new name (file + folder flushed); returns the names. On any
    failure (full disk…) the files written so far are removed and the ``OSError`` raised."""
    names: list[str] = []
    try:
        for data in documents:
            name = new_name()
            _write_one(folder, name, data)
            names.append(name)
        if names:
            fsync_dir(folder)
    except BaseException:
        remove(folder, names)
        raise
    return tuple(names)


def read(folder: Path, name: str) -> bytes:
    with open(folder / name, "rb") as f:
        return f.read()


def remove(folder: Path, names: Iterable[str]) -> None:
    """Remove files (best effort: one left behind, e.g. held open on Windows, is removed at next open)."""
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(folder / name)


def ours(folder: Path) -> set[str]:
    """The names in ``folder`` that this module made."""
    try:
        return {n for n in os.listdir(folder) if NAME_PATTERN.match(n)}
    except FileNotFoundError:
        return set()
