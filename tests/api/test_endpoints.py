"""Each endpoint against the real sandbox DMP, through uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx

from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import author_json, patient_json, pdf, today

INS = DEMO_ADULT.ins
Q = {"oid": DEMO_ADULT.oid}


def _deposit_body(title: str = "Compte rendu API", **over: Any) -> dict[str, Any]:
    body = {
        "patient": patient_json(DEMO_ADULT),
        "pdf_base64": base64.b64encode(pdf(title)).decode(),
        "type_code": "11488-4",
        "title": title,
        "author": author_json("gp"),
    }
    body.update(over)
    return body


def _wait_final(c: httpx.Client, qid: str, deadline_s: float = 30) -> dict[str, Any]:
    end = time.monotonic() + deadline_s
    while True:
        item = c.get(f"/v1/queue/{qid}").json()
        if item["state"] in ("registered", "refused", "handed_back") or time.monotonic() > end:
            return item
        time.sleep(0.05)


def test_status(api: Any) -> None:
    with api.client() as c:
        r = c.get("/v1/status")
    assert r.status_code == 200
    s = r.json()
    assert s["session_open"] is True and s["card"]["present"] is True
    assert s["card"]["id_nat"] == api.session.identity.id_nat and s["card"]["mode"] == "DIRECTE"
    assert s["environment"] == "sandbox"
    assert set(s["queue"]) == {"pending", "sending", "waiting", "registered", "refused", "handed_back"}


def test_open_patient_emits_event_for_the_window(api: Any) -> None:
    with api.client() as c:
        r = c.post("/v1/patients/open", json={"patient": patient_json(DEMO_ADULT), "source": "LGC test"})
    assert r.status_code == 202
    assert [n for n, _ in api.events] == ["open_patient_requested"]
    req = api.events[0][1]
    assert req.ins == INS and req.source == "LGC test" and req.traits["birth_family_name"] == "DEMO-ADULTE"


def test_dmp_status_consent_and_journal(api: Any) -> None:
    with api.client() as c:
        r = c.get(f"/v1/patients/{INS}/dmp", params={"oid": DEMO_ADULT.oid})
        assert r.status_code == 200, r.text
        assert r.json()["exists"] is True and r.json()["active"] is True
        r = c.post(f"/v1/patients/{INS}/consent", params={"oid": DEMO_ADULT.oid}, json={"how": "oral"})
        assert r.status_code == 200, r.text
        assert r.json()["authorisation"] == "VALIDE"
        j = c.get("/v1/journal", params={"format": "csv"})
        assert j.status_code == 200 and j.headers["content-type"].startswith("text/csv")
        assert "dmp.status" in j.text and "dmp.consent" in j.text
        f = c.get("/v1/journal", params={"format": "fhir"})
        assert f.status_code == 200 and f.json()["resourceType"] == "Bundle"


def test_deposit_202_then_registered_listed_retrieved_as_pdf_and_sse(api: Any) -> None:
    content = pdf("Lettre API")
    body = _deposit_body("Lettre API", pdf_base64=base64.b64encode(content).decode())
    with api.client() as c:
        c.post(f"/v1/patients/{INS}/consent", params={"oid": DEMO_ADULT.oid}, json={})
        r = c.post("/v1/deposits", json=body)
        assert r.status_code == 202, r.text
        qid = r.json()["id"]
        assert r.headers["location"] == f"/v1/queue/{qid}"
        assert r.json()["state"] in ("sending", "registered", "pending")
        # the event stream ends with the final state
        with c.stream("GET", f"/v1/queue/{qid}/events") as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            events = [line[len("event: ") :] for line in s.iter_lines() if line.startswith("event: ")]
        assert events[-1] == "registered"
        item = _wait_final(c, qid)
        assert item["state"] == "registered"
        uid = item["document_unique_ids"][0]
        docs = c.get(f"/v1/patients/{INS}/documents", params=Q | {"rubrique": "Comptes rendus"}).json()
        listed = [d for d in docs["documents"] if d["unique_id"] == uid]
        assert listed and listed[0]["title"] == "Lettre API" and listed[0]["rubric"] == "Comptes rendus"
        got = c.get(f"/v1/patients/{INS}/documents/{uid}", params=Q)
        assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
        assert got.content == content
        cda = c.get(f"/v1/patients/{INS}/documents/{uid}", params=Q | {"format": "cda"})
        assert cda.headers["content-type"].startswith("application/xml") and b"nonXMLBody" in cda.content
        status = c.get("/v1/status").json()
        assert status["queue"]["registered"] >= 1


def test_vaccination_recorded_then_in_status(make_api: Any) -> None:
    api = make_api("pharmacist")
    vac = {
        "patient": patient_json(DEMO_ADULT),
        "author": author_json("pharmacist"),
        "cis_code": "68747507",
        "vaccine_label": "VACCIN TETANIQUE PASTEUR, suspension injectable",
        "atc_code": "J07AM01",
        "lot_number": "LOT-API-7",
        "date": today(),
    }
    with api.client() as c:
        c.post(f"/v1/patients/{INS}/consent", params={"oid": DEMO_ADULT.oid}, json={})
        r = c.post("/v1/vaccinations", json=vac)
        assert r.status_code == 202, r.text
        assert _wait_final(c, r.json()["id"])["state"] == "registered"
        v = c.get(f"/v1/patients/{INS}/vaccinations", params=Q)
        assert v.status_code == 200, v.text
        assert any("LOT-API-7" in json.dumps(x) for x in v.json()["vaccinations"])


def test_emergency_needs_the_window(api: Any) -> None:
    with api.client() as c:
        r = c.post(
            f"/v1/patients/{INS}/emergency", json={"mode": "bris_de_glace", "reason": "urgence vitale"}
        )
    assert r.status_code == 403
    assert r.json()["code"] == "EMERGENCY_NEEDS_WINDOW" and "fenêtre" in r.json()["detail"]
    assert api.events and api.events[-1][0] == "emergency_confirmation_requested"
    assert api.events[-1][1].reason == "urgence vitale"


def test_background_consultation_refused_by_policy(api: Any) -> None:
    with api.client() as c:
        r = c.get(f"/v1/patients/{INS}/documents", params=Q | {"contexte": "arriere-plan"})
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and r.json()["detail"]


def test_unknown_queue_id(api: Any) -> None:
    with api.client() as c:
        r = c.get("/v1/queue/2.25.1")
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "id"


def test_multipart_deposit_with_the_hot_folder_sidecar(api: Any) -> None:
    meta = {"patient": patient_json(DEMO_ADULT), "type_code": "11488-4", "title": "Lettre multipart",
            "author": author_json("gp"), "MASQUE_PS": "N"}  # fmt: skip
    with api.client() as c:
        r = c.post(
            "/v1/deposits/fichier",
            files={"document": ("lettre.pdf", pdf("multipart"), "application/pdf")},
            data={"metadata": json.dumps(meta)},
        )
        assert r.status_code == 202, r.text
        assert _wait_final(c, r.json()["id"])["state"] == "registered"
        bad = c.post(
            "/v1/deposits/fichier",
            files={"document": ("lettre.pdf", pdf("x"), "application/pdf")},
            data={"metadata": json.dumps(meta | {"MASQUE_PS": "peut-être"})},
        )
        assert bad.status_code == 422 and [e["field"] for e in bad.json()["errors"]] == ["MASQUE_PS"]
        junk = c.post(
            "/v1/deposits/fichier",
            files={"document": ("x.bin", b"\x00\x01binary", "application/octet-stream")},
            data={"metadata": "{}"},
        )
        assert junk.status_code == 422 and junk.json()["errors"][0]["field"] == "document"
        unreadable = c.post(
            "/v1/deposits/fichier",
            files={"document": ("lettre.pdf", pdf("x"), "application/pdf")},
            data={"metadata": "{pas du json"},
        )
        assert unreadable.status_code == 422 and unreadable.json()["errors"][0]["field"] == "metadata"
