"""The demo data set: patients of :mod:`sandbox.demo`, their settings and ~50 real CDA documents.

Documents are built with ``cda.build`` (level 1 text documents and VAC-NOTE vaccination notes) and
registered through the same metadata path as a deposit (``cda.metadata.derive`` -> ebRIM entry ->
registry form), directly in the store: demo data skips the deposit checks (signature, matrix) on
purpose, e.g. for reimbursement data and patient documents no professional could deposit.
"""

from __future__ import annotations

import datetime as dt
import uuid

from cda import build as cbuild
from sandbox import demo
from sandbox.dmp import build, xds
from sandbox.dmp.service import DmpService
from sandbox.dmp.store import (
    CLOSED,
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    OPPOSED,
    VALIDE,
    NewDocument,
    NewSubmission,
    Store,
    new_entry_uuid,
)
from sandbox.profiles import PROFILES

# (type code, title, author profile, confidentiality extra codes, days ago, metadata author override)
ADULT_DOCUMENTS: tuple[tuple[str, str, str, tuple[str, ...], int, str], ...] = (
    # Synthèse
    ("60591-5", "Synthèse médicale annuelle", "gp", (), 30, ""),
    ("34133-9", "Synthèse d'épisode de soins - cardiologie", "specialist", (), 400, ""),
    ("18761-7", "Note de transfert", "specialist", (), 410, ""),
    ("60591-5", "Synthèse médicale 2024", "gp", (), 700, ""),
    # Traitements et soins
    ("57833-6", "Ordonnance - traitement antihypertenseur", "gp", (), 25, ""),
    ("57833-6", "Ordonnance - renouvellement", "gp", (), 120, ""),
    ("57832-8", "Prescription de soins infirmiers", "gp", (), 90, ""),
    ("60593-1", "Dispensation médicamenteuse", "pharmacist", (), 24, ""),
    ("60593-1", "Dispensation médicamenteuse - renouvellement", "pharmacist", (), 118, ""),
    ("18776-5", "Plan personnalisé de soins", "gp", (), 200, ""),
    ("55115-0", "Demande d'échographie cardiaque", "gp", (), 420, ""),
    # Comptes rendus
    ("11488-4", "Consultation de suivi", "gp", (), 20, ""),
    ("11488-4", "Consultation pour bronchite", "gp", (), 150, ""),
    ("11488-4", "Consultation de cardiologie", "specialist", (), 405, ""),
    ("11490-0", "Lettre de liaison à la sortie", "specialist", (), 402, ""),
    ("15507-7", "Passage aux urgences", "specialist", (), 600, ""),
    ("11506-3", "Suivi de soins infirmiers", "nurse", (), 85, ""),
    ("11506-3", "Suivi de pansement", "nurse", (), 80, ""),
    ("11505-5", "Compte rendu d'acte thérapeutique", "specialist", (MASQUE_PS,), 380, ""),
    ("34794-8", "Réunion de concertation pluridisciplinaire", "specialist", (INVISIBLE_PATIENT,), 10, ""),
    # Imagerie médicale
    ("18748-4", "Échographie cardiaque", "specialist", (), 415, ""),
    ("18748-4", "Radiographie thoracique", "specialist", (), 155, ""),
    ("18748-4", "IRM du genou", "specialist", (), 900, ""),
    # Analyses de biologie
    ("11502-2", "Bilan lipidique", "gp", (), 60, ""),
    ("11502-2", "Numération formule sanguine", "gp", (), 240, ""),
    ("11502-2", "Bilan thyroïdien", "gp", (), 500, ""),
    ("60568-3", "Examen anatomopathologique", "specialist", (), 390, ""),
    # Prévention (vaccination notes are added below)
    ("75492-9", "Dépistage du cancer du col de l'utérus", "gp", (), 300, ""),
    ("75482-0", "Acte préventif - sevrage tabagique", "gp", (), 320, ""),
    ("11369-6", "Historique des vaccinations", "gp", (), 35, ""),
    # Certificats, déclarations
    ("89601-9", "Certificat médical de non contre-indication au sport", "gp", (), 45, ""),
    ("CERT_DECL", "Certificat d'arrêt de travail", "gp", (), 148, ""),
    ("89601-9", "Certificat médical - aptitude", "gp", (), 640, ""),
    # Données de remboursement
    ("REMB", "Données de remboursement 2025", "gp", (), 15, "CNAM"),
    ("REMB", "Données de remboursement 2024", "gp", (), 380, "CNAM"),
    # Espace personnel
    ("EXPPAT_3", "Mes directives anticipées", "gp", (), 220, "PATIENT"),
    ("EXPPAT_2", "Mon carnet de tension", "gp", (), 50, "PATIENT"),
    ("74465-6", "Questionnaire de santé", "gp", (), 55, "PATIENT"),
)

