"""Builders of deposit-ready CI-SIS CDA R2 documents: level 1 (PDF / text in nonXMLBody) and the VAC-NOTE.

Inputs are plain dataclasses (``PatientInput``, ``AuthorInput``, ``VaccinationInput``) with ``from_dict`` for
JSON files; every wrong input raises a typed ``CdaError`` leaf whose ``field`` names the input
(``patient.birth_date``, ``author.id_nat``, ``content``...). The header follows cda.md 1 element by element
and in XSD order; ids are UUID-derived OIDs (``2.25.<uuid>``), unique per version without any registration.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import io
import logging
import operator
import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from lxml import etree

from cda import valuesets as vs
from cda.errors import (
    CdaError,
    InputFileError,
    InvalidDate,
    InvalidInput,
    InvalidPdfError,
    InvalidRpps,
    MissingTrait,
)
from cda.ins import OID_NIR, check_nir, check_oid, check_oid_for_environment
from cda.model import CdaDocument, InstanceId
from cda.xml import safe_parse

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_H = "{" + HL7 + "}"

# Default upper bound of a document's content (PDF/text), configurable per call and in the CLI.
DEFAULT_MAX_CONTENT_BYTES = 20 * 1024 * 1024
# Time zone of the timestamps written in the header. [I] French professionals work in metropolitan time;
# overseas practices pass their own tz via ``now``.
DEFAULT_TIMEZONE = "Europe/Paris"
_PYPDF_LOG = logging.getLogger("pypdf")

_RPPS_RE = re.compile(r"^8[0-9]{11}$")
_COG_RE = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")
_GENDER_LABELS = {"M": "Masculin", "F": "Féminin", "U": "Inconnu"}


def now_local() -> dt.datetime:
    try:
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo(DEFAULT_TIMEZONE)).replace(microsecond=0)
    except Exception:  # tz database missing on a minimal system: use the machine's local offset
        return dt.datetime.now().astimezone().replace(microsecond=0)


def new_oid() -> str:
    """A globally unique OID derived from a random UUID (ITU-T X.667 arc 2.25)."""
    return f"2.25.{uuid.uuid4().int}"


def hl7_ts(value: dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()
        return value.strftime("%Y%m%d%H%M%S%z")
    return value.strftime("%Y%m%d")


def _parse_date(value: Any, field: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MissingTrait(f"Information manquante : la date ({field}).", field=field)
    if not isinstance(value, str):
        raise InvalidDate(f"La date doit être un texte AAAA-MM-JJ ({field}).", field=field)
    text = value.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise InvalidDate(
        f"La date « {value} » n'est pas valide (format attendu AAAA-MM-JJ) ({field}).", field=field
    )


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _require(value: Any, field: str, label: str) -> str:
    if isinstance(value, bool) or (value is not None and not isinstance(value, str | int)):
        raise InvalidInput(f"{label} doit être un texte ({field}).", field=field)
    if value is None or not str(value).strip():
        raise MissingTrait(f"Information manquante : {_lower_first(label)} ({field}).", field=field)
    return " ".join(str(value).split())


# What each JSON field is, in the words of the person filling it in.
FIELD_LABELS: dict[str, str] = {
    "patient.ins": "Le matricule INS du patient",
    "patient.birth_family_name": "Le nom de naissance du patient",
    "patient.given_names": "Les prénoms de naissance du patient",
    "patient.birth_date": "La date de naissance du patient",
    "patient.sex": "Le sexe du patient",
    "patient.birth_place_code": "Le lieu de naissance du patient (code INSEE)",
    "author.id_nat": "L'identifiant national (RPPS) de l'auteur",
    "author.family_name": "Le nom de l'auteur",
    "author.given_name": "Le prénom de l'auteur",
    "author.specialty_code": "La profession de l'auteur",
    "author.organization_id": "L'identifiant de la structure",
    "author.organization_name": "Le nom de la structure",
    "author.facility_type_code": "Le type de structure",
    "vaccination.cis_code": "Le code CIS du vaccin",
    "vaccination.vaccine_label": "Le nom du vaccin",
    "vaccination.atc_code": "Le code ATC du vaccin",
    "vaccination.lot_number": "Le numéro de lot",
    "vaccination.date": "La date de vaccination",
}


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T", bound="DataclassInstance")


def _from_dict(cls: type[_T], data: Mapping[str, Any], prefix: str) -> _T:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"Un objet JSON est attendu pour « {prefix} ».", field=prefix)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InvalidInput(
            f"Champ(s) inconnu(s) dans « {prefix} » : {', '.join(unknown)} "
            f"(attendus : {', '.join(sorted(names))}).",
            field=f"{prefix}.{unknown[0]}",
        )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in data:
            key = f"{prefix}.{name}"
            label = FIELD_LABELS.get(key, f"Le champ obligatoire « {key} »")
            raise MissingTrait(f"Information manquante : {_lower_first(label)} ({key}).", field=key)
    hints = _type_hints(cls)
    for name, value in data.items():
        _check_json_type(value, hints[name], f"{prefix}.{name}")
    return cls(**dict(data))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of an input dataclass (``typing.get_type_hints`` costs ≈ 0.1 ms a call)."""
    return typing.get_type_hints(cls)


_TYPE_FR = {str: "un texte", int: "un nombre entier", bool: "vrai ou faux (true/false)", dt.date: "une date"}


