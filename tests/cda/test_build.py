"""Builders: level-1 for every DMP type, replacement, VAC-NOTE, and every bad input of the issue."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest

import cda
from cda import build, valuesets
from cda.build import AuthorInput, PatientInput, Replacement, VaccinationInput
from cda.errors import (
    InputFileError,
    InvalidDate,
    InvalidInput,
    InvalidIns,
    InvalidPdfError,
    InvalidRpps,
    MissingTrait,
    TypeNotAcceptedByDmp,
    UnknownTypeCode,
)
from cda.validate import errors, validate_builtin
from tests.cda.conftest import TEST_PATIENT, author_dict, make_pdf

H = "{urn:hl7-org:v3}"


def _level1(patient: PatientInput, author: AuthorInput, **kw: object) -> bytes:
    args: dict[str, object] = {"type_code": "78601-2", "content": make_pdf(), "title": "CR d'entretien"}
    args.update(kw)
    return build.level1(patient=patient, author=author, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("type_code", valuesets.dmp_type_codes())
def test_level1_for_every_dmp_type_passes_the_builtin_rules(
    type_code: str, patient: PatientInput, gp_author: AuthorInput, pdf: bytes
) -> None:
    data = build.level1(type_code=type_code, content=pdf, title="Document", patient=patient, author=gp_author)
    assert errors(validate_builtin(data)) == []
    doc = cda.parse(data)
    assert doc.type_code == type_code and doc.is_level1 and doc.media_type == "application/pdf"


def test_level1_header(patient: PatientInput, author: AuthorInput, pdf: bytes) -> None:
    data = _level1(patient, author, content=pdf)
    doc = cda.parse(data)
    assert [r for r, _ in doc.template_ids] == list(valuesets.LEVEL1_TEMPLATES)
    assert doc.version_number == 1 and doc.id != doc.set_id
    assert doc.patient is not None and doc.patient.ins is not None
    assert doc.patient.ins.extension == "279035121518989" and doc.patient.ins.root == "1.2.250.1.213.1.4.10"
    assert (doc.patient.first_given_name, doc.patient.given_names) == ("DOMINIQUE", "DOMINIQUE MARIE-LOUISE")
    assert doc.patient.birth_time == "19790328" and doc.patient.birth_place_code == "51215"
    author0 = doc.authors[0]
    assert author0.id is not None and author0.id.extension == "899700000039"
    assert author0.code is not None and author0.code.code == "G15_21/A"
    assert doc.facility_type is not None and doc.facility_type.code == "SA33"
    assert doc.service_events[0].practice_setting is not None
    assert doc.language == "fr-FR" and doc.confidentiality is not None and doc.confidentiality.code == "N"
    body = doc.root.find(f"{H}component/{H}nonXMLBody/{H}text")
    assert body is not None and base64.b64decode(body.text or "") == pdf


def test_text_level1(patient: PatientInput, author: AuthorInput) -> None:
    data = _level1(patient, author, content=b"Compte rendu en texte.\n")
    assert cda.parse(data).media_type == "text/plain"
    with pytest.raises(InputFileError):
        _level1(patient, author, content=b"\xff\xfe\x00bad", media_type="text/plain")


def test_ids_are_unique_per_version(patient: PatientInput, author: AuthorInput) -> None:
    docs = [cda.parse(_level1(patient, author)) for _ in range(3)]
    assert len({d.id for d in docs}) == 3 and len({d.set_id for d in docs}) == 3


def test_replacement_keeps_set_id_and_increments_version(patient: PatientInput, author: AuthorInput) -> None:
    first = cda.parse(_level1(patient, author))
    second = cda.parse(_level1(patient, author, replaces=Replacement.of(first)))
    assert second.set_id == first.set_id and second.version_number == 2
    assert second.replaced_document_id == first.id and second.id != first.id
    third = cda.parse(_level1(patient, author, replaces=Replacement.of(second)))
    assert third.version_number == 3 and third.replaced_document_id == second.id
    with pytest.raises(InvalidInput):
        _level1(patient, author, replaces=Replacement.of(first), document_id=first.id)


# --- bad input --------------------------------------------------------------------------------------------
def test_not_a_pdf(patient: PatientInput, author: AuthorInput) -> None:
    with pytest.raises(InvalidPdfError) as exc:
        _level1(patient, author, content=b"GIF89a not a pdf", media_type="application/pdf")
    assert exc.value.field == "content" and "PDF" in exc.value.message_fr


def test_pdf_header_but_unreadable(patient: PatientInput, author: AuthorInput) -> None:
    with pytest.raises(InvalidPdfError) as exc:
        _level1(patient, author, content=b"%PDF-1.7\n" + b"garbage " * 100, media_type="application/pdf")
    assert exc.value.field == "content" and "illisible" in exc.value.message_fr


def test_truncated_pdf(patient: PatientInput, author: AuthorInput) -> None:
    pdf = make_pdf(pages=2)
    with pytest.raises(InvalidPdfError):
        _level1(patient, author, content=pdf[: len(pdf) // 3], media_type="application/pdf")


def test_encrypted_pdf_is_refused(patient: PatientInput, author: AuthorInput) -> None:
    import io

    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(InvalidPdfError) as exc:
        _level1(patient, author, content=out.getvalue())
    assert "chiffré" in exc.value.message_fr


def test_empty_file(patient: PatientInput, author: AuthorInput) -> None:
    with pytest.raises(InputFileError) as exc:
        _level1(patient, author, content=b"")
    assert exc.value.field == "content" and "vide" in exc.value.message_fr


def test_oversize_file_with_configurable_limit(patient: PatientInput, author: AuthorInput) -> None:
    pdf = make_pdf(padding=50_000)
    with pytest.raises(InputFileError) as exc:
        _level1(patient, author, content=pdf, max_content_bytes=20_000)
    assert exc.value.field == "content" and "volumineux" in exc.value.message_fr
    assert build.DEFAULT_MAX_CONTENT_BYTES == 20 * 1024 * 1024
    big = b"%PDF-1.4\n" + b"0" * (build.DEFAULT_MAX_CONTENT_BYTES + 1)
    with pytest.raises(InputFileError):
        _level1(patient, author, content=big)


def test_unknown_type_code(patient: PatientInput, author: AuthorInput) -> None:
    with pytest.raises(UnknownTypeCode) as exc:
        _level1(patient, author, type_code="12345-6")
    assert exc.value.field == "code"


@pytest.mark.parametrize("type_code", ["28617-9", "FEUILLE-DE-STYLE", "11493-4", "11526-1"])
def test_type_code_not_accepted_by_the_dmp(
    patient: PatientInput, author: AuthorInput, type_code: str
) -> None:
    with pytest.raises(TypeNotAcceptedByDmp) as exc:
        _level1(patient, author, type_code=type_code)
    assert exc.value.field == "code"


@pytest.mark.parametrize(
    "trait", ["ins", "birth_family_name", "given_names", "birth_date", "sex", "birth_place_code"]
)
@pytest.mark.parametrize("how", ["absent", "blank"])
def test_missing_trait(trait: str, how: str, author: AuthorInput) -> None:
    data = dict(TEST_PATIENT)
    if how == "absent":
        del data[trait]
        with pytest.raises(MissingTrait) as exc:
            PatientInput.from_dict(data)
    else:
        data[trait] = "  "
        with pytest.raises(MissingTrait) as exc:
            _level1(PatientInput.from_dict(data), author)
    assert exc.value.field == f"patient.{trait}"


def test_birth_date_in_the_future(author: AuthorInput) -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    patient = PatientInput.from_dict({**TEST_PATIENT, "birth_date": tomorrow.isoformat()})
    with pytest.raises(InvalidDate) as exc:
        _level1(patient, author)
    assert exc.value.field == "patient.birth_date" and "futur" in exc.value.message_fr


def test_unparsable_birth_date(author: AuthorInput) -> None:
    with pytest.raises(InvalidDate) as exc:
        _level1(PatientInput.from_dict({**TEST_PATIENT, "birth_date": "31/02/1979"}), author)
    assert exc.value.field == "patient.birth_date"


@pytest.mark.parametrize(
    "id_nat", ["99700000039", "89970000003", "8997000000391", "799700000039", "8A9700000039"]
)
def test_malformed_rpps(id_nat: str, patient: PatientInput) -> None:
    author = AuthorInput.from_dict({**author_dict(), "id_nat": id_nat})
    with pytest.raises(InvalidRpps) as exc:
        _level1(patient, author)
    assert exc.value.field == "author.id_nat" and "RPPS" in exc.value.message_fr


def test_wrong_ins_key(author: AuthorInput) -> None:
    with pytest.raises(InvalidIns) as exc:
        _level1(PatientInput.from_dict({**TEST_PATIENT, "ins": "279035121518988"}), author)
    assert exc.value.field == "patient.ins"


@pytest.mark.parametrize(
    ("field", "value", "expected_field"),
    [
        ("sex", "X", "patient.sex"),
        ("birth_place_code", "512", "patient.birth_place_code"),
        ("ins_oid", "1.2.3", "patient.ins_oid"),
    ],
)
def test_other_patient_errors(field: str, value: str, expected_field: str, author: AuthorInput) -> None:
    with pytest.raises(InvalidInput) as exc:
        _level1(PatientInput.from_dict({**TEST_PATIENT, field: value}), author)
    assert exc.value.field == expected_field


@pytest.mark.parametrize(
    ("field", "value"),
    [("specialty_code", "G15_99"), ("facility_type_code", "SA999"), ("practice_setting_code", "NOPE")],
)
def test_author_codes_outside_their_value_sets(field: str, value: str, patient: PatientInput) -> None:
    with pytest.raises(InvalidInput) as exc:
        _level1(patient, AuthorInput.from_dict({**author_dict(), field: value}))
    assert exc.value.field == f"author.{field}"


def test_unknown_json_field_and_missing_title(patient: PatientInput, author: AuthorInput) -> None:
    with pytest.raises(InvalidInput) as exc:
        PatientInput.from_dict({**TEST_PATIENT, "nom": "X"})
    assert exc.value.field == "patient.nom"
    with pytest.raises(InvalidInput) as exc2:
        _level1(patient, author, title="  ")
    assert exc2.value.field == "title"


def test_control_characters_are_refused(author: AuthorInput) -> None:
    with pytest.raises(InvalidInput):
        _level1(PatientInput.from_dict({**TEST_PATIENT, "birth_family_name": "PAT\x01TROIS"}), author)


# --- VAC-NOTE ----------------------------------------------------------------------------------------------
def test_vaccination_note(patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput) -> None:
    data = build.vaccination_note(patient=patient, author=author, vaccination=vaccination)
    assert errors(validate_builtin(data)) == []
    doc = cda.parse(data)
    assert doc.type_code == "87273-9" and doc.body_kind == "structuredBody"
    assert doc.has_template(valuesets.TPL_VAC_NOTE)
    sbadm = doc.root.find(f".//{H}substanceAdministration")
    assert sbadm is not None and sbadm.get("negationInd") == "false"
    code = sbadm.find(f"{H}consumable/{H}manufacturedProduct/{H}manufacturedMaterial/{H}code")
    assert code is not None and code.get("code") == "68747507"
    translation = code.find(f"{H}translation")
    assert translation is not None and translation.get("displayName") == "vaccins tétaniques"
    assert sbadm.find(f"{H}routeCode").get("displayName") == "Voie intramusculaire"  # type: ignore[union-attr]


def test_vaccination_not_given(
    patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput
) -> None:
    data = build.vaccination_note(
        patient=patient, author=author, vaccination=dataclasses.replace(vaccination, given=False)
    )
    sbadm = cda.parse(data).root.find(f".//{H}substanceAdministration")
    assert sbadm is not None and sbadm.get("negationInd") == "true"
    # VAC-NOTE 2023.01 only admits performed vaccinations: the built-in rule says so (same as the schematron).
    assert [f.rule_id for f in errors(validate_builtin(data))] == ["VAC-02"]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("lot_number", "", MissingTrait),
        ("cis_code", "1234", InvalidInput),
        ("atc_code", "A01AB", InvalidInput),
        ("date", (dt.date.today() + dt.timedelta(days=2)).isoformat(), InvalidDate),
        ("dose_rank", 0, InvalidInput),
        ("kind", "BOOST", InvalidInput),
        ("route_code", "999", InvalidInput),
        ("site_code", "999", InvalidInput),
    ],
)
def test_vaccination_bad_input(
    field: str, value: object, error: type, patient: PatientInput, author: AuthorInput
) -> None:
    from tests.cda.conftest import VACCINATION

    vac = VaccinationInput.from_dict({**VACCINATION, field: value})
    with pytest.raises(error) as exc:
        build.vaccination_note(patient=patient, author=author, vaccination=vac)
    assert exc.value.field == f"vaccination.{field}"


@pytest.mark.parametrize(
    ("field", "value", "expected_field"),
    [
        ("birth_family_name", ["PAT"], "patient.birth_family_name"),
        ("birth_date", 19790328, "patient.birth_date"),
        ("sex", True, "patient.sex"),
    ],
)
def test_wrong_json_types_are_refused(
    field: str, value: object, expected_field: str, author: AuthorInput
) -> None:
    with pytest.raises(InvalidInput) as exc:
        _level1(PatientInput.from_dict({**TEST_PATIENT, field: value}), author)
    assert exc.value.field == expected_field


def test_latin1_document_is_validated(patient: PatientInput, author: AuthorInput) -> None:
    from lxml import etree

    data = _level1(patient, author, title="Compte rendu é")
    latin1 = etree.tostring(etree.fromstring(data), xml_declaration=True, encoding="ISO-8859-1")
    assert errors(validate_builtin(latin1)) == []
    assert cda.parse(latin1).title == "Compte rendu é"


def test_ins_oid_must_suit_the_environment(patient: PatientInput, author: AuthorInput) -> None:
    _level1(patient, author, environment="test")
    with pytest.raises(InvalidIns) as exc:
        _level1(patient, author, environment="production")
    assert exc.value.field == "patient.ins_oid"


def test_the_vaccination_narrative_names_the_vaccinator_with_title_and_profession(
    patient: PatientInput, author: AuthorInput, vaccination: VaccinationInput
) -> None:
    """REC_2.1-2060 (dmp-ui-requirements 10.5): the narrative says who vaccinated, with the title and the
    profession, so that a reader tells a professional's entry from the patient's."""

    def narrative(data: bytes) -> list[str]:
        root = cda.parse(data).root
        return ["".join(p.itertext()) for p in root.iterfind(f".//{H}section/{H}text/{H}paragraph")]

    data = build.vaccination_note(patient=patient, author=author, vaccination=vaccination)
    assert errors(validate_builtin(data)) == []
    profession = valuesets.author_specialties()["G15_21/A"].display_name
    assert narrative(data) == [
        f"Vaccination réalisée par {author.given_name} {author.family_name} ({profession})"
    ]
    doctor = dataclasses.replace(author, suffix="DR", specialty_code="G15_10/SM26")
    data = build.vaccination_note(patient=patient, author=doctor, vaccination=vaccination)
    assert narrative(data) == [
        f"Vaccination réalisée par Dr {author.given_name} {author.family_name} "
        "(Médecin - Qualifié en Médecine Générale (SM))"
    ]
    not_given = dataclasses.replace(vaccination, given=False)
    data = build.vaccination_note(patient=patient, author=author, vaccination=not_given)
    assert narrative(data)[0].startswith("Vaccination non réalisée, constatée par ")


# --- the header written as text (cda.build._Writer): lxml is the reference ---------------------------------
def _special_inputs(patient: PatientInput, author: AuthorInput) -> dict[str, object]:
    """Inputs holding every character libxml2 escapes, accents and a character outside the BMP."""
    odd = 'Ça & <co> "dit" l\'𝄞 > é'
    return {
        "patient": dataclasses.replace(patient, birth_family_name=odd, used_given_name=odd),
        "author": dataclasses.replace(author, organization_name=odd, family_name="D'ARC & <FILS>"),
        "title": odd,
        "document_id": cda.model.InstanceId("1.2.250.1.999", 'a"b&c<d>e\tf\ng\rh'),
        "replaces": Replacement(
            cda.model.InstanceId("1.2.3", "x\t&\"<'>\r\n"), cda.model.InstanceId("1.2.4"), 1
        ),
    }


def test_level1_bytes_are_what_lxml_serialises_for_the_same_tree(
    patient: PatientInput, author: AuthorInput, pdf: bytes
) -> None:
    from lxml import etree

    for kw in ({}, _special_inputs(patient, author)):
        args = dict(kw)
        data = _level1(args.pop("patient", patient), args.pop("author", author), content=pdf, **args)  # type: ignore[arg-type]
        reparsed = etree.fromstring(data)
        assert etree.tostring(reparsed, xml_declaration=True, encoding="UTF-8") == data
        doc = cda.parse(data)
        if kw:  # the values come back unchanged through a conforming parser
            assert doc.title == kw["title"] and doc.id == kw["document_id"]
            assert doc.replaced_document_id == kw["replaces"].document_id  # type: ignore[attr-defined]
            assert doc.custodian is not None and doc.custodian.name == 'Ça & <co> "dit" l\'𝄞 > é'
        assert errors(validate_builtin(data)) == []


def test_level1_header_parts_kept_per_patient_and_author_follow_each_input(
    patient: PatientInput, author: AuthorInput, pdf: bytes
) -> None:
    """The header parts kept per distinct patient/author (``cda.build``'s fragment caches) are those of the
    inputs given: a second patient or author, or the same one changed in place (the inputs are mutable),
    gets its own; the first one's bytes come back unchanged."""
    fixed = {"document_id": cda.model.InstanceId("1.2.250.1.999.1"),
             "effective_time": dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)}  # fmt: skip

    def header(p: PatientInput, a: AuthorInput) -> bytes:
        data = _level1(p, a, content=pdf, **fixed)
        doc = cda.parse(data)
        assert doc.patient is not None and doc.patient.birth_family_name == p.birth_family_name.upper()
        assert doc.custodian is not None and doc.custodian.name == a.organization_name
        set_id = doc.set_id
        assert set_id is not None
        return data.replace(set_id.root.encode(), b"SET")  # the setId is new each time

    first = header(patient, author)
    other_patient = dataclasses.replace(patient, birth_family_name="AUTRE", used_family_name="DUVAL")
    other_author = dataclasses.replace(author, organization_name="CLINIQUE DU PARC", suffix="DR")
    assert header(other_patient, author) != first
    assert header(patient, other_author) != first
    changed = dataclasses.replace(author)
    changed.organization_name = "CABINET CHANGÉ"  # the same object changed in place
    assert b"CABINET CHANG\xc3\x89" in header(patient, changed)
    assert header(patient, author) == first


