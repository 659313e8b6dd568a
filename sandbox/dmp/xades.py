"""Verification of the XAdES signature of a submission set (IHE DSG, dmp-protocol.md §7.5).

Hand-written with lxml + cryptography: the DMP form (an enveloping ``ds:Signature`` whose Manifest
holds ``urn:oid:`` references, one with a placeholder digest for the submission set) is not something
signxml verifies (it checks SignedInfo references only and resolves no ``urn:oid:`` URI).

Checked: SignedInfo references (``#IHEManifest``, ``#S0-SignedProperties``) digests, the signature
value with the KeyInfo certificate, the certificate's key usage (signature / non-repudiation), its
validity dates, its chain to the trusted roots when the service has some, and every document of the
submission referenced by the Manifest with a matching digest. The submission-set reference is
skipped (review note 2: its digest is a placeholder). Algorithms: RSA with SHA-1 (S1) or SHA-256;
C14N 1.0 / exclusive C14N, with or without comments.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from sandbox.errors import SandboxError

DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"ds": DS}

C14N_WITH_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
_C14N = {
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315": (False, False),
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments": (False, True),
    "http://www.w3.org/2001/10/xml-exc-c14n#": (True, False),
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": (True, True),
}
_DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": hashlib.sha1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
_SIGNATURES: dict[str, hashes.HashAlgorithm] = {
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": hashes.SHA1(),  # noqa: S303 - S1 samples use it
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": hashes.SHA256(),
}


class XadesError(SandboxError):
    """The submission-set signature is absent, malformed or does not verify (French message)."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


def _c14n(el: etree._Element, algorithm: str | None) -> bytes:
    exclusive, comments = _C14N.get(algorithm or "", (False, False))
    if algorithm and algorithm not in _C14N:
        raise XadesError(f"Algorithme de canonicalisation non pris en charge : {algorithm}.")
    return etree.tostring(el, method="c14n", exclusive=exclusive, with_comments=comments)


def document_c14n(document: etree._Element | bytes, algorithm: str | None = C14N_WITH_COMMENTS) -> bytes:
    """Canonical form of a whole XML document, as a C14N transform of an external reference computes it.

    ``urn:oid:{uniqueId}`` designates the document's octets; a C14N transform turns them into the node
    set of the whole *document* (XML-DSig §4.3.3.2, C14N §2.1): with comments, the prolog's processing
    instructions (``xml-stylesheet``...) and comments belong to it. Canonicalising only the root element
    drops them and, with a prolog, makes lxml write ``xmlns=""`` on descendants (no other implementation
    agrees). ``document`` is the document's bytes or the root element of its parse.
    """
    if isinstance(document, bytes):
        from cda.xml import safe_parse  # the CDA bytes are parsed with the project's hardened parser

        document = safe_parse(document)
    exclusive, comments = _C14N.get(algorithm or "", (False, False))
    if algorithm and algorithm not in _C14N:
        raise XadesError(f"Algorithme de canonicalisation non pris en charge : {algorithm}.")
    return etree.tostring(document.getroottree(), method="c14n", exclusive=exclusive, with_comments=comments)


def _transform(ref: etree._Element) -> str | None:
    """The c14n transform of a reference (the last c14n one), None for the default C14N 1.0."""
    algo = None
    for tr in ref.findall("ds:Transforms/ds:Transform", NS):
        a = tr.get("Algorithm", "")
        if a in _C14N:
            algo = a
        elif a != "http://www.w3.org/2000/09/xmldsig#enveloped-signature":
            raise XadesError(f"Transformation non prise en charge dans la signature : {a}.")
    return algo


def _digest(ref: etree._Element, data: bytes) -> bool:
    method = ref.find("ds:DigestMethod", NS)
    algo = method.get("Algorithm", "") if method is not None else ""
    func = _DIGESTS.get(algo)
    if func is None:
        raise XadesError(f"Algorithme d'empreinte non pris en charge : {algo or '(absent)'}.")
    try:
        expected = base64.b64decode(ref.findtext("ds:DigestValue", default="", namespaces=NS), validate=False)
    except (binascii.Error, ValueError):
        return False
    return func(data).digest() == expected


def _by_id(root: etree._Element, ident: str) -> etree._Element | None:
    for el in root.iter():
        if isinstance(el.tag, str) and ident in (el.get("Id"), el.get("ID"), el.get("id")):
            return el
    return None


def _certificate(sig: etree._Element) -> x509.Certificate:
    text = sig.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", default="", namespaces=NS)
    if not text.strip():
        raise XadesError("La signature du lot de soumission ne contient pas de certificat (KeyInfo).")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    except (ValueError, binascii.Error) as exc:
        raise XadesError("Le certificat de la signature du lot de soumission est illisible.") from exc


