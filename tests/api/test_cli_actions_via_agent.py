"""``ps-agent dmp mask|visible|archive|delete`` and ``ps-agent outbox resume|hand-back`` on a running agent
(real uvicorn on 127.0.0.1, session on the real sandbox): the command goes through the local API, no PIN is
asked, the DMP really changes, and the French output and exit codes are the standalone command's (the
standalone path, with the emulated card, prints the same lines). Typos as a GP makes them: a clear French
error and a non-zero exit, never a wrong answer with exit 0."""

from __future__ import annotations

import base64
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.cli import main
from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import author_json, patient_json, pdf

PATIENT = ["--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid]
Q = {"oid": DEMO_ADULT.oid}
DOCS = f"/v1/patients/{DEMO_ADULT.ins}/documents"


def _via(api: Any) -> list[str]:
    return ["--port-agent", str(api.server.address[1]), "--config-agent", str(api.config)]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def _registered_letter(api: Any, title: str) -> str:
    body = {"patient": patient_json(DEMO_ADULT), "pdf_base64": base64.b64encode(pdf(title)).decode(),
            "type_code": "11488-4", "title": title, "author": author_json("gp")}  # fmt: skip
    with api.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params=Q, json={})
        qid = c.post("/v1/deposits", json=body).json()["id"]
        end = time.monotonic() + 30
        while (item := c.get(f"/v1/queue/{qid}").json())["state"] not in ("registered", "refused"):
            assert time.monotonic() < end, item
            time.sleep(0.05)
    assert item["state"] == "registered", item
    return str(item["document_unique_ids"][0])


def _listed(api: Any, uid: str, archives: bool = False) -> dict[str, Any] | None:
    with api.client() as c:
        docs = c.get(DOCS, params=Q | {"archives": archives}).json()["documents"]
    return next((d for d in docs if d["unique_id"] == uid), None)


