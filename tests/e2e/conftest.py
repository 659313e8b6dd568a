"""End-to-end fixtures: the real sandbox over TLS on loopback, the test PKI, the agent.

``agent_for(profile)`` gives an ``Agent`` whose credentials are the card profile's certificates of
the test PKI (software keys, DIRECTE), or the establishment's (INDIRECTE / AIR).

``card_agent_for(profile)`` gives an ``Agent`` whose DIRECTE credentials are a real ``AuthSession`` over
the emulated CPS card through pcscd (fixture ``virtual_card``): TLS client authentication and VIHF
signatures are made by the card. One reader, one card: asking for another profile really removes the
card and inserts the other one, asserts that the previous session closed (reason ``removed``) and
refuses to work, then opens a new session with the PIN. Asking again for a profile whose card left
the reader gives a new ``Agent`` on the same home (same audit journal): a new session, as a
professional would reopen one. Establishment modes (INDIRECTE / AIR) never use a card: they are the
establishment's certificates, as with ``agent_for``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ps_agent.access.policy import PatientRef
from ps_agent.agent import Agent
from ps_agent.auth.errors import SessionClosed
from ps_agent.auth.model import AuthMode, ProfessionalIdentity
from ps_agent.auth.software import SoftwareCredentials
from ps_agent.config import AgentConfig, Environment
from tests.fixtures.integration import identity_of

# How long the previous card session may take to notice the card left the reader (AuthSession
# promises 1 s; generous here so a loaded CI machine does not make the test flaky).
SESSION_CLOSE_WAIT_S = 5.0


def patient_ref(demo_patient: Any, status: str = "QUAL") -> PatientRef:
    return PatientRef(demo_patient.ins, demo_patient.oid, status)


@contextlib.contextmanager
def seeded_sandbox(tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    """A running sandbox DMP on loopback with the demo data, in a fresh data directory."""
    from sandbox import demo
    from sandbox.server import start

    data = tmp_path_factory.mktemp("e2e-sandbox")
    running = start(data, test_pki)
    try:
        demo.seed(running.store)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def dmp_sandbox(tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    """A sandbox with the demo data, private to the test module (journeys modify it)."""
    with seeded_sandbox(tmp_path_factory, test_pki) as running:
        yield running


@pytest.fixture
def agent_for(software_agent_for: Callable[..., Agent]) -> Callable[..., Agent]:
    """Agents with software keys of the test PKI (see ``software_agent_for``)."""
    return software_agent_for


@pytest.fixture
def software_agent_for(dmp_sandbox: Any, test_pki: Any, tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def make(
        profile: str = "gp",
        *,
        mode: AuthMode = AuthMode.DIRECTE,
        identity: ProfessionalIdentity | None = None,
        home: Path | None = None,
    ) -> Agent:
        if mode is AuthMode.DIRECTE:
            c = test_pki.card(profile)
            creds = SoftwareCredentials(
                identity or identity_of(profile),
                mode,
                c.auth_cert,
                c.auth_key,
                c.sign_cert,
                c.sign_key,
                c.chain,
            )
        else:
            org = test_pki.establishment
            who = identity or identity_of(profile)
            creds = SoftwareCredentials(
                who, mode, org.auth_cert, org.auth_key, org.sign_cert, org.sign_key, org.chain
            )
        env = Environment("sandbox", dmp_sandbox.base_url, ca_file=str(test_pki.ca_bundle))
        agent = Agent(creds, AgentConfig(env, home or tmp_path / f"home-{profile}-{len(agents)}"))
        agents.append(agent)
        return agent

    yield make
    for a in agents:
        a.close()


class CardAgents:
    """Factory of agents whose DIRECTE credentials are ``AuthSession`` over the virtual card."""

    def __init__(
        self,
        virtual_card: Any,
        env: Environment,
        home_root: Path,
        establishment: Callable[..., Agent],
    ) -> None:
        self.card = virtual_card
        self.env = env
        self.home_root = home_root
        self.establishment = establishment
        self.profile: str | None = None  # card in the reader
        self.session: Any = None  # its AuthSession
        self.agents: dict[Path, Agent] = {}  # agents of the current session, by home
        self.closed_sessions: list[Any] = []  # sessions ended by a card change, in order
        self.retired: list[Agent] = []  # agents of ended sessions, closed at the end
        self.card_changes = 0

    def __call__(
        self,
        profile: str = "gp",
        *,
        mode: AuthMode = AuthMode.DIRECTE,
        identity: ProfessionalIdentity | None = None,
        home: Path | None = None,
    ) -> Agent:
        if mode is not AuthMode.DIRECTE:  # establishment certificates, no card in that mode
            return self.establishment(profile, mode=mode, identity=identity, home=home)
        if identity is not None:
            raise ValueError("with a card the identity is the card's: do not pass identity=")
        home = home or self.home_root / f"card-{profile}"
        if self.profile != profile:
            self._change_card(profile)
        agent = self.agents.get(home)
        if agent is None:
            agent = self.agents[home] = Agent(self.session, AgentConfig(self.env, home))
        return agent

    def _change_card(self, profile: str) -> None:
        from ps_agent.auth.session import AuthSession
        from sandbox.profiles import PROFILES

        old = self.session
        if old is not None:
            self.card.remove()
            _wait_closed(old)
            assert old.closed_reason == "removed", old.closed_reason
            with pytest.raises(SessionClosed):
                old.ensure_active()
            # the card session ended (checked above); the agents stay readable (their journal) until the end
            self.retired.extend(self.agents.values())
            self.agents.clear()
            self.closed_sessions.append(old)
            self.card_changes += 1
        self.card.insert(profile)
        self.profile = profile
        self.session = AuthSession.open(
            self.card.reader_name, PROFILES[profile].pin, ca_file=self.env.ca_file
        )
        assert self.session.active and self.session.identity.id_nat == PROFILES[profile].id_nat

    def close(self) -> None:
        for agent in [*self.retired, *self.agents.values()]:
            agent.close()
        if self.session is not None:
            self.session.close()


def _wait_closed(session: Any) -> None:
    deadline = time.monotonic() + SESSION_CLOSE_WAIT_S
    while session.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not session.active, f"the card session is still open {SESSION_CLOSE_WAIT_S} s after removal"


@pytest.fixture
def card_agent_for(
    virtual_card: Any, dmp_sandbox: Any, test_pki: Any, tmp_path: Path, software_agent_for: Any
) -> Iterator[CardAgents]:
    env = Environment("sandbox", dmp_sandbox.base_url, ca_file=str(test_pki.ca_bundle))
    agents = CardAgents(virtual_card, env, tmp_path, software_agent_for)
    try:
        yield agents
    finally:
        agents.close()


def credentials_for(test_pki: Any, profile: str = "gp", *, mode: AuthMode = AuthMode.DIRECTE,
                    identity: ProfessionalIdentity | None = None) -> SoftwareCredentials:  # fmt: skip
    """Software credentials of a card profile (DIRECTE) or of the establishment acting for ``profile``'s
    identity (INDIRECTE / AIR)."""
    if mode is AuthMode.DIRECTE:
        c = test_pki.card(profile)
        return SoftwareCredentials(
            identity or identity_of(profile), mode, c.auth_cert, c.auth_key, c.sign_cert, c.sign_key, c.chain
        )
    org = test_pki.establishment
    return SoftwareCredentials(
        identity or identity_of(profile),
        mode,
        org.auth_cert,
        org.auth_key,
        org.sign_cert,
        org.sign_key,
        org.chain,
    )


@pytest.fixture
def services_for(dmp_sandbox: Any, test_pki: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``services_for(home=None, timeout_s=None, deposit_retries=0, **services_kw) -> Services`` on the
    module's sandbox (closed at teardown). ``deposit_retries`` defaults to 0 here: tests drive resends."""
    from ps_agent.services import Services

    made: list[Any] = []

    def make(
        home: Path | None = None, *, timeout_s: float | None = None, deposit_retries: int = 0, **kw: Any
    ) -> Any:
        env = Environment("sandbox", dmp_sandbox.base_url, ca_file=str(test_pki.ca_bundle))
        if timeout_s is not None:
            env = Environment(
                "sandbox", dmp_sandbox.base_url, ca_file=str(test_pki.ca_bundle), timeout_s=timeout_s
            )
        cfg = AgentConfig(env, home or tmp_path / f"services-{len(made)}", deposit_retries=deposit_retries)
        s = Services(cfg, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def faults(dmp_sandbox: Any) -> Iterator[Callable[..., None]]:
    """``faults(**FaultConfig fields)``: the module sandbox's fault injection (seed 1), cleared after."""
    from sandbox.server.faults import FaultConfig

    def set_(**kw: Any) -> None:
        dmp_sandbox.faults.configure(FaultConfig(seed=1, **kw))

    yield set_
    dmp_sandbox.faults.clear()


class RecordingTransport(httpx.BaseTransport):
    """Wraps a real transport: records the SOAP action of every request, and can block the requests of
    one action until a cancel token fires (then fails them as a dropped connection would)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.actions: list[str] = []
        self.block_action: str | None = None
        self.block_until: Any = None  # a CancelToken
        self.entered = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        m = re.search(r'action="([^"]+)"', request.headers.get("content-type", ""))
        action = m.group(1) if m else ""
        self.actions.append(action)
        if self.block_action and action == self.block_action and self.block_until is not None:
            self.entered.set()
            self.block_until.wait(30)
            raise httpx.ReadError("connection dropped (test)", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def recording_transport(credentials: Any, test_pki: Any) -> RecordingTransport:
    return RecordingTransport(credentials.tls_transport(ca_file=str(test_pki.ca_bundle)))


def identity_json(profile: str) -> str:
    """The JSON of ``--utilisateur`` / ``--auteur`` for a profile's identity."""
    import dataclasses
    import json

    ident = identity_of(profile)
    data = {k: getattr(ident, k) for k in ("id_nat", "family_name", "given_name", "profession_code",
                                             "specialty_code", "non_ps_role")}  # fmt: skip
    data["activity"] = dataclasses.asdict(ident.activity)
    return json.dumps(data, ensure_ascii=False)


@pytest.fixture
def establishment_args(dmp_sandbox, test_pki, tmp_path, monkeypatch):
    from sandbox.pki import P12_PASSPHRASE

    monkeypatch.setenv("PS_AGENT_P12_PASSPHRASE", P12_PASSPHRASE)
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PS_AGENT_TEST_PIN", raising=False)
    user_file = tmp_path / "secretaire.json"
    user_file.write_text(identity_json("secretary"), encoding="utf-8")
    org = test_pki.establishment
    return [
        "--env", dmp_sandbox.base_url, "--ca", str(test_pki.ca_bundle),
        "--etablissement", str(org.auth_p12), "--signature-etablissement", str(org.sign_p12),
        "--utilisateur", str(user_file),
    ]  # fmt: skip
