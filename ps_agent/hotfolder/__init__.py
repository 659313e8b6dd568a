"""Hot folder for establishments (issue 12 item 2): documents dropped in ``inbox/`` are deposited in the
DMP exactly once, with a receipt in ``done/`` or a French error in ``rejected/``.

Folder layout (``root``)::

    inbox/      NAME.pdf + NAME.json (PDF + sidecar), or NAME.xml + NAME.json (ready CDA + sidecar); the
                suffixes in any case (``NAME.PDF`` + ``NAME.JSON``: ``item_files``)
    work/       items being deposited: KEY.item.pdf / KEY.item.xml and KEY.item.json, the dropped files
                renamed (the CDA is rebuilt from them after a crash); items taken by earlier versions may
                still be in KEY/ (a folder per item) or KEY.xml + KEY.sidecar.json: both are read
    done/       NAME.pdf, NAME.json and NAME.receipt.json (uniqueId, rubric, ACK_RECEPTION_DMP, time);
                elsewhere with ``done=`` (the ``hotfolder.done`` setting, ``layout.layout_from_settings``):
                on another volume each file is copied, fsync'd, then removed (``layout.move_file``)
    rejected/   NAME.* and NAME.error.json (French detail, field named)
    ledger.sqlite3  content hash → state (never deposited twice)

Completeness convention: the sidecar ``NAME.json`` is the marker and is written LAST, each file under a
temporary name then renamed (``.NAME…``, ``~…``, ``*.tmp``, ``*.part``, ``*.partial`` are ignored). An item
is taken only when its sidecar exists under its final name.

Pipeline: ``workers`` threads each take the next complete item, build its CDA, sign and send it through the
session (``PatientHandle.deposit``, safe from several threads: docs/agent.md, "Threading rule"); while one
waits for the DMP the others build and sign, so at most ``workers`` deposits are in flight. The names waiting
are a set (one entry per file of the inbox, never per item processed): memory stays flat with the count.
File-system events only name the sidecar that arrived (no listing per event); the inbox is listed at start
and every ``rescan_interval_s``. An item that replaces a document (``replaces``) waits until the items taken
before it for the same patient are finished, so a replacement never overtakes its predecessor.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import queue as queue_mod
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ps_agent.access.policy import PatientRef
from ps_agent.api.backend import ApiBackend, to_problem
from ps_agent.api.problems import Problem
from ps_agent.context import Context
from ps_agent.dmp.model import Visibility
from ps_agent.events import QUEUE_CHANGED
from ps_agent.fileio import O_BINARY, write_file
from ps_agent.hotfolder.layout import layout_for, move_file
from ps_agent.hotfolder.ledger import BUILDING, DONE, QUEUED, REJECTED, Item, Ledger
from ps_agent.hotfolder.sidecar import Sidecar, SidecarError, parse_sidecar
from ps_agent.outbox import EntryState, QueuedDeposit

log = logging.getLogger(__name__)

TEMP_PREFIXES = (".", "~")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart")
DOCUMENT_SUFFIXES = (".pdf", ".xml")
SIDECAR_SUFFIX = ".json"
# [I] How the files of one item are paired (``item_files``): the stem exactly as the file system compares
# names (as written on Linux; Windows and macOS compare names without case, so there ``a.pdf`` also pairs
# with ``A.json``: the system itself says they have one name), the suffix in any case (``A.PDF`` + ``A.JSON``,
# ``A.Pdf`` + ``A.Json``: a Windows program writing to a share served by Samba, an export tool writing
# upper-case names). The item's name is the sidecar's stem as written; on a case-sensitive file system its
# files keep their names in ``work/``, ``done/`` and ``rejected/`` (suffix case included); on Windows and
# macOS they take the first probed spelling that found them (``SOURCE_SUFFIXES``: ``.pdf`` before ``.PDF``;
# keeping the stored case there would cost a listing per item); the receipt and the error are
# ``NAME.receipt.json`` / ``NAME.error.json`` with that stem and the documented lower-case ending: where
# a practice software looks for them.
ITEM_SUFFIXES = (*DOCUMENT_SUFFIXES, SIDECAR_SUFFIX)


def _case_variants(suffix: str) -> tuple[str, ...]:
    """The spellings probed first: ``.pdf``, ``.PDF``, ``.Pdf`` (any other is found by a listing)."""
    return (suffix, suffix.upper(), "." + suffix[1:].capitalize())


# the names probed (one ``stat`` each) per item, before any listing of its folder
SOURCE_SUFFIXES = tuple(v for s in ITEM_SUFFIXES for v in _case_variants(s))
# [I] Namespace of the document uniqueIds derived from an item's content hash (uuid5 → OID 2.25.x): the
# same item always gets the same uniqueId, so the queue's idempotent resend covers a crash at any point.
UID_NAMESPACE = uuid.UUID("5b0c6a47-8a4e-4f0b-9a55-2f1d6c1e0a12")
# [I] Rescan of the inbox even without a file-system event (network shares lose events).
RESCAN_INTERVAL_S = 5.0
# Deposits in flight at once: enough for the build and signature of the next items to overlap the DMP
# exchanges and the durable writes (queue, journal, ledger, receipt) of the others, few enough to keep the
# agent's threads (GIL) and the DMP's load small. Measured (benchmarks/bench_hotfolder.py, 200 items,
# 2 cores): 4 → 8 → 12 workers raised the hot folder's rate; each worker holds at most one connection
# (``ps_agent.auth.tls.MAX_CONNECTIONS`` ≥ this).
DEFAULT_WORKERS = 8
# [I] How long a replacement waits for the earlier items of the same patient (its predecessor may be among
# them) before it is sent anyway (the queue's own rules then apply): a WAITING predecessor does not hold a
# worker for ever.
REPLACEMENT_WAIT_S = 300.0
FINAL_STATES = (EntryState.REGISTERED, EntryState.REFUSED, EntryState.HANDED_BACK)
# An item's dropped files while it is deposited: ``work/KEY.item.pdf``, ``work/KEY.item.json`` (the suffix as
# dropped). Renamed files, no folder per item: a folder costs an inode created then removed per document
# (≈ 0.3–0.9 ms of CPU each on ext4, measured with benchmarks/bench_hotfolder.py).
KEPT_INFIX = ".item"


def _is_legacy_work_name(name: str) -> bool:
    """A file of the first layout (``KEY.xml`` + ``KEY.sidecar.json``), not a kept item file."""
    return KEPT_INFIX not in name and (name.endswith(".sidecar.json") or name.endswith(".xml"))


def is_temporary(name: str) -> bool:
    low = name.lower()
    return name.startswith(TEMP_PREFIXES) or low.endswith(TEMP_SUFFIXES)


@functools.lru_cache(maxsize=64)
def document_uid_for(key: str) -> str:
    """The item's document uniqueId (a pure function of its key: asked twice per item, computed once)."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, key).int}"


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_JSON_SCALARS = {True: "true", False: "false", None: "null"}
_compact_json = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(x, ensure_ascii=False), one encoder


