"""The hot folder against the real sandbox in AIR mode: complete pairs only, French rejections naming the
field, exactly once across duplicates and restarts."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

import pytest

from ps_agent.hotfolder.ledger import BUILDING, DONE
from ps_agent.hotfolder.sidecar import parse_sidecar
from ps_agent.outbox import EntryState
from tests.fixtures.integration import pdf
from tests.hotfolder.conftest import sidecar_for


def _registered(rig: Any) -> list[Any]:
    return [e for e in rig.services.queue_entries() if e.state is EntryState.REGISTERED]


def test_half_written_files_ignored_until_complete(rig: Any) -> None:
    inbox = rig.root / "inbox"
    (inbox / ".lettre.pdf.tmp").write_bytes(pdf("lettre")[:100])
    (inbox / "lettre.pdf").write_bytes(pdf("lettre"))
    (inbox / "lettre.json.part").write_text("{", encoding="utf-8")
    (inbox / "~lettre.json").write_text("{", encoding="utf-8")
    assert rig.folder.complete_items() == []
    assert rig.folder.scan() == 0
    rig.folder.start()
    assert rig.folder.complete_items() == []
    (inbox / "lettre.json.part").unlink()
    (inbox / "~lettre.json").unlink()
    tmp = inbox / ".lettre.json.tmp"
    tmp.write_text(json.dumps(sidecar_for("Lettre de sortie")), encoding="utf-8")
    os.replace(tmp, inbox / "lettre.json")  # the marker: now the pair is complete
    rig.wait_for(lambda: "lettre" in rig.receipts())
    receipt = rig.receipts()["lettre"]
    assert receipt["ACK_RECEPTION_DMP"] == "Y" and receipt["uniqueId"] and receipt["rubrique"]
    assert receipt["heure"] and receipt["titre"] == "Lettre de sortie"
    assert (rig.root / "done" / "lettre.pdf").exists() and (rig.root / "done" / "lettre.json").exists()
    assert sorted(p.name for p in inbox.iterdir()) == [".lettre.pdf.tmp"]
    regs = _registered(rig)
    assert len(regs) == 1 and regs[0].document_uids == (receipt["uniqueId"],)


def test_bad_sidecars_rejected_with_the_reason_in_french(rig: Any) -> None:
    cases = {
        "sans-type": sidecar_for("x", type_code=""),
        "statut": sidecar_for("x", patient={**sidecar_for("x")["patient"], "ins_status": "PROV"}),
        "visibilite": sidecar_for("x", MASQUE_PS="Y", INVISIBLE_PATIENT="Y"),
        "inconnu": sidecar_for("x", couleur="bleu"),
        "masque": sidecar_for("x", MASQUE_PS="peut-être"),
    }
    for name, meta in cases.items():
        rig.drop(name, sidecar=meta)
    inbox = rig.root / "inbox"
    (inbox / "illisible.pdf").write_bytes(pdf("i"))
    (inbox / "illisible.json").write_text("{pas du json", encoding="utf-8")
    (inbox / "pas-pdf.pdf").write_bytes(b"GIF89a")
    (inbox / "pas-pdf.json").write_text(json.dumps(sidecar_for("y")), encoding="utf-8")
    (inbox / "seul.json").write_text(json.dumps(sidecar_for("z")), encoding="utf-8")
    rig.folder.start()
    rig.wait_for(lambda: len(rig.errors()) == 8)
    e = rig.errors()
    assert e["sans-type"]["champ"] == "type_code" and "manquant" in e["sans-type"]["detail"]
    assert e["statut"]["champ"] == "patient.ins_status" and "qualifiée" in e["statut"]["detail"]
    assert e["visibilite"]["champ"] == "INVISIBLE_PATIENT"
    assert e["inconnu"]["champ"] == "couleur"
    assert e["masque"]["champ"] == "MASQUE_PS"
    assert e["illisible"]["champ"] == "fiche" and "illisible" in e["illisible"]["detail"]
    assert e["pas-pdf"]["champ"] == "document" and "PDF" in e["pas-pdf"]["detail"]
    assert e["seul"]["champ"] == "document" and "absent" in e["seul"]["detail"]
    assert all(v["ACK_RECEPTION_DMP"] == "N" for v in e.values())
    assert (rig.root / "rejected" / "sans-type.pdf").exists()
    assert list(inbox.iterdir()) == [] and rig.services.queue_entries() == []


def test_same_file_dropped_twice_is_deposited_once(rig: Any) -> None:
    content = pdf("Doublon")
    rig.folder.start()
    rig.drop("a", content, title="CR doublon")
    rig.drop("b", content, title="CR doublon")  # same document, same patient, another name, at once
    rig.wait_for(
        lambda: len(rig.receipts()) == 2 and any(not r.get("doublon") for r in rig.receipts().values())
    )
    rig.wait_for(lambda: any(r.get("ACK_RECEPTION_DMP") == "Y" for r in rig.receipts().values()))
    rig.drop("a", content, title="CR doublon")  # the same file again, later
    rig.wait_for(lambda: len(rig.receipts()) == 3)
    receipts = rig.receipts()
    dups = [r for r in receipts.values() if r.get("doublon")]
    firsts = [r for r in receipts.values() if not r.get("doublon")]
    assert len(firsts) == 1 and len(dups) == 2
    assert {d["uniqueId"] for d in dups} == {firsts[0]["uniqueId"]}
    assert "une seconde fois" in dups[0]["detail"]
    assert len(rig.services.queue_entries()) == 1 and len(_registered(rig)) == 1


def test_restart_neither_loses_nor_repeats(rig: Any) -> None:
    for i in range(3):
        rig.drop(f"r{i}", title=f"CR reprise {i}")
    # crash point 1: an item taken into the ledger (CDA in work/) but never handed to the queue
    stem = "r0"
    folder = rig.folder
    data = (folder.inbox / f"{stem}.pdf").read_bytes()
    sc = parse_sidecar((folder.inbox / f"{stem}.json").read_bytes(), is_cda=False)
    key = hashlib.sha256(data + b"\0" + sc.patient_key.encode()).hexdigest()
    cda_bytes = folder._build(key, data, sc, is_cda=False)
    uid = folder._uid_of(cda_bytes, sc)
    (folder.work / f"{key}.xml").write_bytes(cda_bytes)
    (folder.work / f"{key}.sidecar.json").write_text(json.dumps(sc.raw), encoding="utf-8")
    assert folder.ledger.claim_new(key, stem, uid) is not None
    keep = folder.work / key
    keep.mkdir()
    for p in list(folder.inbox.glob(f"{stem}.*")):
        os.replace(p, keep / p.name)
    assert folder.ledger.get(key).state == BUILDING
    rig.restart()  # the service starts again
    rig.folder.start()
    rig.wait_for(lambda: len(rig.receipts()) == 3)
    assert rig.receipts()["r0"]["uniqueId"] == uid
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert list(rig.folder.work.iterdir()) == []  # the earlier layout's copies are removed with the item
    # a second restart with everything done changes nothing
    rig.restart()
    rig.folder.start()
    rig.drop("r1", (rig.root / "done" / "r1.pdf").read_bytes(), title="CR reprise 1")  # dropped again
    rig.wait_for(lambda: len(rig.receipts()) == 4)
    assert len(rig.services.queue_entries()) == 3 and len(_registered(rig)) == 3


def test_crash_after_queueing_before_ledger_adopts_the_queued_entry(rig: Any) -> None:
    """The deposit reached the queue (and the DMP) but the ledger still says BUILDING: the restart adopts
    the queue entry holding the item's uniqueId instead of depositing again."""
    rig.drop("c0", title="CR adoption")
    rig.folder.start()
    rig.wait_for(lambda: "c0" in rig.receipts())
    key = rig.receipts()["c0"]["empreinte"]
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert rig.folder.ledger.unfinished() == []
    # put the world back as a crash right after the queue write would have left it
    rig.folder.ledger.set_state(key, BUILDING, entry_id="")
    keep = rig.folder.work / key
    keep.mkdir()
    for suffix in (".pdf", ".json"):
        os.replace(rig.root / "done" / f"c0{suffix}", keep / f"c0{suffix}")
    (rig.root / "done" / "c0.receipt.json").unlink()
    rig.restart()
    rig.folder.start()
    rig.wait_for(lambda: "c0" in rig.receipts())
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert len(rig.services.queue_entries()) == 1


