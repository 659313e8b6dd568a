"""CDA documents for the journeys, built with the project's own builders (cda.build)."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from cda import build


def pdf(text: str = "Lettre") -> bytes:
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=595, height=842)
    w.add_metadata({"/Title": text})
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def patient_input(p: Any) -> build.PatientInput:
    return build.PatientInput(
        ins=p.ins,
        birth_family_name=p.family_name,
        given_names=p.given_names,
        birth_date=p.birth_date,
        sex=p.sex,
        birth_place_code=p.birth_place,
        ins_oid=p.oid,
    )


SPECIALTY = {"10": "G15_10/SM26", "21": "G15_21", "60": "G15_60"}


def author_input(profile_name: str) -> build.AuthorInput:
    from sandbox.profiles import PROFILES

    pr = PROFILES[profile_name]
    s = pr.situations[0]
    spec = SPECIALTY.get(pr.profession_code, "G15_10/SM26")
    if pr.profession_code == "10" and pr.specialty_code:
        spec = f"G15_10/{pr.specialty_code}"
    return build.AuthorInput(
        id_nat=pr.id_nat,
        family_name=pr.family_name,
        given_name=pr.given_name,
        specialty_code=spec,
        organization_id=s.structure_id,
        organization_name=s.structure_name,
        facility_type_code=s.sector,
        practice_setting_code="AMBULATOIRE" if s.sector != "SA01" else "ETABLISSEMENT",
    )


def letter(p: Any, author: str = "gp", *, type_code: str = "11488-4", title: str = "Consultation du jour",
           replaces: Any = None, size: int = 0) -> bytes:  # fmt: skip
    content = pdf(title)
    if size:
        content = content + b"%" + b"x" * max(0, size - len(content) - 2) + b"\n"
    return build.level1(
        type_code=type_code,
        content=content,
        title=title,
        patient=patient_input(p),
        author=author_input(author),
        media_type="application/pdf",
        replaces=replaces,
    )


def vaccination(p: Any, author: str = "pharmacist", *, lot_number: str = "LOT-E2E-1") -> bytes:
    return build.vaccination_note(
        patient=patient_input(p),
        author=author_input(author),
        vaccination=build.VaccinationInput(
            cis_code="63041934",
            vaccine_label="VAXIGRIPTETRA, suspension injectable en seringue préremplie",
            atc_code="J07BB02",
            lot_number=lot_number,
            date=dt.date.today() - dt.timedelta(days=1),
        ),
    )
