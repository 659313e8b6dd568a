"""INSi wire format: request envelopes built field by field as insi.md §3.1/§3.2, answers parsed by
namespace and local name (any prefix, any child order inside ``INSACTIF``/``INSHISTO``, unknown extra
elements ignored), faults turned into typed errors (insi.md §4.2).

Parsing uses the project's hardened parser (:func:`cda.xml.safe_parse`: no DTD, no entities, no network).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from cda.errors import CdaError
from cda.xml import safe_parse
from ps_agent.identity import xmlns as ns
from ps_agent.identity.errors import (
    InsiAccessDenied,
    InsiFault,
    InsiProtocolError,
    InsiRequestRefused,
    InsiSoftwareNotAuthorised,
    InsiUnavailable,
)
from ps_agent.identity.model import (
    CodeCR,
    InsiIdentity,
    InsiResult,
    InsNumber,
    InsTraits,
    Operation,
    TraitsQuery,
    VitaleSelection,
)

log = logging.getLogger(__name__)

CTXLPS_VERSION = "01_00"
CTXBAM_VERSION = "01_02"
IDAM_TYPE = "4"  # "IDAM type: numéro d'autorisation" [C:S2,S3,S4]
_MATRICULE = re.compile(r"^\d{6}[A-Za-z0-9]\d{6}$")
_KEY = re.compile(r"^\d{2}$")


@dataclass(frozen=True)
class LpsContext:
    """``ContexteLPS/LPS``: the software as declared to INSi (configuration)."""

    idam: str  # CNDA authorisation number (12 characters)
    name: str  # urn:lps:<name>:<version> form [C:S3,S4]
    version: str
    instance: str  # UUID generated at installation, constant for that installation


@dataclass(frozen=True)
class Prepared:
    """A request ready to send, with the identifiers the audit needs."""

    payload: bytes
    action: str
    message_id: str  # "uuid:…"
    lps_id: str
    bam_id: str


def timestamp(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _sub(parent: etree._Element, namespace: str, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, ns.q(namespace, name))
    if text is not None:
        el.text = text
    return el


def couverture(selection: VitaleSelection | None) -> etree._Element:
    """``ContexteBAM/COUVERTURE``: empty for WS_INS2, filled from the card for WS_INS1 (insi.md §2.4)."""
    cov = etree.Element(ns.q(ns.CTXBAM, "COUVERTURE"))
    if selection is None:
        return cov
    card, ben = selection.card, selection.beneficiary
    for name, value in (
        ("GrandRegime", card.regime),
        ("Organisme", card.caisse),
        ("CodeCentre", card.centre),
    ):
        if value:
            _sub(cov, ns.CTXBAM, name, value)
    assure = _sub(cov, ns.CTXBAM, "ASSURE")
    ident = _sub(assure, ns.CTXBAM, "Id")
    _sub(ident, ns.CTXBAM, "Num", card.assure_nir)
    _sub(ident, ns.CTXBAM, "Cle", card.assure_key)
    b = _sub(cov, ns.CTXBAM, "BENEFICIAIRE")
    if ben.nir:
        nir = _sub(b, ns.CTXBAM, "Nir")
        _sub(nir, ns.CTXBAM, "Num", ben.nir)
        if ben.nir_key:
            _sub(nir, ns.CTXBAM, "Cle", ben.nir_key)
        if ben.nir_certification_date:
            _sub(nir, ns.CTXBAM, "DateCertification", ben.nir_certification_date)
    _sub(b, ns.CTXBAM, "DateNai", ben.birth_date)
    _sub(b, ns.CTXBAM, "Rang", str(ben.rank))
    return cov


def traits_body(query: TraitsQuery, prenom: str) -> etree._Element:
    """``ins:RECSANSVITALE`` with one ``Prenom`` (the service answers a fault to several, insi.md §3.1)."""
    body = etree.Element(ns.q(ns.RECSANS, "RECSANSVITALE"))
    _sub(body, ns.RECSANS, "NomNaissance", query.birth_name)
    _sub(body, ns.RECSANS, "Prenom", prenom)
    _sub(body, ns.RECSANS, "Sexe", str(query.sex))
    _sub(body, ns.RECSANS, "DateNaissance", query.birth_date)
    if query.birth_place:
        _sub(body, ns.RECSANS, "LieuNaissance", query.birth_place)
    return body


def vitale_body(selection: VitaleSelection) -> etree._Element:
    """``vit:RECVITALE`` from the selected beneficiary (insi.md §3.2)."""
    card, ben = selection.card, selection.beneficiary
    body = etree.Element(ns.q(ns.RECVIT, "RECVITALE"))
    if ben.nir:
        _sub(_sub(body, ns.RECVIT, "MatriculeIndividu"), ns.RECVIT, "NumIdentifiant", ben.nir)
    _sub(_sub(body, ns.RECVIT, "MatriculeOD"), ns.RECVIT, "NumIdentifiant", card.assure_nir)
    name = ben.birth_name or card.assure_name
    if name:
        _sub(body, ns.RECVIT, "NomNaissance", name)
    _sub(body, ns.RECVIT, "DateNaissance", ben.birth_date)
    _sub(body, ns.RECVIT, "RangNaissance", str(ben.rank))
    return body


def vitale_serial(serial: str) -> str:
    """Leading zeros stripped, then left-padded to 12 digits (S2, CI-1.0.1-CNAMTS-AC)."""
    return serial.strip().lstrip("0").rjust(12, "0")


def vitale_assertion(selection: VitaleSelection, issuer: str) -> etree._Element:
    """The Vitale assertion of insi.md §2.6. Unsigned unless ``selection.sign`` is given ([I] §6.5: the
    real card-bound signature needs MICA; the emulated card signs with the sandbox-only algorithm)."""
    a = etree.Element(
        ns.q(ns.SAML, "Assertion"),
        {"ID": f"_{uuid.uuid4()}", "IssueInstant": timestamp(selection.read_at), "Version": "2.0"},
        nsmap={None: ns.SAML},
    )
    _sub(a, ns.SAML, "Issuer", issuer)
    subject = _sub(a, ns.SAML, "Subject")
    name_id = _sub(subject, ns.SAML, "NameID", vitale_serial(selection.card.serial))
    name_id.set("NameQualifier", "VITALE")
    if selection.sign is not None:
        _sign_vitale(a, selection.sign, vitale_serial(selection.card.serial))
    return a


# Sandbox-only signature of the emulated Vitale card (insi.md §7.3): never the SESAM-Vitale URIs.
VITALE_SANDBOX_SIGNATURE = "urn:ps-agent:sandbox:vitale-hmac-sha256"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def _c14n(el: etree._Element) -> bytes:
    return bytes(etree.tostring(el, method="c14n", exclusive=True, with_comments=False))


def _sign_vitale(a: etree._Element, sign: Callable[[bytes], bytes], serial: str) -> None:
    """Enveloped XML-DSig after ``Issuer``: reference ``#ID`` (enveloped + exc-c14n, SHA-256), SignedInfo
    exc-c14n, signature value from the card; ``KeyInfo/KeyName`` = the card serial."""
    digest = hashlib.sha256(_c14n(a)).digest()  # the enveloped transform removes the Signature added below
    sig = etree.Element(ns.q(ns.DS, "Signature"), nsmap={"ds": ns.DS})
    info = _sub(sig, ns.DS, "SignedInfo")
    _sub(info, ns.DS, "CanonicalizationMethod").set("Algorithm", _EXC_C14N)
    _sub(info, ns.DS, "SignatureMethod").set("Algorithm", VITALE_SANDBOX_SIGNATURE)
    ref = _sub(info, ns.DS, "Reference")
    ref.set("URI", "#" + (a.get("ID") or ""))
    transforms = _sub(ref, ns.DS, "Transforms")
    _sub(transforms, ns.DS, "Transform").set("Algorithm", _ENVELOPED)
    _sub(transforms, ns.DS, "Transform").set("Algorithm", _EXC_C14N)
    _sub(ref, ns.DS, "DigestMethod").set("Algorithm", _SHA256)
    _sub(ref, ns.DS, "DigestValue", base64.b64encode(digest).decode())
    a[0].addnext(sig)
    value = sign(_c14n(info))
    _sub(sig, ns.DS, "SignatureValue", base64.b64encode(value).decode())
    _sub(_sub(sig, ns.DS, "KeyInfo"), ns.DS, "KeyName", serial)


def build_request(
    operation: Operation,
    body: etree._Element,
    *,
    lps: LpsContext,
    emetteur: str,
    cov: etree._Element,
    assertions: list[etree._Element],
    now: datetime,
) -> Prepared:
    """The SOAP 1.2 envelope: headers ContexteBAM, ContexteLPS, wsa:Action, wsa:MessageID, then
    wsse:Security when there are assertions — the order and values of the spec's examples."""
    action = ns.ACTION_VITALE if operation is Operation.WS_INS1 else ns.ACTION_TRAITS
    body_ns = ("vit", ns.RECVIT) if operation is Operation.WS_INS1 else ("ins", ns.RECSANS)
    nsmap: dict[str | None, str] = {"soap": ns.SOAP, "wsa": ns.WSA}
    if assertions:
        nsmap["wsse"] = ns.WSSE
    nsmap.update({"ctxbam": ns.CTXBAM, "ctxlps": ns.CTXLPS, body_ns[0]: body_ns[1]})
    env = etree.Element(ns.q(ns.SOAP, "Envelope"), nsmap=nsmap)
    header = _sub(env, ns.SOAP, "Header")
    when = timestamp(now)
    bam_id, lps_id, message_id = str(uuid.uuid4()), str(uuid.uuid4()), f"uuid:{uuid.uuid4()}"

    bam = _sub(header, ns.CTXBAM, "ContexteBAM")
    bam.set("Version", CTXBAM_VERSION)
    _sub(bam, ns.CTXBAM, "Id", bam_id)
    _sub(bam, ns.CTXBAM, "Temps", when)
    _sub(bam, ns.CTXBAM, "Emetteur", emetteur)
    bam.append(cov)

    ctx = _sub(header, ns.CTXLPS, "ContexteLPS")
    ctx.set("Nature", "CTXLPS")
    ctx.set("Version", CTXLPS_VERSION)
    _sub(ctx, ns.CTXLPS, "Id", lps_id)
    _sub(ctx, ns.CTXLPS, "Temps", when)
    _sub(ctx, ns.CTXLPS, "Emetteur", emetteur)
    soft = _sub(ctx, ns.CTXLPS, "LPS")
    _sub(soft, ns.CTXLPS, "IDAM", lps.idam).set("R", IDAM_TYPE)
    _sub(soft, ns.CTXLPS, "Version", lps.version)
    _sub(soft, ns.CTXLPS, "Instance", lps.instance)
    _sub(soft, ns.CTXLPS, "Nom", lps.name)

    _sub(header, ns.WSA, "Action", action)
    _sub(header, ns.WSA, "MessageID", message_id)
    if assertions:
        sec = _sub(header, ns.WSSE, "Security")
        for a in assertions:
            sec.append(a)
    _sub(env, ns.SOAP, "Body").append(body)
    payload = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    return Prepared(payload, action, message_id, lps_id, bam_id)


