"""INSi environments: one table (insi.md §2.1). The environment is configuration, never guessed from a URL.

Each row fixes the base URL **and** the authentication mode its endpoint expects: the ``…-tlsm`` hosts
want the establishment certificate (mutual TLS, ``INSI-MANU``/``INSI-AUTO``), the others a CPx-signed
assertion over server-only TLS. ``production`` rows refuse test/demo Vitale cards and test INS OIDs
(INS-R10). The sandbox rows point at ``python -m sandbox serve`` (ports of ``SANDBOX_*_PORT``).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ps_agent.identity.errors import InsiConfigurationError


class InsiAuthMode(enum.StrEnum):
    """The two authentication modes of insi.md §2.3 (Pro Santé Connect is not public yet)."""

    CERTIFICATE = "certificat"  # mode A: establishment certificate INSI-MANU / INSI-AUTO, mutual TLS
    CPX = "cpx"  # mode B: CPx card, signed PS assertion, server-only TLS


# [I] Loopback ports of the INSi sandbox: next to the DMP sandbox's 8443.
SANDBOX_MTLS_PORT = 8444
SANDBOX_CPX_PORT = 8445


@dataclass(frozen=True)
class InsiEnvironment:
    name: str
    url: str
    mode: InsiAuthMode
    production: bool
    ca_file: str = ""  # PEM bundle trusted for the server ("" = the system store)
    verify_host: bool = True
    timeout_s: float = 30.0
    source: str = ""  # where the URL comes from (insi.md §2.1)

    def with_ca(self, ca_file: str | os.PathLike[str]) -> InsiEnvironment:
        return replace(self, ca_file=str(ca_file))

    def with_url(self, url: str) -> InsiEnvironment:
        return replace(self, url=url)


INSI_ENVIRONMENTS: dict[str, InsiEnvironment] = {
    "qualification-cpx": InsiEnvironment(
        "qualification-cpx",
        "https://qualiflps.services-ps.ameli.fr:443/lps",
        InsiAuthMode.CPX,
        production=False,
        source="[C:S1 kit WSDL, S2 App.config, S3]",
    ),
    "qualification-certificat": InsiEnvironment(
        "qualification-certificat",
        "https://qualiflps-services-ps-tlsm.ameli.fr:443/lps",
        InsiAuthMode.CERTIFICATE,
        production=False,
        source="[C:S1 padoa WSDL, S3, S4]",
    ),
    "production-certificat": InsiEnvironment(
        "production-certificat",
        "https://services-ps-tlsm.ameli.fr/lps",
        InsiAuthMode.CERTIFICATE,
        production=True,
        source="[C:S3 verify-certificate.ts, S4 application.yaml]",
    ),
    # [I] by symmetry with the mutual-TLS host; S5 names Host=services-ps.ameli.fr URL=/lps
    "production-cpx": InsiEnvironment(
        "production-cpx",
        "https://services-ps.ameli.fr/lps",
        InsiAuthMode.CPX,
        production=True,
        source="[C:S5; I by symmetry]",
    ),
    "sandbox-certificat": InsiEnvironment(
        "sandbox-certificat",
        f"https://127.0.0.1:{SANDBOX_MTLS_PORT}/lps",
        InsiAuthMode.CERTIFICATE,
        production=False,
        timeout_s=10.0,
        source="python -m sandbox serve",
    ),
    "sandbox-cpx": InsiEnvironment(
        "sandbox-cpx",
        f"https://127.0.0.1:{SANDBOX_CPX_PORT}/lps",
        InsiAuthMode.CPX,
        production=False,
        timeout_s=10.0,
        source="python -m sandbox serve",
    ),
}


def insi_environment(name: str, *, ca_file: str | os.PathLike[str] | None = None) -> InsiEnvironment:
    """An environment of the table by name (with an optional CA bundle for the server)."""
    try:
        env = INSI_ENVIRONMENTS[name]
    except KeyError:
        raise InsiConfigurationError(
            f"Environnement INSi inconnu : « {name} ». Choisissez parmi {', '.join(INSI_ENVIRONMENTS)}.",
            code="insi_environment",
        ) from None
    if ca_file is not None:
        if not Path(ca_file).is_file():
            raise InsiConfigurationError(
                f"Le fichier des autorités de certification est introuvable : {ca_file}", code="insi_ca_file"
            )
        env = env.with_ca(ca_file)
    return env


INSTANCE_FILE = "insi-instance.txt"


def installation_instance(home: str | os.PathLike[str]) -> str:
    """``ContexteLPS/LPS/Instance``: a UUID generated once per installation and kept in the data folder
    (insi.md §2.4: constant for that installation, used by the service to count installations)."""
    import uuid

    path = Path(home) / INSTANCE_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
        return str(uuid.UUID(text))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise InsiConfigurationError(
            f"Le fichier d'identifiant d'installation INSi est illisible ou corrompu : {path}",
            code="insi_instance",
        ) from exc
    value = str(uuid.uuid4())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value + "\n", encoding="ascii")
        os.replace(tmp, path)
    except OSError as exc:
        raise InsiConfigurationError(
            f"Impossible d'enregistrer l'identifiant d'installation INSi : {path} ({exc.strerror})",
            code="insi_instance",
        ) from exc
    return value
