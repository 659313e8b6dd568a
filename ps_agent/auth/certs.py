"""Certificate checks shared by the card, PKCS#11 and establishment back-ends.

- ``check_validity``: dates, with a French message naming the certificate and the date;
- ``check_key_usage``: the signature certificate must carry non-repudiation (the DMP rejects a VIHF
  signed with the authentication certificate: "Not a valid signature certificate");
- ``build_chain`` / ``verify_chain``: find the issuers in a CA bundle and verify up to a root with
  ``cryptography``'s X.509 verifier (IGC-Santé card certificates have no subjectAltName, so only that
  end-entity requirement is relaxed);
- ``subject_fields``: CN / SN / GN / title read by OID from the (multi-valued) subject RDNs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from ps_agent.auth.errors import CertificateError
from ps_agent.auth.model import KeyUse

_LABELS = {
    KeyUse.AUTHENTICATION: "d'authentification",
    KeyUse.SIGNATURE: "de signature",
}


def _fr_date(value: dt.datetime) -> str:
    return value.strftime("%d/%m/%Y")


def check_validity(
    cert: x509.Certificate, use: KeyUse, *, owner: str = "de la carte", now: dt.datetime | None = None
) -> None:
    now = now or dt.datetime.now(dt.UTC)
    label = _LABELS[use]
    if cert.not_valid_after_utc < now:
        raise CertificateError(
            f"Le certificat {label} {owner} a expiré le {_fr_date(cert.not_valid_after_utc)} : "
            "il ne peut plus être utilisé. Demandez le renouvellement de la carte.",
            code="cert_expired",
        )
    if cert.not_valid_before_utc > now:
        raise CertificateError(
            f"Le certificat {label} {owner} n'est valable qu'à partir du "
            f"{_fr_date(cert.not_valid_before_utc)} (vérifiez la date de l'ordinateur).",
            code="cert_not_yet_valid",
        )


def check_key_usage(cert: x509.Certificate, use: KeyUse, *, owner: str = "de la carte") -> None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return  # no restriction stated
    ok = ku.content_commitment if use is KeyUse.SIGNATURE else ku.digital_signature
    if not ok:
        raise CertificateError(
            f"Le certificat {_LABELS[use]} {owner} n'est pas prévu pour cet usage "
            f"({'non-répudiation' if use is KeyUse.SIGNATURE else 'signature numérique'} absente).",
            code="cert_key_usage",
        )


def load_bundle(path: str | Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(
            f"Le fichier des autorités de certification est illisible : {path}", code="ca_bundle"
        ) from exc


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def build_chain(cert: x509.Certificate, bundle: list[x509.Certificate]) -> list[x509.Certificate]:
    """Issuers of ``cert`` found in ``bundle``, intermediate(s) first, root last."""
    chain: list[x509.Certificate] = []
    current = cert
    for _ in range(8):
        issuer = next(
            (c for c in bundle if c.subject == current.issuer and c not in chain and c != current), None
        )
        if issuer is None:
            break
        chain.append(issuer)
        if _is_self_signed(issuer):
            break
        current = issuer
    return chain


def verify_chain(
    cert: x509.Certificate, bundle: list[x509.Certificate], *, owner: str = "de la carte"
) -> list[x509.Certificate]:
    """Verify ``cert`` up to a self-signed root of ``bundle``; return the chain (intermediates, root)."""
    roots = [c for c in bundle if _is_self_signed(c)]
    intermediates = [c for c in bundle if not _is_self_signed(c)]
    if not roots:
        raise CertificateError("Aucune autorité racine dans le fichier des autorités.", code="ca_bundle")
    try:
        PolicyBuilder().store(Store(roots)).extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        ).build_client_verifier().verify(cert, intermediates)
    except VerificationError as exc:
        raise CertificateError(
            f"Le certificat {owner} n'a pas été émis par une autorité reconnue (IGC-Santé) "
            "ou n'est plus valide.",
            code="cert_untrusted",
        ) from exc
    return build_chain(cert, bundle)


def subject_fields(name: x509.Name) -> dict[str, str]:
    """CN, SN, GN, title, O, OU of a subject, read by OID across all RDNs (multi-valued included)."""
    wanted = {
        NameOID.COMMON_NAME: "CN",
        NameOID.SURNAME: "SN",
        NameOID.GIVEN_NAME: "GN",
        NameOID.TITLE: "title",
        NameOID.ORGANIZATION_NAME: "O",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    }
    out: dict[str, str] = {}
    for rdn in name.rdns:
        for attr in rdn:
            key = wanted.get(attr.oid)
            if key and key not in out:
                out[key] = str(attr.value)
    return out