def test_document_actions_through_the_agent(
    api: Any, no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = _registered_letter(api, "Lettre pour la ligne de commande")
    via = _via(api)

    code, out, err = _run(capsys, ["dmp", "mask", uid, *PATIENT, *via])
    assert (code, out) == (0, f"Document masqué aux professionnels de santé. ({uid})\n"), err
    assert (_listed(api, uid) or {})["MASQUE_PS"] is True
    code, out, err = _run(capsys, ["dmp", "masquer", uid, "--demasquer", *PATIENT, *via, "--json"])
    assert code == 0 and '"action": "unmask"' in out, err
    assert (_listed(api, uid) or {})["MASQUE_PS"] is False
    code, out, err = _run(capsys, ["dmp", "rendre-visible", uid, *PATIENT, *via])
    assert (code, out) == (0, f"Document rendu visible au patient. ({uid})\n"), err

    code, out, err = _run(capsys, ["dmp", "archive", uid, *PATIENT, *via])
    assert (code, out) == (0, f"Document archivé. ({uid})\n"), err
    assert _listed(api, uid) is None and _listed(api, uid, archives=True) is not None
    code, out, err = _run(capsys, ["dmp", "archiver", uid, "--desarchiver", *PATIENT, *via])
    assert (code, out) == (0, f"Document désarchivé. ({uid})\n"), err

    code, out, err = _run(capsys, ["dmp", "delete", uid, *PATIENT, *via])  # no answer: "non"
    assert code == 1 and out == "" and "Suppression abandonnée : rien n'a été envoyé." in err
    assert "Supprimer définitivement le document" in err and _listed(api, uid) is not None
    code, out, err = _run(capsys, ["dmp", "supprimer", uid, "--oui", *PATIENT, *via])
    assert (code, out) == (0, f"Document supprimé. ({uid})\n"), err
    assert _listed(api, uid) is None and _listed(api, uid, archives=True) is None
    with api.client() as c:
        journal = c.get("/v1/journal").text
    assert all(a in journal for a in ("dmp.mask", "dmp.unmask", "dmp.make_visible", "dmp.archive",
                                      "dmp.unarchive", "dmp.delete"))  # fmt: skip


def test_typos_give_a_french_error_and_a_non_zero_exit(
    make_api: Callable[..., Any], no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    author = make_api("gp")
    uid = _registered_letter(author, "Lettre de l'auteur")
    via = _via(author)
    for argv in (["dmp", "delete", "2.25.12x34", "--oui"], ["dmp", "mask", "urn:uuid:1234"],
                 ["dmp", "archive", f"{uid} extra"], ["dmp", "get", "pas-un-uid"]):  # fmt: skip
        code, out, err = _run(capsys, [*argv, *PATIENT, *via])
        assert code == 2 and out == "" and "Identifiant de document invalide" in err, (argv, err)
    code, out, err = _run(capsys, ["dmp", "mask", "2.25.999999", *PATIENT, *via])
    assert code == 1 and out == ""
    assert "introuvable dans le DMP" in err and "[code NOT_FOUND]" in err and "champ" not in err
    code, out, err = _run(capsys, ["dmp", "mask", uid, "--ins", DEMO_ADULT.ins[:-1] + "0", *via])
    assert code == 2 and out == "" and "clé" in err.lower()  # a wrong INS key, before anything is sent
    code, out, err = _run(capsys, ["dmp", "delete", uid, "--oui", "--env", "formation1", *PATIENT, *via])
    assert code == 2 and "pas sur « formation1 »" in err

    other = make_api("specialist")
    with other.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params=Q, json={})
    code, out, err = _run(capsys, ["dmp", "delete", uid, "--oui", *PATIENT, *_via(other)])
    assert code == 1 and out == ""
    assert err.startswith("Erreur : refusé par le DMP : ") and "auteur" in err  # as standalone prints it
    assert _listed(author, uid) is not None


def test_outbox_resume_and_hand_back_through_the_agent(
    api: Any, pending_entry: Callable[..., tuple[str, str, bytes]], no_terminal: None, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    via = _via(api)
    sent, sent_uid, _ = pending_entry(api, "Lettre à reprendre")
    with api.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params=Q, json={})
    code, out, err = _run(capsys, ["outbox", "resume", *via])
    assert code == 0, err
    assert out == f"{sent} : enregistré dans le DMP\n"
    assert _listed(api, sent_uid) is not None
    code, out, err = _run(capsys, ["outbox", "resume", *via])
    assert (code, out) == (0, "Aucun envoi à reprendre.\n"), err

    kept, kept_uid, doc = pending_entry(api, "Lettre à rendre")
    monkeypatch.chdir(tmp_path)  # the folder typed is relative to the command's current folder
    code, out, err = _run(capsys, ["outbox", "hand-back", "2.25.404", "--vers", "rendus", *via])
    assert code == 1 and out == "" and "Aucun envoi « 2.25.404 »" in err and "[code NOT_FOUND]" in err
    code, out, err = _run(capsys, ["outbox", "hand-back", "../etc/x y", "--vers", "rendus", *via])
    assert code == 2 and "Identifiant d'envoi invalide" in err
    (tmp_path / "un-fichier").write_text("x")
    code, out, err = _run(capsys, ["outbox", "hand-back", kept, "--vers", "un-fichier", *via])
    assert code == 2 and "n'est pas un dossier" in err
    code, out, err = _run(capsys, ["outbox", "hand-back", kept, "--vers", "rendus", *via])
    assert code == 0, err
    written = tmp_path / "rendus" / f"{kept_uid}.xml"
    assert out.splitlines() == [
        f"Envoi {kept} rendu : 1 document(s) écrit(s) dans {tmp_path / 'rendus'}.",
        f"  {written}",
    ]
    assert written.read_bytes() == doc and written.stat().st_mode & 0o777 == 0o600
    assert api.services.queue.get(kept).state.value == "handed_back"  # the agent's queue
    code, out, err = _run(capsys, ["outbox", "hand-back", kept, "--vers", "rendus", *via])
    assert code == 1 and "déjà terminé" in err


def test_the_api_refuses_a_relative_hand_back_folder(api: Any, pending_entry: Any) -> None:
    """What the command line avoids by making the folder absolute: the agent does not guess."""
    entry, _, _ = pending_entry(api, "Lettre")
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.token}"}) as c:
        r = c.post(f"/v1/queue/{entry}/hand-back", json={"folder": "rendus"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "folder"


def test_standalone_prints_the_same_lines(
    api: Any, dmp: Any, test_pki: Any, virtual_card: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``--autonome`` with the emulated card (PIN asked once per command): the same French lines."""
    import ps_agent.cli.common as common

    uid = _registered_letter(api, "Lettre autonome")  # the card holder (gp) is its author
    virtual_card.insert("gp")
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PS_AGENT_TEST_PIN", "1234")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    asked: list[str] = []
    real = common.read_pin
    monkeypatch.setattr("ps_agent.cli.dmp_cmd.read_pin", lambda: asked.append("pin") or real())
    conn = ["--autonome", "--env", dmp.base_url, "--ca", str(test_pki.ca_bundle),
            "--lecteur", virtual_card.reader_name, *PATIENT, *_via(api)]  # fmt: skip
    code, out, err = _run(capsys, ["dmp", "mask", uid, *conn])
    assert (code, out) == (0, f"Document masqué aux professionnels de santé. ({uid})\n"), err
    code, out, err = _run(capsys, ["dmp", "archive", uid, *conn])
    assert (code, out) == (0, f"Document archivé. ({uid})\n"), err
    code, out, err = _run(capsys, ["dmp", "delete", uid, *conn])  # end of input: "non"
    assert code == 1 and "Suppression abandonnée : rien n'a été envoyé." in err
    assert asked == ["pin", "pin"]  # the refused deletion asked no PIN
    code, out, err = _run(capsys, ["dmp", "mask", "2.25.999999", *conn])
    assert code == 1 and "introuvable dans le DMP" in err and "[code NOT_FOUND]" in err
    code, out, err = _run(capsys, ["dmp", "delete", "pas-un-uid", "--oui", *conn])
    assert code == 2 and "Identifiant de document invalide" in err
    code, out, err = _run(capsys, ["dmp", "delete", uid, "--oui", *conn])
    assert (code, out) == (0, f"Document supprimé. ({uid})\n"), err
    assert _listed(api, uid, archives=True) is None


def test_standalone_hand_back_with_home(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--home`` names a local queue: the command works on it, not on the agent's."""
    from ps_agent.outbox import DepositQueue

    home = tmp_path / "home"
    home.mkdir()
    with DepositQueue(home / "outbox.sqlite3") as q:
        q.add("2.25.77", (DEMO_ADULT.ins, DEMO_ADULT.oid, "QUAL"), ("2.25.78",), (b"<doc/>",),
              (False, False, False), ("",), titles=("Lettre locale",))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    argv = ["outbox", "hand-back", "2.25.77", "--vers", "sortie", "--home", str(home), *_via(api)]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert out.splitlines()[0] == f"Envoi 2.25.77 rendu : 1 document(s) écrit(s) dans {tmp_path / 'sortie'}."
    assert (tmp_path / "sortie" / "2.25.78.xml").read_bytes() == b"<doc/>"
    assert api.services.queue.get("2.25.77") is None


def test_outbox_list_and_search_through_the_agent_carry_what_standalone_does(
    api: Any, pending_entry: Callable[..., tuple[str, str, bytes]], no_terminal: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import json

    entry, uid, _ = pending_entry(api, "Lettre en file")
    via = _via(api)
    code, out, err = _run(capsys, ["outbox", "list", *via])
    assert code == 1, err  # something is left to send
    line = next(x for x in out.splitlines() if x.startswith(entry))
    assert f"  patient {DEMO_ADULT.ins}  " in line and "Lettre en file" in line
    code, out, err = _run(capsys, ["outbox", "list", "--json", *via])
    [row] = [e for e in json.loads(out)["entries"] if e["id"] == entry]
    assert row["patient_ins"] == DEMO_ADULT.ins and row["patient_oid"] == DEMO_ADULT.oid
    assert row["documents"] == [uid] and row["state"] == "pending"

    registered = _registered_letter(api, "Lettre listée")
    code, out, err = _run(capsys, ["dmp", "search", "--rubrique", "comptes rendus", "--json", *PATIENT, *via])
    assert code == 0, err
    [doc] = [d for d in json.loads(out)["documents"] if d["unique_id"] == registered]
    assert doc["entry_uuid"].startswith("urn:uuid:") and doc["class_code"] and doc["type"]
    assert list(doc) == ["unique_id", "entry_uuid", "title", "type_code", "type", "class_code", "rubric",
                         "creation_time", "status", "authors", "masked_to_professionals",
                         "invisible_to_patient", "invisible_to_legal_representatives"]  # fmt: skip


def test_an_agent_without_the_operation_says_so_in_french(api: Any) -> None:
    """A command newer than the running agent (an operation it does not know): a French message, exit 1."""
    from ps_agent.api.client import LocalAgent
    from ps_agent.cli import via_agent
    from ps_agent.errors import PsAgentError

    with pytest.raises(PsAgentError) as caught:
        via_agent._call(LocalAgent(api.url, api.token), "POST", "/v1/queue/2.25.1/operation-future")
    assert caught.value.code == "AGENT_TOO_OLD" and "--autonome" in caught.value.message_fr


def test_hand_back_from_another_process_lands_in_the_commands_folder(
    api: Any, pending_entry: Callable[..., tuple[str, str, bytes]], tmp_path: Path
) -> None:
    """The command is a child process with its own current folder (stdin closed): the agent (this
    process, another current folder) writes the files where the command's user asked."""
    import os
    import subprocess

    entry, uid, doc = pending_entry(api, "Lettre rendue par un autre processus")
    cwd = tmp_path / "poste"
    cwd.mkdir()
    assert Path.cwd() != cwd
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root, "PS_AGENT_HOME": str(tmp_path / "home"),
           "PS_AGENT_API_PORT": str(api.server.address[1])}  # fmt: skip
    env.pop("PS_AGENT_TEST_PIN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ps_agent", "outbox", "hand-back", entry, "--vers", "rendus",
         "--config-agent", str(api.config)],
        cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "rendus" / f"{uid}.xml").read_bytes() == doc
    assert f"dans {cwd / 'rendus'}." in proc.stdout
    assert api.services.queue.get(entry).state.value == "handed_back"


def test_a_policy_refusal_reads_as_standalone(
    api: Any, no_terminal: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.demo import DEMO_CLOSED

    argv = ["dmp", "search", "--ins", DEMO_CLOSED.ins, "--oid", DEMO_CLOSED.oid, *_via(api)]
    code, out, err = _run(capsys, argv)
    assert code == 1 and out == ""
    assert err.startswith("Erreur : refusé (règle PAT-06) — ") and "champ" not in err