def json_text(data: dict[str, Any]) -> str:
    """``json.dumps(data, ensure_ascii=False, indent=2)``, the same text: a receipt or an error is a flat
    object of texts and flags, written here with the C string encoder (``indent`` sends ``json.dumps`` to
    its pure-Python encoder: ≈ 40 calls per receipt); any other value goes to ``json.dumps``."""
    parts = []
    for k, v in data.items():
        if isinstance(v, str):
            value = _encode_str(v)
        elif v is None or isinstance(v, bool):
            value = _JSON_SCALARS[v]
        else:
            return json.dumps(data, ensure_ascii=False, indent=2)
        if not isinstance(k, str):
            return json.dumps(data, ensure_ascii=False, indent=2)
        parts.append(f"  {_encode_str(k)}: {value}")
    return "{\n" + ",\n".join(parts) + "\n}" if parts else "{}"


def _write_json(prefix: str, name: str, data: dict[str, Any]) -> None:
    """Write ``prefix + name`` (``prefix``: a folder with its separator) whole or not at all (temporary name
    ``.NAME.tmp`` beside it, fsync, rename): encoded once, one write."""
    blob = json_text(data).encode("utf-8")
    tmp = f"{prefix}.{name}.tmp"
    write_file(tmp, blob)
    os.replace(tmp, prefix + name)