def test_interrupted_move_is_finished_not_rejected(rig: Any) -> None:
    """A crash (or a Windows file lock) after the PDF moved to work/ but before its sidecar did: the sidecar
    left in the inbox belongs to the item in flight; it follows it, it is not rejected as incomplete."""
    rig.drop("m0", title="CR déplacement interrompu")
    folder = rig.folder
    data = (folder.inbox / "m0.pdf").read_bytes()
    sc = parse_sidecar((folder.inbox / "m0.json").read_bytes(), is_cda=False)
    key = hashlib.sha256(data + b"\0" + sc.patient_key.encode()).hexdigest()
    cda_bytes = folder._build(key, data, sc, is_cda=False)
    (folder.work / f"{key}.xml").write_bytes(cda_bytes)
    (folder.work / f"{key}.sidecar.json").write_text(json.dumps(sc.raw), encoding="utf-8")
    assert folder.ledger.claim_new(key, "m0", folder._uid_of(cda_bytes, sc)) is not None
    (folder.work / key).mkdir()
    os.replace(folder.inbox / "m0.pdf", folder.work / key / "m0.pdf")  # the sidecar stays in the inbox
    rig.restart()
    rig.folder.start()
    rig.wait_for(lambda: "m0" in rig.receipts())
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert rig.errors() == {} and list(rig.folder.work.iterdir()) == []
    assert (rig.root / "done" / "m0.pdf").exists() and (rig.root / "done" / "m0.json").exists()
    assert list(rig.folder.inbox.iterdir()) == [] and len(_registered(rig)) == 1


