"""Names as a person types them, without a card: document types by label (``cda types``, ``--type``),
rubrics, the INS OID of each environment, labels beside raw codes, French errors with raw codes."""

from __future__ import annotations

import json

import pytest

from cda.classify import fold, rubric_named, types_matching
from ps_agent.cli import main
from ps_agent.cli.common import UsageError, error_text, ins_oid_for, rubric_or_usage, type_code_or_usage


@pytest.mark.parametrize(
    ("typed", "rubric"),
    [
        ("comptes rendus", "Comptes rendus"),
        ("Comptes-rendus", "Comptes rendus"),
        ("compte rendu", "Comptes rendus"),
        ("prevention", "Prévention"),
        ("PRÉVENTION", "Prévention"),
        ("certificats declarations", "Certificats, déclarations"),
        ("imagerie", "Imagerie médicale"),
        ("synthese", "Synthèse"),
    ],
)
def test_rubric_named_without_case_accents_or_plural(typed: str, rubric: str) -> None:
    assert rubric_named(typed) == rubric
    assert rubric_or_usage(typed) == rubric


@pytest.mark.parametrize("typed", ["", "de", "comptes rendus biologiques", "rubrique 3"])
def test_unknown_or_ambiguous_rubric_is_a_usage_error_listing_the_nine(typed: str) -> None:
    with pytest.raises(UsageError) as exc:
        rubric_or_usage(typed)
    assert exc.value.exit_code == 2 and exc.value.code == "UNKNOWN_RUBRIC"
    assert exc.value.message_fr.count(" ; ") == 8  # the nine rubrics


def test_fold() -> None:
    assert fold("  Comptes-Rendus  d'Imagerie ") == "comptes rendus d imagerie"
    assert fold("Prévention, ÉCHO") == "prevention echo"


@pytest.mark.parametrize(
    ("environment", "oid"),
    [
        ("production", "1.2.250.1.213.1.4.8"),
        ("sandbox", "1.2.250.1.213.1.4.10"),
        ("formation1", "1.2.250.1.213.1.4.10"),
        ("personnalisé", "1.2.250.1.213.1.4.10"),
    ],
)
def test_ins_oid_follows_the_environment(environment: str, oid: str) -> None:
    assert ins_oid_for(environment) == oid


def test_types_by_label() -> None:
    assert [t.code for t in types_matching("note de vaccination")] == ["87273-9"]
    assert [t.code for t in types_matching("NOTE DE VACCINATION")] == ["87273-9"]
    assert "87273-9" in {t.code for t in types_matching("vaccin")}
    assert type_code_or_usage("lettre d'adressage") == "96349-6"
    assert type_code_or_usage("11488-4") == "11488-4"  # a code goes through as is
    with pytest.raises(UsageError) as exc:
        type_code_or_usage("lettre")
    assert exc.value.code == "AMBIGUOUS_TYPE" and "11490-0" in exc.value.message_fr
    with pytest.raises(UsageError) as exc:
        type_code_or_usage("radiographie du genou gauche de profil")
    assert exc.value.code == "UNKNOWN_TYPE" and "ps-agent cda types" in exc.value.message_fr


def test_cda_types_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cda", "types", "vaccination"]) == 0
    out = capsys.readouterr().out
    assert "87273-9 — Note de vaccination  [Prévention]" in out
    assert main(["cda", "types", "Vaccination", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"code": "87273-9", "label": "Note de vaccination"}.items() <= next(
        r for r in rows if r["code"] == "87273-9"
    ).items()
    assert main(["cda", "types", "zzz introuvable"]) == 1
    assert "Aucun type" in capsys.readouterr().out


def test_classify_by_label(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cda", "classify", "--type", "note de vaccination"]) == 0
    out = capsys.readouterr().out
    assert "Type : 87273-9 — Note de vaccination" in out and "Rubrique DMP : Prévention" in out


def test_error_lines_put_the_raw_code_beside_the_french_label() -> None:
    from ps_agent.access.errors import ConsentRequired
    from ps_agent.access.policy import Decision
    from ps_agent.dmp.errors import RegistryRefusal
    from ps_agent.errors import AuthError

    refusal = RegistryRefusal("Accès non autorisé.", code="DMPAccessNotAuthorized")
    assert error_text(refusal) == "Erreur : refusé par le DMP : DMPAccessNotAuthorized — Accès non autorisé."
    assert error_text(AuthError("Code faux.", code="pin_wrong")) == "Erreur : Code faux. [code pin_wrong]"
    decision = Decision(allowed=False, rule_id="ACC-02", message_fr="Accord du patient requis.")
    assert (
        error_text(ConsentRequired(decision)) == "Erreur : refusé (règle ACC-02) — Accord du patient requis."
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["dmp", "search", "--ins", "279037505612309", "--rubrik", "x"],
            "vouliez-vous dire « --rubrique » ?",
        ),
        (["dmp", "serch", "--ins", "279037505612309"], "Vouliez-vous dire « search » ?"),
        (["card", "status", "--lecter", "x"], "vouliez-vous dire « --lecteur » ?"),
        (["cda", "build", "--type", "11488-4"], "arguments obligatoires manquants : --contenu/--content"),
        (["dmp", "status", "--ins", "1", "--situation", "deux"], "valeur invalide (int) : 'deux'"),
    ],
)
def test_typos_get_a_french_usage_error_with_a_suggestion(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert needle in err and "utilisation :" in err and " : erreur : " in err
    assert "usage:" not in err and "error:" not in err


def test_an_unexpected_failure_anywhere_is_a_french_sentence(monkeypatch, capsys) -> None:
    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr("ps_agent.cli.dmp_cmd._prepare", broken)
    assert main(["dmp", "status", "--ins", "279037505612309"]) == 1
    err = capsys.readouterr().err
    assert err == "Erreur : Erreur interne (RuntimeError) : l'opération n'a pas abouti. [code internal]\n"
