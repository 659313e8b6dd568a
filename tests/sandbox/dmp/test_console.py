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


def test_every_patient_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each action of ``python -m sandbox patient`` changes the store as the patient expects."""
    data = str(tmp_path / "d")
    assert main(["demo", "--data", data]) == 0
    nurse, gp = PROFILES["nurse"].id_nat, PROFILES["gp"].id_nat

    def ok(*args: str) -> str:
        capsys.readouterr()
        assert main(["patient", "--data", data, *args]) == 0
        return capsys.readouterr().out

    assert demo.DEMO_MINOR.ins in ok("list") and demo.DEMO_OPPOSED.ins in ok("list")
    assert "DEMO" in ok("show", ADULT)
    with Store(Path(data)) as store:
        hidden = next(d for d in store.documents(ADULT) if "INVISIBLE_PATIENT" in d.confidentiality)
        minor_hidden = next(
            d
            for d in store.documents(demo.DEMO_MINOR.ins)
            if "INVISIBLE_REPRESENTANTS_LEGAUX" in d.confidentiality
        )
        masked = next(d for d in store.documents(ADULT) if d.masked)
    # the patient's own view hides the not-yet-visible document; make it visible (one way)
    assert hidden.unique_id not in ok("documents", ADULT, "--view", "patient")
    assert hidden.unique_id in ok("documents", ADULT)
    ok("make-visible", ADULT, hidden.unique_id)
    assert hidden.unique_id in ok("documents", ADULT, "--view", "patient")
    assert minor_hidden.unique_id not in ok("documents", demo.DEMO_MINOR.ins, "--view", "representant")
    ok("make-visible", demo.DEMO_MINOR.ins, minor_hidden.entry_uuid, "--representants")
    assert minor_hidden.unique_id in ok("documents", demo.DEMO_MINOR.ins, "--view", "representant")
    ok("unmask", ADULT, masked.unique_id)
    ok("block", ADULT, "nurse")
    ok("unblock", ADULT, nurse)
    ok("authorise", ADULT, "nurse")
    ok("medecin-traitant", ADULT, "aucun")
    ok("oppose", demo.DEMO_CLOSED.ins)
    ok("reopen", demo.DEMO_OPPOSED.ins)
    ok("legal-rep", demo.DEMO_MINOR.ins, "TUTEUR JEAN", "--relation", "tuteur")
    ok("legal-rep", demo.DEMO_MINOR.ins, "TUTEUR JEAN", "--remove")
    ok("emergency", ADULT, "--centre-15", "non")
    with Store(Path(data)) as store:
        adult = store.patient(ADULT)
        assert "INVISIBLE_PATIENT" not in store.document(unique_id=hidden.unique_id).confidentiality
        assert (
            "INVISIBLE_REPRESENTANTS_LEGAUX"
            not in store.document(unique_id=minor_hidden.unique_id).confidentiality
        )
        assert not store.document(unique_id=masked.unique_id).masked
        assert store.authorisation(ADULT, nurse).status == "VALIDE"
        assert adult.medecin_traitant is None and not adult.allow_centre_15 and adult.allow_bris_de_glace
        assert store.patient(demo.DEMO_CLOSED.ins).status == "OPPOSED"
        assert store.patient(demo.DEMO_OPPOSED.ins).status == "ACTIVE"
        assert ("TUTEUR JEAN", "tuteur") not in store.patient(demo.DEMO_MINOR.ins).legal_representatives
        store.add_trace(transaction="TD3.1", result="OK", patient_ins=ADULT, ps_id=gp, what="FindDocuments")
    out = ok("traces", ADULT, "--limit", "1")
    assert "TD3.1" in out and gp in out
    [record] = json.loads(ok("--json", "traces", ADULT, "--limit", "1"))
    assert record["ps_id"] == gp and record["transaction"] == "TD3.1"


def test_patient_help_is_clear_and_french() -> None:
    done = run("patient", "--help")
    assert done.returncode == 0
    for words in (
        "Mon espace santé",
        "bloquer un professionnel",
        "masquer un document",
        "exemples",
        "code de sortie 2",
    ):
        assert words in done.stdout
    for action in (
        "create",
        "oppose",
        "close",
        "block",
        "unblock",
        "mask",
        "unmask",
        "make-visible",
        "emergency",
        "traces",
    ):
        assert action in done.stdout
