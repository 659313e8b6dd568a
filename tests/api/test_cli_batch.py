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
