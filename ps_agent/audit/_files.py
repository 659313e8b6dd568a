"""Portable file helpers of the audit trail: an inter-process lock, durable writes, owner-only modes.

The core must import on Windows (issue 9 item 5): no top-level ``fcntl``; ``os.pwrite`` is not used.

- ``InPlaceFile``: an exclusive lock on a small lock file (``fcntl.flock`` on POSIX, ``msvcrt.locking``
  on Windows, byte 0, retried until granted; a process-local lock when neither exists) and an in-place
  write (seek(0) + write + truncate + flush + ``os.fdatasync``/``os.fsync``), on descriptors kept open
  between writes (the anchor is
  rewritten once per group commit: ~8 system calls instead of ~20, no ``open``/``close`` per write). The
  path is checked (``os.stat``) under the lock before each read or write: a file deleted or replaced
  meanwhile is reopened (created when missing), never written through a stale descriptor.
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
from pathlib import Path
from types import ModuleType

from ps_agent.fileio import IS_WINDOWS, O_BINARY, fsync_dir, write_file
from ps_agent.fileio import write_all as _write_all

_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _lock_modules() -> tuple[ModuleType | None, ModuleType | None]:
    """(fcntl, msvcrt), whichever this platform has (looked up on each call: a test may hide one)."""
    return (None if IS_WINDOWS else _optional("fcntl")), (_optional("msvcrt") if IS_WINDOWS else None)


def _local_lock(path: Path) -> threading.Lock:
    with _LOCAL_GUARD:
        return _LOCAL_LOCKS.setdefault(str(path), threading.Lock())


def _lock_fd(fd: int, fcntl: ModuleType | None, msvcrt: ModuleType | None) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    assert msvcrt is not None
    os.lseek(fd, 0, os.SEEK_SET)  # msvcrt.locking locks from the current position
    while True:
        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # LK_LOCK itself retries for ~10 s
            return
        except OSError:
            time.sleep(0.01)


def _unlock_fd(fd: int, fcntl: ModuleType | None, msvcrt: ModuleType | None) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    assert msvcrt is not None
    os.lseek(fd, 0, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class InPlaceFile:
    """A small file rewritten in place, under an exclusive lock (``lock_path``) held across processes and
    threads, with both descriptors kept open between uses (``close`` releases them; the next use reopens).

    ``read``/``write`` are called inside ``with f.locked():``. Each checks the path first: when the file
    was deleted or replaced by another one since it was opened, the descriptor is reopened on what the
    path names now (``read`` gives None for a missing file, ``write`` creates it 0600, fsyncs it and its
    folder). ``write`` = seek(0) + write + (truncate when the size differs) + ``os.fdatasync`` when the
    size is unchanged, else ``os.fsync`` (Windows: FlushFileBuffers), as ``write_in_place``.

    Windows: an open file cannot be renamed over or deleted by another process (no FILE_SHARE_DELETE):
    the anchor cannot be replaced while its journal is open; the checks still apply elsewhere."""

    def __init__(self, path: Path, lock_path: Path) -> None:
        self.path = Path(path)
        self.lock_path = Path(lock_path)
        self._threads = threading.Lock()  # flock does not exclude threads sharing one descriptor
        self._lock_fd: int | None = None
        self._lock_ident: tuple[int, int] = (0, 0)
        self._fd: int | None = None
        self._ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the file _fd is open on
        self._held = False
        self._stat: os.stat_result | None = None  # what the path named at the last check of this hold
        # how to release the lock held: (lock fd, fcntl, msvcrt), or the process-local lock
        self._release: tuple[int, ModuleType | None, ModuleType | None] | threading.Lock | None = None
        self._modules = _lock_modules()
        self._closed = False  # after close(): each use opens and releases its descriptors

    def locked(self) -> InPlaceFile:
        """``with f.locked():`` holds the lock (a plain context manager: no generator per use)."""
        return self

    def __enter__(self) -> InPlaceFile:
        self._threads.acquire()
        try:
            fcntl, msvcrt = self._modules
            if fcntl is None and msvcrt is None:
                local = _local_lock(self.lock_path)
                local.acquire()
                self._release = local
            else:
                self._release = (self._acquire(fcntl, msvcrt), fcntl, msvcrt)
        except BaseException:
            self._threads.release()
            raise
        self._held = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._held = False
        self._stat = None
        release, self._release = self._release, None
        try:
            if isinstance(release, tuple):
                _unlock_fd(*release)
            elif release is not None:
                release.release()
        finally:
            if self._closed:
                self._close_fds()
            self._threads.release()

    def _acquire(self, fcntl: ModuleType | None, msvcrt: ModuleType | None) -> int:
        """Lock the lock file the path names now: one deleted or replaced since it was opened (another
        process locking the new one would not exclude us) is reopened and locked again."""
        while True:
            if self._lock_fd is None:
                self._lock_fd = fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR | O_BINARY, 0o600)
                st = os.fstat(fd)  # kept first: a failing fstat leaves it to _close_fds
                self._lock_ident = (st.st_dev, st.st_ino)
            fd = self._lock_fd
            _lock_fd(fd, fcntl, msvcrt)
            try:
                now = os.stat(self.lock_path)
                same = (now.st_dev, now.st_ino) == self._lock_ident
            except FileNotFoundError:
                same = False
            except BaseException:
                _unlock_fd(fd, fcntl, msvcrt)
                raise
            if same:
                return fd
            _unlock_fd(fd, fcntl, msvcrt)
            self._lock_fd = None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _current(self) -> os.stat_result | None:
        """The file the path names now (None when missing); drops a descriptor open on another file."""
        assert self._held, "InPlaceFile used outside locked()"
        if self._stat is not None:  # checked already during this hold (a read before the write)
            return self._stat
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        self._stat = st
        if self._fd is not None and (st is None or (st.st_dev, st.st_ino) != self._ident):
            self._drop()
        return st

    def _open(self, flags: int) -> int:
        self._fd = fd = os.open(self.path, flags | os.O_RDWR | O_BINARY, 0o600)
        st = os.fstat(fd)  # kept first: a failing fstat leaves it to _drop
        self._ident = (st.st_dev, st.st_ino)
        return fd

    def read(self) -> bytes | None:
        """The whole file, None when it does not exist."""
        st = self._current()
        if st is None:
            return None
        try:
            fd = self._fd if self._fd is not None else self._open(0)
        except FileNotFoundError:  # removed between the stat and the open
            return None
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        want = max(st.st_size, 0) + 1  # one more byte: sees growth since the stat
        while True:
            chunk = os.read(fd, want)
            chunks.append(chunk)
            if len(chunk) < want:  # a short read of a regular file: its end
                break
            want = 65536
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        """Overwrite the file with ``data`` and flush it to disk (created 0600 when missing)."""
        st = self._current()
        before = st.st_size if st is not None else -1
        fd = self._fd if self._fd is not None else self._open(os.O_CREAT)
        created = st is None
        self._stat = None  # size and times change: checked again by a later use of this hold
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            _write_all(fd, data)
            if before != len(data):
                os.ftruncate(fd, len(data))  # a metadata update: only when the size changes
            datasync = getattr(os, "fdatasync", None)
            if before == len(data) and datasync is not None:
                datasync(fd)
            else:
                os.fsync(fd)
        except BaseException:
            self._drop()  # a failed write or sync: the next one starts from a fresh descriptor
            raise
        if created:
            restrict_file(self.path)
            fsync_dir(self.path.parent)

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Release both descriptors (idempotent); a later use opens them for its own duration only."""
        with self._threads:
            self._closed = True
            self._close_fds()

    def _close_fds(self) -> None:
        self._drop()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably (readers see the old or the new file)."""
    tmp = path.with_name(path.name + ".tmp")
    write_file(tmp, data)
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
    "InPlaceFile",
    "restrict_dir",
    "restrict_file",
    "write_atomic",
]
