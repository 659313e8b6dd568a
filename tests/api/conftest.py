"""Fixtures of the local API tests: the real sandbox, the agent's Services + Session (software keys of
the test PKI), and the API served by a real uvicorn on 127.0.0.1 (port chosen by the OS)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.api import ApiBackend, ApiServer, create_app, load_or_create_token
from ps_agent.auth.model import AuthMode
from ps_agent.services import Services
from tests.fixtures.integration import agent_config, credentials, running_sandbox


@pytest.fixture(scope="module")
def dmp(tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    with running_sandbox(tmp_path_factory.mktemp("api-sandbox"), test_pki) as running:
        yield running


@dataclass
class Api:
    url: str
    token: str
    services: Services
    session: Any
    backend: ApiBackend
    server: ApiServer
    events: list[tuple[str, Any]]
    config: Path

    def client(self, **headers: str) -> httpx.Client:
        h = {"Authorization": f"Bearer {self.token}", **headers}
        return httpx.Client(base_url=self.url, headers=h, timeout=30)


def _make_api(dmp: Any, test_pki: Any, home: Path, profile: str, mode: AuthMode,
              origins: tuple[str, ...] = ()) -> Api:  # fmt: skip
    services = Services(agent_config(dmp, test_pki, home / "home"))
    session = services.open_session(credentials(test_pki, profile, mode))
    backend = ApiBackend(services, lambda: session)
    token = load_or_create_token(home / "config")
    server = ApiServer(create_app(backend, token, origins), port=0)
    server.start()
    events: list[tuple[str, Any]] = []
    for name in ("open_patient_requested", "emergency_confirmation_requested"):
        backend.events.connect(name, lambda req, n=name: events.append((n, req)))
    return Api(server.url, token, services, session, backend, server, events, home / "config")


def _close(api: Api) -> None:
    api.server.stop()
    api.backend.close()
    api.session.close()
    api.services.close()


@pytest.fixture
def make_api(dmp: Any, test_pki: Any, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(profile: str = "gp", mode: AuthMode = AuthMode.DIRECTE, origins: tuple[str, ...] = ()) -> Api:
        api = _make_api(dmp, test_pki, tmp_path / f"a{len(made)}", profile, mode, origins)
        made.append(api)
        return api

    yield make
    for a in made:
        _close(a)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api("gp", origins=("http://lgc.example",))


@pytest.fixture(scope="module")
def module_api(dmp: Any, test_pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    api = _make_api(dmp, test_pki, tmp_path_factory.mktemp("module-api"), "gp", AuthMode.DIRECTE)
    yield api
    _close(api)


@pytest.fixture
def pending_entry() -> Callable[..., tuple[str, str, bytes]]:
    """``pending_entry(api, title)``: a letter for DEMO_ADULT written in the agent's queue and not sent yet
    (as after a crash before the send): (entry id, document uniqueId, CDA bytes)."""
    import cda
    from cda import build
    from sandbox.demo import DEMO_ADULT
    from tests.fixtures.integration import author_json, patient_json, pdf

    def make(api: Api, title: str) -> tuple[str, str, bytes]:
        traits = {k: v for k, v in patient_json(DEMO_ADULT).items() if k != "ins_status"}
        doc = build.level1(
            type_code="11488-4", content=pdf(title), title=title,
            patient=build.PatientInput.from_dict(traits),
            author=build.AuthorInput.from_dict(author_json("gp")), media_type="application/pdf",
        )  # fmt: skip
        parsed = cda.parse(doc)
        assert parsed.id is not None
        uid = parsed.id.root + (f"^{parsed.id.extension}" if parsed.id.extension else "")
        entry_id = build.new_oid()
        api.services.queue.add(
            entry_id, (DEMO_ADULT.ins, DEMO_ADULT.oid, "QUAL"), (uid,), (doc,), (False, False, False), ("",),
            titles=(title,), actor_id_nat=api.session.identity.id_nat,
        )  # fmt: skip
        return entry_id, uid, doc

    return make


def _no_pin() -> str:
    raise AssertionError("the PIN was asked although an agent runs")


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin closed (end of input: every confirmation is "non"), no test PIN, any PIN prompt fails."""
    import importlib
    import io
    import sys

    monkeypatch.delenv("PS_AGENT_TEST_PIN", raising=False)
    monkeypatch.delenv("PS_AGENT_API_PORT", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    for module in ("ps_agent.cli.common", "ps_agent.cli.dmp_cmd"):
        # imported before any patch: dmp_cmd binds read_pin at import, and would keep the stub after the test
        importlib.import_module(module)
    for module in ("ps_agent.cli.common", "ps_agent.cli.dmp_cmd"):
        monkeypatch.setattr(f"{module}.read_pin", _no_pin)