# (profile, CIS, label, ATC, lot, days ago, dose rank, kind)
ADULT_VACCINATIONS = (
    (
        "gp",
        "60234100",
        "REPEVAX, suspension injectable en seringue préremplie",
        "J07CA01",
        "DTC1234",
        100,
        4,
        "BOOSTER",
    ),
    (
        "pharmacist",
        "68669093",
        "VAXIGRIPTETRA, suspension injectable",
        "J07BB02",
        "GRP2025A",
        40,
        None,
        "IMMUNIZ",
    ),
    ("nurse", "64890536", "COMIRNATY, dispersion injectable", "J07BN01", "CVD9876", 70, 3, "BOOSTER"),
)


def _patient_input(p: demo.DemoPatient) -> cbuild.PatientInput:
    return build.patient_input(p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place)


def _register(
    store: Store,
    patient: demo.DemoPatient,
    data: bytes,
    confidentiality: tuple[str, ...],
    author_override: str = "",
) -> None:
    meta = build.derive(data)
    entry = build.document_entry(meta, "Document01", ("N", *confidentiality))
    obj = xds.read_object(entry)
    entry_uuid = new_entry_uuid()
    author = meta.authors[0] if meta.authors else None
    doc = NewDocument(
        entry_uuid=entry_uuid,
        unique_id=meta.unique_id,
        patient_ins=patient.ins,
        patient_oid=patient.oid,
        type_code=meta.type_code.code,
        class_code=meta.class_code.code,
        format_code=meta.format_code.code,
        practice_code=meta.practice_setting.code if meta.practice_setting else "",
        facility_code=meta.healthcare_facility_type.code if meta.healthcare_facility_type else "",
        confidentiality=tuple(sorted({"N", *confidentiality})),
        author_id=author_override or (author.id_nat if author else ""),
        author_structure="" if author_override else xds.parse_xon_id(author.institution if author else ""),
        title=meta.title,
        mime_type="text/xml",
        hash=meta.hash,
        size=meta.size,
        creation_time=meta.creation_time,
        service_start=meta.service_start_time,
        service_stop=meta.service_stop_time,
        set_id=meta.set_id,
        metadata=DmpService._registered_metadata(obj, entry_uuid, data, meta.unique_id),
        content=data,
    )
    store.register(
        NewSubmission(
            entry_uuid=new_entry_uuid(),
            unique_id=f"2.25.{uuid.uuid4().int}",
            patient_ins=patient.ins,
            author_id=doc.author_id,
            submission_time=meta.creation_time,
            source_id=build.SANDBOX_OID,
            signature=None,
            documents=[doc],
        )
    )


def _text_doc(patient: demo.DemoPatient, type_code: str, title: str, profile: str, days_ago: int) -> bytes:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago, hours=2)
    text = f"{title}\n\nDocument de démonstration du bac à sable DMP (patient fictif).\n"
    return build.text_document(
        _patient_input(patient), build.author_input(PROFILES[profile]), type_code, title, text, effective=when
    )


