"""`ps-agent patient …` through subprocess: INSi sandbox over TLS (establishment certificate INSI-MANU), the
emulated carte Vitale through pcscd, identity records in a temporary data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.insi.certs import insi_certificate
from sandbox.insi.server import RunningInsi, start_insi
from sandbox.pki import P12_PASSPHRASE, TestPki
from tests.fixtures.card import VirtualCard

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def insi(test_pki: TestPki) -> Iterator[RunningInsi]:
    with start_insi(test_pki) as running:
        yield running


class Cli:
    def __init__(self, home: Path, pki: TestPki, insi: RunningInsi) -> None:
        self.home = home
        self.p12 = insi_certificate(pki, "INSI-MANU").p12
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PS_AGENT_HOME": str(home),
            "PS_AGENT_CA": str(pki.ca_bundle),
            "PS_AGENT_INSI_URL": insi.mtls_url,
            "PS_AGENT_P12_PASSPHRASE": P12_PASSPHRASE,
        }

    def __call__(self, *argv: str, insi: bool = False) -> subprocess.CompletedProcess[str]:
        args = list(argv)
        if insi:
            args += ["--etablissement", str(self.p12)]
        return subprocess.run(
            [sys.executable, "-m", "ps_agent", "patient", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def json(self, *argv: str, insi: bool = False) -> Any:
        proc = self(*argv, "--json", insi=insi)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def cli(tmp_path: Path, test_pki: TestPki, insi: RunningInsi) -> Cli:
    return Cli(tmp_path / "home", test_pki, insi)


def test_search_validate_show_list(cli: Cli) -> None:
    found = cli.json(
        "rechercher", "--nom", "Adrtrois", "--prenom", "Toussaint", "--sexe", "M",
        "--naissance", "1960-01-01", "--lieu", "2B020", insi=True,
    )  # fmt: skip
    assert found["statut"] == "RECUP" and found["ins"] == "160012B02077713"
    ident = str(found["id"])
    shown = cli("show", ident)
    assert shown.returncode == 0
    assert "Identité récupérée (RECUP)" in shown.stdout and "Utilisable pour le DMP : non" in shown.stdout
    refused = cli("valider", ident, "--piece", "permis")
    assert refused.returncode == 1
    assert "n'est pas une pièce à haut niveau de confiance" in refused.stderr
    assert cli.json("show", ident)["statut"] == "RECUP"  # nothing changed
    qual = cli.json("valider", ident, "--piece", "passeport")
    assert qual["statut"] == "QUAL" and qual["qualifiee"] and qual["piece"]["type"] == "passeport"
    edited = cli("modifier", ident, "--naissance", "1960-01-02")
    assert edited.returncode == 0 and "QUAL → VALI" in edited.stdout
    listing = cli("list")
    assert "VALI" in listing.stdout and "ADRTROIS TOUSSAINT" in listing.stdout
    assert (cli.home / "identities.sqlite3").is_file()


def test_search_not_found_and_bad_traits(cli: Cli) -> None:
    nf = cli("rechercher", "--nom", "HOUILLES", "--prenom", "PIERRE", "--sexe", "M",
             "--naissance", "1993-01-27", insi=True)  # fmt: skip
    assert nf.returncode == 1 and "Aucune identité INS trouvée" in nf.stdout
    bad = cli(
        "rechercher", "--nom", "ADR3", "--prenom", "X", "--sexe", "M", "--naissance", "1960-01-01", insi=True
    )
    assert bad.returncode == 1
    assert "caractère refusé par l'INSi : « 3 »" in bad.stderr
    assert "Aucune identité enregistrée" in cli("list").stdout


def test_wrong_certificate_name(cli: Cli, test_pki: TestPki) -> None:
    other = insi_certificate(test_pki, "INSI-AUTRE").p12
    proc = cli("rechercher", "--nom", "ADRUN", "--prenom", "ZOE", "--sexe", "F", "--naissance", "1975-12-31",
               "--etablissement", str(other))  # fmt: skip
    assert proc.returncode == 1
    assert "INSI-AUTRE" in proc.stderr and "INSI-MANU ou INSI-AUTO" in proc.stderr


def test_unknown_identity(cli: Cli) -> None:
    proc = cli("show", "99")
    assert proc.returncode == 1 and "Identité locale n° 99 introuvable" in proc.stderr


def test_vitale_family_card_child(cli: Cli, virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-famille")
    listing = cli("vitale", "--lecteur-vitale", virtual_card.reader_name, insi=True)
    assert listing.returncode == 0, listing.stderr
    assert "3. GEMEAU LOU, né(e) le 2018-05-04, rang 2" in listing.stdout
    assert "--beneficiaire N" in listing.stdout
    assert "Aucune identité enregistrée" in cli("list").stdout  # no INSi call without a choice
    child = cli.json("vitale", "--lecteur-vitale", virtual_card.reader_name, "--beneficiaire", "2", insi=True)
    assert child["statut"] == "RECUP" and child["prenoms"] == "LEA" and child["source"] == "vitale"
    assert child["ins"].startswith("2180563220901")
    bad = cli("vitale", "--lecteur-vitale", virtual_card.reader_name, "--beneficiaire", "7", insi=True)
    assert bad.returncode == 1 and "entre 1 et 4" in bad.stderr


def test_vitale_adult_then_dmp_ready(cli: Cli, virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-adulte")
    adult = cli.json("vitale", "--lecteur-vitale", virtual_card.reader_name, insi=True)  # one beneficiary
    assert adult["statut"] == "RECUP" and adult["nom_naissance"] == "DEMO-ADULTE"
    assert cli.json("valider", str(adult["id"]), "--piece", "cni")["qualifiee"] is True


def test_vitale_expired_card(cli: Cli, virtual_card: VirtualCard) -> None:
    virtual_card.insert("vitale-expiree")
    proc = cli("vitale", "--lecteur-vitale", virtual_card.reader_name, insi=True)
    assert proc.returncode == 1 and "opposition" in proc.stderr


def test_dmp_takes_a_local_identity_and_refuses_a_non_qualified_one(cli: Cli, test_pki: TestPki) -> None:
    from ps_agent.identity.records import NOT_QUALIFIED_MESSAGE, IdentityRecords

    with IdentityRecords.open(cli.home) as records:
        prov = records.create("DUPONT", "JEAN", "M", "1980-01-01")
    env = {k: v for k, v in cli.env.items() if k != "PS_AGENT_TEST_PIN"}
    base = [
        sys.executable,
        "-m",
        "ps_agent",
        "dmp",
        "status",
        "--env",
        "sandbox",
        "--ca",
        str(test_pki.ca_bundle),
    ]
    proc = subprocess.run([*base, "--identite", str(prov.id)], env=env, capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 1
    assert NOT_QUALIFIED_MESSAGE in proc.stderr and "PIN" not in proc.stderr  # refused before the PIN
    missing = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60, check=False,
                             stdin=subprocess.DEVNULL)  # fmt: skip
    assert missing.returncode == 1 and "--identite ID ou --ins" in missing.stderr


def test_demo_path_vitale_insi_validated_dmp_status(
    cli: Cli, virtual_card: VirtualCard, test_pki: TestPki, tmp_path: Path
) -> None:
    """The demo of issue 10: Vitale card → INSi → validated identity → DMP status of a demo patient."""
    from sandbox import demo
    from sandbox.profiles import ESTABLISHMENT
    from sandbox.server import start

    virtual_card.insert("vitale-adulte")
    ident = cli.json("vitale", "--lecteur-vitale", virtual_card.reader_name, insi=True)
    qual = cli.json("valider", str(ident["id"]), "--piece", "cni")
    assert qual["qualifiee"] and qual["ins"] == demo.DEMO_ADULT.ins and qual["oid"] == demo.DEMO_ADULT.oid
    user = {
        "id_nat": "899700000013", "family_name": "MEDECIN-GENERALISTE", "given_name": "JEAN",
        "profession_code": "10", "specialty_code": "SM26",
        "activity": {"structure_id": ESTABLISHMENT.structure_id,
                     "structure_name": ESTABLISHMENT.structure_name, "sector": ESTABLISHMENT.sector},
    }  # fmt: skip
    running = start(tmp_path / "dmp", test_pki)
    try:
        demo.seed(running.store)
        org = test_pki.establishment
        proc = subprocess.run(
            [sys.executable, "-m", "ps_agent", "dmp", "status", "--env", running.base_url,
             "--etablissement", str(org.auth_p12), "--signature-etablissement", str(org.sign_p12),
             "--utilisateur", json.dumps(user), "--identite", str(ident["id"]), "--json"],
            env=cli.env, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        running.stop()
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["exists"] is True and status["family_name"] == "DEMO-ADULTE"


def test_cpx_mode_with_the_cps_card_and_the_vitale_card(
    cli: Cli, virtual_card: VirtualCard, test_pki: TestPki, insi: RunningInsi
) -> None:
    """Mode B: the CPS (reader 1) signs the PS assertion; the Vitale card is in reader 0 (we hold the vpcd
    lock through ``virtual_card``, so reader 1 is ours too)."""
    from sandbox.card import READER_NAMES, VpcdLink, make_card
    from sandbox.card.readerstate import wait_reader_state

    virtual_card.insert("vitale-famille")
    cps = VpcdLink(make_card(test_pki, "gp"), reader=1)
    cps.insert()
    try:
        wait_reader_state(READER_NAMES[1], present=True)
        env = {**cli.env, "PS_AGENT_TEST_PIN": "1234"}
        proc = subprocess.run(
            [sys.executable, "-m", "ps_agent", "patient", "vitale",
             "--lecteur-vitale", virtual_card.reader_name, "--beneficiaire", "1",
             "--reader", READER_NAMES[1], "--facturation", "991130972",
             "--insi-url", insi.cpx_url, "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        cps.remove()
        wait_reader_state(READER_NAMES[1], present=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["statut"] == "RECUP" and got["prenoms"] == "CLAIRE" and got["source"] == "vitale"
    from ps_agent.audit.journal import AuditJournal

    with AuditJournal(cli.home / "audit.sqlite3") as journal:
        (call,) = journal.records(action="insi.vitale")
        assert call.event.actor_id_nat == "899700000013" and call.event.transaction == "WS_INS1"
        assert call.event.outcome == "success"
