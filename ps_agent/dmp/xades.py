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
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from ps_agent.auth.model import Signer
from ps_agent.dmp import xmltext
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
    return tree_digest(safe_parse(content), content)


# A text node at least this long is hashed from Python instead of going through libxml2's C14N writer,
# which escapes character by character (≈ 0.9 ms for the 270 KB base64 text of a level-1 CDA).
_SPLICE_MIN_CHARS = 4096
_C14N_ESCAPED = ("&", "<", ">", "\r")  # what C14N 1.0 rewrites in a text node (&amp; &lt; &gt; &#xD;)
_UTF8 = frozenset({"UTF-8", "UTF8"})


def tree_digest(root: etree._Element, content: bytes | None = None) -> bytes:
    """``document_digest`` of a document already parsed (``root`` of the tree parsed from exactly the bytes
    to be sent, with comments and PIs kept, entities not resolved: ``cda.xml.safe_parse``), without parsing
    it again: SHA-256 of the C14N 1.0 WithComments form of the whole document, as ``document_c14n``.

    Long leading text nodes (the base64 of a level-1 CDA) are fed to the hash directly: in a copy of the
    document (the caller's tree is never touched), each is replaced by a unique marker (C14N writes a
    text node as its content, escaped, and nothing else depends on it), the marker is found exactly once
    in the C14N output and the text is hashed in its place. A text C14N would rewrite (``& < > CR``) is
    left to libxml2. The result equals ``sha256(document_c14n(content))``: tests/dmp/test_xades_tree_digest.py
    checks it against xmlsec1 and ``xmllint --c14n`` on varied documents.

    ``content``, when given, is the bytes ``root`` was parsed from: the copy is then the parse of those
    bytes with each long text's raw bytes replaced by its marker (a few KB, ≈ 0.03 ms) instead of a deep
    copy of the whole tree (≈ 0.2 ms); taken only when each text's UTF-8 is found verbatim in ``content``
    and the copy holds each marker as the whole text of the element at the same place, else the deep copy.
    """
    longs: list[tuple[etree._Element, str]] = []
    for el in root.iter(etree.Element):
        text = el.text
        if text is None or len(text) < _SPLICE_MIN_CHARS or any(c in text for c in _C14N_ESCAPED):
            continue
        longs.append((el, text))
    if not longs:
        return hashlib.sha256(_document_tree_c14n(root)).digest()
    markers = [f"c14n-splice-{uuid.uuid4().hex}" for _ in longs]
    spliced = _spliced_copy(root, content, longs, markers) if content is not None else None
    if spliced is None:
        work = copy.deepcopy(root.getroottree()).getroot()  # the whole document: prolog PIs and comments too
        for (el, _), marker in zip(longs, markers, strict=True):
            _twin(el, root, work).text = marker
        raws: Sequence[bytes | memoryview] = [text.encode("utf-8") for _, text in longs]
    else:
        work, raws = spliced  # each text's UTF-8: its very bytes in ``content``, not encoded again
    canon = _document_tree_c14n(work)
    h = hashlib.sha256()
    rest = canon
    for raw, marker in zip(raws, markers, strict=True):
        m = marker.encode("ascii")
        before, found, after = rest.partition(m)
        if not found or m in after:
            return hashlib.sha256(_document_tree_c14n(root)).digest()  # never guessed: the plain way
        h.update(before)
        h.update(raw)
        rest = after
    h.update(rest)
    return h.digest()


