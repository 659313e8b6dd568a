"""Habilitation matrix: resolution order, roles, deny by default, French explanations, data integrity."""

from __future__ import annotations

import csv
from pathlib import Path

from cda import habilitations as hab


def test_pharmacist_cannot_read_imaging_and_says_so_in_french() -> None:
    assert not hab.can_read("21", "", "18748-4")
    assert hab.explain("21", "", "18748-4") == (
        "Les pharmaciens n'ont pas accès aux documents « CR d'imagerie médicale » (classe Imagerie médicale)."
    )
    assert hab.can_read("21", "", "60593-1") and hab.can_write("21", "", "60593-1")


def test_exact_type_beats_specialty_wildcard() -> None:
    # GP row "*" = Y/Y, but the profession-wide exact row for a patient-deposited type says write N.
    assert hab.can_read("10", "SM26", "DOCPAT01")
    assert not hab.can_write("10", "SM26", "DOCPAT01")
    assert not hab.can_read("10", "SM26", "ATTEST-RESID")


def test_regulator_may_read_but_never_deposit() -> None:
    assert hab.can_read("10", "SM02", "11488-4", role="REGULATEUR")
    assert not hab.can_write("10", "SM02", "11488-4", role="REGULATEUR")
    assert hab.can_write("10", "SM02", "11488-4")
    assert "régulateurs ne peuvent pas déposer" in hab.explain(
        "10", "SM02", "11488-4", action="write", role="REGULATEUR"
    )


def test_role_never_grants_a_deposit_the_profession_lacks() -> None:
    assert not hab.can_write("10", "SM26", "DOCPAT01", role="MEDECIN_TRAITANT")
    assert hab.can_read("10", "SM26", "DOCPAT01", role="MEDECIN_TRAITANT")


def test_unknown_profession_is_denied_and_non_ps_staff_may_only_submit() -> None:
    assert not hab.can_read("26", "", "11488-4") and not hab.can_write("26", "", "11488-4")
    assert "ne figurent pas dans la matrice" in hab.explain("26", "", "11488-4")
    assert not hab.can_read("", "", "11488-4")
    assert hab.can_write("", "", "11488-4")


def test_decision_carries_the_confirmation_status() -> None:
    d = hab.decide("10", "", "11488-4")
    assert d.rule is not None and d.rule.status.startswith("read=CONFIRMED")
    assert hab.decide("21", "", "11488-4").confirmed is False


def test_every_profession_wide_exact_row_of_the_reference_is_honoured(shared_dir: Path) -> None:
    with (shared_dir / "reference" / "habilitation-matrix.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if "régulateur" not in r["role_label_fr"]]
    checked = 0
    for r in rows:
        if r["type_code"] in ("*",) or r["type_code"].startswith("class:") or r["profession_code"] == "NONPS":
            continue
        if "Médecin traitant" in r["role_label_fr"]:
            continue
        d = hab.decide(r["profession_code"], r["specialty_code"].replace("*", ""), r["type_code"])
        assert d.read == (r["read"] == "Y"), r
        assert d.write == (r["write"] == "Y"), r
        checked += 1
    assert checked > 100
