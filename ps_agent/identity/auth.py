"""The two ways of authenticating to INSi (insi.md §2.3), behind one small interface the client uses.

- :class:`CertificateAuth` (mode A): the establishment's IGC-Santé ORG AUTH_CLI certificate whose CN is
  ``INSI-MANU`` or ``INSI-AUTO``, at TLS level; no PS assertion. ``Emetteur`` = the certificate ``OU``.
  The key is a software key (PKCS#12: Python ``ssl``) or any :class:`~ps_agent.auth.model.Signer`
  (PKCS#11 token: tlslite route of :mod:`ps_agent.auth.tls`).
- :class:`CpxAuth` (mode B): a CPx card; server-only TLS, and a PS assertion signed with the card's
  *signature* key through the same ``Signer`` seam as the DMP VIHF. ``Emetteur`` = the PS identifier.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from ps_agent.auth.model import Credentials, Signer
from ps_agent.identity import xmlns as ns
from ps_agent.identity.environments import InsiAuthMode, InsiEnvironment
from ps_agent.identity.errors import InsiConfigurationError

# The only certificate names INSi accepts in mode A [C:S3,S4]; anything else is refused with DESIR_560.
INSI_CERTIFICATE_NAMES = ("INSI-MANU", "INSI-AUTO")
# [I] MANU for calls a user triggers at the desk (ps-agent's case), AUTO for unattended batches.
DEFAULT_CERTIFICATE_NAME = "INSI-MANU"
# NameQualifier of the PS assertion from the card type (S2: extension 1.2.250.1.71.1.2.2; default CPX).
NAME_QUALIFIERS = {"CPS": "CPS", "CPF": "CPF", "CPE": "CDE-CPE", "CDE": "CDE-CPE", "CPA": "CPA"}
# [I] open question 2: the guide says ``codeSpecialite``, the PSC sample and a client ``codeSpecialiteAMO``.
SPECIALTY_ATTRIBUTE = "codeSpecialiteAMO"
# [I] AMO specialty of the TRE_R38 specialties a GP card carries (AMO table: 01 médecine générale).
AMO_SPECIALTY_OF_R38 = {"SM26": "01", "SM53": "01", "SM54": "01"}
ISSUER_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"


def _ts(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


class InsiAuth(Protocol):
    """What :class:`~ps_agent.identity.insi.InsiClient` needs from an authentication mode."""

    @property
    def mode(self) -> InsiAuthMode: ...

    @property
    def emetteur(self) -> str:
        """``ContexteLPS/Emetteur`` and ``ContexteBAM/Emetteur``."""
        ...

    @property
    def vitale_issuer(self) -> str:
        """``Issuer`` of the Vitale assertion (WS_INS1)."""
        ...

    def transport(self, env: InsiEnvironment) -> httpx.BaseTransport: ...

    def assertions(self, now: datetime) -> list[etree._Element]:
        """The assertions that go first in ``wsse:Security`` (the PS assertion in mode B)."""
        ...


def _server_only_context(env: InsiEnvironment) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = env.verify_host
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        if env.ca_file:
            ctx.load_verify_locations(cafile=env.ca_file)
        else:
            ctx.load_default_certs()
    except (ssl.SSLError, OSError) as exc:
        raise InsiConfigurationError(
            f"Le fichier des autorités de certification est illisible : {env.ca_file}", code="insi_ca_file"
        ) from exc
    return ctx


class CertificateAuth:
    """Mode A: the establishment's ``INSI-MANU``/``INSI-AUTO`` certificate at TLS level."""

    def __init__(
        self,
        certificate: x509.Certificate,
        *,
        private_key: rsa.RSAPrivateKey | None = None,
        signer: Signer | None = None,
        chain: Sequence[x509.Certificate] = (),
        check_name: bool = True,
    ) -> None:
        """``check_name=False`` only to reproduce the service's own DESIR_560 refusal in tests."""
        if (private_key is None) == (signer is None):
            raise ValueError("give exactly one of private_key or signer")
        cn = _name_attr(certificate.subject, NameOID.COMMON_NAME)
        if check_name and cn not in INSI_CERTIFICATE_NAMES:
            raise InsiConfigurationError(
                f"Le certificat d'établissement « {cn} » ne donne pas accès à l'INSi : son nom (CN) doit "
                "être exactement INSI-MANU ou INSI-AUTO (certificat IGC-Santé ORG AUTH_CLI dédié).",
                code="insi_certificate_name",
            )
        self._cert = certificate
        self._key = private_key
        self._signer = signer
        self._chain = [c for c in chain if c.issuer != c.subject]
        self._ou = _name_attr(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        if not self._ou:
            raise InsiConfigurationError(
                "Le certificat INSi de l'établissement n'a pas d'OU (identifiant de la structure) : "
                "impossible de renseigner l'émetteur.",
                code="insi_certificate_ou",
            )
        self.certificate_name = cn

    @classmethod
    def from_pkcs12(cls, path: str | Path, passphrase: str, *, check_name: bool = True) -> CertificateAuth:
        from ps_agent.auth.establishment import load_pkcs12

        key, cert, extra = load_pkcs12(path, passphrase)
        return cls(cert, private_key=key, chain=extra, check_name=check_name)

    @property
    def mode(self) -> InsiAuthMode:
        return InsiAuthMode.CERTIFICATE

    @property
    def emetteur(self) -> str:
        return self._ou  # structure id ("1" + FINESS or "3" + SIRET) [C:S4 comment]

    @property
    def vitale_issuer(self) -> str:
        # [I] open question 3: Issuer of the Vitale assertion under mode A is unknown; the structure id
        # (the Emetteur) names the caller the way the PS id does in mode B.
        return self._ou

    def transport(self, env: InsiEnvironment) -> httpx.BaseTransport:
        from ps_agent.auth.tls import make_transport

        if not env.ca_file:
            raise InsiConfigurationError(
                "Le fichier des autorités de certification du serveur INSi n'est pas configuré.",
                code="insi_ca_file",
            )
        if self._key is not None:
            return make_transport(
                ca_file=env.ca_file,
                certificate=self._cert,
                chain=self._chain,
                private_key=self._key,
                verify_host=env.verify_host,
            )
        return make_transport(
            ca_file=env.ca_file,
            certificate=self._cert,
            chain=self._chain,
            signer=self._signer,
            verify_host=env.verify_host,
            timeout_s=env.timeout_s,
        )

    def assertions(self, now: datetime) -> list[etree._Element]:
        return []

    def __repr__(self) -> str:
        return f"CertificateAuth(cn={self.certificate_name!r}, ou={self._ou!r})"


@dataclass(frozen=True)
class PsAttributes:
    """The three attributes of the PS assertion (insi.md §2.5)."""

    billing_id: str  # identifiantFacturation (AM billing number; FINESS/SIRET for establishments)
    sector: str  # secteurActivite, SAxx (TRE_R02)
    specialty: str = ""  # AMO specialty code; mandatory for physicians only


class CpxAuth:
    """Mode B: a CPx card. Server-only TLS; a PS assertion signed per call with the card's signature key."""

    def __init__(self, signer: Signer, attributes: PsAttributes, *, card_type: str = "CPS") -> None:
        cn = _name_attr(signer.certificate.subject, NameOID.COMMON_NAME)
        if not cn:
            raise InsiConfigurationError(
                "Le certificat de signature de la carte n'a pas de nom (CN) : identifiant du professionnel "
                "introuvable.",
                code="insi_cpx_cn",
            )
        if not attributes.billing_id.strip():
            raise InsiConfigurationError(
                "Le numéro de facturation Assurance Maladie (identifiantFacturation) est obligatoire pour "
                "l'INSi : renseignez-le dans la configuration.",
                code="insi_billing_id",
            )
        if not (
            len(attributes.sector) == 4
            and attributes.sector.startswith("SA")
            and attributes.sector[2:].isdigit()
        ):
            raise InsiConfigurationError(
                f"Secteur d'activité « {attributes.sector} » invalide (SAxx attendu).", code="insi_sector"
            )
        self._signer = signer
        self._attrs = attributes
        self._cn = cn
        self._qualifier = NAME_QUALIFIERS.get(card_type.upper(), "CPX")

    @classmethod
    def from_credentials(
        cls, credentials: Credentials, *, billing_id: str, specialty: str | None = None
    ) -> CpxAuth:
        """From a card session (``AuthSession``): its signature ``Signer``, card type and activity."""
        signer = credentials.vihf_signer()
        if signer is None:
            raise InsiConfigurationError(
                "La carte ne fournit pas de clé de signature : assertion INSi impossible.",
                code="insi_no_signer",
            )
        ident = credentials.identity
        sector = ident.activity.sector if ident.activity else ""
        if specialty is None:
            specialty = (
                AMO_SPECIALTY_OF_R38.get(ident.specialty_code, "") if ident.profession_code == "10" else ""
            )
        return cls(signer, PsAttributes(billing_id, sector, specialty), card_type=ident.card_type or "CPS")

    @property
    def mode(self) -> InsiAuthMode:
        return InsiAuthMode.CPX

    @property
    def emetteur(self) -> str:
        return self._cn

    @property
    def vitale_issuer(self) -> str:
        return self._cn  # CN of the CPS signature certificate [C:S2]

    def transport(self, env: InsiEnvironment) -> httpx.BaseTransport:
        return httpx.HTTPTransport(verify=_server_only_context(env))

    def build_assertion(self, now: datetime) -> etree._Element:
        """The unsigned PS assertion (Issuer, Subject, AttributeStatement), exactly as insi.md §3.1."""
        a = etree.Element(
            ns.q(ns.SAML, "Assertion"),
            {"ID": f"_{uuid.uuid4()}", "IssueInstant": _ts(now), "Version": "2.0"},
            nsmap={"saml": ns.SAML},
        )
        issuer = etree.SubElement(a, ns.q(ns.SAML, "Issuer"), Format=ISSUER_FORMAT)
        issuer.text = self._signer.certificate.subject.rfc4514_string()
        subject = etree.SubElement(a, ns.q(ns.SAML, "Subject"))
        etree.SubElement(subject, ns.q(ns.SAML, "NameID"), NameQualifier=self._qualifier).text = self._cn
        stmt = etree.SubElement(a, ns.q(ns.SAML, "AttributeStatement"))

        def attr(name: str, value: str) -> None:
            el = etree.SubElement(stmt, ns.q(ns.SAML, "Attribute"), Name=name)
            etree.SubElement(el, ns.q(ns.SAML, "AttributeValue")).text = value

        attr("identifiantFacturation", self._attrs.billing_id)
        if self._attrs.specialty:
            attr(SPECIALTY_ATTRIBUTE, self._attrs.specialty)
        attr("secteurActivite", self._attrs.sector)
        return a

    def assertions(self, now: datetime) -> list[etree._Element]:
        from ps_agent.dmp.vihf import sign

        return [sign(self.build_assertion(now), self._signer)]

    def __repr__(self) -> str:
        return f"CpxAuth(ps={self._cn!r}, qualifier={self._qualifier!r})"
