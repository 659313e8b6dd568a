"""``ps-agent dmp ... --etablissement``: a secretary deposits in AIR mode on behalf of a doctor from the
command line, with the establishment's PKCS#12 files of the test PKI (no card), against the sandbox."""

from __future__ import annotations

import json

import pytest

from ps_agent.cli import main as cli

from . import docs
from .conftest import identity_json as _identity_json
from .conftest import patient_ref

pytestmark = pytest.mark.slow


def test_secretary_deposits_in_air_mode_from_the_cli(establishment_args, agent_for, tmp_path, capsys):
    from sandbox.demo import DEMO_ADULT
    from sandbox.profiles import PROFILES

    patient = ["--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid]
    letter = tmp_path / "lettre.xml"
    letter.write_bytes(docs.letter(DEMO_ADULT, "specialist", type_code="11490-0", title="Lettre (CLI, AIR)"))
    args = [*establishment_args, "--auteur", _identity_json("specialist"), *patient]
    assert cli(["dmp", "deposit", *args, "--json", str(letter)]) == 0, capsys.readouterr().err
    uid = json.loads(capsys.readouterr().out)["documents"][0]
    found = next(
        e for e in agent_for("specialist").list_documents(patient_ref(DEMO_ADULT)) if e.unique_id == uid
    )
    assert found.authors[0].id_nat == PROFILES["specialist"].id_nat
    # the secretary may not consult: refused with a French message, no traceback
    assert cli(["dmp", "search", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Erreur : ") and "Traceback" not in err and "professionnels" in err
    # the journal names the secretary as actor and the doctor as the one deposited for, and verifies
    from ps_agent.audit.journal import AuditJournal

    with AuditJournal(tmp_path / "home" / "audit.sqlite3") as journal:
        rec = [r for r in journal.records(action="dmp.deposit") if r.event.outcome == "success"][-1]
        assert rec.event.actor_id_nat == PROFILES["secretary"].id_nat
        assert rec.event.on_behalf_of == PROFILES["specialist"].id_nat
        assert rec.event.auth_mode == "INDIRECTE_RENFORCEE"
        assert journal.verify().ok


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--utilisateur": "{pas du json"}, "JSON invalide"),
        ({"--utilisateur": '{"id_nat": "1"}'}, "family_name, given_name"),
        ({"--utilisateur": '{"id_nat": "1", "family_name": "A", "given_name": "B", "pin": "1"}'}, "pin"),
        ({"--utilisateur": "/nonexistent/user.json"}, "fichier illisible"),
        ({"--etablissement": "/nonexistent/auth.p12"}, "introuvable"),
        ({"--utilisateur": None}, "--utilisateur"),
    ],
)
def test_bad_establishment_options_are_clear_refusals(establishment_args, capsys, change, expected):
    from sandbox.demo import DEMO_ADULT

    args = list(establishment_args)
    for option, value in change.items():
        i = args.index(option)
        if value is None:
            del args[i : i + 2]
        else:
            args[i + 1] = value
    assert cli(["dmp", "status", *args, "--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Erreur : ") and expected in err and "Traceback" not in err


def test_wrong_passphrase_is_a_clear_refusal(establishment_args, monkeypatch, capsys):
    from sandbox.demo import DEMO_ADULT

    monkeypatch.setenv("PS_AGENT_P12_PASSPHRASE", "pas la bonne")
    assert cli(["dmp", "status", *establishment_args, "--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Erreur : ") and "Traceback" not in err and "mot de passe" in err
