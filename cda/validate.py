"""Built-in validation rules (always on, fast) and the entry point combining them with the official artefacts.

Each rule has an id, a severity (``error`` blocks a deposit, ``warning`` is advice), the XPath of the element
(relative to ``ClinicalDocument``, HL7 namespace implied) and a French message a secretary understands; the
finding's message ends with the XPath, e.g. "Le prénom de naissance du patient est absent
(recordTarget/patientRole/patient/name/given[@qualifier='BR'])". The rules cover every header rule of cda.md 1
that a builder or a foreign document can break, plus the body rules of level 1 and of the VAC-NOTE.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from cda import valuesets as vs
from cda.ins import INS_OIDS, nir_key
from cda.model import parse_ts
from cda.xml import HL7, safe_parse

_H = "{" + HL7 + "}"
_NS = {"h": HL7, "xsi": "http://www.w3.org/2001/XMLSchema-instance"}


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: str  # "error" | "warning"
    xpath: str  # element concerned (built-in: path under ClinicalDocument; official: SVRL/XSD location)
    message: str  # French, for the user
    source: str = "builtin"  # "builtin", "xsd" or the schematron file name

    def __str__(self) -> str:
        level = "ERREUR" if self.severity == "error" else "AVERTISSEMENT"
        return f"[{level}] {self.rule_id} : {self.message}"

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


Check = Callable[[etree._Element], "bool | Iterable[str] | Iterable[tuple[str, str]]"]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    xpath: str
    message: str  # without the trailing "(xpath)"
    check: Check  # True/False, or an iterable of extra details (each one a finding)
    applies: Callable[[etree._Element], bool] | None = None


def _to_xpath(display: str) -> str:
    """'recordTarget/patientRole/id[@root]' -> 'h:recordTarget/h:patientRole/h:id[@root]'."""
    steps, depth, current = [], 0, ""
    for ch in display:
        if ch == "/" and depth == 0:
            steps.append(current)
            current = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        current += ch
    steps.append(current)
    return "/".join(s if s.startswith(("@", ".", "*")) or not s else "h:" + s for s in steps)


_xp_cache: dict[str, etree.XPath] = {}


def xp(root: etree._Element, display: str) -> list[Any]:
    compiled = _xp_cache.get(display)
    if compiled is None:
        compiled = _xp_cache[display] = etree.XPath(_to_xpath(display), namespaces=_NS, smart_strings=False)
    found: list[Any] = compiled(root)
    return found


def _count(display: str, op: str, n: int) -> Check:
    def check(root: etree._Element) -> bool:
        c = len(xp(root, display))
        return {"==": c == n, ">=": c >= n, "<=": c <= n}[op]

    return check


def _one(display: str) -> Check:
    return _count(display, "==", 1)


def _some(display: str) -> Check:
    return _count(display, ">=", 1)


def _nonempty(display: str) -> Check:
    def check(root: etree._Element) -> bool:
        found = xp(root, display)
        return bool(found) and all(
            ("".join(e.itertext()) if hasattr(e, "itertext") else str(e)).strip() for e in found
        )

    return check


def _has_ins(root: etree._Element) -> bool:
    return any(i.get("root") in INS_OIDS for i in xp(root, "recordTarget/patientRole/id"))


def _is_level1(root: etree._Element) -> bool:
    return bool(xp(root, "component/nonXMLBody"))


def _is_vac_note(root: etree._Element) -> bool:
    return bool(xp(root, f"templateId[@root='{vs.TPL_VAC_NOTE}']")) and bool(
        xp(root, "component/structuredBody")
    )


# --- custom checks --------------------------------------------------------------------------------------
def _level1_templates(root: etree._Element) -> bool:
    roots = [t.get("root") for t in xp(root, "templateId")]
    return len(roots) == 3 and vs.TPL_XDS_SD in roots


def _type_in_j07(root: etree._Element) -> Iterable[str]:
    code = xp(root, "code/@code")
    if code and code[0] not in vs.document_types():
        yield f"code « {code[0]} »"
    elif code and not vs.document_types()[code[0]].in_j07:
        yield f"code « {code[0]} » retiré du jeu de valeurs"


def _type_dmp(root: etree._Element) -> Iterable[str]:
    code = xp(root, "code/@code")
    row = vs.document_types().get(code[0]) if code else None
    if row is not None and row.in_j07 and not row.dmp_accepted:
        yield f"code « {code[0]} »"


_TS_TZ = re.compile(r"^\d{12,14}(?:\.\d+)?[+-]\d{4}$")


def _effective_tz(root: etree._Element) -> bool:
    value = xp(root, "effectiveTime/@value")
    return not value or bool(_TS_TZ.match(value[0]))


def _confidentiality(root: etree._Element) -> bool:
    el = xp(root, "confidentialityCode")
    return (
        len(el) == 1
        and el[0].get("codeSystem") == vs.CONFIDENTIALITY
        and el[0].get("code") in ("N", "R", "V")
    )


def _language(root: etree._Element) -> bool:
    value = xp(root, "languageCode/@code")
    return len(value) == 1 and bool(re.fullmatch(r"[a-z]{2}-[A-Z]{2}", value[0]))


def _version(root: etree._Element) -> bool:
    value = xp(root, "versionNumber/@value")
    return len(value) == 1 and value[0].isdigit() and int(value[0]) >= 1


def _ins_value(root: etree._Element) -> Iterable[str]:
    for ident in xp(root, "recordTarget/patientRole/id"):
        if ident.get("root") not in INS_OIDS:
            continue
        value = (ident.get("extension") or "").upper()
        if len(value) != 15 or not re.fullmatch(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{8}", value):
            yield f"matricule « {value} » : 15 caractères attendus"
        elif int(value[13:]) != nir_key(value[:13]):
            yield f"matricule « {value} » : clé {value[13:]} au lieu de {nir_key(value[:13]):02d}"


def _birth_not_future(root: etree._Element) -> Iterable[str]:
    value = xp(root, "recordTarget/patientRole/patient/birthTime/@value")
    if not value:
        return
    try:
        parsed = parse_ts(value[0])
    except Exception:
        yield f"date « {value[0]} » illisible"
        return
    day = parsed.date() if isinstance(parsed, dt.datetime) else parsed
    if day > dt.date.today():
        yield f"date {day:%d/%m/%Y}"


def _gender(root: etree._Element) -> bool:
    code = xp(root, "recordTarget/patientRole/patient/administrativeGenderCode/@code")
    return not code or code[0] in ("M", "F", "U")


_IDNAT_PS = re.compile(r"^(?:8[0-9]{11}|0[0-9A-Z]{9,11}|[0-9]{1,2}[0-9A-Z/]+)$")
_RPPS = re.compile(r"^8[0-9]{11}$")


def _author_ids(root: etree._Element) -> Iterable[str]:
    for ident in xp(root, "author/assignedAuthor/id"):
        if ident.get("root") != vs.ROOT_PS:
            continue
        ext = ident.get("extension") or ""
        if ext.startswith("8") and not _RPPS.match(ext):
            yield f"identifiant « {ext} » : « 8 » + 11 chiffres du RPPS attendu"
        elif not ext:
            yield "identifiant vide"


def _author_code(root: etree._Element) -> Iterable[str]:
    for code in xp(root, "author/assignedAuthor/code"):
        value = code.get("code") or ""
        if code.get("nullFlavor"):
            continue
        if code.get("codeSystem") == vs.TRE_A02_PROFESSION_SAVOIR_FAIRE and not vs.is_author_specialty(value):
            yield f"code « {value} »"


def _author_person(root: etree._Element) -> bool:
    return all(
        a.find(f"{_H}assignedPerson") is not None or a.find(f"{_H}assignedAuthoringDevice") is not None
        for a in xp(root, "author/assignedAuthor")
    )


# The header persons whose civility/title StrucMin checks (author, informant, recipients, authenticators,
# participants, performers, encounter participants); the body (component) is not checked by StrucMin.
_PERSON_NAMES = (
    "/h:ClinicalDocument/*[not(self::h:component)]//h:name[parent::h:assignedPerson"
    " or parent::h:relatedPerson or parent::h:associatedPerson or parent::h:informationRecipient]"
)
_PERSON_NAMES_XP = etree.XPath(_PERSON_NAMES, namespaces=_NS)  # compiled once (≈ 30 µs per compile)


def _name_affixes(root: etree._Element) -> Iterable[tuple[str, str]]:
    """Civility (prefix, JDV_J245) and title (suffix, JDV_J246) of the header's persons."""
    for name in _PERSON_NAMES_XP(root):
        for tag, allowed, what in (
            ("prefix", vs.CIVILITIES_J245, "une civilité (JDV_J245 : M, MME)"),
            ("suffix", vs.TITLES_J246, "un titre (JDV_J246 : DR, PR, MC, MG, PC, PG)"),
        ):
            for el in name.iterchildren(_H + tag):  # findall's Python ElementPath: ≈ 2 µs more each
                value = (el.text or "").strip()
                if value not in allowed:
                    yield (
                        f"« {value} » n'est pas {what}",
                        f"{_local_path(name)}/{tag}",
                    )