def _name_suffix(name: str) -> str:
    """``Path(name).suffix`` of a file name, without building a ``Path`` (the hot folder's paths are
    strings: pathlib's parsing of each one showed in the profile)."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _suffix(path: str | os.PathLike[str]) -> str:
    """``Path(path).suffix``."""
    return _name_suffix(os.path.basename(os.fspath(path)))


# ".json" in every mix of case: one ``str.endswith`` per name of the inbox (a rescan lists them all)
_SIDECAR_ENDINGS = tuple("." + "".join(c) for c in itertools.product(*((x, x.upper()) for x in "json")))


def _read(path: str | Path) -> bytes:
    """A dropped file's bytes: open, size, read to the end, close (``Path.read_bytes`` also asks whether
    the file is a terminal and where its offset is: two system calls more per file)."""
    fd = os.open(path, os.O_RDONLY | O_BINARY)
    try:
        want = os.fstat(fd).st_size + 1  # one more byte: a file grown meanwhile is read whole anyway
        parts = []
        while chunk := os.read(fd, want):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _kind(name: str) -> str:
    """The suffix of ``name`` in lower case (``".pdf"``, ``".xml"``, ``".json"``…)."""
    return os.path.splitext(name)[1].lower()


def _whole(names: list[str]) -> bool:
    """One document and one sidecar: nothing more to look for."""
    kinds = [_kind(n) for n in names]
    return kinds.count(SIDECAR_SUFFIX) == 1 and sum(k in DOCUMENT_SUFFIXES for k in kinds) == 1


def item_files(
    folder: str,
    stem: str,
    *,
    announced: bool = False,
    listed: bool = False,
    stat_fn: Callable[[str], os.stat_result] = os.stat,
    listdir_fn: Callable[[str], list[str]] = os.listdir,
) -> list[str]:
    """The names, in ``folder``, of the regular files of the item ``stem`` (``stem`` + a suffix of
    ``ITEM_SUFFIXES`` in any case: the pairing rule above), sorted, each file once.

    The usual spellings (``SOURCE_SUFFIXES``) are probed, no listing per item. On a case-insensitive file
    system (Windows, macOS) every spelling of a suffix finds the same file: it is counted once (same
    device and inode; where the file system gives no inode, same suffix in lower case), under the first
    spelling that found it. The folder is listed only when the probes did not find one document and one
    sidecar while something of the item is there (or ``announced``: its sidecar was seen; or ``listed``: the
    caller has the listing anyway, so every spelling counts): a suffix in a
    rarer case (``.pDf``) on a case-sensitive file system, or a second document (``A.pdf`` and ``A.PDF``)."""
    found: list[str] = []
    seen: set[object] = set()
    prefix = os.path.join(folder, "")  # ``prefix + name`` is ``os.path.join(folder, name)``: a plain name

    def add(name: str) -> None:
        try:
            st = stat_fn(prefix + name)
        except (OSError, ValueError):
            return
        if not stat.S_ISREG(st.st_mode):
            return
        ident = (st.st_dev, st.st_ino) if st.st_ino else _kind(name)
        if ident not in seen:  # one file under another spelling (case-insensitive file system)
            seen.add(ident)
            found.append(name)

    for suffix in SOURCE_SUFFIXES:
        add(stem + suffix)
    if listed or (not _whole(found) and (found or announced)):
        try:
            names = listdir_fn(folder)
        except OSError:
            names = []
        n = len(stem)
        for name in sorted(names):
            if name.startswith(stem) and name[n:].lower() in ITEM_SUFFIXES and name not in found:
                add(name)
    return sorted(found)


@dataclass(frozen=True)
class ItemProblem:
    """Why the files of one item cannot be deposited: the field (``fiche``, ``document``), the French
    detail naming the files, the code (``SIDECAR_AMBIGUOUS``, ``DOCUMENT_MISSING``, ``DOCUMENT_AMBIGUOUS``,
    ``SIDECAR_MISSING``)."""

    field: str
    detail: str
    code: str


def item_problem(stem: str, names: list[str]) -> ItemProblem | None:
    """The refusal of the item ``stem`` whose files are ``names`` (``item_files``), None when it is one
    document and one sidecar: the same words for the hot folder and ``ps-agent deposit --batch``."""
    sidecars = [n for n in names if _kind(n) == SIDECAR_SUFFIX]
    docs = [n for n in names if _kind(n) in DOCUMENT_SUFFIXES]
    if len(sidecars) > 1:  # ``A.json`` and ``A.JSON`` (case-sensitive file system): never a silent pick
        named = " et ".join(f"« {n} »" for n in sidecars)
        detail = f"Plusieurs fiches pour « {stem} » : {named} ; une seule fiche .json par document."
        return ItemProblem("fiche", detail, "SIDECAR_AMBIGUOUS")
    if not sidecars:
        named = " et ".join(f"« {n} »" for n in docs)
        detail = f"Fiche absente : « {stem}.json » doit accompagner {named}."
        return ItemProblem("fiche", detail, "SIDECAR_MISSING")
    if not docs:
        detail = (f"Document absent : « {stem}.pdf » ou « {stem}.xml » doit être déposé avant "
                  f"« {sidecars[0]} ».")  # fmt: skip
        return ItemProblem("document", detail, "DOCUMENT_MISSING")
    if len(docs) > 1:  # ``A.pdf`` and ``A.PDF``, or ``A.pdf`` and ``A.xml``
        named = " et ".join(f"« {n} »" for n in docs)
        detail = (f"Plusieurs documents pour « {stem} » : {named} ; un seul fichier .pdf ou .xml "
                  "par fiche.")  # fmt: skip
        return ItemProblem("document", detail, "DOCUMENT_AMBIGUOUS")
    return None


@dataclass(frozen=True)
class FolderItem:
    """The files (names in the folder, sorted) of one item of a folder read once (``folder_items``); its
    name is its sidecar's stem, or a lone document's stem; ``problem`` None when it can be deposited."""

    name: str
    files: tuple[str, ...]
    problem: ItemProblem | None

    @property
    def document(self) -> str | None:
        return next((n for n in self.files if _kind(n) in DOCUMENT_SUFFIXES), None)

    @property
    def sidecar(self) -> str | None:
        return next((n for n in self.files if _kind(n) == SIDECAR_SUFFIX), None)


def folder_items(folder: str) -> list[FolderItem]:
    """Every item of ``folder`` at once (``ps-agent deposit --batch``), by the hot folder's pairing rule
    (``item_files``), sorted by name: one per sidecar stem, then one per stem of the documents that no
    sidecar claimed (lone documents: ``SIDECAR_MISSING``), so that no file of an item suffix is left out.
    Temporary names (``is_temporary``) and files of other suffixes are not items."""
    names = sorted(n for n in os.listdir(folder) if not is_temporary(n))
    claimed: set[object] = set()

    def ident(name: str) -> object:
        try:
            st = os.stat(os.path.join(folder, name))
        except OSError:
            return name
        return (st.st_dev, st.st_ino) if st.st_ino else os.path.normcase(name)

    items: list[FolderItem] = []

    def take(stem: str) -> None:
        files = item_files(folder, stem, announced=True, listed=True, listdir_fn=lambda _: names)
        fresh = [n for n in files if ident(n) not in claimed]
        if not fresh:
            return
        claimed.update(ident(n) for n in fresh)
        items.append(FolderItem(stem, tuple(fresh), item_problem(stem, fresh)))

    stems = dict.fromkeys(n[: -len(SIDECAR_SUFFIX)] for n in names if _kind(n) == SIDECAR_SUFFIX)
    for stem in stems:
        take(stem)
    for n in names:
        if _kind(n) in DOCUMENT_SUFFIXES and ident(n) not in claimed:
            take(n[: -len(_kind(n))])
    return sorted(items, key=lambda i: i.name)


def _is_sidecar_name(name: str) -> bool:
    return name.endswith(_SIDECAR_ENDINGS) and not is_temporary(name)


class _Capture(threading.local):
    """What the queue said, on this thread, about the entry being deposited (its id, its last state)."""

    active: bool = False
    entry: QueuedDeposit | None = None
    seq: int = -1  # the order in which this thread's item was taken (-1: recovery)


class HotFolder:
    """Watch ``root/inbox`` and deposit each complete item once through ``backend`` (its session)."""

    def __init__(
        self,
        root: Path,
        backend: ApiBackend,
        *,
        done: Path | None = None,
        polling: bool = False,
        workers: int = DEFAULT_WORKERS,
        rescan_interval_s: float = RESCAN_INTERVAL_S,
    ) -> None:
        """``done``: where handled items go (the ``hotfolder.done`` setting: an absolute path, created 0700;
        default ``root/done``); ``SettingsError`` naming ``hotfolder.done`` when it cannot be used."""
        self.layout = layout_for(root, done)
        self.layout.create()
        self.root = self.layout.root
        self.inbox = self.layout.inbox
        self.work = self.layout.work
        self.done = self.layout.done
        self.rejected = self.layout.rejected
        # "done" on another volume: each handled file is copied, fsync'd, then removed (``move_file``)
        self.done_on_other_volume = self.layout.done_on_other_volume()
        if self.done_on_other_volume:
            log.warning("hot folder: %s is on another volume than %s: handled files are copied then removed",
                        self.done, self.work)  # fmt: skip
        self.backend = backend
        self.ledger = Ledger(self.layout.ledger)
        # files left in work/ by earlier versions (KEY.xml, KEY.sidecar.json): removed as their items end
        with os.scandir(self.work) as it:
            self._legacy_work = any(e.is_file() and _is_legacy_work_name(e.name) for e in it)
        # the suffixes of the files each item in flight has in work/ (``_adopt_files``); not there: probed
        self._kept_suffixes: dict[str, tuple[str, ...]] = {}
        self.polling = polling
        self.workers = max(1, workers)
        self.rescan_interval_s = rescan_interval_s
        self._inbox_path = os.fspath(self.inbox)
        self._work_prefix = os.path.join(os.fspath(self.work), "")
        # the folders as strings ending with their separator: ``prefix + name`` is ``folder / name``
        self._inbox_prefix = os.path.join(self._inbox_path, "")
        self._done_prefix = os.path.join(os.fspath(self.done), "")
        self._rejected_prefix = os.path.join(os.fspath(self.rejected), "")
        self._inbox_str = os.path.normcase(os.path.abspath(self.inbox))
        # scheduling (one condition guards the sets below)
        self._cv = threading.Condition()
        self._pending: dict[str, None] = {}  # complete items waiting for a worker, in arrival order
        self._busy: set[str] = set()  # names a worker holds
        self._again: set[str] = set()  # names seen again while busy (dropped anew): taken once more after
        self._open: dict[str, str] = {}  # item key → patient key, items taken and not finished here
        self._patients: dict[str, int] = {}  # patient key → how many of its items are open
        self._seq = 0  # items taken so far (their order)
        self._preparing: set[int] = set()  # order numbers of items taken, patient not known/counted yet
        self._finishing: set[str] = set()  # item keys being finished (one finisher per item)
        self._reserved: set[str] = set()  # target names chosen in done/ or rejected/, not yet written
        self._rubrics: dict[str, str] = {}  # item key → rubric, known at build (no re-parse at the end)
        self._capture = _Capture()
        self._finish_q: queue_mod.SimpleQueue[QueuedDeposit | None] = queue_mod.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: Any = None
        self._disconnect: Callable[[], None] | None = None
        self.on_finished: Callable[[str, str], None] | None = None  # (name, "done"|"rejected")
        self._recovering = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        from watchdog.events import (
            FileClosedEvent,
            FileCreatedEvent,
            FileMovedEvent,
            FileSystemEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        notice = self._notice

        class Handler(FileSystemEventHandler):
            """Only a sidecar arriving under its final name matters (created, renamed to, or closed)."""

            def on_created(self, event: FileSystemEvent) -> None:
                notice(event.src_path)

            def on_moved(self, event: FileSystemEvent) -> None:
                notice(event.dest_path)

            def on_closed(self, event: FileSystemEvent) -> None:
                notice(event.src_path)

        self._disconnect = self.backend.services.events.connect(QUEUE_CHANGED, self._on_queue_changed)
        self._spawn(self._finish_loop, "hotfolder-finish")
        self.recover()
        observer = PollingObserver(timeout=1.0) if self.polling else _arrivals_observer()
        self._observer = observer if observer is not None else Observer()
        # Only the events a sidecar arriving makes: the file system is asked for no others (inotify: no
        # open/read/modify/attribute/delete/moved-from events, e.g. none for the agent's own reads of the
        # inbox nor for its files leaving it)
        self._observer.schedule(
            Handler(), str(self.inbox), recursive=False,
            event_filter=[FileCreatedEvent, FileMovedEvent, FileClosedEvent],
        )  # fmt: skip
        self._observer.start()
        for i in range(self.workers):
            self._spawn(self._work_loop, f"hotfolder-{i}")
        self._spawn(self._scan_loop, "hotfolder-scan")
        self._wake.set()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def stop(self) -> None:
        """Stop watching; items in flight finish (their state is in the ledger in any case)."""
        self._stop.set()
        self._wake.set()
        with self._cv:
            self._cv.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
        finisher = self._threads[0] if self._threads else None
        for t in self._threads[1:]:
            t.join()
        if finisher is not None:
            self._finish_q.put(None)
            finisher.join()
        self._threads = []
        if self._disconnect is not None:
            self._disconnect()
        self.ledger.close()

    def _scan_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.rescan_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.scan()
            except Exception:
                log.exception("hot folder scan failed")

    def _work_loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._stop.is_set():
                    self._cv.wait()
                if self._stop.is_set():
                    return
                stem = next(iter(self._pending))
                del self._pending[stem]
                self._busy.add(stem)
                seq = self._capture.seq = self._seq
                self._seq += 1
                self._preparing.add(seq)
            try:
                self.process(stem)
            except Exception:
                log.exception("hot folder item %s", stem)
            finally:
                with self._cv:
                    self._preparing.discard(seq)
                    self._cv.notify_all()
                    self._busy.discard(stem)
                    if stem in self._again:
                        self._again.discard(stem)
                        self._pending[stem] = None
                        self._cv.notify()

    def _finish_loop(self) -> None:
        """Outcomes that arrive later (a WAITING entry registered by the queue worker) are finished here,
        never inside the queue's notification (it holds the queue's lock)."""
        while True:
            entry = self._finish_q.get()
            if entry is None:
                return
            try:
                self._finish_entry(entry)
            except Exception:
                log.exception("hot folder outcome of %s", entry.id)

    # ------------------------------------------------------------------ scanning
    def _list_complete(self, skip: Container[str] = ()) -> list[str]:
        """The stems of the inbox's complete items (sorted), but those in ``skip``."""
        with os.scandir(self._inbox_path) as it:
            # the suffix first (a cheap test that rejects the documents), the file type (no stat) last
            stems = [
                n[:-5]
                for e in it
                if (n := e.name).endswith(_SIDECAR_ENDINGS) and n[:-5] not in skip and not is_temporary(n)
                and e.is_file()
            ]  # fmt: skip
        stems.sort()
        return stems

    def complete_items(self) -> list[str]:
        """Names (stems) whose sidecar is present under its final name."""
        return self._list_complete()

    def _notice(self, path: str | bytes) -> None:
        """A file-system event: the sidecar it names is taken (no listing of the inbox)."""
        p = os.fsdecode(path)
        name = os.path.basename(p)
        if (
            _is_sidecar_name(name)
            and os.path.normcase(os.path.dirname(os.path.abspath(p))) == self._inbox_str
        ):
            self._enqueue(name[:-5])

    def _enqueue(self, stem: str) -> bool:
        with self._cv:
            if self._enqueue_locked(stem):
                self._cv.notify()
                return True
            return False

    def _enqueue_locked(self, stem: str) -> bool:
        if stem in self._pending:
            return False
        if stem in self._busy:
            self._again.add(stem)
            return False
        self._pending[stem] = None
        return True

    def scan(self) -> int:
        """Schedule every complete item not already being handled; returns how many were scheduled. The
        workers' lock is taken once per scan, not once per name (a rescan of a full inbox lists them all)."""
        # the items already waiting are not looked at again (a rescan during a batch lists them all); a
        # snapshot of the keys: read while the workers go on (one name more or less is harmless, the lock
        # below decides)
        stems = self._list_complete(self._pending.keys())
        with self._cv:
            n = sum(1 for stem in stems if self._enqueue_locked(stem))
            if n:
                self._cv.notify(n)
        return n

    # ------------------------------------------------------------------ one item
    def _sources(self, stem: str, *, announced: bool = False) -> list[str]:
        """The paths of the item's files in the inbox (``item_files``: its own names are probed, no listing
        per item)."""
        prefix = self._inbox_prefix
        return [prefix + n for n in item_files(self._inbox_path, stem, announced=announced)]

    def process(self, stem: str) -> None:
        names = item_files(self._inbox_path, stem, announced=True)
        prefix = self._inbox_prefix
        sources = [prefix + n for n in names]
        suffixes = [_name_suffix(n) for n in names]
        kinds = [x.lower() for x in suffixes]
        sidecars = [p for p, k in zip(sources, kinds, strict=True) if k == SIDECAR_SUFFIX]
        if not sidecars:
            return
        doc_kinds = [(p, k) for p, k in zip(sources, kinds, strict=True) if k in DOCUMENT_SUFFIXES]
        docs = [p for p, _ in doc_kinds]
        flying = self.ledger.in_flight(stem) if not docs else None
        if flying is not None:  # its document already moved to work/ (a move interrupted): the rest follows
            self._adopt_files(flying)
            self._resume_item(flying, self.backend.services.queue)
            return
        problem = item_problem(stem, names)
        if problem is not None:
            self._reject_files(stem, sources, problem.field, problem.detail, problem.code)
            return
        sidecar_path = sidecars[0]
        doc_path, doc_kind = doc_kinds[0]
        data = _read(doc_path)
        try:
            is_cda = doc_kind == ".xml"
            sidecar = parse_sidecar(_read(sidecar_path), is_cda=is_cda, cda_bytes=data if is_cda else None)
        except SidecarError as exc:
            self._reject_files(stem, sources, exc.field, exc.detail, "SIDECAR_INVALID")
            return
        except Exception as exc:  # an unreadable CDA
            p = to_problem(exc)
            fld = p.errors[0][0] if p.errors else "document"
            self._reject_files(stem, sources, fld, p.detail, p.code)
            return
        key = self._key(data, sidecar)
        known = self.ledger.get(key)
        if known is not None and known.name == stem and known.state in (BUILDING, QUEUED):
            self._adopt_files(known)  # a crash left the item's own files in the inbox: not a duplicate
            self._resume_item(known, self.backend.services.queue)
            return
        if known is not None:
            self._duplicate(stem, known, sources)
            return
        try:
            cda_bytes = self._build(key, data, sidecar, is_cda=is_cda)
            uid = self._uid_of(cda_bytes, sidecar, key) if is_cda else document_uid_for(key)
        except Exception as exc:
            p = to_problem(exc)
            fld = p.errors[0][0] if p.errors else "document"
            self._reject_files(stem, sources, fld, p.detail, p.code)
            return
        # nothing else is written before the claim: after a crash the CDA is rebuilt from the item's own
        # files (adopted into work/KEY/ below), with the same uniqueId (derived from the key)
        item = self.ledger.claim_new(key, stem, uid)
        if item is None:  # dropped twice at once: the other one wins
            self._rubrics.pop(key, None)
            self._duplicate(stem, self.ledger.get(key), sources)
            return
        self._adopt_files(item, sources, suffixes)
        self._deposit(key, cda_bytes, sidecar, item)

    def _inbox_key(self, stem: str) -> str | None:
        """The content key of the inbox item ``stem`` (None when incomplete or unreadable)."""
        sources = self._sources(stem)
        docs = [p for p in sources if _suffix(p).lower() in DOCUMENT_SUFFIXES]
        sidecars = [p for p in sources if _suffix(p).lower() == SIDECAR_SUFFIX]
        if len(docs) != 1 or len(sidecars) != 1:
            return None
        try:
            data = _read(docs[0])
            is_cda = _suffix(docs[0]).lower() == ".xml"
            sc = parse_sidecar(_read(sidecars[0]), is_cda=is_cda, cda_bytes=data if is_cda else None)
        except Exception:
            return None
        return self._key(data, sc)

    @staticmethod
    def _key(data: bytes, sc: Sidecar) -> str:
        """The idempotency key: the document's bytes and the patient (the same file dropped twice)."""
        h = hashlib.sha256(data)
        h.update(b"\0" + sc.patient_key.encode())
        return h.hexdigest()

    def _kept_path(self, key: str, suffix: str) -> str:
        """A string, not a ``Path``: built four times per item (pathlib's joins showed in the profile)."""
        return f"{self._work_prefix}{key}{KEPT_INFIX}{suffix}"

    def _adopt_files(
        self,
        item: Item,
        sources: Sequence[str | os.PathLike[str]] | None = None,
        suffixes: Sequence[str] | None = None,
    ) -> None:
        """Move the item's dropped files from the inbox to ``work/KEY.item.SUFFIX`` (idempotent; work/ is
        0700: private whatever the umask). ``suffixes``: those of ``sources`` when the caller has them."""
        files = self._sources(item.name) if sources is None else sources
        fresh = sources is not None and not self._recovering
        moved: list[str] = []
        # the document before the sidecar: a crash between the two moves leaves the sidecar in the inbox
        # beside its moved document, a split that process() and recover() both recognise
        if suffixes is None or sources is None:
            suffixes = [_suffix(f) for f in files]
        for suffix, p in sorted(
            zip(suffixes, files, strict=True), key=lambda sf: sf[0].lower() == SIDECAR_SUFFIX
        ):
            try:
                os.replace(p, self._kept_path(item.key, suffix))
                moved.append(suffix)
            except FileNotFoundError:
                fresh = False  # taken by someone else meanwhile: what is kept is found on disk
        if fresh:  # a new item: its kept files are exactly these (no probing of work/ at its end)
            self._kept_suffixes[item.key] = tuple(moved)
        else:
            self._kept_suffixes.pop(item.key, None)

    def _uid_of(self, cda_bytes: bytes, sc: Sidecar, key: str = "") -> str:
        from ps_agent.dmp.metadata import entry_from_cda, rubric_of

        entry, _ = entry_from_cda(cda_bytes, (sc.ins, sc.ins_oid), sc.visibility)
        if key:
            self._rubrics[key] = rubric_of(entry)
        return entry.unique_id

    def _build(self, key: str, data: bytes, sc: Sidecar, *, is_cda: bool) -> bytes:
        from cda import build
        from cda.errors import CdaError
        from cda.model import InstanceId

        try:
            if is_cda:
                from cda.xml import safe_parse

                safe_parse(data)
                return data
            if not data.startswith(b"%PDF-"):
                raise Problem(
                    422, "NOT_A_PDF", "Le fichier n'est pas un PDF.", errors=[("document", "pas un PDF")]
                )
            cda_bytes = build.level1(
                type_code=sc.type_code, content=data, title=sc.title, patient=sc.patient, author=sc.author,
                media_type="application/pdf", document_id=InstanceId(document_uid_for(key)),
                effective_time=sc.effective_time, service_start=sc.service_start,
                service_stop=sc.service_stop,
            )  # fmt: skip
        except CdaError as exc:
            raise to_problem(exc) from exc
        self._rubrics[key] = _rubric_of_type(sc.type_code)
        return cda_bytes

    def _stored_item(self, key: str) -> tuple[bytes, Sidecar] | None:
        """The CDA and sidecar of an item taken before a restart: the CDA stored by earlier versions
        (``work/KEY.xml``), else the ready CDA kept in ``work/KEY/``, else the CDA built again from the PDF
        kept there (same key, so same uniqueId: nothing of it was sent, or the queue entry holding that
        uniqueId would have been adopted instead)."""
        raw = self._stored_sidecar(key)
        stored = self.work / f"{key}.xml"
        if stored.exists():
            cda_bytes = stored.read_bytes()
            return cda_bytes, parse_sidecar(raw, is_cda=True, cda_bytes=cda_bytes)
        docs = [(p, suffix) for p, suffix in self._kept(key) if suffix.lower() in DOCUMENT_SUFFIXES]
        if len(docs) != 1:
            return None
        data = Path(docs[0][0]).read_bytes()
        if docs[0][1].lower() == ".xml":
            return data, parse_sidecar(raw, is_cda=True, cda_bytes=data)
        sc = parse_sidecar(raw, is_cda=False)
        if self._key(data, sc) != key:
            return None
        return self._build(key, data, sc, is_cda=False), sc

    def _stored_sidecar(self, key: str) -> bytes:
        """The sidecar of an item taken before a restart: its own file, adopted into ``work/``."""
        copy = self.work / f"{key}.sidecar.json"  # the layout of earlier versions
        if copy.exists():
            return copy.read_bytes()
        for p, suffix in self._kept(key):
            if suffix.lower() == SIDECAR_SUFFIX:
                return Path(p).read_bytes()
        return b"{}"  # a ready CDA carries its metadata; a missing sidecar means the defaults (all "N")

    # ------------------------------------------------------------------ the deposit
    @contextlib.contextmanager
    def _in_order(self, key: str, sc: Sidecar) -> Iterator[None]:
        """Count the item as open for its patient; a replacement first waits for the items taken before it
        (still being read, or open for the same patient)."""
        mine = self._capture.seq
        with self._cv:
            if sc.replaces:
                end = time.monotonic() + REPLACEMENT_WAIT_S
                while (
                    self._patients.get(sc.patient_key, 0) or any(s < mine for s in self._preparing)
                ) and not self._stop.is_set():
                    left = end - time.monotonic()
                    if left <= 0:
                        log.warning("hot folder: replacement sent before earlier items of its patient ended")
                        break
                    self._cv.wait(min(left, 1.0))
            if key not in self._open:
                self._open[key] = sc.patient_key
                self._patients[sc.patient_key] = self._patients.get(sc.patient_key, 0) + 1
            self._preparing.discard(mine)
            self._cv.notify_all()
        yield

    def _closed(self, key: str) -> None:
        """The item is finished (or set aside): it no longer holds back a replacement of its patient."""
        self._rubrics.pop(key, None)
        self._kept_suffixes.pop(key, None)
        with self._cv:
            patient = self._open.pop(key, None)
            if patient is not None:
                n = self._patients.get(patient, 1) - 1
                if n:
                    self._patients[patient] = n
                else:
                    self._patients.pop(patient, None)
                self._cv.notify_all()

    def _deposit(
        self, key: str, cda_bytes: bytes | None = None, sc: Sidecar | None = None, item: Item | None = None
    ) -> None:
        """Sign and send on this worker (the session is shared by the workers); the outcome is finished
        here when the queue settles it inline, else when it arrives (``_on_queue_changed``). ``item``: its
        ledger row when the caller just wrote it."""
        item = item or self.ledger.get(key)
        assert item is not None
        if cda_bytes is None or sc is None:  # after a restart: from the item's files kept in work/
            stored = self._stored_item(key)
            if stored is None:
                log.warning("hot folder item %s: its files are no longer in work/%s", item.name, key)
                return
            cda_bytes, sc = stored
        doc, sidecar = cda_bytes, sc
        cap = self._capture
        error: BaseException | None = None
        settled = ""
        with self._in_order(key, sidecar):
            cap.active, cap.entry = True, None
            try:
                h = self.backend.session().patient(
                    PatientRef(sidecar.ins, sidecar.ins_oid, sidecar.ins_status)
                )
                result = h.deposit(doc, visibility=sidecar.visibility, replaces=sidecar.replaces or None,
                                   ctx=Context(background=True))  # fmt: skip
                settled = result.value.submission_set_uid
            except Exception as exc:  # sorted below: before the queue (refused) or after it (its outcome)
                error = exc
            finally:
                entry, cap.active, cap.entry = cap.entry, False, None
        if entry is None:  # no change of the queue on this thread: an entry that already held the document
            held = getattr(error, "entry", None)
            if isinstance(held, QueuedDeposit):
                entry = held
            elif settled:
                entry = self.backend.services.queue.get(settled)
        if entry is None:  # never reached the queue
            p = (
                error
                if isinstance(error, Problem)
                else to_problem(error or RuntimeError("dépôt non enregistré"))
            )
            if p.code == "NO_SESSION" or p.status == 503:
                log.warning("hot folder item %s waits: %s", item.name, p.detail)
                self._closed(key)
                return  # kept BUILDING: tried again at the next recovery
            fld = p.errors[0][0] if p.errors else ""
            self._finish_rejected(key, fld, p.detail, p.code)
            return
        if entry.state in FINAL_STATES:  # settled inline (the usual case): straight to its outcome
            self._finish_entry(entry, key)
            return
        self.ledger.set_state(key, QUEUED, entry_id=entry.id, durable=False)
        entry = self.backend.services.queue.get(entry.id) or entry  # it may have settled meanwhile
        if entry.state in FINAL_STATES:
            self._finish_entry(entry)

    # ------------------------------------------------------------------ outcomes
    def _on_queue_changed(self, entry: QueuedDeposit) -> None:
        """Called by the queue (on the thread that changed the entry, after its lock is released): only note
        it; the finishing work happens elsewhere."""
        cap = self._capture
        if cap.active and (cap.entry is None or cap.entry.id == entry.id):
            cap.entry = entry  # the deposit on this thread: finished by it once the call returns
            return
        if entry.state in FINAL_STATES:
            self._finish_q.put(entry)

    def _finish_entry(self, entry: QueuedDeposit, key: str = "") -> None:
        """Write the outcome of a settled entry: ``key`` is the item deposited on this thread (its ledger row
        may still say BUILDING); without it, the item that recorded this entry (QUEUED)."""
        if not key:
            item = self.ledger.by_entry(entry.id)
            if item is None or item.state != QUEUED:
                return
            key = item.key
        with self._cv:  # one finisher per item
            if key in self._finishing:
                return
            self._finishing.add(key)
        try:
            current = self.ledger.get(key)
            if current is None or current.state not in (BUILDING, QUEUED):
                return
            if entry.state is EntryState.REGISTERED:
                self._finish_done(current, entry)
            else:
                self._finish_rejected(key, "", entry.reason_fr or entry.state.label_fr, entry.reason_code)
        finally:
            with self._cv:
                self._finishing.discard(key)

    @contextlib.contextmanager
    def _target(self, prefix: str, name: str, suffixes: tuple[str, ...]) -> Iterator[str]:
        """A free name in the folder ``prefix`` (its path and separator) for files ``name`` + each suffix
        (``name-2``… when taken), reserved until the block ends (two items of the same name finishing at
        once never share it)."""
        stem = name
        n = 1
        while True:  # reserve the name, then look at the disk outside the workers' lock
            token = prefix + stem
            with self._cv:
                free = token not in self._reserved
                if free:
                    self._reserved.add(token)
            if free:
                if not any(os.path.lexists(token + s) for s in suffixes):
                    break  # reserved: no other worker writes these names until the block ends
                with self._cv:
                    self._reserved.discard(token)
            n += 1
            stem = f"{name}-{n}"
        try:
            yield stem
        finally:
            with self._cv:
                self._reserved.discard(token)

    def _kept(self, key: str) -> list[tuple[str, str]]:
        """The item's files kept in ``work/`` with their suffixes (none when it is gone): known for an item
        taken here, else probed (``KEY.item.SUFFIX``), else in ``work/KEY/`` (the layout of earlier
        versions)."""
        known = self._kept_suffixes.get(key)
        if known is not None:
            return [(self._kept_path(key, s), s) for s in known]
        # each file once, whatever the case of its suffix (``item_files``); the folder is listed only when
        # the usual spellings do not find the item whole (work/ holds the items in flight only)
        kept_stem = key + KEPT_INFIX
        found = [(self._work_prefix + n, n[len(kept_stem) :])
                 for n in item_files(self._work_prefix, kept_stem, announced=True)]  # fmt: skip
        keep = self._work_prefix + key
        try:
            names = os.listdir(keep)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        found += [(os.path.join(keep, n), os.path.splitext(n)[1]) for n in sorted(names)]
        return found

    @staticmethod
    def _suffixes(kept: list[tuple[str, str]]) -> tuple[str, ...]:
        return tuple(s for _, s in kept)

    def _move_kept(self, key: str, prefix: str, stem: str, kept: list[tuple[str, str]]) -> None:
        keep = self._work_prefix + key
        for p, suffix in kept:
            with contextlib.suppress(FileNotFoundError):
                move_file(p, f"{prefix}{stem}{suffix}")
        folder = keep + os.sep  # ``os.path.dirname(p) == keep``: the paths of ``_kept`` are joined names
        if any(p.startswith(folder) for p, _ in kept):  # a folder of the earlier layout
            with contextlib.suppress(OSError):
                os.rmdir(keep)
        if self._legacy_work:  # the layout of earlier versions: a copy of the CDA and of the sidecar
            for extra in (self.work / f"{key}.xml", self.work / f"{key}.sidecar.json"):
                with contextlib.suppress(FileNotFoundError):
                    extra.unlink()

    def _rubric(self, item: Item, entry: QueuedDeposit) -> str:
        known = self._rubrics.get(item.key)
        if known is not None:
            return known
        from ps_agent.dmp.metadata import entry_from_cda, rubric_of

        with contextlib.suppress(Exception):  # after a restart: from the item's files kept in work/
            stored = self._stored_item(item.key)
            if stored is not None:
                doc_entry, _ = entry_from_cda(stored[0], (entry.patient_ins, entry.patient_oid), Visibility())
                return rubric_of(doc_entry)
        return ""

    def _finish_done(self, item: Item, entry: QueuedDeposit) -> None:
        receipt = {
            "ACK_RECEPTION_DMP": "Y",
            "uniqueId": item.document_uid,
            "rubrique": self._rubric(item, entry),
            "titre": entry.titles[0] if entry.titles else "",
            "lot": entry.id,
            "etat": entry.state.label_fr,
            "note": entry.reason_fr,
            "heure": _now(),
            "empreinte": item.key,
        }
        if not (self._recovering and self._written(self.done, ".receipt.json", item.key)):
            kept = self._kept(item.key)
            done = self._done_prefix
            with self._target(done, item.name, (*self._suffixes(kept), ".receipt.json")) as stem:
                # the files first: the receipt says "all there"
                self._move_kept(item.key, done, stem, kept)
                _write_json(done, f"{stem}.receipt.json", receipt)
        self.ledger.set_state(
            item.key, DONE, entry_id=entry.id, outcome=_compact_json(receipt), durable=False
        )
        self._closed(item.key)
        if self.on_finished:
            self.on_finished(item.name, DONE)

    @staticmethod
    def _written(folder: Path, suffix: str, key: str) -> bool:
        """A receipt/error of this item is already there (a crash after writing it, before the ledger)."""
        for p in folder.glob(f"*{suffix}"):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(p.read_text(encoding="utf-8")).get("empreinte") == key:
                    return True
        return False

    def _finish_rejected(self, key: str, field: str, detail: str, code: str) -> None:
        item = self.ledger.get(key)
        assert item is not None
        error = {"ACK_RECEPTION_DMP": "N", "code": code, "champ": field, "detail": detail, "heure": _now(),
                 "empreinte": key}  # fmt: skip
        if not (self._recovering and self._written(self.rejected, ".error.json", key)):
            kept = self._kept(key)
            rejected = self._rejected_prefix
            with self._target(rejected, item.name, (*self._suffixes(kept), ".error.json")) as stem:
                self._move_kept(key, rejected, stem, kept)
                _write_json(rejected, f"{stem}.error.json", error)
        self.ledger.set_state(key, REJECTED, outcome=_compact_json(error), durable=False)
        self._closed(key)
        if self.on_finished:
            self.on_finished(item.name, REJECTED)

    def _reject_files(
        self, stem: str, files: Sequence[str | os.PathLike[str]], field: str, detail: str, code: str
    ) -> None:
        """An item refused before the ledger (bad sidecar...): it may be dropped again once corrected."""
        error = {"ACK_RECEPTION_DMP": "N", "code": code, "champ": field, "detail": detail, "heure": _now()}
        rejected = self._rejected_prefix
        suffixes = [_suffix(p) for p in files]
        with self._target(rejected, stem, (*suffixes, ".error.json")) as target:
            for p, suffix in zip(files, suffixes, strict=True):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(p, f"{rejected}{target}{suffix}")
            _write_json(rejected, f"{target}.error.json", error)
        if self.on_finished:
            self.on_finished(stem, REJECTED)

    def _duplicate(
        self, stem: str, known: Item | None, sources: Sequence[str | os.PathLike[str]] | None = None
    ) -> None:
        """The same content was already taken: not deposited again; the copy goes to done/ with a note."""
        files = self._sources(stem) if sources is None else sources
        note: dict[str, Any] = {
            "doublon": True,
            "detail": "Document déjà reçu : il n'est pas déposé une seconde fois.",
            "heure": _now(),
        }
        if known is not None:
            note.update({"uniqueId": known.document_uid, "lot": known.entry_id, "premier_depot": known.name,
                         "etat_premier_depot": known.state})  # fmt: skip
        done = self._done_prefix
        suffixes = [_suffix(p) for p in files]
        with self._target(done, stem, (*suffixes, ".receipt.json")) as target:
            for p, suffix in zip(files, suffixes, strict=True):
                with contextlib.suppress(FileNotFoundError):
                    move_file(p, f"{done}{target}{suffix}")
            _write_json(done, f"{target}.receipt.json", note)
        if self.on_finished:
            self.on_finished(stem, "duplicate")

    # ------------------------------------------------------------------ recovery
    def recover(self) -> None:
        """After a restart or a crash: finish what the ledger left in flight, never twice."""
        queue = self.backend.services.queue
        self._recovering = True
        try:
            self._recover(queue)
        finally:
            self._recovering = False

    def _recover(self, queue: Any) -> None:
        for item in self.ledger.unfinished():
            try:
                if (
                    self._inbox_key(item.name) == item.key
                    or self._document_moved(item)
                    or self._sidecar_moved(item)
                ):
                    self._adopt_files(item)  # crash before (all) its files left the inbox
                self._resume_item(item, queue)
            except Exception:  # one item's trouble never holds back the others
                log.exception("hot folder recovery of %s", item.name)

    def _document_moved(self, item: Item) -> bool:
        """The item's document is already in work/ and none of that name is in the inbox."""
        moved = any(s.lower() in DOCUMENT_SUFFIXES for _, s in self._kept(item.key))
        return moved and not any(_suffix(p).lower() in DOCUMENT_SUFFIXES for p in self._sources(item.name))

    def _sidecar_moved(self, item: Item) -> bool:
        """The item's sidecar is already in work/ while its document is still alone in the inbox (a
        move interrupted by a release that moved the sidecar first): the document follows it."""
        kept_sidecar = any(s.lower() == SIDECAR_SUFFIX for _, s in self._kept(item.key))
        if not kept_sidecar:
            return False
        kinds = [_suffix(p).lower() for p in self._sources(item.name)]
        return SIDECAR_SUFFIX not in kinds and any(k in DOCUMENT_SUFFIXES for k in kinds)

    def _resume_item(self, item: Item, queue: Any) -> None:
        """Carry an unfinished item on: follow its queue entry, adopt the entry holding its uniqueId (a
        crash after the queue write), or deposit the stored CDA (same bytes, same uniqueId)."""
        if item.state == QUEUED:
            entry = queue.get(item.entry_id)
            if entry is not None and entry.state in FINAL_STATES:
                self._finish_entry(entry)
            return
        adopted = next((e for e in queue.entries() if item.document_uid in e.document_uids), None)
        if adopted is not None:
            self.ledger.set_state(item.key, QUEUED, entry_id=adopted.id)
            if adopted.state in FINAL_STATES:
                self._finish_entry(adopted)
        else:
            self._deposit(item.key)

    def counts(self) -> dict[str, int]:
        return {s: self.ledger.count(s) for s in (BUILDING, QUEUED, DONE, REJECTED)}


