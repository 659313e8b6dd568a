"""XAdES signature of a submission set (IHE DSG, dmp-protocol.md §7.5), through a ``Signer``.

Written with lxml + cryptography because the DMP form (a Manifest of ``urn:oid:`` references and a
placeholder digest for the submission set) is not something a generic XAdES library produces.
Decisions (see docs/agent.md): RSA-SHA256/SHA-256 (the ``Signer`` contract signs SHA-256 only;
S1 used SHA-1), explicit C14N 1.0 WithComments transforms on every reference, xades-namespace
``CertDigest`` children (XAdES 1.1.1), S1's unqualified ``SignatureProperties`` form.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from ps_agent.auth.model import Signer
from ps_agent.dmp.errors import ProtocolError
from ps_agent.dmp.xmlns import DS, XADES, q, safe_parse

C14N_WITH_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
MANIFEST_TYPE = "http://www.w3.org/2000/09/xmldsig#Manifest"
SIGNED_PROPS_TYPE = "http://uri.etsi.org/01903/v1.1.1#SignedProperties"
PURPOSE_OF_SIGNATURE = "1.2.840.10065.1.12.1.14"  # "Source"
SUBMISSION_SET_PLACEHOLDER_DIGEST = "AA=="  # S1: nobody can compute it (review note 2)


def _c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", with_comments=True)


def document_c14n(content: bytes) -> bytes:
    """C14N 1.0 WithComments of a whole XML document as transmitted (dmp-protocol.md §7.5).

    The Manifest reference ``urn:oid:{uniqueId}`` designates the document's octets; its C14N transform
    turns them into the node set of the whole *document* (XML-DSig §4.3.3.2, C14N §2.1): the prolog's
    processing instructions (``xml-stylesheet``...) and comments are part of it, each followed by a line
    feed, the XML declaration is not. Canonicalising only the root element (``tostring(root)``) drops the
    prolog and, for a document with one, makes lxml emit ``xmlns=""`` on descendants: a digest no other
    implementation (xmlsec1, libxml2's ``xmllint --c14n``) computes.
    """
    return _document_tree_c14n(safe_parse(content))


def document_digest(content: bytes) -> bytes:
    """SHA-256 of the document C14N-WithComments form of an XML document (the CDA)."""
    return tree_digest(safe_parse(content))


# A text node at least this long is hashed from Python instead of going through libxml2's C14N writer,
# which escapes character by character (≈ 0.9 ms for the 270 KB base64 text of a level-1 CDA).
_SPLICE_MIN_CHARS = 4096
_C14N_ESCAPED = ("&", "<", ">", "\r")  # what C14N 1.0 rewrites in a text node (&amp; &lt; &gt; &#xD;)


def tree_digest(root: etree._Element) -> bytes:
    """``document_digest`` of a document already parsed (``root`` of the tree parsed from exactly the bytes
    to be sent, with comments and PIs kept, entities not resolved: ``cda.xml.safe_parse``), without parsing
    it again: SHA-256 of the C14N 1.0 WithComments form of the whole document, as ``document_c14n``.

    Long leading text nodes (the base64 of a level-1 CDA) are fed to the hash directly: in a copy of the
    document (the caller's tree is never touched), each is replaced by a unique marker (C14N writes a
    text node as its content, escaped, and nothing else depends on it), the marker is found exactly once
    in the C14N output and the text is hashed in its place. A text C14N would rewrite (``& < > CR``) is
    left to libxml2. The result equals ``sha256(document_c14n(content))``: tests/dmp/test_xades_tree_digest.py
    checks it against xmlsec1 and ``xmllint --c14n`` on varied documents."""
    work: etree._ElementTree | None = None
    swaps: list[tuple[str, str]] = []  # (marker, text) in document order
    for el in root.iter(etree.Element):
        text = el.text
        if text is None or len(text) < _SPLICE_MIN_CHARS or any(c in text for c in _C14N_ESCAPED):
            continue
        if work is None:
            work = copy.deepcopy(root.getroottree())  # the whole document: prolog PIs and comments too
            twins = dict(zip(root.iter(etree.Element), work.getroot().iter(etree.Element), strict=True))
        marker = f"c14n-splice-{uuid.uuid4().hex}"
        twins[el].text = marker
        swaps.append((marker, text))
    if work is None:
        return hashlib.sha256(_document_tree_c14n(root)).digest()
    canon = _document_tree_c14n(work.getroot())
    h = hashlib.sha256()
    rest = canon
    for marker, text in swaps:
        m = marker.encode("ascii")
        before, found, after = rest.partition(m)
        if not found or m in after:
            return hashlib.sha256(_document_tree_c14n(root)).digest()  # never guessed: the plain way
        h.update(before)
        h.update(text.encode("utf-8"))
        rest = after
    h.update(rest)
    return h.digest()


def _document_tree_c14n(root: etree._Element) -> bytes:
    return etree.tostring(root.getroottree(), method="c14n", with_comments=True)


@functools.lru_cache(maxsize=32)
def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@functools.lru_cache(maxsize=32)
def _issuer_dn(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string()  # ≈ 0.2 ms: once per certificate, not per deposit


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _reference(
    parent: etree._Element, uri: str, digest_b64: str, ref_type: str | None = None
) -> etree._Element:
    attrs = {"URI": uri}
    if ref_type:
        attrs["Type"] = ref_type
    ref = etree.SubElement(parent, q(DS, "Reference"), attrs)
    tr = etree.SubElement(ref, q(DS, "Transforms"))
    etree.SubElement(tr, q(DS, "Transform"), Algorithm=C14N_WITH_COMMENTS)
    etree.SubElement(ref, q(DS, "DigestMethod"), Algorithm=SHA256)
    etree.SubElement(ref, q(DS, "DigestValue")).text = digest_b64
    return ref


def sign_submission_set(
    signer: Signer,
    submission_set_uid: str,
    documents: Sequence[tuple[str, bytes]],
    *,
    now: datetime | None = None,
    digests: Sequence[bytes | None] | None = None,
) -> bytes:
    """XAdES-signed Manifest over ``documents`` (uniqueId, CDA bytes). Returns the signature XML.

    ``digests[i]``, when given and not None, is ``document_digest`` of ``documents[i]`` already computed
    by the caller from the tree parsed from those very bytes (``tree_digest``): not computed again."""
    now = now or datetime.now(UTC)
    sig_id = f"id{uuid.uuid4().hex}"
    sig = etree.Element(q(DS, "Signature"), {"Id": sig_id}, nsmap={"ds": DS})
    si = etree.SubElement(sig, q(DS, "SignedInfo"))
    etree.SubElement(si, q(DS, "CanonicalizationMethod"), Algorithm=C14N_WITH_COMMENTS)
    etree.SubElement(si, q(DS, "SignatureMethod"), Algorithm=RSA_SHA256)
    ref_manifest = _reference(si, "#IHEManifest", "", MANIFEST_TYPE)
    ref_props = _reference(si, "#S0-SignedProperties", "", SIGNED_PROPS_TYPE)
    sv = etree.SubElement(sig, q(DS, "SignatureValue"))
    key_info, signing_certificate, policy = _signer_parts(signer)
    sig.append(key_info)
    # Manifest
    obj = etree.SubElement(sig, q(DS, "Object"))
    manifest = etree.SubElement(obj, q(DS, "Manifest"), Id="IHEManifest")
    ss_ref = etree.SubElement(manifest, q(DS, "Reference"), URI=f"urn:oid:{submission_set_uid}")
    etree.SubElement(ss_ref, q(DS, "DigestMethod"), Algorithm=SHA256)
    etree.SubElement(ss_ref, q(DS, "DigestValue")).text = SUBMISSION_SET_PLACEHOLDER_DIGEST
    known = list(digests or ())
    for i, (uid, content) in enumerate(documents):
        digest = known[i] if i < len(known) else None
        _reference(
            manifest, f"urn:oid:{uid}", _b64(digest if digest is not None else document_digest(content))
        )
    # purposeOfSignature (S1's form, review note 1)
    obj2 = etree.SubElement(sig, q(DS, "Object"))
    props = etree.SubElement(obj2, "SignatureProperties")
    prop = etree.SubElement(props, "SignatureProperty", Id="purposeOfSignature", Target=f"#{sig_id}")
    prop.text = PURPOSE_OF_SIGNATURE
    # QualifyingProperties
    obj3 = etree.SubElement(sig, q(DS, "Object"))
    qp = etree.SubElement(
        obj3, q(XADES, "QualifyingProperties"), {"Target": f"#{sig_id}"}, nsmap={"xades": XADES}
    )
    sp = etree.SubElement(qp, q(XADES, "SignedProperties"), Id="S0-SignedProperties")
    ssp = etree.SubElement(sp, q(XADES, "SignedSignatureProperties"))
    etree.SubElement(ssp, q(XADES, "SigningTime")).text = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ssp.append(signing_certificate)
    ssp.append(policy)
    # Digests in final context, then sign SignedInfo
    ref_manifest.find(q(DS, "DigestValue")).text = _b64(hashlib.sha256(_c14n(manifest)).digest())  # type: ignore[union-attr]
    ref_props.find(q(DS, "DigestValue")).text = _b64(hashlib.sha256(_c14n(sp)).digest())  # type: ignore[union-attr]
    sv.text = _b64(signer.sign(_c14n(si)))
    return etree.tostring(sig, xml_declaration=True, encoding="UTF-8")


USE_TEMPLATES = True  # False: the signer's parts built element by element (the byte-identity test)
_templates = threading.local()  # lxml trees are not shared between threads


def _signer_parts(signer: Signer) -> tuple[etree._Element, etree._Element, etree._Element]:
    """(KeyInfo, SigningCertificate, SignaturePolicyIdentifier): they depend on the signer's certificates
    only, so they are built once per thread and certificate chain and copied (≈ 30 elements a deposit
    would otherwise build from Python). Each is built under a parent declaring the ``ds``/``xades``
    prefixes of the signature, so a copy appended in place serialises exactly as a direct build."""
    key = (signer.certificate, tuple(signer.chain))
    cache: dict[object, tuple[etree._Element, etree._Element, etree._Element]] | None = getattr(
        _templates, "signer_parts", None
    )
    if cache is None:
        cache = _templates.signer_parts = {}
    parts = cache.get(key) if USE_TEMPLATES else None
    if parts is None:
        sig = etree.Element(q(DS, "Signature"), nsmap={"ds": DS})
        ki = etree.SubElement(sig, q(DS, "KeyInfo"))
        xd = etree.SubElement(ki, q(DS, "X509Data"))
        etree.SubElement(xd, q(DS, "X509Certificate")).text = _b64(_der(signer.certificate))
        qp = etree.SubElement(
            etree.SubElement(sig, q(DS, "Object")), q(XADES, "QualifyingProperties"), nsmap={"xades": XADES}
        )
        ssp = etree.SubElement(
            etree.SubElement(qp, q(XADES, "SignedProperties")), q(XADES, "SignedSignatureProperties")
        )
        sc = etree.SubElement(ssp, q(XADES, "SigningCertificate"))
        for cert in [signer.certificate, *signer.chain]:
            c = etree.SubElement(sc, q(XADES, "Cert"))
            cd = etree.SubElement(c, q(XADES, "CertDigest"))
            etree.SubElement(cd, q(XADES, "DigestMethod"), Algorithm=SHA256)
            etree.SubElement(cd, q(XADES, "DigestValue")).text = _b64(hashlib.sha256(_der(cert)).digest())
            iser = etree.SubElement(c, q(XADES, "IssuerSerial"))
            etree.SubElement(iser, q(DS, "X509IssuerName")).text = _issuer_dn(cert)
            etree.SubElement(iser, q(DS, "X509SerialNumber")).text = str(cert.serial_number)
        spi = etree.SubElement(ssp, q(XADES, "SignaturePolicyIdentifier"))
        etree.SubElement(spi, q(XADES, "SignaturePolicyImplied"))
        parts = (ki, sc, spi)
        if not USE_TEMPLATES:
            return parts
        if len(cache) < 32:
            cache[key] = parts
    return (copy.deepcopy(parts[0]), copy.deepcopy(parts[1]), copy.deepcopy(parts[2]))


def verify(signature_xml: bytes, documents: dict[str, bytes]) -> x509.Certificate:
    """Check a submission-set signature: SignedInfo, both references, each document digest.

    Returns the signing certificate; raises ``ProtocolError`` naming what does not match.
    """
    sig = safe_parse(signature_xml)
    ns = {"ds": DS, "xades": XADES}
    si = sig.find("ds:SignedInfo", ns)
    if si is None:
        raise ProtocolError("Signature XAdES sans SignedInfo.", code="XADES_INVALID")
    cert_b64 = sig.findtext(".//ds:X509Certificate", namespaces=ns) or ""
    cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
    for ref in si.findall("ds:Reference", ns):
        target_id = ref.get("URI", "").lstrip("#")
        target = sig.xpath(f"//*[@Id='{target_id}']")
        if not target:
            raise ProtocolError(f"Référence introuvable : {target_id}", code="XADES_INVALID")
        digest = _b64(hashlib.sha256(_c14n(target[0])).digest())
        if digest != ref.findtext("ds:DigestValue", namespaces=ns):
            raise ProtocolError(f"Empreinte invalide pour {target_id}", code="XADES_INVALID")
    try:
        cert.public_key().verify(  # type: ignore[union-attr,call-arg]
            base64.b64decode(sig.findtext("ds:SignatureValue", namespaces=ns) or ""),
            _c14n(si),
            padding.PKCS1v15(),  # type: ignore[arg-type]
            hashes.SHA256(),
        )
    except InvalidSignature as exc:
        raise ProtocolError("Signature XAdES invalide.", code="XADES_INVALID") from exc
    for ref in sig.findall(".//ds:Manifest/ds:Reference", ns):
        uri = ref.get("URI", "")
        uid = uri.removeprefix("urn:oid:")
        if uid in documents:
            digest = _b64(document_digest(documents[uid]))
            if digest != ref.findtext("ds:DigestValue", namespaces=ns):
                raise ProtocolError(f"Empreinte du document {uid} invalide.", code="XADES_INVALID")
    return cert
