"""``ps-agent deposit --batch DIR`` through the running agent's local API: progress, then a summary
(registered / refused with reasons / waiting); exit 2 when no agent answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ps_agent.cli import main
from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import author_json, patient_json, pdf


def _pair(folder: Path, name: str, content: bytes, **meta: Any) -> None:
    (folder / f"{name}.pdf").write_bytes(content)
    side = {"patient": patient_json(DEMO_ADULT), "type_code": "11488-4", "title": f"Lot {name}",
            "author": author_json("gp"), "MASQUE_PS": "N"} | meta  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps(side), encoding="utf-8")


def test_batch_through_the_running_agent(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with api.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params={"oid": DEMO_ADULT.oid}, json={})
    lot = tmp_path / "lot"
    lot.mkdir()
    for i in range(3):
        _pair(lot, f"ok{i}", pdf(f"Lot {i}"))
    _pair(lot, "pas-pdf", b"GIF89a")
    (lot / "seul.json").write_text("{}", encoding="utf-8")
    port = api.server.address[1]
    code = main(["deposit", "--batch", str(lot), "--port", str(port), "--config", str(api.config), "--json"])
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert code == 1
    assert summary["registered"] == ["ok0", "ok1", "ok2"] and summary["waiting"] == {}
    assert "PDF" in summary["refused"]["pas-pdf"] and "pdf_base64" in summary["refused"]["pas-pdf"]
    assert "absent" in summary["refused"]["seul"]
    assert "5/5" in out.err  # the progress bar reached the end
    assert len([e for e in api.services.queue_entries() if e.state.value == "registered"]) == 3


def test_no_running_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lot").mkdir()
    code = main(["deposit", "--batch", str(tmp_path / "lot"), "--port", "9", "--config", str(tmp_path)])
    assert code == 2 and "aucun agent" in capsys.readouterr().err


def _run(api: Any, lot: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    with api.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params={"oid": DEMO_ADULT.oid}, json={})
    port = api.server.address[1]
    code = main(["deposit", "--batch", str(lot), "--port", str(port), "--config", str(api.config), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _registered_titles(api: Any) -> list[str]:
    return sorted(t for e in api.services.queue_entries() if e.state.value == "registered" for t in e.titles)


def test_upper_and_mixed_case_suffixes_paired_as_the_hot_folder(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export tool writing ``CR1.PDF`` + ``CR1.JSON``, or ``Cr2.Pdf`` + ``Cr2.json``: deposited."""
    lot = tmp_path / "lot"
    lot.mkdir()
    _pair(lot, "CR1", pdf("Lot CR1"))
    (lot / "CR1.pdf").rename(lot / "CR1.PDF")
    (lot / "CR1.json").rename(lot / "CR1.JSON")
    _pair(lot, "Cr2", pdf("Lot Cr2"))
    (lot / "Cr2.pdf").rename(lot / "Cr2.Pdf")
    code, summary = _run(api, lot, capsys)
    assert code == 0, summary
    assert summary == {"registered": ["CR1", "Cr2"], "refused": {}, "waiting": {}}
    assert _registered_titles(api) == ["Lot CR1", "Lot Cr2"]


def test_two_documents_differing_by_case_refused_naming_both(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lot = tmp_path / "lot"
    lot.mkdir()
    _pair(lot, "D", pdf("Lot D"))
    (lot / "D.PDF").write_bytes(pdf("Lot D bis"))
    _pair(lot, "S", pdf("Lot S"))
    (lot / "S.JSON").write_bytes((lot / "S.json").read_bytes())
    _pair(lot, "ok", pdf("Lot ok"))
    code, summary = _run(api, lot, capsys)
    assert code == 1
    assert summary["registered"] == ["ok"] and summary["waiting"] == {}
    assert set(summary["refused"]) == {"D", "S"}
    assert summary["refused"]["D"].startswith("Plusieurs documents pour « D »")
    assert "« D.PDF »" in summary["refused"]["D"] and "« D.pdf »" in summary["refused"]["D"]
    assert summary["refused"]["S"].startswith("Plusieurs fiches pour « S »")
    assert "« S.JSON »" in summary["refused"]["S"] and "« S.json »" in summary["refused"]["S"]
    assert _registered_titles(api) == ["Lot ok"]  # nothing of an ambiguous item was sent


def test_lone_document_reported_not_ignored(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lot = tmp_path / "lot"
    lot.mkdir()
    _pair(lot, "ok", pdf("Lot ok"))
    (lot / "SEUL.PDF").write_bytes(pdf("Lot seul"))
    (lot / "notes.txt").write_text("pas un document", encoding="utf-8")  # not an item: not counted
    (lot / "~CR9.pdf").write_bytes(b"%PDF")  # a temporary name: not counted
    code, summary = _run(api, lot, capsys)
    assert code == 1  # not everything of the folder was registered
    assert summary["registered"] == ["ok"] and summary["waiting"] == {}
    assert summary["refused"] == {"SEUL": "Fiche absente : « SEUL.json » doit accompagner « SEUL.PDF »."}
