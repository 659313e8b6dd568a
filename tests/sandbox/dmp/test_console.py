"""``python -m sandbox demo`` and ``python -m sandbox patient ...`` as a tester runs them (subprocess), and
in-process for the JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import demo
from sandbox.__main__ import main
from sandbox.dmp.store import Store
from sandbox.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[3]
ADULT = demo.DEMO_ADULT.ins


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_demo_command_creates_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run("demo", "--data", str(data))
    assert done.returncode == 0, done.stderr
    assert "DEMO-ADULTE" in done.stdout and "DMP fermé" in done.stdout
    assert (data / "dmp.sqlite3").exists()
    shown = run("patient", "--data", str(data), "show", ADULT)
    assert shown.returncode == 0
    assert "médecin traitant : 899700000013" in shown.stdout


def test_patient_actions_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "d")
    assert main(["demo", "--data", data]) == 0
    capsys.readouterr()
    assert main(["patient", "--data", data, "block", ADULT, "nurse"]) == 0
    assert (
        main(["patient", "--data", data, "emergency", ADULT, "--bris-de-glace", "non", "--masques", "oui"])
        == 0
    )
    assert main(["patient", "--data", data, "--json", "documents", ADULT]) == 0
    docs = json.loads(capsys.readouterr().out.split("\n", 2)[2])
    first = docs[0]["unique_id"]
    assert main(["patient", "--data", data, "mask", ADULT, first]) == 0
    assert main(["patient", "--data", data, "close", demo.DEMO_BLOCKING.ins]) == 0
    assert (
        main(
            [
                "patient",
                "--data",
                data,
                "legal-rep",
                demo.DEMO_MINOR.ins,
                "TUTEUR JEAN",
                "--relation",
                "tuteur",
            ]
        )
        == 0
    )
    assert main(["patient", "--data", data, "--json", "traces", ADULT]) == 0
    with Store(Path(data)) as store:
        patient = store.patient(ADULT)
        assert not patient.allow_bris_de_glace and patient.allow_masked_in_emergency
        assert store.authorisation(ADULT, PROFILES["nurse"].id_nat).status == "INTERDIT"
        assert store.document(unique_id=first).masked
        assert store.patient(demo.DEMO_BLOCKING.ins).status == "CLOSED"
        assert ("TUTEUR JEAN", "tuteur") in store.patient(demo.DEMO_MINOR.ins).legal_representatives


def test_console_errors_are_french_with_exit_code_2(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    assert run("demo", "--data", data).returncode == 0
    bad = run(
        "patient",
        "--data",
        data,
        "create",
        "279037505612300",
        "--family-name",
        "X",
        "--given-names",
        "Y",
        "--birth-date",
        "20000101",
        "--sex",
        "F",
    )
    assert bad.returncode == 2 and "clé du matricule INS" in bad.stderr and "Traceback" not in bad.stderr
    bad = run("patient", "--data", data, "unblock", ADULT, "gp")
    assert bad.returncode == 2 and "n'est pas bloqué" in bad.stderr
    bad = run("patient", "--data", str(tmp_path / "nowhere"), "show", ADULT)
    assert bad.returncode == 2 and "n'existe pas" in bad.stderr
    bad = run("patient", "--data", data, "legal-rep", ADULT, "QUELQU'UN")
    assert bad.returncode == 2 and "majeur" in bad.stderr


def test_create_patient(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    done = run(
        "patient",
        "--data",
        data,
        "create",
        "190017512345655",
        "--family-name",
        "Nouveau",
        "--given-names",
        "Pierre",
        "--birth-date",
        "19900115",
        "--sex",
        "M",
        "--birth-place",
        "75056",
    )
    assert done.returncode == 0, done.stderr
    assert "DMP créé pour NOUVEAU PIERRE" in done.stdout
