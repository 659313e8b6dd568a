"""DMP environments: production, the ANS training servers, the local sandbox, or a custom URL.

Environments are data, not code: each is an ``Environment`` (base URL, trusted CA bundle, timeout, SOAP
action per transaction). It lives next to the DMP client that uses it; ``ps_agent.config`` re-exports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ps_agent.dmp.transport import DEFAULT_DEADLINE_S, DEFAULT_MAX_RESPONSE_BYTES
from ps_agent.errors import ConfigurationError

# SOAP actions per transaction (dmp-protocol.md §3): S1's forms; configurable per environment
# because the 2024 WSDLs give other spellings for the habilitations actions (open point 6).
DEFAULT_ACTIONS: dict[str, str] = {
    "TD0.2": "urn:hl7-org:v3:PRPA_IN201307UV02",
    "TD0.3": "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization",
    "TD0.4": "urn:si-dmp-patients:PatientSpecificEndPoint:patientList",
    "TD1.6": "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient",
    "TD2.1": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
    "TD3.1": "urn:ihe:iti:2007:RegistryStoredQuery",
    "TD3.2": "urn:ihe:iti:2007:RetrieveDocumentSet",
    "TD3.3": "urn:ihe:iti:2010:UpdateDocumentSet",
}


@dataclass(frozen=True)
class Environment:
    name: str
    base_url: str  # ends with ".../si-dmp-server/v2/services/"
    ca_file: str = ""  # PEM bundle trusted for the server (IGC-Santé chain)
    verify_host: bool = True
    actions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    timeout_s: float = 30.0
    sign_direct_vihf: bool = True  # DIRECTE: S1 has both signed and unsigned samples; we sign
    deadline_s: float = DEFAULT_DEADLINE_S  # overall deadline of one exchange (ps_agent.dmp.transport)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # response size cap (ps_agent.dmp.transport)

    def url(self, service: str) -> str:
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        return base + service

    def with_ca(self, ca_file: str | os.PathLike[str]) -> Environment:
        return replace(self, ca_file=str(ca_file))


ENVIRONMENTS: dict[str, Environment] = {
    "production": Environment("production", "https://lps2.dmp.gouv.fr/si-dmp-server/v2/services/"),
    **{
        f"formation{n}": Environment(
            f"formation{n}", f"https://formation{n}.lps2.dmp.gouv.fr/si-dmp-server/v2/services/"
        )
        for n in (1, 2, 3, 5)
    },
    "sandbox": Environment(
        "sandbox", "https://127.0.0.1:8443/si-dmp-server/v2/services/", verify_host=True, timeout_s=10.0
    ),
}


def environment(name_or_url: str, *, ca_file: str | os.PathLike[str] | None = None) -> Environment:
    """An environment by name, or a custom one from an https URL."""
    if name_or_url in ENVIRONMENTS:
        env = ENVIRONMENTS[name_or_url]
    elif name_or_url.startswith("https://"):
        env = Environment("personnalisé", name_or_url)
    else:
        raise ConfigurationError(
            f"Environnement DMP inconnu : « {name_or_url} ». Choisissez parmi "
            f"{', '.join(ENVIRONMENTS)} ou donnez une adresse https://.",
            code="UNKNOWN_ENVIRONMENT",
        )
    if ca_file is not None:
        if not Path(ca_file).is_file():
            raise ConfigurationError(
                f"Le fichier des autorités de certification est introuvable : {ca_file}", code="CA_FILE"
            )
        env = env.with_ca(ca_file)
    return env


__all__ = ["DEFAULT_ACTIONS", "ENVIRONMENTS", "Environment", "environment"]


# [I] Which INS OID a DMP environment expects when the caller gives none: only production holds real
# patients (INS-NIR); the ANS training servers (formation1..5), the local sandbox and any other address
# hold test patients (INS-NIR de test). The OIDs themselves come from the one table, ``cda.ins``.
INS_ENVIRONMENT_OF_DMP: dict[str, str] = {"production": "production"}
DEFAULT_INS_ENVIRONMENT = "test"


def ins_environment_for(environment: str) -> str:
    """The INS referential ("production" or "test") of a DMP environment name."""
    return INS_ENVIRONMENT_OF_DMP.get(environment, DEFAULT_INS_ENVIRONMENT)


def ins_oid_for(environment: str) -> str:
    """The INS OID a DMP environment expects (see ``INS_ENVIRONMENT_OF_DMP``)."""
    from cda import ins as cda_ins

    return cda_ins.OID_BY_ENVIRONMENT[ins_environment_for(environment)]
