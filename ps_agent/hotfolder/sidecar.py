"""The JSON sidecar of a hot-folder item, with keys in the words hospitals already send (CI-SIS HL7v2
transmission, OBX MetaDMPMSS: ``MASQUE_PS``, ``INVISIBLE_PATIENT``, ``INVISIBLE_REP_LEGAUX``).

PDF item (all keys but the visibility ones are required)::

    {"patient": {"ins": "...", "ins_oid": "1.2.250.1.213.1.4.10", "ins_status": "QUAL",
                 "birth_family_name": "...", "given_names": "...", "birth_date": "1979-03-28", "sex": "F",
                 "birth_place_code": "51215"},
     "type_code": "11490-0", "title": "Lettre de sortie", "date": "2026-12-03T10:15:00+01:00",
     "service_start": "2026-11-28", "service_stop": "2026-12-03",
     "author": {"id_nat": "810002...", "family_name": "...", "given_name": "...", "specialty_code": "...",
                "organization_id": "...", "organization_name": "...", "facility_type_code": "SA01",
                "practice_setting_code": "ETABLISSEMENT"},
     "MASQUE_PS": "N", "INVISIBLE_PATIENT": "N", "INVISIBLE_REP_LEGAUX": "N",
     "action": "create", "replaces": ""}

Ready CDA item: the patient (INS) and metadata come from the CDA; the sidecar gives ``ins_status`` (in
``patient``) and the visibility keys (``{}`` is enough: all "N", status QUAL).
Y/N values as in HL7 (``"Y"``/``"N"``; ``true``/``false`` accepted).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any

from ps_agent.dmp.model import Visibility

VISIBILITY_KEYS = ("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX")
KNOWN_KEYS = frozenset(
    {"patient", "type_code", "title", "date", "service_start", "service_stop", "author", "action", "replaces",
     *VISIBILITY_KEYS}
)  # fmt: skip
INS_STATUSES = ("QUAL", "VALI", "RECUP", "PROV")
CHECKED_CACHE_SIZE = 256  # distinct patients/authors whose checked form is kept


class SidecarError(Exception):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class Sidecar:
    raw: dict[str, Any]
    ins: str
    ins_oid: str
    ins_status: str
    visibility: Visibility
    replaces: str = ""
    type_code: str = ""
    title: str = ""
    patient: Any = None  # cda.build.PatientInput (PDF items)
    author: Any = None  # cda.build.AuthorInput (PDF items)
    effective_time: dt.datetime | None = None
    service_start: dt.date | dt.datetime | None = None
    service_stop: dt.date | dt.datetime | None = None

    @property
    def patient_key(self) -> str:
        return f"{self.ins}^{self.ins_oid}"


def _flag(raw: dict[str, Any], key: str) -> bool:
    v = raw.get(key, "N")
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().upper() in ("Y", "O", "OUI", "N", "NON", ""):
        return v.strip().upper() in ("Y", "O", "OUI")
    raise SidecarError(key, f"Valeur de « {key} » invalide : « Y » ou « N » attendu.")


def _date(raw: dict[str, Any], key: str) -> Any:
    v = raw.get(key)
    if v in (None, ""):
        return None
    if not isinstance(v, str):
        raise SidecarError(key, f"« {key} » doit être une date (AAAA-MM-JJ ou AAAA-MM-JJTHH:MM:SS+01:00).")
    try:
        if "T" in v:
            d = dt.datetime.fromisoformat(v)
            if d.tzinfo is None:
                raise SidecarError(key, f"« {key} » : indiquez le fuseau horaire (ex. +01:00).")
            return d
        return dt.date.fromisoformat(v)
    except ValueError:
        raise SidecarError(key, f"« {key} » n'est pas une date valide (« {v} »).") from None


def _cda_patient(cda_bytes: bytes | None) -> tuple[str, str]:
    if cda_bytes is None:
        return "", ""
    from cda.parser import parse

    doc = parse(cda_bytes)
    ins = doc.patient.ins if doc.patient else None
    if ins is None:
        raise SidecarError("patient.ins", "Le document CDA ne porte pas d'INS du patient.")
    return ins.extension, ins.root


# ``json.dumps(obj, sort_keys=True, ensure_ascii=False)``: one encoder for all (``json.dumps`` builds one per
# call when given options; an encoder keeps no state between calls)
_canonical = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


# The patient and author of a sidecar, built and checked once per distinct JSON (a batch names the same
# author, often the same patient, many times; ``cda.build``'s ``from_dict`` evaluates the dataclass's type
# hints at each call). Errors are not cached (raised again each time). The objects are shared read-only.
@functools.lru_cache(maxsize=CHECKED_CACHE_SIZE)
def _checked_patient(canonical: str, today: dt.date) -> Any:
    from cda import build

    return build.PatientInput.from_dict(json.loads(canonical)).checked(today=today)


@functools.lru_cache(maxsize=CHECKED_CACHE_SIZE)
def _checked_author(canonical: str) -> Any:
    from cda import build

    return build.AuthorInput.from_dict(json.loads(canonical)).checked()


def parse_sidecar(data: bytes, *, is_cda: bool, cda_bytes: bytes | None = None) -> Sidecar:
    """Check a sidecar; ``SidecarError(field, detail_fr)`` names the first wrong field."""
    from cda.errors import CdaError

    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SidecarError("fiche", f"La fiche JSON est illisible ({exc}).") from None
    if not isinstance(raw, dict):
        raise SidecarError("fiche", "La fiche JSON doit être un objet.")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise SidecarError(unknown[0], f"Champ inconnu dans la fiche : « {unknown[0]} ».")
    vis = Visibility(*(_flag(raw, k) for k in VISIBILITY_KEYS))
    if vis.masked_to_professionals and vis.invisible_to_patient:
        raise SidecarError(
            "INVISIBLE_PATIENT",
            "Un document ne peut pas être à la fois masqué aux professionnels (MASQUE_PS) et invisible au "
            "patient (INVISIBLE_PATIENT).",
        )
    action = raw.get("action", "create")
    if action not in ("create", "replace"):
        raise SidecarError("action", "« action » doit valoir « create » ou « replace ».")
    replaces = raw.get("replaces", "") or ""
    if not isinstance(replaces, str) or (action == "replace" and not replaces):
        raise SidecarError(
            "replaces", "Pour « action »: « replace », indiquez l'uniqueId remplacé (replaces)."
        )
    pat = raw.get("patient", {})
    if not isinstance(pat, dict):
        raise SidecarError("patient", "« patient » doit être un objet.")
    status = pat.get("ins_status", "QUAL")
    if status not in INS_STATUSES:
        raise SidecarError(
            "patient.ins_status", "« patient.ins_status » : QUAL, VALI, RECUP ou PROV attendu."
        )
    if status != "QUAL":
        raise SidecarError(
            "patient.ins_status",
            "L'identité du patient n'est pas qualifiée (INS non qualifiée) : pas d'envoi au DMP (règle 8.7).",
        )
    common = {"raw": raw, "ins_status": status, "visibility": vis, "replaces": replaces}
    if is_cda:
        ins, oid = _cda_patient(cda_bytes)
        return Sidecar(
            ins=ins or str(pat.get("ins", "")), ins_oid=oid or str(pat.get("ins_oid", "")), **common
        )
    for key in ("type_code", "title", "author"):
        if not raw.get(key):
            raise SidecarError(key, f"Champ obligatoire manquant dans la fiche : « {key} ».")
    try:
        patient = _checked_patient(_canonical({k: v for k, v in pat.items() if k != "ins_status"}),
                                   dt.date.today())  # fmt: skip
    except CdaError as exc:
        f = exc.field or ""
        raise SidecarError(f"patient.{f}" if f and not f.startswith("patient") else (f or "patient"),
                           exc.message_fr) from None  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise SidecarError("patient", f"« patient » incomplet ou invalide ({exc}).") from None
    if not isinstance(raw["author"], dict):
        raise SidecarError("author", "« author » doit être un objet.")
    try:
        author = _checked_author(_canonical(raw["author"]))
    except CdaError as exc:
        f = exc.field or ""
        raise SidecarError(f"author.{f}" if f and not f.startswith("author") else (f or "author"),
                           exc.message_fr) from None  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise SidecarError("author", f"« author » incomplet ou invalide ({exc}).") from None
    effective = _date(raw, "date")
    if isinstance(effective, dt.date) and not isinstance(effective, dt.datetime):
        effective = dt.datetime.combine(effective, dt.time(12, 0)).astimezone()
    return Sidecar(
        ins=patient.ins, ins_oid=patient.ins_oid, type_code=str(raw["type_code"]), title=str(raw["title"]),
        patient=patient, author=author, effective_time=effective,
        service_start=_date(raw, "service_start"), service_stop=_date(raw, "service_stop"), **common,
    )  # fmt: skip
