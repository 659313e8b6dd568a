"""``ps-agent outbox list | resume | hand-back``: a secretary (AIR, establishment files) whose deposits
could not reach the DMP sees them waiting, takes one back as files, sends the other (French, exit codes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ps_agent.cli import main as cli

from . import docs
from .conftest import identity_json

pytestmark = pytest.mark.slow
ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"


def test_queue_is_visible_handed_back_and_resumed_from_the_cli(
    establishment_args, faults, dmp_sandbox, tmp_path, capsys
):
    from sandbox.demo import DEMO_ADULT

    home = Path(os.environ["PS_AGENT_HOME"])
    patient = ["--ins", DEMO_ADULT.ins, "--oid", DEMO_ADULT.oid]
    args = [*establishment_args, "--auteur", identity_json("specialist"), *patient]
    letters = []
    for title in ("Lettre à reprendre", "Lettre à renvoyer"):
        path = tmp_path / f"{title}.xml"
        path.write_bytes(docs.letter(DEMO_ADULT, "specialist", type_code="11490-0", title=title))
        letters.append(path)
    faults(reset_before_commit_rate=1.0, actions=(ITI41,))
    for path in letters:
        assert cli(["dmp", "deposit", *args, str(path)]) == 1
        err = capsys.readouterr().err
        assert "file d'envoi" in err and "Traceback" not in err
    faults()

    assert cli(["outbox", "list", "--json"]) == 1  # something is left
    listed = json.loads(capsys.readouterr().out)["entries"]
    assert [e["state"] for e in listed] == ["waiting", "waiting"]
    assert [e["titles"] for e in listed] == [["Lettre à reprendre"], ["Lettre à renvoyer"]]
    assert cli(["outbox", "list"]) == 1
    text = capsys.readouterr().out
    assert "nouvel essai prévu" in text and "Lettre à reprendre" in text

    out = tmp_path / "rendus"
    assert cli(["outbox", "hand-back", listed[0]["id"], "--vers", str(out)]) == 0
    assert "rendu" in capsys.readouterr().out
    [written] = list(out.iterdir())
    assert written.read_bytes() == letters[0].read_bytes()
    assert cli(["outbox", "hand-back", listed[0]["id"], "--vers", str(out)]) == 1  # already handed back
    assert "déjà terminé" in capsys.readouterr().err

    resume = [*establishment_args, "--auteur", identity_json("specialist")]
    assert cli(["outbox", "resume", *resume]) == 0, capsys.readouterr().err
    assert "enregistré dans le DMP" in capsys.readouterr().out
    assert cli(["outbox", "list"]) == 0
    assert "Aucun envoi en attente." in capsys.readouterr().out
    assert cli(["outbox", "list", "--tout", "--json"]) == 0
    states = [e["state"] for e in json.loads(capsys.readouterr().out)["entries"]]
    assert states == ["handed_back", "registered"]
    assert (home / "outbox.sqlite3").stat().st_mode & 0o777 == 0o600
    with pytest.raises(SystemExit) as usage:  # --vers missing: bad usage (argparse exits 2)
        cli(["outbox", "hand-back", "2.25.0"])
    assert usage.value.code == 2
