"""Typed model of a parsed CDA document (header, patient, authors, service events, body kind)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from lxml import etree

from cda.errors import InvalidDate


@dataclass(frozen=True)
class Code:
    code: str
    code_system: str = ""
    display_name: str = ""
    code_system_name: str = ""


@dataclass(frozen=True)
class InstanceId:
    root: str
    extension: str = ""

    def __str__(self) -> str:
        return f"{self.extension}^^^&{self.root}&ISO" if self.extension else self.root


@dataclass(frozen=True)
class PersonName:
    family: str = ""
    given: tuple[str, ...] = ()
    prefix: str = ""

    def __str__(self) -> str:
        return " ".join(p for p in (self.prefix, *self.given, self.family) if p)


@dataclass(frozen=True)
class Organization:
    id: InstanceId | None = None
    name: str = ""


@dataclass(frozen=True)
class Patient:
    ids: tuple[InstanceId, ...] = ()
    ins: InstanceId | None = None  # the id whose root is an INS OID, if any
    birth_family_name: str = ""  # family[@qualifier='BR']
    first_given_name: str = ""  # given[@qualifier='BR']
    given_names: str = ""  # given without qualifier (all birth given names)
    used_family_name: str = ""  # family[@qualifier='CL'] (or unqualified family)
    used_given_name: str = ""  # given[@qualifier='CL']
    birth_time: str = ""  # HL7 TS as written
    sex: str = ""  # M / F / U
    birth_place_code: str = ""  # birthplace/place/addr/county (INSEE COG)


@dataclass(frozen=True)
class Author:
    time: str = ""
    id: InstanceId | None = None
    code: Code | None = None  # JDV_J01 profession/savoir-faire (TRE_A02)
    name: PersonName | None = None
    organization: Organization | None = None


@dataclass(frozen=True)
class ServiceEvent:
    code: Code | None = None
    start: str = ""
    stop: str = ""
    performer_id: InstanceId | None = None
    practice_setting: Code | None = None  # performer/…/standardIndustryClassCode (JDV_J04)


@dataclass
class CdaDocument:
    """A parsed CDA R2 document. ``root`` is the lxml element (for validators and extractors)."""

    root: etree._Element = field(repr=False)
    id: InstanceId | None = None
    set_id: InstanceId | None = None
    version_number: int | None = None
    code: Code | None = None
    title: str = ""
    effective_time: str = ""
    confidentiality: Code | None = None
    language: str = ""
    template_ids: tuple[tuple[str, str], ...] = ()  # (root, extension)
    patient: Patient | None = None
    authors: tuple[Author, ...] = ()
    custodian: Organization | None = None
    legal_authenticator: Author | None = None
    service_events: tuple[ServiceEvent, ...] = ()
    facility_type: Code | None = None  # encompassingEncounter/location/healthCareFacility/code (JDV_J02)
    encounter_start: str = ""
    encounter_stop: str = ""
    replaced_document_id: InstanceId | None = None  # relatedDocument[@typeCode='RPLC']/parentDocument/id
    body_kind: str = ""  # "nonXMLBody" | "structuredBody" | "" (no body)
    media_type: str = ""  # nonXMLBody/text/@mediaType
    section_codes: tuple[str, ...] = ()  # LOINC codes of the top-level sections

    @property
    def type_code(self) -> str:
        return self.code.code if self.code else ""

    @property
    def is_level1(self) -> bool:
        return self.body_kind == "nonXMLBody"

    def has_template(self, root: str) -> bool:
        return any(r == root for r, _ in self.template_ids)


_TS_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


def parse_ts(value: str, *, field: str = "date") -> dt.datetime | dt.date:
    """HL7 TS ("20261125103000+0100", "20261125", "1975") to an aware datetime (tz given) or a date."""
    m = _TS_RE.match(value or "")
    if not m:
        raise InvalidDate(
            f"La date « {value} » n'est pas au format HL7 (AAAAMMJJ[hhmmss][+hhmm]).", field=field
        )
    year, month, day, hour, minute, second, tz = m.groups()
    try:
        if hour is None:
            return dt.date(int(year), int(month or 1), int(day or 1))
        tzinfo = None
        if tz:
            sign = 1 if tz[0] == "+" else -1
            tzinfo = dt.timezone(sign * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])))
        return dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0), tzinfo=tzinfo
        )
    except ValueError as exc:
        raise InvalidDate(f"La date « {value} » n'existe pas.", field=field) from exc


def to_xds_time(value: str) -> str:
    """HL7 TS to the XDS DTM form: UTC when the TS has a time zone, else the digits as written."""
    if not value:
        return ""
    try:
        parsed = parse_ts(value)
    except InvalidDate:
        return re.sub(r"[^0-9]", "", value)[:14]
    if isinstance(parsed, dt.datetime) and parsed.tzinfo is not None:
        return parsed.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    return re.sub(r"[^0-9]", "", value.split("+")[0].split("-")[0])[:14]
