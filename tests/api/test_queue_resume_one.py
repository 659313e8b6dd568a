"""``POST /v1/queue/{id}/resume`` and ``ps-agent outbox resume ID`` (through the running agent and
standalone): one entry sent now, the others left as they are; an unknown id is a 404 naming it, an entry
that cannot be sent now a 409 saying its state (403: another professional's deposit). Real uvicorn on
127.0.0.1, real queue files, the real sandbox."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ps_agent.auth.model import AuthMode
from ps_agent.cli import main
from ps_agent.outbox import EntryState
from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import identity_of

Q = {"oid": DEMO_ADULT.oid}


def _fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json().get("errors") or ()]


def _via(api: Any) -> list[str]:
    return ["--port-agent", str(api.server.address[1]), "--config-agent", str(api.config)]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def _state(api: Any, entry_id: str) -> EntryState:
    e = api.services.queue.get(entry_id)
    assert e is not None
    return EntryState(e.state)


def test_resume_one_entry_leaves_the_others(api: Any, pending_entry: Any) -> None:
    first, uid, _ = pending_entry(api, "Lettre reprise seule")
    other, _, _ = pending_entry(api, "Lettre laissée en attente")
    with api.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params=Q, json={})
        r = c.post(f"/v1/queue/{first}/resume")
        assert r.status_code == 200, r.text
        out = r.json()
        [o] = out["outcomes"]
        assert (o["id"], o["state"], o["document_unique_ids"]) == (first, "registered", [uid])
        assert o["state_label"] == "enregistré dans le DMP"
        assert out["left"] == 1  # the other one, untouched
        assert _state(api, other) is EntryState.PENDING
        # settled: 409 saying its state, the field named
        r = c.post(f"/v1/queue/{first}/resume")
        assert r.status_code == 409 and r.json()["code"] == "QUEUE_FINAL" and _fields(r) == ["id"]
        assert "« enregistré dans le DMP »" in r.json()["detail"] and first in r.json()["detail"]
        assert r.headers["content-type"].startswith("application/problem+json")
        # the all-entries endpoint is still there
        r = c.post("/v1/queue/resume")
        assert r.status_code == 200 and [o["id"] for o in r.json()["outcomes"]] == [other]


def test_openapi_describes_the_operation(api: Any) -> None:
    with api.client() as c:
        doc = c.get("/openapi.json").json()
    assert doc["info"]["version"] == "1.2.0"
    op = doc["paths"]["/v1/queue/{entry_id}/resume"]["post"]
    assert {"200", "403", "404", "409"} <= set(op["responses"])
    assert "application/problem+json" in op["responses"]["409"]["content"]
    assert "post" in doc["paths"]["/v1/queue/resume"]


def test_unknown_refused_busy_and_foreign_entries(api: Any, pending_entry: Any) -> None:
    with api.client() as c:
        r = c.post("/v1/queue/2.25.404404/resume")
        assert r.status_code == 404 and r.json()["code"] == "UNKNOWN_QUEUE_ID" and _fields(r) == ["id"]
        assert r.json()["detail"] == "Aucun envoi « 2.25.404404 » dans la file d'envoi."

        refused, _, _ = pending_entry(api, "Lettre refusée")
        q = api.services.queue
        assert q.claim(refused) is not None
        q.mark_refused(refused, "Patient inconnu du DMP", "DMPPatientNotFound")
        r = c.post(f"/v1/queue/{refused}/resume")
        assert r.status_code == 409 and r.json()["code"] == "QUEUE_REFUSED"
        detail = r.json()["detail"]
        assert "« refusé par le DMP » (Patient inconnu du DMP)" in detail and "définitif" in detail
        assert _state(api, refused) is EntryState.REFUSED

        busy, _, _ = pending_entry(api, "Lettre en cours d'envoi")
        assert q.claim(busy) is not None  # another sender holds it (live lease)
        r = c.post(f"/v1/queue/{busy}/resume")
        assert r.status_code == 409 and r.json()["code"] == "QUEUE_BUSY"
        assert "« envoi en cours »" in r.json()["detail"]

        foreign = "2.25.770011"  # deposited by another professional than the session's
        q.add(foreign, (DEMO_ADULT.ins, DEMO_ADULT.oid, "QUAL"), ("2.25.77001",), (b"<x/>",),
              (False, False, False), ("",), titles=("x",), actor_id_nat="899700000001")  # fmt: skip
        r = c.post(f"/v1/queue/{foreign}/resume")
        assert r.status_code == 403 and r.json()["code"] == "QUEUE_OTHER_PROFESSIONAL"
        assert "autre professionnel" in r.json()["detail"]
        assert _state(api, foreign) is EntryState.PENDING


def test_resume_one_through_the_running_agent(
    api: Any, pending_entry: Callable[..., tuple[str, str, bytes]], no_terminal: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    via = _via(api)
    first, _, _ = pending_entry(api, "Lettre CLI seule")
    other, _, _ = pending_entry(api, "Lettre CLI restante")
    with api.client() as c:
        c.post(f"/v1/patients/{DEMO_ADULT.ins}/consent", params=Q, json={})
    code, out, err = _run(capsys, ["outbox", "resume", first, *via])
    assert code == 1, err  # registered, but another entry is still waiting
    assert out == f"{first} : enregistré dans le DMP\n1 envoi(s) encore en attente.\n"
    assert "Reprise de l'envoi" in err and _state(api, other) is EntryState.PENDING
    code, out, err = _run(capsys, ["outbox", "resume", first, *via])
    assert code == 1 and out == "" and "« enregistré dans le DMP »" in err and "QUEUE_FINAL" in err
    code, out, err = _run(capsys, ["outbox", "resume", "2.25.404404", *via])
    assert code == 1 and out == "" and "Aucun envoi « 2.25.404404 »" in err
    code, out, err = _run(capsys, ["outbox", "resume", "../x y", *via])
    assert code == 2 and "Identifiant d'envoi invalide" in err
    code, out, err = _run(capsys, ["outbox", "resume", other, "--json", *via])
    assert code == 0, err
    assert json.loads(out) == {"outcomes": [{"id": other, "state": "registered",
                                             "state_fr": "enregistré dans le DMP", "reason_fr": "",
                                             "documents": json.loads(out)["outcomes"][0]["documents"]}],
                               "left": 0}  # fmt: skip


def test_resume_one_standalone(
    make_api: Callable[..., Any], pending_entry: Callable[..., tuple[str, str, bytes]], dmp: Any,
    test_pki: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``--autonome`` with the establishment's certificates (AIR): the command opens its own session on
    the queue folder given (``--home``) and sends that entry only."""
    from sandbox.pki import P12_PASSPHRASE

    queued = make_api("secretary", AuthMode.INDIRECTE_RENFORCEE)  # whose queue holds the entries
    first, _, _ = pending_entry(queued, "Lettre autonome seule")
    other, _, _ = pending_entry(queued, "Lettre autonome restante")
    ident = identity_of("secretary")
    user = {k: getattr(ident, k) for k in ("id_nat", "family_name", "given_name", "profession_code",
                                            "specialty_code", "non_ps_role")}  # fmt: skip
    user["activity"] = dataclasses.asdict(ident.activity)
    (tmp_path / "user.json").write_text(json.dumps(user, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("PS_AGENT_P12_PASSPHRASE", P12_PASSPHRASE)
    org = test_pki.establishment
    argv = ["--autonome", "--home", str(queued.config.parent / "home"), "--env", dmp.base_url,
            "--ca", str(test_pki.ca_bundle), "--etablissement", str(org.auth_p12),
            "--signature-etablissement", str(org.sign_p12),
            "--utilisateur", str(tmp_path / "user.json")]  # fmt: skip
    code, out, err = _run(capsys, ["outbox", "resume", first, *argv])
    assert out == f"{first} : enregistré dans le DMP\n1 envoi(s) encore en attente.\n", err
    assert code == 1 and _state(queued, other) is EntryState.PENDING
    code, out, err = _run(capsys, ["outbox", "resume", first, *argv])
    assert code == 1 and "« enregistré dans le DMP »" in err and "rien à reprendre" in err
    code, out, err = _run(capsys, ["outbox", "resume", "2.25.404404", *argv])
    assert code == 1 and "Aucun envoi « 2.25.404404 »" in err
