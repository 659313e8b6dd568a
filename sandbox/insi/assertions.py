"""Assertions of ``wsse:Security`` (insi.md §7.3): the CPx-signed PS assertion and the Vitale assertion.

The PS assertion's XML-DSig (exc-c14n, RSA-SHA256, SHA-256, ``Reference URI="#ID"``) is verified with
``signxml`` against the certificate it embeds, which must chain to the test PKI's *personnes* CA and be a
signature (non-repudiation) certificate. Failures are ``Sender``/``siram_100`` faults with
``sandbox_assertion`` / ``sandbox_vitale`` detail codes (the real codes are not public).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from sandbox.insi.answers import InsiFault, sandbox_fault
from sandbox.insi.data import vitale_card_secret
from sandbox.server import certs

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
ISSUER_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
# CPX = the S2 kit's default when the card type is unknown [I]
NAME_QUALIFIERS = frozenset({"CPS", "CPF", "CDE-CPE", "CPA", "CPX"})
# open question 2: accepted under both names; required for physicians (certificate title)
SPECIALTY_ATTRIBUTES = ("codeSpecialite", "codeSpecialiteAMO")
PHYSICIAN_TITLES = frozenset({"Médecin", "MEDECIN", "Médecin en formation"})
_SECTOR = re.compile(r"^SA\d{2}$")
_SERIAL = re.compile(r"^\d{12}$")


def _ps(reason: str) -> InsiFault:
    return sandbox_fault("sandbox_assertion", reason)


def _vit(reason: str) -> InsiFault:
    return sandbox_fault("sandbox_vitale", reason)


@dataclass(frozen=True)
class PsCaller:
    name_id: str
    qualifier: str
    billing_id: str
    sector: str
    specialty: str
    certificate: x509.Certificate


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _check_frame(a: etree._Element, now: datetime, max_age: timedelta, skew: timedelta, what: str) -> None:
    make = _ps if what == "PS" else _vit
    if a.get("Version") != "2.0" or not (a.get("ID") or "").startswith("_"):
        raise make(f"Assertion {what} : Version 2.0 et ID commençant par « _ » attendus.")
    instant = _instant(a.get("IssueInstant"))
    if instant is None:
        raise make(f"Assertion {what} : IssueInstant absent ou sans fuseau (UTC attendu).")
    if instant > now + skew:
        raise make(f"Assertion {what} : IssueInstant dans le futur.")
    if now - instant > max_age:
        raise make(f"Assertion {what} périmée (émise il y a plus de {int(max_age.total_seconds())} s).")


def verify_ps_assertion(
    a: etree._Element, trust: certs.TrustStore, now: datetime, max_age: timedelta, skew: timedelta
) -> PsCaller:
    _check_frame(a, now, max_age, skew, "PS")
    children = [c for c in a if isinstance(c.tag, str)]
    if len(children) < 2 or children[0].tag != f"{{{SAML}}}Issuer" or children[1].tag != f"{{{DS}}}Signature":
        raise _ps("Assertion PS : Issuer puis la signature XML-DSig de la carte sont obligatoires.")
    issuer, signature = children[0], children[1]
    if issuer.get("Format") != ISSUER_FORMAT:
        raise _ps(f"Assertion PS : Issuer/@Format doit valoir {ISSUER_FORMAT}.")
    method = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}CanonicalizationMethod")
    if method is None or method.get("Algorithm") != EXC_C14N:
        raise _ps("Assertion PS : canonicalisation exclusive (exc-c14n) attendue.")
    cert_el = signature.find(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join((cert_el.text or "").split())))
    except (AttributeError, ValueError, binascii.Error):
        raise _ps(
            "Assertion PS : certificat de signature (KeyInfo/X509Certificate) absent ou illisible."
        ) from None
    try:
        trust.verify(cert)
    except certs.CertificateProblem as exc:
        raise _ps(f"Assertion PS : certificat de signature refusé ({exc.message_fr}).") from None
    if not certs.is_personal(cert) or not certs.is_signature_certificate(cert):
        raise _ps("Assertion PS : le certificat doit être le certificat de signature d'une carte CPx.")
    config = SignatureConfiguration(
        require_x509=True,
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.RSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )
    try:
        result = XMLVerifier().verify(
            etree.tostring(a), x509_cert=cert, expect_config=config, validate_schema=False
        )
    except (InvalidSignature, InvalidInput) as exc:
        raise _ps(f"Assertion PS : signature invalide ({exc}).") from None
    except Exception as exc:  # signxml raises assorted errors on hostile input
        raise _ps(f"Assertion PS : signature invalide ({type(exc).__name__}).") from None
    signed = result.signed_xml  # type: ignore[union-attr]
    if signed is None or signed.tag != f"{{{SAML}}}Assertion" or signed.get("ID") != a.get("ID"):
        raise _ps("Assertion PS : la signature ne couvre pas l'assertion entière.")
    if not certs.same_dn((issuer.text or "").strip(), cert.subject):
        raise _ps("Assertion PS : Issuer différent du nom (DN) du certificat de signature.")
    name_id = signed.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    cn = certs.common_name(cert)
    if name_id is None or (name_id.text or "").strip() != cn:
        raise _ps("Assertion PS : NameID doit être le CN du certificat de signature (identifiant du PS).")
    qualifier = name_id.get("NameQualifier", "")
    if qualifier not in NAME_QUALIFIERS:
        raise _ps(f"Assertion PS : NameQualifier « {qualifier} » inconnu (CPS, CPF, CDE-CPE, CPA, CPX).")
    attrs: dict[str, str] = {}
    for attr in signed.iterfind(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute"):
        value = attr.find(f"{{{SAML}}}AttributeValue")
        attrs[attr.get("Name", "")] = (value.text or "").strip() if value is not None and value.text else ""
    billing = attrs.get("identifiantFacturation", "")
    if not billing:
        raise _ps("Assertion PS : attribut identifiantFacturation obligatoire.")
    sector = attrs.get("secteurActivite", "")
    if not _SECTOR.match(sector):
        raise _ps(f"Assertion PS : secteurActivite « {sector} » invalide (SAxx attendu).")
    specialty = next((attrs[n] for n in SPECIALTY_ATTRIBUTES if attrs.get(n)), "")
    titles = {str(t.value) for t in cert.subject.get_attributes_for_oid(NameOID.TITLE)}
    if titles & PHYSICIAN_TITLES and not specialty:
        raise _ps("Assertion PS : la spécialité AMO (codeSpecialiteAMO) est obligatoire pour un médecin.")
    return PsCaller(cn, qualifier, billing, sector, specialty, cert)


def verify_vitale_assertion(
    a: etree._Element, expected_issuer: str, now: datetime, max_age: timedelta, skew: timedelta
) -> str:
    """The Vitale assertion (WS_INS1); returns the card serial (12 digits)."""
    _check_frame(a, now, max_age, skew, "Vitale")
    issuer = (a.findtext(f"{{{SAML}}}Issuer") or "").strip()
    if issuer != expected_issuer:
        raise _vit(f"Assertion Vitale : Issuer « {issuer} » différent de l'appelant (« {expected_issuer} »).")
    name_id = a.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    serial = (name_id.text or "").strip() if name_id is not None and name_id.text else ""
    if not _SERIAL.match(serial):
        raise _vit("Assertion Vitale : NameID doit être le numéro de série de la carte (12 chiffres).")
    signature = a.find(f"{{{DS}}}Signature")
    if signature is not None:  # optional (insi.md §7.3); when present it must verify
        _verify_vitale_signature(a, signature, serial)
    return serial


VITALE_SANDBOX_SIGNATURE = "urn:ps-agent:sandbox:vitale-hmac-sha256"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def _c14n(el: etree._Element) -> bytes:
    return bytes(etree.tostring(el, method="c14n", exclusive=True, with_comments=False))


def _verify_vitale_signature(a: etree._Element, signature: etree._Element, serial: str) -> None:
    """The sandbox-only HMAC-SHA256 (per-card secret) over the exc-c14n SignedInfo; the real SESAM-Vitale
    algorithms need the GIE's keys and are refused."""
    info = signature.find(f"{{{DS}}}SignedInfo")
    if info is None:
        raise _vit("Assertion Vitale : signature sans SignedInfo.")
    method = info.find(f"{{{DS}}}SignatureMethod")
    algorithm = method.get("Algorithm", "") if method is not None else ""
    if algorithm != VITALE_SANDBOX_SIGNATURE:
        raise _vit(
            f"Assertion Vitale : algorithme de signature « {algorithm} » non vérifiable par le bac à sable."
        )
    c14n_method = info.find(f"{{{DS}}}CanonicalizationMethod")
    refs = info.findall(f"{{{DS}}}Reference")
    if c14n_method is None or c14n_method.get("Algorithm") != EXC_C14N or len(refs) != 1:
        raise _vit("Assertion Vitale : SignedInfo attendu avec exc-c14n et une seule référence.")
    ref = refs[0]
    transforms = [t.get("Algorithm") for t in ref.iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform")]
    digest_method = ref.find(f"{{{DS}}}DigestMethod")
    if (
        ref.get("URI") != "#" + (a.get("ID") or "")
        or transforms != [ENVELOPED, EXC_C14N]
        or digest_method is None
        or digest_method.get("Algorithm") != SHA256
    ):
        raise _vit("Assertion Vitale : la référence signée doit couvrir l'assertion (#ID, SHA-256).")
    unsigned = etree.fromstring(etree.tostring(a))
    for s in unsigned.findall(f"{{{DS}}}Signature"):
        unsigned.remove(s)
    try:
        expected_digest = base64.b64decode(ref.findtext(f"{{{DS}}}DigestValue") or "", validate=True)
        value = base64.b64decode(signature.findtext(f"{{{DS}}}SignatureValue") or "", validate=True)
    except (binascii.Error, ValueError):
        raise _vit("Assertion Vitale : valeurs de signature illisibles (base64).") from None
    if not hmac.compare_digest(hashlib.sha256(_c14n(unsigned)).digest(), expected_digest):
        raise _vit("Assertion Vitale : l'empreinte ne correspond pas (assertion modifiée).")
    mac = hmac.new(vitale_card_secret(serial), _c14n(info), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, value):
        raise _vit("Assertion Vitale : signature de la carte invalide.")
