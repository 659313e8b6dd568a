"""Identity and signing contracts shared by card, PKCS#11 and establishment back-ends.

These are the only things the DMP client (VIHF, XAdES, TLS) knows about authentication: who acts
(``ProfessionalIdentity``), under which mode (``AuthMode``), and something that signs (``Signer``).
The back-ends (``ps_agent.card`` over PC/SC, ``ps_agent.auth.pkcs11`` over a PKCS#11 module,
``ps_agent.auth.establishment`` with PKCS#12 files) all provide a ``Signer``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing them costs the window's start-up ~0.2 s
    import httpx
    from cryptography import x509


class AuthMode(enum.StrEnum):
    """VIHF ``Authentification_mode`` values (spelled as in the DMP samples)."""

    DIRECTE = "DIRECTE"  # the professional's own CPS/CPx card (TLS + VIHF from the card)
    INDIRECTE = "INDIRECTE"  # establishment certificates; the user is authenticated locally
    INDIRECTE_RENFORCEE = "INDIRECTE_RENFORCEE"  # "AIR": indirect with reinforced local authentication


class KeyUse(enum.StrEnum):
    AUTHENTICATION = "authentication"  # TLS client authentication (card auth key, ORG AUTH_CLI)
    SIGNATURE = "signature"  # VIHF / XAdES (card signature key, ORG SIGN) — non-repudiation


@runtime_checkable
class Signer(Protocol):
    """Something that holds a private key it never exports.

    ``sign`` returns an RSASSA-PKCS1-v1_5 signature over SHA-256 of ``data`` (the host may hash;
    the back-end decides). ``sign_digest_info`` signs an already DER-encoded DigestInfo (what TLS
    1.2 with PKCS#1 client signatures needs). Both raise a ``PsAgentError`` subclass on failure
    (card removed, PIN needed, token gone), never return garbage.
    """

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def chain(self) -> list[x509.Certificate]: ...

    def sign(self, data: bytes) -> bytes: ...

    def sign_digest_info(self, digest_info: bytes) -> bytes: ...


@dataclass(frozen=True)
class Activity:
    """The activity situation the professional acts under (card situation or establishment)."""

    structure_id: str  # Identifiant_Structure (Struct_IdNat with its prefix)
    structure_name: str
    sector: str  # Secteur_Activite code, TRE_R02 (e.g. "SA07")
    role: str = ""  # "REGULATEUR" for a centre 15 regulation doctor


@dataclass(frozen=True)
class ProfessionalIdentity:
    """Who acts. In DIRECTE mode read from the card, never typed by the user (AUTH-02)."""

    id_nat: str  # PSIdNat with its type prefix ("8" + RPPS; CPE: structure-scoped id)
    family_name: str
    given_name: str
    profession_code: str  # TRE_G15 ("10", "21", "60"…); "" for non-PS staff
    profession_label: str = ""
    specialty_code: str = ""  # TRE_R38 SMxx for médecins, G15_21/… section for pharmaciens
    card_type: str = ""  # CPS, CPF, CPE, CPA; "" when no card (establishment user)
    non_ps_role: str = ""  # TRE_A00 code for non-PS staff (e.g. "SECRETARIAT_MEDICAL")
    activity: Activity | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    @property
    def is_regulator(self) -> bool:
        return bool(self.activity and self.activity.role == "REGULATEUR")


@runtime_checkable
class Credentials(Protocol):
    """What the DMP client needs from an authenticated session, whatever its back-end.

    Implemented by the card ``AuthSession`` (DIRECTE) and the establishment session
    (INDIRECTE / INDIRECTE_RENFORCEE).
    """

    @property
    def identity(self) -> ProfessionalIdentity: ...

    @property
    def mode(self) -> AuthMode: ...

    def vihf_signer(self) -> Signer | None:
        """Signer for the VIHF and the XAdES of submission sets (signature key, non-repudiation)."""
        ...

    def tls_transport(self, *, ca_file: str, verify_host: bool = True) -> httpx.BaseTransport:
        """An httpx transport doing mutual TLS with this session's authentication key."""
        ...

    def ensure_active(self) -> None:
        """Raise an ``AuthError`` subclass when the session ended (card removed, changed, idle)."""
        ...
