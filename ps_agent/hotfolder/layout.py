"""Where the hot folder's files live (``HotFolderLayout``) and how a handled file leaves them
(``move_file``), for ``ps-agent serve`` and any other host of a ``HotFolder`` (the window's agent).

The deposit folder ``ROOT`` holds ``inbox/``, ``work/``, ``rejected/`` and the ledger; handled items go to
``ROOT/done`` or, with the ``hotfolder.done`` setting, to that folder (an absolute path, created 0700). When
``hotfolder.done`` is on another volume than ``ROOT`` a rename cannot cross it: each file is copied under a
hidden temporary name, fsync'd, renamed, its folder fsync'd, and only then removed from ``work/`` (a crash
leaves the file in ``work/``, and maybe also its copy, never in neither place).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from ps_agent.config import ensure_private_dir
from ps_agent.fileio import O_BINARY, fsync_dir
from ps_agent.settings import AgentSettings, SettingsError, hotfolder_done_path

log = logging.getLogger(__name__)

DONE_KEY = "hotfolder.done"
INBOX_KEY = "hotfolder.inbox"
COPY_CHUNK = 1 << 20


def hotfolder_root(folder: Path) -> Path:
    """The deposit folder (with ``inbox/``, ``done/``, ``rejected/``) for a configured or given folder.

    [I] ``hotfolder.inbox`` (like ``serve --depot``) names the deposit folder: its ``inbox/`` is watched,
    ``work/`` and ``rejected/`` are beside it (the layout of docs/integration.md). A folder itself named
    ``inbox`` is taken as that inbox (its parent is the deposit folder): what someone pointing at "…/inbox"
    expects."""
    folder = folder.expanduser()
    return folder.parent if folder.name.lower() == "inbox" else folder


def _same(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _inside(child: Path, parent: Path) -> bool:
    c = os.path.normcase(os.path.abspath(child))
    p = os.path.normcase(os.path.abspath(parent))
    return c.startswith(p.rstrip(os.sep) + os.sep)


def _bad_done(message: str) -> SettingsError:
    return SettingsError(f"Réglage « {DONE_KEY} » : {message}", key=DONE_KEY, code="HOTFOLDER_DONE")


@dataclass(frozen=True)
class HotFolderLayout:
    """The folders of one hot folder (``done`` may be outside ``root``: the ``hotfolder.done`` setting)."""

    root: Path
    done: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite3"

    @property
    def done_elsewhere(self) -> bool:
        """``done`` is not ``ROOT/done`` (the ``hotfolder.done`` setting)."""
        return not _same(self.done, self.root / "done")

    def create(self) -> None:
        """Create every folder (and parents) 0700, whoever created them before."""
        for folder in (self.root, self.inbox, self.work, self.done, self.rejected):
            ensure_private_dir(folder)

    def done_on_other_volume(self) -> bool:
        """``done`` and ``work`` are on different volumes (files are then copied, not renamed). Both must
        exist (``create``)."""
        try:
            return os.stat(self.done).st_dev != os.stat(self.work).st_dev
        except OSError:
            return False


def layout_for(root: Path, done: Path | str | None = None) -> HotFolderLayout:
    """The layout of the deposit folder ``root`` with its handled files in ``done`` (default ``ROOT/done``).
    A ``done`` that is relative, or that is the inbox, the work or rejected folder (or inside the inbox or
    the work folder: its files would be taken again or mixed with items in flight), raises
    ``SettingsError`` naming ``hotfolder.done``."""
    root = Path(root).expanduser().absolute()
    if done is None or str(done) == "":
        return HotFolderLayout(root, root / "done")
    target = hotfolder_done_path(str(done))
    layout = HotFolderLayout(root, target)
    same_as = (("le dossier d'arrivée", layout.inbox), ("le dossier de travail", layout.work),
               ("le dossier des refus", layout.rejected), ("le dossier de dépôt", layout.root))  # fmt: skip
    for name, folder in same_as:
        if _same(target, folder):
            raise _bad_done(f"« {done} » est {name} ({folder}) ; choisissez un autre dossier.")
        if folder in (layout.inbox, layout.work) and _inside(target, folder):
            raise _bad_done(f"« {done} » est à l'intérieur de {name} ({folder}) ; choisissez-en un autre.")
    return layout


def layout_from_settings(settings: AgentSettings, depot: Path | None = None) -> HotFolderLayout | None:
    """The hot folder the settings describe (``hotfolder.inbox`` + ``hotfolder.done``), None when none is
    configured or it is disabled. ``depot`` (``serve --depot``) replaces the configured folder as a whole.

    [I] With ``depot`` given, its own ``done/`` is used, not ``hotfolder.done``: the command line names
    another deposit folder (a test, a second flow) whose handled files must not mix with the configured
    folder's."""
    if depot is not None:
        return layout_for(hotfolder_root(depot))
    if not settings.hotfolder_enabled or not settings.hotfolder_inbox:
        return None
    return layout_for(hotfolder_root(Path(settings.hotfolder_inbox)), settings.hotfolder_done or None)


def move_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> bool:
    """Move ``src`` to ``dst`` (a free name). On one volume: a rename (atomic). Across volumes (EXDEV: the
    ``hotfolder.done`` setting on another disk or share): copy to a hidden temporary name beside ``dst``,
    fsync it, rename it to ``dst``, fsync the folder, and only then remove ``src``. Returns True when it
    copied. ``FileNotFoundError`` when ``src`` is gone (as ``os.replace``)."""
    try:
        os.replace(src, dst)
        return False
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(src, "rb") as fin:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, 0o600)
            with os.fdopen(fd, "wb") as fout:
                while chunk := fin.read(COPY_CHUNK):
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(dst.parent)
    os.unlink(src)
    return True


__all__ = [
    "DONE_KEY",
    "HotFolderLayout",
    "fsync_dir",
    "hotfolder_root",
    "layout_for",
    "layout_from_settings",
    "move_file",
]