def _custodian(root: etree._Element) -> bool:
    ids = xp(root, "custodian/assignedCustodian/representedCustodianOrganization/id/@root")
    return len(ids) >= 1 and ids[0] in (vs.ROOT_STRUCTURE, vs.ROOT_PATIENT_HOST)


def _first_event(root: etree._Element) -> etree._Element | None:
    events = xp(root, "documentationOf/serviceEvent")
    return events[0] if events else None


def _event_time(root: etree._Element) -> bool:
    ev = _first_event(root)
    return ev is None or len(ev.findall(f"{_H}effectiveTime")) == 1


def _event_performer(root: etree._Element) -> bool:
    ev = _first_event(root)
    return ev is None or len([p for p in ev.findall(f"{_H}performer") if p.get("typeCode") == "PRF"]) == 1


def _practice_setting(root: etree._Element) -> Iterable[str]:
    ev = _first_event(root)
    if ev is None:
        return
    code = next(
        (
            c
            for p in ev.iterchildren(f"{_H}performer")
            for e in p.iterchildren(f"{_H}assignedEntity")
            for o in e.iterchildren(f"{_H}representedOrganization")
            for c in o.iterchildren(f"{_H}standardIndustryClassCode")
        ),
        None,
    )  # what ev.find('performer/.../standardIndustryClassCode') answers, without ElementPath
    if code is None:
        yield "absent"
    elif not vs.is_practice_setting(code.get("code") or ""):
        yield f"code « {code.get('code')} » hors JDV_J04"


