"""A ``Signer`` over an in-memory ``cryptography`` RSA key, and ``SoftwareCredentials`` built on it
(establishment PKCS#12, tests that need DIRECTE credentials without a card)."""

from __future__ import annotations

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from ps_agent.auth.errors import SessionClosed
from ps_agent.auth.model import AuthMode, ProfessionalIdentity


class SoftwareSigner:
    """Signs with an RSA private key held in memory (never written anywhere by this class)."""

    def __init__(
        self,
        key: rsa.RSAPrivateKey,
        certificate: x509.Certificate,
        chain: list[x509.Certificate] | None = None,
    ) -> None:
        self._key = key
        self._certificate = certificate
        self._chain = list(chain or [])

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def chain(self) -> list[x509.Certificate]:
        return list(self._chain)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def sign_digest_info(self, digest_info: bytes) -> bytes:
        """Sign a DER DigestInfo (SHA-256 only: 19-byte prefix + 32-byte hash)."""
        prefix = bytes.fromhex("3031300d060960864801650304020105000420")
        if not digest_info.startswith(prefix) or len(digest_info) != len(prefix) + 32:
            raise ValueError("only SHA-256 DigestInfo is supported")
        return self._key.sign(
            digest_info[len(prefix) :], padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )

    def __repr__(self) -> str:  # never show key material
        return f"SoftwareSigner(subject={self._certificate.subject.rfc4514_string()!r})"


class SoftwareCredentials:
    """``Credentials`` from in-memory keys: tests (DIRECTE without a card) and PKCS#12 establishments.

    ``tls_transport`` uses Python's ``ssl`` (the key is exportable); ``external_tls=True`` sends the
    TLS client signature through the ``Signer`` interface instead (the card's route, tlslite-ng).
    """

    def __init__(
        self,
        identity: ProfessionalIdentity,
        mode: AuthMode,
        auth_cert: x509.Certificate,
        auth_key: rsa.RSAPrivateKey,
        sign_cert: x509.Certificate,
        sign_key: rsa.RSAPrivateKey,
        chain: list[x509.Certificate] | None = None,
        *,
        external_tls: bool = False,
    ) -> None:
        self._identity = identity
        self._mode = AuthMode(mode)
        self._auth = SoftwareSigner(auth_key, auth_cert, chain)
        self._sign = SoftwareSigner(sign_key, sign_cert, chain)
        self._auth_key = auth_key
        self._external_tls = external_tls
        self._closed = False

    @property
    def identity(self) -> ProfessionalIdentity:
        return self._identity

    @property
    def mode(self) -> AuthMode:
        return self._mode

    def vihf_signer(self) -> SoftwareSigner:
        return self._sign

    def auth_signer(self) -> SoftwareSigner:
        return self._auth

    def tls_transport(self, *, ca_file: str, verify_host: bool = True) -> httpx.BaseTransport:
        from ps_agent.auth.tls import SessionBoundTransport, make_transport

        self.ensure_active()
        if self._external_tls:
            inner = make_transport(
                ca_file=ca_file,
                certificate=self._auth.certificate,
                chain=self._auth.chain,
                signer=self._auth,
                verify_host=verify_host,
            )
        else:
            inner = make_transport(
                ca_file=ca_file,
                certificate=self._auth.certificate,
                chain=self._auth.chain,
                private_key=self._auth_key,
                verify_host=verify_host,
            )
        return SessionBoundTransport(inner, self.ensure_active)

    def ensure_active(self) -> None:
        if self._closed:
            raise SessionClosed("closed")

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"SoftwareCredentials(id_nat={self._identity.id_nat!r}, mode={self._mode.value})"
