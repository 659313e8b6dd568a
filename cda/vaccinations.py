"""Immunisation records extracted from VAC-NOTE, VAC (carnet), VSM and IPS-FR documents (cda.md 5).

Every ``substanceAdministration`` carrying the IHE Immunization entry template
(1.3.6.1.4.1.19376.1.5.3.1.4.12)
becomes an ``Immunization``; ``negationInd="true"`` means the vaccination did NOT take place. Vaccines are
grouped by disease through the ATC translation and the project's ATC table (``cda/data/atc-vaccines.csv``).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from lxml import etree

from cda import valuesets as vs
from cda.model import CdaDocument, InstanceId, parse_ts
from cda.valuesets import _read_csv

_H = "{urn:hl7-org:v3}"
_NS = {"h": "urn:hl7-org:v3"}
# Codes meaning "no information" / "no known immunisations" (JDV_AbsentOrUnknownImmunization_CISIS).
NO_DATA_CODES = frozenset({"no-immunization-info", "no-known-immunizations"})

_ENTRIES = etree.XPath(
    "//h:substanceAdministration[h:templateId/@root=$tpl]", namespaces=_NS, smart_strings=False
)


@dataclass(frozen=True)
class Immunization:
    date: str  # ISO date (YYYY, YYYY-MM or YYYY-MM-DD) as precise as the document
    vaccine_code: str  # CIS code (1.2.250.1.213.2.3.1) or other product code
    vaccine_code_system: str
    vaccine_label: str
    atc_code: str
    atc_label: str
    antigens: tuple[str, ...]  # diseases covered (project ATC table)
    lot_number: str
    dose_rank: int | None
    kind: str  # IMMUNIZ / INITIMMUNIZ / BOOSTER
    given: bool  # False: negationInd="true" (not done)
    route: str
    site: str
    performer: str  # name of the vaccinator, "" when absent
    performer_id: str
    document_id: str  # uniqueId of the source document
    document_type: str

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @property
    def dedup_key(self) -> tuple[str, ...]:
        """(date, CIS or ATC, lot) identifies a dose across documents; without a date or a lot (child health
        certificates write nullFlavor) the rank and kind are added so that doses 1, 2, 3 stay distinct."""
        key = (self.date, self.vaccine_code or self.atc_code, self.lot_number.upper())
        if self.date and self.lot_number:
            return key
        return (*key, str(self.dose_rank or ""), self.kind, "" if self.given else "not-given")


@functools.cache
def _atc_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        r["atc_code"]: (r["label_fr"], tuple(a for a in r["antigens"].split(";") if a))
        for r in _read_csv("atc-vaccines.csv")
    }


def atc_vaccines() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every vaccine ATC code of the project table: code → (French label, antigens). A copy: callers may sort
    or filter it freely."""
    return dict(_atc_table())


def atc_info(atc_code: str) -> tuple[str, tuple[str, ...]]:
    """(label, antigens) of an ATC code by longest known prefix; ("", ()) when not a known vaccine code."""
    table = _atc_table()
    code = (atc_code or "").upper()
    for length in range(len(code), 2, -1):
        if code[:length] in table:
            return table[code[:length]]
    return "", ()


@functools.cache
def _labels(name: str) -> dict[str, str]:
    return {r["code"]: r["display_name"] for r in _read_csv(name)}


def route_label(code: str) -> str:
    """French label of an EDQM route of JDV_ImmunizationRouteCodes_CISIS ("" when unknown)."""
    return _labels("immunization-routes.csv").get(code, "")


def site_label(code: str) -> str:
    """French label of a SNOMED site of JDV_ImmunizationApproachSiteCode_CISIS ("" when unknown)."""
    return _labels("immunization-sites.csv").get(code, "")


def _iso_date(value: str) -> str:
    if not value:
        return ""
    try:
        parsed = parse_ts(value)
    except Exception:
        return value
    digits = value.split("+")[0].split("-")[0]
    if isinstance(parsed, dt.datetime):
        return parsed.date().isoformat()
    if len(digits) == 4:
        return digits
    if len(digits) == 6:
        return f"{digits[:4]}-{digits[4:6]}"
    return parsed.isoformat()


