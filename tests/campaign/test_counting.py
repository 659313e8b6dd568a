"""The campaign's counting (``tests.fixtures.campaign.count``) on hand-made ledgers and a hand-made store:
the judge of the fault campaign must itself be right (each category detected, nothing counted twice)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.fixtures.campaign import HEADER, count, format_table

INS = "279037505612309"
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def _store(data: Path, rows: list[tuple[str, str, str]]) -> None:
    data.mkdir()
    con = sqlite3.connect(data / "dmp.sqlite3")
    con.execute(
        "CREATE TABLE documents (unique_id TEXT UNIQUE, hash TEXT, registered_at TEXT, patient_ins TEXT)"
    )
    con.executemany("INSERT INTO documents VALUES (?, ?, ?, ?)", [(*r, INS) for r in rows])
    con.execute("INSERT INTO documents VALUES ('other-patient', 'h-x', '20270115080000', '1')")
    con.commit()
    con.close()


def _ledger(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
        f.write('{"t": 1, "event": "hand')  # a line cut by kill -9 is ignored


def _doc(uid: str, t: float, *words: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"t": t, "event": "built", "uid": uid, "sha1": f"h-{uid}", "index": 0, "path": ""}
    ]
    for i, (event, extra) in enumerate(words, start=1):
        out.append({"t": t + i, "event": event, "uid": uid, **extra})
    return out


def test_each_category_is_detected_once(tmp_path: Path) -> None:
    handed: tuple[str, dict[str, Any]] = ("handed", {})
    ledger = tmp_path / "ledger"
    _ledger(
        ledger / "w0.jsonl",
        _doc("ok", T0, handed, ("registered", {}))
        + _doc("pending-then-resumed", T0, handed, ("pending", {"code": "TRANSPORT"}))
        + _doc("lost", T0, handed, ("pending", {"code": "TRANSPORT"}))
        + _doc(
            "refused-registered",
            T0,
            handed,
            ("refused", {"code": "XDSDocumentUniqueIdError", "where": "deposit"}),
        )
        + _doc(
            "refused-transient",
            T0,
            handed,
            ("refused", {"code": "soap:Receiver", "transient": True, "where": "resume"}),
        )
        + _doc("stuck", T0, handed, ("pending", {}))
        + _doc("failed-but-registered", T0, handed, ("failed", {"code": "AUDIT_WRITE"}))
        + _doc(
            "declined-then-retried", T0, handed, ("declined", {"code": "OUTBOX"}), handed, ("registered", {})
        )
        + _doc("never-handed", T0),
    )
    _ledger(
        ledger / "resume.jsonl",
        [
            {"t": T0 + 50, "event": "registered", "uid": "pending-then-resumed", "where": "resume"},
            {"t": T0 + 51, "event": "resume_error", "code": "TransportError:TRANSPORT"},
        ],
    )
    _ledger(
        ledger / "w1.jsonl",
        _doc("duplicate", T0, handed, ("registered", {})) + _doc("handed-back", T0, handed),
    )
    at = "20270115080010"  # 10 s after T0, after every word above except the late retry
    _store(
        tmp_path / "data",
        [
            ("ok", "h-ok", at),
            ("pending-then-resumed", "h-pending-then-resumed", at),
            ("refused-registered", "h-refused-registered", at),
            ("failed-but-registered", "h-failed-but-registered", "20270115080000"),
            ("declined-then-retried", "h-declined-then-retried", at),
            ("duplicate", "h-duplicate", at),
            ("duplicate-copy", "h-duplicate", at),  # same content under another uniqueId
        ],
    )
    f = count("gp", ledger, tmp_path / "data", ["stuck"], INS, handed_back=["handed-back"])
    assert (f.built, f.sent, f.registered) == (11, 10, 6)
    assert set(f.lost_uids) == {"lost"}
    assert set(f.false_refusal_uids) == {"refused-registered", "refused-transient", "failed-but-registered"}
    assert f.false_refusal_kinds == {
        "refused, registered anyway (deposit)": 1,
        "refused, transient (resume)": 1,
        "failed but registered": 1,
    }
    assert f.duplicate_uids == {"duplicate": "1 entries by uniqueId, 2 by content"} and f.duplicates == 1
    assert f.stuck_uids == ["stuck"] and f.stuck == 1
    assert (f.lost, f.false_refusals) == (1, 3)
    assert f.resume_errors == {"TransportError:TRANSPORT": 1}
    assert not f.ok()
    lines = format_table([f]).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(HEADER)
    assert [c.strip() for c in lines[2].strip("|").split("|")][:8] == [
        "gp",
        "11",
        "10",
        "6",
        "1",
        "1",
        "3",
        "1",
    ]


def test_a_clean_run_is_ok(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    _ledger(ledger / "w0.jsonl", _doc("a", T0, ("handed", {}), ("registered", {})))
    _store(tmp_path / "data", [("a", "h-a", "20270115080005")])
    f = count("air", ledger, tmp_path / "data", [], INS)
    assert f.ok() and (f.built, f.sent, f.registered, f.lost, f.duplicates, f.false_refusals, f.stuck) == (
        1, 1, 1, 0, 0, 0, 0,
    )  # fmt: skip


def test_a_failure_word_before_a_later_successful_retry_is_not_a_false_refusal(tmp_path: Path) -> None:
    """'declined' (disk full, nothing sent) then handed again and registered later: the truth was told."""
    ledger = tmp_path / "ledger"
    _ledger(
        ledger / "w0.jsonl",
        _doc("a", T0, ("handed", {}), ("declined", {"code": "OUTBOX"}), ("handed", {}), ("registered", {})),
    )
    _store(tmp_path / "data", [("a", "h-a", "20270115080030")])  # registered 30 s after the refusal
    assert count("gp", ledger, tmp_path / "data", [], INS).false_refusals == 0
    # registered BEFORE the agent said it was not sent: a lie, even if handed again afterwards
    _store(tmp_path / "data2", [("a", "h-a", "20270115075959")])
    assert count("gp", ledger, tmp_path / "data2", [], INS).false_refusal_uids.keys() == {"a"}
