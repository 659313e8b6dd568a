"""The DMP access rules the sandbox enforces (access-rules.md), as pure functions over store records.

Every refusal is an :class:`AccessRefused` carrying a DMP error code (see ``ERROR_CODES`` in
:mod:`sandbox.dmp.errors`) and the French sentence a professional reads. Decisions the spec marks
inferred ([I]/[?]) are constants at the top of this module, so each can be corrected in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.dmp import errors as E
from sandbox.dmp import matrix
from sandbox.dmp.store import (
    APPROVED,
    ARCHIVED,
    CLOSED,
    DELETED,
    DEPRECATED,
    INTERDIT,
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    OPPOSED,
    VALIDE,
    Authorisation,
    Patient,
    StoredDocument,
)
from sandbox.server.context import PURPOSE_BRIS_DE_GLACE, PURPOSE_CENTRE_15, PURPOSE_NORMAL, Caller

# --- Decisions on inferred / open points (one place) ---------------------------------------------
# [?] dmp-protocol 7.1 "emergency override for a blocked PS": a block is the patient's explicit will about
# this professional; we keep it in emergency too (bris de glace and centre 15 do not lift a block).
BLOCK_APPLIES_IN_EMERGENCY = True
# [I] PAT-03 parameter cumul-invisible_patient-masque_ps=false: a deposit may not combine both codes.
ALLOW_INVISIBLE_PATIENT_WITH_MASQUE_PS = False
# [I] dmp-protocol 7.9: only the author deletes. Archiving/unarchiving: any professional who may see the
# document (the archive is a shared view of the DMP, not the author's property).
ARCHIVE_AUTHOR_ONLY = False
# [I] Who counts as "the author" of a masked document (R1111-49: "the PS or establishment that deposited
# it"): the depositing PS, or any user of the depositing structure.
AUTHOR_STRUCTURE_SEES_MASKED = True
# [C] DEP-02 "only documents the PS authors": in DIRECTE mode the document's author (authorPerson idNat)
# must be the card holder; in INDIRECTE_RENFORCEE the VIHF's author professional when given;
# INDIRECTE deposits for the establishment's authors are not tied to the local user.
DIRECT_DEPOSIT_AUTHOR_MUST_BE_CALLER = True
# [I] ACC-03: authorisation expiry is not confirmed; the current DMP is treated as non-expiring.
AUTHORISATION_VALIDITY_DAYS: int | None = None


@dataclass(frozen=True)
class AccessRefused(Exception):
    """A refused access: ``code`` for the registry/HL7/DMP status, ``message_fr`` for the user."""

    code: str
    message_fr: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message_fr}"


def is_ps(caller: Caller) -> bool:
    return bool(caller.profession_code)


def check_dmp_open(patient: Patient | None) -> Patient:
    """PAT-06: no DMP, closed DMP, opposition -> no deposit, no consultation."""
    if patient is None:
        raise AccessRefused(E.DMP_NOT_FOUND, "Ce patient n'a pas de DMP.")
    if patient.status == CLOSED:
        raise AccessRefused(
            E.DMP_CLOSED, "Le DMP de ce patient est fermé : aucun dépôt ni consultation possible."
        )
    if patient.status == OPPOSED:
        raise AccessRefused(
            E.DMP_OPPOSED, "Le patient s'est opposé à son DMP : aucun dépôt ni consultation possible."
        )
    return patient


def check_not_regulation_write(caller: Caller) -> None:
    """URG-06 / DEP-03: the centre 15 mode is consultation only."""
    if caller.purpose == PURPOSE_CENTRE_15:
        raise AccessRefused(
            E.ACCESS_DENIED, "Le mode centre 15 (régulation) ne permet que la consultation du DMP."
        )


def expected_author(caller: Caller) -> str:
    """The idNat a deposited document's author must have ("" when any author of the structure may)."""
    if not DIRECT_DEPOSIT_AUTHOR_MUST_BE_CALLER:
        return ""
    if caller.mode == "DIRECTE" and is_ps(caller):
        return caller.id_nat
    if caller.mode == "INDIRECTE_RENFORCEE" and caller.author_id_nat:
        return caller.author_id_nat
    return ""


