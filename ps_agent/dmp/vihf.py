"""VIHF: the SAML 2.0 assertion naming user, structure, mode, patient and purpose (dmp-protocol.md §6).

Signed (enveloped XML-DSig, exc-c14n, RSA-SHA256) through a ``Signer`` whose key never leaves its
token: signxml calls ``key.sign(data, padding=PKCS1v15(), algorithm=SHA256())`` on a duck-typed
key that forwards to ``Signer.sign`` (authentication.md §4.5).
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lxml import etree

from ps_agent.auth.model import AuthMode, ProfessionalIdentity, Signer
from ps_agent.dmp import xmltext
from ps_agent.dmp.errors import ProtocolError
from ps_agent.dmp.lps import LpsInfo as LpsInfo  # re-exported: its historical place
from ps_agent.dmp.model import PatientId
from ps_agent.dmp.xmlns import DS, HL7, SAML2, XS, XSI, q

if TYPE_CHECKING:  # cryptography and signxml are imported where used (the window's start-up)
    from cryptography import x509

VIHF_VERSION = "3.0"  # every S1 sample says 3.0 (S8's table says 4.0) [?]: one place to change it
CS_PROFESSION = "1.2.250.1.71.1.2.7"  # TRE_G15
CS_NON_PS_ROLE = "1.2.250.1.213.1.1.4.6"  # TRE_A00
CS_SPECIALTY = "1.2.250.1.71.4.2.5"  # CPS table R01 (SMxx)
CS_PHARMACIST_SECTION = "1.2.250.1.71.4.2.6"  # TRE_G05
CS_SECTOR = "1.2.250.1.71.4.2.4"  # TRE_R02
CS_PURPOSE = "1.2.250.1.213.1.1.4.248"  # kept as in every sample (§6.2)
PURPOSE_CS_NAME = "mode acces VIHF 2.0"
SMARTCARD = "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI"
# Whether to send the break-glass reason in an optional ``Mode_Acces_Raison`` attribute: no public
# sample shows a carrier [?]; off by default, the reason always goes to the local audit journal.
SEND_EMERGENCY_REASON = False


class Purpose(enum.StrEnum):
    NORMAL = "normal"
    BRIS_DE_GLACE = "bris_de_glace"
    CENTRE_15 = "centre_15"


# Display names: only "normal" has one in the samples (review note 10); the others are ours.
PURPOSE_DISPLAY = {
    Purpose.NORMAL: "Accès normal",
    Purpose.BRIS_DE_GLACE: "Accès en mode bris de glace",
    Purpose.CENTRE_15: "Accès en mode centre de régulation",
}


@dataclass(frozen=True)
class VihfRequest:
    identity: ProfessionalIdentity
    mode: AuthMode
    patient: PatientId | None
    lps: LpsInfo
    purpose: Purpose = Purpose.NORMAL
    reason: str = ""
    secret_minor_connection: bool = False


def issuer_dn(cert: x509.Certificate | None, identity: ProfessionalIdentity) -> str:
    """RFC 2253/4514 subject DN of the signing/authentication certificate (§6.2)."""
    if cert is not None:
        return subject_dn(cert)
    return identity.extra.get("subject_dn") or f"CN={identity.id_nat}"


@functools.lru_cache(maxsize=32)
def subject_dn(cert: x509.Certificate) -> str:
    """``cert``'s subject as an RFC 4514 string, computed once per certificate (≈ 0.2 ms each time)."""
    return cert.subject.rfc4514_string()