def _facility(root: etree._Element) -> Iterable[str]:
    code = xp(root, "componentOf/encompassingEncounter/location/healthCareFacility/code")
    if not code:
        yield "absent"
    elif not vs.is_facility_type(code[0].get("code") or ""):
        yield f"code « {code[0].get('code')} » hors JDV_J02"


def _rplc_version(root: etree._Element) -> bool:
    if not xp(root, "relatedDocument[@typeCode='RPLC']"):
        return True
    value = xp(root, "versionNumber/@value")
    return bool(value) and value[0].isdigit() and int(value[0]) > 1


def _body(root: etree._Element) -> bool:
    return bool(xp(root, "component/nonXMLBody") or xp(root, "component/structuredBody"))


# What str.split() removes between base64 lines (ASCII), and the base64 alphabet.
_B64_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _is_strict_base64(payload: str) -> bool:
    """Whether ``payload`` is base64 once whitespace is removed, as
    ``binascii.a2b_base64(..., strict_mode=True)`` accepts it (alphabet, padding only at the end, length
    a multiple of 4), checked with ONE C-level ``bytes.translate`` instead of decoding: the gate runs it
    on every deposit over the whole PDF (≈ 0.15 ms for 270 KB; decoding takes ≈ 0.9 ms, and
    ``a2b_base64(strict_mode=True)`` alone ≈ 0.9 ms too). Deleting the alphabet leaves only what is not
    base64 data (whitespace, "=", foreign characters): a few bytes for a valid payload."""
    try:
        raw = payload.encode("ascii")
    except UnicodeEncodeError:  # non-ASCII whitespace (str.split removes it) or a foreign character
        try:
            binascii.a2b_base64("".join(payload.split()), strict_mode=True)
        except (binascii.Error, ValueError):
            return False
        return True
    rest = raw.translate(None, _B64_ALPHABET)
    core = len(raw) - len(rest)  # base64 data characters
    if not core:
        return False
    pads = rest.count(b"=")
    if len(rest.translate(None, _B64_SPACE)) != pads:
        return False  # a character outside the alphabet
    # every "=" must come after the last data character (only whitespace and "=" after it)
    if pads and raw[len(raw.rstrip(_B64_SPACE + b"=")) :].count(b"=") != pads:
        return False
    # a2b_base64's strict rules for the padding: a complete last quantum may be followed by "="s,
    # a 2- or 3-character one must be padded to exactly 4, a 1-character one is never valid
    missing = -core % 4
    return missing == 0 or (missing < 3 and pads == missing)