def check_deposit(
    caller: Caller, patient: Patient | None, author_profession: str, author_specialty: str, type_code: str
) -> Patient:
    """DEP-03: open DMP, not in regulation mode, habilitation matrix (write) for the author's profession.

    Neither the authorisation (ACC-07) nor a block (PAT-01) stops a deposit.
    """
    found = check_dmp_open(patient)
    check_not_regulation_write(caller)
    profession = author_profession or caller.profession_code
    specialty = author_specialty if author_profession else caller.specialty_code
    if profession and not matrix.can_write(profession, specialty, type_code):
        raise AccessRefused(E.HABILITATION, matrix.explain_write(profession, specialty, type_code))
    return found


def check_consultation(
    caller: Caller, patient: Patient | None, authorisation: Authorisation | None
) -> Patient:
    """Who may consult a DMP at all (TD3.x): ACC-03, PAT-01, URG-01/05/06, AUTH-04."""
    found = check_dmp_open(patient)
    if not is_ps(caller):
        raise AccessRefused(
            E.ACCESS_DENIED, "Consultation réservée aux professionnels prenant en charge le patient."
        )
    blocked = authorisation is not None and authorisation.status == INTERDIT
    if caller.purpose == PURPOSE_NORMAL:
        if blocked:
            raise AccessRefused(
                E.BLOCKED,
                "Le patient a bloqué votre accès à son dossier."
                " Vous pouvez toujours y déposer des documents.",
            )
        if authorisation is None or authorisation.status != VALIDE:
            raise AccessRefused(
                E.NOT_AUTHORISED,
                "Vous n'êtes pas autorisé sur ce DMP :"
                " le patient doit donner son accord avant la consultation.",
            )
        return found
    if blocked and BLOCK_APPLIES_IN_EMERGENCY:
        raise AccessRefused(E.BLOCKED, "Le patient a bloqué votre accès à son dossier, y compris en urgence.")
    if caller.purpose == PURPOSE_BRIS_DE_GLACE:
        if not found.allow_bris_de_glace:
            raise AccessRefused(
                E.EMERGENCY_REFUSED, "Le patient s'est opposé à l'accès en urgence à son dossier."
            )
        return found
    if caller.purpose == PURPOSE_CENTRE_15:
        if not found.allow_centre_15:
            raise AccessRefused(
                E.EMERGENCY_REFUSED,
                "Le patient s'est opposé à l'accès à son dossier par le centre 15 (SAMU).",
            )
        return found
    raise AccessRefused(E.ACCESS_DENIED, f"Mode d'accès inconnu : {caller.purpose}.")


def is_author(caller: Caller, doc: StoredDocument) -> bool:
    if doc.author_id and doc.author_id in (caller.id_nat, caller.author_id_nat):
        return True
    return (
        AUTHOR_STRUCTURE_SEES_MASKED
        and bool(doc.author_structure)
        and doc.author_structure == caller.structure_id
    )


def is_medecin_traitant(caller: Caller, patient: Patient) -> bool:
    return bool(patient.medecin_traitant) and patient.medecin_traitant == caller.id_nat


def can_see(caller: Caller, patient: Patient, doc: StoredDocument) -> bool:
    """Whether one document is visible to a caller already allowed on the DMP (check_consultation).

    - Deleted documents: only their author (dmp-protocol 7.6).
    - MASQUE_PS: author (or his structure) and médecin traitant (PAT-02, MT-01); in emergency only if
      the patient allows masked documents in emergency (URG-05).
    - The habilitation matrix (read) for the caller's profession; the author always sees his document.
    """
    author = is_author(caller, doc)
    if doc.status == DELETED and not author:
        return False
    if MASQUE_PS in doc.confidentiality and not author:
        if caller.purpose == PURPOSE_NORMAL:
            if not is_medecin_traitant(caller, patient):
                return False
        elif not patient.allow_masked_in_emergency:
            return False
    if author:
        return True
    role = (
        "REGULATEUR"
        if caller.purpose == PURPOSE_CENTRE_15
        else ("MEDECIN_TRAITANT" if is_medecin_traitant(caller, patient) else "")
    )
    return matrix.can_read(caller.profession_code, caller.specialty_code, doc.type_code, role=role)