# ------------------------------------------------------------------------------------------- answers


def _local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and _local(c) == name]


def _text(el: etree._Element, name: str) -> str:
    found = _children(el, name)
    return (found[0].text or "").strip() if found else ""


# Known faults (insi.md §4.2): detail code (lower case) -> (class, French message).
FAULT_MESSAGES: dict[str, tuple[type[InsiFault], str]] = {
    "insi_102": (
        InsiUnavailable,
        "Le service INSi est temporairement inaccessible. Réessayez dans quelques instants ; "
        "l'identité du patient n'a pas été modifiée.",
    ),
    "desir_550": (
        InsiSoftwareNotAuthorised,
        "L'accès de ce logiciel au service INSi n'est pas autorisé (numéro d'autorisation CNDA inconnu). "
        "Contactez l'éditeur du logiciel ou votre responsable informatique.",
    ),
    "desir_560": (
        InsiAccessDenied,
        "Niveau d'accès insuffisant : le certificat de l'établissement ne donne pas accès à l'INSi "
        "(un certificat INSI-MANU ou INSI-AUTO est exigé).",
    ),
}


def fault_error(fault: etree._Element, http_status: int) -> InsiFault:
    """A ``soap:Fault`` as a typed error; unknown codes keep the service's own (French) Reason text."""
    code_el = _children(fault, "Code")
    values: list[str] = []
    if code_el:
        node: etree._Element | None = code_el[0]
        while node is not None:
            v = _text(node, "Value")
            if v:
                values.append(v.rpartition(":")[2])
            subs = _children(node, "Subcode")
            node = subs[0] if subs else None
    fault_code = values[0] if values else ""
    subcode = values[1] if len(values) > 1 else ""
    reason = ""
    for r in _children(fault, "Reason"):
        reason = _text(r, "Text")
    erreur = None
    for d in _children(fault, "Detail"):
        for c in d:
            if isinstance(c.tag, str) and _local(c) == "Erreur":
                erreur = c
    detail_code = erreur.get("code", "") if erreur is not None else ""
    detail = (erreur.text or "").strip() if erreur is not None else ""
    severity = erreur.get("severite", "") if erreur is not None else ""
    message_id = erreur.get("messageID", "") if erreur is not None else ""
    known = FAULT_MESSAGES.get(detail_code.lower())
    if known is not None:
        cls, message = known
    else:
        cls = InsiUnavailable if fault_code == "Receiver" else InsiRequestRefused
        shown = reason or detail or "motif non précisé"
        what = detail_code or subcode or fault_code or "inconnu"
        verb = "n'a pas pu traiter" if fault_code == "Receiver" else "a refusé"
        message = f"Le service INSi {verb} la demande : {shown} (code {what})."
    return cls(
        message,
        code=detail_code or subcode or fault_code or "insi_fault",
        fault_code=fault_code,
        subcode=subcode,
        detail_code=detail_code,
        reason=reason,
        detail=detail,
        severity=severity,
        message_id=message_id,
        http_status=http_status,
    )