def _nonxml_text(root: etree._Element) -> Iterable[str]:
    text = xp(root, "component/nonXMLBody/text")
    if not text:
        yield "élément text absent"
        return
    media, rep = text[0].get("mediaType"), text[0].get("representation")
    if media not in vs.MEDIA_TYPE_FORMATS:
        yield f"mediaType « {media} » (application/pdf, text/plain, image/jpeg, image/tiff, text/rtf)"
    if rep != "B64":
        yield f"representation « {rep} » (B64 attendu)"
        return
    payload = (text[0].text or "").strip()
    if not payload:
        yield "contenu vide"
        return
    try:
        head = base64.b64decode(payload[:64] + "=" * (-len(payload[:64]) % 4), validate=False)
        if not _is_strict_base64(payload):
            raise ValueError("base64")
    except (binascii.Error, ValueError):
        yield "contenu base64 invalide"
        return
    if media == "application/pdf" and b"%PDF-" not in head:
        yield "le contenu n'est pas un PDF (en-tête %PDF- absent)"


_VAC_ENTRY = (
    "component/structuredBody/component/section/entry/substanceAdministration"
    f"[h:templateId/@root='{vs.TPL_IMMUNIZATION_ENTRY}']"
)


def _vac_entries(root: etree._Element) -> list[Any]:
    return xp(root, _VAC_ENTRY)


def _vac_one(root: etree._Element) -> bool:
    return len(_vac_entries(root)) == 1


def _vac_negation(root: etree._Element) -> Iterable[str]:
    for e in _vac_entries(root):
        if e.get("negationInd") is None:
            yield "negationInd absent"
        elif e.get("negationInd") != "false":
            yield (
                "negationInd doit valoir false "
                "(une vaccination non réalisée n'est pas admise dans une note de vaccination)"
            )


def _vac_time(root: etree._Element) -> bool:
    return all(
        len(e.findtext(f"{_H}effectiveTime") or "") == 0
        and len(
            (e.find(f"{_H}effectiveTime").get("value") if e.find(f"{_H}effectiveTime") is not None else "")
            or ""
        )
        == 8
        for e in _vac_entries(root)
    )


def _material(e: etree._Element) -> etree._Element | None:
    return e.find(f"{_H}consumable/{_H}manufacturedProduct/{_H}manufacturedMaterial")


def _vac_code(root: etree._Element) -> Iterable[str]:
    for e in _vac_entries(root):
        m = _material(e)
        code = m.find(f"{_H}code") if m is not None else None
        if code is None or code.get("codeSystem") != vs.CIS or not code.get("displayName"):
            yield "code CIS (1.2.250.1.213.2.3.1) avec displayName attendu"
            continue
        atc = [t for t in code.findall(f"{_H}translation") if t.get("codeSystem") == vs.ATC]
        if not atc or not atc[0].get("displayName"):
            yield "traduction ATC avec displayName attendue"


def _vac_lot(root: etree._Element) -> bool:
    return all(
        (m := _material(e)) is not None and (m.findtext(f"{_H}lotNumberText") or "").strip()
        for e in _vac_entries(root)
    )


def _vac_name(root: etree._Element) -> bool:
    return all(
        (m := _material(e)) is not None
        and (n := m.find(f"{_H}name")) is not None
        and ((n.text or "").strip() or n.get("nullFlavor"))
        for e in _vac_entries(root)
    )


def _vac_author(root: etree._Element) -> Iterable[str]:
    for e in _vac_entries(root):
        a = e.find(f"{_H}author/{_H}assignedAuthor")
        if a is None:
            continue
        code = a.find(f"{_H}code")
        if a.find(f"{_H}id") is None or code is None or not code.get("displayName"):
            yield "id et code (avec displayName) attendus"
        elif a.find(f"{_H}assignedPerson/{_H}name") is None:
            yield "nom attendu"


def _coded_display(root: etree._Element) -> Iterable[str]:
    for e in _vac_entries(root):
        for tag in ("routeCode", "approachSiteCode", "code"):
            el = e.find(_H + tag)
            if el is not None and not el.get("nullFlavor") and not el.get("displayName"):
                yield f"{tag} sans displayName"


