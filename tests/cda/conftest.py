"""Fixtures of the CDA tests: patient/author inputs from the shared test identities, PDFs, validators."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfWriter

from cda.build import AuthorInput, PatientInput, VaccinationInput
from sandbox.profiles import PROFILES

# The ANS INS test patient used by the ANS examples and skeletons (valid key).
TEST_PATIENT = {
    "ins": "279035121518989",
    "ins_oid": "1.2.250.1.213.1.4.10",
    "birth_family_name": "PAT-TROIS",
    "given_names": "DOMINIQUE MARIE-LOUISE",
    "first_given_name": "DOMINIQUE",
    "birth_date": "1979-03-28",
    "sex": "F",
    "birth_place_code": "51215",
}


def author_dict(profile: str = "pharmacist", specialty: str = "G15_21/A") -> dict[str, str]:
    p = PROFILES[profile]
    sit = p.situations[0]
    return {
        "id_nat": p.id_nat,
        "family_name": p.family_name,
        "given_name": p.given_name,
        "specialty_code": specialty,
        "organization_id": sit.structure_id,
        "organization_name": sit.structure_name,
        "facility_type_code": sit.sector,
        "practice_setting_code": "AMBULATOIRE",
    }


VACCINATION = {
    "cis_code": "68747507",
    "vaccine_label": "VACCIN TETANIQUE PASTEUR, suspension injectable en seringue préremplie",
    "atc_code": "J07AM01",
    "lot_number": "AB123",
    "date": "2026-11-20",
    "dose_rank": 2,
    "kind": "BOOSTER",
    "route_code": "20035000",
    "site_code": "16217701000119102",
}


def make_pdf(pages: int = 1, padding: int = 0) -> bytes:
    """A real PDF written by pypdf; ``padding`` bytes of metadata make it bigger (e.g. ~200 KB)."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    if padding:
        writer.add_metadata({"/Subject": "x" * padding})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def patient() -> PatientInput:
    return PatientInput.from_dict(TEST_PATIENT)


@pytest.fixture
def author() -> AuthorInput:
    return AuthorInput.from_dict(author_dict())


@pytest.fixture
def gp_author() -> AuthorInput:
    return AuthorInput.from_dict(author_dict("gp", "G15_10/SM26"))


@pytest.fixture
def vaccination() -> VaccinationInput:
    return VaccinationInput.from_dict(VACCINATION)


@pytest.fixture(scope="session")
def pdf() -> bytes:
    return make_pdf()


@pytest.fixture(scope="session")
def official(shared_dir: Path):
    """The official validator over ../shared/cda, StrucMin compiled once for the whole session."""
    from cda.official import OfficialValidator

    validator = OfficialValidator(shared_dir / "cda")
    validator.warm_up()
    return validator
