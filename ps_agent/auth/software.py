"""A ``Signer`` over an in-memory ``cryptography`` RSA key (establishment PKCS#12, unit tests)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils


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