def _spliced_copy(
    root: etree._Element, content: bytes, longs: Sequence[tuple[etree._Element, str]], markers: Sequence[str]
) -> tuple[etree._Element, list[memoryview]] | None:
    """The document parsed again from ``content`` with each long text's bytes replaced by its marker, and
    each text's UTF-8 (its span of ``content``, equal to it byte for byte), or None when that cannot be
    done exactly (another encoding, a text whose bytes are not verbatim in the
    document: CRLF, character references, CDATA...). Checked: in the copy, the element at each long
    text's place has the marker as its whole text; as the copy differs from ``content`` only in those
    spans, its C14N is the document's with each text replaced by its marker."""
    if (root.getroottree().docinfo.encoding or "").upper() not in _UTF8:
        return None
    pieces: list[bytes] = []
    spans: list[memoryview] = []
    view = memoryview(content)
    at = 0
    for (_, text), marker in zip(longs, markers, strict=True):
        raw = text.encode("utf-8")
        head = raw[:64]
        pos = content.find(head, at)
        while pos >= 0 and not content.startswith(raw, pos):
            pos = content.find(head, pos + 1)
        if pos < 0:
            return None
        pieces += (content[at:pos], marker.encode("ascii"))
        at = pos + len(raw)
        spans.append(view[pos:at])
    pieces.append(content[at:])
    try:
        work = safe_parse(b"".join(pieces))
    except ProtocolError:
        return None
    try:
        if any(_twin(el, root, work).text != marker for (el, _), marker in zip(longs, markers, strict=True)):
            return None
    except (IndexError, ValueError):
        return None
    return work, spans