def _ins(el: etree._Element, what: str) -> InsNumber:
    ids = _children(el, "IdIndividu")
    if not ids:
        raise InsiProtocolError(f"Réponse INSi invalide : {what} sans IdIndividu.", detail=what)
    matricule = _text(ids[0], "NumIdentifiant")
    key = _text(ids[0], "Cle")
    oid = _text(el, "OID")
    if not _MATRICULE.match(matricule):
        raise InsiProtocolError(
            f"Réponse INSi invalide : matricule INS mal formé dans {what}.", detail=f"{what}/NumIdentifiant"
        )
    if key and not _KEY.match(key):
        raise InsiProtocolError(
            f"Réponse INSi invalide : clé du matricule mal formée dans {what}.", detail=what
        )
    if not oid:
        raise InsiProtocolError(
            f"Réponse INSi invalide : {what} sans OID (un matricule ne voyage jamais seul)."
        )
    number = InsNumber(
        matricule,
        key,
        oid,
        _text(ids[0], "TypeMatricule"),
        _text(el, "DateDeb"),
        _text(el, "DateFin"),
    )
    if key and not number.key_valid:
        # kept as returned (CNDA TEST_2.08 cas 2 sends such keys on purpose); never log the INS itself
        log.warning("INSi returned a matricule whose key fails the mod-97 check (%s); kept as returned", what)
    return number


