"""The agent and the ``ps-agent dmp`` CLI with the emulated CPS card through the real PC/SC stack
(pcscd + vpcd): TLS client authentication and VIHF/XAdES signatures made by the card."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ps_agent.agent import Agent
from ps_agent.cli import main as cli
from ps_agent.config import AgentConfig, Environment
from ps_agent.errors import AuthError

from . import docs
from .conftest import CardAgents, patient_ref

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]


def _env(dmp_sandbox: Any, test_pki: Any) -> Environment:
    return Environment("sandbox", dmp_sandbox.base_url, ca_file=str(test_pki.ca_bundle))


def test_gp_with_card_deposits_lists_and_reads(virtual_card, dmp_sandbox, test_pki, tmp_path):
    from ps_agent.auth.session import AuthSession
    from sandbox.demo import DEMO_ADULT

    virtual_card.insert("gp")
    session = AuthSession.open(virtual_card.reader_name, "1234", ca_file=test_pki.ca_bundle)
    try:
        with Agent(session, AgentConfig(_env(dmp_sandbox, test_pki), tmp_path)) as agent:
            patient = patient_ref(DEMO_ADULT)
            status = agent.dmp_status(patient)
            assert status.authorised and status.is_medecin_traitant
            data = docs.letter(DEMO_ADULT, "gp", title="Lettre signée par la carte")
            uid = agent.deposit(patient, data).document_uids[0]
            listing = agent.list_documents(patient, rubric="Comptes rendus")
            entry = next(e for e in listing if e.unique_id == uid)
            assert agent.retrieve(patient, entry).content == data
            rec = agent.audit().records()
            assert {r.event.auth_mode for r in rec} == {"DIRECTE"}
            assert agent.audit().verify().ok
            # the card leaves the reader: the next call is refused before anything is sent
            virtual_card.remove()
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    session.ensure_active()
                except AuthError:
                    break
                time.sleep(0.05)
            with pytest.raises(AuthError):
                agent.dmp_status(patient)
    finally:
        session.close()


def test_cli_status_deposit_search_get(virtual_card, dmp_sandbox, test_pki, tmp_path, monkeypatch, capsys):
    from sandbox.demo import DEMO_ADULT

    virtual_card.insert("gp")
    monkeypatch.setenv("PS_AGENT_TEST_PIN", "1234")
    monkeypatch.setenv("PS_AGENT_HOME", str(tmp_path / "home"))
    common = [
        "--env", dmp_sandbox.base_url, "--ca", str(test_pki.ca_bundle), "--reader", virtual_card.reader_name,
        "--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid,
    ]  # fmt: skip
    assert cli(["dmp", "status", *common]) == 0
    assert "vous êtes autorisé" in capsys.readouterr().out
    letter = tmp_path / "lettre.xml"
    letter.write_bytes(docs.letter(DEMO_ADULT, "gp", title="Lettre déposée en ligne de commande"))
    assert cli(["dmp", "deposit", *common, "--json", str(letter)]) == 0
    uid = json.loads(capsys.readouterr().out)["documents"][0]
    assert cli(["dmp", "search", *common, "--json", "--rubrique", "Comptes rendus"]) == 0
    rows = json.loads(capsys.readouterr().out)["documents"]
    assert uid in {r["unique_id"] for r in rows}
    out = tmp_path / "copie.xml"
    assert cli(["dmp", "get", *common, uid, "-o", str(out)]) == 0
    assert out.read_bytes() == letter.read_bytes()
    capsys.readouterr()
    # document management and vaccinations
    assert cli(["dmp", "mask", *common, uid]) == 0
    assert cli(["dmp", "mask", *common, uid, "--unmask"]) == 0
    assert cli(["dmp", "archive", *common, uid]) == 0
    assert cli(["dmp", "archive", *common, uid, "--unarchive"]) == 0
    assert cli(["dmp", "delete", *common, uid]) == 1  # asks for confirmation: no answer is "non"
    assert cli(["dmp", "delete", *common, uid, "--oui"]) == 0
    out_text = capsys.readouterr().out
    for word in ("masqué", "démasqué", "archivé", "désarchivé", "supprimé"):
        assert word in out_text
    assert cli(["dmp", "vaccinations", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vaccinations"]
    assert cli(["dmp", "consent", *common]) == 1  # consent needs --oui (explicit confirmation)
    capsys.readouterr()
    # a refusal: French message on stderr, exit code 1, no traceback
    from sandbox.demo import DEMO_CLOSED

    closed = [*common[:-4], "--ins", DEMO_CLOSED.ins, "--oid", DEMO_CLOSED.oid]
    closed_letter = tmp_path / "fermé.xml"
    closed_letter.write_bytes(docs.letter(DEMO_CLOSED, "gp"))
    assert cli(["dmp", "deposit", *closed, str(closed_letter)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Erreur : ") and "pas de DMP actif" in err and "Traceback" not in err
    # the CLI's actions are in the journal, which verifies
    assert Path(tmp_path / "home" / "audit.sqlite3").is_file()
    assert cli(["audit", "verify"]) == 0


def test_pharmacist_with_card_reads_vaccinations_records_one_and_is_told_what_is_hidden(
    virtual_card, dmp_sandbox, test_pki, tmp_path
):
    """The pharmacist's journeys with her card: vaccination status, a vaccination recorded (signed by the
    card), and a hospital stay report (34112-3) she may not see: explained in the listing, refused on read."""
    from ps_agent.auth.session import AuthSession
    from ps_agent.errors import PsAgentError
    from sandbox.demo import DEMO_ADULT

    env = _env(dmp_sandbox, test_pki)
    virtual_card.insert("gp")
    session = AuthSession.open(virtual_card.reader_name, "1234", ca_file=test_pki.ca_bundle)
    try:
        with Agent(session, AgentConfig(env, tmp_path / "gp")) as gp:
            report = docs.letter(DEMO_ADULT, "gp", type_code="34112-3", title="CR d'hospitalisation (carte)")
            uid = gp.deposit(patient_ref(DEMO_ADULT), report).document_uids[0]
    finally:
        session.close()
    virtual_card.remove()
    virtual_card.insert("pharmacist")
    session = AuthSession.open(virtual_card.reader_name, "1234", ca_file=test_pki.ca_bundle)
    try:
        with Agent(session, AgentConfig(env, tmp_path / "ph")) as ph:
            adult = patient_ref(DEMO_ADULT)
            before = ph.vaccination_status(adult)
            assert before
            ph.record_vaccination(adult, docs.vaccination(DEMO_ADULT, "pharmacist"))
            assert len(ph.vaccination_status(adult)) == len(before) + 1
            listing = ph.list_documents(adult)
            assert uid not in {e.unique_id for e in listing}
            assert any(
                "pharmaciens n'ont pas accès" in s and "hospitalier" in s for s in listing.hidden_explanations
            )
            with pytest.raises(PsAgentError) as exc:
                ph.retrieve(adult, uid)
            assert "pas accessibles à votre profession" in exc.value.message_fr
            assert {r.event.auth_mode for r in ph.audit().records()} == {"DIRECTE"}
            assert ph.audit().verify().ok
    finally:
        session.close()


def test_card_change_closes_the_session_and_the_old_agent_refuses(card_agent_for: CardAgents, virtual_card):
    """The journeys' card changes: the card works for the agent (TLS and VIHF through pcscd), removing it
    closes its session, the agent bound to it refuses with a French message, the next card opens a new
    session, and the GP coming back gets a new session on the same journal."""
    from sandbox.demo import DEMO_ADULT
    from sandbox.profiles import PROFILES

    patient = patient_ref(DEMO_ADULT)
    gp = card_agent_for("gp")
    gp_session = card_agent_for.session
    before = virtual_card.card.apdu_count
    assert gp.dmp_status(patient).is_medecin_traitant
    assert virtual_card.card.apdu_count > before  # the card authenticated and signed
    ph = card_agent_for("pharmacist")
    assert card_agent_for.closed_sessions == [gp_session] and gp_session.closed_reason == "removed"
    with pytest.raises(AuthError) as exc:
        gp.dmp_status(patient)
    assert "carte" in exc.value.message_fr and "Traceback" not in exc.value.message_fr
    assert card_agent_for.session.identity.id_nat == PROFILES["pharmacist"].id_nat
    assert ph.dmp_status(patient).exists
    gp_again = card_agent_for("gp")
    assert gp_again is not gp and gp_again.config.home == gp.config.home
    assert card_agent_for.card_changes == 2 and card_agent_for.session is not gp_session
    assert gp_again.dmp_status(patient).is_medecin_traitant
    assert [r.event.action for r in gp_again.audit().records()].count("dmp.status") >= 2
    assert {r.event.auth_mode for r in gp_again.audit().records()} == {"DIRECTE"}
    assert gp_again.audit().verify().ok and ph.audit().verify().ok
