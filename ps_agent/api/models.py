"""Typed request and answer bodies of the local API (they make the OpenAPI 3.1 document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

INS_PATTERN = r"^[0-9]{13}[0-9]{2}$|^[12][0-9]{4}2[AB][0-9]{6}[0-9]{2}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CardStatus(BaseModel):
    present: bool
    holder: str = ""
    id_nat: str = ""
    mode: str = ""  # DIRECTE | INDIRECTE | INDIRECTE_RENFORCEE


class QueueCounts(BaseModel):
    pending: int = 0
    sending: int = 0
    waiting: int = 0
    registered: int = 0
    refused: int = 0
    handed_back: int = 0


class StatusOut(BaseModel):
    version: str
    environment: str
    session_open: bool
    card: CardStatus
    queue: QueueCounts


class PatientTraits(Strict):
    """The patient's INS and traits (cda.build.PatientInput)."""

    ins: str = Field(pattern=INS_PATTERN, description="Matricule INS (NIR ou NIA, 15 caractères)")
    ins_oid: str = Field(
        "", max_length=64, description="OID de l'INS ; vide : celui de l'environnement (test hors production)"
    )
    ins_status: Literal["QUAL", "VALI", "RECUP", "PROV"] = "QUAL"
    birth_family_name: str = Field("", max_length=100)
    given_names: str = Field("", max_length=200)
    first_given_name: str = Field("", max_length=100)
    birth_date: str = Field("", max_length=10, description="AAAA-MM-JJ")
    sex: Literal["M", "F", "U", ""] = ""
    birth_place_code: str = Field("", max_length=5)
    used_family_name: str = Field("", max_length=100)
    used_given_name: str = Field("", max_length=100)


class OpenPatientIn(Strict):
    patient: PatientTraits
    source: str = Field("", max_length=100, description="Nom du logiciel appelant")


class AcceptedOut(BaseModel):
    accepted: bool = True
    message: str


class IdentityIn(Strict):
    birth_family_name: str = Field(min_length=1, max_length=100)
    given_names: str = Field(min_length=1, max_length=200)
    birth_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    sex: Literal["M", "F"]
    birth_place_code: str = Field("", max_length=5)


class IdentityOut(BaseModel):
    found: bool
    identity_id: int | None = None  # the agent's local identity (ps-agent patient show ID)
    ins: str = ""
    ins_oid: str = ""
    status: str = (
        ""  # RNIV status of the local identity: RECUP after INSi, QUAL once an ID document was checked
    )
    traits: dict[str, str] = {}
    message: str = ""


class DmpStatusOut(BaseModel):
    exists: bool
    active: bool
    opposed: bool
    authorisation: str
    is_medecin_traitant: bool
    family_name: str = ""
    given_name: str = ""
    birth_date: str = ""


class ConsentIn(Strict):
    how: Literal["oral", "ecrit"] = "oral"
    medecin_traitant: bool = False


class EmergencyIn(Strict):
    mode: Literal["bris_de_glace", "centre_15"]
    reason: str = Field(min_length=1, max_length=500)


class Author(Strict):
    """The author professional (cda.build.AuthorInput)."""

    id_nat: str = Field(min_length=1, max_length=30)
    family_name: str = Field(min_length=1, max_length=100)
    given_name: str = Field(min_length=1, max_length=100)
    specialty_code: str = Field(min_length=1, max_length=30)
    organization_id: str = Field(min_length=1, max_length=30)
    organization_name: str = Field(min_length=1, max_length=200)
    facility_type_code: str = Field(min_length=1, max_length=10)
    practice_setting_code: str = Field("AMBULATOIRE", max_length=30)


class VisibilityIn(Strict):
    """In the words of the CI-SIS HL7 transmission (MetaDMPMSS)."""

    MASQUE_PS: bool = False
    INVISIBLE_PATIENT: bool = False
    INVISIBLE_REP_LEGAUX: bool = False


class DepositIn(Strict):
    """Either ``pdf_base64`` with its metadata (type_code, title, author), or ``cda_base64`` (ready CDA)."""

    patient: PatientTraits
    pdf_base64: str | None = Field(None, description="Le PDF, en base64")
    cda_base64: str | None = Field(None, description="Un document CDA prêt, en base64")
    type_code: str = Field("", max_length=20, description="Code LOINC du type de document")
    title: str = Field("", max_length=255)
    author: Author | None = None
    visibility: VisibilityIn = VisibilityIn()
    replaces: str = Field("", max_length=128, description="uniqueId du document remplacé")


class QueueDocumentOut(BaseModel):
    """Un document d'un envoi. Son type (et donc sa rubrique) est lu dans le CDA tant que la file le garde :
    vide une fois l'envoi enregistré ou rendu (la file n'en garde plus le contenu)."""

    unique_id: str
    title: str = ""
    type_code: str = ""
    type: str = Field("", description="Libellé français du type de document")
    rubric: str = Field("", description="Rubrique DMP")
    replaces: str = Field("", description="uniqueId du document remplacé")