ADDR_USES = frozenset({"H", "HP", "HV", "WP", "TMP"})  # StrucMin CI-SISAddr
TELECOM_RE = re.compile(r"^(?:tel|fax|mailto|http|ftp|mllp):\S+$")  # StrucMin CI-SISTelecom
_ALL_ADDR = etree.XPath("//h:addr[@use]", namespaces=_NS)
_ALL_TELECOM = etree.XPath("//h:telecom", namespaces=_NS)


def _addr_use(root: etree._Element) -> Iterable[tuple[str, str]]:
    for addr in _ALL_ADDR(root):
        bad = [u for u in (addr.get("use") or "").split() if u not in ADDR_USES]
        if bad:
            yield f"usage « {' '.join(bad)} » (H, HP, HV, WP ou TMP attendu)", _local_path(addr) + "/@use"


def _telecom(root: etree._Element) -> Iterable[tuple[str, str]]:
    for tel in _ALL_TELECOM(root):
        value = tel.get("value")
        if value is None and tel.get("nullFlavor") in ("NI", "NASK", "UNK", "ASKU", "NAV", "MSK"):
            continue
        if not value or not TELECOM_RE.match(value):
            yield f"« {value or ''} » (forme tel:…, mailto:…, fax:… attendue)", _local_path(tel) + "/@value"


def _local_path(el: etree._Element) -> str:
    names = []
    node: etree._Element | None = el
    while node is not None and isinstance(node.tag, str):
        names.append(etree.QName(node).localname)
        node = node.getparent()
    return "/".join(reversed(names[:-1])) or "ClinicalDocument"


def _r(
    rid: str,
    severity: str,
    xpath: str,
    message: str,
    check: Check,
    applies: Callable[[etree._Element], bool] | None = None,
) -> Rule:
    return Rule(rid, severity, xpath, message, check, applies)