@functools.lru_cache(maxsize=32)
def _pem(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ts(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _attr(parent: etree._Element, name: str, *values: str) -> None:
    a = etree.SubElement(parent, q(SAML2, "Attribute"), Name=name)
    for v in values:
        av = etree.SubElement(a, q(SAML2, "AttributeValue"), {q(XSI, "type"): "xs:string"})
        av.text = v


def _ce_attr(parent: etree._Element, name: str, tag: str, codes: list[dict[str, str]]) -> None:
    a = etree.SubElement(parent, q(SAML2, "Attribute"), Name=name)
    for c in codes:
        av = etree.SubElement(a, q(SAML2, "AttributeValue"))
        ce = etree.SubElement(av, q(HL7, tag), nsmap={None: HL7})
        ce.set(q(XSI, "type"), "CE")
        for k, v in c.items():
            ce.set(k, v)


def roles(identity: ProfessionalIdentity) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if identity.profession_code:
        out.append(
            {
                "code": identity.profession_code,
                "codeSystem": CS_PROFESSION,
                "displayName": identity.profession_label or identity.profession_code,
            }
        )
        if identity.specialty_code:
            cs = CS_PHARMACIST_SECTION if identity.profession_code == "21" else CS_SPECIALTY
            out.append(
                {"code": identity.specialty_code, "codeSystem": cs, "displayName": identity.specialty_code}
            )
    elif identity.non_ps_role:
        out.append(
            {
                "code": identity.non_ps_role,
                "codeSystem": CS_NON_PS_ROLE,
                "displayName": identity.profession_label or identity.non_ps_role,
            }
        )
    return out


def build(req: VihfRequest, *, issuer: str, now: datetime | None = None) -> etree._Element:
    """The unsigned assertion (a new tree: sign it with ``sign``). The request path writes its text from
    templates (``assertion_xml``); this tree is for the callers that need the elements (tests, the card's
    and the token's checks, a request ``assertion_xml`` cannot key on)."""
    return build_direct(req, issuer=issuer, now=now)


_AUTHN_STATEMENT = q(SAML2, "AuthnStatement")


def build_direct(
    req: VihfRequest,
    *,
    issuer: str,
    now: datetime | None = None,
    assertion_id: str | None = None,
    patient_cx: str | None = None,
) -> etree._Element:
    """The unsigned assertion built element by element (the reference of ``assertion_xml``'s test).
    ``patient_cx``: the resource-id text instead of ``req.patient.cx`` (a template's marker)."""
    ident = req.identity
    if ident.activity is None:
        raise ProtocolError(
            "Aucune situation d'exercice n'est sélectionnée : impossible de construire le jeton VIHF.",
            code="VIHF_NO_ACTIVITY",
        )
    now = now or datetime.now(UTC)
    a = etree.Element(
        q(SAML2, "Assertion"),
        {"ID": assertion_id or f"_{uuid.uuid4()}", "IssueInstant": _ts(now), "Version": "2.0"},
        nsmap={"saml2": SAML2, "xsi": XSI, "xs": XS},
    )
    iss = etree.SubElement(
        a, q(SAML2, "Issuer"), Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
    )
    iss.text = issuer
    subj = etree.SubElement(a, q(SAML2, "Subject"))
    etree.SubElement(subj, q(SAML2, "NameID")).text = ident.id_nat
    stmt = etree.SubElement(a, q(SAML2, "AuthnStatement"), AuthnInstant=_ts(now))
    ctx = etree.SubElement(stmt, q(SAML2, "AuthnContext"))
    etree.SubElement(ctx, q(SAML2, "AuthnContextClassRef")).text = SMARTCARD
    if req.mode == AuthMode.INDIRECTE_RENFORCEE:
        etree.SubElement(ctx, q(SAML2, "AuthnContextDecl")).text = SMARTCARD
    attrs = etree.SubElement(a, q(SAML2, "AttributeStatement"))
    if req.mode != AuthMode.DIRECTE:
        _attr(attrs, "urn:oasis:names:tc:xspa:1.0:subject:subject-id", ident.display_name)
    _attr(attrs, "Identifiant_Structure", ident.activity.structure_id)
    _attr(attrs, "Secteur_Activite", f"{ident.activity.sector}^{CS_SECTOR}")
    _ce_attr(attrs, "urn:oasis:names:tc:xacml:2.0:subject:role", "Role", roles(ident))
    _attr(attrs, "VIHF_Version", VIHF_VERSION)
    _attr(attrs, "Authentification_mode", req.mode.value)
    if req.patient is not None:
        _attr(attrs, "urn:oasis:names:tc:xacml:2.0:resource:resource-id", patient_cx or req.patient.cx)
    _attr(attrs, "Ressource_URN", "urn:dmp")
    _ce_attr(
        attrs,
        "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
        "PurposeOfUse",
        [
            {
                "code": req.purpose.value,
                "codeSystem": CS_PURPOSE,
                "codeSystemName": PURPOSE_CS_NAME,
                "displayName": PURPOSE_DISPLAY[req.purpose],
            }
        ],
    )
    if req.secret_minor_connection:
        _attr(
            attrs,
            "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code",
            "INVISIBLE_REPRESENTANTS_LEGAUX^1.2.250.1.213.1.1.4.13",
        )
    if SEND_EMERGENCY_REASON and req.reason and req.purpose != Purpose.NORMAL:
        _attr(attrs, "Mode_Acces_Raison", req.reason)
    if req.lps.lps_id:
        _attr(attrs, "LPS_ID", req.lps.lps_id)
    _attr(attrs, "LPS_Nom", req.lps.name)
    _attr(attrs, "LPS_Version", req.lps.version)
    _attr(attrs, "LPS_ID_HOMOLOGATION_DMP", req.lps.homologation_id)
    return a


class SignerKey:
    """The duck-typed RSA private key signxml needs, forwarding to a ``Signer``."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.key_size = signer.certificate.public_key().key_size  # type: ignore[union-attr]

    def sign(self, data: bytes, padding: object, algorithm: object) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

        if not isinstance(padding, PKCS1v15) or not isinstance(algorithm, hashes.SHA256):
            raise ValueError("only RSA PKCS#1 v1.5 with SHA-256 is supported")
        return self._signer.sign(data)

    def public_key(self) -> object:
        return self._signer.certificate.public_key()


EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


@functools.lru_cache(maxsize=32)
def _pem_body(cert: x509.Certificate) -> str:
    """The base64 lines of the certificate's PEM (``ds:X509Certificate`` text, as signxml writes it)."""
    lines = _pem(cert).splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("-----"))


def _exc_c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False)


