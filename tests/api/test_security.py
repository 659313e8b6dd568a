"""Token, Origin and loopback, over a real socket (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.api import ApiServer, load_or_create_token
from ps_agent.api.settings import DEFAULT_PORT
from ps_agent.errors import ConfigurationError


def test_token_missing_or_wrong_is_401_problem(api: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {api.token}"}):
        r = httpx.get(f"{api.url}/v1/status", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["status"] == 401 and body["code"] == "TOKEN_REQUIRED"
        assert "Jeton" in body["detail"] and body["errors"][0]["field"] == "Authorization"
        assert r.headers["www-authenticate"].startswith("Bearer")
    with api.client() as c:
        assert c.get("/v1/status").status_code == 200


def test_foreign_origin_refused_allowed_origin_and_none_accepted(api: Any) -> None:
    with api.client(Origin="https://evil.example") as c:
        r = c.get("/v1/status")
        assert r.status_code == 403 and r.json()["code"] == "ORIGIN_REFUSED"
        assert "evil.example" in r.json()["detail"]
    with api.client(Origin="http://lgc.example") as c:
        assert c.get("/v1/status").status_code == 200
    with api.client() as c:
        assert c.get("/v1/status").status_code == 200
    # a foreign origin is refused even with no token (no oracle on the token)
    assert httpx.get(f"{api.url}/v1/status", headers={"Origin": "null"}).status_code == 403


def test_bound_to_loopback_only_and_unreachable_from_another_interface(api: Any) -> None:
    host, port = api.server.address
    assert host == "127.0.0.1"
    others = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the machine's outward address, if any
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            others.add(s.getsockname()[0])
        except OSError:
            pass
    try:
        others |= {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    others = {a for a in others if not a.startswith("127.")}
    if not others:
        pytest.skip("no non-loopback IPv4 address on this machine")
    for addr in others:
        with pytest.raises(OSError):
            socket.create_connection((addr, port), timeout=2).close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])  # noqa: S104
def test_refuses_to_bind_elsewhere(host: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        ApiServer(object(), host=host, port=0)
    assert e.value.code == "API_NOT_LOOPBACK" and "127.0.0.1" in e.value.message_fr


def test_default_port_is_not_dmpconnect() -> None:
    assert DEFAULT_PORT != 9982


def test_token_file_private_and_stable(tmp_path: Path) -> None:
    t1 = load_or_create_token(tmp_path / "cfg")
    t2 = load_or_create_token(tmp_path / "cfg")
    assert t1 == t2 and len(t1) >= 40
    path = tmp_path / "cfg" / "api-token"
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_token(tmp_path / "other") != t1


def test_openapi_31_served(api: Any) -> None:
    r = httpx.get(f"{api.url}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    for path in ("/v1/status", "/v1/deposits", "/v1/queue/{entry_id}/events", "/v1/patients/{ins}/documents"):
        assert path in doc["paths"]


def test_cors_for_listed_browser_origins_only(api: Any) -> None:
    pre = {"Origin": "http://lgc.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    r = httpx.options(f"{api.url}/v1/deposits", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://lgc.example"
    bad = httpx.options(f"{api.url}/v1/deposits", headers=pre | {"Origin": "https://evil.example"})
    assert bad.status_code in (400, 403) and "access-control-allow-origin" not in bad.headers
    with api.client(Origin="http://lgc.example") as c:
        r = c.get("/v1/status")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://lgc.example"