PATIENT = "recordTarget/patientRole/patient"
RULES: tuple[Rule, ...] = (
    _r(
        "CDA-H01",
        "error",
        "realmCode[@code='FR']",
        "Le code de domaine (realmCode) doit être présent une fois et valoir FR",
        _one("realmCode[@code='FR']"),
    ),
    _r(
        "CDA-H02",
        "error",
        "typeId",
        "L'identifiant de type CDA (typeId POCD_HD000040) est absent ou faux",
        _one("typeId[@root='2.16.840.1.113883.1.3'][@extension='POCD_HD000040']"),
    ),
    _r(
        "CDA-H03",
        "error",
        "templateId[@root='2.16.840.1.113883.2.8.2.1']",
        "Le modèle HL7 France doit être déclaré exactement une fois",
        _one("templateId[@root='2.16.840.1.113883.2.8.2.1']"),
    ),
    _r(
        "CDA-H04",
        "error",
        "templateId[@root='1.2.250.1.213.1.1.1.1']",
        "Le modèle CI-SIS doit être déclaré exactement une fois",
        _one("templateId[@root='1.2.250.1.213.1.1.1.1']"),
    ),
    _r(
        "CDA-H05",
        "error",
        "templateId",
        "Le document doit déclarer au moins trois modèles (templateId), dont celui du volet",
        _count("templateId", ">=", 3),
    ),
    _r(
        "CDA-H06",
        "error",
        "templateId",
        "Un document non structuré (niveau 1) doit déclarer exactement trois modèles, "
        "dont XDS-SD 1.3.6.1.4.1.19376.1.2.20",
        _level1_templates,
        _is_level1,
    ),
    _r(
        "CDA-H07",
        "error",
        "id",
        "L'identifiant unique du document est absent",
        _one("id[@root][not(@nullFlavor)]"),
    ),
    _r("CDA-H08", "error", "code", "Le type de document (code) est absent", _one("code[@code]")),
    _r(
        "CDA-H09",
        "error",
        "code",
        "Le type de document est inconnu du jeu de valeurs JDV_J07-XdsTypeCode-CISIS",
        _type_in_j07,
    ),
    _r("CDA-H10", "warning", "code", "Ce type de document n'est pas accepté par le DMP (JDV_J66)", _type_dmp),
    _r(
        "CDA-H11",
        "warning",
        "code/@displayName",
        "Le libellé du type de document (displayName) est absent",
        _one("code/@displayName"),
    ),
    _r("CDA-H12", "error", "title", "Le titre du document est absent", _nonempty("title")),
    _r(
        "CDA-H13",
        "error",
        "effectiveTime",
        "La date de création du document (effectiveTime) est absente",
        _one("effectiveTime[@value]"),
    ),
    _r(
        "CDA-H14",
        "warning",
        "effectiveTime/@value",
        "La date de création devrait comporter l'heure et le fuseau horaire (AAAAMMJJhhmmss+hhmm)",
        _effective_tz,
    ),
    _r(
        "CDA-H15",
        "error",
        "confidentialityCode",
        "Le code de confidentialité doit être présent une fois (N, R ou V du système 2.16.840.1.113883.5.25)",
        _confidentiality,
    ),
    _r(
        "CDA-H16",
        "error",
        "languageCode",
        "La langue du document doit être présente une fois au format xx-XX (fr-FR)",
        _language,
    ),
    _r(
        "CDA-H17",
        "error",
        "setId",
        "L'identifiant de lot de versions (setId) doit être présent une fois",
        _one("setId"),
    ),
    _r(
        "CDA-H18",
        "error",
        "versionNumber",
        "Le numéro de version doit être présent une fois et être un entier supérieur ou égal à 1",
        _version,
    ),
    _r(
        "CDA-P01",
        "error",
        "recordTarget/patientRole/id",
        "L'identifiant du patient (INS) est absent",
        _some("recordTarget/patientRole/id"),
    ),
    _r(
        "CDA-P02",
        "error",
        "recordTarget/patientRole/id/@extension",
        "Le matricule INS du patient est invalide",
        _ins_value,
    ),
    _r(
        "CDA-P03",
        "error",
        f"{PATIENT}/name/family[@qualifier='BR']",
        "Le nom de naissance du patient est absent",
        _nonempty(f"{PATIENT}/name/family[@qualifier='BR']"),
        _has_ins,
    ),
    _r(
        "CDA-P04",
        "error",
        f"{PATIENT}/name/given[@qualifier='BR']",
        "Le prénom de naissance du patient est absent",
        _nonempty(f"{PATIENT}/name/given[@qualifier='BR']"),
        _has_ins,
    ),
    _r(
        "CDA-P05",
        "error",
        f"{PATIENT}/name/given[not(@qualifier)]",
        "La liste des prénoms de naissance du patient est absente",
        _nonempty(f"{PATIENT}/name/given[not(@qualifier)]"),
        _has_ins,
    ),
    _r(
        "CDA-P06",
        "error",
        f"{PATIENT}/birthTime",
        "La date de naissance du patient est absente",
        _one(f"{PATIENT}/birthTime[@value]"),
        _has_ins,
    ),
    _r(
        "CDA-P07",
        "error",
        f"{PATIENT}/birthplace/place/addr/county",
        "Le lieu de naissance du patient (code INSEE) est absent",
        _nonempty(f"{PATIENT}/birthplace/place/addr/county"),
        _has_ins,
    ),
    _r(
        "CDA-P08",
        "error",
        f"{PATIENT}/administrativeGenderCode",
        "Le sexe du patient est absent",
        _one(f"{PATIENT}/administrativeGenderCode[@code]"),
        _has_ins,
    ),
    _r(
        "CDA-P09",
        "error",
        f"{PATIENT}/birthTime",
        "La date de naissance du patient est dans le futur ou illisible",
        _birth_not_future,
    ),
    _r(
        "CDA-P10",
        "error",
        f"{PATIENT}/administrativeGenderCode/@code",
        "Le sexe du patient doit valoir M, F ou U",
        _gender,
    ),
    _r("CDA-A01", "error", "author", "L'auteur du document est absent", _some("author")),
    _r(
        "CDA-A02",
        "error",
        "author/time",
        "La date de rédaction de l'auteur (author/time) est absente",
        lambda r: all(a.find(f"{_H}time") is not None for a in xp(r, "author")),
    ),
    _r(
        "CDA-A03",
        "error",
        "author/assignedAuthor/id",
        "L'identifiant national de l'auteur est mal formé",
        _author_ids,
    ),
    _r(
        "CDA-A04",
        "error",
        "author/assignedAuthor/code",
        "La profession de l'auteur n'est pas dans le jeu de valeurs JDV_J01",
        _author_code,
    ),
    _r(
        "CDA-A05",
        "error",
        "author/assignedAuthor/assignedPerson",
        "L'auteur doit être une personne (assignedPerson) ou un logiciel (assignedAuthoringDevice)",
        _author_person,
    ),
    _r(
        "CDA-A06",
        "error",
        "author/assignedAuthor/assignedPerson/name",
        "Civilité ou titre de la personne invalide",
        _name_affixes,
    ),
    _r(
        "CDA-C01",
        "error",
        "custodian/assignedCustodian/representedCustodianOrganization/id",
        "La structure conservant le document (custodian) est absente ou mal identifiée",
        _custodian,
    ),
    _r(
        "CDA-L01",
        "error",
        "legalAuthenticator",
        "Le responsable du document (legalAuthenticator) doit être présent une fois",
        _one("legalAuthenticator"),
    ),
    _r(
        "CDA-L02",
        "error",
        "legalAuthenticator/signatureCode[@code='S']",
        "Le code de signature du responsable (signatureCode S) est absent",
        _one("legalAuthenticator/signatureCode[@code='S']"),
    ),
    _r(
        "CDA-L03",
        "error",
        "legalAuthenticator/time",
        "La date de validation du responsable est absente",
        _one("legalAuthenticator/time"),
    ),
    _r(
        "CDA-L04",
        "error",
        "legalAuthenticator/assignedEntity/id",
        "L'identifiant du responsable du document est absent",
        _some("legalAuthenticator/assignedEntity/id"),
    ),
    _r(
        "CDA-S01",
        "error",
        "documentationOf/serviceEvent",
        "L'acte documenté (documentationOf/serviceEvent) est absent",
        _some("documentationOf/serviceEvent"),
    ),
    _r(
        "CDA-S02",
        "error",
        "documentationOf/serviceEvent/effectiveTime",
        "La date de l'acte documenté doit être présente une fois",
        _event_time,
    ),
    _r(
        "CDA-S03",
        "error",
        "documentationOf/serviceEvent/performer[@typeCode='PRF']",
        "L'exécutant de l'acte (performer PRF) doit être présent une fois",
        _event_performer,
    ),
    _r(
        "CDA-S04",
        "error",
        "documentationOf/serviceEvent/performer/assignedEntity/representedOrganization/standardIndustryClassCode",
        "Le cadre d'exercice (practiceSettingCode, JDV_J04) est absent ou invalide",
        _practice_setting,
    ),
    _r(
        "CDA-E01",
        "error",
        "componentOf/encompassingEncounter",
        "La prise en charge (componentOf/encompassingEncounter) doit être présente une fois",
        _one("componentOf/encompassingEncounter"),
    ),
    _r(
        "CDA-E02",
        "error",
        "componentOf/encompassingEncounter/effectiveTime",
        "La date de la prise en charge est absente",
        _one("componentOf/encompassingEncounter/effectiveTime"),
    ),
    _r(
        "CDA-E03",
        "error",
        "componentOf/encompassingEncounter/location/healthCareFacility/code",
        "Le type de structure (healthcareFacilityTypeCode, JDV_J02) est absent ou invalide",
        _facility,
    ),
    _r(
        "CDA-R01",
        "error",
        "relatedDocument[@typeCode='RPLC']",
        "Un document ne peut remplacer qu'un seul document",
        _count("relatedDocument[@typeCode='RPLC']", "<=", 1),
    ),
    _r(
        "CDA-R02",
        "warning",
        "versionNumber",
        "Un document de remplacement devrait avoir un numéro de version supérieur à 1",
        _rplc_version,
    ),
    _r(
        "CDA-D01",
        "error",
        "//addr/@use",
        "Le code d'usage d'une adresse est invalide",
        _addr_use,
    ),
    _r(
        "CDA-D02",
        "error",
        "//telecom/@value",
        "Une adresse de télécommunication est invalide",
        _telecom,
    ),
    _r(
        "CDA-B01",
        "error",
        "component",
        "Le corps du document (nonXMLBody ou structuredBody) est absent",
        _body,
    ),
    _r(
        "CDA-B02",
        "error",
        "component/nonXMLBody/text",
        "Le contenu du document non structuré est invalide",
        _nonxml_text,
        _is_level1,
    ),
    _r(
        "VAC-01",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration",
        "Une note de vaccination doit contenir exactement une vaccination",
        _vac_one,
        _is_vac_note,
    ),
    _r(
        "VAC-02",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration/@negationInd",
        "Indicateur de non-réalisation de la vaccination invalide",
        _vac_negation,
        _is_vac_note,
    ),
    _r(
        "VAC-03",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration/effectiveTime",
        "La date de vaccination doit être une date AAAAMMJJ",
        _vac_time,
        _is_vac_note,
    ),
    _r(
        "VAC-04",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration/consumable/manufacturedProduct/manufacturedMaterial/code",
        "Le vaccin doit être codé en CIS avec sa traduction ATC",
        _vac_code,
        _is_vac_note,
    ),
    _r(
        "VAC-05",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration/consumable/manufacturedProduct/manufacturedMaterial/lotNumberText",
        "Le numéro de lot du vaccin est absent",
        _vac_lot,
        _is_vac_note,
    ),
    _r(
        "VAC-06",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration/consumable/manufacturedProduct/manufacturedMaterial/name",
        "Le nom du vaccin (manufacturedMaterial/name) est absent",
        _vac_name,
        _is_vac_note,
    ),
    _r(
        "VAC-07",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration/author/assignedAuthor",
        "L'auteur de la vaccination est incomplet",
        _vac_author,
        _is_vac_note,
    ),
    _r(
        "VAC-08",
        "error",
        "component/structuredBody/component/section/entry/substanceAdministration",
        "Un code de la vaccination n'a pas de libellé (displayName)",
        _coded_display,
        _is_vac_note,
    ),
)