def sign(assertion: etree._Element, signer: Signer) -> etree._Element:
    """Enveloped XML-DSig right after ``saml2:Issuer`` (§6.4); signs ``assertion`` in place and returns it.

    Exclusive C14N 1.0, SHA-256, RSA-SHA256 (PKCS#1 v1.5), the signing certificate in ``KeyInfo``: the
    signature signxml's ``XMLSigner`` produced for the same settings, byte for byte (PKCS#1 v1.5 is
    deterministic: tests/dmp/test_vihf.py compares both, and verifies with signxml and ``xmlsec1``), built
    directly: one exclusive C14N of the assertion (before the Signature is inserted, which is what the
    enveloped-signature transform removes) and one of SignedInfo, instead of signxml's serialise,
    re-parse and re-canonicalise (≈ 1 ms per request)."""
    issuer = assertion.find(q(SAML2, "Issuer"))
    digest = base64.b64encode(hashlib.sha256(_exc_c14n(assertion)).digest()).decode()
    sig, si, value = _signature(assertion.get("ID") or "", digest, signer.certificate)
    issuer.addnext(sig)  # type: ignore[union-attr]
    value.text = base64.b64encode(signer.sign(_exc_c14n(si))).decode()  # SignedInfo in its final place
    return assertion


def _signature(
    assertion_id: str, digest: str, certificate: x509.Certificate
) -> tuple[etree._Element, etree._Element, etree._Element]:
    """(Signature, its SignedInfo, its empty SignatureValue)."""
    sig = etree.Element(q(DS, "Signature"), nsmap={"ds": DS})
    si = etree.SubElement(sig, q(DS, "SignedInfo"))
    etree.SubElement(si, q(DS, "CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(si, q(DS, "SignatureMethod"), Algorithm=RSA_SHA256)
    ref = etree.SubElement(si, q(DS, "Reference"), URI="#" + assertion_id)
    transforms = etree.SubElement(ref, q(DS, "Transforms"))
    etree.SubElement(transforms, q(DS, "Transform"), Algorithm=ENVELOPED)
    etree.SubElement(transforms, q(DS, "Transform"), Algorithm=EXC_C14N)
    etree.SubElement(ref, q(DS, "DigestMethod"), Algorithm=SHA256)
    etree.SubElement(ref, q(DS, "DigestValue")).text = digest
    value = etree.SubElement(sig, q(DS, "SignatureValue"))
    x509_data = etree.SubElement(etree.SubElement(sig, q(DS, "KeyInfo")), q(DS, "X509Data"))
    etree.SubElement(x509_data, q(DS, "X509Certificate")).text = _pem_body(certificate)
    return sig, si, value


def assertion_xml(
    req: VihfRequest, *, issuer: str, signer: Signer | None, now: datetime | None = None
) -> tuple[bytes, str]:
    """(UTF-8 serialisation, ID) of the assertion ``build`` makes, signed by ``sign`` when ``signer`` is
    given: byte for byte ``etree.tostring(sign(build(req, issuer=issuer), signer), encoding="UTF-8")``
    with a new ID and ``now`` (tests/dmp/test_vihf_template.py), filled into text templates (the exclusive
    C14N forms of the assertion and of SignedInfo, and the serialisation) made once per professional,
    mode, purpose, LPS, issuer, certificate and "with or without a patient": the patient's resource-id is
    a value of the template, so a hospital's batch for thousands of patients uses one template. Per
    request: two hashes, one RSA signature and a few joins."""
    now = now or datetime.now(UTC)
    if req.identity.activity is None:
        build(req, issuer=issuer, now=now)  # its refusal
    cert = signer.certificate if signer is not None else None
    patient = _patient_text(req.patient.cx) if req.patient is not None else b""
    try:
        if patient is None:  # a resource-id whose two written forms differ: a template for this request
            key: tuple[object, ...] = (req, issuer, cert)
        else:
            key = (replace(req, patient=None), req.patient is not None, issuer, cert)
        t = _TEXT_TEMPLATES.get(key)
    except TypeError:  # an unhashable part: the tree
        a = build(req, issuer=issuer, now=now)
        if signer is not None:
            sign(a, signer)
        return etree.tostring(a, encoding="UTF-8"), a.get("ID") or ""
    if t is None:
        t = _text_templates(req, issuer, signer, patient_hole=patient is not None and req.patient is not None)
        if len(_TEXT_TEMPLATES) >= TEXT_TEMPLATES_MAX:
            _TEXT_TEMPLATES.clear()
        _TEXT_TEMPLATES[key] = t
    assertion_id = f"_{uuid.uuid4()}"
    values = {"id": assertion_id.encode(), "time": _ts(now).encode(), "patient": patient or b""}
    assertion, c14n, signed_info = t
    if signer is not None and c14n is not None and signed_info is not None:
        values["digest"] = base64.b64encode(hashlib.sha256(c14n.fill(values)).digest())
        values["value"] = base64.b64encode(signer.sign(signed_info.fill(values)))
    return assertion.fill(values), assertion_id


def _patient_text(cx: str) -> bytes | None:
    """The resource-id text as BOTH templates hold it: lxml's UTF-8 serialisation and the exclusive C14N
    write ``& < >`` alike (``&amp; &lt; &gt;``) and every other XML character as it is, but a CR as
    ``&#13;`` and ``&#xD;`` respectively. None for a value with a CR (or not XML text): no single text
    fits both, the request gets a template of its own (whose build raises lxml's error for non-XML)."""
    if "\r" in cx:
        return None
    try:
        return xmltext.text(cx).encode("utf-8")
    except xmltext.NotXmlText:
        return None


# (serialisation, exclusive C14N of the unsigned assertion, exclusive C14N of SignedInfo): bytes, shared.
# Keyed without the patient: one entry per professional × mode × purpose × LPS (× issuer, certificate).
_TextTemplates = tuple[xmltext.Template, xmltext.Template | None, xmltext.Template | None]
_TEXT_TEMPLATES: dict[tuple[object, ...], _TextTemplates] = {}
TEXT_TEMPLATES_MAX = 256  # cleared when full


def _text_templates(
    req: VihfRequest, issuer: str, signer: Signer | None, *, patient_hole: bool
) -> _TextTemplates:
    names = (
        ("id", "time", "patient", "digest", "value") if patient_hole else ("id", "time", "digest", "value")
    )
    m = {name: xmltext.marker(name) for name in names}
    a = build_direct(req, issuer=issuer, assertion_id=m["id"], patient_cx=m.get("patient"))
    a.set("IssueInstant", m["time"])  # attributes in place: their order is kept
    a.find(_AUTHN_STATEMENT).set("AuthnInstant", m["time"])  # type: ignore[union-attr]
    body = {k: v for k, v in m.items() if k in ("id", "time", "patient")}
    if signer is None:
        return xmltext.Template(etree.tostring(a, encoding="UTF-8"), body), None, None
    c14n = xmltext.Template(_exc_c14n(a), body)
    sig, si, value = _signature(m["id"], m["digest"], signer.certificate)
    a.find(q(SAML2, "Issuer")).addnext(sig)  # type: ignore[union-attr]
    value.text = m["value"]
    signed_info = xmltext.Template(_exc_c14n(si), {"id": m["id"], "digest": m["digest"]})
    return xmltext.Template(etree.tostring(a, encoding="UTF-8"), m), c14n, signed_info


def sign_with_signxml(assertion: etree._Element, signer: Signer) -> etree._Element:
    """The same signature made by signxml's ``XMLSigner`` (the reference ``sign`` is tested against)."""
    from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner

    issuer = assertion.find(q(SAML2, "Issuer"))
    placeholder = etree.Element(q(DS, "Signature"), {"Id": "placeholder"}, nsmap={"ds": DS})
    issuer.addnext(placeholder)  # type: ignore[union-attr]
    pem = _pem(signer.certificate)
    xml_signer = XMLSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    xml_signer.namespaces = {"ds": DS}
    signed = xml_signer.sign(
        assertion,
        key=SignerKey(signer),  # type: ignore[arg-type]
        cert=[pem],
        reference_uri="#" + (assertion.get("ID") or ""),
        id_attribute="ID",
    )
    return signed
