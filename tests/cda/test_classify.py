"""Classification: class code (ASS_X04), DMP rubric (9 + gestion), Mon espace santé category, formatCode."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cda import valuesets as vs
from cda.classify import classify_type
from cda.errors import TypeNotAcceptedByDmp, UnknownTypeCode


def test_every_dmp_type_has_a_known_rubric_and_category() -> None:
    codes = vs.dmp_type_codes()
    assert len(codes) == 101  # J07 2026 codes that are in JDV_J66 (ASS_X16 2024-02-23)
    for code in codes:
        c = classify_type(code)
        assert c.class_code in vs.DMP_CLASS_CODES, code
        assert c.dmp_rubric in (*vs.DMP_RUBRICS, vs.DMP_RUBRIC_GESTION), (code, c.dmp_rubric)
        assert c.mes_rubric in vs.MES_CATEGORIES, (code, c.mes_rubric)
        assert c.dmp_accepted


@pytest.mark.parametrize(
    ("code", "class_code", "rubric", "mes"),
    [
        ("11488-4", "10", "Comptes rendus", "CPT_REND"),
        ("11502-2", "10", "Analyses de biologie", "BIOLOGIE"),
        ("18748-4", "31", "Imagerie médicale", "RADIO_SC"),
        ("60591-5", "11", "Synthèse", "SYNTHESE"),
        ("57833-6", "42", "Traitements et soins", "ORD_SOIN"),
        ("87273-9", "52", "Prévention", "DEPISTAG"),
        ("89601-9", "52", "Certificats, déclarations", "CERT_MED"),
        ("REMB", "60", "Données de remboursement", "REMB"),
        ("EXPPAT_3", "90", "Espace personnel", "DIR_ANT"),
        ("DOCPAT08", "11", "Synthèse", "SYNTH_PML"),
        ("ATTEST-RESID", "95", "Documents administratifs et de gestion", "DOC_ADM"),
    ],
)
def test_known_assignments(code: str, class_code: str, rubric: str, mes: str) -> None:
    c = classify_type(code)
    assert (c.class_code, c.dmp_rubric, c.mes_rubric) == (class_code, rubric, mes)


def test_vaccination_types_feed_the_vaccination_book() -> None:
    for code in ("11369-6", "87273-9", "96874-3"):
        assert classify_type(code).in_vaccination_book
    assert not classify_type("11488-4").in_vaccination_book


@pytest.mark.parametrize("code", ["96874-3", "68817-6", "83869-8", "11528-7"])
def test_project_corrections_are_marked_and_explained(code: str) -> None:
    row = vs.document_type(code)
    assert row.rubric_source == "PROJECT" and row.note
    assert not classify_type(code).rubric_inferred


def test_unknown_and_refused_type_codes() -> None:
    with pytest.raises(UnknownTypeCode) as exc:
        classify_type("99999-9")
    assert exc.value.field == "code"
    with pytest.raises(TypeNotAcceptedByDmp) as exc2:
        vs.check_dmp_type("28617-9")  # in J07 2026, not in JDV_J66
    assert exc2.value.field == "code" and "n'est pas accepté par le DMP" in exc2.value.message_fr


def test_class_codes_match_the_reference_table(shared_dir: Path) -> None:
    with (shared_dir / "reference" / "document-types.csv").open(encoding="utf-8") as fh:
        reference = {r["type_code"]: r["class_code"] for r in csv.DictReader(fh)}
    assert set(reference) == set(vs.document_types())
    for code, class_code in reference.items():
        assert classify_type(code).class_code == class_code, code


def test_value_sets_are_loaded() -> None:
    assert vs.facility_types()["SA33"].display_name == "Pharmacie d'officine"
    assert vs.is_practice_setting("AMBULATOIRE")
    assert vs.is_author_specialty("G15_10/SM26")
    assert vs.volet_format_codes()[vs.TPL_VAC_NOTE] == vs.FORMAT_VAC_NOTE
