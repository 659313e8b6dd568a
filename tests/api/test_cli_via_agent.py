"""``ps-agent dmp …`` / ``ps-agent outbox list`` on a running agent: the command goes through the local
API (real uvicorn on 127.0.0.1, session on the real sandbox), no PIN is asked, the output and exit codes
are the standalone command's; ``--autonome`` still opens the card; an agent without a session, a wrong
token and an emergency access give French messages."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cda import build
from cda.classify import classify_type
from ps_agent.api.client import LocalAgent
from ps_agent.cli import main, via_agent
from sandbox.demo import DEMO_ADULT, DEMO_CLOSED, DEMO_OPPOSED
from tests.fixtures.integration import author_json, patient_json, pdf, today

ROOT = Path(__file__).resolve().parents[2]
PATIENT = ["--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid]


def _via(api: Any) -> list[str]:
    return ["--port-agent", str(api.server.address[1]), "--config-agent", str(api.config)]


def _letter(title: str, content: bytes, patient: Any = DEMO_ADULT) -> bytes:
    return build.level1(
        type_code="11488-4",
        content=content,
        title=title,
        patient=build.PatientInput.from_dict(
            {k: v for k, v in patient_json(patient).items() if k != "ins_status"}
        ),
        author=build.AuthorInput.from_dict(author_json("gp")),
        media_type="application/pdf",
    )


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def test_commands_go_through_the_running_agent(
    api: Any, no_terminal: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    via = _via(api)
    code, out, err = _run(capsys, ["dmp", "consent", "--oui", *PATIENT, *via])
    assert code == 0, err
    assert out.startswith("Accord du patient enregistré. DMP actif")

    code, out, err = _run(capsys, ["dmp", "status", *PATIENT, *via])
    assert code == 0, err
    assert "DMP actif" in out and "Autorisation : VALIDE" in out

    content = pdf("Lettre par l'agent")
    letter = tmp_path / "lettre.xml"
    letter.write_bytes(_letter("Lettre par l'agent", content))
    code, out, err = _run(capsys, ["dmp", "deposit", str(letter), *PATIENT, *via])
    assert code == 0, err
    assert out.startswith("1 document(s) déposé(s) dans le DMP.")
    uid = out.splitlines()[1].removeprefix("- ").split(" : ")[0]
    registered = [e for e in api.services.queue_entries() if e.state.value == "registered"]
    assert uid in {u for e in registered for u in e.document_uids}  # the agent's queue sent it

    rubric = classify_type("11488-4").dmp_rubric
    assert rubric
    code, out, err = _run(capsys, ["dmp", "search", "--rubrique", rubric.lower(), *PATIENT, *via])
    assert code == 0, err
    line = next(x for x in out.splitlines() if uid in x)
    assert "Lettre par l'agent" in line and f"[{rubric}]" in line

    target = tmp_path / "lettre.pdf"
    code, _, err = _run(capsys, ["dmp", "get", uid, "--pdf", "-o", str(target), *PATIENT, *via])
    assert code == 0, err
    assert target.read_bytes() == content and f"({len(content)} octets)" in err
    assert target.stat().st_mode & 0o777 == 0o600
    xml = tmp_path / "lettre-dmp.xml"
    assert _run(capsys, ["dmp", "get", uid, "-o", str(xml), *PATIENT, *via])[0] == 0
    assert xml.read_bytes().lstrip().startswith(b"<")

    code, out, err = _run(capsys, ["dmp", "vaccinations", *PATIENT, *via, "--json"])
    assert code == 0, err
    assert '"vaccinations"' in out

    code, out, err = _run(capsys, ["outbox", "list", "--tout", *via])
    assert code == 0, err  # nothing left to send
    assert "enregistré dans le DMP : Lettre par l'agent" in out


def test_the_dmp_answers_read_as_standalone(
    api: Any, no_terminal: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    via = _via(api)
    for patient, expected in (
        (DEMO_CLOSED, "Le DMP de ce patient est fermé."),
        (DEMO_OPPOSED, "Le patient s'est opposé à son DMP"),
    ):
        code, out, err = _run(capsys, ["dmp", "status", "--ins", patient.ins, "--oid", patient.oid, *via])
        assert code == 0, err
        assert out.startswith(expected)
    letter = tmp_path / "ferme.xml"
    letter.write_bytes(_letter("Lettre refusée", pdf("refus"), DEMO_CLOSED))
    argv = ["dmp", "deposit", str(letter), "--ins", DEMO_CLOSED.ins, "--oid", DEMO_CLOSED.oid, *via]
    code, out, err = _run(capsys, argv)
    assert code == 1 and out == ""
    assert "Erreur : refusé (règle PAT-06) — Ce patient n'a pas de DMP actif" in err and "déposé" not in err


def test_vaccinations_lines_through_the_agent(
    make_api: Callable[..., Any], no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    api = make_api("pharmacist")
    vac = {"patient": patient_json(DEMO_ADULT), "author": author_json("pharmacist"), "cis_code": "68747507",
           "vaccine_label": "VACCIN TETANIQUE PASTEUR, suspension injectable", "atc_code": "J07AM01",
           "lot_number": "LOT-CLI-9", "date": today(), "dose_rank": 2}  # fmt: skip
    with api.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params={"oid": DEMO_ADULT.oid}, json={})
        qid = c.post("/v1/vaccinations", json=vac).json()["id"]
    [settled] = via_agent._settle(LocalAgent(api.url, api.token), [qid])  # polls with a deadline
    assert settled["state"] == "registered", settled
    code, out, err = _run(capsys, ["dmp", "vaccinations", *PATIENT, *_via(api)])
    assert code == 0, err
    line = next(x for x in out.splitlines() if "LOT-CLI-9" in x)
    assert line.startswith(today()) and "dose 2" in line and "VACCIN TETANIQUE" in line


def test_usage_errors_before_or_from_the_agent(
    api: Any, no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    via = _via(api)
    code, _, err = _run(capsys, ["dmp", "search", "--rubrique", "recettes", *PATIENT, *via])
    assert code == 2 and "Rubrique inconnue" in err
    code, _, err = _run(capsys, ["dmp", "get", "1.2.3.4.5", "--pdf", *PATIENT, *via])
    assert code == 1 and "Erreur :" in err  # an unknown document: the DMP's refusal, in French
    code, _, err = _run(capsys, ["dmp", "status", "--env", "formation1", *PATIENT, *via])
    assert code == 2 and "« sandbox », pas sur « formation1 »" in err  # never another environment's data


def test_a_child_process_with_stdin_closed_asks_no_pin(api: Any, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PS_AGENT_HOME": str(tmp_path / "home"),
           "PS_AGENT_API_PORT": str(api.server.address[1])}  # fmt: skip
    env.pop("PS_AGENT_TEST_PIN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ps_agent", "dmp", "status", *PATIENT, "--config-agent", str(api.config)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "DMP actif" in proc.stdout and "Code porteur" not in proc.stderr


def test_emergency_access_is_refused_through_the_agent(
    api: Any, no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["dmp", "status", "--bris-de-glace", "patient inconscient aux urgences", *PATIENT, *_via(api)]
    code, _, err = _run(capsys, argv)
    assert code == 1
    assert "fenêtre de l'agent" in err and "--autonome" in err
    assert api.events == []  # nothing asked of the window by the command line


def test_an_agent_without_session_says_so_in_french(
    make_api: Callable[..., Any], no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    api = make_api()
    api.session.close()  # the card was withdrawn: the agent runs, without a session
    code, _, err = _run(capsys, ["dmp", "status", *PATIENT, *_via(api)])
    assert code == 1
    assert "n'a pas de session ouverte" in err and "[code NO_SESSION]" in err


def test_a_wrong_token_gives_a_clear_message(
    api: Any, no_terminal: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "autre"
    other.mkdir()
    (other / "api-token").write_text("x" * 43 + "\n", encoding="ascii")
    argv = [
        "dmp",
        "status",
        *PATIENT,
        "--port-agent",
        str(api.server.address[1]),
        "--config-agent",
        str(other),
    ]
    code, _, err = _run(capsys, argv)
    assert code == 1
    assert "refuse le jeton" in err and str(other / "api-token") in err and "TOKEN_REFUSED" in err


def test_no_agent_is_the_standalone_path(
    no_terminal: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PS_AGENT_CA", raising=False)
    (tmp_path / "api-token").write_text("y" * 43, encoding="ascii")  # a token, but nobody listens
    argv = ["dmp", "status", *PATIENT, "--port-agent", "9", "--config-agent", str(tmp_path)]
    code, _, err = _run(capsys, argv)
    assert code == 1 and "autorités de certification" in err  # today's check before the PIN


def test_autonome_opens_the_card_although_an_agent_runs(
    api: Any, dmp: Any, test_pki: Any, virtual_card: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import ps_agent.cli.common as common

    virtual_card.insert("gp")
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PS_AGENT_TEST_PIN", "1234")
    asked: list[str] = []
    real = common.read_pin
    monkeypatch.setattr("ps_agent.cli.dmp_cmd.read_pin", lambda: asked.append("pin") or real())
    before = len(api.services.queue_entries())
    argv = ["dmp", "status", "--autonome", "--env", dmp.base_url, "--ca", str(test_pki.ca_bundle),
            "--lecteur", virtual_card.reader_name, *PATIENT, *_via(api)]  # fmt: skip
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert asked == ["pin"]  # the command opened the card itself
    assert "DMP" in out
    assert len(api.services.queue_entries()) == before