def parse_resultat(resultat: etree._Element) -> tuple[CodeCR, str, InsiIdentity | None]:
    crs = _children(resultat, "CR")
    if not crs:
        raise InsiProtocolError("Réponse INSi invalide : compte rendu (CR) absent.", detail="no CR")
    raw_code, label = _text(crs[0], "CodeCR"), _text(crs[0], "LibelleCR")
    try:
        code = CodeCR(raw_code)
    except ValueError:
        raise InsiProtocolError(
            f"Réponse INSi inattendue : code de compte rendu « {raw_code} » inconnu.",
            detail=f"CodeCR {raw_code!r}",
        ) from None
    individus = _children(resultat, "INDIVIDU")
    if code is not CodeCR.FOUND:
        if individus:
            raise InsiProtocolError(
                f"Réponse INSi incohérente : une identité accompagne le compte rendu {raw_code}.",
                detail="INDIVIDU with CR != 00",
            )
        return code, label, None
    if len(individus) != 1:
        raise InsiProtocolError(
            "Réponse INSi invalide : compte rendu 00 sans identité unique.", detail="INDIVIDU"
        )
    ind = individus[0]
    actifs = _children(ind, "INSACTIF")
    tiqs = _children(ind, "TIQ")
    if len(actifs) != 1 or len(tiqs) != 1:
        raise InsiProtocolError(
            "Réponse INSi invalide : l'identité doit porter un INS actif et ses traits (TIQ).",
            detail="INSACTIF/TIQ",
        )
    tiq = tiqs[0]
    traits = InsTraits(
        birth_name=_text(tiq, "NomNaissance"),
        first_names=_text(tiq, "ListePrenom"),
        sex=_text(tiq, "Sexe"),
        birth_date=_text(tiq, "DateNaissance"),
        birth_place=_text(tiq, "LieuNaissance"),
        first_name=_text(tiq, "Prenom"),
    )
    if (
        not traits.birth_name
        or traits.sex not in ("M", "F")
        or not re.match(r"^\d{4}-\d{2}-\d{2}$", traits.birth_date)
    ):
        raise InsiProtocolError(
            "Réponse INSi invalide : traits INS incomplets ou mal formés (nom, sexe, date de naissance).",
            detail="TIQ",
        )
    history = tuple(_ins(h, "INSHISTO") for h in _children(ind, "INSHISTO"))
    return code, label, InsiIdentity(_ins(actifs[0], "INSACTIF"), traits, history)