def test_polling_observer_for_network_shares(rig: Any) -> None:
    rig.folder.polling = True  # watchdog's PollingObserver (network shares lose file-system events)
    rig.folder.rescan_interval_s = 3600.0  # only the observer's events may wake the scanner now
    rig.folder.start()
    assert type(rig.folder._observer).__name__ == "PollingObserver"
    rig.drop("partage", title="CR partage réseau")
    rig.wait_for(lambda: "partage" in rig.receipts())
    assert rig.receipts()["partage"]["ACK_RECEPTION_DMP"] == "Y"


def test_crash_after_the_claim_rebuilds_the_cda_with_the_same_unique_id(rig: Any) -> None:
    """Killed after the ledger took the item and its files moved to work/KEY/, before the queue: nothing
    else was stored; the restart builds the CDA again from the kept files, with the same uniqueId."""
    from ps_agent.hotfolder import document_uid_for

    rig.drop("k0", title="CR reconstruit")
    folder = rig.folder
    data = (folder.inbox / "k0.pdf").read_bytes()
    sc = parse_sidecar((folder.inbox / "k0.json").read_bytes(), is_cda=False)
    key = hashlib.sha256(data + b"\0" + sc.patient_key.encode()).hexdigest()
    item = folder.ledger.claim_new(key, "k0", document_uid_for(key))
    assert item is not None
    folder._adopt_files(item)
    assert not (folder.work / f"{key}.xml").exists() and list(folder.inbox.iterdir()) == []
    rig.restart()
    rig.folder.start()
    rig.wait_for(lambda: "k0" in rig.receipts())
    assert rig.receipts()["k0"]["uniqueId"] == document_uid_for(key)
    assert rig.receipts()["k0"]["rubrique"]
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert len(_registered(rig)) == 1 and _registered(rig)[0].document_uids == (document_uid_for(key),)


@pytest.mark.parametrize("moved_first", [".pdf", ".json"])
def test_crash_between_the_two_moves_to_work_neither_loses_nor_repeats(rig: Any, moved_first: str) -> None:
    """Killed after the claim with one of the pair's two files moved to work/KEY/ and the other still in
    the inbox (found by the service's kill -9 test): the restart reunites them and deposits once."""
    from ps_agent.hotfolder import document_uid_for

    rig.drop("k0", title="CR coupé en deux")
    folder = rig.folder
    data = (folder.inbox / "k0.pdf").read_bytes()
    sc = parse_sidecar((folder.inbox / "k0.json").read_bytes(), is_cda=False)
    key = hashlib.sha256(data + b"\0" + sc.patient_key.encode()).hexdigest()
    item = folder.ledger.claim_new(key, "k0", document_uid_for(key))
    assert item is not None
    folder._adopt_files(item, [folder.inbox / f"k0{moved_first}"])
    assert len(list(folder.inbox.iterdir())) == 1
    rig.restart()
    rig.folder.start()
    rig.wait_for(lambda: "k0" in rig.receipts())
    assert rig.receipts()["k0"]["uniqueId"] == document_uid_for(key)
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert list(rig.folder.inbox.iterdir()) == []
    assert len(_registered(rig)) == 1 and _registered(rig)[0].document_uids == (document_uid_for(key),)


