"""``ps-agent card ...`` commands, run as real processes against the emulated card."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandbox.pki import TestPki

pytestmark = pytest.mark.pcsc


def _cli(*args: str, pin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PS_AGENT_TEST_PIN", None)
    if pin is not None:
        env["PS_AGENT_TEST_PIN"] = pin
    return subprocess.run(
        [sys.executable, "-m", "ps_agent", "card", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_readers_status_and_login(virtual_card, test_pki: TestPki) -> None:
    virtual_card.insert("gp")
    readers = json.loads(_cli("readers", "--json").stdout)
    row = next(r for r in readers if r["reader"] == virtual_card.reader_name)
    assert row["card"] == "CPS3"

    status = _cli("status", "--reader", virtual_card.reader_name, "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["id_nat"] == "899700000013" and data["pin_tries_left"] == 3

    login = _cli(
        "login",
        "--reader",
        virtual_card.reader_name,
        "--ca-file",
        str(test_pki.ca_bundle),
        "--json",
        pin="1234",
    )
    assert login.returncode == 0, login.stderr
    ident = json.loads(login.stdout)
    assert ident["id_nat"] == "899700000013" and ident["mode"] == "DIRECTE"
    assert ident["activity"]["sector"] == "SA07"
    assert "1234" not in login.stdout + login.stderr


def test_login_refusals_are_french_sentences_without_traceback(virtual_card) -> None:
    virtual_card.insert("gp")
    wrong = _cli("login", "--reader", virtual_card.reader_name, pin="0000")
    assert wrong.returncode == 1
    assert "Code porteur incorrect. Il reste 2 essais" in wrong.stderr
    bad = _cli("login", "--reader", virtual_card.reader_name, pin="12ab")
    assert bad.returncode == 1 and "4 chiffres" in bad.stderr
    assert virtual_card.card.pin_tries == 2
    no_pin = _cli("login", "--reader", virtual_card.reader_name)  # no tty, no env: EOF on the prompt
    assert no_pin.returncode == 1
    for out in (wrong, bad, no_pin):
        assert "Traceback" not in out.stderr


def test_status_without_card(virtual_card) -> None:
    out = _cli("status", "--reader", virtual_card.reader_name)
    assert out.returncode == 1
    assert "Aucune carte n'est insérée" in out.stderr and "Traceback" not in out.stderr