def test_vaccination_note_header_is_what_lxml_serialises(patient: PatientInput, author: AuthorInput) -> None:
    from lxml import etree

    kw = _special_inputs(patient, author)
    when = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    note = build.vaccination_note(
        patient=kw["patient"],  # type: ignore[arg-type]
        author=kw["author"],  # type: ignore[arg-type]
        vaccination=VaccinationInput(
            cis_code="63041934", vaccine_label="VAXIGRIPTETRA", atc_code="J07BB02", lot_number="L&1",
            date=dt.date(2026, 11, 20),
        ),
        document_id=kw["document_id"],  # type: ignore[arg-type]
        effective_time=when,
    )  # fmt: skip
    root = etree.fromstring(note)
    root.remove(root.find(f"{H}component"))  # the body is built with lxml itself
    header = note[: note.index(b"<component>")] + b"</ClinicalDocument>"
    assert etree.tostring(root, xml_declaration=True, encoding="UTF-8") == header
    assert errors(validate_builtin(note)) == []


def test_the_writer_refuses_exactly_what_lxml_refuses() -> None:
    """Every character lxml refuses in an attribute or a text (all of the BMP, the edges of the other
    planes) is refused by the text writer with the same message and field as before."""
    from lxml import etree

    def lxml_accepts(value: str) -> bool:
        try:
            etree.Element("x", v=value)
        except (ValueError, TypeError):
            return False
        return True

    codepoints = [*range(0x10000), 0x10000, 0x1D11E, 0x10FFFF]
    for cp in codepoints:
        value = f"a{chr(cp)}b"
        assert (build._FORBIDDEN.search(value) is None) is lxml_accepts(value), hex(cp)
    writer = build._Writer()
    with pytest.raises(InvalidInput) as info:
        writer.leaf("id", {"root": "1.2.3", "extension": "ab\x01"})
    assert info.value.message_fr == "La valeur « 'ab\\x01' » contient des caractères interdits (id)."
    assert info.value.field == "id"
    with pytest.raises(InvalidInput) as info:
        writer.leaf("name", text="PHARMACIE\x0b")
    assert info.value.message_fr == "Le texte « PHARMACIE\x0b » contient des caractères interdits."
    assert info.value.field == "name"