def _check_json_type(value: Any, hint: Any, key: str) -> None:
    """Refuse a JSON value of the wrong type (a number for a name, a list for a code…) naming the field."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    for t in allowed:
        if t is type(None):
            continue
        if t is int and isinstance(value, bool):  # JSON true is not a dose rank
            continue
        if isinstance(value, t):
            return
    expected = " ou ".join(_TYPE_FR.get(t, t.__name__) for t in allowed if t is not type(None))
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "…"
    raise InvalidInput(f"Le champ « {key} » doit être {expected} (reçu {shown}).", field=key)


@dataclass
class PatientInput:
    """The patient, identified by the INS with all its traits (cda.md 1 rows 12-12a).

    JSON shape: ``{"ins": "279035121518989", "ins_oid": "1.2.250.1.213.1.4.10",
    "birth_family_name": "PAT-TROIS",
    "given_names": "DOMINIQUE MARIE-LOUISE", "first_given_name": "DOMINIQUE", "birth_date": "1979-03-28",
    "sex": "F", "birth_place_code": "51215", "used_family_name": "", "used_given_name": ""}``
    """

    ins: str
    birth_family_name: str
    given_names: str
    birth_date: str | dt.date
    sex: str
    birth_place_code: str
    ins_oid: str = OID_NIR
    first_given_name: str = ""
    used_family_name: str = ""
    used_given_name: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PatientInput:
        return _from_dict(cls, data, "patient")

    def checked(self, *, today: dt.date | None = None) -> PatientInput:
        """Return a normalised copy, or raise the specific error naming the field."""
        oid = check_oid(self.ins_oid, field="patient.ins_oid")
        ins = check_nir(_require(self.ins, "patient.ins", "Le matricule INS du patient"), field="patient.ins")
        family = _require(
            self.birth_family_name, "patient.birth_family_name", "Le nom de naissance du patient"
        )
        given = _require(self.given_names, "patient.given_names", "Les prénoms de naissance du patient")
        first = " ".join(self.first_given_name.split()) if self.first_given_name else given.split(" ")[0]
        birth = _parse_date(self.birth_date, "patient.birth_date")
        if birth > (today or dt.date.today()):
            raise InvalidDate(
                f"La date de naissance du patient ({birth:%d/%m/%Y}) est dans le futur (patient.birth_date).",
                field="patient.birth_date",
            )
        sex = _require(self.sex, "patient.sex", "Le sexe du patient").upper()
        if sex not in _GENDER_LABELS:
            raise InvalidInput(
                f"Le sexe du patient doit être M, F ou U (reçu « {self.sex} ») (patient.sex).",
                field="patient.sex",
            )
        place = _require(self.birth_place_code, "patient.birth_place_code", "Le lieu de naissance (code COG)")
        place = place.upper()
        if not _COG_RE.match(place):
            raise InvalidInput(
                f"Le lieu de naissance doit être un code INSEE (COG) à 5 caractères (reçu « {place} ») "
                "(patient.birth_place_code).",
                field="patient.birth_place_code",
            )
        return dataclasses.replace(
            self,
            ins=ins,
            ins_oid=oid,
            birth_family_name=family.upper(),
            given_names=given,
            first_given_name=first,
            birth_date=birth,
            sex=sex,
            birth_place_code=place,
        )


@dataclass
class AuthorInput:
    """The author professional and the structure he works for (cda.md 1 rows 13-17).

    JSON shape: ``{"id_nat": "899700000039", "family_name": "PHARMACIEN", "given_name": "PAUL",
    "specialty_code": "G15_21/A", "organization_id": "380000000200015",
    "organization_name": "PHARMACIE DE LA GARE",
    "facility_type_code": "SA33", "practice_setting_code": "AMBULATOIRE", "prefix": ""}``
    """

    id_nat: str  # "8" + RPPS (11 digits)
    family_name: str
    given_name: str
    specialty_code: str  # JDV_J01 / TRE_A02: G15_10/SM26, G15_21/A, G15_60...
    organization_id: str  # idNat_Struct ("1" + FINESS, "3" + SIRET...)
    organization_name: str
    facility_type_code: str  # JDV_J02 (SA07 cabinet, SA33 officine...)
    practice_setting_code: str = "AMBULATOIRE"  # JDV_J04
    prefix: str = ""  # civility, JDV_J245: M, MME (a title such as DR given here moves to suffix)
    suffix: str = ""  # title, JDV_J246: DR, PR, MC, MG, PC, PG

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorInput:
        return _from_dict(cls, data, "author")

    def checked(self) -> AuthorInput:
        id_nat = _require(self.id_nat, "author.id_nat", "L'identifiant national (RPPS) de l'auteur").replace(
            " ", ""
        )
        if not _RPPS_RE.match(id_nat):
            raise InvalidRpps(
                f"L'identifiant de l'auteur « {self.id_nat} » est mal formé : "
                "attendu « 8 » suivi des 11 chiffres "
                "du RPPS (author.id_nat).",
                field="author.id_nat",
            )
        family = _require(self.family_name, "author.family_name", "Le nom de l'auteur")
        given = _require(self.given_name, "author.given_name", "Le prénom de l'auteur")
        vs.check_author_specialty(
            _require(self.specialty_code, "author.specialty_code", "La profession de l'auteur")
        )
        org_id = _require(self.organization_id, "author.organization_id", "L'identifiant de la structure")
        org_name = _require(self.organization_name, "author.organization_name", "Le nom de la structure")
        vs.check_facility_type(self.facility_type_code, field="author.facility_type_code")
        vs.check_practice_setting(self.practice_setting_code, field="author.practice_setting_code")
        prefix, suffix = vs.civility_and_title(self.prefix, self.suffix, field="author")
        return dataclasses.replace(
            self,
            prefix=prefix,
            suffix=suffix,
            id_nat=id_nat,
            family_name=family,
            given_name=given,
            organization_id=org_id,
            organization_name=org_name,
        )


@dataclass(frozen=True)
class Replacement:
    """The version being replaced: the new document keeps its setId and takes versionNumber + 1."""

    document_id: InstanceId
    set_id: InstanceId
    version_number: int

    @classmethod
    def of(cls, previous: CdaDocument) -> Replacement:
        if previous.id is None or previous.set_id is None or previous.version_number is None:
            raise InvalidInput(
                "Le document remplacé n'a pas d'identifiant, de setId ou de numéro de version.",
                field="replaces",
            )
        return cls(previous.id, previous.set_id, previous.version_number)


def _el(
    parent: etree._Element, tag: str, attrib: Mapping[str, str] | None = None, text: str | None = None
) -> etree._Element:
    try:
        el = etree.SubElement(parent, _H + tag, attrib=dict(attrib) if attrib else None)
    except ValueError as exc:  # control characters in an identifier or code
        bad = next((v for v in (attrib or {}).values() if not _xml_safe(v)), "")
        raise InvalidInput(
            f"La valeur « {bad[:40]!r} » contient des caractères interdits ({tag}).", field=tag
        ) from exc
    if text is not None:
        try:
            el.text = text
        except ValueError as exc:  # control characters etc.
            raise InvalidInput(
                f"Le texte « {text[:40]} » contient des caractères interdits.", field=tag
            ) from exc
    return el


def _xml_safe(value: str) -> bool:
    try:
        etree.Element("x", v=value)
    except (ValueError, TypeError):
        return False
    return True


def _name(parent: etree._Element, given: str, family: str, prefix: str = "", suffix: str = "") -> None:
    name = _el(parent, "name")
    if prefix:
        _el(name, "prefix", text=prefix)
    _el(name, "given", text=given)
    _el(name, "family", text=family)
    if suffix:
        _el(name, "suffix", text=suffix)


# --- The header as text ---------------------------------------------------------------------------------
# The header is written as text, with exactly the bytes ``etree.tostring`` gives for the same tree (checked
# by tests/cda/test_build.py against lxml's own serialisation): building its ~75 elements with lxml
# (``SubElement`` + attributes) cost ≈ 0.2 ms per document, the text ≈ 0.04 ms. The VAC-NOTE parses it
# back to append its structured body; the level 1 appends its nonXMLBody as text too.
# What lxml refuses in a value (every character outside XML 1.0 ``Char``): the same refusal, same message.
_NOT_XML_CHAR = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_FORBIDDEN = re.compile(f"[{_NOT_XML_CHAR}]")
# libxml2's escaping when it serialises UTF-8: attributes (double-quoted) and text; one search per value
# finds either a character to escape or a forbidden one.
_ATTR_CHECK = re.compile(f'[&<>"\t\n\r{_NOT_XML_CHAR}]')
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)
_TEXT_CHECK = re.compile(f"[&<>\r{_NOT_XML_CHAR}]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"
_LEVEL1_TAIL = b"</text></nonXMLBody></component></ClinicalDocument>"
_LEVEL1_TEMPLATE_IDS = tuple((t, "") for t in vs.LEVEL1_TEMPLATES)  # the level-1 templateIds, no extension


class _Writer:
    """Appends serialised elements to ``parts`` (HL7 default namespace, no prefix)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def _start(self, tag: str, attrib: Mapping[str, str] | None) -> None:
        out = self.parts
        out.append("<" + tag)
        if attrib:
            for name, value in attrib.items():
                if _ATTR_CHECK.search(value):
                    if _FORBIDDEN.search(value):
                        bad = next((v for v in attrib.values() if _FORBIDDEN.search(v)), "")
                        raise InvalidInput(
                            f"La valeur « {bad[:40]!r} » contient des caractères interdits ({tag}).",
                            field=tag,
                        )
                    value = value.translate(_ATTR_ESCAPES)
                out.append(f' {name}="{value}"')

    def open(self, tag: str, attrib: Mapping[str, str] | None = None) -> None:
        self._start(tag, attrib)
        self.parts.append(">")

    def close(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")

    def leaf(self, tag: str, attrib: Mapping[str, str] | None = None, text: str | None = None) -> None:
        self._start(tag, attrib)
        if text is None:
            self.parts.append("/>")
            return
        if _TEXT_CHECK.search(text):
            if _FORBIDDEN.search(text):
                raise InvalidInput(f"Le texte « {text[:40]} » contient des caractères interdits.", field=tag)
            text = text.translate(_TEXT_ESCAPES)
        self.parts.append(f">{text}</{tag}>")

    def ii(self, tag: str, ii: InstanceId) -> None:
        self.leaf(tag, {"root": ii.root, "extension": ii.extension} if ii.extension else {"root": ii.root})

    def name(self, given: str, family: str, prefix: str = "", suffix: str = "") -> None:
        self.open("name")
        if prefix:
            self.leaf("prefix", text=prefix)
        self.leaf("given", text=given)
        self.leaf("family", text=family)
        if suffix:
            self.leaf("suffix", text=suffix)
        self.close("name")


@dataclass(frozen=True)
class _Header:
    type_row: vs.DocumentType
    title: str
    patient: PatientInput
    author: AuthorInput
    effective: dt.datetime
    service_start: dt.datetime | dt.date
    service_stop: dt.datetime | dt.date | None
    doc_id: InstanceId
    set_id: InstanceId
    version: int
    replaces: Replacement | None
    template_ids: tuple[tuple[str, str], ...]
    service_code: tuple[str, str, str]  # code, codeSystem, displayName


# The parts of the header that depend only on the patient or only on the author, as text, kept for the
# distinct patients/authors last seen (a batch names the same author, often the same patient, many times:
# ≈ 40 µs less per document). Keyed by the field values (the inputs are mutable dataclasses); a value
# lxml would refuse raises each time (exceptions are not cached). Same bytes as writing them each time.
FRAGMENT_CACHE_SIZE = 256
_PATIENT_KEY = operator.attrgetter(*(f.name for f in dataclasses.fields(PatientInput)))
_AUTHOR_KEY = operator.attrgetter(*(f.name for f in dataclasses.fields(AuthorInput)))


@functools.lru_cache(maxsize=FRAGMENT_CACHE_SIZE)
def _record_target_xml(key: tuple[Any, ...]) -> str:
    """``recordTarget`` whole, for the (checked) patient whose field values are ``key``."""
    p = PatientInput(*key)
    w = _Writer()
    w.open("recordTarget")
    w.open("patientRole")
    w.leaf("id", {"root": p.ins_oid, "extension": p.ins})
    w.open("patient")
    w.open("name")
    w.leaf("given", text=p.given_names)
    w.leaf("given", {"qualifier": "BR"}, p.first_given_name)
    w.leaf("family", {"qualifier": "BR"}, p.birth_family_name)
    if p.used_given_name:
        w.leaf("given", {"qualifier": "CL"}, p.used_given_name)
    if p.used_family_name:
        w.leaf("family", {"qualifier": "CL"}, p.used_family_name)
    w.close("name")
    w.leaf(
        "administrativeGenderCode",
        {"code": p.sex, "codeSystem": vs.GENDER, "displayName": _GENDER_LABELS[p.sex]},
    )
    assert isinstance(p.birth_date, dt.date)
    w.leaf("birthTime", {"value": p.birth_date.strftime("%Y%m%d")})
    for tag in ("birthplace", "place", "addr"):
        w.open(tag)
    w.leaf("county", text=p.birth_place_code)
    for tag in ("addr", "place", "birthplace", "patient", "patientRole", "recordTarget"):
        w.close(tag)
    return "".join(w.parts)


@functools.lru_cache(maxsize=FRAGMENT_CACHE_SIZE)
def _author_xml(key: tuple[Any, ...]) -> tuple[str, str, str, str, str]:
    """For the (checked) author whose field values are ``key``: ``assignedAuthor`` to the end of
    ``author`` (after its ``time``), ``custodian`` whole, ``assignedEntity`` to the end of
    ``legalAuthenticator``, ``performer`` to the end of ``documentationOf``, ``location`` to the end of
    ``componentOf``."""
    a = AuthorInput(*key)
    specialty = vs.author_specialties()[a.specialty_code]
    parts: list[str] = []
    w = _Writer()
    w.open("assignedAuthor")
    w.leaf("id", {"root": vs.ROOT_PS, "extension": a.id_nat})
    w.leaf(
        "code",
        {"code": specialty.code, "codeSystem": specialty.code_system, "displayName": specialty.display_name},
    )
    w.open("assignedPerson")
    w.name(a.given_name, a.family_name, a.prefix, a.suffix)
    w.close("assignedPerson")
    w.open("representedOrganization")
    w.leaf("id", {"root": vs.ROOT_STRUCTURE, "extension": a.organization_id})
    w.leaf("name", text=a.organization_name)
    for tag in ("representedOrganization", "assignedAuthor", "author"):
        w.close(tag)
    parts.append("".join(w.parts))

    w = _Writer()
    for tag in ("custodian", "assignedCustodian", "representedCustodianOrganization"):
        w.open(tag)
    w.leaf("id", {"root": vs.ROOT_STRUCTURE, "extension": a.organization_id})
    w.leaf("name", text=a.organization_name)
    for tag in ("representedCustodianOrganization", "assignedCustodian", "custodian"):
        w.close(tag)
    parts.append("".join(w.parts))

    w = _Writer()
    w.open("assignedEntity")
    w.leaf("id", {"root": vs.ROOT_PS, "extension": a.id_nat})
    w.open("assignedPerson")
    w.name(a.given_name, a.family_name, a.prefix, a.suffix)
    for tag in ("assignedPerson", "assignedEntity", "legalAuthenticator"):
        w.close(tag)
    parts.append("".join(w.parts))

    w = _Writer()
    w.open("performer", {"typeCode": "PRF"})
    w.open("assignedEntity")
    w.leaf("id", {"root": vs.ROOT_PS, "extension": a.id_nat})
    w.open("representedOrganization")
    w.leaf("id", {"root": vs.ROOT_STRUCTURE, "extension": a.organization_id})
    w.leaf("name", text=a.organization_name)
    setting = vs.practice_settings()[a.practice_setting_code]
    w.leaf(
        "standardIndustryClassCode",
        {"code": setting.code, "codeSystem": setting.code_system, "displayName": setting.display_name},
    )
    for tag in ("representedOrganization", "assignedEntity", "performer", "serviceEvent", "documentationOf"):
        w.close(tag)
    parts.append("".join(w.parts))

    w = _Writer()
    facility = vs.facility_types()[a.facility_type_code]
    w.open("location")
    w.open("healthCareFacility")
    w.leaf(
        "code",
        {"code": facility.code, "codeSystem": facility.code_system, "displayName": facility.display_name},
    )
    for tag in ("healthCareFacility", "location", "encompassingEncounter", "componentOf"):
        w.close(tag)
    parts.append("".join(w.parts))
    return parts[0], parts[1], parts[2], parts[3], parts[4]


@functools.lru_cache(maxsize=FRAGMENT_CACHE_SIZE)
def _checked_patient_input(key: tuple[Any, ...], today: dt.date) -> PatientInput:
    """``PatientInput(*key).checked()``, kept per distinct patient and day (used read-only: the header)."""
    return PatientInput(*key).checked(today=today)


@functools.lru_cache(maxsize=FRAGMENT_CACHE_SIZE)
def _checked_author_input(key: tuple[Any, ...]) -> AuthorInput:
    """``AuthorInput(*key).checked()``, kept per distinct author (used read-only: the header)."""
    return AuthorInput(*key).checked()


@functools.lru_cache(maxsize=16)
def _document_start_xml(template_ids: tuple[tuple[str, str], ...]) -> str:
    """The ``ClinicalDocument`` start tag, ``realmCode``, ``typeId`` and the ``templateId`` elements."""
    w = _Writer()
    w.parts.append(f'<ClinicalDocument xmlns="{HL7}" xmlns:xsi="{XSI}">')
    w.leaf("realmCode", {"code": "FR"})
    w.leaf("typeId", {"root": vs.TYPE_ID_ROOT, "extension": vs.TYPE_ID_EXT})
    for tpl_root, tpl_ext in template_ids:
        w.leaf("templateId", {"root": tpl_root, **({"extension": tpl_ext} if tpl_ext else {})})
    return "".join(w.parts)


@functools.lru_cache(maxsize=FRAGMENT_CACHE_SIZE)
def _type_code_xml(t: vs.DocumentType) -> str:
    """The document's ``code`` element (its type)."""
    w = _Writer()
    w.leaf(
        "code",
        {
            "code": t.code,
            "codeSystem": t.code_system,
            "codeSystemName": t.code_system_name,
            "displayName": t.label,
        },
    )
    return "".join(w.parts)


def _constant_xml() -> str:
    w = _Writer()
    w.leaf("confidentialityCode", {"code": "N", "codeSystem": vs.CONFIDENTIALITY, "displayName": "Normal"})
    w.leaf("languageCode", {"code": "fr-FR"})
    return "".join(w.parts)


_CONFIDENTIALITY_LANGUAGE_XML = _constant_xml()


@functools.lru_cache(maxsize=FRAGMENT_CACHE_SIZE)
def _service_code_xml(service_code: tuple[str, str, str]) -> str:
    """The ``serviceEvent``'s ``code`` element (of the document's type)."""
    code, system, display = service_code
    w = _Writer()
    w.leaf("code", {"code": code, "codeSystem": system, "displayName": display})
    return "".join(w.parts)


def _header_xml(h: _Header) -> str:
    """The ``ClinicalDocument`` start tag and its header children, as text (the element left open). The
    timestamps (``hl7_ts``: digits and a sign) and the version number (a number) hold no character to escape:
    written as they are, as the element tags around them."""
    w = _Writer()
    parts = w.parts
    parts.append(_document_start_xml(h.template_ids))
    w.ii("id", h.doc_id)
    parts.append(_type_code_xml(h.type_row))
    w.leaf("title", text=h.title)
    ts = hl7_ts(h.effective)
    start = hl7_ts(h.service_start)
    parts.append(f'<effectiveTime value="{ts}"/>')
    parts.append(_CONFIDENTIALITY_LANGUAGE_XML)
    w.ii("setId", h.set_id)
    parts.append(f'<versionNumber value="{h.version}"/>')

    parts.append(_record_target_xml(_PATIENT_KEY(h.patient)))
    assigned_author, custodian, legal_entity, performer, location = _author_xml(_AUTHOR_KEY(h.author))
    parts.append(f'<author><time value="{ts}"/>')
    parts.append(assigned_author)
    parts.append(custodian)
    parts.append(f'<legalAuthenticator><time value="{ts}"/><signatureCode code="S"/>')
    parts.append(legal_entity)

    parts.append("<documentationOf><serviceEvent>")
    parts.append(_service_code_xml(h.service_code))
    parts.append(f'<effectiveTime><low value="{start}"/>')
    if h.service_stop is not None:
        parts.append(f'<high value="{hl7_ts(h.service_stop)}"/>')
    parts.append("</effectiveTime>")
    parts.append(performer)

    if h.replaces is not None:  # CDA R2 order: documentationOf, relatedDocument, componentOf
        parts.append('<relatedDocument typeCode="RPLC"><parentDocument>')
        w.ii("id", h.replaces.document_id)
        parts.append("</parentDocument></relatedDocument>")

    parts.append(f'<componentOf><encompassingEncounter><effectiveTime><low value="{start}"/></effectiveTime>')
    parts.append(location)
    return "".join(parts)


def _header(h: _Header) -> etree._Element:
    """The header as an lxml tree (the VAC-NOTE appends its structured body to it)."""
    return safe_parse((_header_xml(h) + "</ClinicalDocument>").encode("utf-8"))


def _ids(replaces: Replacement | None, document_id: InstanceId | None) -> tuple[InstanceId, InstanceId, int]:
    doc_id = document_id or InstanceId(new_oid())
    if replaces is None:
        return doc_id, InstanceId(new_oid()), 1
    if replaces.document_id == doc_id:
        raise InvalidInput(
            "Le nouveau document doit avoir un identifiant différent de celui qu'il remplace.",
            field="document_id",
        )
    return doc_id, replaces.set_id, replaces.version_number + 1


def _checked_patient(patient: PatientInput, environment: str | None) -> PatientInput:
    """``patient.checked()``, kept per distinct patient and day (a value that cannot be a key: checked each
    time), and its INS OID checked against ``environment`` when given."""
    try:
        checked = _checked_patient_input(_PATIENT_KEY(patient), dt.date.today())
    except TypeError:
        checked = patient.checked()
    if environment:
        check_oid_for_environment(checked.ins_oid, environment, field="patient.ins_oid")
    return checked


def _check_title(title: str) -> str:
    if not title or not title.strip():
        raise InvalidInput("Le titre du document est absent (title).", field="title")
    return " ".join(title.split())


def check_content(content: bytes, media_type: str, *, max_bytes: int = DEFAULT_MAX_CONTENT_BYTES) -> None:
    """Refuse an empty, oversize, or mislabelled body: PDF header + pypdf must open it; text must be UTF-8."""
    if not content:
        raise InputFileError("Le fichier du document est vide.", field="content")
    if len(content) > max_bytes:
        raise InputFileError(
            f"Le fichier du document est trop volumineux ({size_mb(len(content))}, "
            f"limite {size_mb(max_bytes)}).",
            field="content",
        )
    if media_type == "application/pdf":
        if b"%PDF-" not in content[:1024]:
            raise InvalidPdfError(
                "Le fichier fourni n'est pas un PDF (en-tête %PDF- absent).", field="content"
            )
        from pypdf import PdfReader

        # pypdf logs its own warnings ("EOF marker not found"); the user gets our French error instead.
        # (setLevel clears every logger's level cache: only when needed, not on each document)
        if _PYPDF_LOG.level != logging.ERROR:
            _PYPDF_LOG.setLevel(logging.ERROR)
        try:
            reader = PdfReader(io.BytesIO(content))
            if reader.is_encrypted:
                raise InvalidPdfError(
                    "Le PDF est chiffré ou protégé par mot de passe : le DMP exige un PDF lisible.",
                    field="content",
                )
            if len(reader.pages) < 1:
                raise InvalidPdfError("Le PDF ne contient aucune page.", field="content")
        except InvalidPdfError:
            raise
        except Exception as exc:  # any failure of pypdf on a corrupt file is a refusal, never a crash
            raise InvalidPdfError(
                f"Le fichier PDF est illisible ou endommagé ({type(exc).__name__}).", field="content"
            ) from exc
    elif media_type == "text/plain":
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFileError("Le fichier texte n'est pas encodé en UTF-8.", field="content") from exc
    else:
        raise InputFileError(
            f"Type de contenu « {media_type} » non pris en charge (PDF ou texte seulement).",
            field="media_type",
        )


def guess_media_type(content: bytes) -> str:
    """PDF when the %PDF- header is in the first KiB (where readers look for it), else plain text."""
    return "application/pdf" if b"%PDF-" in content[:1024] else "text/plain"


def size_mb(n: int) -> str:
    """A byte count in Mo (MiB) the French way, precise enough that a file just over a limit shows it."""
    mb = n / 1048576
    text = f"{mb:.0f}" if n % 1048576 == 0 else f"{mb:.2f}"
    return text.replace(".", ",") + " Mo"


def serialize(root: etree._Element) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def level1(
    *,
    type_code: str,
    content: bytes,
    title: str,
    patient: PatientInput,
    author: AuthorInput,
    media_type: str | None = None,
    replaces: Replacement | None = None,
    document_id: InstanceId | None = None,
    effective_time: dt.datetime | None = None,
    service_start: dt.datetime | dt.date | None = None,
    service_stop: dt.datetime | dt.date | None = None,
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
    environment: str | None = None,
) -> bytes:
    """Build a level-1 CDA (nonXMLBody, B64) for a type code the DMP accepts; return the XML bytes.

    ``environment`` ("production", "test", "demo"), when given, also checks that the INS OID suits it.
    """
    type_row = vs.check_dmp_type(type_code)
    title = _check_title(title)
    patient = _checked_patient(patient, environment)
    try:  # the checked author is kept per distinct author (a value that cannot be a key: checked each time)
        author = _checked_author_input(_AUTHOR_KEY(author))
    except TypeError:
        author = author.checked()
    media_type = media_type or guess_media_type(content)
    check_content(content, media_type, max_bytes=max_content_bytes)
    effective = effective_time or now_local()
    doc_id, set_id, version = _ids(replaces, document_id)
    header = _header_xml(
        _Header(
            type_row=type_row,
            title=title,
            patient=patient,
            author=author,
            effective=effective,
            service_start=service_start or effective,
            service_stop=service_stop,
            doc_id=doc_id,
            set_id=set_id,
            version=version,
            replaces=replaces,
            template_ids=_LEVEL1_TEMPLATE_IDS,
            service_code=(type_row.code, type_row.code_system, type_row.label),
        )
    )
    head = (_XML_DECLARATION + header + _level1_body_start_xml(media_type)).encode("utf-8")
    return b"".join((head, base64.b64encode(content), _LEVEL1_TAIL))


@functools.lru_cache(maxsize=4)
def _level1_body_start_xml(media_type: str) -> str:
    """``<component><nonXMLBody><text mediaType=… representation="B64">`` (a media type ``check_content``
    accepted)."""
    w = _Writer()
    w.open("component")
    w.open("nonXMLBody")
    w.open("text", {"mediaType": media_type, "representation": "B64"})
    return "".join(w.parts)


# --- Vaccination note (VAC-NOTE 2023.01) ----------------------------------------------------------------
VACCINATION_KINDS = {
    "IMMUNIZ": "Vaccination sans autre précision",
    "INITIMMUNIZ": "Primovaccination",
    "BOOSTER": "Rappel",
}


@dataclass
class VaccinationInput:
    """One vaccination act (or a vaccination that was NOT given: ``given=False``).

    JSON shape: ``{"cis_code": "68747507", "vaccine_label": "VACCIN TETANIQUE PASTEUR, suspension injectable",
    "atc_code": "J07AM01", "atc_label": "", "brand_name": "", "lot_number": "AB123", "date": "2026-11-25",
    "dose_rank": 1, "kind": "IMMUNIZ", "route_code": "20035000", "site_code": "16217701000119102",
    "given": true}``
    ``atc_label``, ``route_label``, ``site_label`` default to the value-set display names.
    """

    cis_code: str
    vaccine_label: str
    atc_code: str
    lot_number: str
    date: str | dt.date
    atc_label: str = ""
    brand_name: str = ""
    dose_rank: int | None = None
    kind: str = "IMMUNIZ"
    route_code: str = ""
    route_label: str = ""
    site_code: str = ""
    site_label: str = ""
    given: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VaccinationInput:
        return _from_dict(cls, data, "vaccination")

    def checked(self, *, today: dt.date | None = None) -> VaccinationInput:
        from cda.vaccinations import atc_info, route_label, site_label

        cis = _require(self.cis_code, "vaccination.cis_code", "Le code CIS du vaccin")
        if not re.fullmatch(r"[0-9]{8}", cis):
            raise InvalidInput(
                f"Le code CIS du vaccin doit compter 8 chiffres (reçu « {cis} ») (vaccination.cis_code).",
                field="vaccination.cis_code",
            )
        label = _require(self.vaccine_label, "vaccination.vaccine_label", "Le nom du vaccin")
        atc = _require(self.atc_code, "vaccination.atc_code", "Le code ATC du vaccin").upper()
        if not atc.startswith("J07"):
            raise InvalidInput(
                f"Le code ATC « {atc} » n'est pas un code de vaccin (J07…) (vaccination.atc_code).",
                field="vaccination.atc_code",
            )
        atc_label = self.atc_label or atc_info(atc)[0]
        if not atc_label:
            raise MissingTrait(
                "Le libellé ATC du vaccin est absent (vaccination.atc_label).", field="vaccination.atc_label"
            )
        lot = _require(self.lot_number, "vaccination.lot_number", "Le numéro de lot")
        when = _parse_date(self.date, "vaccination.date")
        if when > (today or dt.date.today()):
            raise InvalidDate(
                f"La date de vaccination ({when:%d/%m/%Y}) est dans le futur (vaccination.date).",
                field="vaccination.date",
            )
        if self.dose_rank is not None and (
            not isinstance(self.dose_rank, int) or not 1 <= self.dose_rank <= 20
        ):
            raise InvalidInput(
                "Le rang de la dose doit être un entier de 1 à 20 (vaccination.dose_rank).",
                field="vaccination.dose_rank",
            )
        kind = (self.kind or "IMMUNIZ").upper()
        if kind not in VACCINATION_KINDS:
            raise InvalidInput(
                f"Le type de vaccination « {self.kind} » est inconnu (IMMUNIZ, INITIMMUNIZ, BOOSTER).",
                field="vaccination.kind",
            )
        r_label = _coded_label(
            self.route_code,
            self.route_label,
            route_label,
            "Voie d'administration « {} » inconnue",
            "route_code",
        )
        s_label = _coded_label(
            self.site_code, self.site_label, site_label, "Site d'injection « {} » inconnu", "site_code"
        )
        if not isinstance(self.given, bool):
            raise InvalidInput(
                "« given » doit valoir true ou false (vaccination.given).", field="vaccination.given"
            )
        return dataclasses.replace(
            self,
            cis_code=cis,
            vaccine_label=label,
            atc_code=atc,
            atc_label=atc_label,
            lot_number=lot,
            date=when,
            kind=kind,
            route_label=r_label,
            site_label=s_label,
            brand_name=self.brand_name or label,
        )


VAC_NOTE_TYPE = "87273-9"


# [I] How a title of JDV_J246 is written before a name in a narrative: the usual abbreviations for
# « Docteur » and « Professeur », the full title otherwise (« Pharmacien colonel Paul DURAND »).
NARRATIVE_TITLES = {"DR": "Dr", "PR": "Pr"}


def vaccinator_line(author: AuthorInput, profession: str, *, given: bool = True) -> str:
    """« Vaccination réalisée par Dr Paul PHARMACIEN (Pharmacien titulaire d'officine) » (REC_2.1-2060);
    for a vaccination not given: « Vaccination non réalisée, constatée par … »."""
    title = NARRATIVE_TITLES.get(author.suffix, vs.TITLES_J246.get(author.suffix, ""))
    who = " ".join(p for p in (title, author.given_name.strip(), author.family_name.strip()) if p)
    lead = "Vaccination réalisée par" if given else "Vaccination non réalisée, constatée par"
    return f"{lead} {who} ({profession})"


def vaccination_note(
    *,
    patient: PatientInput,
    author: AuthorInput,
    vaccination: VaccinationInput,
    title: str = "Note de vaccination",
    replaces: Replacement | None = None,
    document_id: InstanceId | None = None,
    effective_time: dt.datetime | None = None,
    environment: str | None = None,
) -> bytes:
    """Build a structured VAC-NOTE 2023.01 (one FR-Vaccination entry) and return the XML bytes."""
    type_row = vs.check_dmp_type(VAC_NOTE_TYPE)
    title = _check_title(title)
    patient = _checked_patient(patient, environment)
    author = author.checked()
    vac = vaccination.checked()
    assert isinstance(vac.date, dt.date)
    effective = effective_time or now_local()
    doc_id, set_id, version = _ids(replaces, document_id)
    root = _header(
        _Header(
            type_row=type_row,
            title=title,
            patient=patient,
            author=author,
            effective=effective,
            service_start=vac.date,
            service_stop=None,
            doc_id=doc_id,
            set_id=set_id,
            version=version,
            replaces=replaces,
            template_ids=(
                (vs.TPL_HL7_FRANCE, ""),
                (vs.TPL_CISIS, ""),
                (vs.TPL_PCC_IMMUNIZATION_CONTENT, ""),
                (vs.TPL_VAC_NOTE, "2023.01"),
            ),
            service_code=(type_row.code, type_row.code_system, type_row.label),
        )
    )
    specialty = vs.author_specialties()[author.specialty_code]
    section = _el(_el(_el(_el(root, "component"), "structuredBody"), "component"), "section")
    for tpl in ("2.16.840.1.113883.10.20.1.6", vs.TPL_IMMUNIZATIONS_SECTION, "1.2.250.1.213.1.1.2.147"):
        _el(section, "templateId", {"root": tpl})
    _el(section, "id", {"root": new_oid()})
    _el(
        section,
        "code",
        {
            "code": "11369-6",
            "codeSystem": vs.LOINC,
            "codeSystemName": "LOINC",
            "displayName": "Historique des vaccinations",
        },
    )
    _el(section, "title", text=title)
    text = _el(section, "text")
    table = _el(text, "table")
    head = _el(_el(table, "thead"), "tr")
    for label in ("Date", "Vaccin", "Lot", "Rang", "Statut"):
        _el(head, "th", text=label)
    row = _el(_el(table, "tbody"), "tr")
    _el(row, "td", text=vac.date.strftime("%d/%m/%Y"))
    _el(_el(row, "td"), "content", {"ID": "vac-1"}, vac.vaccine_label)
    _el(row, "td", text=vac.lot_number)
    _el(row, "td", text=str(vac.dose_rank) if vac.dose_rank else "")
    _el(row, "td", text="Administré" if vac.given else "Non administré")
    # REC_2.1-2060 (dmp-ui-requirements 10.5): who vaccinated, with title and profession, so that a reader
    # tells a professional's entry from the patient's own (the vaccinator is the author: the card signs)
    _el(text, "paragraph", text=vaccinator_line(author, specialty.display_name, given=vac.given))

    sbadm = _el(
        _el(section, "entry"),
        "substanceAdministration",
        {"classCode": "SBADM", "moodCode": "EVN", "negationInd": "false" if vac.given else "true"},
    )
    for tpl in ("2.16.840.1.113883.10.20.1.24", vs.TPL_IMMUNIZATION_ENTRY, "1.2.250.1.213.1.1.3.45"):
        _el(sbadm, "templateId", {"root": tpl})
    _el(sbadm, "id", {"root": new_oid()})
    _el(
        sbadm,
        "code",
        {"code": vac.kind, "codeSystem": vs.ACT_CODE, "displayName": VACCINATION_KINDS[vac.kind]},
    )
    _el(_el(sbadm, "text"), "reference", {"value": "#vac-1"})
    _el(sbadm, "statusCode", {"code": "completed"})
    _el(sbadm, "effectiveTime", {"value": vac.date.strftime("%Y%m%d")})
    if vac.route_code:
        _el(
            sbadm,
            "routeCode",
            {"code": vac.route_code, "codeSystem": vs.EDQM_ROUTE, "displayName": vac.route_label},
        )
    if vac.site_code:
        _el(
            sbadm,
            "approachSiteCode",
            {"code": vac.site_code, "codeSystem": vs.SNOMED, "displayName": vac.site_label},
        )
    product = _el(_el(sbadm, "consumable", {"typeCode": "CSM"}), "manufacturedProduct")
    for tpl in ("2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2", "1.2.250.1.213.1.1.3.43"):
        _el(product, "templateId", {"root": tpl})
    material = _el(product, "manufacturedMaterial")
    code = _el(
        material,
        "code",
        {
            "code": vac.cis_code,
            "codeSystem": vs.CIS,
            "codeSystemName": "CIS",
            "displayName": vac.vaccine_label,
        },
    )
    _el(_el(code, "originalText"), "reference", {"value": "#vac-1"})
    _el(
        code,
        "translation",
        {"code": vac.atc_code, "codeSystem": vs.ATC, "codeSystemName": "ATC", "displayName": vac.atc_label},
    )
    _el(material, "name", text=vac.brand_name)
    _el(material, "lotNumberText", text=vac.lot_number)
    for tag, attrs in (
        ("performer", {"typeCode": "PRF"}),
        ("author", {"typeCode": "AUT", "contextControlCode": "OP"}),
    ):
        who = _el(sbadm, tag, attrs)
        if tag == "author":
            _el(who, "time", {"value": hl7_ts(effective)})
        entity = _el(who, "assignedEntity" if tag == "performer" else "assignedAuthor")
        _el(entity, "id", {"root": vs.ROOT_PS, "extension": author.id_nat})
        _el(
            entity,
            "code",
            {
                "code": specialty.code,
                "codeSystem": specialty.code_system,
                "displayName": specialty.display_name,
            },
        )
        person = _el(entity, "assignedPerson")
        _name(person, author.given_name, author.family_name, author.prefix, author.suffix)
    if vac.dose_rank:
        obs = _el(
            _el(sbadm, "entryRelationship", {"typeCode": "SUBJ"}),
            "observation",
            {"classCode": "OBS", "moodCode": "EVN"},
        )
        _el(obs, "templateId", {"root": "2.16.840.1.113883.10.20.1.46"})
        _el(obs, "templateId", {"root": vs.TPL_DOSE_RANK})
        _el(obs, "code", {"code": "30973-2", "codeSystem": vs.LOINC, "displayName": "Rang de la vaccination"})
        _el(obs, "statusCode", {"code": "completed"})
        _el(obs, "value", {"{" + XSI + "}type": "INT", "value": str(vac.dose_rank)})
    return serialize(root)


__all__ = [
    "DEFAULT_MAX_CONTENT_BYTES",
    "AuthorInput",
    "CdaError",
    "PatientInput",
    "Replacement",
    "VaccinationInput",
    "check_content",
    "level1",
    "vaccination_note",
    "vaccinator_line",
]


def _coded_label(code: str, label: str, lookup: Callable[[str], str], unknown: str, field_name: str) -> str:
    """The label given, or the value set's label of ``code``; an unknown code is refused naming the field."""
    if not code or label:
        return label
    found = lookup(code)
    if not found:
        field = f"vaccination.{field_name}"
        raise InvalidInput(f"{unknown.format(code)} ({field}).", field=field)
    return found
