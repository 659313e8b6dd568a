"""IGC-Santé-like test PKI generated with ``cryptography`` (never real keys, never committed).

Two hierarchies, shaped like the real IGC-Santé ones (authentication.md §2.6, §4.2):

- ``TEST AC RACINE IGC-SANTE FORT`` → ``TEST AC IGC-SANTE FORT PERSONNES`` → the card certificates
  of every profile in ``sandbox.profiles.PROFILES`` (one authentication + one signature key pair per
  card; subject ``C=FR, title=<profession>, {CN=<idNat_PS> + SN=<nom> + GN=<prénom>}``);
- ``TEST AC RACINE IGC-SANTE ELEMENTAIRE`` → ``TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS`` → the
  establishment ORG AUTH_CLI and ORG SIGN certificates (also as PKCS#12 files protected by
  ``P12_PASSPHRASE``) and the sandbox's SERV SSL server certificate (SAN localhost, 127.0.0.1, ::1).

``load_or_create(directory)`` is idempotent: it reuses the files of a previous run (a lock file makes
two processes creating the same directory safe) and only creates what is missing. Another name
(``load_or_create(other, name="foreign")``) gives a second, unrelated PKI with distinct DNs.

Errors: ``PkiError`` (a ``SandboxError``) for an unreadable or inconsistent directory.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.errors import SandboxError
from sandbox.profiles import ESTABLISHMENT, ESTABLISHMENT_CN, PROFILES, CardProfile

P12_PASSPHRASE = "test-passphrase"  # noqa: S105 - establishment PKCS#12 files (test only)
DEFAULT_NAME = "igc-sante-test"
_FORMAT = 1  # bump when the layout of the directory changes (forces regeneration)

ROOT_KEY_SIZE = 3072  # test roots (real ones are 4096; 3072 keeps first generation under ~2 s)
LEAF_KEY_SIZE = 2048  # CPS3/CPS4 cards hold RSA-2048 keys


class PkiError(SandboxError):
    """The PKI directory cannot be read or created."""


@dataclass
class HolderCredentials:
    """One card profile's key pairs (the emulated card holds them; tests may use them directly)."""

    profile: str
    auth_cert: x509.Certificate
    auth_key: rsa.RSAPrivateKey
    sign_cert: x509.Certificate
    sign_key: rsa.RSAPrivateKey
    auth_cert_path: Path
    auth_key_path: Path
    sign_cert_path: Path
    sign_key_path: Path
    chain: list[x509.Certificate]  # intermediate(s) then root

    def __repr__(self) -> str:
        return f"HolderCredentials(profile={self.profile!r})"


@dataclass
class OrgCredentials:
    """ORG AUTH_CLI (TLS) and ORG SIGN (VIHF/XAdES) of ``sandbox.profiles.ESTABLISHMENT``."""

    auth_cert: x509.Certificate
    auth_key: rsa.RSAPrivateKey
    sign_cert: x509.Certificate
    sign_key: rsa.RSAPrivateKey
    auth_cert_path: Path
    auth_key_path: Path
    sign_cert_path: Path
    sign_key_path: Path
    auth_p12: Path
    sign_p12: Path
    chain: list[x509.Certificate]

    def __repr__(self) -> str:
        return f"OrgCredentials(subject={self.auth_cert.subject.rfc4514_string()!r})"


@dataclass
class _Ca:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass
class TestPki:
    """A generated test PKI living in ``directory`` (see the module docstring for its shape)."""

    __test__ = False  # not a pytest test class

    directory: Path
    name: str
    ca_bundle: Path
    server_cert: Path
    server_key: Path
    roots: list[x509.Certificate]
    intermediates: list[x509.Certificate]
    _cas: dict[str, _Ca] = field(default_factory=dict, repr=False)
    _cards: dict[str, HolderCredentials] = field(default_factory=dict, repr=False)
    _org: OrgCredentials | None = field(default=None, repr=False)

    def card(self, profile: str) -> HolderCredentials:
        if profile not in PROFILES:
            raise PkiError(f"unknown card profile {profile!r} (known: {', '.join(PROFILES)})")
        if profile not in self._cards:
            with _locked(self.directory):
                self._cards[profile] = _holder(self, PROFILES[profile])
        return self._cards[profile]

    @property
    def establishment(self) -> OrgCredentials:
        if self._org is None:
            with _locked(self.directory):
                self._org = _establishment(self)
        return self._org

    @property
    def personnes_ca(self) -> x509.Certificate:
        return self._cas["fort-personnes"].cert

    @property
    def organisations_ca(self) -> x509.Certificate:
        return self._cas["elementaire-organisations"].cert


# --------------------------------------------------------------------------------------------- files


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)


def _read_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(
            path.read_bytes(),
            password=None,
            unsafe_skip_rsa_key_validation=True,  # our own keys
        )
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read private key {path}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(f"{path} is not an RSA key")
    return key


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read certificate {path}: {exc}") from exc


