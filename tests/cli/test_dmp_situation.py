"""`ps-agent dmp --situation N` counts the card's activity situations from 1, like `ps-agent card login`,
and refuses a wrong number before the PIN is asked (so no PIN try can be spent on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ps_agent.cli import main


def test_situation_zero_is_refused_before_the_pin(tmp_path: Path, test_pki, monkeypatch, capsys) -> None:
    def no_pin(*_a: object, **_k: object) -> str:
        raise AssertionError("the PIN must not be asked for an invalid situation number")

    monkeypatch.setattr("getpass.getpass", no_pin)
    monkeypatch.delenv("PS_AGENT_TEST_PIN", raising=False)
    rc = main(
        ["dmp", "status", "--ins", "279037505612309", "--oid", "1.2.250.1.213.1.4.10", "--situation", "0",
         "--env", "sandbox", "--ca", str(test_pki.ca_bundle), "--home", str(tmp_path)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1
    assert "numérotées à partir de 1" in err


@pytest.mark.parametrize("argv", [["dmp", "status", "--help"]])
def test_help_says_situations_start_at_one(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert "à partir de 1" in capsys.readouterr().out