def check_rules(root: etree._Element, rules: Iterable[Rule] = RULES) -> list[Finding]:
    """Run the built-in rules on a parsed ``ClinicalDocument`` element."""
    findings: list[Finding] = []
    applies: dict[Callable[[etree._Element], bool], bool] = {}  # each condition once (_has_ins: 6 rules)
    for rule in rules:
        if rule.applies is not None:
            ok = applies.get(rule.applies)
            if ok is None:
                ok = applies[rule.applies] = rule.applies(root)
            if not ok:
                continue
        result = rule.check(root)
        if result is True:
            continue
        if result is False:
            findings.append(Finding(rule.id, rule.severity, rule.xpath, f"{rule.message} ({rule.xpath})"))
            continue
        for detail in result:
            # a check may name the exact element of each problem: (detail, xpath)
            detail, path = detail if isinstance(detail, tuple) else (detail, rule.xpath)
            findings.append(Finding(rule.id, rule.severity, path, f"{rule.message} : {detail} ({path})"))
    return findings


def validate_builtin(data: bytes | etree._Element) -> list[Finding]:
    """Parse (hardened) and run the built-in rules. Raises ``UnreadableInput`` leaves for unreadable XML.
    An element already parsed with ``cda.xml.safe_parse`` is accepted, so a caller parses once."""
    from cda.parser import check_root

    root = data if isinstance(data, etree._Element) else safe_parse(data)
    check_root(root)  # a non-CDA root: a clear error (building the whole model here cost ≈ 0.8 ms)
    return check_rules(root)


