"""Fixtures of the CLI tests: a sandbox DMP with the demo data (private to the module: tests deposit and
delete), the GP's emulated card in the reader, and ``gp_cli`` to run ``ps-agent`` in-process (with
``ask`` answering the terminal questions and ``pin_asked`` counting the PIN prompts) or in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def demo_patient_json(p: Any) -> dict[str, str]:
    """The ``cda build`` patient JSON of a demo patient (INS and traits)."""
    return {
        "ins": p.ins,
        "ins_oid": p.oid,
        "birth_family_name": p.family_name,
        "given_names": p.given_names,
        "birth_date": f"{p.birth_date[:4]}-{p.birth_date[4:6]}-{p.birth_date[6:]}",
        "sex": p.sex,
        "birth_place_code": p.birth_place,
    }


def tiny_pdf(title: str) -> bytes:
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=595, height=842)
    w.add_metadata({"/Title": title})
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def cli_sandbox(tmp_path_factory: pytest.TempPathFactory, test_pki: Any) -> Iterator[Any]:
    """A running sandbox DMP with the demo data, private to the test module."""
    from sandbox import demo
    from sandbox.server import start

    running = start(tmp_path_factory.mktemp("cli-sandbox"), test_pki)
    try:
        demo.seed(running.store)
        yield running
    finally:
        running.stop()


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class GpCli:
    """Runs ``ps-agent`` as the GP at the workstation (card in the reader, sandbox DMP)."""

    sandbox: Any
    pki: Any
    reader: str
    home: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    answers: list[str] = field(default_factory=list)
    pin_asked: int = 0
    questions: list[str] = field(default_factory=list)

    @property
    def connection(self) -> list[str]:
        return ["--env", self.sandbox.base_url, "--ca", str(self.pki.ca_bundle), "--lecteur", self.reader]

    def __call__(self, *argv: str, answers: Sequence[str] = ()) -> CliRun:
        """In-process ``main(argv)``; ``answers`` are typed at the "(oui/non)" questions in turn."""
        from ps_agent.cli import main

        self.capsys.readouterr()
        self.answers = list(answers)
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    def subprocess(self, *argv: str, stdin: str = "", env: dict[str, str] | None = None) -> CliRun:
        """``python -m ps_agent`` in a child process (the console script's behaviour)."""
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PS_AGENT_HOME": str(self.home), **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "ps_agent", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=120,
            check=False,
        )
        return CliRun(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def gp_cli(
    cli_sandbox: Any,
    test_pki: Any,
    virtual_card: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> GpCli:
    """The GP's card in the reader; PIN typed from ``PS_AGENT_TEST_PIN`` (counted), questions answered
    from ``GpCli.answers`` (none left: end of input, i.e. "non")."""
    import ps_agent.cli.common as common

    virtual_card.insert("gp")
    cli = GpCli(cli_sandbox, test_pki, virtual_card.reader_name, tmp_path / "home", monkeypatch, capsys)
    monkeypatch.setenv("PS_AGENT_HOME", str(cli.home))
    monkeypatch.setenv("PS_AGENT_TEST_PIN", "1234")
    real_read_pin = common.read_pin

    def counting_read_pin() -> str:
        cli.pin_asked += 1
        return real_read_pin()

    def answer(prompt: str = "") -> str:
        cli.questions.append(prompt)
        if not cli.answers:
            raise EOFError
        return cli.answers.pop(0)

    for module in (
        "ps_agent.cli.common",
        "ps_agent.cli.dmp_cmd",
        "ps_agent.cli.card_cmd",
        "ps_agent.cli.cda_cmd",
    ):
        monkeypatch.setattr(f"{module}.read_pin", counting_read_pin)
    monkeypatch.setattr("builtins.input", answer)
    return cli
