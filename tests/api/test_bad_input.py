"""Bad inputs: a specific 4xx problem naming the field, never a 5xx."""

from __future__ import annotations

import base64
from typing import Any

from sandbox.demo import DEMO_ADULT
from tests.fixtures.integration import author_json, patient_json, pdf

INS = DEMO_ADULT.ins


def _body(**over: Any) -> dict[str, Any]:
    body = {
        "patient": patient_json(DEMO_ADULT),
        "pdf_base64": base64.b64encode(pdf("x")).decode(),
        "type_code": "11488-4",
        "title": "Lettre",
        "author": author_json("gp"),
    }
    body.update(over)
    return body


def _fields(r: Any) -> list[str]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["field"] for e in r.json()["errors"]]


def test_malformed_json_is_400_naming_the_body(api: Any) -> None:
    with api.client() as c:
        r = c.post("/v1/deposits", content=b'{"patient": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "JSON_INVALID"
    assert _fields(r) == ["body"] and "JSON" in r.json()["detail"]


def test_not_a_pdf(api: Any) -> None:
    with api.client() as c:
        r = c.post("/v1/deposits", json=_body(pdf_base64=base64.b64encode(b"GIF89a not a pdf").decode()))
    assert r.status_code == 422 and r.json()["code"] == "NOT_A_PDF" and _fields(r) == ["pdf_base64"]
    assert "PDF" in r.json()["detail"]


def test_bad_base64(api: Any) -> None:
    with api.client() as c:
        r = c.post("/v1/deposits", json=_body(pdf_base64="@@@"))
    assert r.status_code == 422 and _fields(r) == ["pdf_base64"]


def test_unqualified_identity(api: Any) -> None:
    p = patient_json(DEMO_ADULT) | {"ins_status": "PROV"}
    with api.client() as c:
        r = c.post("/v1/deposits", json=_body(patient=p))
    assert r.status_code == 422 and r.json()["code"] == "INS_NOT_QUALIFIED"
    assert _fields(r) == ["patient.ins_status"] and "qualifiée" in r.json()["detail"]


def test_invalid_ins_key(api: Any) -> None:
    bad = INS[:13] + ("00" if INS[13:] != "00" else "01")
    with api.client() as c:
        r = c.get(f"/v1/patients/{bad}/dmp", params={"oid": DEMO_ADULT.oid})
        assert r.status_code == 422 and _fields(r) == ["ins"]
        r = c.post("/v1/deposits", json=_body(patient=patient_json(DEMO_ADULT) | {"ins": bad}))
        assert r.status_code == 422 and _fields(r) == ["patient.ins"]


def test_unknown_patient(api: Any) -> None:
    body13 = "1990199999999"
    unknown = body13 + f"{97 - int(body13) % 97:02d}"
    with api.client() as c:
        r = c.get(f"/v1/patients/{unknown}/documents", params={"oid": DEMO_ADULT.oid})
    assert r.status_code == 404, r.text
    assert _fields(r) == ["ins"]


def test_missing_and_unknown_fields_named(api: Any) -> None:
    body = _body()
    del body["title"]
    body["couleur"] = "bleu"
    with api.client() as c:
        r = c.post("/v1/deposits", json=body)
        assert r.status_code == 422 and "couleur" in _fields(r)
        r = c.post("/v1/deposits", json={"patient": {"ins": "12"}})
        assert r.status_code == 422 and "patient.ins" in _fields(r)
        r = c.post("/v1/deposits", json=_body(title=""))
        assert r.status_code == 422 and _fields(r) == ["title"]


def test_both_visibility_flags_refused(api: Any) -> None:
    with api.client() as c:
        r = c.post("/v1/deposits", json=_body(visibility={"MASQUE_PS": True, "INVISIBLE_PATIENT": True}))
    assert r.status_code == 422 and _fields(r) == ["visibility.INVISIBLE_PATIENT"]
