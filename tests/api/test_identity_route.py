"""The identity route is offered only when an INSi lookup is configured (ps_agent.identity on main);
here the lookup is a plain function standing in for the INSi client, to check the route's contract."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from ps_agent.api import ApiBackend, create_app
from ps_agent.api.models import IdentityIn, IdentityOut
from ps_agent.events import Events


class _Services:
    events = Events()
    config = None


def _app(lookup: Any) -> TestClient:
    backend = ApiBackend(_Services(), lambda: None, environment_name="test")
    return TestClient(create_app(backend, "t" * 43, identity_lookup=lookup))


def test_identity_route_absent_without_insi() -> None:
    c = _app(None)
    r = c.post("/v1/identity/search", json={}, headers={"Authorization": "Bearer " + "t" * 43})
    assert r.status_code == 404
    assert "/v1/identity/search" not in c.get("/openapi.json").json()["paths"]


def test_identity_route_calls_the_lookup_and_names_bad_fields() -> None:
    seen: list[IdentityIn] = []

    def lookup(q: IdentityIn) -> IdentityOut:
        seen.append(q)
        return IdentityOut(found=True, ins="279037505612309", ins_oid="1.2.250.1.213.1.4.10", status="QUAL")

    c = _app(lookup)
    h = {"Authorization": "Bearer " + "t" * 43}
    ok = {
        "birth_family_name": "DEMO-ADULTE",
        "given_names": "CAMILLE",
        "birth_date": "1979-03-21",
        "sex": "F",
    }
    r = c.post("/v1/identity/search", json=ok, headers=h)
    assert (
        r.status_code == 200 and r.json()["status"] == "QUAL" and seen[0].birth_family_name == "DEMO-ADULTE"
    )
    r = c.post("/v1/identity/search", json=ok | {"birth_date": "21/03/1979"}, headers=h)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["birth_date"]


def test_no_session_is_a_problem_not_a_crash() -> None:
    c = _app(None)
    r = c.get("/v1/patients/279037505612309/dmp", headers={"Authorization": "Bearer " + "t" * 43})
    assert r.status_code == 503 and r.json()["code"] == "NO_SESSION" and "carte" in r.json()["detail"]
