"""Certificate checks against the test PKI: chain to a trusted root (cached by fingerprint), validity, key
usage, holder classification (personal card certificate vs organisation certificate), DN comparison."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

MAX_CHAIN_DEPTH = 6


class CertificateProblem(Exception):
    """Why a certificate is not acceptable; ``kind`` is ``untrusted`` or ``expired``."""

    def __init__(self, kind: str, message_fr: str) -> None:
        super().__init__(message_fr)
        self.kind = kind
        self.message_fr = message_fr


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


class TrustStore:
    """Roots + intermediates of the test PKI. Chain building is cached per leaf fingerprint; the validity
    dates of the whole path are checked on every call (cheap)."""

    def __init__(self, roots: Iterable[x509.Certificate], intermediates: Iterable[x509.Certificate]) -> None:
        self._roots = {fingerprint(c): c for c in roots}
        self._by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for cert in [*self._roots.values(), *intermediates]:
            self._by_subject.setdefault(cert.subject, []).append(cert)
        self._cache: dict[bytes, list[x509.Certificate] | None] = {}
        self._lock = threading.Lock()

    def _build(self, cert: x509.Certificate) -> list[x509.Certificate] | None:
        path = [cert]
        current = cert
        for _ in range(MAX_CHAIN_DEPTH):
            if fingerprint(current) in self._roots:
                return path
            issuer = None
            for candidate in self._by_subject.get(current.issuer, []):
                try:
                    current.verify_directly_issued_by(candidate)
                except (ValueError, TypeError, x509.InvalidSignature):
                    continue
                issuer = candidate
                break
            if issuer is None:
                return None
            path.append(issuer)
            current = issuer
        return None

    def path(self, cert: x509.Certificate) -> list[x509.Certificate]:
        key = fingerprint(cert)
        with self._lock:
            cached = self._cache.get(key, False)
        if cached is False:
            cached = self._build(cert)
            with self._lock:
                self._cache[key] = cached
        if cached is None:
            raise CertificateProblem(
                "untrusted", "certificat non émis par une autorité de confiance de l'IGC-Santé (de test)"
            )
        return cached

    def verify(self, cert: x509.Certificate, at: datetime | None = None) -> list[x509.Certificate]:
        """Return the path leaf→root or raise :class:`CertificateProblem`."""
        path = self.path(cert)
        now = at or datetime.now(UTC)
        for c in path:
            if now > c.not_valid_after_utc:
                what = "certificat expiré" if c is cert else "certificat d'autorité expiré"
                raise CertificateProblem(
                    "expired", f"{what} (fin de validité {c.not_valid_after_utc:%d/%m/%Y})"
                )
            if now < c.not_valid_before_utc:
                raise CertificateProblem("expired", "certificat pas encore valide")
        return path


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def common_name(cert: x509.Certificate) -> str:
    return _attr(cert.subject, NameOID.COMMON_NAME)


def is_personal(cert: x509.Certificate) -> bool:
    """A card holder's certificate (CPS/CPE), as opposed to an organisation (ORG AUTH_CLI / ORG SIGN) one.

    Decided from the issuing CA name (``… PERSONNES`` vs ``… ORGANISATIONS``, IGC-Santé naming), else from
    the subject (a personal DN carries surname/given name)."""
    issuer_cn = _attr(cert.issuer, NameOID.COMMON_NAME).upper()
    if "ORGANISATION" in issuer_cn:
        return False
    if "PERSONNE" in issuer_cn:
        return True
    return bool(
        cert.subject.get_attributes_for_oid(NameOID.SURNAME)
        or cert.subject.get_attributes_for_oid(NameOID.GIVEN_NAME)
    )


def organisation_key(cert: x509.Certificate) -> tuple[str, str]:
    """(O, OU) of an organisation certificate: two certificates of one establishment share them."""
    ous = sorted(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME))
    return _attr(cert.subject, NameOID.ORGANIZATION_NAME), "|".join(ous)


def key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def is_signature_certificate(cert: x509.Certificate) -> bool:
    """Non-repudiation (content commitment) key usage: the CPS / ORG SIGN signature certificate."""
    ku = key_usage(cert)
    return ku is not None and ku.content_commitment


_NAME_OVERRIDES = {
    "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "SURNAME": NameOID.SURNAME,
    "TITLE": NameOID.TITLE,
    "PSEUDONYM": NameOID.PSEUDONYM,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
}


# DER string types of "#hex" attribute values (RFC 4514 §2.4; S1 writes SN/GN this way)
_DER_STRINGS = {
    0x0C: "utf-8",
    0x13: "ascii",
    0x14: "latin-1",
    0x16: "ascii",
    0x1E: "utf-16-be",
    0x1C: "utf-32-be",
}


def _der_string(value: str) -> str:
    """``cryptography`` keeps a ``#hex`` value as its raw DER bytes (read as UTF-8): decode the DER string."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value
    if len(raw) < 2 or raw[0] not in _DER_STRINGS:
        return value
    length, offset = raw[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 3 or len(raw) < 2 + n:
            return value
        length, offset = int.from_bytes(raw[2 : 2 + n], "big"), 2 + n
    if len(raw) != offset + length:
        return value
    content = raw[offset:]
    if raw[0] == 0x14:  # T61String: in practice UTF-8 or Latin-1
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            return content.decode("latin-1")
    try:
        return content.decode(_DER_STRINGS[raw[0]])
    except UnicodeDecodeError:
        return value


def _name_set(name: x509.Name, *, from_text: bool = False) -> frozenset[tuple[str, str]]:
    out = set()
    for attr in name:
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
        if from_text:
            value = _der_string(value)
        out.add((attr.oid.dotted_string, value.strip().casefold()))
    return frozenset(out)


def parse_dn(text: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(text.strip(), _NAME_OVERRIDES)


def same_dn(text: str, name: x509.Name) -> bool:
    """Compare a DN string (VIHF Issuer) with a certificate name after parsing: attribute order, keyword vs
    dotted OID and case do not matter (dmp-protocol.md review note 7)."""
    try:
        parsed = parse_dn(text)
    except ValueError:
        return False
    return _name_set(parsed, from_text=True) == _name_set(name)