class QueueItemOut(BaseModel):
    id: str
    state: Literal["pending", "sending", "waiting", "registered", "refused", "handed_back"]
    state_label: str
    reason: str = ""
    reason_code: str = ""
    document_unique_ids: list[str]
    titles: list[str]
    attempts: int
    next_try: float = Field(0.0, description="Prochain essai (secondes depuis 1970, UTC), 0 si aucun")
    next_try_at: str = Field("", description="Prochain essai, date ISO 8601 (vide si aucun)")
    created: str
    updated: str
    events_url: str = ""
    patient_ins: str = Field("", description="Matricule INS du patient")
    patient_ins_oid: str = Field("", description="OID de l'INS du patient")
    patient_ins_status: str = ""
    documents: list[QueueDocumentOut] = []
    MASQUE_PS: bool = False
    INVISIBLE_PATIENT: bool = False
    INVISIBLE_REP_LEGAUX: bool = False
    deposited_by: str = Field("", description="Identifiant national du professionnel qui a déposé")
    on_behalf_of: str = Field("", description="Professionnel auteur (mode établissement)")


class ResumeOutcomeOut(BaseModel):
    id: str
    state: Literal["pending", "sending", "waiting", "registered", "refused", "handed_back"]
    state_label: str
    reason: str = ""
    document_unique_ids: list[str]


class ResumeOut(BaseModel):
    outcomes: list[ResumeOutcomeOut]
    left: int = Field(description="Envois encore en attente après la reprise")


class HandBackIn(Strict):
    folder: str = Field(
        min_length=1, max_length=4096,
        description="Dossier absolu (sur le poste de l'agent) où écrire les documents CDA ; créé au besoin",
    )  # fmt: skip


class HandBackOut(BaseModel):
    id: str
    state: str
    state_label: str
    folder: str
    files: list[str]


class VisibilityChangeIn(Strict):
    """Un changement de visibilité, dans les termes de la transmission HL7 du CI-SIS (MetaDMPMSS). Seul ce
    que le DMP permet après le dépôt : masquer aux professionnels ou démasquer ; rendre visible au patient ;
    rendre visible aux représentants légaux (irréversible, et visible au patient aussi). Un champ absent
    (null) n'est pas modifié ; un seul champ par requête."""

    MASQUE_PS: bool | None = None
    INVISIBLE_PATIENT: Literal[False] | None = None
    INVISIBLE_REP_LEGAUX: Literal[False] | None = None


# What each document action did, in French: the API's ``message`` and the command line's report (both paths).
DOCUMENT_ACTIONS_FR = {
    "mask": "Document masqué aux professionnels de santé.",
    "unmask": "Document démasqué.",
    "make_visible": "Document rendu visible au patient.",
    "make_visible_reps": "Document rendu visible au patient et à ses représentants légaux.",
    "archive": "Document archivé.",
    "unarchive": "Document désarchivé.",
    "delete": "Document supprimé.",
}


class DocumentActionOut(BaseModel):
    unique_id: str
    action: Literal["mask", "unmask", "make_visible", "archive", "unarchive", "delete"]
    message: str


class DocumentAuthorOut(BaseModel):
    id_nat: str
    family_name: str = ""
    given_name: str = ""
    institution_id: str = ""
    institution_name: str = ""
    specialty_code: str = ""
    specialty: str = ""


class DocumentOut(BaseModel):
    unique_id: str
    title: str
    type_code: str
    type: str = Field(description="Libellé français du type de document")
    rubric: str
    creation_time: str
    status: str = Field(description="Disponibilité en français (actif, archivé, obsolète…)")
    authors: list[str]
    MASQUE_PS: bool
    INVISIBLE_PATIENT: bool
    INVISIBLE_REP_LEGAUX: bool
    entry_uuid: str = Field("", description="entryUUID de cette version dans le registre")
    class_code: str = ""
    class_label: str = ""
    format_code: str = ""
    status_code: Literal["approved", "deprecated", "archived", "deleted", ""] = ""
    version: str = ""
    mime_type: str = ""
    service_start: str = ""
    service_stop: str = ""
    author_details: list[DocumentAuthorOut] = []
    size: int | None = None


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]
    hidden: list[str] = []


class VaccinationsOut(BaseModel):
    vaccinations: list[dict[str, object]]


class VaccinationIn(Strict):
    patient: PatientTraits
    author: Author
    cis_code: str = Field(min_length=1, max_length=20)
    vaccine_label: str = Field(min_length=1, max_length=255)
    atc_code: str = Field(min_length=1, max_length=20)
    lot_number: str = Field(min_length=1, max_length=50)
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    dose_rank: int | None = Field(None, ge=1, le=20)
