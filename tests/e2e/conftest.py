"""End-to-end fixtures: the real sandbox over TLS on loopback, the test PKI, the agent.

``agent_for(profile)`` gives an ``Agent`` whose credentials are the card profile's certificates of
the test PKI (software keys, DIRECTE), or the establishment's (INDIRECTE / AIR). The journeys with the
emulated card through pcscd are in ``test_card_journey.py`` (marker ``pcsc``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ps_agent.access.policy import PatientRef
from ps_agent.agent import Agent
from ps_agent.auth.model import Activity, AuthMode, ProfessionalIdentity
from ps_agent.auth.software import SoftwareCredentials
from ps_agent.config import AgentConfig, Environment


def identity_of(profile_name: str, situation: int = 0) -> ProfessionalIdentity:
    """The identity a card of this profile carries (what the card reader would give)."""
    from sandbox.profiles import PROFILES

    p = PROFILES[profile_name]
    s = p.situations[situation]
    return ProfessionalIdentity(
        id_nat=p.id_nat,
        family_name=p.family_name,
        given_name=p.given_name,
        profession_code=p.profession_code,
        profession_label=p.profession_label,
        specialty_code=p.specialty_code,
        card_type=p.card_type,
        non_ps_role="SECRETARIAT_MEDICAL" if p.card_type == "CPE" and not p.profession_code else "",
        activity=Activity(s.structure_id, s.structure_name, s.sector, s.role),
        extra={"card_serial": p.serial},
    )


def patient_ref(demo_patient: Any, status: str = "QUAL") -> PatientRef:
    return PatientRef(demo_patient.ins, demo_patient.oid, status)


@pytest.fixture(scope="module")
def dmp_sandbox(tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    """A sandbox with the demo data, private to the test module (journeys modify it)."""
    from sandbox import demo
    from sandbox.server import start

    data = tmp_path_factory.mktemp("e2e-sandbox")
    running = start(data, test_pki)
    try:
        demo.seed(running.store)
        yield running
    finally:
        running.stop()


@pytest.fixture
def agent_for(dmp_sandbox: Any, test_pki: Any, tmp_path: Path) -> Iterator[Callable[..., Agent]]:
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