def _twin(el: etree._Element, root: etree._Element, copy_root: etree._Element) -> etree._Element:
    """The element of ``copy_root``'s tree (a deep copy of ``root``'s) at ``el``'s place: the child indexes
    from ``root`` down (comments and PIs count in both: the copy has them all)."""
    path = []
    while el is not root:
        parent = el.getparent()
        if parent is None:  # not under root: the copy's root element is the only other possibility
            raise ValueError("element outside the tree")
        path.append(parent.index(el))
        el = parent
    for i in reversed(path):
        copy_root = copy_root[i]
    return copy_root


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
    by the caller from the tree parsed from those very bytes (``tree_digest``): not computed again.

    Written from text templates (``_Templates``: the canonical forms and the serialisation lxml makes of
    the same tree, per signer and number of documents), byte for byte the tree build (``USE_TEMPLATES``
    False; tests/dmp/test_xades_tree_digest.py compares them, xmlsec1 verifies the result)."""
    now = now or datetime.now(UTC)
    sig_id = f"id{uuid.uuid4().hex}"
    known = list(digests or ())
    refs = []
    for i, (uid, content) in enumerate(documents):
        digest = known[i] if i < len(known) else None
        refs.append((uid, _b64(digest if digest is not None else document_digest(content))))
    signing_time = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not USE_TEMPLATES or not all(_PLAIN.fullmatch(v) for v in (submission_set_uid, *(u for u, _ in refs))):
        return _sign_tree(signer, sig_id, submission_set_uid, refs, signing_time)
    t = _templates_for(signer, len(refs))
    values = {"sig": sig_id.encode(), "ss": submission_set_uid.encode(), "time": signing_time.encode()}
    for i, (uid, digest_b64) in enumerate(refs):
        values[f"uid{i}"] = uid.encode()
        values[f"dig{i}"] = digest_b64.encode()
    values["dm"] = _b64(hashlib.sha256(t.manifest.fill(values)).digest()).encode()
    values["dp"] = _b64(hashlib.sha256(t.props.fill(values)).digest()).encode()
    values["sv"] = _b64(signer.sign(t.signed_info.fill(values))).encode()
    return t.signature.fill(values)


# The values a template takes as they are: the serialisation and C14N write them unchanged (OIDs, ids).
_PLAIN = re.compile(r"[A-Za-z0-9._:^-]+")


def _signature_tree(
    signer: Signer, sig_id: str, submission_set_uid: str, refs: Sequence[tuple[str, str]], signing_time: str
) -> tuple[etree._Element, etree._Element, etree._Element, etree._Element]:
    """(Signature, Manifest, SignedProperties, SignedInfo) with empty SignedInfo digests and value."""
    sig = etree.Element(q(DS, "Signature"), {"Id": sig_id}, nsmap={"ds": DS})
    si = etree.SubElement(sig, q(DS, "SignedInfo"))
    etree.SubElement(si, q(DS, "CanonicalizationMethod"), Algorithm=C14N_WITH_COMMENTS)
    etree.SubElement(si, q(DS, "SignatureMethod"), Algorithm=RSA_SHA256)
    _reference(si, "#IHEManifest", "", MANIFEST_TYPE)
    _reference(si, "#S0-SignedProperties", "", SIGNED_PROPS_TYPE)
    etree.SubElement(sig, q(DS, "SignatureValue"))
    key_info, signing_certificate, policy = _signer_parts(signer)
    sig.append(key_info)
    # Manifest
    obj = etree.SubElement(sig, q(DS, "Object"))
    manifest = etree.SubElement(obj, q(DS, "Manifest"), Id="IHEManifest")
    ss_ref = etree.SubElement(manifest, q(DS, "Reference"), URI=f"urn:oid:{submission_set_uid}")
    etree.SubElement(ss_ref, q(DS, "DigestMethod"), Algorithm=SHA256)
    etree.SubElement(ss_ref, q(DS, "DigestValue")).text = SUBMISSION_SET_PLACEHOLDER_DIGEST
    for uid, digest_b64 in refs:
        _reference(manifest, f"urn:oid:{uid}", digest_b64)
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
    etree.SubElement(ssp, q(XADES, "SigningTime")).text = signing_time
    ssp.append(signing_certificate)
    ssp.append(policy)
    return sig, manifest, sp, si


def _set_digests(si: etree._Element, manifest_b64: str, props_b64: str) -> None:
    si[2][2].text = manifest_b64  # Reference #IHEManifest / DigestValue
    si[3][2].text = props_b64  # Reference #S0-SignedProperties / DigestValue


def _sign_tree(
    signer: Signer, sig_id: str, submission_set_uid: str, refs: Sequence[tuple[str, str]], signing_time: str
) -> bytes:
    """The signature built as a tree: digests in final context, then SignedInfo signed."""
    sig, manifest, sp, si = _signature_tree(signer, sig_id, submission_set_uid, refs, signing_time)
    _set_digests(si, _b64(hashlib.sha256(_c14n(manifest)).digest()), _b64(hashlib.sha256(_c14n(sp)).digest()))
    sig[1].text = _b64(signer.sign(_c14n(si)))  # SignatureValue
    return etree.tostring(sig, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class _Templates:
    """The C14N forms of the Manifest, SignedProperties and SignedInfo and the serialisation of the
    Signature, as lxml makes them for the tree of ``_signature_tree``, split at the values of a deposit."""

    manifest: xmltext.Template
    props: xmltext.Template
    signed_info: xmltext.Template
    signature: xmltext.Template


_TEMPLATES: dict[tuple[object, ...], _Templates] = {}  # immutable: shared by threads


def _templates_for(signer: Signer, count: int) -> _Templates:
    key = (signer.certificate, tuple(signer.chain), count)
    found = _TEMPLATES.get(key)
    if found is not None:
        return found
    m = {name: xmltext.marker(name) for name in ("sig", "ss", "time", "dm", "dp", "sv")}
    for i in range(count):
        m[f"uid{i}"] = xmltext.marker(f"uid{i}")
        m[f"dig{i}"] = xmltext.marker(f"dig{i}")
    refs = [(m[f"uid{i}"], m[f"dig{i}"]) for i in range(count)]
    sig, manifest, sp, si = _signature_tree(signer, m["sig"], m["ss"], refs, m["time"])
    _set_digests(si, m["dm"], m["dp"])
    sig[1].text = m["sv"]

    def only(*names: str) -> dict[str, str]:
        return {n: m[n] for n in names}

    docs = [n for i in range(count) for n in (f"uid{i}", f"dig{i}")]
    found = _Templates(
        xmltext.Template(_c14n(manifest), only("ss", *docs)),
        xmltext.Template(_c14n(sp), only("time")),
        xmltext.Template(_c14n(si), only("dm", "dp")),
        xmltext.Template(etree.tostring(sig, xml_declaration=True, encoding="UTF-8"), m),
    )
    if len(_TEMPLATES) >= 64:
        _TEMPLATES.clear()
    _TEMPLATES[key] = found
    return found


USE_TEMPLATES = True  # False: the signature built element by element (the byte-identity test)
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
