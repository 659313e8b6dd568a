"""XDS metadata derived from a built document (dmp-protocol.md 8.2)."""

from __future__ import annotations

import hashlib

import cda
from cda import build
from cda.build import AuthorInput, PatientInput, VaccinationInput
from cda.metadata import derive


def test_level1_metadata(patient: PatientInput, author: AuthorInput, pdf: bytes) -> None:
    import datetime as dt

    when = dt.datetime(2026, 11, 25, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    data = build.level1(
        type_code="78601-2",
        content=pdf,
        title="CR d'entretien",
        patient=patient,
        author=author,
        effective_time=when,
    )
    doc = cda.parse(data)
    m = derive(doc, data)
    assert m.type_code.code == "78601-2" and m.type_code.code_system == "2.16.840.1.113883.6.1"
    assert (m.class_code.code, m.class_code.code_system) == ("10", "1.2.250.1.213.1.1.4.1")
    assert m.format_code.code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert m.format_code.code_system == "1.3.6.1.4.1.19376.1.2.3"
    assert [c.code for c in m.confidentiality_codes] == ["N"]
    assert m.healthcare_facility_type is not None and m.healthcare_facility_type.code == "SA33"
    assert m.practice_setting is not None and m.practice_setting.code == "AMBULATOIRE"
    assert [c.code for c in m.event_codes] == ["78601-2"]
    assert m.creation_time == "20261125093000"  # UTC
    assert m.service_start_time == "20261125093000"
    assert m.source_patient_id == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH" == m.patient_id
    assert m.source_patient_info == ("PID-5|PAT-TROIS^DOMINIQUE^^^^^L", "PID-7|19790328", "PID-8|F")
    [a] = m.authors
    assert a.person == "899700000039^PHARMACIEN^PAUL^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    assert a.institution == "PHARMACIE DE LA GARE^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^380000000200015"
    assert a.specialty == "G15_21/A^Pharmacien titulaire d'officine^1.2.250.1.213.1.1.4.5"
    assert m.legal_authenticator == a.person
    assert m.hash == hashlib.sha1(data).hexdigest() and m.size == len(data)  # noqa: S324
    assert m.title == "CR d'entretien" and m.language_code == "fr-FR" and m.mime_type == "text/xml"
    assert m.unique_id == doc.id.root and m.unique_id.startswith("2.25.")  # type: ignore[union-attr]
    assert len(m.unique_id) <= 64 and m.replaced_document_id == ""


def test_vac_note_metadata(patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput) -> None:
    data = build.vaccination_note(patient=patient, author=author, vaccination=vaccination)
    m = derive(cda.parse(data), data)
    assert m.format_code.code == "urn:asip:ci-sis:vac-note:2021"
    assert m.format_code.code_system == "1.2.250.1.213.1.1.4.2.282"
    assert m.class_code.code == "52" and m.service_start_time == "20261120"


def test_replacement_metadata(patient: PatientInput, author: AuthorInput, pdf: bytes) -> None:
    first = build.level1(type_code="11488-4", content=pdf, title="CR", patient=patient, author=author)
    second = build.level1(
        type_code="11488-4",
        content=pdf,
        title="CR",
        patient=patient,
        author=author,
        replaces=build.Replacement.of(cda.parse(first)),
    )
    m1, m2 = derive(cda.parse(first), first), derive(cda.parse(second), second)
    assert m2.replaced_document_id == m1.unique_id and m2.set_id == m1.set_id and m2.version_number == 2
