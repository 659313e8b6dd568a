"""INSi establishment certificates in the project's test PKI (insi.md §2.3, mode A).

ORG AUTH_CLI certificates issued by ``TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS`` whose CN is
``INSI-MANU`` or ``INSI-AUTO`` (the only names INSi accepts), plus one with another CN to exercise the
``DESIR_560`` refusal. Subject as the real test certificate: ``CN=INSI-MANU, OU=<structure id>,
O=<structure>, ST=…, C=FR``. Kept in ``<pki>/insi/<cn>.{crt,key}.pem`` and ``<cn>.p12`` (passphrase
``sandbox.pki.P12_PASSPHRASE``), created on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox import pki as pki_mod
from sandbox.profiles import ESTABLISHMENT

INSI_MANU = "INSI-MANU"
INSI_AUTO = "INSI-AUTO"
WRONG_NAME = "INSI-AUTRE"  # any other CN -> DESIR_560


@dataclass
class InsiCertificate:
    cn: str
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    cert_path: Path
    key_path: Path
    p12: Path
    chain: list[x509.Certificate]

    def __repr__(self) -> str:
        return f"InsiCertificate(cn={self.cn!r})"


def _subject(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Test (99)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ESTABLISHMENT.structure_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ESTABLISHMENT.structure_id),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def insi_certificate(pki: pki_mod.TestPki, cn: str = INSI_MANU) -> InsiCertificate:
    """The establishment certificate named ``cn`` (created in the PKI directory on first use)."""
    ca = pki._cas["elementaire-organisations"]
    folder = pki.directory / "insi"
    with pki_mod._locked(pki.directory):
        cert, key, cert_path, key_path = pki_mod._pair(
            folder, cn.lower(), lambda: pki_mod._leaf(ca, _subject(cn), usage="auth")
        )
        chain = [ca.cert, pki._cas["elementaire-root"].cert]
        pki_mod._p12(folder / f"{cn.lower()}.p12", cn, cert, key, chain)
    return InsiCertificate(cn, cert, key, cert_path, key_path, folder / f"{cn.lower()}.p12", chain)