def _person(el: etree._Element | None) -> tuple[str, str]:
    if el is None:
        return "", ""
    ident = el.find(f"{_H}id")
    name = el.find(f"{_H}assignedPerson/{_H}name")
    text = ""
    if name is not None:
        parts = [
            name.findtext(f"{_H}prefix"),
            *[g.text for g in name.findall(f"{_H}given")],
            name.findtext(f"{_H}family"),
        ]
        text = " ".join(" ".join(p.split()) for p in parts if p and p.strip())
    return text, (ident.get("extension", "") if ident is not None else "")


def _extract_entry(sbadm: etree._Element, doc_id: str, doc_type: str) -> Immunization | None:
    code_el = sbadm.find(f"{_H}code")
    kind = code_el.get("code", "") if code_el is not None else ""
    if kind in NO_DATA_CODES:
        return None
    time_el = sbadm.find(f"{_H}effectiveTime")
    raw_date = ""
    if time_el is not None:
        raw_date = time_el.get("value") or ""
        if not raw_date:
            low = time_el.find(f"{_H}low")
            raw_date = low.get("value", "") if low is not None else ""
    material = sbadm.find(f"{_H}consumable/{_H}manufacturedProduct/{_H}manufacturedMaterial")
    product = material.find(f"{_H}code") if material is not None else None
    vaccine_code = vaccine_system = vaccine_label = atc_code = atc_label = ""
    if product is not None:
        vaccine_code = product.get("code", "")
        vaccine_system = product.get("codeSystem", "")
        vaccine_label = product.get("displayName", "")
        if vaccine_system == vs.ATC:
            atc_code, atc_label = vaccine_code, vaccine_label
        for tr in product.findall(f"{_H}translation"):
            if tr.get("codeSystem") == vs.ATC and not atc_code:
                atc_code, atc_label = tr.get("code", ""), tr.get("displayName", "")
    if material is not None and not vaccine_label:
        name = material.find(f"{_H}name")
        vaccine_label = " ".join("".join(name.itertext()).split()) if name is not None else ""
    lot_el = material.find(f"{_H}lotNumberText") if material is not None else None
    rank = None
    for obs in sbadm.iterfind(f"{_H}entryRelationship/{_H}observation"):
        if any(t.get("root") == vs.TPL_DOSE_RANK for t in obs.findall(f"{_H}templateId")):
            value = obs.find(f"{_H}value")
            raw_rank = (value.get("value") or "") if value is not None else ""
            if raw_rank.isdigit():
                rank = int(raw_rank)
    route = sbadm.find(f"{_H}routeCode")
    site = sbadm.find(f"{_H}approachSiteCode")
    performer, performer_id = _person(sbadm.find(f"{_H}performer/{_H}assignedEntity"))
    table_label, antigens = atc_info(atc_code)
    return Immunization(
        date=_iso_date(raw_date),
        vaccine_code=vaccine_code,
        vaccine_code_system=vaccine_system,
        vaccine_label=vaccine_label,
        atc_code=atc_code,
        atc_label=atc_label or table_label,
        antigens=antigens,
        lot_number=(lot_el.text or "").strip() if lot_el is not None else "",
        dose_rank=rank,
        kind=kind,
        given=sbadm.get("negationInd", "false").lower() != "true",
        route=(route.get("displayName") or route.get("code") or "") if route is not None else "",
        site=(site.get("displayName") or site.get("code") or "") if site is not None else "",
        performer=performer,
        performer_id=performer_id,
        document_id=doc_id,
        document_type=doc_type,
    )


def _uid(ii: InstanceId | None) -> str:
    if ii is None:
        return ""
    return f"{ii.root}^{ii.extension}" if ii.extension else ii.root


def extract(doc: CdaDocument) -> list[Immunization]:
    """All immunisation records of a document (empty for documents without immunisation entries)."""
    doc_id = _uid(doc.id)
    out: list[Immunization] = []
    for sbadm in _ENTRIES(doc.root, tpl=vs.TPL_IMMUNIZATION_ENTRY):
        record = _extract_entry(sbadm, doc_id, doc.type_code)
        if record is not None:
            out.append(record)
    return out


def merge(*records: list[Immunization]) -> list[Immunization]:
    """De-duplicate across documents on (date, CIS or ATC, lot), keeping the first seen; sorted by date."""
    seen: dict[tuple[str, ...], Immunization] = {}
    for group in records:
        for record in group:
            seen.setdefault(record.dedup_key, record)
    return sorted(seen.values(), key=lambda r: (r.date, r.atc_code))