def _vac_note(
    patient: demo.DemoPatient,
    profile: str,
    cis: str,
    label: str,
    atc: str,
    lot: str,
    days_ago: int,
    rank: int | None,
    kind: str,
) -> bytes:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago)
    vac = cbuild.VaccinationInput(
        cis_code=cis,
        vaccine_label=label,
        atc_code=atc,
        lot_number=lot,
        date=when.date(),
        dose_rank=rank,
        kind=kind,
        route_code="20035000",
    )
    return cbuild.vaccination_note(
        patient=_patient_input(patient),
        author=build.author_input(PROFILES[profile]),
        vaccination=vac,
        effective_time=when,
    )


def _create(store: Store, p: demo.DemoPatient, status: str | None = None) -> bool:
    if store.patient(p.ins) is not None:
        return False
    store.create_patient(p.ins, p.oid, p.family_name, p.given_names, p.birth_date, p.sex, p.birth_place)
    if status:
        store.set_status(p.ins, status)
    return True


def _authorise(store: Store, ins: str, *profiles: str) -> None:
    for name in profiles:
        prof = PROFILES[name]
        store.set_authorisation(
            ins,
            prof.id_nat,
            VALIDE,
            family_name=prof.family_name,
            given_name=prof.given_name,
            speciality=f"G15_{prof.profession_code}/{prof.specialty_code}".rstrip("/"),
        )


def seed(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    adult = demo.DEMO_ADULT
    if _create(store, adult):
        store.set_medecin_traitant(adult.ins, PROFILES["gp"].id_nat)
        _authorise(store, adult.ins, "gp", "specialist", "pharmacist", "nurse")
        for type_code, title, profile, conf, days, override in ADULT_DOCUMENTS:
            _register(store, adult, _text_doc(adult, type_code, title, profile, days), conf, override)
        for profile, cis, label, atc, lot, days, rank, kind in ADULT_VACCINATIONS:
            _register(store, adult, _vac_note(adult, profile, cis, label, atc, lot, days, rank, kind), ())
    minor = demo.DEMO_MINOR
    if _create(store, minor):
        for name, relation in demo.LEGAL_REPRESENTATIVES:
            store.add_legal_representative(minor.ins, name, relation)
        store.set_medecin_traitant(minor.ins, PROFILES["gp"].id_nat)
        _authorise(store, minor.ins, "gp")
        _register(store, minor, _text_doc(minor, "11488-4", "Consultation pédiatrique", "gp", 60), ())
        _register(
            store,
            minor,
            _vac_note(
                minor,
                "gp",
                "60234100",
                "REPEVAX, suspension injectable",
                "J07CA01",
                "DTC5678",
                200,
                3,
                "BOOSTER",
            ),
            (),
        )
        _register(
            store,
            minor,
            _text_doc(minor, "11488-4", "Consultation confidentielle (secret du mineur)", "gp", 20),
            (INVISIBLE_REPRESENTANTS_LEGAUX,),
        )
    blocking = demo.DEMO_BLOCKING
    if _create(store, blocking):
        _authorise(store, blocking.ins, "gp")
        store.block(blocking.ins, PROFILES["nurse"].id_nat)
        _register(store, blocking, _text_doc(blocking, "11488-4", "Consultation", "gp", 30), ())
        _register(store, blocking, _text_doc(blocking, "11506-3", "Soins infirmiers", "nurse", 40), ())
    closed = demo.DEMO_CLOSED
    if _create(store, closed):
        _register(store, closed, _text_doc(closed, "11488-4", "Consultation ancienne", "gp", 1200), ())
        store.set_status(closed.ins, CLOSED)
    _create(store, demo.DEMO_OPPOSED, OPPOSED)
    for p in demo.DEMO_PATIENTS:
        counts[p.ins] = store.document_count(p.ins)
    return counts
