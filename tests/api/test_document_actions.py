"""Document actions (TD3.3: visibility, archive, delete) and queue actions (resume, hand-back) through the
local API against the real sandbox: the DMP's state after each action, the journal, and the problems
naming the field for each bad input."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.outbox import EntryState
from sandbox.demo import DEMO_ADULT, DEMO_CLOSED, DEMO_MINOR
from tests.fixtures.integration import author_json, patient_json, pdf

INS = DEMO_ADULT.ins
Q = {"oid": DEMO_ADULT.oid}
DOCS = f"/v1/patients/{INS}/documents"


def _wait_final(c: httpx.Client, qid: str, deadline_s: float = 30) -> dict[str, Any]:
    end = time.monotonic() + deadline_s
    while True:
        item = c.get(f"/v1/queue/{qid}").json()
        if item["state"] in ("registered", "refused", "handed_back") or time.monotonic() > end:
            return item
        time.sleep(0.05)


def _deposit(c: httpx.Client, title: str, patient: Any = DEMO_ADULT) -> dict[str, Any]:
    body = {"patient": patient_json(patient), "pdf_base64": base64.b64encode(pdf(title)).decode(),
            "type_code": "11488-4", "title": title, "author": author_json("gp")}  # fmt: skip
    r = c.post("/v1/deposits", json=body)
    assert r.status_code == 202, r.text
    return _wait_final(c, r.json()["id"])


def _listed(c: httpx.Client, uid: str, **params: Any) -> dict[str, Any] | None:
    docs = c.get(DOCS, params=Q | params).json()["documents"]
    return next((d for d in docs if d["unique_id"] == uid), None)


def _fields(r: httpx.Response) -> list[str]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["field"] for e in r.json()["errors"]]


def test_visibility_archive_and_delete_change_the_dmp(api: Any) -> None:
    with api.client() as c:
        c.post(f"/v1/patients/{INS}/consent", params=Q, json={})
        uid = _deposit(c, "Lettre à masquer")["document_unique_ids"][0]
        listed = _listed(c, uid)
        assert listed is not None and listed["MASQUE_PS"] is False
        assert listed["entry_uuid"].startswith("urn:uuid:") and listed["class_code"]
        assert listed["status_code"] == "approved" and listed["type"] and listed["class_label"]
        assert listed["author_details"][0]["id_nat"] == api.session.identity.id_nat

        r = c.post(f"{DOCS}/{uid}/visibility", params=Q, json={"MASQUE_PS": True})
        assert r.status_code == 200, r.text
        assert r.json() == {"unique_id": uid, "action": "mask",
                            "message": "Document masqué aux professionnels de santé."}  # fmt: skip
        after = _listed(c, uid)
        assert after is not None and after["MASQUE_PS"] is True
        assert after["entry_uuid"] != listed["entry_uuid"]  # a new version of the metadata
        r = c.post(f"{DOCS}/{uid}/visibility", params=Q, json={"MASQUE_PS": False})
        assert r.status_code == 200 and r.json()["action"] == "unmask"
        assert (_listed(c, uid) or {})["MASQUE_PS"] is False

        r = c.post(f"{DOCS}/{uid}/archive", params=Q)
        assert r.status_code == 200 and r.json()["message"] == "Document archivé.", r.text
        assert _listed(c, uid) is None  # archived: out of the default listing
        archived = _listed(c, uid, archives=True)
        assert archived is not None and archived["status_code"] == "archived"
        r = c.post(f"{DOCS}/{uid}/archive", params=Q | {"archiver": False})
        assert r.status_code == 200 and r.json()["action"] == "unarchive"
        assert (_listed(c, uid) or {}).get("status_code") == "approved"

        r = c.delete(f"{DOCS}/{uid}", params=Q)
        assert r.status_code == 200 and r.json()["message"] == "Document supprimé.", r.text
        assert _listed(c, uid) is None and _listed(c, uid, archives=True) is None
        journal = c.get("/v1/journal").text
    for action in ("dmp.mask", "dmp.unmask", "dmp.archive", "dmp.unarchive", "dmp.delete"):
        assert action in journal


def test_document_action_problems_name_the_field(make_api: Any) -> None:
    author, other = make_api("gp"), make_api("specialist")
    with author.client() as c:
        c.post(f"/v1/patients/{INS}/consent", params=Q, json={})
        uid = _deposit(c, "Lettre de l'auteur")["document_unique_ids"][0]
        r = c.delete(f"{DOCS}/pas-un-oid", params=Q)
        assert (
            r.status_code == 422 and r.json()["code"] == "INVALID_UNIQUE_ID" and _fields(r) == ["unique_id"]
        )
        assert "Identifiant de document invalide" in r.json()["detail"]
        r = c.delete(f"{DOCS}/2.25.1%0A", params=Q)  # a trailing line feed is not part of an OID
        assert r.status_code == 422 and _fields(r) == ["unique_id"]
        r = c.post(f"{DOCS}/2.25.42/visibility", params=Q, json={"MASQUE_PS": True})
        assert r.status_code == 404 and _fields(r) == ["unique_id"] and "introuvable" in r.json()["detail"]
        r = c.post(f"{DOCS}/{uid}/visibility", params=Q, json={})
        assert r.status_code == 422 and _fields(r) == ["MASQUE_PS"]
        r = c.post(f"{DOCS}/{uid}/visibility", params=Q, json={"INVISIBLE_PATIENT": True})
        assert r.status_code == 422 and _fields(r) == ["INVISIBLE_PATIENT"]  # only "make visible" exists
        r = c.post(f"{DOCS}/{uid}/visibility", params=Q, json={"MASQUE_PS": True, "INVISIBLE_PATIENT": False})
        assert r.status_code == 422 and r.json()["code"] == "ONE_CHANGE"
        r = c.delete(f"/v1/patients/{INS[:14]}0/documents/{uid}", params=Q)
        assert r.status_code == 422 and _fields(r) == ["ins"]
    with other.client() as c:
        c.post(f"/v1/patients/{INS}/consent", params=Q, json={})
        r = c.delete(f"{DOCS}/{uid}", params=Q)
        assert r.status_code == 403, r.text
        p = r.json()
        assert p["source"] == "dmp" and p["code"] and _fields(r) == ["unique_id"]
        assert "auteur" in p["detail"]
    with author.client() as c:
        assert _listed(c, uid) is not None  # still there


def test_new_operations_need_the_token(api: Any) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as c:
        for method, path, body in (
            ("POST", f"{DOCS}/2.25.1/visibility", {"MASQUE_PS": True}),
            ("POST", f"{DOCS}/2.25.1/archive", None),
            ("DELETE", f"{DOCS}/2.25.1", None),
            ("POST", "/v1/queue/resume", None),
            ("POST", "/v1/queue/2.25.1/resume", None),
            ("POST", "/v1/queue/2.25.1/hand-back", {"folder": "/tmp"}),
        ):
            r = c.request(method, path, params=Q, json=body)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["code"] == "TOKEN_REQUIRED"


def test_queue_item_carries_patient_and_document_type(api: Any, pending_entry: Any) -> None:
    entry_id, uid, _ = pending_entry(api, "Lettre en attente")
    with api.client() as c:
        item = c.get(f"/v1/queue/{entry_id}").json()
        listed = [i for i in c.get("/v1/queue").json() if i["id"] == entry_id]
    for i in (item, *listed):
        assert i["patient_ins"] == DEMO_ADULT.ins and i["patient_ins_oid"] == DEMO_ADULT.oid
        assert i["patient_ins_status"] == "QUAL" and i["deposited_by"] == api.session.identity.id_nat
        [d] = i["documents"]
        assert d["unique_id"] == uid and d["type_code"] == "11488-4" and d["title"] == "Lettre en attente"
        assert d["rubric"] and d["type"]
    assert len(listed) == 1 and item["state"] == "pending"


def test_resume_sends_the_pending_entry(api: Any, pending_entry: Any) -> None:
    entry_id, uid, _ = pending_entry(api, "Lettre reprise")
    with api.client() as c:
        c.post(f"/v1/patients/{INS}/consent", params=Q, json={})
        r = c.post("/v1/queue/resume")
        assert r.status_code == 200, r.text
        out = r.json()
        [o] = [o for o in out["outcomes"] if o["id"] == entry_id]
        assert o["state"] == "registered" and o["document_unique_ids"] == [uid] and out["left"] == 0
        assert _listed(c, uid) is not None
        r = c.post("/v1/queue/resume")
        assert r.status_code == 200 and r.json() == {"outcomes": [], "left": 0}


def test_hand_back_writes_where_asked_and_names_the_field(
    api: Any, tmp_path: Path, pending_entry: Any
) -> None:
    entry_id, uid, doc = pending_entry(api, "Lettre rendue")
    target = tmp_path / "rendus" / "lot"
    with api.client() as c:
        r = c.post(f"/v1/queue/{entry_id}/hand-back", json={"folder": "rendus"})
        assert r.status_code == 422 and r.json()["code"] == "FOLDER_NOT_ABSOLUTE" and _fields(r) == ["folder"]
        assert "chemin absolu" in r.json()["detail"]
        a_file = tmp_path / "fichier"
        a_file.write_text("x")
        r = c.post(f"/v1/queue/{entry_id}/hand-back", json={"folder": str(a_file)})
        assert r.status_code == 422 and _fields(r) == ["folder"]
        r = c.post(f"/v1/queue/{entry_id}/hand-back", json={"folder": str(tmp_path / ("x" * 300))})
        assert r.status_code == 422 and _fields(r) == ["folder"]  # a name too long: never a 500
        r = c.post("/v1/queue/2.25.77/hand-back", json={"folder": str(target)})
        assert r.status_code == 404 and _fields(r) == ["id"]
        r = c.post(f"/v1/queue/{entry_id}/hand-back", json={"dossier": str(target)})
        assert r.status_code == 422 and set(_fields(r)) == {"folder", "dossier"}
        assert api.services.queue.get(entry_id).state is EntryState.PENDING  # nothing taken out yet

        r = c.post(f"/v1/queue/{entry_id}/hand-back", json={"folder": str(target)})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["state"] == "handed_back" and out["files"] == [str(target / f"{uid}.xml")]
        written = target / f"{uid}.xml"
        assert written.read_bytes() == doc
        assert written.stat().st_mode & 0o777 == 0o600
        r = c.post(f"/v1/queue/{entry_id}/hand-back", json={"folder": str(target)})
        assert r.status_code == 409 and _fields(r) == ["id"] and "déjà terminé" in r.json()["detail"]
        assert "HANDED_BACK" in c.get("/v1/journal").text


@pytest.mark.parametrize("patient", [DEMO_CLOSED])
def test_a_refused_entry_can_be_handed_back(api: Any, tmp_path: Path, patient: Any) -> None:
    with api.client() as c:
        item = _deposit(c, "Lettre refusée", patient)
        assert item["state"] == "refused" and item["patient_ins"] == patient.ins
        r = c.post(f"/v1/queue/{item['id']}/hand-back", json={"folder": str(tmp_path / "refus")})
        assert r.status_code == 200, r.text
        assert len(r.json()["files"]) == 1


def test_unknown_route_and_method_are_french_problems(api: Any) -> None:
    with api.client() as c:
        r = c.get("/v1/nulle-part")
        assert (
            r.status_code == 404 and r.json()["code"] == "UNKNOWN_ROUTE" and "inconnue" in r.json()["detail"]
        )
        assert r.headers["content-type"].startswith("application/problem+json")
        r = c.put(f"{DOCS}/2.25.1/archive")
        assert (
            r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED" and "PUT" in r.json()["detail"]
        )


def _listed_of(c: httpx.Client, patient: str, q: dict[str, str], uid: str) -> dict[str, Any] | None:
    docs = c.get(f"{patient}/documents", params=q).json()["documents"]
    return next((d for d in docs if d["unique_id"] == uid), None)


def test_make_visible_to_the_patient_then_to_the_legal_representatives(api: Any) -> None:
    """A minor's document hidden from the patient and the legal representatives (INVISIBLE_REP_LEGAUX
    concerns minors only), then made visible step by step; masking it while invisible is PAT-03."""
    invisible = {"MASQUE_PS": False, "INVISIBLE_PATIENT": True, "INVISIBLE_REP_LEGAUX": True}
    minor = f"/v1/patients/{DEMO_MINOR.ins}"
    q = {"oid": DEMO_MINOR.oid}
    body = {"patient": patient_json(DEMO_MINOR), "pdf_base64": base64.b64encode(pdf("Annonce")).decode(),
            "type_code": "11488-4", "title": "Annonce", "author": author_json("gp"),
            "visibility": invisible}  # fmt: skip
    with api.client() as c:
        c.post(f"{minor}/consent", params=q, json={})
        r = c.post("/v1/deposits", json=body)
        assert r.status_code == 202, r.text
        item = _wait_final(c, r.json()["id"])
        assert item["state"] == "registered" and item["INVISIBLE_PATIENT"] is True, item
        uid = item["document_unique_ids"][0]
        d = _listed_of(c, minor, q, uid) or {}
        assert d["INVISIBLE_PATIENT"] is True and d["INVISIBLE_REP_LEGAUX"] is True
        r = c.post(f"{minor}/documents/{uid}/visibility", params=q, json={"MASQUE_PS": True})
        assert r.status_code == 422 and r.json()["code"] == "PAT-03" and _fields(r) == ["MASQUE_PS"]
        r = c.post(f"{minor}/documents/{uid}/visibility", params=q, json={"INVISIBLE_PATIENT": False})
        assert r.status_code == 200 and r.json()["message"] == "Document rendu visible au patient.", r.text
        d = _listed_of(c, minor, q, uid) or {}
        assert d["INVISIBLE_PATIENT"] is False and d["INVISIBLE_REP_LEGAUX"] is True
        r = c.post(f"{minor}/documents/{uid}/visibility", params=q, json={"INVISIBLE_REP_LEGAUX": False})
        assert r.status_code == 200 and r.json()["action"] == "make_visible", r.text
        assert "représentants légaux" in r.json()["message"]
        assert (_listed_of(c, minor, q, uid) or {})["INVISIBLE_REP_LEGAUX"] is False