# ------------------------------------------------------------------------------------------ building


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _ca_name(pki_name: str, cn: str) -> x509.Name:
    ou = "IGC-SANTE TEST" if pki_name == DEFAULT_NAME else f"{pki_name.upper()} TEST PKI"
    prefix = "TEST" if pki_name == DEFAULT_NAME else pki_name.upper()
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ASIP-SANTE"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "0002 187512751"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix} {cn}"),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: rsa.RSAPublicKey,
    issuer_key: rsa.RSAPrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )


def _make_ca(name: x509.Name, parent: _Ca | None, path_length: int, key_size: int = ROOT_KEY_SIZE) -> _Ca:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    now = _now()
    issuer_name = parent.cert.subject if parent else name
    issuer_key = parent.key if parent else key
    cert = (
        _builder(
            name,
            issuer_name,
            key.public_key(),
            issuer_key,
            now - dt.timedelta(days=1),
            now + dt.timedelta(days=3650),
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return _Ca(cert, key)


def _key_usage(*, digital_signature: bool, non_repudiation: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=non_repudiation,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf(
    ca: _Ca,
    subject: x509.Name,
    *,
    usage: str,
    expired: bool = False,
    san: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """usage: "auth" (TLS client), "sign" (non-repudiation), "server" (TLS server)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=LEAF_KEY_SIZE)
    now = _now()
    if expired:  # issued three years ago, expired yesterday (like a revoked-by-age test card)
        not_before, not_after = now - dt.timedelta(days=3 * 365), now - dt.timedelta(days=1)
    else:
        not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=3 * 365)
    builder = _builder(subject, ca.cert.subject, key.public_key(), ca.key, not_before, not_after)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if usage == "auth":
        builder = builder.add_extension(
            _key_usage(digital_signature=True, non_repudiation=False, key_encipherment=True), critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    elif usage == "sign":
        builder = builder.add_extension(
            _key_usage(digital_signature=True, non_repudiation=True, key_encipherment=False), critical=True
        )
    elif usage == "server":
        builder = builder.add_extension(
            _key_usage(digital_signature=True, non_repudiation=False, key_encipherment=True), critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:  # pragma: no cover - programming error
        raise ValueError(usage)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def holder_subject(profile: CardProfile) -> x509.Name:
    """Card certificate subject as on real CPS: C, title, then one multi-valued RDN CN+SN+GN."""
    rdns = [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")])]
    if profile.card_type == "CPE":  # establishment staff card: the structure is in O/OU
        situation = profile.situations[0]
        rdns.append(
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATION_NAME, situation.structure_name)]
            )
        )
        rdns.append(
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, situation.structure_id)]
            )
        )
    rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.TITLE, profile.profession_label)]))
    rdns.append(
        x509.RelativeDistinguishedName(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, profile.id_nat),
                x509.NameAttribute(NameOID.SURNAME, profile.family_name),
                x509.NameAttribute(NameOID.GIVEN_NAME, profile.given_name),
            ]
        )
    )
    return x509.Name(rdns)


def _org_subject(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Test (99)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ESTABLISHMENT.structure_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ESTABLISHMENT.structure_id),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


_CAS = (  # key, CN, parent, pathlen
    ("fort-root", "AC RACINE IGC-SANTE FORT", None, 1),
    ("fort-personnes", "AC IGC-SANTE FORT PERSONNES", "fort-root", 0),
    ("elementaire-root", "AC RACINE IGC-SANTE ELEMENTAIRE", None, 1),
    ("elementaire-organisations", "AC IGC-SANTE ELEMENTAIRE ORGANISATIONS", "elementaire-root", 0),
)


def _load_or_make_cas(directory: Path, name: str) -> dict[str, _Ca]:
    cas: dict[str, _Ca] = {}
    for key_name, cn, parent, pathlen in _CAS:
        cert_path, key_path = (
            directory / "ca" / f"{key_name}.crt.pem",
            directory / "ca" / f"{key_name}.key.pem",
        )
        if cert_path.exists() and key_path.exists():
            cas[key_name] = _Ca(_read_cert(cert_path), _read_key(key_path))
            continue
        ca = _make_ca(
            _ca_name(name, cn),
            cas[parent] if parent else None,
            pathlen,
            ROOT_KEY_SIZE if parent is None else LEAF_KEY_SIZE,
        )
        _write_key(key_path, ca.key)
        _write_cert(cert_path, ca.cert)
        cas[key_name] = ca
    return cas


def _pair(
    directory: Path,
    stem: str,
    make: callable,  # type: ignore[valid-type]
) -> tuple[x509.Certificate, rsa.RSAPrivateKey, Path, Path]:
    cert_path, key_path = directory / f"{stem}.crt.pem", directory / f"{stem}.key.pem"
    if cert_path.exists() and key_path.exists():
        return _read_cert(cert_path), _read_key(key_path), cert_path, key_path
    cert, key = make()
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert, key, cert_path, key_path


def _holder(pki: TestPki, profile: CardProfile) -> HolderCredentials:
    ca = pki._cas["fort-personnes"]
    folder = pki.directory / "cards" / profile.name
    subject = holder_subject(profile)
    auth = _pair(folder, "auth", lambda: _leaf(ca, subject, usage="auth", expired=profile.expired))
    sign = _pair(folder, "sign", lambda: _leaf(ca, subject, usage="sign", expired=profile.expired))
    return HolderCredentials(
        profile=profile.name,
        auth_cert=auth[0],
        auth_key=auth[1],
        sign_cert=sign[0],
        sign_key=sign[1],
        auth_cert_path=auth[2],
        auth_key_path=auth[3],
        sign_cert_path=sign[2],
        sign_key_path=sign[3],
        chain=[ca.cert, pki._cas["fort-root"].cert],
    )


def _p12(
    path: Path, label: str, cert: x509.Certificate, key: rsa.RSAPrivateKey, chain: list[x509.Certificate]
) -> None:
    if path.exists():
        return
    data = pkcs12.serialize_key_and_certificates(
        label.encode(), key, cert, chain, serialization.BestAvailableEncryption(P12_PASSPHRASE.encode())
    )
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(data)
    tmp.replace(path)


def _establishment(pki: TestPki) -> OrgCredentials:
    ca = pki._cas["elementaire-organisations"]
    folder = pki.directory / "establishment"
    auth = _pair(folder, "auth", lambda: _leaf(ca, _org_subject(ESTABLISHMENT_CN), usage="auth"))
    sign = _pair(folder, "sign", lambda: _leaf(ca, _org_subject(ESTABLISHMENT_CN), usage="sign"))
    chain = [ca.cert, pki._cas["elementaire-root"].cert]
    _p12(folder / "auth.p12", "ORG AUTH_CLI", auth[0], auth[1], chain)
    _p12(folder / "sign.p12", "ORG SIGN", sign[0], sign[1], chain)
    return OrgCredentials(
        auth_cert=auth[0],
        auth_key=auth[1],
        sign_cert=sign[0],
        sign_key=sign[1],
        auth_cert_path=auth[2],
        auth_key_path=auth[3],
        sign_cert_path=sign[2],
        sign_key_path=sign[3],
        auth_p12=folder / "auth.p12",
        sign_p12=folder / "sign.p12",
        chain=chain,
    )


def load_or_create(directory: Path, *, name: str = DEFAULT_NAME) -> TestPki:
    """Open the test PKI in ``directory``, generating whatever is missing (idempotent, process-safe)."""
    directory = Path(directory)
    with _locked(directory):
        manifest = directory / "pki.json"
        if manifest.exists():
            try:
                info = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PkiError(f"unreadable PKI manifest {manifest}: {exc}") from exc
            if info.get("name") != name or info.get("format") != _FORMAT:
                raise PkiError(
                    f"{directory} holds the PKI {info.get('name')!r} (format {info.get('format')}), "
                    f"not {name!r}: use another directory"
                )
        cas = _load_or_make_cas(directory, name)
        server_ca = cas["elementaire-organisations"]
        server_subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SANDBOX DMP"),
                x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            ]
        )
        san: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(IPv4Address("127.0.0.1")),
            x509.IPAddress(IPv6Address("::1")),
        ]
        _, _, server_cert, server_key = _pair(
            directory / "server", "server", lambda: _leaf(server_ca, server_subject, usage="server", san=san)
        )
        roots = [cas["fort-root"].cert, cas["elementaire-root"].cert]
        intermediates = [cas["fort-personnes"].cert, cas["elementaire-organisations"].cert]
        bundle = directory / "ca-bundle.pem"
        if not bundle.exists():
            tmp = bundle.with_suffix(".tmp")
            tmp.write_bytes(
                b"".join(c.public_bytes(serialization.Encoding.PEM) for c in roots + intermediates)
            )
            tmp.replace(bundle)
        # The server certificate plus its chain, for servers that want a full chain file.
        fullchain = directory / "server" / "server.fullchain.pem"
        if not fullchain.exists():
            fullchain.write_bytes(
                server_cert.read_bytes() + server_ca.cert.public_bytes(serialization.Encoding.PEM)
            )
        if not manifest.exists():
            manifest.write_text(json.dumps({"name": name, "format": _FORMAT}), encoding="utf-8")
    return TestPki(
        directory=directory,
        name=name,
        ca_bundle=bundle,
        server_cert=server_cert,
        server_key=server_key,
        roots=roots,
        intermediates=intermediates,
        _cas=cas,
    )


def default_directory() -> Path:
    """Where the command-line tools (``python -m sandbox.card``, ``python -m sandbox serve``) keep the
    test PKI when no ``--pki`` is given: ``$PS_AGENT_PKI_DIR`` or ``~/.local/share/ps-agent/test-pki``."""
    import os

    env = os.environ.get("PS_AGENT_PKI_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "ps-agent" / "test-pki"


def generate_all(pki: TestPki) -> None:
    """Create every card and the establishment now (the CLI does this; tests create lazily)."""
    for profile in PROFILES:
        pki.card(profile)
    _ = pki.establishment
