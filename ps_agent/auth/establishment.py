"""``EstablishmentSession``: indirect / AIR credentials of an establishment (no card in the reader).

TLS is authenticated with the establishment's IGC-Santé **ORG AUTH_CLI** certificate and the VIHF /
XAdES are signed with its **ORG SIGN** ("cachet") certificate (dmp-protocol.md §1, §6.3). The
establishment authenticated its local user itself (e.g. a secretary with
``non_ps_role="SECRETARIAT_MEDICAL"``): that user is the session's ``identity`` (VIHF NameID), and
``author`` is the professional for whom documents are deposited, when there is one.

Credentials come from two PKCS#12 files protected by a passphrase (``from_pkcs12``; the passphrase
is used once and not kept) or from a PKCS#11 token (``from_pkcs11``, keys never leave the token).
"""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from ps_agent.auth.certs import check_key_usage, check_validity, load_bundle, verify_chain
from ps_agent.auth.errors import Pkcs12Error, SessionClosed
from ps_agent.auth.model import AuthMode, KeyUse, ProfessionalIdentity, Signer
from ps_agent.auth.software import SoftwareSigner
from ps_agent.errors import ConfigurationError

_OWNER = "de l'établissement"


def load_pkcs12(
    path: str | Path, passphrase: str
) -> tuple[rsa.RSAPrivateKey, x509.Certificate, list[x509.Certificate]]:
    """Open a PKCS#12 file; typed French errors for missing file, wrong passphrase, wrong content."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise Pkcs12Error(f"Le fichier de certificat {p} est introuvable.", code="p12_missing") from exc
    except OSError as exc:
        raise Pkcs12Error(
            f"Le fichier de certificat {p} est illisible : {exc.strerror}.", code="p12_unreadable"
        ) from exc
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, passphrase.encode("utf-8"))
    except ValueError as exc:
        text = str(exc).lower()
        if "password" in text or "mac" in text or "decrypt" in text:
            raise Pkcs12Error(
                f"Le mot de passe du certificat {p.name} est incorrect.", code="p12_passphrase"
            ) from exc
        raise Pkcs12Error(
            f"Le fichier {p.name} n'est pas un certificat PKCS#12 (.p12 / .pfx) valide.", code="p12_format"
        ) from exc
    if key is None or cert is None:
        raise Pkcs12Error(
            f"Le fichier {p.name} ne contient pas de clé privée et de certificat.", code="p12_content"
        )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise Pkcs12Error(f"La clé du fichier {p.name} n'est pas une clé RSA.", code="p12_key_type")
    return key, cert, list(extra or [])


def _intermediates(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    return [c for c in certs if c.issuer != c.subject]


class EstablishmentSession:
    """INDIRECTE / INDIRECTE_RENFORCEE ``Credentials``."""

    def __init__(
        self,
        *,
        auth_signer: Signer,
        sign_signer: Signer,
        user: ProfessionalIdentity,
        author: ProfessionalIdentity | None = None,
        mode: AuthMode = AuthMode.INDIRECTE,
        auth_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        mode = AuthMode(mode)
        if mode is AuthMode.DIRECTE:
            raise ConfigurationError(
                "Les certificats d'établissement servent aux modes INDIRECTE ou INDIRECTE_RENFORCEE.",
                code="bad_mode",
            )
        if not user.id_nat:
            raise ConfigurationError(
                "L'identifiant de l'utilisateur local est obligatoire.", code="no_user_id"
            )
        for signer, use in ((auth_signer, KeyUse.AUTHENTICATION), (sign_signer, KeyUse.SIGNATURE)):
            check_validity(signer.certificate, use, owner=_OWNER)
            check_key_usage(signer.certificate, use, owner=_OWNER)
        self._auth = auth_signer
        self._sign = sign_signer
        self._auth_key = auth_key
        self._user = user
        self.author = author
        self._mode = mode
        self._closed = False

    @classmethod
    def from_pkcs12(
        cls,
        auth_p12: str | Path,
        sign_p12: str | Path,
        passphrase: str,
        *,
        user: ProfessionalIdentity,
        author: ProfessionalIdentity | None = None,
        mode: AuthMode = AuthMode.INDIRECTE,
        sign_passphrase: str | None = None,
        ca_file: str | Path | None = None,
    ) -> EstablishmentSession:
        auth_key, auth_cert, auth_extra = load_pkcs12(auth_p12, passphrase)
        sign_key, sign_cert, sign_extra = load_pkcs12(
            sign_p12, passphrase if sign_passphrase is None else sign_passphrase
        )
        auth_chain, sign_chain = auth_extra, sign_extra
        if ca_file is not None:
            # trust anchors come from ca_file only; the file's own extra certificates may only
            # contribute intermediates (a PKCS#12 cannot vouch for itself)
            trusted = load_bundle(ca_file)
            auth_chain = verify_chain(auth_cert, trusted + _intermediates(auth_extra), owner=_OWNER)
            sign_chain = verify_chain(sign_cert, trusted + _intermediates(sign_extra), owner=_OWNER)
        return cls(
            auth_signer=SoftwareSigner(auth_key, auth_cert, auth_chain),
            sign_signer=SoftwareSigner(sign_key, sign_cert, sign_chain),
            user=user,
            author=author,
            mode=mode,
            auth_key=auth_key,
        )

    @classmethod
    def from_pkcs11(
        cls,
        token: object,
        *,
        user: ProfessionalIdentity,
        author: ProfessionalIdentity | None = None,
        mode: AuthMode = AuthMode.INDIRECTE,
    ) -> EstablishmentSession:
        """From a logged-in ``ps_agent.auth.pkcs11.Pkcs11Token`` holding the ORG AUTH_CLI / ORG SIGN keys."""
        from ps_agent.auth.pkcs11 import Pkcs11Token

        assert isinstance(token, Pkcs11Token)
        return cls(
            auth_signer=token.signer(KeyUse.AUTHENTICATION),
            sign_signer=token.signer(KeyUse.SIGNATURE),
            user=user,
            author=author,
            mode=mode,
        )

    # ------------------------------------------------------------------------------ Credentials
    @property
    def identity(self) -> ProfessionalIdentity:
        return self._user

    @property
    def mode(self) -> AuthMode:
        return self._mode

    @property
    def organisation_certificate(self) -> x509.Certificate:
        """The ORG SIGN certificate: its subject DN is the VIHF ``Issuer`` in indirect mode."""
        return self._sign.certificate

    def vihf_signer(self) -> Signer:
        self.ensure_active()
        return self._sign

    def auth_signer(self) -> Signer:
        self.ensure_active()
        return self._auth

    def tls_transport(self, *, ca_file: str, verify_host: bool = True) -> httpx.BaseTransport:
        from ps_agent.auth.tls import SessionBoundTransport, make_transport

        self.ensure_active()
        chain = [c for c in self._auth.chain if c.issuer != c.subject]
        if self._auth_key is not None:
            inner = make_transport(
                ca_file=ca_file,
                certificate=self._auth.certificate,
                chain=chain,
                private_key=self._auth_key,
                verify_host=verify_host,
            )
        else:
            inner = make_transport(
                ca_file=ca_file,
                certificate=self._auth.certificate,
                chain=chain,
                signer=self._auth,
                verify_host=verify_host,
            )
        return SessionBoundTransport(inner, self.ensure_active)

    def ensure_active(self) -> None:
        if self._closed:
            raise SessionClosed("closed")

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return (
            f"EstablishmentSession(user={self._user.id_nat!r}, mode={self._mode.value}, "
            f"org={self._sign.certificate.subject.rfc4514_string()!r})"
        )
