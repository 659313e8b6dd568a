"""``ps-agent`` used as a GP would, with typos, against the sandbox DMP and the emulated CPS card
(pcscd + vpcd): every wrong input is refused before the PIN is asked, answers carry identifiers and
French labels beside raw codes, and no wrong answer exits 0."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import GpCli, demo_patient_json, tiny_pdf

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]

NINE = (
    "Synthèse", "Traitements et soins", "Comptes rendus", "Imagerie médicale", "Analyses de biologie",
    "Prévention", "Certificats, déclarations", "Données de remboursement", "Espace personnel",
)  # fmt: skip


def _adult() -> list[str]:
    from sandbox.demo import DEMO_ADULT

    return ["--ins", DEMO_ADULT.ins]  # no --oid: the sandbox environment's (test) OID


def _build_letter(gp_cli: GpCli, tmp_path: Path, title: str, *, type_text: str = "11488-4") -> Path:
    """A level-1 letter for the demo adult built with ``cda build``, author read from the card."""
    from sandbox.demo import DEMO_ADULT

    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(demo_patient_json(DEMO_ADULT)), encoding="utf-8")
    pdf = tmp_path / f"{title}.pdf"
    pdf.write_bytes(tiny_pdf(title))
    out = tmp_path / f"{title}.xml"
    run = gp_cli("cda", "build", "--type", type_text, "--contenu", str(pdf), "--patient", str(patient),
                 "--titre", title, "--lecteur", gp_cli.reader, "-o", str(out))  # fmt: skip
    assert run.code == 0, run.err
    assert "porteur de la carte" in run.err
    return out


def test_rubric_names_match_without_case_or_accents_and_the_oid_follows_the_environment(gp_cli: GpCli):
    base = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--json", "--rubrique", "Comptes rendus")
    assert base.code == 0, base.err
    expected = {r["unique_id"] for r in base.json()["documents"]}
    assert expected and {r["rubric"] for r in base.json()["documents"]} == {"Comptes rendus"}
    for typed in ("comptes rendus", "Comptes-rendus", "COMPTES RENDUS", "compte rendu"):
        run = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--json", "--rubric", typed)
        assert run.code == 0, run.err
        assert {r["unique_id"] for r in run.json()["documents"]} == expected, typed
    run = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--json", "--rubrique", "prevention")
    assert run.code == 0 and run.json()["documents"]
    assert {r["rubric"] for r in run.json()["documents"]} == {"Prévention"}
    text = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--rubrique", "comptes rendus")
    assert "[Comptes rendus]" in text.out and " — " in text.out  # type code beside its label


def test_unknown_rubric_exits_2_listing_the_nine_before_the_pin(gp_cli: GpCli):
    run = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--rubrique", "compte-rendus biologiques")
    assert run.code == 2 and run.out == ""
    assert "Rubrique inconnue" in run.err and all(r in run.err for r in NINE)
    assert gp_cli.pin_asked == 0


@pytest.mark.parametrize(
    ("extra", "needle", "code"),
    [
        (["--ins", "279037505612308"], "clé du matricule INS", 2),
        (["--ins", "27903750561230"], "15 caractères", 2),
        (["--ins", "279037505612309", "--oid", "1.2.250.1.213.1.4.8"], "ne convient pas", 2),
        (["--ins", "279037505612309", "--bris-de-glace", "urgence"], "au moins 20 caractères", 2),
        (["--ins", "279037505612309", "--situation", "3"], "n'existe pas", 1),
    ],
)
def test_cheap_checks_come_before_the_pin(gp_cli: GpCli, virtual_card, extra, needle, code):
    tries = virtual_card.card.pin_tries
    run = gp_cli("dmp", "status", *gp_cli.connection, *extra)
    assert run.code == code and needle in run.err, run.err
    assert gp_cli.pin_asked == 0 and virtual_card.card.pin_tries == tries


def test_no_card_and_unreadable_file_are_refused_before_the_pin(gp_cli: GpCli, virtual_card, tmp_path):
    run = gp_cli("dmp", "deposit", *gp_cli.connection, *_adult(), str(tmp_path / "absent.xml"))
    assert run.code == 2 and "Impossible de lire" in run.err
    not_cda = tmp_path / "lettre.pdf"
    not_cda.write_bytes(tiny_pdf("x"))
    run = gp_cli("dmp", "deposit", *gp_cli.connection, *_adult(), str(not_cda))
    assert run.code == 2 and "n'est pas un document CDA" in run.err
    virtual_card.remove()
    run = gp_cli("dmp", "status", *gp_cli.connection, *_adult())
    assert run.code == 1 and "Aucune carte" in run.err and "[code no_card]" in run.err
    assert gp_cli.pin_asked == 0


def test_final_try_is_confirmed_where_the_pin_is_asked(gp_cli: GpCli, virtual_card):
    virtual_card.card.pin_tries = 1
    run = gp_cli("dmp", "status", *gp_cli.connection, *_adult(), answers=["non"])
    assert run.code == 1 and "un seul essai" in run.err and "Confirmer ? (oui/non)" in run.err
    assert "abandonnée" in run.err and gp_cli.pin_asked == 0 and virtual_card.card.pin_tries == 1
    run = gp_cli("dmp", "status", *gp_cli.connection, *_adult(), answers=["peut-être", "oui"])
    assert run.code == 0, run.err
    assert "Répondez « oui » ou « non »" in run.err and "vous êtes autorisé" in run.out
    assert gp_cli.pin_asked == 1 and virtual_card.card.pin_tries == 3  # the right PIN resets the counter


def test_blocked_card_names_the_way_out_and_the_puk_unblocks_it(gp_cli: GpCli, virtual_card, monkeypatch):
    virtual_card.card.pin_tries = 0
    run = gp_cli("dmp", "status", *gp_cli.connection, *_adult())
    assert run.code == 1 and "ps-agent card debloquer" in run.err and gp_cli.pin_asked == 0
    monkeypatch.setenv("PS_AGENT_TEST_PUK", "12345679")
    monkeypatch.setenv("PS_AGENT_TEST_NEW_PIN", "4321")
    run = gp_cli("card", "debloquer", "--lecteur", gp_cli.reader)
    assert run.code == 1 and "Code de déblocage incorrect" in run.err and virtual_card.card.pin_tries == 0
    monkeypatch.setenv("PS_AGENT_TEST_PUK", "12345678")
    run = gp_cli("card", "unblock", "--reader", gp_cli.reader)
    assert run.code == 0 and "débloquée" in run.out, run.err
    assert virtual_card.card.pin_tries == 3 and virtual_card.card.pin == b"4321"
    status = gp_cli("card", "status", "--lecteur", gp_cli.reader)
    assert status.code == 0 and "restants : 3" in status.out


def test_deposit_prints_identifiers_and_rubrics_and_delete_asks_first(gp_cli: GpCli, tmp_path):
    letter = _build_letter(gp_cli, tmp_path, "Lettre CLI")
    run = gp_cli("dmp", "deposer", *gp_cli.connection, *_adult(), str(letter))
    assert run.code == 0, run.err
    uid = run.out.split("- ", 1)[1].split(" : ", 1)[0]
    assert uid.startswith("2.25.") and "rubrique DMP : Comptes rendus" in run.out
    assert "Mon espace santé : CPT_REND — Comptes rendus" in run.out
    pins = gp_cli.pin_asked
    run = gp_cli("dmp", "delete", *gp_cli.connection, *_adult(), uid, answers=["non"])
    assert run.code == 1 and "abandonnée" in run.err and gp_cli.pin_asked == pins  # asked before the PIN
    listed = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--json")
    assert uid in {r["unique_id"] for r in listed.json()["documents"]}
    run = gp_cli("dmp", "supprimer", *gp_cli.connection, *_adult(), uid, answers=["oui"])
    assert run.code == 0 and "supprimé" in run.out, run.err
    listed = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--json")
    assert uid not in {r["unique_id"] for r in listed.json()["documents"]}


def test_remplace_builds_the_new_version_and_get_pdf_writes_the_pdf(gp_cli: GpCli, tmp_path):
    import cda

    letter = _build_letter(gp_cli, tmp_path, "Lettre v1")
    first = gp_cli("dmp", "deposit", *gp_cli.connection, *_adult(), "--json", str(letter))
    assert first.code == 0, first.err
    old_uid = first.json()["documents"][0]
    new_pdf = tmp_path / "v2.pdf"
    new_pdf.write_bytes(tiny_pdf("Lettre v2"))
    run = gp_cli("dmp", "deposit", *gp_cli.connection, *_adult(), "--remplace", old_uid, "--titre",
                 "Lettre v2", str(new_pdf))  # fmt: skip
    assert run.code == 0, run.err
    assert f"remplace le document {old_uid}" in run.out
    new_uid = run.out.split("- ", 1)[1].split(" : ", 1)[0]
    out = tmp_path / "v2.xml"
    assert gp_cli("dmp", "get", *gp_cli.connection, *_adult(), new_uid, "--sortie", str(out)).code == 0
    old, new = cda.parse(letter.read_bytes()), cda.parse(out.read_bytes())
    assert new.set_id == old.set_id and new.version_number == (old.version_number or 0) + 1
    assert new.replaced_document_id == old.id and new.title == "Lettre v2"
    pdf = tmp_path / "v2-copie.pdf"
    run = gp_cli("dmp", "lire", *gp_cli.connection, *_adult(), new_uid, "--pdf", "-o", str(pdf))
    assert run.code == 0, run.err
    assert pdf.read_bytes() == new_pdf.read_bytes()
    assert stat.S_IMODE(pdf.stat().st_mode) == 0o600  # patient data: owner only
    listed = gp_cli("dmp", "search", *gp_cli.connection, *_adult(), "--json")
    assert old_uid not in {r["unique_id"] for r in listed.json()["documents"]}  # replaced: deprecated


def test_vaccinations_show_antigen_lot_dose_and_vaccinator(gp_cli: GpCli):
    run = gp_cli("dmp", "vaccinations", *gp_cli.connection, *_adult())
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines and all(" — contre : " in line and " ; lot " in line and "vaccinateur : " in line
                         for line in lines)  # fmt: skip
    assert any("dose " in line and "non indiquée" not in line.split("dose ")[1][:12] for line in lines)


def test_emergency_options_are_exclusive_and_argparse_speaks_french(gp_cli: GpCli):
    run = gp_cli.subprocess("dmp", "status", *gp_cli.connection, *_adult(), "--bris-de-glace",
                            "patient inconscient aux urgences", "--centre-15", "régulation")  # fmt: skip
    assert run.code == 2 and "incompatible avec l'argument" in run.err and "utilisation :" in run.err
    run = gp_cli.subprocess("dmp", "serch", *_adult())
    assert run.code == 2 and "Vouliez-vous dire « search »" in run.err
    run = gp_cli.subprocess("cda", "build", "--type", "11488-4")
    assert run.code == 2 and "arguments obligatoires manquants : --contenu/--content" in run.err
    assert "usage:" not in run.err and "error:" not in run.err
    run = gp_cli.subprocess("dmp", "search", *gp_cli.connection)  # no patient: named before the PIN
    assert run.code == 1 and "Indiquez le patient : --identite ID ou --ins" in run.err
    run = gp_cli.subprocess("dmp", "search", "--help")
    assert run.code == 0 and "afficher cette aide" in run.out and "--rubrique RUBRIQUE, --rubric" in run.out


def test_expired_card_status_exits_1_with_a_warning(gp_cli: GpCli, virtual_card):
    virtual_card.remove()
    virtual_card.insert("expired")
    run = gp_cli("card", "status", "--lecteur", gp_cli.reader)
    assert run.code == 1 and "a expiré le" in run.out
    run = gp_cli("dmp", "status", *gp_cli.connection, *_adult())
    assert run.code == 1 and "expiré" in run.err and gp_cli.pin_asked == 0


def test_consent_is_asked_before_the_pin(gp_cli: GpCli):
    from sandbox.demo import DEMO_MINOR

    patient = ["--ins", DEMO_MINOR.ins]
    run = gp_cli("dmp", "accord", *gp_cli.connection, *patient, answers=["non"])
    assert run.code == 1 and "rien n'a été enregistré" in run.err and gp_cli.pin_asked == 0
    assert "a-t-il donné son accord" in run.err
    run = gp_cli("dmp", "consent", *gp_cli.connection, *patient, answers=["oui"])
    assert run.code == 0, run.err
    assert "Accord du patient enregistré" in run.out and gp_cli.pin_asked == 1
    status = gp_cli("dmp", "status", *gp_cli.connection, *patient)
    assert "VALIDE — autorisation valide" in status.out


def test_card_login_confirms_the_final_try_and_cda_build_checks_inputs_before_the_card(
    gp_cli: GpCli, virtual_card, tmp_path
):
    virtual_card.card.pin_tries = 1
    run = gp_cli("card", "login", "--lecteur", gp_cli.reader)  # no answer: "non"
    assert run.code == 1 and "Confirmer ? (oui/non)" in run.err and gp_cli.pin_asked == 0
    run = gp_cli("card", "login", "--lecteur", gp_cli.reader, "--confirmer-dernier-essai")
    assert run.code == 0 and "Authentifié" in run.out and "Confirmer ?" not in run.err
    patient = tmp_path / "patient.json"
    patient.write_text('{"ins": "279037505612308"}', encoding="utf-8")  # wrong key, traits missing
    pdf = tmp_path / "cr.pdf"
    pdf.write_bytes(tiny_pdf("cr"))
    pins = gp_cli.pin_asked
    run = gp_cli("cda", "build", "--type", "lettre d'adressage", "--contenu", str(pdf), "--patient",
                 str(patient), "--titre", "Lettre", "--lecteur", gp_cli.reader)  # fmt: skip
    assert run.code == 1 and "(patient." in run.err and gp_cli.pin_asked == pins
