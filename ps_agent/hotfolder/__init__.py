"""Hot folder for establishments (issue 12 item 2): documents dropped in ``inbox/`` are deposited in the
DMP exactly once, with a receipt in ``done/`` or a French error in ``rejected/``.

Folder layout (``root``)::

    inbox/      NAME.pdf + NAME.json (PDF + sidecar), or NAME.xml + NAME.json (ready CDA + sidecar)
    work/       items being deposited (KEY.xml: the CDA sent; KEY/: the dropped files)
    done/       NAME.pdf, NAME.json and NAME.receipt.json (uniqueId, rubric, ACK_RECEPTION_DMP, time)
    rejected/   NAME.* and NAME.error.json (French detail, field named)
    ledger.sqlite3  content hash → state (never deposited twice)

Completeness convention: the sidecar ``NAME.json`` is the marker and is written LAST, each file under a
temporary name then renamed (``.NAME…``, ``~…``, ``*.tmp``, ``*.part``, ``*.partial`` are ignored). An item
is taken only when its sidecar exists under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ps_agent.access.policy import PatientRef
from ps_agent.api.backend import ApiBackend, to_problem
from ps_agent.api.problems import Problem
from ps_agent.config import ensure_private_dir
from ps_agent.context import Context
from ps_agent.dmp.model import Visibility
from ps_agent.events import QUEUE_CHANGED
from ps_agent.hotfolder.ledger import BUILDING, DONE, QUEUED, REJECTED, Item, Ledger
from ps_agent.hotfolder.sidecar import Sidecar, SidecarError, parse_sidecar
from ps_agent.outbox import EntryState, QueuedDeposit

log = logging.getLogger(__name__)

TEMP_PREFIXES = (".", "~")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart")
DOCUMENT_SUFFIXES = (".pdf", ".xml")
SOURCE_SUFFIXES = (".pdf", ".PDF", ".Pdf", ".xml", ".XML", ".json", ".JSON")
# [I] Namespace of the document uniqueIds derived from an item's content hash (uuid5 → OID 2.25.x): the
# same item always gets the same uniqueId, so the queue's idempotent resend covers a crash at any point.
UID_NAMESPACE = uuid.UUID("5b0c6a47-8a4e-4f0b-9a55-2f1d6c1e0a12")
# [I] Rescan of the inbox even without a file-system event (network shares lose events).
RESCAN_INTERVAL_S = 5.0
DEFAULT_WORKERS = 4


def is_temporary(name: str) -> bool:
    low = name.lower()
    return name.startswith(TEMP_PREFIXES) or low.endswith(TEMP_SUFFIXES)


def document_uid_for(key: str) -> str:
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, key).int}"


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class HotFolder:
    """Watch ``root/inbox`` and deposit each complete item once through ``backend`` (its session)."""

    def __init__(
        self,
        root: Path,
        backend: ApiBackend,
        *,
        polling: bool = False,
        workers: int = DEFAULT_WORKERS,
        rescan_interval_s: float = RESCAN_INTERVAL_S,
    ) -> None:
        self.root = ensure_private_dir(root)
        self.inbox = ensure_private_dir(root / "inbox")
        self.work = ensure_private_dir(root / "work")
        self.done = ensure_private_dir(root / "done")
        self.rejected = ensure_private_dir(root / "rejected")
        self.backend = backend
        self.ledger = Ledger(root / "ledger.sqlite3")
        self.polling = polling
        self.rescan_interval_s = rescan_interval_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hotfolder")
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: Any = None
        self._scanner: threading.Thread | None = None
        self._disconnect: Callable[[], None] | None = None
        self.on_finished: Callable[[str, str], None] | None = None  # (name, "done"|"rejected")
        self._recovering = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        wake = self._wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        self._disconnect = self.backend.services.events.connect(QUEUE_CHANGED, self._on_queue_changed)
        self.recover()
        self._observer = PollingObserver(timeout=1.0) if self.polling else Observer()
        self._observer.schedule(Handler(), str(self.inbox), recursive=False)
        self._observer.start()
        self._scanner = threading.Thread(target=self._scan_loop, name="hotfolder-scan", daemon=True)
        self._scanner.start()
        self._wake.set()

    def stop(self) -> None:
        """Stop watching; items in flight finish (their state is in the ledger in any case)."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
        if self._scanner is not None:
            self._scanner.join(timeout=10)
        self._pool.shutdown(wait=True)
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

    # ------------------------------------------------------------------ scanning
    def complete_items(self) -> list[str]:
        """Names (stems) whose sidecar is present under its final name."""
        names = []
        for p in sorted(self.inbox.iterdir()):
            if p.is_file() and not is_temporary(p.name) and p.suffix.lower() == ".json":
                names.append(p.stem)
        return names

    def scan(self) -> int:
        """Schedule every complete item not already being handled; returns how many were scheduled."""
        n = 0
        for stem in self.complete_items():
            with self._lock:
                if stem in self._busy:
                    continue
                self._busy.add(stem)
            n += 1
            self._pool.submit(self._guarded, stem)
        return n

    def _guarded(self, stem: str) -> None:
        try:
            self.process(stem)
        except Exception:
            log.exception("hot folder item %s", stem)
        finally:
            with self._lock:
                self._busy.discard(stem)

    # ------------------------------------------------------------------ one item
    def _sources(self, stem: str) -> list[Path]:
        """The item's files in the inbox (only its own names are looked at: no listing per item)."""
        found = []
        for suffix in SOURCE_SUFFIXES:
            p = self.inbox / f"{stem}{suffix}"
            if p.is_file():
                found.append(p)
        return sorted(set(found))

    def process(self, stem: str) -> None:
        sidecar_path = self.inbox / f"{stem}.json"
        if not sidecar_path.exists():
            return
        docs = [p for p in self._sources(stem) if p.suffix.lower() in DOCUMENT_SUFFIXES]
        flying = self.ledger.in_flight(stem) if not docs else None
        if flying is not None:  # its document already moved to work/ (a move interrupted): the rest follows
            self._adopt_files(flying)
            self._resume_item(flying, self.backend.services.queue)
            return
        if len(docs) != 1:
            detail = (
                f"Document absent : « {stem}.pdf » ou « {stem}.xml » doit être déposé avant « {stem}.json »."
                if not docs
                else f"Plusieurs documents pour « {stem} » : un seul fichier .pdf ou .xml par fiche."
            )
            self._reject_files(stem, self._sources(stem), "document", detail, "DOCUMENT_MISSING")
            return
        doc_path = docs[0]
        data = doc_path.read_bytes()
        try:
            is_cda = doc_path.suffix.lower() == ".xml"
            sidecar = parse_sidecar(
                sidecar_path.read_bytes(), is_cda=is_cda, cda_bytes=data if is_cda else None
            )
        except SidecarError as exc:
            self._reject_files(stem, self._sources(stem), exc.field, exc.detail, "SIDECAR_INVALID")
            return
        except Exception as exc:  # an unreadable CDA
            p = to_problem(exc)
            fld = p.errors[0][0] if p.errors else "document"
            self._reject_files(stem, self._sources(stem), fld, p.detail, p.code)
            return
        key = self._key(data, sidecar)
        known = self.ledger.get(key)
        if known is not None and known.name == stem and known.state in (BUILDING, QUEUED):
            self._adopt_files(known)  # a crash left the item's own files in the inbox: not a duplicate
            self._resume_item(known, self.backend.services.queue)
            return
        if known is not None:
            self._duplicate(stem, known)
            return
        try:
            cda_bytes = self._build(key, data, sidecar, is_cda=is_cda)
            uid = self._uid_of(cda_bytes, sidecar) if is_cda else document_uid_for(key)
        except Exception as exc:
            p = to_problem(exc)
            fld = p.errors[0][0] if p.errors else "document"
            self._reject_files(stem, self._sources(stem), fld, p.detail, p.code)
            return
        _write_bytes(self.work / f"{key}.xml", cda_bytes)
        _write_json(self.work / f"{key}.sidecar.json", sidecar.raw)
        if self.ledger.claim_new(key, stem, uid) is None:  # dropped twice at once: the other one wins
            self._duplicate(stem, self.ledger.get(key))
            return
        item = self.ledger.get(key)
        assert item is not None
        self._adopt_files(item)
        self._deposit(key, cda_bytes, sidecar)

    def _inbox_key(self, stem: str) -> str | None:
        """The content key of the inbox item ``stem`` (None when incomplete or unreadable)."""
        docs = [p for p in self._sources(stem) if p.suffix.lower() in DOCUMENT_SUFFIXES]
        sidecar_path = self.inbox / f"{stem}.json"
        if len(docs) != 1 or not sidecar_path.exists():
            return None
        try:
            data = docs[0].read_bytes()
            is_cda = docs[0].suffix.lower() == ".xml"
            sc = parse_sidecar(sidecar_path.read_bytes(), is_cda=is_cda, cda_bytes=data if is_cda else None)
        except Exception:
            return None
        return self._key(data, sc)

    @staticmethod
    def _key(data: bytes, sc: Sidecar) -> str:
        """The idempotency key: the document's bytes and the patient (the same file dropped twice)."""
        return hashlib.sha256(data + b"\0" + sc.patient_key.encode()).hexdigest()

    def _adopt_files(self, item: Item) -> None:
        """Move the item's dropped files from the inbox to ``work/KEY/`` (idempotent)."""
        keep = ensure_private_dir(self.work / item.key)
        for p in self._sources(item.name):
            os.replace(p, keep / p.name)

    def _uid_of(self, cda_bytes: bytes, sc: Sidecar) -> str:
        from ps_agent.dmp.metadata import entry_from_cda

        entry, _ = entry_from_cda(cda_bytes, (sc.ins, sc.ins_oid), sc.visibility)
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
            return build.level1(
                type_code=sc.type_code, content=data, title=sc.title, patient=sc.patient, author=sc.author,
                media_type="application/pdf", document_id=InstanceId(document_uid_for(key)),
                effective_time=sc.effective_time, service_start=sc.service_start,
                service_stop=sc.service_stop,
            )  # fmt: skip
        except CdaError as exc:
            raise to_problem(exc) from exc

    def _deposit(self, key: str, cda_bytes: bytes | None = None, sc: Sidecar | None = None) -> None:
        item = self.ledger.get(key)
        assert item is not None
        if cda_bytes is None or sc is None:  # after a restart: what was stored in work/
            cda_bytes = (self.work / f"{key}.xml").read_bytes()
            raw = (self.work / f"{key}.sidecar.json").read_bytes()
            sc = parse_sidecar(raw, is_cda=True, cda_bytes=cda_bytes)
        try:
            h = self.backend.session().patient(PatientRef(sc.ins, sc.ins_oid, sc.ins_status))
            entry = self.backend.submit(
                lambda ctx: h.deposit(
                    cda_bytes, visibility=sc.visibility, replaces=sc.replaces or None, ctx=ctx
                ),
                Context(background=True),
            )
        except Problem as p:
            if p.code == "NO_SESSION" or p.status == 503:
                log.warning("hot folder item %s waits: %s", item.name, p.detail)
                return  # kept BUILDING: tried again at the next recovery
            fld = p.errors[0][0] if p.errors else ""
            self._finish_rejected(key, fld, p.detail, p.code)
            return
        self.ledger.set_state(key, QUEUED, entry_id=entry.id)
        current = self.backend.services.queue.get(entry.id)
        if current is not None:
            self._on_queue_changed(current)

    # ------------------------------------------------------------------ outcomes
    def _on_queue_changed(self, entry: QueuedDeposit) -> None:
        if entry.state not in (EntryState.REGISTERED, EntryState.REFUSED, EntryState.HANDED_BACK):
            return
        item = self.ledger.by_entry(entry.id)
        if item is None or item.state != QUEUED:
            return
        with self._lock:  # one finisher per item
            item = self.ledger.get(item.key)
            if item is None or item.state != QUEUED:
                return
            if entry.state is EntryState.REGISTERED:
                self._finish_done(item, entry)
            else:
                self._finish_rejected(
                    item.key, "", entry.reason_fr or entry.state.label_fr, entry.reason_code
                )

    def _target(self, folder: Path, name: str) -> str:
        stem = name
        n = 1
        while any(folder.glob(f"{stem}.*")):
            n += 1
            stem = f"{name}-{n}"
        return stem

    def _move_kept(self, key: str, folder: Path, stem: str) -> None:
        keep = self.work / key
        if keep.is_dir():
            for p in keep.iterdir():
                os.replace(p, folder / f"{stem}{p.suffix}")
            with contextlib.suppress(OSError):
                keep.rmdir()
        for extra in (self.work / f"{key}.xml", self.work / f"{key}.sidecar.json"):
            with contextlib.suppress(FileNotFoundError):
                extra.unlink()

    def _finish_done(self, item: Item, entry: QueuedDeposit) -> None:
        from ps_agent.dmp.metadata import entry_from_cda, rubric_of

        rubric = ""
        with contextlib.suppress(Exception):
            cda_bytes = (self.work / f"{item.key}.xml").read_bytes()
            doc_entry, _ = entry_from_cda(cda_bytes, (entry.patient_ins, entry.patient_oid), Visibility())
            rubric = rubric_of(doc_entry)
        receipt = {
            "ACK_RECEPTION_DMP": "Y",
            "uniqueId": item.document_uid,
            "rubrique": rubric,
            "titre": entry.titles[0] if entry.titles else "",
            "lot": entry.id,
            "etat": entry.state.label_fr,
            "note": entry.reason_fr,
            "heure": _now(),
            "empreinte": item.key,
        }
        if not (self._recovering and self._written(self.done, ".receipt.json", item.key)):
            stem = self._target(self.done, item.name)
            self._move_kept(item.key, self.done, stem)  # the files first: the receipt says "all there"
            _write_json(self.done / f"{stem}.receipt.json", receipt)
        self.ledger.set_state(item.key, DONE, outcome=json.dumps(receipt, ensure_ascii=False))
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
            stem = self._target(self.rejected, item.name)
            self._move_kept(key, self.rejected, stem)
            _write_json(self.rejected / f"{stem}.error.json", error)
        self.ledger.set_state(key, REJECTED, outcome=json.dumps(error, ensure_ascii=False))
        if self.on_finished:
            self.on_finished(item.name, REJECTED)

    def _reject_files(self, stem: str, files: list[Path], field: str, detail: str, code: str) -> None:
        """An item refused before the ledger (bad sidecar...): it may be dropped again once corrected."""
        target = self._target(self.rejected, stem)
        error = {"ACK_RECEPTION_DMP": "N", "code": code, "champ": field, "detail": detail, "heure": _now()}
        for p in files:
            with contextlib.suppress(FileNotFoundError):
                os.replace(p, self.rejected / f"{target}{p.suffix}")
        _write_json(self.rejected / f"{target}.error.json", error)
        if self.on_finished:
            self.on_finished(stem, REJECTED)

    def _duplicate(self, stem: str, known: Item | None) -> None:
        """The same content was already taken: not deposited again; the copy goes to done/ with a note."""
        target = self._target(self.done, stem)
        note: dict[str, Any] = {
            "doublon": True,
            "detail": "Document déjà reçu : il n'est pas déposé une seconde fois.",
            "heure": _now(),
        }
        if known is not None:
            note.update({"uniqueId": known.document_uid, "lot": known.entry_id, "premier_depot": known.name,
                         "etat_premier_depot": known.state})  # fmt: skip
        for p in self._sources(stem):
            with contextlib.suppress(FileNotFoundError):
                os.replace(p, self.done / f"{target}{p.suffix}")
        _write_json(self.done / f"{target}.receipt.json", note)
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
            if self._inbox_key(item.name) == item.key or self._document_moved(item):
                self._adopt_files(item)  # crash before (all) its files left the inbox
            self._resume_item(item, queue)

    def _document_moved(self, item: Item) -> bool:
        """The item's document is already in work/KEY/ and none of that name is in the inbox."""
        keep = self.work / item.key
        moved = keep.is_dir() and any(p.suffix.lower() in DOCUMENT_SUFFIXES for p in keep.iterdir())
        return moved and not any(p.suffix.lower() in DOCUMENT_SUFFIXES for p in self._sources(item.name))

    def _resume_item(self, item: Item, queue: Any) -> None:
        """Carry an unfinished item on: follow its queue entry, adopt the entry holding its uniqueId (a
        crash after the queue write), or deposit the stored CDA (same bytes, same uniqueId)."""
        if item.state == QUEUED:
            entry = queue.get(item.entry_id)
            if entry is not None:
                self._on_queue_changed(entry)
            return
        adopted = next((e for e in queue.entries() if item.document_uid in e.document_uids), None)
        if adopted is not None:
            self.ledger.set_state(item.key, QUEUED, entry_id=adopted.id)
            self._on_queue_changed(adopted)
        elif (self.work / f"{item.key}.xml").exists():
            self._deposit(item.key)

    def counts(self) -> dict[str, int]:
        return {s: self.ledger.count(s) for s in (BUILDING, QUEUED, DONE, REJECTED)}


__all__ = ["HotFolder", "document_uid_for", "is_temporary"]
