"""Items whose file names use another case (``A.PDF`` + ``A.JSON``: a Windows program writing to a Samba
share, an export tool writing upper-case names) are deposited like any other, against the real sandbox;
two documents of one stem differing only by the case of their suffix are refused naming both; on a
case-insensitive file system (Windows, macOS) one file found under several spellings counts once (the name
logic, ``item_files``, with that file system's answers: the CI runs on ext4)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from cda import build
from ps_agent.hotfolder import SOURCE_SUFFIXES, document_uid_for, item_files
from ps_agent.hotfolder.ledger import DONE
from ps_agent.hotfolder.sidecar import parse_sidecar
from ps_agent.outbox import EntryState
from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import author_json, patient_json, pdf
from tests.hotfolder.conftest import sidecar_for


def _registered(rig: Any) -> list[Any]:
    return [e for e in rig.services.queue_entries() if e.state is EntryState.REGISTERED]


def _put(folder: Path, name: str, data: bytes) -> None:
    """Written under a temporary name then renamed (the convention)."""
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)


def _drop(rig: Any, doc: str, side: str, content: bytes, title: str) -> None:
    inbox = rig.root / "inbox"
    _put(inbox, doc, content)
    _put(inbox, side, json.dumps(sidecar_for(title), ensure_ascii=False).encode())


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_an_upper_case_pair_is_deposited_once_with_its_receipt(rig: Any) -> None:
    content = pdf("Majuscules")
    rig.folder.start()
    _drop(rig, "CR1.PDF", "CR1.JSON", content, "CR en majuscules")
    rig.wait_for(lambda: "CR1" in rig.receipts())
    receipt = rig.receipts()["CR1"]
    assert receipt["ACK_RECEPTION_DMP"] == "Y" and receipt["uniqueId"].startswith("2.25.")
    # the files keep their names; the receipt is named after the stem as the software wrote it
    assert _names(rig.done) == ["CR1.JSON", "CR1.PDF", "CR1.receipt.json"]
    assert (rig.done / "CR1.PDF").read_bytes() == content
    assert _names(rig.root / "inbox") == [] and _names(rig.root / "work") == []
    rig.wait_for(lambda: len(_registered(rig)) == 1)
    assert _registered(rig)[0].document_uids == (receipt["uniqueId"],)
    assert rig.errors() == {}


def test_a_mixed_case_pair_and_a_rare_spelling_are_deposited(rig: Any) -> None:
    rig.folder.start()
    _drop(rig, "Mix.Pdf", "Mix.Json", pdf("Mixte"), "CR casse mixte")
    _drop(rig, "Odd.pDf", "Odd.jSoN", pdf("Rare"), "CR casse rare")  # not probed: found by a listing
    rig.wait_for(lambda: {"Mix", "Odd"} <= set(rig.receipts()))
    assert {r["ACK_RECEPTION_DMP"] for r in rig.receipts().values()} == {"Y"}
    assert _names(rig.done) == sorted(
        ["Mix.Json", "Mix.Pdf", "Mix.receipt.json", "Odd.jSoN", "Odd.pDf", "Odd.receipt.json"]
    )
    rig.wait_for(lambda: len(_registered(rig)) == 2)
    assert _names(rig.root / "inbox") == [] and _names(rig.root / "work") == []


def test_a_ready_cda_in_upper_case_is_deposited(rig: Any) -> None:
    cda = build.level1(
        type_code="11488-4",
        content=pdf("CDA majuscules"),
        title="Lettre prête en majuscules",
        patient=build.PatientInput.from_dict(
            {k: v for k, v in patient_json(DEMO_ADULT).items() if k != "ins_status"}
        ),
        author=build.AuthorInput.from_dict(author_json("gp")),
        media_type="application/pdf",
    )
    rig.folder.start()
    inbox = rig.root / "inbox"
    _put(inbox, "B.XML", cda)
    _put(inbox, "B.JSON", b'{"MASQUE_PS": "N", "INVISIBLE_PATIENT": "N", "INVISIBLE_REP_LEGAUX": "N"}')
    rig.wait_for(lambda: "B" in rig.receipts() or "B" in rig.errors())
    assert rig.errors() == {}
    assert rig.receipts()["B"]["ACK_RECEPTION_DMP"] == "Y"
    assert _names(rig.done) == ["B.JSON", "B.XML", "B.receipt.json"]
    assert (rig.done / "B.XML").read_bytes() == cda
    rig.wait_for(lambda: len(_registered(rig)) == 1)


def test_an_item_dropped_again_in_another_case_is_deposited_once(rig: Any) -> None:
    content = pdf("Deux casses")
    rig.folder.start()
    _drop(rig, "cr2.pdf", "cr2.json", content, "CR deux fois")
    rig.wait_for(lambda: rig.receipts().get("cr2", {}).get("ACK_RECEPTION_DMP") == "Y")
    _drop(rig, "CR2.PDF", "CR2.JSON", content, "CR deux fois")  # the same content, upper case
    rig.wait_for(lambda: "CR2" in rig.receipts())
    again = rig.receipts()["CR2"]
    assert again["doublon"] is True and again["uniqueId"] == rig.receipts()["cr2"]["uniqueId"]
    assert (rig.done / "CR2.PDF").read_bytes() == content
    assert len(rig.services.queue_entries()) == 1 and len(_registered(rig)) == 1


def test_two_documents_differing_by_suffix_case_are_refused_naming_both(rig: Any) -> None:
    rig.folder.start()
    inbox = rig.root / "inbox"
    _put(inbox, "D.pdf", pdf("Premier"))
    _put(inbox, "D.PDF", pdf("Second"))
    _put(inbox, "D.json", json.dumps(sidecar_for("CR ambigu")).encode())
    rig.wait_for(lambda: "D" in rig.errors())
    error = rig.errors()["D"]
    assert error["code"] == "DOCUMENT_AMBIGUOUS" and error["champ"] == "document"
    assert "« D.PDF »" in error["detail"] and "« D.pdf »" in error["detail"]
    assert error["detail"].startswith("Plusieurs documents pour « D »")
    assert _names(rig.root / "rejected") == ["D.PDF", "D.error.json", "D.json", "D.pdf"]
    assert _names(inbox) == [] and rig.services.queue_entries() == []


def test_two_sidecars_differing_by_suffix_case_are_refused_naming_both(rig: Any) -> None:
    inbox = rig.root / "inbox"  # all three there before the start: « S.pdf » + « S.json » alone are an item
    _put(inbox, "S.pdf", pdf("Fiches"))
    _put(inbox, "S.json", json.dumps(sidecar_for("CR fiche 1")).encode())
    _put(inbox, "S.JSON", json.dumps(sidecar_for("CR fiche 2")).encode())
    rig.folder.start()
    rig.wait_for(lambda: "S" in rig.errors())
    error = rig.errors()["S"]
    assert error["code"] == "SIDECAR_AMBIGUOUS"
    assert "« S.JSON »" in error["detail"] and "« S.json »" in error["detail"]
    assert _names(inbox) == [] and rig.services.queue_entries() == []


def test_a_stem_in_another_case_does_not_pair_on_a_case_sensitive_file_system(rig: Any) -> None:
    """Linux (case-sensitive): ``a.pdf`` is not the document of ``A.json``: the sidecar is refused as alone,
    the document stays (its own sidecar may still come)."""
    rig.folder.start()
    inbox = rig.root / "inbox"
    _put(inbox, "e.pdf", pdf("Autre casse"))
    _put(inbox, "E.json", json.dumps(sidecar_for("CR souche")).encode())
    rig.wait_for(lambda: "E" in rig.errors())
    assert rig.errors()["E"]["code"] == "DOCUMENT_MISSING" and "« E.json »" in rig.errors()["E"]["detail"]
    assert _names(inbox) == ["e.pdf"] and rig.services.queue_entries() == []


def test_a_restart_finds_upper_case_files_kept_in_work(rig: Any) -> None:
    """Killed after the claim moved ``K.PDF`` + ``K.Json`` to work/ (their suffixes as dropped): the restart
    finds them, deposits once, and moves them to done/ under their names."""
    inbox = rig.root / "inbox"
    content = pdf("Reprise")
    _drop(rig, "K.PDF", "K.Json", content, "CR repris")
    folder = rig.folder
    sc = parse_sidecar((inbox / "K.Json").read_bytes(), is_cda=False)
    key = hashlib.sha256(content + b"\0" + sc.patient_key.encode()).hexdigest()
    item = folder.ledger.claim_new(key, "K", document_uid_for(key))
    assert item is not None
    folder._adopt_files(item, folder._sources("K"))
    assert _names(folder.work) == [f"{key}.item.Json", f"{key}.item.PDF"]
    rig.restart()
    rig.folder.start()
    rig.wait_for(lambda: "K" in rig.receipts())
    rig.wait_for(lambda: rig.folder.ledger.get(key).state == DONE)
    assert rig.receipts()["K"]["uniqueId"] == document_uid_for(key)
    assert _names(rig.done) == ["K.Json", "K.PDF", "K.receipt.json"]
    assert _names(rig.folder.work) == [] and len(_registered(rig)) == 1


# ---------------------------------------------------------------- the name logic, file system simulated
def _insensitive_fs(stored: dict[str, int], *, inodes: bool = True) -> tuple[Any, Any]:
    """``stat`` and ``listdir`` of a case-insensitive, case-preserving folder (APFS, NTFS) holding the
    files ``stored`` (name as stored → inode); without ``inodes``, a file system that gives none (FAT)."""
    by_folded = {name.casefold(): ino for name, ino in stored.items()}

    def stat_fn(path: str) -> os.stat_result:
        ino = by_folded.get(os.path.basename(path).casefold())
        if ino is None:
            raise FileNotFoundError(path)
        return os.stat_result((stat.S_IFREG | 0o600, ino if inodes else 0, 1, 1, 0, 0, 10, 0, 0, 0))

    def listdir_fn(folder: str) -> list[str]:
        return list(stored)

    return stat_fn, listdir_fn


def test_probed_spellings_cover_the_usual_cases_of_each_suffix() -> None:
    for suffix in (".pdf", ".xml", ".json"):
        assert {suffix, suffix.upper(), "." + suffix[1:].capitalize()} <= set(SOURCE_SUFFIXES)


def test_one_file_counts_once_on_a_case_insensitive_file_system() -> None:
    for inodes in (True, False):
        stat_fn, listdir_fn = _insensitive_fs({"X.PDF": 11, "X.json": 12}, inodes=inodes)
        names = item_files("/depot/inbox", "X", stat_fn=stat_fn, listdir_fn=listdir_fn)
        # every spelling of ".pdf" and ".json" found a file: one document, one sidecar
        assert len(names) == 2, names
        assert sorted(os.path.splitext(n)[1].lower() for n in names) == [".json", ".pdf"]


def test_a_stem_in_another_case_pairs_where_the_file_system_says_it_is_the_same_name() -> None:
    stat_fn, listdir_fn = _insensitive_fs({"a.pdf": 21, "A.json": 22})
    names = item_files("/depot/inbox", "A", stat_fn=stat_fn, listdir_fn=listdir_fn)
    assert sorted(os.path.splitext(n)[1].lower() for n in names) == [".json", ".pdf"]


def test_on_a_case_sensitive_file_system_each_spelling_is_its_own_file(tmp_path: Path) -> None:
    for name in ("A.pdf", "A.PDF", "A.json", "a.json", "A.b.pdf", "AB.pdf"):
        (tmp_path / name).write_bytes(b"x")
    assert item_files(str(tmp_path), "A") == ["A.PDF", "A.json", "A.pdf"]
    (tmp_path / "R.xMl").write_bytes(b"x")
    (tmp_path / "R.JSon").write_bytes(b"x")
    assert item_files(str(tmp_path), "R") == []  # nothing probed found: no listing unless announced
    assert item_files(str(tmp_path), "R", announced=True) == ["R.JSon", "R.xMl"]


def test_a_batch_listing_refuses_a_third_document_in_a_rare_spelling(tmp_path: Path) -> None:
    """``deposit --batch`` lists the folder anyway: ``A.pDf`` beside ``A.pdf`` + ``A.json`` makes the item
    ambiguous (both documents named), never a silent pick of ``A.pdf``."""
    from ps_agent.hotfolder import folder_items

    for name in ("A.pdf", "A.pDf", "A.json"):
        (tmp_path / name).write_bytes(b"x")
    [item] = folder_items(str(tmp_path))
    assert sorted(item.files) == ["A.json", "A.pDf", "A.pdf"]
    assert item.problem is not None and item.problem.code == "DOCUMENT_AMBIGUOUS"
    assert "« A.pDf »" in item.problem.detail and "« A.pdf »" in item.problem.detail
