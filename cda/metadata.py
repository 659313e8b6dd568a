"""XDS DocumentEntry metadata derived from a CDA header (dmp-protocol.md 8.2, cda.md 1 "XDS/DMP metadata").

``derive(doc, data)`` is what the DMP client puts into the ITI-41 ProvideAndRegister request. Coded values are
``cda.model.Code`` (code, codeSystem, displayName); HL7v2-typed strings (XCN, XON, CX) are pre-formatted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cda import valuesets as vs
from cda.classify import classify_document
from cda.errors import CdaError
from cda.model import Author, CdaDocument, Code, InstanceId, to_xds_time

FORMAT_CODE_SYSTEM_IHE = "1.3.6.1.4.1.19376.1.2.3"
FORMAT_CODE_SYSTEM_ASIP = "1.2.250.1.213.1.1.4.2.282"


@dataclass(frozen=True)
class AuthorMetadata:
    person: str  # XCN
    institution: str  # XON ("" when the author has no organisation)
    role: str  # authorRole (JDV_J47), "" when unknown
    specialty: str  # authorSpecialty "G15_10/SM26^label^1.2.250.1.213.1.1.4.5"
    id_nat: str = ""
    specialty_code: Code | None = None


@dataclass(frozen=True)
class DocumentMetadata:
    unique_id: str  # CDA id: "root" or "root^extension"
    set_id: str
    version_number: int | None
    type_code: Code
    class_code: Code
    format_code: Code
    confidentiality_codes: tuple[Code, ...]
    healthcare_facility_type: Code | None
    practice_setting: Code | None
    event_codes: tuple[Code, ...]
    creation_time: str  # UTC yyyyMMddHHmmss
    service_start_time: str
    service_stop_time: str
    authors: tuple[AuthorMetadata, ...]
    legal_authenticator: str  # XCN
    source_patient_id: str  # INS CX "matricule^^^&OID&ISO^NH"
    patient_id: str  # same INS CX (XDS patientId)
    source_patient_info: tuple[str, ...]  # PID-5, PID-7, PID-8
    hash: str  # SHA-1 hex of the bytes
    size: int
    title: str
    language_code: str
    mime_type: str = "text/xml"
    replaced_document_id: str = ""  # uniqueId of the replaced version (RPLC), "" when none
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        import dataclasses

        return dataclasses.asdict(self)


def _unique(ii: InstanceId | None) -> str:
    if ii is None:
        return ""
    return f"{ii.root}^{ii.extension}" if ii.extension else ii.root


def xcn(author: Author) -> str:
    id_nat = author.id.extension if author.id else ""
    root = author.id.root if author.id else vs.ROOT_PS
    family = author.name.family if author.name else ""
    given = author.name.given[0] if author.name and author.name.given else ""
    return f"{id_nat}^{family}^{given}^^^^^^&{root}&ISO^D^^^IDNPS"


def xon(author: Author) -> str:
    org = author.organization
    if org is None:
        return ""
    ext = org.id.extension if org.id else ""
    root = org.id.root if org.id else vs.ROOT_STRUCTURE
    return f"{org.name}^^^^^&{root}&ISO^IDNST^^^{ext}"


def _author_metadata(author: Author) -> AuthorMetadata:
    spec = ""
    if author.code:
        spec = f"{author.code.code}^{author.code.display_name}^{author.code.code_system}"
    return AuthorMetadata(
        person=xcn(author),
        institution=xon(author),
        role="",
        specialty=spec,
        id_nat=author.id.extension if author.id else "",
        specialty_code=author.code,
    )


def derive(doc: CdaDocument, data: bytes) -> DocumentMetadata:
    """Derive the XDS metadata of a parsed document; ``data`` are the exact bytes that will be sent."""
    if doc.code is None:
        raise CdaError("Le document n'a pas de code de type (ClinicalDocument/code).", field="code")
    classification = classify_document(doc)
    patient = doc.patient
    ins_cx = f"{patient.ins.extension}^^^&{patient.ins.root}&ISO^NH" if patient and patient.ins else ""
    pid: list[str] = []
    if patient:
        family = patient.birth_family_name or patient.used_family_name
        given = patient.first_given_name or patient.used_given_name
        pid = [f"PID-5|{family}^{given}^^^^^L", f"PID-7|{patient.birth_time[:8]}", f"PID-8|{patient.sex}"]
    first_event = doc.service_events[0] if doc.service_events else None
    format_system = (
        FORMAT_CODE_SYSTEM_IHE
        if classification.format_code.startswith("urn:ihe")
        else (FORMAT_CODE_SYSTEM_ASIP)
    )
    confidentiality = doc.confidentiality or Code("N", vs.CONFIDENTIALITY, "Normal")
    type_row = vs.document_types().get(doc.type_code)
    return DocumentMetadata(
        unique_id=_unique(doc.id),
        set_id=_unique(doc.set_id),
        version_number=doc.version_number,
        type_code=Code(
            doc.code.code, doc.code.code_system, doc.code.display_name or (type_row.label if type_row else "")
        ),
        class_code=Code(classification.class_code, vs.TRE_A03_CLASSE, classification.class_label),
        format_code=Code(classification.format_code, format_system, classification.format_code),
        confidentiality_codes=(confidentiality,),
        healthcare_facility_type=doc.facility_type,
        practice_setting=first_event.practice_setting if first_event else None,
        event_codes=tuple(e.code for e in doc.service_events if e.code is not None),
        creation_time=to_xds_time(doc.effective_time),
        service_start_time=to_xds_time(first_event.start) if first_event else "",
        service_stop_time=to_xds_time(first_event.stop) if first_event else "",
        authors=tuple(_author_metadata(a) for a in doc.authors),
        legal_authenticator=xcn(doc.legal_authenticator) if doc.legal_authenticator else "",
        source_patient_id=ins_cx,
        patient_id=ins_cx,
        source_patient_info=tuple(pid),
        hash=hashlib.sha1(data).hexdigest(),  # noqa: S324 - XDS mandates SHA-1 for the hash slot
        size=len(data),
        title=doc.title,
        language_code=doc.language or "fr-FR",
        replaced_document_id=_unique(doc.replaced_document_id),
    )
