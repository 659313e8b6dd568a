"""CDA → XDS metadata: the one place that turns a CDA document into a ``DocumentEntry``.

``cda.metadata.derive`` reads the document (the CI-SIS mapping lives in the ``cda`` library); this
module turns its answer into the DMP client's model and checks what only the agent knows (the patient
selected, the visibility asked). Also here: the rubric of an entry, whether it belongs to the
vaccination status (from ``cda``'s tables), and the ``cda.build.AuthorInput`` of a professional.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from ps_agent.dmp.errors import InvalidRequest
from ps_agent.dmp.model import Author, Code, DocumentEntry, PatientId, Visibility, parse_xds_time

if TYPE_CHECKING:
    from ps_agent.auth.model import ProfessionalIdentity

# practiceSettingCode of a PDF wrapped by the agent, from the activity sector [I]: establishments
# (SA01-SA09 except the SA07/SA08 cabinets) → ETABLISSEMENT, the rest ambulatory.
PRACTICE_SETTING_BY_SECTOR = {f"SA0{n}": "ETABLISSEMENT" for n in (1, 2, 3, 4, 5, 6, 9)}


class PatientKey(Protocol):
    """What ``entry_from_cda`` needs of the selected patient (a ``PatientRef`` has it)."""

    @property
    def ins(self) -> str: ...

    @property
    def oid(self) -> str: ...


def entry_from_cda(
    data: bytes, patient: PatientKey | tuple[str, str], visibility: Visibility, *, doc: Any = None
) -> tuple[DocumentEntry, Any]:
    """Parse a CDA (unless ``doc``, its already parsed ``cda.parse`` model, is given), derive its XDS
    metadata (``cda.metadata``) and turn them into a ``DocumentEntry``. ``patient`` is the selected
    patient's (INS matricule, INS OID) (a ``PatientRef`` works too): a document about another patient is
    refused (``InvalidRequest`` PATIENT_MISMATCH)."""
    import cda
    from cda import metadata as cda_metadata

    if doc is None:
        doc = cda.parse(data)
    md = cda_metadata.derive(doc, data)

    def code(c: Any) -> Code:
        return Code(c.code, c.code_system, c.display_name) if c is not None else Code("", "")

    if not md.patient_id:
        raise InvalidRequest("Le document n'identifie pas le patient par son INS.", code="NO_INS")
    try:
        doc_patient = PatientId.parse_cx(md.patient_id)
    except ValueError as exc:
        raise InvalidRequest("L'INS du patient du document est illisible.", code="BAD_INS") from exc
    ins, oid = patient if isinstance(patient, tuple) else (patient.ins, patient.oid)
    if (doc_patient.matricule, doc_patient.oid) != (ins, oid):
        raise InvalidRequest(
            "Le document concerne un autre patient que celui sélectionné : il n'est pas envoyé.",
            code="PATIENT_MISMATCH",
        )
    authors = []
    for a in md.authors:
        spec = None
        if a.specialty:
            p = a.specialty.split("^")
            spec = Code(p[0], p[2] if len(p) > 2 else "", p[1] if len(p) > 1 else "")
        authors.append(Author.from_xcn(a.person, a.institution, spec, a.role))
    if visibility.masked_to_professionals and visibility.invisible_to_patient:
        # PAT-03: cumul-invisible_patient-masque_ps=false on the DMP
        raise InvalidRequest(
            "Un document ne peut pas être à la fois masqué aux professionnels et invisible pour le patient.",
            code="PAT-03",
        )
    created = parse_xds_time(md.creation_time)
    entry = DocumentEntry(
        unique_id=md.unique_id,
        patient_id=doc_patient,
        type_code=code(md.type_code),
        class_code=code(md.class_code),
        format_code=code(md.format_code),
        healthcare_facility_type=code(md.healthcare_facility_type),
        practice_setting=code(md.practice_setting),
        creation_time=created or datetime.now().astimezone(),
        title=md.title,
        mime_type=md.mime_type,
        language=md.language_code,
        authors=tuple(authors),
        confidentiality=visibility.codes(),
        event_codes=tuple(code(c) for c in md.event_codes),
        service_start=parse_xds_time(md.service_start_time),
        service_stop=parse_xds_time(md.service_stop_time),
        legal_authenticator=md.legal_authenticator,
        source_patient_id=md.source_patient_id,
        source_patient_info=md.source_patient_info,
        hash=md.hash,
        size=md.size,
    )
    return entry, md


def rubric_of(entry: DocumentEntry) -> str:
    """The DMP rubric of an entry ("Comptes rendus"...) from its type code (``cda.classify``)."""
    return _rubric(entry.type_code.code, entry.format_code.code)


@lru_cache(maxsize=4096)
def _rubric(type_code: str, format_code: str) -> str:
    """One classification per (type, format) pair: a listing of 2,000 entries asks a few dozen times."""
    try:
        from cda.classify import classify_type

        return classify_type(type_code, format_code=format_code).dmp_rubric
    except Exception:  # unknown type: no rubric rather than an error in a listing
        return ""


@lru_cache(maxsize=1)
def vaccination_format_codes() -> frozenset[str]:
    """formatCodes of the volets that carry vaccinations (VAC-NOTE, VAC, VSM, IPS), from ``cda``'s table."""
    from cda import valuesets as vs

    formats = vs.volet_format_codes()
    templates = (vs.TPL_VAC_NOTE, vs.TPL_VAC, vs.TPL_VSM, vs.TPL_IPS_FR)
    return frozenset(formats[t] for t in templates if t in formats)


def is_vaccination_document(entry: DocumentEntry) -> bool:
    """Whether an entry feeds the vaccination status: its volet carries vaccinations (formatCode), or its
    type is shown in the carnet vaccinal (``cda.classify``, column CAR_VAC)."""
    if entry.format_code.code in vaccination_format_codes():
        return True
    try:
        from cda.classify import classify_type

        return bool(
            classify_type(entry.type_code.code, format_code=entry.format_code.code).in_vaccination_book
        )
    except Exception:
        return False


def author_input_of(identity: ProfessionalIdentity) -> Any:
    """The ``cda.build.AuthorInput`` of a professional and his current activity (card situation)."""
    from cda import build
    from ps_agent.dmp.client import author_of

    act = identity.activity
    if act is None or not identity.profession_code:
        raise InvalidRequest(
            "L'auteur du document doit être un professionnel de santé avec une situation d'exercice.",
            code="NO_AUTHOR",
        )
    spec = author_of(identity).specialty
    return build.AuthorInput(
        id_nat=identity.id_nat,
        family_name=identity.family_name,
        given_name=identity.given_name,
        specialty_code=spec.code if spec else f"G15_{identity.profession_code}",
        organization_id=act.structure_id,
        organization_name=act.structure_name,
        facility_type_code=act.sector,
        practice_setting_code=PRACTICE_SETTING_BY_SECTOR.get(act.sector, "AMBULATOIRE"),
    )


__all__ = [
    "PRACTICE_SETTING_BY_SECTOR",
    "author_input_of",
    "entry_from_cda",
    "is_vaccination_document",
    "rubric_of",
    "vaccination_format_codes",
]
