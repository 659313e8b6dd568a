"""Issue 2 checklist at the CLI: every DMP type code built by ``ps-agent cda build`` validates (exit 0)
and passes the deposit gate; every bad input gets its specific French error naming the field, with the
exit code of the contract (1 refusal, 2 unreadable input) and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cda import build, valuesets
from cda.build import AuthorInput, PatientInput, VaccinationInput
from cda.classify import classify_type
from cda.errors import DocumentNotDepositable, XmlSecurityError
from cda.validate import check_deposit_ready
from ps_agent.cli import main
from tests.cda.conftest import TEST_PATIENT, VACCINATION, author_dict, make_pdf

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "patient": tmp_path / "patient.json",
        "author": tmp_path / "author.json",
        "pdf": tmp_path / "cr.pdf",
        "out": tmp_path / "cr.xml",
    }
    paths["patient"].write_text(json.dumps(TEST_PATIENT), encoding="utf-8")
    paths["author"].write_text(json.dumps(author_dict("gp", "G15_10/SM26")), encoding="utf-8")
    paths["pdf"].write_bytes(make_pdf())
    return paths


def _build(p: dict[str, Path], type_code: str = "11488-4", *extra: str) -> int:
    return main(
        [
            "cda", "build", "--type", type_code, "--content", str(p["pdf"]), "--patient", str(p["patient"]),
            "--author", str(p["author"]), "--title", "Compte rendu", "-o", str(p["out"]), *extra,
        ]
    )  # fmt: skip


def test_every_dmp_type_code_built_by_the_cli_validates_and_is_deposit_ready(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    failures = {}
    for type_code in valuesets.dmp_type_codes():
        built = _build(inputs, type_code)
        valid = main(["cda", "validate", str(inputs["out"])]) if built == 0 else None
        out = capsys.readouterr()
        if built != 0 or valid != 0:
            failures[type_code] = (built, valid, out.err[-300:], out.out[-300:])
            continue
        check_deposit_ready(inputs["out"].read_bytes())
        assert main(["cda", "classify", str(inputs["out"]), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        expected = classify_type(type_code)
        assert (shown["type_code"], shown["class_code"], shown["format_code"]) == (
            type_code,
            expected.class_code,
            "urn:ihe:iti:xds-sd:pdf:2008",
        )
        assert shown["dmp_rubric"] and shown["mes_rubric"]
    assert failures == {}
    assert len(valuesets.dmp_type_codes()) > 90


@pytest.mark.official
@pytest.mark.slow
def test_every_dmp_type_code_passes_cli_validate_with_the_official_artefacts(
    inputs: dict[str, Path], shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    official = str(shared_dir / "cda")
    failures = {}
    for type_code in valuesets.dmp_type_codes():
        assert _build(inputs, type_code) == 0
        rc = main(["cda", "validate", str(inputs["out"]), "--official", official])
        out = capsys.readouterr().out
        if rc != 0:
            failures[type_code] = out[-400:]
    assert failures == {}


def test_text_level1_of_every_dmp_type_is_deposit_ready() -> None:
    patient = PatientInput.from_dict(TEST_PATIENT)
    author = AuthorInput.from_dict(author_dict("gp", "G15_10/SM26"))
    for type_code in valuesets.dmp_type_codes():
        data = build.level1(
            type_code=type_code, content="Texte é".encode(), title="Note", patient=patient, author=author
        )
        assert check_deposit_ready(data) == [], type_code


def test_vac_note_given_is_deposit_ready_and_not_given_is_refused() -> None:
    patient = PatientInput.from_dict(TEST_PATIENT)
    author = AuthorInput.from_dict(author_dict())
    given = build.vaccination_note(
        patient=patient, author=author, vaccination=VaccinationInput.from_dict(VACCINATION)
    )
    assert check_deposit_ready(given) == []
    not_given = build.vaccination_note(
        patient=patient,
        author=author,
        vaccination=VaccinationInput.from_dict({**VACCINATION, "given": False}),
    )
    with pytest.raises(DocumentNotDepositable) as info:
        check_deposit_ready(not_given)
    assert info.value.field.endswith("substanceAdministration/@negationInd")
    assert [f.rule_id for f in info.value.findings] == ["VAC-02"]
    assert info.value.message_fr.startswith("Le document ne peut pas être envoyé au DMP : 1 anomalie(s)")
    assert "negationInd" in info.value.message_fr


def test_deposit_gate_refuses_a_broken_document_naming_the_element(inputs: dict[str, Path]) -> None:
    assert _build(inputs) == 0
    data = inputs["out"].read_bytes()
    broken = data.replace(b'qualifier="BR"', b'qualifier="XX"', 1)
    assert broken != data
    with pytest.raises(DocumentNotDepositable) as info:
        check_deposit_ready(broken)
    assert "Le prénom de naissance du patient est absent" in info.value.message_fr
    assert "recordTarget/patientRole/patient/name/given[@qualifier='BR']" in info.value.message_fr
    with pytest.raises(XmlSecurityError):
        check_deposit_ready(b"<!DOCTYPE x []>" + data.split(b"?>", 1)[1])


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    ("case", "code", "expected"),
    [
        ("future-birth-date", 1, "est dans le futur (patient.birth_date)"),
        ("malformed-rpps", 1, "attendu « 8 » suivi des 11 chiffres du RPPS (author.id_nat)"),
        ("rpps-without-8", 1, "(author.id_nat)"),
        ("missing-trait", 1, "(patient.birth_family_name)"),
        ("unknown-type", 1, "Le code de type de document « 99999-9 » est inconnu"),
        ("type-not-accepted", 1, "Le type de document « 28617-9 » (Bilan bucco-dentaire) n'est pas accepté"),
        ("empty-file", 2, "est vide"),
        ("oversize", 2, "est trop volumineux (0,19 Mo, limite 0,10 Mo)"),
        ("pdf-named-not-a-pdf", 2, "Le fichier fourni n'est pas un PDF (en-tête %PDF- absent)"),
        ("pdf-header-unreadable", 2, "Le fichier PDF est illisible ou endommagé"),
    ],
)
def test_build_bad_input_names_the_field(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], case: str, code: int, expected: str
) -> None:
    type_code = "11488-4"
    extra: list[str] = []
    if case == "future-birth-date":
        _json(inputs["patient"], {**TEST_PATIENT, "birth_date": "2999-12-31"})
    elif case == "malformed-rpps":
        _json(inputs["author"], {**author_dict("gp", "G15_10/SM26"), "id_nat": "8123"})
    elif case == "rpps-without-8":
        _json(inputs["author"], {**author_dict("gp", "G15_10/SM26"), "id_nat": "910001234567"})
    elif case == "missing-trait":
        _json(inputs["patient"], {k: v for k, v in TEST_PATIENT.items() if k != "birth_family_name"})
    elif case == "unknown-type":
        type_code = "99999-9"
    elif case == "type-not-accepted":
        type_code = "28617-9"
    elif case == "empty-file":
        inputs["pdf"].write_bytes(b"")
    elif case == "oversize":
        inputs["pdf"].write_bytes(make_pdf(padding=200_000))
        extra = ["--max-size-mb", "0.1"]
    elif case == "pdf-named-not-a-pdf":
        inputs["pdf"].write_bytes(b"Bonjour, ceci est un texte\n")
    elif case == "pdf-header-unreadable":
        inputs["pdf"].write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    assert _build(inputs, type_code, *extra) == code
    err = capsys.readouterr().err
    assert expected in err, err
    assert not inputs["out"].exists()


@pytest.mark.parametrize("command", ["validate", "classify", "vaccinations"])
def test_doctype_is_refused_by_every_reading_command(tmp_path: Path, command: str) -> None:
    doc = tmp_path / "doctype.xml"
    doc.write_bytes(
        b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ps_agent", "cda", command, str(doc)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2
    assert "déclaration DOCTYPE, refusée pour des raisons de sécurité." in proc.stderr
    assert "Traceback" not in proc.stderr and "root:" not in proc.stdout


@pytest.mark.parametrize(
    ("prefix", "suffix", "expected"),
    [
        ("DR", "", ("", "DR")),  # the card's civility "DR" is a title (JDV_J246), not a civility
        ("Docteur", "", ("", "DR")),
        ("Madame", "PR", ("MME", "PR")),
        ("m.", "", ("M", "")),
        ("", "", ("", "")),
    ],
)
def test_author_civility_and_title_are_normalised(
    prefix: str, suffix: str, expected: tuple[str, str]
) -> None:
    author = AuthorInput.from_dict({**author_dict("gp", "G15_10/SM26"), "prefix": prefix, "suffix": suffix})
    checked = author.checked()
    assert (checked.prefix, checked.suffix) == expected
    data = build.level1(
        type_code="11488-4",
        content=b"Texte",
        title="CR",
        patient=PatientInput.from_dict(TEST_PATIENT),
        author=author,
    )
    assert check_deposit_ready(data) == []


@pytest.mark.parametrize(
    ("prefix", "suffix", "field"),
    [("Dr House", "", "author.prefix"), ("M", "DOC", "author.suffix"), ("SIR", "", "author.prefix")],
)
def test_unknown_civility_or_title_names_the_field(prefix: str, suffix: str, field: str) -> None:
    from cda.errors import InvalidInput

    author = AuthorInput.from_dict({**author_dict("gp", "G15_10/SM26"), "prefix": prefix, "suffix": suffix})
    with pytest.raises(InvalidInput) as info:
        author.checked()
    assert info.value.field == field and f"({field})" in info.value.message_fr


@pytest.mark.official
@pytest.mark.slow
def test_doctor_title_passes_the_official_validator(official) -> None:  # type: ignore[no-untyped-def]
    from cda.validate import errors

    author = AuthorInput.from_dict({**author_dict("gp", "G15_10/SM26"), "prefix": "DR"})
    patient = PatientInput.from_dict(TEST_PATIENT)
    level1 = build.level1(type_code="11488-4", content=make_pdf(), title="CR", patient=patient, author=author)
    note = build.vaccination_note(
        patient=patient, author=author, vaccination=VaccinationInput.from_dict(VACCINATION)
    )
    for data in (level1, note):
        assert b"<suffix>DR</suffix>" in data
        assert errors(official.validate(data)) == []


@pytest.mark.parametrize(
    ("part", "field", "value", "expected"),
    [
        ("patient", "first_given_name", 1.5, "doit être un texte"),
        ("patient", "ins_oid", [], "doit être un texte"),
        ("patient", "birth_date", 19790328, "doit être un texte ou une date"),
        ("author", "practice_setting_code", [], "doit être un texte"),
        ("vaccination", "kind", True, "doit être un texte"),
        ("vaccination", "dose_rank", True, "doit être un nombre entier"),
        ("vaccination", "given", "oui", "doit être vrai ou faux"),
    ],
)
def test_json_values_of_the_wrong_type_name_the_field(
    part: str, field: str, value: object, expected: str
) -> None:
    from cda.errors import InvalidInput

    data = {"patient": dict(TEST_PATIENT), "author": author_dict(), "vaccination": dict(VACCINATION)}
    data[part][field] = value
    with pytest.raises(InvalidInput) as info:
        build.vaccination_note(
            patient=PatientInput.from_dict(data["patient"]),
            author=AuthorInput.from_dict(data["author"]),
            vaccination=VaccinationInput.from_dict(data["vaccination"]),
        )
    assert info.value.field == f"{part}.{field}"
    assert f"Le champ « {part}.{field} » {expected}" in info.value.message_fr


def test_control_character_in_an_identifier_is_refused() -> None:
    from cda.errors import InvalidInput

    author = AuthorInput.from_dict({**author_dict(), "organization_id": "38000\x00"})
    with pytest.raises(InvalidInput) as info:
        build.level1(
            type_code="11488-4",
            content=b"Texte",
            title="CR",
            patient=PatientInput.from_dict(TEST_PATIENT),
            author=author,
        )
    assert "caractères interdits" in info.value.message_fr


def test_an_unexpected_failure_is_a_french_sentence_not_a_traceback(
    inputs: dict[str, Path], monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(**kwargs: object) -> bytes:
        raise RuntimeError("bug")

    monkeypatch.setattr(build, "level1", broken)
    assert _build(inputs) == 1
    err = capsys.readouterr().err
    assert "Erreur interne (RuntimeError) : l'opération n'a pas abouti." in err and "Traceback" not in err