def check_deposit_confidentiality(caller: Caller, patient: Patient, codes: set[str]) -> None:
    """PAT-03 / PAT-05 on the confidentiality codes of a new document."""
    if not ALLOW_INVISIBLE_PATIENT_WITH_MASQUE_PS and INVISIBLE_PATIENT in codes and MASQUE_PS in codes:
        raise AccessRefused(
            E.METADATA,
            "Un document ne peut pas être à la fois masqué aux professionnels et invisible au patient.",
        )
    if (
        caller.confidentiality == INVISIBLE_REPRESENTANTS_LEGAUX
        and INVISIBLE_REPRESENTANTS_LEGAUX not in codes
    ):
        raise AccessRefused(
            E.METADATA,
            "Connexion secrète du mineur : le document doit être invisible aux représentants légaux"
            " (INVISIBLE_REPRESENTANTS_LEGAUX).",
        )
    if INVISIBLE_REPRESENTANTS_LEGAUX in codes and not patient.is_minor:
        raise AccessRefused(
            E.METADATA,
            "Le code INVISIBLE_REPRESENTANTS_LEGAUX ne concerne que les patients mineurs.",
        )


def check_confidentiality_update(
    caller: Caller, patient: Patient, doc: StoredDocument, new: set[str]
) -> None:
    """ITI-57 TD3.3a/b: mask/unmask (MASQUE_PS) and make visible; nothing else may change."""
    old = set(doc.confidentiality)
    added, removed = new - old, old - new
    for code in added:
        if code != MASQUE_PS:
            raise AccessRefused(
                E.METADATA_UPDATE,
                f"Un document rendu visible ne peut pas redevenir invisible ({code}).",
            )
    if "N" in removed:
        raise AccessRefused(E.METADATA_UPDATE, "Le code de confidentialité N doit rester présent.")
    unknown = (added | removed) - {MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX}
    if unknown:
        raise AccessRefused(
            E.METADATA_UPDATE, f"Codes de confidentialité non modifiables : {', '.join(sorted(unknown))}."
        )
    if not ALLOW_INVISIBLE_PATIENT_WITH_MASQUE_PS and INVISIBLE_PATIENT in new and MASQUE_PS in new:
        raise AccessRefused(
            E.METADATA_UPDATE,
            "Un document invisible au patient ne peut pas être masqué aux professionnels.",
        )


def check_status_change(caller: Caller, doc: StoredDocument, original: str, new: str) -> None:
    """ITI-57 TD3.3c/d: archive, unarchive, delete."""
    if original != doc.status:
        raise AccessRefused(
            E.METADATA_UPDATE,
            "Le statut d'origine indiqué ne correspond pas au statut actuel du document.",
        )
    allowed = {
        (APPROVED, ARCHIVED),
        (ARCHIVED, APPROVED),
        (APPROVED, DELETED),
        (ARCHIVED, DELETED),
        (DEPRECATED, DELETED),
    }
    if (original, new) not in allowed:
        raise AccessRefused(E.METADATA_UPDATE, f"Changement de statut non permis : {original} → {new}.")
    if new == DELETED and not is_author(caller, doc):
        raise AccessRefused(E.ACCESS_DENIED, "Seul l'auteur d'un document peut le supprimer.")
    if ARCHIVE_AUTHOR_ONLY and new != DELETED and not is_author(caller, doc):
        raise AccessRefused(E.ACCESS_DENIED, "Seul l'auteur d'un document peut l'archiver.")