def validate(data: bytes, *, official: Path | str | None = None) -> list[Finding]:
    """Built-in rules, plus the official XSD and schematrons when ``official`` names the artefacts folder."""
    findings = validate_builtin(data)
    if official is not None:
        from cda.official import OfficialValidator

        findings += OfficialValidator(Path(official)).validate(data)
    return findings


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def check_deposit_ready(data: bytes | etree._Element) -> list[Finding]:
    """The gate before a deposit: run the built-in rules and raise ``DocumentNotDepositable`` (French
    message naming each blocking element, ``field`` = XPath of the first) when any error is found.
    Returns the non-blocking findings (warnings) otherwise. Unreadable input raises ``UnreadableInput``.
    """
    from cda.errors import DocumentNotDepositable

    findings = validate_builtin(data)
    blocking = errors(findings)
    if blocking:
        shown = "\n".join(f"- {f.message}" for f in blocking[:5])
        more = f"\n(et {len(blocking) - 5} autre(s) anomalie(s))" if len(blocking) > 5 else ""
        raise DocumentNotDepositable(
            f"Le document ne peut pas être envoyé au DMP : {len(blocking)} anomalie(s) bloquante(s).\n"
            f"{shown}{more}",
            field=blocking[0].xpath,
            findings=blocking,
        )
    return [f for f in findings if f.severity != "error"]