def _check_certificate(cert: x509.Certificate, trusted: Iterable[x509.Certificate], now: datetime) -> None:
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise XadesError("Le certificat de signature du lot de soumission est expiré ou pas encore valide.")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.content_commitment:
        raise XadesError(
            "Le certificat ayant signé le lot de soumission n'est pas un certificat de signature"
            " (usage non-répudiation absent)."
        )
    pool = list(trusted)
    if not pool:
        return
    by_subject = {c.subject.public_bytes(): c for c in pool}
    current = cert
    for _ in range(6):
        issuer = by_subject.get(current.issuer.public_bytes())
        if issuer is None:
            break
        try:
            current.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            break
        if issuer.issuer == issuer.subject:
            return
        current = issuer
    raise XadesError(
        "Le certificat de signature du lot de soumission n'est pas émis"
        " par une autorité de confiance (IGC Santé)."
    )


def _verify_value(cert: x509.Certificate, method: str, signed: bytes, value: bytes) -> None:
    algo = _SIGNATURES.get(method)
    if algo is None:
        raise XadesError(f"Algorithme de signature non pris en charge : {method or '(absent)'}.")
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(value, signed, padding.PKCS1v15(), algo)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(value, signed, ec.ECDSA(algo))
        else:
            raise XadesError("Type de clé de signature non pris en charge.")
    except InvalidSignature as exc:
        raise XadesError(
            "La signature XAdES du lot de soumission est invalide (document modifié ?)."
        ) from exc


def verify_submission_signature(
    signature_xml: etree._Element,
    submission_set_uid: str,
    documents: dict[str, bytes],
    *,
    parsed: dict[str, etree._Element] | None = None,
    trusted: Iterable[x509.Certificate] = (),
    now: datetime | None = None,
) -> x509.Certificate:
    """Verify an already (safely) parsed ``ds:Signature``; ``documents`` maps uniqueId -> CDA bytes;
    ``parsed`` optionally the already parsed root elements by uniqueId (each document is parsed once).

    Returns the signing certificate; raises :class:`XadesError` with the French reason.
    """
    if signature_xml.tag != f"{{{DS}}}Signature":
        raise XadesError("La pièce Signature01 n'est pas une signature XML (ds:Signature attendu).")
    si = signature_xml.find("ds:SignedInfo", NS)
    if si is None:
        raise XadesError("Signature XAdES sans SignedInfo.")
    cert = _certificate(signature_xml)
    manifest_checked = False
    for ref in si.findall("ds:Reference", NS):
        uri = ref.get("URI", "")
        if not uri.startswith("#"):
            raise XadesError(f"Référence de signature inattendue : {uri}.")
        target = _by_id(signature_xml, uri[1:])
        if target is None:
            raise XadesError(f"Élément signé introuvable : {uri}.")
        if not _digest(ref, _c14n(target, _transform(ref))):
            raise XadesError(f"L'empreinte de l'élément signé {uri} ne correspond pas (signature altérée).")
        if target.tag == f"{{{DS}}}Manifest":
            manifest_checked = True
            _check_manifest(target, submission_set_uid, documents, parsed or {})
    if not manifest_checked:
        raise XadesError("La signature du lot de soumission ne couvre pas de Manifest IHE.")
    method = si.find("ds:SignatureMethod", NS)
    c14n = si.find("ds:CanonicalizationMethod", NS)
    try:
        value = base64.b64decode(
            "".join(signature_xml.findtext("ds:SignatureValue", default="", namespaces=NS).split())
        )
    except (binascii.Error, ValueError) as exc:
        raise XadesError("Valeur de signature illisible.") from exc
    _verify_value(
        cert,
        method.get("Algorithm", "") if method is not None else "",
        _c14n(si, c14n.get("Algorithm") if c14n is not None else None),
        value,
    )
    _check_certificate(cert, trusted, now or datetime.now(UTC))
    return cert


def _check_manifest(
    manifest: etree._Element, ss_uid: str, documents: dict[str, bytes], parsed: dict[str, etree._Element]
) -> None:
    seen: set[str] = set()
    for ref in manifest.findall("ds:Reference", NS):
        uid = ref.get("URI", "").removeprefix("urn:oid:")
        if uid == ss_uid:
            continue  # placeholder digest (review note 2)
        if uid not in documents:
            raise XadesError(f"La signature référence un document absent du lot : {uid}.")
        algo = _transform(ref)
        data = documents[uid]
        if algo is not None or ref.find("ds:Transforms", NS) is not None:
            root = parsed.get(uid)
            data = document_c14n(root if root is not None else data, algo)
        if not _digest(ref, data):
            raise XadesError(
                f"L'empreinte du document {uid} dans la signature ne correspond pas à son contenu."
            )
        seen.add(uid)
    missing = set(documents) - seen
    if missing:
        raise XadesError(
            f"Document(s) non couvert(s) par la signature du lot : {', '.join(sorted(missing))}."
        )