def _arrivals_observer() -> Any:
    """Linux: an inotify observer asked only for what an arrival makes (created, renamed INTO the inbox,
    closed after writing). watchdog's mask for "moved" also asks for IN_MOVED_FROM, so each of the agent's
    own files leaving the inbox (two per item) woke watchdog's reader and emitter threads, and held the
    event 0.5 s to pair it, only for it to be filtered out (≈ 6 % of the agent's GIL time, py-spy, 600 PDFs).
    A file renamed into the inbox without its IN_MOVED_FROM is reported by watchdog as created. None
    elsewhere (the platform's observer is used as it is)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
        from watchdog.observers.inotify_c import InotifyConstants
    except Exception:  # no inotify in this libc: watchdog's own choice
        return None

    class ArrivalsEmitter(InotifyEmitter):
        def get_event_mask_from_filter(self) -> Any:
            return (
                InotifyConstants.IN_DELETE_SELF
                | InotifyConstants.IN_CREATE
                | InotifyConstants.IN_MOVED_TO
                | InotifyConstants.IN_CLOSE_WRITE
            )

    observer = InotifyObserver()
    observer._emitter_class = ArrivalsEmitter  # watchdog==7.1.0 (pinned): the class each watch starts
    return observer


@functools.lru_cache(maxsize=256)
def _rubric_of_type(type_code: str) -> str:
    """The DMP rubric of a type code (it depends on the type only: ``cda.classify``)."""
    from cda.classify import classify_type

    try:
        return classify_type(type_code).dmp_rubric
    except Exception:  # unknown type: the DMP refuses it anyway; no rubric rather than an error
        return ""


__all__ = ["HotFolder", "document_uid_for", "is_temporary", "item_files", "json_text"]
