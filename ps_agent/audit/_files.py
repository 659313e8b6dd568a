"""Portable file helpers of the audit trail: an inter-process lock, durable writes, owner-only modes.

The core must import on Windows (issue 9 item 5): no top-level ``fcntl``; ``os.pwrite`` is not used.

- ``file_lock(path)``: exclusive lock on a small lock file, ``fcntl.flock`` on POSIX, ``msvcrt.locking``
  on Windows (byte 0, retried until granted), a process-local lock when neither exists.
- ``write_in_place(path, data)``: seek(0) + write + truncate + flush + ``os.fdatasync``/``os.fsync``
  (the anchor).
- ``write_atomic(path, data)``: temporary file + fsync + ``os.replace`` + directory fsync (the checkpoint
  copy); on Windows a reader holding the file open can make ``os.replace`` fail for a moment: retried.
- ``restrict_file`` / ``restrict_dir``: chmod 0600 / 0700 whoever created the file (no-op on Windows,
  where the profile folder's ACL already keeps other users out).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

IS_WINDOWS = os.name == "nt"
_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock held across processes while the ``with`` block runs."""
    fcntl = None if IS_WINDOWS else _optional("fcntl")
    msvcrt = _optional("msvcrt") if IS_WINDOWS else None
    if fcntl is None and msvcrt is None:
        with _LOCAL_GUARD:
            local = _LOCAL_LOCKS.setdefault(str(path), threading.Lock())
        with local:
            yield
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            assert msvcrt is not None
            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # LK_LOCK itself retries for ~10 s
                    break
                except OSError:
                    time.sleep(0.01)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            else:
                assert msvcrt is not None
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a file creation/rename durable (POSIX); Windows has no directory handles for this."""
    if IS_WINDOWS:
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path`` from offset 0 and flush it to disk; the file is created 0600 when missing.

    Same size as before (the anchor is fixed-size): ``os.fdatasync`` suffices where it exists (no
    metadata journal commit for the mtime; ~5x cheaper on ext4), else ``os.fsync`` (Windows:
    FlushFileBuffers). A new or resized file gets a full ``fsync`` and its folder too."""
    try:
        before = path.stat().st_size
    except FileNotFoundError:
        before = -1
    fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "r+b", buffering=0) as out:
        out.seek(0)
        out.write(data)
        if before != len(data):
            out.truncate(len(data))  # costs a metadata update: only when the size changes
        out.flush()
        datasync = getattr(os, "fdatasync", None)
        if before == len(data) and datasync is not None:
            datasync(out.fileno())
        else:
            os.fsync(out.fileno())
    created = before < 0
    if created:
        restrict_file(path)
        fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably (readers see the old or the new file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    restrict_file(tmp)
    for attempt in range(50):
        try:
            os.replace(tmp, path)
            break
        except PermissionError:  # Windows: the target is open in another process for a moment
            if attempt == 49:
                raise
            time.sleep(0.02)
    fsync_dir(path.parent)


def restrict_file(path: Path) -> None:
    """0600 whoever created the file (POSIX only)."""
    if not IS_WINDOWS:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o600)


def restrict_dir(path: Path) -> None:
    """0700 whoever created the folder (POSIX only)."""
    if not IS_WINDOWS:
        with contextlib.suppress(FileNotFoundError, PermissionError):  # a folder we do not own: as is
            os.chmod(path, 0o700)


__all__ = [
    "IS_WINDOWS",
    "file_lock",
    "fsync_dir",
    "restrict_dir",
    "restrict_file",
    "write_atomic",
    "write_in_place",
]