def test_an_item_taken_keeps_its_files_renamed_in_work_without_a_folder(rig: Any) -> None:
    """The claim renames the pair into work/ (KEY.item.pdf, KEY.item.json: no folder per item, which cost an
    inode created and removed per document); a restart from there deposits once, and nothing stays."""
    from ps_agent.hotfolder import document_uid_for

    rig.drop("f0", title="CR à plat")
    folder = rig.folder
    data = (folder.inbox / "f0.pdf").read_bytes()
    sc = parse_sidecar((folder.inbox / "f0.json").read_bytes(), is_cda=False)
    key = hashlib.sha256(data + b"\0" + sc.patient_key.encode()).hexdigest()
    item = folder.ledger.claim_new(key, "f0", document_uid_for(key))
    assert item is not None
    folder._adopt_files(item, folder._sources("f0"))
    assert sorted(p.name for p in folder.work.iterdir()) == [f"{key}.item.json", f"{key}.item.pdf"]
    assert all(p.is_file() for p in folder.work.iterdir())
    assert (folder.work / f"{key}.item.pdf").read_bytes() == data
    rig.restart()
    rig.folder.start()
    rig.wait_for(lambda: "f0" in rig.receipts())
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert rig.receipts()["f0"]["uniqueId"] == document_uid_for(key)
    assert (rig.root / "done" / "f0.pdf").read_bytes() == data and (rig.root / "done" / "f0.json").exists()
    assert list(rig.folder.work.iterdir()) == [] and list(rig.folder.inbox.iterdir()) == []
    assert len(_registered(rig)) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_events_only_for_arrivals_renamed_in_or_written(rig: Any) -> None:
    """The inbox is watched (inotify) for arrivals only: not for the agent's own files leaving it (two per
    item, each woke watchdog's threads); a sidecar renamed in from a temporary name (the convention) is still
    taken at once, without the periodic rescan."""
    from watchdog.observers.inotify_c import InotifyConstants

    rig.folder.rescan_interval_s = 3600.0  # only the file-system events may wake the workers now
    rig.folder.start()
    emitters = list(rig.folder._observer.emitters)
    assert len(emitters) == 1
    mask = emitters[0].get_event_mask_from_filter()
    assert not mask & (InotifyConstants.IN_MOVED_FROM | InotifyConstants.IN_DELETE | InotifyConstants.IN_OPEN)
    assert mask & InotifyConstants.IN_MOVED_TO and mask & InotifyConstants.IN_CLOSE_WRITE
    inbox = rig.root / "inbox"
    (inbox / "renomme.pdf").write_bytes(pdf("renomme"))
    tmp = inbox / ".renomme.json.tmp"
    tmp.write_text(json.dumps(sidecar_for("CR renommé")), encoding="utf-8")
    os.replace(tmp, inbox / "renomme.json")
    rig.wait_for(lambda: "renomme" in rig.receipts())
    rig.drop("second", title="CR second")  # the rig's drop: both files renamed in
    rig.wait_for(lambda: "second" in rig.receipts())
    assert rig.receipts()["second"]["ACK_RECEPTION_DMP"] == "Y" and list(inbox.iterdir()) == []


def test_a_scan_schedules_each_complete_item_once_in_name_order(rig: Any) -> None:
    """One rescan takes the workers' lock once for all the names it lists; each complete item is scheduled
    once, in name order; a name already waiting is not scheduled again, one being handled is noted again."""
    for name in ("b2", "a1", "c3"):
        rig.drop(name, title=f"CR {name}")
    (rig.root / "inbox" / "seul.pdf").write_bytes(pdf("seul"))  # no sidecar: not complete
    folder = rig.folder
    assert folder.scan() == 3 and list(folder._pending) == ["a1", "b2", "c3"]
    assert folder.scan() == 0 and list(folder._pending) == ["a1", "b2", "c3"]
    del folder._pending["b2"]
    folder._busy.add("b2")  # as a worker holding it
    assert folder.scan() == 0 and folder._again == {"b2"}
