"""``ps-agent cda``: exit codes (0 ok, 1 findings/refusal, 2 unreadable input), JSON outputs, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ps_agent.cli import main
from tests.cda.conftest import TEST_PATIENT, VACCINATION, author_dict, make_pdf


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "patient": tmp_path / "patient.json",
        "author": tmp_path / "author.json",
        "vaccination": tmp_path / "vaccination.json",
        "pdf": tmp_path / "cr.pdf",
        "out": tmp_path / "cr.xml",
        "note": tmp_path / "note.xml",
    }
    paths["patient"].write_text(json.dumps(TEST_PATIENT), encoding="utf-8")
    paths["author"].write_text(json.dumps(author_dict()), encoding="utf-8")
    paths["vaccination"].write_text(
        json.dumps({"patient": TEST_PATIENT, "author": author_dict(), "vaccination": VACCINATION}),
        encoding="utf-8",
    )
    paths["pdf"].write_bytes(make_pdf())
    return paths


def _build(files: dict[str, Path], *extra: str, type_code: str = "78601-2") -> int:
    return main(
        [
            "cda", "build", "--type", type_code, "--content", str(files["pdf"]),
            "--patient", str(files["patient"]), "--author", str(files["author"]),
            "--title", "CR d'entretien pharmaceutique", "-o", str(files["out"]), *extra,
        ]
    )  # fmt: skip


def test_build_validate_classify(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert _build(files) == 0
    assert main(["cda", "validate", str(files["out"])]) == 0
    assert "Document valide" in capsys.readouterr().out
    assert main(["cda", "classify", str(files["out"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["type_code"] == "78601-2" and result["class_code"] == "10"
    assert result["dmp_rubric"] == "Comptes rendus" and result["mes_rubric"] == "CPT_REND"
    assert result["format_code"] == "urn:ihe:iti:xds-sd:pdf:2008"


def test_build_replacement(files: dict[str, Path], tmp_path: Path) -> None:
    assert _build(files) == 0
    first = files["out"].read_bytes()
    (tmp_path / "v1.xml").write_bytes(first)
    assert _build(files, "--replaces-file", str(tmp_path / "v1.xml")) == 0
    import cda

    old, new = cda.parse(first), cda.parse(files["out"].read_bytes())
    assert new.set_id == old.set_id and new.version_number == 2 and new.replaced_document_id == old.id


def test_vaccination_and_vaccinations(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cda", "vaccination", str(files["vaccination"]), "-o", str(files["note"])]) == 0
    capsys.readouterr()
    assert main(["cda", "vaccinations", str(files["note"]), "--json"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["lot_number"] == "AB123" and record["antigens"] == ["tétanos"] and record["given"] is True
    assert main(["cda", "vaccinations", str(files["note"])]) == 0
    assert "VACCIN TETANIQUE" in capsys.readouterr().out


def test_validate_exit_codes(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(files) == 0
    broken = tmp_path / "broken.xml"
    broken.write_bytes(files["out"].read_bytes().replace(b'<realmCode code="FR"/>', b""))
    assert main(["cda", "validate", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "CDA-H01" in out and "realmCode" in out
    assert main(["cda", "validate", str(broken), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["findings"][0]["rule_id"] == "CDA-H01"
    garbage = tmp_path / "garbage.xml"
    garbage.write_bytes(b"%PDF-1.4 pas du XML")
    assert main(["cda", "validate", str(garbage)]) == 2
    assert main(["cda", "validate", str(tmp_path / "absent.xml")]) == 2
    doctype = tmp_path / "doctype.xml"
    doctype.write_bytes(b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><ClinicalDocument/>")
    assert main(["cda", "validate", str(doctype)]) == 2
    assert "DOCTYPE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutation", "needle"),
    [
        ({"type_code": "12345-6"}, "inconnu"),
        ({"type_code": "28617-9"}, "pas accepté par le DMP"),
    ],
)
def test_build_refusals(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], mutation: dict[str, str], needle: str
) -> None:
    assert _build(files, **mutation) == 1
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_build_bad_files(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files["pdf"].write_bytes(b"not a pdf at all")
    assert _build(files, "--media-type", "application/pdf") == 2
    assert "n'est pas un PDF" in capsys.readouterr().err
    files["pdf"].write_bytes(b"")
    assert _build(files) == 2
    files["pdf"].write_bytes(make_pdf(padding=200_000))
    assert _build(files, "--max-size-mb", "0.1") == 2
    assert "volumineux" in capsys.readouterr().err
    files["pdf"].write_bytes(make_pdf())
    files["patient"].write_text("{not json", encoding="utf-8")
    assert _build(files) == 2
    files["patient"].write_text(json.dumps({**TEST_PATIENT, "birth_date": "2999-01-01"}), encoding="utf-8")
    assert _build(files) == 1
    assert "futur" in capsys.readouterr().err
    files["patient"].write_text(json.dumps(TEST_PATIENT), encoding="utf-8")
    files["author"].write_text(json.dumps({**author_dict(), "id_nat": "12345"}), encoding="utf-8")
    assert _build(files) == 1
    assert "RPPS" in capsys.readouterr().err


def test_classify_type_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cda", "classify", "--type", "18748-4"]) == 0
    assert "Imagerie médicale" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["cda", "classify", "--type", "nope"]) == 2  # no type named so: bad usage
    assert "ps-agent cda types" in capsys.readouterr().err
    assert main(["cda", "classify", "--type", "99999-9"]) == 1  # a code the table does not know
    assert "inconnu" in capsys.readouterr().err


def test_console_script_never_shows_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"\x00\x01\x02")
    proc = subprocess.run(
        [sys.executable, "-m", "ps_agent", "cda", "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Erreur" in proc.stderr


@pytest.mark.official
def test_validate_with_official_artefacts(
    files: dict[str, Path], tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    official = str(shared_dir / "cda")
    assert _build(files) == 0
    assert main(["cda", "validate", str(files["out"]), "--official", official]) == 0
    # Element order broken: only the XSD (official tier) sees it.
    text = files["out"].read_bytes()
    title_start = text.index(b"<title>")
    title = text[title_start : text.index(b"</title>") + len(b"</title>")]
    swapped = text.replace(title, b"").replace(b"<languageCode", title + b"<languageCode")
    broken = tmp_path / "order.xml"
    broken.write_bytes(swapped)
    capsys.readouterr()
    assert main(["cda", "validate", str(broken)]) == 0
    assert main(["cda", "validate", str(broken), "--official", official, "--json"]) == 1
    report = json.loads(capsys.readouterr().out.split("Document valide.\n", 1)[-1])
    assert report["findings"][0]["source"] == "xsd"
    assert main(["cda", "validate", str(files["out"]), "--official", str(tmp_path)]) == 2
