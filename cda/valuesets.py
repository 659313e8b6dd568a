"""Code systems, OIDs and value sets the CDA engine needs, loaded from the data files in ``cda/data``.

Sources are named in each CSV's header comment and in ``cda/data/README.md``. Everything is loaded once
(lazily) and cached: lookups are dictionary hits.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

from cda.errors import InvalidInput, TypeNotAcceptedByDmp, UnknownTypeCode

# --- Code systems / identifier roots
LOINC = "2.16.840.1.113883.6.1"
TRE_A05_TYPE_COMPLEMENTAIRE = "1.2.250.1.213.1.1.4.12"
TRE_A03_CLASSE = "1.2.250.1.213.1.1.4.1"
TRE_A02_PROFESSION_SAVOIR_FAIRE = "1.2.250.1.213.1.1.4.5"  # JDV_J01 author code (G15_xx[/yy])
TRE_R02_SECTEUR_ACTIVITE = "1.2.250.1.71.4.2.4"  # JDV_J02 healthcareFacilityTypeCode (SAxx)
TRE_A01_CADRE_EXERCICE = "1.2.250.1.213.1.1.4.9"  # JDV_J04 practiceSettingCode
CONFIDENTIALITY = "2.16.840.1.113883.5.25"
GENDER = "2.16.840.1.113883.5.1"
ROOT_PS = "1.2.250.1.71.4.2.1"  # idNat_PS
ROOT_STRUCTURE = "1.2.250.1.71.4.2.2"  # idNat_Struct
ROOT_PATIENT_HOST = "1.2.250.1.213.4.1"
CIS = "1.2.250.1.213.2.3.1"
ATC = "2.16.840.1.113883.6.73"
ACT_CODE = "2.16.840.1.113883.5.4"
EDQM_ROUTE = "0.4.0.127.0.16.1.1.2.1"
SNOMED = "2.16.840.1.113883.6.96"

# --- Header templateIds
TYPE_ID_ROOT = "2.16.840.1.113883.1.3"
TYPE_ID_EXT = "POCD_HD000040"
TPL_HL7_FRANCE = "2.16.840.1.113883.2.8.2.1"
TPL_CISIS = "1.2.250.1.213.1.1.1.1"
TPL_XDS_SD = "1.3.6.1.4.1.19376.1.2.20"
TPL_PCC_IMMUNIZATION_CONTENT = "1.3.6.1.4.1.19376.1.5.3.1.1.18.1.2"
TPL_VAC_NOTE = "1.2.250.1.213.1.1.1.46"
TPL_VAC = "1.2.250.1.213.1.1.1.37"
TPL_VSM = "1.2.250.1.213.1.1.1.13"
TPL_IPS_FR = "1.2.250.1.213.1.1.1.51"
TPL_IMMUNIZATIONS_SECTION = "1.3.6.1.4.1.19376.1.5.3.1.3.23"
TPL_IMMUNIZATION_ENTRY = "1.3.6.1.4.1.19376.1.5.3.1.4.12"
TPL_DOSE_RANK = "1.2.250.1.213.1.1.3.82"
LEVEL1_TEMPLATES = (TPL_HL7_FRANCE, TPL_CISIS, TPL_XDS_SD)

# --- formatCode (ASS_A11)
FORMAT_PDF = "urn:ihe:iti:xds-sd:pdf:2008"
FORMAT_TEXT = "urn:ihe:iti:xds-sd:text:2008"
FORMAT_VAC_NOTE = "urn:asip:ci-sis:vac-note:2021"
# Level-1 media type -> formatCode (ASS_A11/A12). The builders write PDF and text only.
MEDIA_TYPE_FORMATS = {
    "application/pdf": FORMAT_PDF,
    "text/plain": FORMAT_TEXT,
    "image/jpeg": "urn:ihe:iti-fr:xds-sd:jpeg:2010",
    "text/rtf": "urn:ihe:iti-fr:xds-sd:rtf:2010",
    "image/tiff": "urn:ihe:iti-fr:xds-sd:tiff:2010",
}
# Format code of a structured document whose templateIds match no ASS_A11 row: none ("" = unknown; the
# deposit code must refuse rather than guess a wrong format).
FORMAT_STRUCTURED_DEFAULT = ""

CLASS_LABELS: dict[str, str] = {
    "10": "Compte rendu",
    "11": "Synthèse",
    "31": "Imagerie médicale",
    "42": "Prescription",
    "43": "Dispensation",
    "44": "Plan de soins, protocole de soins",
    "45": "Traitement administré",
    "52": "Certificat, déclaration",
    "60": "Données de remboursement",
    "90": "Autres documents déposés par le patient",
    "95": "Document de gestion",
    "99": "Document technique",
}
DMP_CLASS_CODES = frozenset(CLASS_LABELS) - {"99"}  # JDV_J57 = J06 without 99

# The 9 rubrics of the DMP professional side (cda.md 6.1 #4) plus the "gestion" bucket for class 95.
DMP_RUBRICS = (
    "Synthèse",
    "Traitements et soins",
    "Comptes rendus",
    "Imagerie médicale",
    "Analyses de biologie",
    "Prévention",
    "Certificats, déclarations",
    "Données de remboursement",
    "Espace personnel",
)
DMP_RUBRIC_GESTION = "Documents administratifs et de gestion"
# Mon espace santé categories (ENS app enum Category, cda.md 6.1 #5).
MES_CATEGORIES: dict[str, str] = {
    "SYNTHESE": "Ma santé en résumé",
    "ORD_SOIN": "Ordonnances et soins",
    "RADIO_SC": "Radio, écho, scanner, IRM",
    "BIOLOGIE": "Résultats de biologie",
    "CPT_REND": "Comptes rendus",
    "DEPISTAG": "Prévention et dépistages",
    "CERT_MED": "Certificats médicaux",
    "DOC_ADM": "Pièces administratives",
    "AUTR_DOC": "Autres documents",
    "SYNTH_PML": "Synthèse médicale (profil)",
    "DIR_ANT": "Directives anticipées",
    "QUEST_SANTE": "Questionnaire santé",
    "CAR_VAC": "Carnet vaccinal",
    "VDP": "Volontés du patient",
    "REMB": "Remboursement",
}


@dataclass(frozen=True)
class DocumentType:
    """One row of ``cda/data/document-types.csv``."""

    code: str
    code_system: str
    label: str
    class_code: str
    class_label: str
    in_j07: bool  # in JDV_J07-XdsTypeCode-CISIS 2026-06-29 (CI-SIS accepted)
    dmp_accepted: bool  # in J07 and in JDV_J66-TypeCode-DMP (ASS_X16 2024-02-23)
    dmp_rubric: str
    mes_rubric: str  # Mon espace santé category code ("" = not shown)
    car_vac: bool  # also feeds the patient's vaccination book
    class_source: str
    rubric_source: str  # INFERRED (reference table) or PROJECT (corrected here, see note)
    note: str

    @property
    def code_system_name(self) -> str:
        return "LOINC" if self.code_system == LOINC else "TRE_A05-TypeDocComplementaire"


@dataclass(frozen=True)
class Concept:
    code: str
    code_system: str
    display_name: str


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("cda.data").joinpath(name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


@functools.cache
def document_types() -> dict[str, DocumentType]:
    """All known document type codes (J07 2026 + retired codes still in ASS_X04), keyed by code."""
    out: dict[str, DocumentType] = {}
    for r in _read_csv("document-types.csv"):
        out[r["type_code"]] = DocumentType(
            code=r["type_code"],
            code_system=r["type_code_system"],
            label=r["label_fr"],
            class_code=r["class_code"],
            class_label=r["class_label_fr"],
            in_j07=r["in_j07"] == "Y",
            dmp_accepted=r["dmp_accepted"] == "Y",
            dmp_rubric=r["dmp_rubric"],
            mes_rubric=r["mes_rubric"],
            car_vac=r["car_vac"] == "Y",
            class_source=r["class_source"],
            rubric_source=r["rubric_source"],
            note=r["note"],
        )
    return out


@functools.cache
def volet_format_codes() -> dict[str, str]:
    """Volet header templateId -> formatCode (ASS_A11, ``cda/data/format-codes.csv``)."""
    return {r["template_id"]: r["format_code"] for r in _read_csv("format-codes.csv")}


def dmp_type_codes() -> list[str]:
    """The type codes the DMP accepts (J07 codes that are in JDV_J66), in table order."""
    return [t.code for t in document_types().values() if t.dmp_accepted]


def document_type(code: str) -> DocumentType:
    """The row of a type code; ``UnknownTypeCode`` (field ``code``) when the code is unknown."""
    try:
        return document_types()[code]
    except KeyError:
        raise UnknownTypeCode(
            f"Le code de type de document « {code} » est inconnu (absent du jeu de valeurs JDV_J07).",
            field="code",
        ) from None


def check_dmp_type(code: str) -> DocumentType:
    """Return the row of a type code the DMP accepts, else raise the specific typed error."""
    row = document_type(code)
    if not row.dmp_accepted:
        raise TypeNotAcceptedByDmp(
            f"Le type de document « {code} » ({row.label}) n'est pas accepté par le DMP "
            "(absent du jeu de valeurs JDV_J66-TypeCode-DMP).",
            field="code",
        )
    return row


@functools.cache
def _concepts(name: str) -> dict[str, Concept]:
    return {r["code"]: Concept(r["code"], r["code_system"], r["display_name"]) for r in _read_csv(name)}


def author_specialties() -> dict[str, Concept]:
    """JDV_J01 (TRE_A02 G15_xx[/yy] codes and a few others), keyed by code."""
    return _concepts("author-specialties.csv")


def facility_types() -> dict[str, Concept]:
    """JDV_J02 healthcareFacilityTypeCode (SAxx…), keyed by code."""
    return _concepts("facility-types.csv")


def practice_settings() -> dict[str, Concept]:
    """JDV_J04 practiceSettingCode (AMBULATOIRE, ETABLISSEMENT…), keyed by code."""
    return _concepts("practice-settings.csv")


def confidentiality_codes() -> dict[str, Concept]:
    """JDV_J08 confidentiality codes (N + DMP masking codes), keyed by code."""
    return _concepts("confidentiality.csv")


def _check(table: dict[str, Concept], code: str, field: str, what: str) -> Concept:
    concept = table.get(code)
    if concept is None:
        raise InvalidInput(f"Le code « {code} » n'est pas un {what} valide.", field=field)
    return concept


def check_author_specialty(code: str, field: str = "author.specialty_code") -> Concept:
    return _check(author_specialties(), code, field, "code profession/savoir-faire (JDV_J01)")


def check_facility_type(code: str, field: str = "facility_type_code") -> Concept:
    return _check(facility_types(), code, field, "type de structure (JDV_J02)")


def check_practice_setting(code: str, field: str = "practice_setting_code") -> Concept:
    return _check(practice_settings(), code, field, "cadre d'exercice (JDV_J04)")


def is_author_specialty(code: str) -> bool:
    return code in author_specialties()


def is_facility_type(code: str) -> bool:
    return code in facility_types()


def is_practice_setting(code: str) -> bool:
    return code in practice_settings()


# Person name prefix / suffix of the CI-SIS header (StrucMin rules CI-SISAuthor, CI-SISAssignedEntity…):
# ``name/prefix`` is a civility of JDV_J245_Civilite_CISIS (1.2.250.1.213.1.1.5.718) and ``name/suffix`` a
# title of JDV_J246_Titre_CISIS (1.2.250.1.213.1.1.5.719). Source: ../shared/cda/schematrons/profils/
# structurationMinimale/include/voc-…718/719-DYNAMIC.xml. Small and stable: kept here, not in a CSV.
CIVILITIES_J245: dict[str, str] = {"M": "Monsieur", "MME": "Madame"}
TITLES_J246: dict[str, str] = {
    "DR": "Docteur",
    "MC": "Médecin colonel",
    "MG": "Médecin général",
    "PC": "Pharmacien colonel",
    "PG": "Pharmacien général",
    "PR": "Professeur",
}
# [I] Spellings a French user types, mapped to the codes (the card's civility "DR" is a title).
NAME_AFFIX_ALIASES: dict[str, str] = {
    "MONSIEUR": "M",
    "MR": "M",
    "MADAME": "MME",
    "MLLE": "MME",
    "MADEMOISELLE": "MME",
    "DOCTEUR": "DR",
    "PROFESSEUR": "PR",
}


def civility_and_title(prefix: str, suffix: str = "", *, field: str = "author") -> tuple[str, str]:
    """Normalise a person's civility (``prefix``, J245) and title (``suffix``, J246).

    A title given as prefix ("DR", "Docteur", as on a CPS card) moves to the suffix. Anything else
    raises ``InvalidInput`` naming ``<field>.prefix`` / ``<field>.suffix``."""
    from cda.errors import InvalidInput

    def norm(value: str) -> str:
        v = (value or "").strip().upper().rstrip(".")
        return NAME_AFFIX_ALIASES.get(v, v)

    pre, suf = norm(prefix), norm(suffix)
    if pre in TITLES_J246 and not suf:
        pre, suf = "", pre
    if pre and pre not in CIVILITIES_J245:
        raise InvalidInput(
            f"La civilité « {prefix} » n'est pas reconnue ({field}.prefix) : valeurs admises M (Monsieur), "
            "MME (Madame) ; un titre (DR, PR…) va dans suffix.",
            field=f"{field}.prefix",
        )
    if suf and suf not in TITLES_J246:
        raise InvalidInput(
            f"Le titre « {suffix} » n'est pas reconnu ({field}.suffix) : valeurs admises "
            + ", ".join(f"{k} ({v})" for k, v in TITLES_J246.items())
            + ".",
            field=f"{field}.suffix",
        )
    return pre, suf
