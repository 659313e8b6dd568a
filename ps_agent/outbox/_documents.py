"""The document files of the deposit queue: one file per document, outside SQLite.

A document is written under a new random name, fsync'd, and its folder fsync'd (``write_all``) BEFORE the
queue row that names it is committed; it is removed (``remove``) only after the row stopped naming it was
committed. The row's commit is what publishes the file: no reader looks at a file no committed row names,
so a temporary name and a rename would add a metadata operation (and, on Windows, a rename that an
antivirus scan of the new file can make fail for a moment) without protecting anything. A crash between
the two steps leaves a file no row names (complete or not): the queue removes such files when it opens
(``DepositQueue``), under its write lock, so that a file another process wrote for a row it has not
committed yet is never taken for one.

Spare files: creating a file is the dearest step of a deposit's document write (≈ 0.35–0.7 ms of CPU
per file measured on the CI machine's ext4, where the write and the fsync of 270 KB cost ≈ 0.25 ms; on
Windows an antivirus filter looks at every creation too). So a file whose row's purge is committed is
not unlinked but emptied (``recycle``: its bytes overwritten with zeros, the document is gone from the
file as with an unlink) and kept as a *spare* by the instance that purged it, which writes its next
document into it (``write_all``: opened without ``O_CREAT``, overwritten from the start, cut to the
document's length, fsync'd). Zeros rather than a truncation to 0 bytes: the file keeps its blocks, so the
next document of a similar size overwrites allocated blocks instead of the file system freeing them at
the purge and allocating them again at the write (measured on ext4 for 270 KB: ≈ 0.3 ms of system time
for the truncation and rewrite, ≈ 0.1 ms for the zeros and overwrite); a file above ``ZERO_MAX_BYTES``
is truncated instead (writing zeros would then cost more than freeing blocks). A spare is a file no
committed row names (only the purge's commit makes one) and only the instance that purged it knows it,
so two writers never share a file and a write for a row never touches a committed row's file. A spare
removed meanwhile (another process's open removes files no row names) is simply created again. Its
directory entry is already durable, so a document written into a spare needs no folder fsync. After a
crash the spares are unnamed files, removed at the next open as any other.

Portable: ``os.open``/``os.write``/``os.fsync``/``os.truncate`` exist on Windows too (``O_BINARY`` where it
exists); a folder is fsync'd only where the OS gives a handle on it (POSIX); NTFS journals its own
metadata. Files are created 0600 (the umask can only narrow it) in a folder the queue keeps 0700.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from ps_agent import fileio

FILE_SUFFIX = ".doc"
# The names this module makes (and the only ones the recovery at open may remove): a random token, so that
# a name is never reused and a write for a row that failed can never touch a committed row's file.
NAME_PATTERN = re.compile(r"^[0-9a-f]{32}\.doc$")
# Above this size a purged spare is truncated to 0 bytes instead of overwritten with zeros (see above).
ZERO_MAX_BYTES = 4 * 1024 * 1024


def new_name() -> str:
    return uuid.uuid4().hex + FILE_SUFFIX


def fsync_dir(folder: Path) -> None:
    """Make the creations and renames in ``folder`` durable where the OS can (POSIX); raises ``OSError``
    when the flush itself fails."""
    fileio.fsync_dir(folder, strict=True)


def _write_fd(path: Path, fd: int, data: bytes, *, cut: bool = False) -> None:
    """Write ``data`` into the open ``fd`` (at its start) and flush it to disk, then close it; ``cut``: the
    file is then cut to ``len(data)`` (what an earlier content left beyond it goes). On any failure the
    file at ``path`` is removed and the error raised."""
    try:
        try:
            fileio.write_all(fd, data)
            if cut:
                os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _write_one(folder: Path, name: str, data: bytes) -> None:
    path = folder / name
    _write_fd(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | fileio.O_BINARY, 0o600), data)


def _rewrite_spare(folder: Path, name: str, data: bytes) -> bool:
    """Write ``data`` durably into the spare file ``name`` (overwritten from its start, then cut to the
    document's length: its zeros beyond go); False when the file is gone (another process's open removed
    it: the caller creates a new one). On any other failure the spare is removed and the ``OSError``
    raised."""
    path = folder / name
    try:
        fd = os.open(path, os.O_WRONLY | fileio.O_BINARY)
    except FileNotFoundError:
        return False
    _write_fd(path, fd, data, cut=True)
    return True


def write_all(
    folder: Path, documents: Iterable[bytes], take_spare: Callable[[], str | None] | None = None
) -> tuple[str, ...]:
    """Write each document durably (file flushed, and the folder when a file was created); returns the
    names. ``take_spare()`` gives the name of a spare file of the caller to write into, or None (a new
    file is then created). On any failure (full disk…) the files written so far are removed and the
    ``OSError`` raised."""
    names: list[str] = []
    created = False
    try:
        for data in documents:
            spare = take_spare() if take_spare is not None else None
            if spare is not None and _rewrite_spare(folder, spare, data):
                names.append(spare)
                continue
            name = new_name()
            _write_one(folder, name, data)
            names.append(name)
            created = True
        if created:
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


def _empty(path: Path) -> None:
    """Overwrite the file's bytes with zeros (truncate it to 0 bytes above ``ZERO_MAX_BYTES``)."""
    fd = os.open(path, os.O_WRONLY | fileio.O_BINARY)
    try:
        size = os.fstat(fd).st_size
        if size > ZERO_MAX_BYTES:
            os.ftruncate(fd, 0)
        elif size:
            fileio.write_all(fd, bytes(size))
    finally:
        os.close(fd)


def recycle(folder: Path, names: Iterable[str], spares: list[str], keep: int) -> None:
    """Files whose row's purge is committed: emptied (``_empty``) and appended to ``spares`` while it holds
    fewer than ``keep`` names, removed otherwise (best effort: a file that cannot be emptied is removed;
    one left behind is removed at the next open). The caller serialises calls on one ``spares`` list."""
    gone: list[str] = []
    for name in names:
        if len(spares) < keep:
            try:
                _empty(folder / name)
            except OSError:
                gone.append(name)
            else:
                spares.append(name)
        else:
            gone.append(name)
    remove(folder, gone)


def ours(folder: Path) -> set[str]:
    """The names in ``folder`` that this module made."""
    try:
        return {n for n in os.listdir(folder) if NAME_PATTERN.match(n)}
    except FileNotFoundError:
        return set()
