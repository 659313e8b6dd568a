"""ITI-41 deposits written the way another conforming client may write them (dmp-protocol.md review
notes 1, 2, 4, 5, 6): the sandbox accepts every form the spec leaves open and still catches a real
defect."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from sandbox.dmp import build, xds
from sandbox.dmp.xds import RIM, q
from tests.sandbox.dmp.conftest import Dmp, caller, errors_of, status_of

DS = "http://www.w3.org/2000/09/xmldsig#"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ALGOS = {
    "sha256": (
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        hashes.SHA256(),
    ),
    "sha1": (
        "http://www.w3.org/2000/09/xmldsig#sha1",
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        hashes.SHA1(),  # noqa: S303 - the S1 samples sign with RSA-SHA1
    ),
}


def _c14n(el: etree._Element, algorithm: str) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=algorithm == EXC_C14N)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _digest(data: bytes, algo: str) -> bytes:
    return hashlib.new(algo, data).digest()


def sign_variant(
    key,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    ss_uid: str,
    documents: list[tuple[str, bytes]],
    *,
    algo: str = "sha256",
    canon: str = C14N,
    explicit_transforms: bool = True,
    xades_ns: str = "http://uri.etsi.org/01903/v1.3.2#",
    cert_digest_in_ds: bool = True,
    standard_properties: bool = True,
) -> bytes:
    """An XAdES-BES enveloping signature with the choices review note 4 lists as open."""
    digest_uri, sig_uri, sig_hash = ALGOS[algo]
    sig_id = f"id-{uuid.uuid4()}"
    sig = etree.Element(f"{{{DS}}}Signature", Id=sig_id, nsmap={"ds": DS})
    si = etree.SubElement(sig, f"{{{DS}}}SignedInfo")
    etree.SubElement(si, f"{{{DS}}}CanonicalizationMethod", Algorithm=canon)
    etree.SubElement(si, f"{{{DS}}}SignatureMethod", Algorithm=sig_uri)

    def ref(parent, uri: str, ref_type: str | None = None, transforms: bool = False):
        r = etree.SubElement(parent, f"{{{DS}}}Reference", URI=uri)
        if ref_type:
            r.set("Type", ref_type)
        if transforms:
            etree.SubElement(
                etree.SubElement(r, f"{{{DS}}}Transforms"), f"{{{DS}}}Transform", Algorithm=canon
            )
        etree.SubElement(r, f"{{{DS}}}DigestMethod", Algorithm=digest_uri)
        etree.SubElement(r, f"{{{DS}}}DigestValue")
        return r

    r_manifest = ref(si, "#IHEManifest", f"{DS}Manifest", explicit_transforms)
    r_props = ref(si, "#xades-props", f"{xades_ns}SignedProperties", explicit_transforms)
    value = etree.SubElement(sig, f"{{{DS}}}SignatureValue")
    x509data = etree.SubElement(etree.SubElement(sig, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
    for c in [cert, *chain]:  # the whole chain in KeyInfo (left open by the spec)
        etree.SubElement(x509data, f"{{{DS}}}X509Certificate").text = _b64(
            c.public_bytes(serialization.Encoding.DER)
        )
    manifest = etree.SubElement(
        etree.SubElement(sig, f"{{{DS}}}Object"), f"{{{DS}}}Manifest", Id="IHEManifest"
    )
    ss_ref = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=f"urn:oid:{ss_uid}")
    etree.SubElement(ss_ref, f"{{{DS}}}DigestMethod", Algorithm=digest_uri)
    etree.SubElement(ss_ref, f"{{{DS}}}DigestValue").text = "AA=="  # placeholder (review note 2)
    for uid, content in documents:
        r = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=f"urn:oid:{uid}")
        if explicit_transforms:  # dmp-protocol.md §7.5: C14N-WithComments transform on each document
            transforms = etree.SubElement(r, f"{{{DS}}}Transforms")
            etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=C14N + "#WithComments")
            # the whole document (prolog PIs and comments included), as xmlsec1 canonicalises it
            data = etree.tostring(etree.fromstring(content).getroottree(), method="c14n", with_comments=True)
        else:  # no transform: the octets of the document (XML-DSig, external URI)
            data = content
        etree.SubElement(r, f"{{{DS}}}DigestMethod", Algorithm=digest_uri)
        etree.SubElement(r, f"{{{DS}}}DigestValue").text = _b64(_digest(data, algo))
    obj = etree.SubElement(sig, f"{{{DS}}}Object")
    if standard_properties:  # review note 1: schema-valid form, the OID inside a foreign element
        props = etree.SubElement(obj, f"{{{DS}}}SignatureProperties")
        prop = etree.SubElement(
            props, f"{{{DS}}}SignatureProperty", Id="purposeOfSignature", Target=f"#{sig_id}"
        )
        etree.SubElement(prop, "{urn:example:client}Purpose").text = "1.2.840.10065.1.12.1.14"
    else:
        props = etree.SubElement(obj, "SignatureProperties")
        etree.SubElement(
            props, "SignatureProperty", Id="purposeOfSignature", Target=f"#{sig_id}"
        ).text = "1.2.840.10065.1.12.1.14"
    qp = etree.SubElement(
        etree.SubElement(sig, f"{{{DS}}}Object"), f"{{{xades_ns}}}QualifyingProperties", Target=f"#{sig_id}"
    )
    sp = etree.SubElement(qp, f"{{{xades_ns}}}SignedProperties", Id="xades-props")
    ssp = etree.SubElement(sp, f"{{{xades_ns}}}SignedSignatureProperties")
    etree.SubElement(ssp, f"{{{xades_ns}}}SigningTime").text = dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    sc = etree.SubElement(ssp, f"{{{xades_ns}}}SigningCertificate")
    dns = DS if cert_digest_in_ds else xades_ns
    for c in [cert, *chain]:
        ce = etree.SubElement(sc, f"{{{xades_ns}}}Cert")
        cd = etree.SubElement(ce, f"{{{xades_ns}}}CertDigest")
        etree.SubElement(cd, f"{{{dns}}}DigestMethod", Algorithm=digest_uri)
        etree.SubElement(cd, f"{{{dns}}}DigestValue").text = _b64(
            _digest(c.public_bytes(serialization.Encoding.DER), algo)
        )
        iss = etree.SubElement(ce, f"{{{xades_ns}}}IssuerSerial")
        etree.SubElement(iss, f"{{{DS}}}X509IssuerName").text = c.issuer.rfc4514_string()
        etree.SubElement(iss, f"{{{DS}}}X509SerialNumber").text = str(c.serial_number)
    etree.SubElement(
        etree.SubElement(ssp, f"{{{xades_ns}}}SignaturePolicyIdentifier"),
        f"{{{xades_ns}}}SignaturePolicyImplied",
    )
    # serialise once and re-parse, so every digest is computed over the transmitted form
    sig = etree.fromstring(etree.tostring(sig))
    for r, target_id in ((r_manifest, "IHEManifest"), (r_props, "xades-props")):
        target = next(e for e in sig.iter() if e.get("Id") == target_id)
        mine = next(e for e in sig.iter(f"{{{DS}}}Reference") if e.get("URI") == r.get("URI"))
        mine.find(f"{{{DS}}}DigestValue").text = _b64(_digest(_c14n(target, canon), algo))
    si = sig.find(f"{{{DS}}}SignedInfo")
    sig.find(f"{{{DS}}}SignatureValue").text = _b64(key.sign(_c14n(si, canon), padding.PKCS1v15(), sig_hash))
    del value
    return etree.tostring(sig, xml_declaration=True, encoding="UTF-8")


def _deposit(dmp: Dmp, *, marker_top_level: bool = False, bare_signature_entry: bool = False, **variant):
    holder = dmp.pki.card("gp")
    content = dmp.document()
    dep = build.provide_and_register(
        [build.DepositDocument(content)], signer=(holder.sign_key, holder.sign_cert, holder.chain)
    )
    sig_cid = next(c for c in dep.attachments if c.startswith("signature01"))
    signature = sign_variant(
        holder.sign_key,
        holder.sign_cert,
        list(holder.chain),
        dep.submission_set_uid,
        [(dep.unique_ids[0], content)],
        **variant,
    )
    dep.attachments[sig_cid] = signature
    objects = dep.body.find(f".//{{{RIM}}}RegistryObjectList")
    for eo in objects.iter(q(RIM, "ExtrinsicObject")):
        if eo.get("id") != "Signature01":
            continue
        xds.set_slot(eo, "hash", [hashlib.sha1(signature).hexdigest()])  # noqa: S324 - XDS hash
        xds.set_slot(eo, "size", [str(len(signature))])
        if bare_signature_entry:  # review note 5: no creationTime/sourcePatientId/author on Signature01
            for slot in eo.findall(q(RIM, "Slot")):
                if slot.get("name") in ("creationTime", "sourcePatientId", "sourcePatientInfo"):
                    eo.remove(slot)
            for cl in eo.findall(q(RIM, "Classification")):
                if cl.get("classificationScheme") == xds.S_AUTHOR_DOC:
                    eo.remove(cl)
    if marker_top_level:  # review note 6: the SubmissionSet marker as a top-level object
        marker = next(
            c
            for c in objects.iter(q(RIM, "Classification"))
            if c.get("classificationNode") == xds.SUBMISSION_SET_NODE
        )
        marker.getparent().remove(marker)
        objects.insert(0, marker)
    return dmp.call("repository", dep.body, caller("gp"), dep.attachments), dep


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"algo": "sha1"},
        {"canon": EXC_C14N},
        {"explicit_transforms": False},
        {"xades_ns": "http://uri.etsi.org/01903/v1.1.1#", "cert_digest_in_ds": False},
        {"standard_properties": False},
        {"marker_top_level": True},
        {"bare_signature_entry": True},
    ],
    ids=[
        "c14n-ds-digests",
        "sha1",
        "exc-c14n",
        "implicit-c14n",
        "xades111",
        "s1-properties",
        "top-marker",
        "bare-sig",
    ],
)
def test_open_forms_are_accepted(dmp: Dmp, variant: dict) -> None:
    resp, dep = _deposit(dmp, **variant)
    assert status_of(resp) == xds.SUCCESS, errors_of(resp)
    assert dmp.store.document(unique_id=dep.unique_ids[0]) is not None


def test_a_variant_signature_still_catches_a_changed_document(dmp: Dmp) -> None:
    holder = dmp.pki.card("gp")
    content = dmp.document()
    dep = build.provide_and_register(
        [build.DepositDocument(content)], signer=(holder.sign_key, holder.sign_cert, holder.chain)
    )
    sig_cid = next(c for c in dep.attachments if c.startswith("signature01"))
    other = content.replace(b"Consultation", b"Consultatiom")
    assert other != content
    signature = sign_variant(
        holder.sign_key,
        holder.sign_cert,
        list(holder.chain),
        dep.submission_set_uid,
        [(dep.unique_ids[0], other)],
    )
    dep.attachments[sig_cid] = signature
    for eo in dep.body.iter(q(RIM, "ExtrinsicObject")):
        if eo.get("id") == "Signature01":
            xds.set_slot(eo, "hash", [hashlib.sha1(signature).hexdigest()])  # noqa: S324 - XDS hash
            xds.set_slot(eo, "size", [str(len(signature))])
    resp = dmp.call("repository", dep.body, caller("gp"), dep.attachments)
    [(code, context)] = errors_of(resp)
    assert code == "XDSRegistryMetadataError" and "signature" in context.lower()
    assert dmp.store.document(unique_id=dep.unique_ids[0]) is None
