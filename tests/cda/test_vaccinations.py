"""Vaccination extraction from VAC-NOTE, VAC, IPS-FR and VSM documents, given / not given, de-duplication."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import cda
from cda import build
from cda.build import AuthorInput, PatientInput, VaccinationInput
from cda.vaccinations import atc_info, extract, merge


def test_built_note_round_trips(
    patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput
) -> None:
    [record] = extract(
        cda.parse(build.vaccination_note(patient=patient, author=author, vaccination=vaccination))
    )
    assert record.date == "2026-11-20" and record.vaccine_code == "68747507"
    assert record.atc_code == "J07AM01" and record.antigens == ("tétanos",)
    assert record.lot_number == "AB123" and record.dose_rank == 2 and record.kind == "BOOSTER"
    assert record.given and record.route == "Voie intramusculaire" and record.site == "deltoïde gauche"
    assert record.performer == "PAUL PHARMACIEN" and record.performer_id == "899700000039"
    assert record.document_type == "87273-9"


def test_not_given_is_reported(
    patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput
) -> None:
    note = build.vaccination_note(
        patient=patient, author=author, vaccination=dataclasses.replace(vaccination, given=False)
    )
    [record] = extract(cda.parse(note))
    assert record.given is False


def test_level1_has_no_vaccination(patient: PatientInput, author: AuthorInput, pdf: bytes) -> None:
    doc = cda.parse(
        build.level1(type_code="11369-6", content=pdf, title="Carnet", patient=patient, author=author)
    )
    assert extract(doc) == []


def test_merge_deduplicates_on_date_vaccine_and_lot(
    patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput
) -> None:
    a = extract(cda.parse(build.vaccination_note(patient=patient, author=author, vaccination=vaccination)))
    b = extract(cda.parse(build.vaccination_note(patient=patient, author=author, vaccination=vaccination)))
    other = dataclasses.replace(vaccination, lot_number="ZZ9", date="2025-01-02")
    c = extract(cda.parse(build.vaccination_note(patient=patient, author=author, vaccination=other)))
    merged = merge(a, b, c)
    assert [r.lot_number for r in merged] == ["ZZ9", "AB123"]


def test_atc_table_longest_prefix() -> None:
    assert atc_info("J07BD52")[1] == ("rougeole", "oreillons", "rubéole")
    assert atc_info("J07BB02")[1] == ("grippe",)
    assert atc_info("X99") == ("", ())


@pytest.mark.official
@pytest.mark.parametrize(
    ("name", "count", "first_atc"),
    [
        ("VAC-NOTE_2023.01.xml", 1, "J07AM"),
        ("VAC_2023.01.xml", 4, "J07AN"),
        ("IPS-FR_2024.01.xml", 2, "J07CA01"),
        ("VSM_1.4_2022.01.xml", 0, None),
    ],
)
def test_ans_examples(shared_dir: Path, name: str, count: int, first_atc: str | None) -> None:
    records = extract(cda.parse((shared_dir / "cda" / "examples" / name).read_bytes()))
    assert len(records) == count
    if first_atc:
        assert records[0].atc_code == first_atc and records[0].lot_number and records[0].given
        assert records[0].antigens


@pytest.mark.official
def test_carnet_and_note_are_merged(shared_dir: Path) -> None:
    ex = shared_dir / "cda" / "examples"
    carnet = extract(cda.parse((ex / "VAC_2023.01.xml").read_bytes()))
    note = extract(cda.parse((ex / "VAC-NOTE_2023.01.xml").read_bytes()))
    merged = merge(carnet, note)
    assert len(merged) == 4  # the note's dose is already in the carnet (same date, CIS, lot)
    assert merged[0].date == "1975"


@pytest.mark.official
def test_child_health_certificate_doses_without_dates_stay_distinct(shared_dir: Path) -> None:
    records = extract(cda.parse((shared_dir / "cda" / "examples" / "CSE-CS9_2025.01.xml").read_bytes()))
    assert len(records) == 16
    assert all(r.atc_code.startswith("J07") and r.date == "" for r in records)
    dtp = [r for r in records if r.atc_code == "J07CA01"]
    assert [r.dose_rank for r in dtp] == [1, 2, 3][: len(dtp)] and len(dtp) >= 2
    assert len(merge(records)) == len(records)