def parse_answer(data: bytes, *, operation: Operation, message_id: str, http_status: int) -> InsiResult:
    """Unwrap an answer: a fault raises its typed error, a RESULTAT becomes an :class:`InsiResult`."""
    try:
        root = safe_parse(data)
    except CdaError as exc:
        raise InsiProtocolError(
            "La réponse de l'INSi n'est pas un XML valide.", detail=getattr(exc, "message_fr", str(exc))
        ) from exc
    if root.tag != ns.q(ns.SOAP, "Envelope"):
        raise InsiProtocolError(
            "La réponse de l'INSi n'est pas une enveloppe SOAP 1.2.", detail=str(root.tag)
        )
    bodies = [c for c in root if isinstance(c.tag, str) and c.tag == ns.q(ns.SOAP, "Body")]
    if len(bodies) != 1:
        raise InsiProtocolError("La réponse de l'INSi n'a pas de corps SOAP.", detail="Body")
    children = [c for c in bodies[0] if isinstance(c.tag, str)]
    if len(children) != 1:
        raise InsiProtocolError("Le corps de la réponse INSi est vide ou multiple.", detail="Body children")
    first = children[0]
    if first.tag == ns.q(ns.SOAP, "Fault"):
        raise fault_error(first, http_status)
    if _local(first) != "RESULTAT":
        raise InsiProtocolError(
            "L'INSi a renvoyé un message inattendu (RESULTAT attendu).", detail=f"body {first.tag!r}"
        )
    code, label, identity = parse_resultat(first)
    return InsiResult(operation, code, label, identity, message_id, datetime.now(UTC), data)
