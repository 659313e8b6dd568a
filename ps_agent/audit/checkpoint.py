"""Signed checkpoints of the journal's chain head (in the spirit of RFC 5848 "signature blocks").

A checkpoint says "journal J held records 1..seq, the last one hashing to ``head``, at ``time``",
signed with a key that file access does not give: the card's signature key while a card session is
open, the establishment's ORG SIGN key in AIR / indirect mode (any ``ps_agent.auth.model.Signer``).
Someone who rewrites the journal file can recompute every hash, but not this signature: the head at
``seq`` no longer matches, or the journal stops before ``seq``.

Signed bytes: canonical JSON (sorted keys, no spaces, UTF-8) of
``{type, v, journal, n, seq, head, time, label, signer, cert_sha256}``; signature: RSASSA-PKCS1-v1_5
with SHA-256 (what every ``Signer`` makes; ECDSA-SHA256 accepted for an EC certificate). The signer's
certificate (and its chain) travel with the checkpoint; ``cert_sha256`` binds it into the signed bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # cryptography is imported where a checkpoint is made or read (window start-up)
    from cryptography import x509

CHECKPOINT_TYPE = "ps-agent-audit-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointSigner(Protocol):
    """What a checkpoint needs of ``ps_agent.auth.model.Signer`` (structurally the same)."""

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def chain(self) -> list[x509.Certificate]: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Checkpoint:
    number: int  # 1, 2, ... in this journal
    seq: int  # last record covered
    head: str  # hash of record ``seq``
    timestamp: str  # UTC, journal format
    label: str  # why / by which session ("carte", "établissement", "fermeture"...)
    signer: str  # the certificate's subject (display)
    journal_id: str
    payload: str  # the exact signed JSON text
    signature: bytes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = field(default=())

    @property
    def signer_name(self) -> str:
        """The certificate's common name (the professional or the establishment)."""
        from cryptography.x509.oid import NameOID

        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else self.signer

    def to_dict(self) -> dict[str, Any]:
        from cryptography.hazmat.primitives import serialization

        pem = serialization.Encoding.PEM
        return {
            "payload": self.payload,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "certificate": self.certificate.public_bytes(pem).decode("ascii"),
            "chain": "".join(c.public_bytes(pem).decode("ascii") for c in self.chain),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """Parse (not verify) a stored checkpoint; raises ``ValueError`` when malformed."""
        from cryptography import x509

        try:
            payload = str(data["payload"])
            fields_ = json.loads(payload)
            cert = x509.load_pem_x509_certificate(str(data["certificate"]).encode("ascii"))
            chain_text = str(data.get("chain") or "")
            chain = tuple(x509.load_pem_x509_certificates(chain_text.encode("ascii"))) if chain_text else ()
            if fields_.get("type") != CHECKPOINT_TYPE:
                raise ValueError("not a ps-agent checkpoint")
            return cls(
                number=int(fields_["n"]),
                seq=int(fields_["seq"]),
                head=str(fields_["head"]),
                timestamp=str(fields_["time"]),
                label=str(fields_["label"]),
                signer=str(fields_["signer"]),
                journal_id=str(fields_["journal"]),
                payload=payload,
                signature=base64.b64decode(str(data["signature"]), validate=True),
                certificate=cert,
                chain=chain,
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"checkpoint illisible ({exc})") from exc

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"checkpoint illisible ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError("checkpoint illisible")
        return cls.from_dict(data)


# (certificate, its RFC 4514 subject, its fingerprint) of the last signer: one card or establishment key
# signs every checkpoint of a session (the subject string alone costs ≈ 0.2 ms to format)
_LAST_NAMES: list[tuple[x509.Certificate, str, str]] = []


def _names_of(cert: x509.Certificate) -> tuple[str, str]:
    last = _LAST_NAMES[-1] if _LAST_NAMES else None
    if last is not None and last[0] is cert:
        return last[1], last[2]
    names = (cert, cert.subject.rfc4514_string(), cert_fingerprint(cert))
    _LAST_NAMES[:] = [names]
    return names[1], names[2]


def cert_fingerprint(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def make_checkpoint(
    signer: CheckpointSigner, *, journal_id: str, number: int, seq: int, head: str, timestamp: str, label: str
) -> Checkpoint:
    """Sign a checkpoint (the signer raises its own typed error when it cannot sign)."""
    cert = signer.certificate
    subject, fingerprint = _names_of(cert)
    fields_: dict[str, object] = {
        "type": CHECKPOINT_TYPE,
        "v": CHECKPOINT_VERSION,
        "journal": journal_id,
        "n": number,
        "seq": seq,
        "head": head,
        "time": timestamp,
        "label": label,
        "signer": subject,
        "cert_sha256": fingerprint,
    }
    payload = json.dumps(fields_, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signature = signer.sign(payload.encode("utf-8"))
    chain = tuple(c for c in signer.chain if c != cert)
    return Checkpoint(
        number, seq, head, timestamp, label, subject, journal_id, payload, signature, cert, chain
    )


def signature_problem(cp: Checkpoint) -> str:
    """ "" when the signature is valid for the certificate and the payload binds that certificate."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        fields_ = json.loads(cp.payload)
    except json.JSONDecodeError:
        return "contenu illisible"
    if fields_.get("cert_sha256") != cert_fingerprint(cp.certificate):
        return "le certificat joint n'est pas celui qui a été signé"
    key = cp.certificate.public_key()
    data = cp.payload.encode("utf-8")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cp.signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cp.signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return "type de clé non pris en charge"
    except InvalidSignature:
        return "signature invalide"
    return ""


def chain_problem(cp: Checkpoint, bundle: list[x509.Certificate]) -> str:
    """ "" when the signer's certificate chains to a root of ``bundle`` at the checkpoint's time."""
    from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

    roots = [c for c in bundle if c.issuer == c.subject]
    intermediates = [c for c in bundle if c.issuer != c.subject] + [
        c for c in cp.chain if c.issuer != c.subject
    ]
    if not roots:
        return "aucune autorité racine dans le fichier des autorités"
    try:
        when = dt.datetime.strptime(cp.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "date du point de contrôle illisible"
    try:
        PolicyBuilder().store(Store(roots)).time(when).extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        ).build_client_verifier().verify(cp.certificate, intermediates)
    except VerificationError:
        return "certificat du signataire non émis par une autorité reconnue (ou non valide à cette date)"
    return ""


__all__ = [
    "CHECKPOINT_TYPE",
    "Checkpoint",
    "CheckpointSigner",
    "cert_fingerprint",
    "chain_problem",
    "make_checkpoint",
    "signature_problem",
]
